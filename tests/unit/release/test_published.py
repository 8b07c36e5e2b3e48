"""Finding and fetching the published version a candidate replaces (file: and s3:// stores)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.release.publish_support import make_artifact, settings_for

from mmetools.core.errors import ArtifactError, UsageError
from mmetools.release.published import fetch_published, find_previous
from support.release.published_support import _publish


def test_the_highest_version_below_the_candidate_is_found_in_production(tmp_path: Path) -> None:
    staging, production = (tmp_path / "s").as_uri(), (tmp_path / "p").as_uri()
    _publish(
        tmp_path,
        tmp_path,
        staging,
        production,
        "demo_1.tar.gz",
        "demo_3.tar.gz",
        "demo_7.tar.gz",
        "other_5.tar.gz",
    )
    settings = settings_for(tmp_path, staging, production)
    found = find_previous("demo", 5, settings)
    assert found is not None and (found.role, found.version) == ("production", 3)
    assert find_previous("demo", 1, settings) is None  # the first version has no previous
    assert find_previous("missing", 9, settings) is None


def test_staging_is_searched_in_the_branch_folder(tmp_path: Path) -> None:
    staging, production = (tmp_path / "s").as_uri(), (tmp_path / "p").as_uri()
    _publish(tmp_path, tmp_path, staging, production, "demo_2.tar.gz", branch="feature/x")
    settings = settings_for(tmp_path, staging, production)
    assert find_previous("demo", 3, settings, against="production") is None
    assert find_previous("demo", 3, settings, against="auto") is None  # no branch: no staging
    found = find_previous("demo", 3, settings, against="staging", branch="feature/x")
    assert found is not None and (found.role, found.version) == ("staging", 2)
    assert found.key == "feature~x/demo_2.tar.gz"  # branch_slug("feature/x")
    with pytest.raises(UsageError, match="--against staging needs --branch"):
        find_previous("demo", 3, settings, against="staging")


def test_a_fetched_artifact_is_checked_against_its_sha256(tmp_path: Path) -> None:
    staging, production = (tmp_path / "s").as_uri(), (tmp_path / "p").as_uri()
    _publish(tmp_path, tmp_path, staging, production, "demo_1.tar.gz")
    settings = settings_for(tmp_path, staging, production)
    found = find_previous("demo", 2, settings)
    assert found is not None
    fetched = fetch_published(found, tmp_path / "fetched")
    assert fetched.read_bytes() == (tmp_path / "dist" / "demo_1.tar.gz").read_bytes()
    # Broken case: the published bytes no longer match their .sha256.
    (tmp_path / "p" / "demo_1.tar.gz").write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="the fetched bytes have sha256"):
        fetch_published(found, tmp_path / "again")


def test_against_a_path_names_a_local_artifact(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, (tmp_path / "s").as_uri(), (tmp_path / "p").as_uri())
    artifact = make_artifact(tmp_path / "dist", "demo_4.tar.gz")
    found = find_previous("demo", 9, settings, against=str(artifact))
    assert found is not None and (found.role, found.version, found.path) == ("path", 4, artifact)
    with pytest.raises(UsageError, match="not staging, production or an artifact file"):
        find_previous("demo", 9, settings, against=str(tmp_path / "nope.tar.gz"))
    with pytest.raises(UsageError, match="an artifact of 'demo', not of 'other'"):
        find_previous("other", 9, settings, against=str(artifact))
