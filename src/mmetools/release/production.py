"""Which artifacts the production destination holds, by name only (one HEAD or stat per name).

The CI pipeline on the production branch builds every model whose current
``<name>_<version>.tar.gz`` production does not hold, whatever git says changed: a change whose
run failed, or that came in a push of several commits, is never skipped (issue 20 #6). Only the
presence of the name is checked here (no bytes are read); whether held bytes match a build is
publish's business.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mmetools.core.errors import PublishError
from mmetools.core.settings import Settings
from mmetools.release.publish import destinations
from mmetools.release.storage import Destination, S3Connection, S3Tuning, redact_credentials

if TYPE_CHECKING:
    import boto3

logger = logging.getLogger(__name__)


def _held_in_folder(destination: Destination, key: str) -> bool:
    assert destination.path is not None
    return (destination.path / key).is_file()


def missing_from_production(
    artifact_names: Sequence[str],
    settings: Settings,
    *,
    session: boto3.session.Session | None = None,
    tuning: S3Tuning | None = None,
) -> list[str]:
    """The names among ``artifact_names`` (``<name>_<version>.tar.gz``) that the production
    destination does not hold. Raises PublishError when production cannot be asked (a pipeline
    that cannot tell must not guess "held"). A missing bucket holds nothing: every name is
    missing, and publishing will say why it cannot write there."""
    _, production = destinations(settings)
    if production.kind == "file":
        return [n for n in artifact_names if not _held_in_folder(production, production.key(n))]
    import boto3 as boto3_module
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client = S3Connection(
            session or boto3_module.session.Session(), tuning or S3Tuning()
        ).client
        missing = []
        for name in artifact_names:
            key = production.key(name)
            try:
                client.head_object(Bucket=production.bucket, Key=key)
            except ClientError as e:
                code = str(e.response.get("Error", {}).get("Code", ""))
                if code not in ("404", "NoSuchKey", "NotFound"):
                    raise
                missing.append(name)
    except (BotoCoreError, ClientError) as e:
        raise PublishError(
            f"{production.uri}: cannot check which versions production holds: "
            f"{redact_credentials(str(e))}"
        ) from e
    logger.info("production %s lacks %d of %d artifacts", production.uri, len(missing),
                len(artifact_names))  # fmt: skip
    return missing


__all__ = ["missing_from_production"]
