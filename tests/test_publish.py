"""Publishing: destinations, branch rules, immutability, production gets the tested bytes.

S3 tests run against a real HTTP endpoint (moto_server on 127.0.0.1, see conftest.py); folder
destinations run on tmp_path. Request counts come from botocore's own event hooks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import Any

import boto3
import pytest
from publish_support import MiB, keys, make_artifact, new_bucket, s3_client, settings_for, sha256_of

from mmetools import cli
from mmetools.core.errors import ArtifactError, ConfigError, PublishError, UsageError
from mmetools.model.folder import ModelRef, parse_artifact_name
from mmetools.release.publish import (
    PublishOptions,
    PublishReport,
    branch_from_slug,
    branch_slug,
    load_local_artifact,
    plan_targets,
    publish,
)
from mmetools.core.settings import Settings
from mmetools.release.storage import S3Tuning, describe_size, parse_destination, stale_uploads

SMALL_PARTS = S3Tuning(part_size=5 * MiB, max_concurrency=4)


class Recorder:
    """Every S3 operation (name, key) and every HTTP attempt made by clients of ``session``."""

    def __init__(self, session: boto3.session.Session) -> None:
        self.operations: list[tuple[str, str]] = []
        self.sent = 0
        self._lock = threading.Lock()
        session.events.register("before-parameter-build.s3", self._operation)
        session.events.register("before-send.s3", self._send)

    def _operation(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        with self._lock:
            self.operations.append((model.name, str(params.get("Key", ""))))

    def _send(self, **_: Any) -> None:
        with self._lock:
            self.sent += 1

    def reset(self) -> None:
        with self._lock:
            self.operations.clear()
            self.sent = 0

    def names(self) -> list[str]:
        return [name for name, _ in self.operations]


def run(
    artifacts: list[Path],
    branch: str,
    settings: Settings,
    session: boto3.session.Session | None = None,
    **options: Any,
) -> PublishReport:
    tuning = options.pop("s3", SMALL_PARTS)
    return publish(
        artifacts,
        branch,
        settings=settings,
        options=PublishOptions(s3=tuning, **options),
        session=session,
    )


def actions(report: PublishReport) -> list[tuple[str, str]]:
    return [(r.role, r.action) for r in report.results]


# ---------------------------------------------------------------------------------------------
# Names, branches, destinations (no network)


@pytest.mark.parametrize(
    "name",
    ["Demo_1.tar.gz", "demo_0.tar.gz", "demo_v3.tar.gz", "demo.tar.gz", "demo_1.tgz", "_1.tar.gz"],
)
def test_bad_artifact_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError) as error:
        parse_artifact_name(Path("dist") / name)
    assert str(error.value) == (
        f"dist/{name}: not an artifact name: expected <name>_<version>.tar.gz with a lowercase "
        "name (letters, digits, _) and a positive integer version, e.g. screen_detector_3.tar.gz"
    )


def test_artifact_name_splits_at_the_last_underscore() -> None:
    assert parse_artifact_name(Path("screen_detector_12.tar.gz")) == ModelRef("screen_detector", 12)


@pytest.mark.parametrize(
    ("branch", "slug"),
    [
        ("feature/x", "feature~x"),
        ("Feature/JIRA-12_fix", "_46eature~_4a_49_52_41-12_5ffix"),
        ("refs/heads/main", "main"),
        ("main", "main"),
        ("dependabot/pip/boto3-1.35.0", "dependabot~pip~boto3-1.35.0"),
        (".hidden", "_2ehidden"),
        ("caf\u00e9", "caf_c3_a9"),
    ],
)
def test_branch_slug(branch: str, slug: str) -> None:
    assert branch_slug(branch) == slug
    assert branch_from_slug(slug) == branch.removeprefix("refs/heads/")


def test_branch_slugs_do_not_collide() -> None:
    # Before: all of these became "main" and the first one blocked the real main's publish.
    branches = ["main", "Main", "MAIN", "main-", "-main", "main/", "ma_in", "ma/in", "ma-in"]
    slugs = [branch_slug(branch) for branch in branches]
    assert len(set(slugs)) == len(branches), dict(zip(branches, slugs))


@pytest.mark.parametrize(
    ("branch", "message"),
    [
        ("", "--branch '': not a usable branch name (it is empty)"),
        ("refs/heads/", "--branch 'refs/heads/': not a usable branch name (it is empty)"),
        (
            "B" * 40,
            f"--branch {'B' * 40!r}: too long for a destination folder (120 characters encoded, "
            "max 100)",
        ),
    ],
)
def test_unusable_branch_is_refused(branch: str, message: str) -> None:
    with pytest.raises(UsageError) as error:
        branch_slug(branch)
    assert str(error.value) == message


def test_destinations_parse(tmp_path: Path) -> None:
    s3 = parse_destination("s3://models-bucket/mme/staging/", tmp_path, "x")
    assert (s3.kind, s3.bucket, s3.prefix, s3.uri) == (
        "s3",
        "models-bucket",
        "mme/staging",
        "s3://models-bucket/mme/staging",
    )
    assert s3.key("feature~x", "a_1.tar.gz") == "mme/staging/feature~x/a_1.tar.gz"
    relative = parse_destination("file:.published/staging", tmp_path, "x")
    assert relative.path == tmp_path / ".published" / "staging"
    absolute = parse_destination(f"file://{tmp_path}/prod", Path("/elsewhere"), "x")
    assert absolute.path == tmp_path / "prod"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (
            "gs://bucket/x",
            "publish.staging_uri = 'gs://bucket/x': unsupported destination; use "
            "s3://bucket/prefix, file:///absolute/path or file:relative/path",
        ),
        (
            "s3://Bad_Bucket/x",
            "publish.staging_uri = 's3://Bad_Bucket/x': 'Bad_Bucket' is not a valid S3 bucket name "
            "(3-63 characters: lowercase letters, digits, '.' and '-')",
        ),
        (
            "file://server/share",
            "publish.staging_uri = 'file://server/share': file URIs name a local folder: "
            "file:///absolute/path or file:relative/path (relative to the repository root), "
            "not a host",
        ),
    ],
)
def test_bad_destinations_are_refused(tmp_path: Path, uri: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_destination(uri, tmp_path, "publish.staging_uri")
    assert str(error.value) == message


def test_plan_by_branch(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "s3://stage/mme", "s3://prod/mme")
    feature = plan_targets("demo_1.tar.gz", "feature/x", settings)
    assert [(t.role, t.uri) for t in feature] == [
        ("staging", "s3://stage/mme/feature~x/demo_1.tar.gz")
    ]
    main = plan_targets("demo_1.tar.gz", "main", settings)
    assert [(t.role, t.uri) for t in main] == [
        ("staging", "s3://stage/mme/main/demo_1.tar.gz"),
        ("production", "s3://prod/mme/demo_1.tar.gz"),
    ]
    flat = settings_for(
        tmp_path,
        "s3://stage/mme",
        "s3://prod",
        {"MMETOOLS_PRODUCTION_BRANCH": "release"},
    )
    assert [t.uri for t in plan_targets("demo_1.tar.gz", "release", flat)] == [
        "s3://stage/mme/release/demo_1.tar.gz",
        "s3://prod/demo_1.tar.gz",
    ]
    assert [t.role for t in plan_targets("demo_1.tar.gz", "main", flat)] == ["staging"]


def test_stale_upload_selection() -> None:
    from datetime import datetime, timedelta, timezone

    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    uploads: Any = [
        {"Key": "p/a_1.tar.gz", "UploadId": "old", "Initiated": now - timedelta(hours=2)},
        {"Key": "p/a_1.tar.gz", "UploadId": "young", "Initiated": now - timedelta(seconds=30)},
        {"Key": "p/a_1.tar.gz.x", "UploadId": "other-key", "Initiated": now - timedelta(days=2)},
    ]
    assert stale_uploads(uploads, "p/a_1.tar.gz", now, grace=600) == ["old"]
    assert stale_uploads(uploads, "p/a_1.tar.gz", now, grace=0) == ["old", "young"]


# ---------------------------------------------------------------------------------------------
# Local artifact checks


def test_sha256_mismatch_is_refused_before_anything(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist")
    claimed = sha256_of(artifact)
    with artifact.open("r+b") as f:
        f.write(b"X")
    settings = settings_for(tmp_path, "file:pub/staging", "file:pub/production")
    with pytest.raises(ArtifactError) as error:
        run([artifact], "main", settings)
    assert str(error.value) == (
        f"{artifact}: sha256 is {sha256_of(artifact)} but demo_1.tar.gz.sha256 says {claimed}; "
        "the file changed after packaging: rebuild it with `mmetools package`"
    )
    assert not (tmp_path / "pub").exists()


def test_missing_sidecars_are_refused(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist")
    (tmp_path / "dist" / "demo_1.tar.gz.manifest.json").unlink()
    with pytest.raises(ArtifactError) as error:
        load_local_artifact(artifact)
    assert str(error.value) == (
        f"{tmp_path}/dist/demo_1.tar.gz.manifest.json: manifest not found (build it with `mmetools build`)"
    )
    (tmp_path / "dist" / "demo_1.tar.gz.sha256").unlink()
    with pytest.raises(ArtifactError) as error:
        load_local_artifact(artifact)
    assert str(error.value) == (
        f"{artifact}: demo_1.tar.gz.sha256 is missing; `mmetools package` writes it next to the "
        "artifact"
    )


def test_manifest_of_another_build_is_refused(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist", seed=1)
    other = make_artifact(tmp_path / "other", seed=2)
    manifest = tmp_path / "dist" / "demo_1.tar.gz.manifest.json"
    manifest.write_bytes((tmp_path / "other" / "demo_1.tar.gz.manifest.json").read_bytes())
    with pytest.raises(ArtifactError) as error:
        load_local_artifact(artifact)
    assert str(error.value) == (
        f"{manifest}: manifest describes a build with sha256 {sha256_of(other)}, but the .sha256 "
        f"file says {sha256_of(artifact)}: the two come from different builds; rebuild with "
        "`mmetools build`"
    )


def test_missing_artifact_and_duplicates_are_usage_errors(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "file:pub/staging", "file:pub/production")
    with pytest.raises(UsageError) as error:
        run([tmp_path / "dist" / "demo_1.tar.gz"], "main", settings)
    assert str(error.value) == (
        f"{tmp_path}/dist/demo_1.tar.gz: no such file (build it with `mmetools package`)"
    )
    first = make_artifact(tmp_path / "a")
    second = make_artifact(tmp_path / "b")
    with pytest.raises(UsageError) as error:
        run([first, second], "main", settings)
    assert str(error.value) == (
        "the same artifact name is given twice: demo_1.tar.gz, demo_1.tar.gz"
    )


def test_verified_sha256_is_remembered_until_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mmetools.build.verified as publish_module

    artifact = make_artifact(tmp_path / "dist", size=3 * MiB)
    real = publish_module.read_checksums
    reads: list[int] = []

    def counting(path: Path, part_size: int) -> tuple[str, tuple[int, ...]]:
        reads.append(part_size)
        return real(path, part_size)

    monkeypatch.setattr(publish_module, "read_checksums", counting)
    cache = tmp_path / "cache"
    first = load_local_artifact(artifact, cache, part_size=MiB)
    again = load_local_artifact(artifact, cache, part_size=MiB)
    assert reads == [MiB] and again == first
    data = artifact.read_bytes()
    assert first.part_crc32s == tuple(
        zlib.crc32(data[at : at + MiB]) for at in range(0, len(data), MiB)
    )
    assert len(first.part_crc32s) == 4  # 3 MiB of weights plus the tar and gzip framing
    load_local_artifact(artifact, cache, part_size=2 * MiB)  # other parts: read again
    os.utime(artifact, ns=(1, 1))  # same bytes, new stat: read again
    load_local_artifact(artifact, cache, part_size=2 * MiB)
    assert reads == [MiB, 2 * MiB, 2 * MiB]


# ---------------------------------------------------------------------------------------------
# Folder destinations (the default for a fresh clone)


def test_file_feature_branch_goes_to_staging_only(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist")
    settings = settings_for(tmp_path, "file:pub/staging", "file:pub/production")
    report = run([artifact], "feature/x", settings)
    assert actions(report) == [("staging", "uploaded")]
    staged = tmp_path / "pub" / "staging" / "feature~x"
    assert sorted(p.name for p in staged.iterdir()) == [
        "demo_1.tar.gz",
        "demo_1.tar.gz.manifest.json",
        "demo_1.tar.gz.sha256",
    ]
    assert sha256_of(staged / "demo_1.tar.gz") == sha256_of(artifact)
    assert (
        staged / "demo_1.tar.gz.sha256"
    ).read_text() == f"{sha256_of(artifact)}  demo_1.tar.gz\n"
    assert not (tmp_path / "pub" / "production").exists()
    assert report.results[0].destination == (staged / "demo_1.tar.gz").as_uri()


def test_file_main_goes_to_staging_then_production_and_is_idempotent(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist")
    settings = settings_for(tmp_path, "file:pub/staging", "file:pub/production")
    assert actions(run([artifact], "main", settings)) == [
        ("staging", "uploaded"),
        ("production", "uploaded"),
    ]
    assert sha256_of(tmp_path / "pub/production/demo_1.tar.gz") == sha256_of(artifact)
    again = run([artifact], "main", settings)
    assert actions(again) == [("staging", "unchanged"), ("production", "unchanged")]
    assert again.results[0].detail == "already published with the same sha256"


def test_file_refuses_different_bytes_under_the_same_name(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "file:pub/staging", "file:pub/production")
    first = make_artifact(tmp_path / "a", seed=1)
    second = make_artifact(tmp_path / "b", seed=2)
    run([first], "feature/x", settings)
    report = run([second], "feature/x", settings)
    dest = (tmp_path / "pub/staging/feature~x/demo_1.tar.gz").as_uri()
    assert [f.message for f in report.failures] == [
        f"{dest} already holds different bytes (sha256 {sha256_of(first)}, local build "
        f"{sha256_of(second)}); models are immutable: bump models/demo/model_version.txt\n"
        "members that differ: changed demo_model/1/model.onnx; the model's files changed since "
        "it was published"
    ]
    assert sha256_of(tmp_path / "pub/staging/feature~x/demo_1.tar.gz") == sha256_of(first)


def test_file_dry_run_writes_nothing(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist")
    settings = settings_for(tmp_path, "file:pub/staging", "file:pub/production")
    report = run([artifact], "main", settings, dry_run=True)
    assert [(r.role, r.action, r.detail) for r in report.results] == [
        ("staging", "dry-run", f"would upload {describe_size(artifact.stat().st_size)}"),
        ("production", "dry-run", f"would upload {describe_size(artifact.stat().st_size)}"),
    ]
    assert not (tmp_path / "pub").exists()


def test_file_production_refuses_when_staging_tested_different_bytes(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "file:pub/staging", "file:pub/production")
    tested = make_artifact(tmp_path / "tested", seed=1)
    rebuilt = make_artifact(tmp_path / "rebuilt", seed=2)
    run([tested], "main", settings)
    (tmp_path / "pub/production/demo_1.tar.gz").unlink()
    report = run([rebuilt], "main", settings)
    staged = (tmp_path / "pub/staging/main/demo_1.tar.gz").as_uri()
    assert [(f.role, f.message) for f in report.failures] == [
        (
            "staging",
            f"refusing to publish demo_1.tar.gz to production: staging {staged} holds different "
            f"bytes (sha256 {sha256_of(tested)}) than the local build (sha256 "
            f"{sha256_of(rebuilt)}); production only gets the bytes staging tested: publish the "
            "exact artifact staging holds, or bump models/demo/model_version.txt\n"
            "members that differ: changed demo_model/1/model.onnx; the model's files changed "
            "since it was published",
        )
    ]
    assert not (tmp_path / "pub/production/demo_1.tar.gz").exists()


def test_file_concurrent_publisher_cannot_be_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other publisher links the final name between our check and our link."""
    import mmetools.release.storage.folder as storage

    ours = make_artifact(tmp_path / "ours", seed=1)
    theirs = make_artifact(tmp_path / "theirs", seed=2)
    settings = settings_for(tmp_path, "file:pub/staging", "file:pub/production")
    final = tmp_path / "pub/staging/feature~x/demo_1.tar.gz"
    real_link = storage.link_create_only

    def other_publisher_links_first(temp: Path, target: Path) -> None:
        target.write_bytes(theirs.read_bytes())  # it wins the name ...
        real_link(temp, target)  # ... so our create-only link must fail

    monkeypatch.setattr(storage, "link_create_only", other_publisher_links_first)
    report = run([ours], "feature/x", settings)
    assert [f.message for f in report.failures] == [
        f"{final.as_uri()} already holds different bytes (sha256 {sha256_of(theirs)}, local "
        f"build {sha256_of(ours)}); models are immutable: bump models/demo/model_version.txt "
        "(the published manifest cannot be read to compare members) "
        "(written concurrently by another publish)"
    ]
    assert sha256_of(final) == sha256_of(theirs)
    # The loser writes no sidecar: sidecars come after the artifact, from the winner only.
    assert sorted(p.name for p in final.parent.iterdir()) == ["demo_1.tar.gz"]


def test_file_removes_temps_of_killed_publishers(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist")
    settings = settings_for(tmp_path, "file:pub/staging", "file:pub/production")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    folder = tmp_path / "pub/staging/feature~x"
    folder.mkdir(parents=True)
    orphan = folder / f".demo_1.tar.gz.tmp-{dead.stdout.strip()}-0badc0de"
    orphan.write_bytes(b"half an upload")
    run([artifact], "feature/x", settings)
    assert sorted(p.name for p in folder.iterdir()) == [
        "demo_1.tar.gz",
        "demo_1.tar.gz.manifest.json",
        "demo_1.tar.gz.sha256",
    ]


def test_file_destination_that_cannot_be_created_fails_clearly(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist")
    (tmp_path / "pub").write_text("a file where the folder should be")
    settings = settings_for(tmp_path, "file:pub/staging", "file:pub/production")
    report = run([artifact], "main", settings)
    folder = tmp_path / "pub/staging/main"
    assert report.results == ()
    assert [(f.role, f.message) for f in report.failures] == [
        (
            "staging",
            f"could not publish demo_1.tar.gz to {(folder / 'demo_1.tar.gz').as_uri()}: "
            f"Not a directory ({folder / 'demo_1.tar.gz'})",
        )
    ]


# ---------------------------------------------------------------------------------------------
# S3 (moto_server on loopback)


@pytest.fixture
def buckets(aws_env: str) -> tuple[str, str]:
    client = s3_client()
    return new_bucket(client, "staging"), new_bucket(client, "production")


@pytest.fixture
def s3_settings(tmp_path: Path, buckets: tuple[str, str]) -> Settings:
    staging, production = buckets
    return settings_for(tmp_path, f"s3://{staging}/mme", f"s3://{production}/models")


@pytest.mark.integration
def test_s3_feature_branch_goes_to_staging_only(
    tmp_path: Path, buckets: tuple[str, str], s3_settings: Settings
) -> None:
    artifact = make_artifact(tmp_path / "dist")
    digest = sha256_of(artifact)
    report = run([artifact], "feature/x", s3_settings)
    assert actions(report) == [("staging", "uploaded")]
    client = s3_client()
    staging, production = buckets
    assert keys(client, staging) == [
        "mme/feature~x/demo_1.tar.gz",
        "mme/feature~x/demo_1.tar.gz.manifest.json",
        "mme/feature~x/demo_1.tar.gz.sha256",
    ]
    assert keys(client, production) == []
    head = client.head_object(Bucket=staging, Key="mme/feature~x/demo_1.tar.gz")
    assert head["Metadata"] == {"sha256": digest, "model": "demo", "version": "1"}
    sidecar = client.get_object(Bucket=staging, Key="mme/feature~x/demo_1.tar.gz.sha256")
    assert sidecar["Body"].read() == f"{digest}  demo_1.tar.gz\n".encode()
    manifest = client.get_object(Bucket=staging, Key="mme/feature~x/demo_1.tar.gz.manifest.json")
    # The build's manifest plus provenance and evidence, added at publish time.
    sent = json.loads(manifest["Body"].read())
    assert {k: v for k, v in sent.items() if k not in ("provenance", "evidence")} == json.loads(
        (tmp_path / "dist/demo_1.tar.gz.manifest.json").read_text()
    )
    assert sent["evidence"]["sha256"] == sent["sha256"] and sent["provenance"]["git"]
    assert report.results[0].destination == f"s3://{staging}/mme/feature~x/demo_1.tar.gz"


@pytest.mark.integration
def test_s3_republish_is_two_head_requests(tmp_path: Path, s3_settings: Settings) -> None:
    """The artifact's sha256, then whether its sidecars (manifest last) describe it."""
    artifact = make_artifact(tmp_path / "dist")
    run([artifact], "feature/x", s3_settings)
    session = boto3.session.Session()
    recorder = Recorder(session)
    report = run([artifact], "feature/x", s3_settings, session=session)
    assert actions(report) == [("staging", "unchanged")]
    assert recorder.operations == [
        ("HeadObject", "mme/feature~x/demo_1.tar.gz"),
        ("HeadObject", "mme/feature~x/demo_1.tar.gz.manifest.json"),
    ]
    assert recorder.sent == 2
    assert report.results[0].requests == 2


@pytest.mark.integration
def test_s3_refuses_different_bytes_and_keeps_the_original(
    tmp_path: Path, buckets: tuple[str, str], s3_settings: Settings
) -> None:
    first = make_artifact(tmp_path / "a", seed=1)
    second = make_artifact(tmp_path / "b", seed=2)
    run([first], "feature/x", s3_settings)
    session = boto3.session.Session()
    recorder = Recorder(session)
    report = run([second], "feature/x", s3_settings, session=session)
    staging = buckets[0]
    assert report.results == ()
    assert [f.message for f in report.failures] == [
        f"s3://{staging}/mme/feature~x/demo_1.tar.gz already holds different bytes (sha256 "
        f"{sha256_of(first)}, local build {sha256_of(second)}); models are immutable: bump "
        "models/demo/model_version.txt\n"
        "members that differ: changed demo_model/1/model.onnx; the model's files changed since "
        "it was published"
    ]
    # One HEAD, then the published manifest to name the members that differ.
    assert recorder.names() == ["HeadObject", "GetObject"]
    body = s3_client().get_object(Bucket=staging, Key="mme/feature~x/demo_1.tar.gz")["Body"]
    assert hashlib.sha256(body.read()).hexdigest() == sha256_of(first)


@pytest.mark.integration
def test_s3_main_publishes_staging_then_copies_to_production_server_side(
    tmp_path: Path, buckets: tuple[str, str], s3_settings: Settings
) -> None:
    artifact = make_artifact(tmp_path / "dist")
    session = boto3.session.Session()
    recorder = Recorder(session)
    report = run([artifact], "main", s3_settings, session=session)
    assert actions(report) == [("staging", "uploaded"), ("production", "copied")]
    staging, production = buckets
    production_writes = [
        name
        for name, key in recorder.operations
        if key.startswith("models/") and name not in ("HeadObject", "ListMultipartUploads")
    ]
    # Production's bytes never pass through this host: CopyObject only (artifact + sidecars).
    assert production_writes == ["CopyObject", "CopyObject", "CopyObject"]
    client = s3_client()
    assert keys(client, production) == [
        "models/demo_1.tar.gz",
        "models/demo_1.tar.gz.manifest.json",
        "models/demo_1.tar.gz.sha256",
    ]
    head = client.head_object(Bucket=production, Key="models/demo_1.tar.gz")
    assert head["Metadata"]["sha256"] == sha256_of(artifact)
    body = client.get_object(Bucket=production, Key="models/demo_1.tar.gz")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha256_of(artifact)
    assert actions(run([artifact], "main", s3_settings)) == [
        ("staging", "unchanged"),
        ("production", "unchanged"),
    ]


@pytest.mark.integration
def test_s3_production_refuses_when_staging_tested_different_bytes(
    tmp_path: Path, buckets: tuple[str, str], s3_settings: Settings
) -> None:
    tested = make_artifact(tmp_path / "tested", seed=1)
    rebuilt = make_artifact(tmp_path / "rebuilt", seed=2)
    run([tested], "main", s3_settings, s3=SMALL_PARTS)
    staging, production = buckets
    client = s3_client()
    client.delete_object(Bucket=production, Key="models/demo_1.tar.gz")  # a fresh production
    report = run([rebuilt], "main", s3_settings)
    assert report.results == ()
    assert [f.message for f in report.failures] == [
        f"refusing to publish demo_1.tar.gz to production: staging "
        f"s3://{staging}/mme/main/demo_1.tar.gz holds different bytes (sha256 "
        f"{sha256_of(tested)}) than the local build (sha256 {sha256_of(rebuilt)}); production "
        "only gets the bytes staging tested: publish the exact artifact staging holds, or bump "
        "models/demo/model_version.txt\n"
        "members that differ: changed demo_model/1/model.onnx; the model's files changed since "
        "it was published"
    ]
    assert "models/demo_1.tar.gz" not in keys(client, production)


@pytest.mark.integration
def test_s3_dry_run_writes_nothing(
    tmp_path: Path, buckets: tuple[str, str], s3_settings: Settings
) -> None:
    artifact = make_artifact(tmp_path / "dist", size=12 * MiB)
    session = boto3.session.Session()
    recorder = Recorder(session)
    report = run([artifact], "main", s3_settings, session=session, dry_run=True)
    staging = buckets[0]
    assert [(r.role, r.action, r.detail) for r in report.results] == [
        ("staging", "dry-run", "would upload 12.0 MiB in 3 parts of 5 MiB"),
        (
            "production",
            "dry-run",
            f"would copy server-side from s3://{staging}/mme/main/demo_1.tar.gz",
        ),
    ]
    assert set(recorder.names()) == {"HeadObject"}
    client = s3_client()
    assert keys(client, buckets[0]) == keys(client, buckets[1]) == []


@pytest.mark.integration
def test_s3_multipart_above_the_threshold_with_the_parts_crc32s(
    tmp_path: Path, buckets: tuple[str, str], s3_settings: Settings
) -> None:
    artifact = make_artifact(tmp_path / "dist", size=12 * MiB)
    session = boto3.session.Session()
    recorder = Recorder(session)
    report = run([artifact], "feature/x", s3_settings, session=session)
    assert [r.detail for r in report.results] == ["12.0 MiB in 3 parts of 5 MiB"]
    assert recorder.names().count("UploadPart") == 3
    client = s3_client()
    head = client.head_object(
        Bucket=buckets[0], Key="mme/feature~x/demo_1.tar.gz", ChecksumMode="ENABLED"
    )
    assert head["ETag"].endswith('-3"')
    # S3's composite checksum (computed by moto from the bytes it received): the CRC32 of the
    # parts' CRC32s, the same as the one of the bytes read.
    data = artifact.read_bytes()
    parts = [zlib.crc32(data[at : at + 5 * MiB]) for at in range(0, len(data), 5 * MiB)]
    composite = zlib.crc32(b"".join(crc.to_bytes(4, "big") for crc in parts))
    expected = base64.b64encode(composite.to_bytes(4, "big")).decode()
    assert head["ChecksumCRC32"] in (f"{expected}-3", expected)  # moto leaves out the -3
    assert head.get("ChecksumType", "COMPOSITE") == "COMPOSITE"
    assert head["Metadata"]["sha256"] == sha256_of(artifact)
    assert client.list_multipart_uploads(Bucket=buckets[0]).get("Uploads", []) == []


@pytest.mark.integration
def test_s3_single_request_upload_stores_the_full_crc32(
    tmp_path: Path, buckets: tuple[str, str], s3_settings: Settings
) -> None:
    artifact = make_artifact(tmp_path / "dist", size=1 * MiB)
    run([artifact], "feature/x", s3_settings)
    head = s3_client().head_object(
        Bucket=buckets[0], Key="mme/feature~x/demo_1.tar.gz", ChecksumMode="ENABLED"
    )
    expected = base64.b64encode(zlib.crc32(artifact.read_bytes()).to_bytes(4, "big")).decode()
    assert head["ChecksumCRC32"] == expected
    assert "-" not in head["ETag"]


@pytest.mark.integration
def test_s3_concurrent_publisher_cannot_be_overwritten(
    tmp_path: Path, buckets: tuple[str, str], s3_settings: Settings
) -> None:
    """Another publisher writes the key between our HEAD and our upload: S3 refuses our write."""
    ours = make_artifact(tmp_path / "ours", size=12 * MiB, seed=1)
    theirs = make_artifact(tmp_path / "theirs", size=12 * MiB, seed=2)
    staging = buckets[0]
    key = "mme/feature~x/demo_1.tar.gz"
    session = boto3.session.Session()
    raced: list[str] = []

    def other_publisher_wins(**_: Any) -> None:
        if not raced:
            raced.append(key)
            s3_client().upload_file(
                str(theirs), staging, key, ExtraArgs={"Metadata": {"sha256": sha256_of(theirs)}}
            )

    session.events.register("after-call.s3.HeadObject", other_publisher_wins)
    report = run([ours], "feature/x", s3_settings, session=session)
    assert [f.message for f in report.failures] == [
        f"s3://{staging}/{key} already holds different bytes (sha256 {sha256_of(theirs)}, local "
        f"build {sha256_of(ours)}); models are immutable: bump models/demo/model_version.txt "
        "(the published manifest cannot be read to compare members) "
        "(written concurrently by another publish)"
    ]
    client = s3_client()
    body = client.get_object(Bucket=staging, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha256_of(theirs)
    assert client.list_multipart_uploads(Bucket=staging).get("Uploads", []) == []
    # The loser writes no sidecar: sidecars come after the artifact, from the winner only.
    assert keys(client, staging) == [key]


@pytest.mark.integration
def test_aws_endpoint_url_is_honoured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_settings: Settings
) -> None:
    """No endpoint is passed by mmetools: boto3 reads AWS_ENDPOINT_URL[_S3] itself."""
    from conftest import free_port

    artifact = make_artifact(tmp_path / "dist")
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    report = run([artifact], "feature/x", s3_settings, attempts=1,
                 s3=S3Tuning(max_attempts=1, connect_timeout=2))  # fmt: skip
    assert len(report.failures) == 1
    message = report.failures[0].message
    assert message.startswith(
        f"could not publish demo_1.tar.gz to s3://{s3_settings.publish.staging_uri[5:]}/feature~x/"
        f"demo_1.tar.gz: EndpointConnectionError: Could not connect to the endpoint URL: "
        f'"{dead}/'
    )
    assert message.endswith("is AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 right and reachable?")


@pytest.mark.integration
def test_aws_endpoint_url_s3_wins_over_aws_endpoint_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_env: str, s3_settings: Settings
) -> None:
    from conftest import free_port

    artifact = make_artifact(tmp_path / "dist")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws_env)
    assert actions(run([artifact], "feature/x", s3_settings)) == [("staging", "uploaded")]


@pytest.mark.integration
def test_aws_profile_is_honoured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_env: str, s3_settings: Settings
) -> None:
    """Credentials and endpoint from a named profile, nothing else in the environment."""
    config = tmp_path / "aws-config"
    config.write_text(f"[profile publisher]\nregion = us-east-1\nendpoint_url = {aws_env}\n")
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(
        "[publisher]\naws_access_key_id = profilekey\naws_secret_access_key = profilesecret\n"
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "publisher")
    artifact = make_artifact(tmp_path / "dist")
    session = boto3.session.Session()
    report = run([artifact], "feature/x", s3_settings, session=session)
    assert actions(report) == [("staging", "uploaded")]
    assert session.get_credentials().access_key == "profilekey"  # type: ignore[union-attr]


def test_unknown_aws_profile_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-such-config"))
    monkeypatch.setenv("AWS_PROFILE", "nope")
    artifact = make_artifact(tmp_path / "dist")
    settings = settings_for(tmp_path, "s3://staging-bucket/mme", "s3://production-bucket")
    with pytest.raises(PublishError) as error:
        run([artifact], "feature/x", settings)
    assert (
        str(error.value) == "cannot set up S3 access: The config profile (nope) could not be found"
    )


@pytest.mark.integration
def test_cli_publish_prints_results_and_a_table(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    buckets: tuple[str, str],
) -> None:
    staging, production = buckets
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MMETOOLS_STAGING_URI", f"s3://{staging}/mme")
    monkeypatch.setenv("MMETOOLS_PRODUCTION_URI", f"s3://{production}")
    make_artifact(tmp_path / "dist", "alpha_1.tar.gz")
    make_artifact(tmp_path / "dist", "beta_2.tar.gz")
    argv = ["publish", "dist/alpha_1.tar.gz", "dist/beta_2.tar.gz", "--branch", "main"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith(("uploaded", "copied"))]
    assert [line.split()[:3] for line in lines] == [
        ["uploaded", "staging", f"s3://{staging}/mme/main/alpha_1.tar.gz"],
        ["copied", "production", f"s3://{production}/alpha_1.tar.gz"],
        ["uploaded", "staging", f"s3://{staging}/mme/main/beta_2.tar.gz"],
        ["copied", "production", f"s3://{production}/beta_2.tar.gz"],
    ]
    assert "publish --branch main" in out
    assert cli.main(argv + ["--dry-run"]) == 0
    assert "unchanged" in capsys.readouterr().out

    make_artifact(tmp_path / "dist", "alpha_1.tar.gz", seed=7)  # different bytes, same name
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert "error: refusing to publish alpha_1.tar.gz to production: staging" in captured.err
    assert "unchanged staging" in captured.out  # beta is still published (no-op)


def test_cli_publish_bad_name_exits_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "demo-1.tar.gz").write_bytes(b"x")
    assert cli.main(["publish", str(tmp_path / "demo-1.tar.gz"), "--branch", "main"]) == 2
    err = " ".join(capsys.readouterr().err.split())  # the console wraps long lines
    assert err.startswith(f"error: {tmp_path}/demo-1.tar.gz: not an artifact name")
    assert "Traceback" not in err
