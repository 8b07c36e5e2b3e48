"""Publishing: destinations, branch rules, immutability, production gets the tested bytes.

S3 tests run against a real HTTP endpoint (moto_server on 127.0.0.1, see conftest.py); folder
destinations run on tmp_path. Request counts come from botocore's own event hooks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from support.release.publish_support import MiB, make_artifact, settings_for, sha256_of

from mmetools import cli
from mmetools.core.errors import ArtifactError, ConfigError, PublishError, UsageError
from mmetools.model.folder import ModelRef, parse_artifact_name
from mmetools.release.publish import (
    branch_from_slug,
    branch_slug,
    is_production_branch,
    load_local_artifact,
    plan_targets,
    publish,
)
from mmetools.release.storage import describe_size, parse_destination, stale_uploads
from support.release.publish_tests_support import actions, run

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
        ("main", "main"),
        ("dependabot/pip/boto3-1.35.0", "dependabot~pip~boto3-1.35.0"),
        ("a.b", "a.b"),
        ("caf\u00e9", "caf_c3_a9"),
    ],
)
def test_branch_slug(branch: str, slug: str) -> None:
    assert branch_slug(branch) == slug
    assert branch_from_slug(slug) == branch


def test_branch_slugs_do_not_collide() -> None:
    # Before: all of these became "main" and the first one blocked the real main's publish.
    branches = ["main", "Main", "MAIN", "main-", "ma_in", "ma/in", "ma-in", "m/ain", "ma.in"]
    slugs = [branch_slug(branch) for branch in branches]
    assert len(set(slugs)) == len(branches), dict(zip(branches, slugs))


@pytest.mark.parametrize(
    ("branch", "message"),
    [
        ("", "--branch '': not a usable branch name (it is empty)"),
        (
            "refs/heads/main",
            "--branch 'refs/heads/main': not a branch's short name (it looks like a ref, so it "
            "could pass for another branch); give the name as `git branch --show-current` prints "
            "it",
        ),
        (
            " main",
            "--branch ' main': not a branch's short name (it contains ' '); give the name "
            "as `git branch --show-current` prints it",
        ),
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


@pytest.mark.parametrize(
    "branch",
    ["refs/heads/main", "heads/main", "HEAD", "main\n", "-main", "main/", ".main", "x/.y", "a..b",
     "main.lock", "a@{1}", "a~1", "a:b", "a b", "a//b"],
)  # fmt: skip
def test_ref_looking_or_invalid_branches_never_count_as_production(
    branch: str, tmp_path: Path
) -> None:
    """Issue 20 #3: `refs/heads/main` (a branch name git accepts) published to production and
    to staging's main folder, because refs/heads/ was stripped."""
    settings = settings_for(tmp_path, "file:pub/s", "file:pub/p")
    with pytest.raises(UsageError):
        is_production_branch(branch, settings)
    artifact = make_artifact(tmp_path / "dist")
    with pytest.raises(UsageError):
        publish([artifact], branch, settings=settings)
    assert not (tmp_path / "pub").exists()
    assert is_production_branch("main", settings)
    assert not is_production_branch("Main", settings)


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
    from mmetools.core.atomic import link_create_only as real_link

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


def test_cli_publish_bad_name_exits_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "demo-1.tar.gz").write_bytes(b"x")
    assert cli.main(["publish", str(tmp_path / "demo-1.tar.gz"), "--branch", "main"]) == 2
    err = " ".join(capsys.readouterr().err.split())  # the console wraps long lines
    assert err.startswith(f"error: {tmp_path}/demo-1.tar.gz: not an artifact name")
    assert "Traceback" not in err
