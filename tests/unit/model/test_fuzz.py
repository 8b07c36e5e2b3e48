"""The fuzz tier: hypothesis mutates example configs, fixtures, manifests, settings and tarball
member lists; the CLI (``mmetools.cli.main`` in-process) must exit 0, 1 or 2 with a message and
never raise or print a traceback; the tarball check must refuse or allow, never let a member out.

The default run is bounded (FEW examples per property, a per-example deadline: well under a
minute in all); ``pytest -m fuzz tests/unit/model/test_fuzz.py`` runs the same properties with MANY examples.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.fuzz import (
    FEW,
    JSON_VALUES,
    MANY,
    bounded,
    assert_clean_exit,
    marked,
    mutated,
    replace_somewhere,
    run_cli,
)

from conftest import MODELS_DIR
from mmetools.core.errors import ArtifactError
from mmetools.testing.artifact_test import check_artifact, unpack_artifact

MODEL = "screen_detector"
CASE = f"{MODEL}/tests/fixtures/screen_photo_png.json"
CONFIGS = [
    f"{MODEL}/{MODEL}_{step}/config.pbtxt"
    for step in ("pipeline", "preprocessing", "inferencer", "postprocessing")
]
COPY_IGNORE = shutil.ignore_patterns(
    "python_env.tar.gz", ".python_env.json", "__pycache__", ".mypy_cache", "model.onnx"
)

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-template")
    shutil.copytree(MODELS_DIR / MODEL, root / MODEL, ignore=COPY_IGNORE)
    return root


@contextlib.contextmanager
def fresh_copy(template: Path) -> Iterator[Path]:
    """A fresh copy of the model as the current folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        root = Path(folder)
        shutil.copytree(template / MODEL, root / MODEL)
        with contextlib.chdir(root):
            yield root


# -------------------------------------------------------------------------------------------------
# Properties


def config_property(template: Path, index: int, mutation: bytes) -> None:
    with fresh_copy(template) as root:
        (root / CONFIGS[index]).write_bytes(mutation)
        assert_clean_exit(*run_cli(["validate", MODEL]), allowed=(0, 1))


def fixture_property(template: Path, path: list[int], value: Any) -> None:
    with fresh_copy(template) as root:
        document = json.loads((root / CASE).read_text())
        (root / CASE).write_text(json.dumps(replace_somewhere(document, path, value)))
        assert_clean_exit(*run_cli(["fixtures", "check", MODEL]), allowed=(0, 1))


def fixture_bytes_property(template: Path, mutation: bytes) -> None:
    with fresh_copy(template) as root:
        (root / CASE).write_bytes(mutation)
        assert_clean_exit(*run_cli(["fixtures", "check", MODEL]), allowed=(0, 1))


def settings_property(template: Path, mutation: bytes) -> None:
    with fresh_copy(template) as root:
        (root / "mmetools.toml").write_bytes(mutation)
        assert_clean_exit(*run_cli(["targets"]))


def manifest_property(template: Path, path: list[int], value: Any) -> None:
    from support.release.publish_support import make_artifact

    with fresh_copy(template) as root:
        (root / "mmetools.toml").write_text(
            '[publish]\nstaging_uri = "file:pub/staging"\nproduction_uri = "file:pub/prod"\n'
        )
        artifact = make_artifact(root / "dist")
        manifest = artifact.with_name("demo_1.tar.gz.manifest.json")
        document = json.loads(manifest.read_text())
        manifest.write_text(json.dumps(replace_somewhere(document, path, value)))
        code, text = run_cli(["publish", "dist/demo_1.tar.gz", "--branch", "feature/x"])
        assert_clean_exit(code, text)


MEMBER_NAMES = st.lists(
    st.sampled_from(["a", "b", "..", ".", "", "/", "\x00", "c d", "\u00e9"]), min_size=1, max_size=4
).map("/".join)
MEMBER_KINDS = st.sampled_from(
    [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE,
     tarfile.CHRTYPE]
)  # fmt: skip
MEMBERS = st.lists(st.tuples(MEMBER_NAMES, MEMBER_KINDS, MEMBER_NAMES, st.integers(0, 64)),
                   max_size=6)  # fmt: skip


def tarball_property(members: list[tuple[str, bytes, str, int]]) -> None:
    with tempfile.TemporaryDirectory(prefix="fuzz-tar-") as folder:
        root = Path(folder)
        path = root / "demo_1.tar.gz"
        with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
            for name, kind, link, size in members:
                info = tarfile.TarInfo(name)
                info.type = kind
                info.linkname = link
                info.size = size if kind == tarfile.REGTYPE else 0
                tar.addfile(info, io.BytesIO(b"x" * info.size) if info.size else None)
        destination = root / "out" / "repository"
        try:
            check_artifact(path)
            unpack_artifact(path, destination, max_unpacked=1024 * 1024)
        except ArtifactError as e:
            assert str(e).startswith(str(path)), e
            return
        for found in destination.rglob("*"):  # nothing outside, nothing but files and folders
            assert found.resolve().is_relative_to(destination.resolve()), found
            assert found.is_file() or found.is_dir(), found
        assert {p.name for p in root.iterdir()} == {"demo_1.tar.gz", "out"}


# -------------------------------------------------------------------------------------------------
# The bounded run (every CI run) and the long run (-m fuzz), one pair per property


def _pair(examples: int, marks: list[pytest.MarkDecorator]) -> dict[str, Callable[..., None]]:
    configs = st.integers(0, len(CONFIGS) - 1).flatmap(
        lambda i: st.tuples(st.just(i), mutated((MODELS_DIR / CONFIGS[i])
                                                  .read_text()))  # fmt: skip
    )
    case_text = (MODELS_DIR / CASE).read_text()
    paths = st.lists(st.integers(0, 10), max_size=5)

    @bounded(examples)
    @given(configs)
    def configs_test(template: Path, drawn: tuple[int, bytes]) -> None:
        config_property(template, *drawn)

    @bounded(examples)
    @given(paths, JSON_VALUES)
    def fixtures_test(template: Path, path: list[int], value: Any) -> None:
        fixture_property(template, path, value)

    @bounded(examples)
    @given(mutated(case_text))
    def fixture_bytes_test(template: Path, mutation: bytes) -> None:
        fixture_bytes_property(template, mutation)

    @bounded(examples)
    @given(mutated((MODELS_DIR.parent / "mmetools.toml").read_text()))
    def settings_test(template: Path, mutation: bytes) -> None:
        settings_property(template, mutation)

    @bounded(examples)
    @given(paths, JSON_VALUES)
    def manifests_test(template: Path, path: list[int], value: Any) -> None:
        manifest_property(template, path, value)

    @bounded(examples * 4)
    @given(MEMBERS)
    def tarballs_test(members: list[tuple[str, bytes, str, int]]) -> None:
        tarball_property(members)

    return marked(
        {
            "configs": configs_test,
            "fixtures": fixtures_test,
            "fixture_bytes": fixture_bytes_test,
            "settings": settings_test,
            "manifests": manifests_test,
            "tarballs": tarballs_test,
        },
        marks,
    )


_SHORT = _pair(FEW, [])
_LONG = _pair(MANY, [pytest.mark.fuzz])

test_mutated_configs_exit_cleanly = _SHORT["configs"]
test_mutated_fixtures_exit_cleanly = _SHORT["fixtures"]
test_mutated_fixture_bytes_exit_cleanly = _SHORT["fixture_bytes"]
test_mutated_settings_exit_cleanly = _SHORT["settings"]
test_mutated_manifests_are_refused_cleanly = _SHORT["manifests"]
test_tarball_member_lists_never_escape = _SHORT["tarballs"]
test_long_mutated_configs = _LONG["configs"]
test_long_mutated_fixtures = _LONG["fixtures"]
test_long_mutated_fixture_bytes = _LONG["fixture_bytes"]
test_long_mutated_settings = _LONG["settings"]
test_long_mutated_manifests = _LONG["manifests"]
test_long_tarball_member_lists = _LONG["tarballs"]
