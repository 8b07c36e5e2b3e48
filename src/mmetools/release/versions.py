"""Versions against production: what production serves is the baseline, and versions only go up.

One rule, checked by ``mmetools diff`` (before anything runs) and by ``mmetools publish`` (before
anything is written, on every branch, so a feature branch fails the way main would):

- production holds no version of the model: any version is fine;
- the candidate's version is above production's highest: fine; that highest version is what the
  candidate replaces, so it is the diff's baseline (never a lower one);
- production holds this very version with the same bytes (the same tarball sha256, or for a model
  folder the same model files): a re-release, nothing to do;
- production holds this version with other bytes: refused, naming ``model_version.txt`` and the
  fix, ``mmetools bump models/<name>``;
- production holds a higher version: going backwards, refused.

``mmetools bump`` writes the next version: one above both the folder's and production's highest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from mmetools.build.files import StoredFiles
from mmetools.build.identity import manifest_identity
from mmetools.build.manifest import Manifest
from mmetools.core.atomic import KEEP_MODE, write_text_atomically
from mmetools.core.errors import MmetoolsError, PublishError, VersionError
from mmetools.core.jsontext import parse_json
from mmetools.core.settings import Settings
from mmetools.model.folder import ModelFolder
from mmetools.release.publish.plan import destinations
from mmetools.release.published import PublishedVersion, versions_in
from mmetools.release.storage import (
    Destination,
    S3Connection,
    S3Tuning,
    Store,
    open_store,
    redact_credentials,
)

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Candidate:
    """What is about to be diffed or published: a model version, and its bytes when known."""

    model: str
    version: int
    version_file: str  # shown in messages, e.g. models/demo/model_version.txt
    sha256: str | None = None  # the tarball's, when the candidate is one
    identity: str | None = None  # build/identity.py: when the candidate is a model folder


@dataclass(frozen=True)
class ProductionState:
    """Production's versions of a model, as far as a candidate is concerned."""

    highest: PublishedVersion | None  # production's highest version (the baseline), if any
    same: PublishedVersion | None = None  # production holds the candidate's version, same bytes


def production_versions(
    production: Destination, model: str, client: S3Client | None
) -> list[PublishedVersion]:
    """Every version of ``model`` the production destination holds, lowest first (``client``:
    for an S3 destination)."""
    found = [
        PublishedVersion("production", model, version, production.object_uri(key), production, key)
        for version, key in versions_in(production, "", model, client)
    ]
    return sorted(found, key=lambda v: v.version)


def _published_identity(store: Store, key: str) -> str | None:
    raw = store.read_manifest(key)
    if raw is None:
        return None
    try:
        return manifest_identity(Manifest.from_json(parse_json(raw), StoredFiles(key).manifest))
    except (ValueError, MmetoolsError):
        return None


def check_against_production(
    candidate: Candidate, versions: Sequence[PublishedVersion], store: Store
) -> ProductionState:
    """Apply the rule of the module docstring to production's ``versions`` (``store``: production,
    to read what it holds under the candidate's name); VersionError when it may not ship."""
    if not versions:
        return ProductionState(None)
    highest = max(versions, key=lambda v: v.version)
    bump = f"run `mmetools bump {candidate.version_file.rsplit('/', 1)[0]}`"
    if candidate.version > highest.version:
        return ProductionState(highest)
    if candidate.version < highest.version:
        raise VersionError(
            f"{candidate.version_file}: version {candidate.version} is below production's "
            f"highest, {highest.uri}: versions only go up (going backwards would serve an older "
            f"model in a newer one's place); {bump} (it writes {highest.version + 1})"
        )
    if candidate.sha256 is not None:
        remote = store.stat(highest.key)
        published = remote.sha256 if remote is not None else None
        same = published == candidate.sha256
        what = f"sha256 {published}, this build {candidate.sha256}"
    else:
        published = _published_identity(store, highest.key)
        same = published is not None and published == candidate.identity
        what = (
            "its model files differ from the folder's"
            if published is not None
            else "its manifest cannot be read to compare the model files"
        )
    if same:
        logger.info("%s: production already holds these bytes (a re-release)", highest.uri)
        return ProductionState(highest, same=highest)
    raise VersionError(
        f"{candidate.version_file}: version {candidate.version} is already in production "
        f"({highest.uri}) with different bytes ({what}); a published version never changes: "
        f"{bump} (it writes {highest.version + 1}); for a re-release of the same bytes there is "
        "nothing to do"
    )


def _connection(session: boto3.session.Session | None) -> S3Connection:
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        return S3Connection(session or boto3.session.Session(), S3Tuning())
    except (BotoCoreError, ValueError) as e:
        raise PublishError(f"cannot set up S3 access: {redact_credentials(str(e))}") from e


def _with_production(
    model: str,
    settings: Settings,
    session: boto3.session.Session | None,
    then: Callable[[list[PublishedVersion], Store], T],
) -> T:
    """``then(production's versions of model, production's store)``, S3 errors as PublishError."""
    from botocore.exceptions import BotoCoreError, ClientError

    _, production = destinations(settings)
    connections: list[S3Connection] = []

    def connection() -> S3Connection:
        if not connections:
            connections.append(_connection(session))
        return connections[0]

    try:
        client = connection().client if production.kind == "s3" else None
        versions = production_versions(production, model, client)
        return then(versions, open_store(production, connection))
    except (BotoCoreError, ClientError) as e:
        raise PublishError(
            f"{production.uri}: cannot read production's versions of {model}: "
            f"{redact_credentials(str(e))}"
        ) from e


def check_candidate(
    candidate: Candidate, settings: Settings, session: boto3.session.Session | None = None
) -> ProductionState:
    """:func:`check_against_production` against the configured production destination."""
    return _with_production(
        candidate.model,
        settings,
        session,
        lambda versions, store: check_against_production(candidate, versions, store),
    )


def candidate_of_artifact(model: str, version: int, sha256: str, model_folder: str) -> Candidate:
    """A built artifact as a candidate (``model_folder`` as its manifest records it)."""
    folder = model_folder or f"models/{model}"
    return Candidate(model, version, f"{folder}/model_version.txt", sha256=sha256)


@dataclass(frozen=True)
class Bump:
    model: str
    before: int
    after: int
    production_highest: int | None


def bump_version(
    model: ModelFolder, settings: Settings, session: boto3.session.Session | None = None
) -> Bump:
    """Write the next version into ``model_version.txt``: one above both the folder's version
    and production's highest version of the model."""
    before = model.version()
    versions = _with_production(model.name, settings, session, lambda found, _: found)
    highest = max((v.version for v in versions), default=None)
    after = max(before, highest or 0) + 1
    write_text_atomically(model.version_file, f"{after}\n", KEEP_MODE)
    logger.info("%s: %d -> %d", model.version_file, before, after)
    return Bump(model.name, before, after, highest)


__all__ = [
    "Bump",
    "Candidate",
    "ProductionState",
    "bump_version",
    "candidate_of_artifact",
    "check_against_production",
    "check_candidate",
    "production_versions",
]
