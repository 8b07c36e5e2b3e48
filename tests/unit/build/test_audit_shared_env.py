"""The audit of the model's one env at the artifact's root and of envs layered on the image:
references from the configs, unused envs, and requirements proven packed or provided."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from mmetools.build.audit import audit_artifact
from mmetools.core.targets import resolve_target
from unit.build.test_audit import CONFIG, TARGET_2412, _add

SITE = "lib/python3.12/site-packages"
SHARED = "demo_env.tar.gz"
REFERENCE = (
    b'name: "{step}"\nbackend: "python"\nparameters: {{ key: "EXECUTION_ENV_PATH", value: '
    b'{{ string_value: "$$TRITON_MODEL_DIRECTORY/../demo_env.tar.gz" }} }}\n'
)


def layered_env(layered: bool = True, requires: bytes = b"Requires-Dist: numpy>=1.22\n") -> bytes:
    """A pillow-only env whose pillow needs numpy (which the 24.12 image provides)."""
    stream = io.BytesIO()
    system = b"true" if layered else b"false"
    with tarfile.open(fileobj=stream, mode="w:gz") as tar:
        _add(tar, "pyvenv.cfg", b"home = /usr/bin\ninclude-system-site-packages = " + system
             + b"\nversion = 3.12\n")  # fmt: skip
        _add(tar, "bin/activate", b"# activate\n")
        _add(tar, "bin/python", link="/usr/bin/python3.12")
        _add(tar, f"{SITE}/pillow-13.0.0.dist-info/METADATA",
             b"Metadata-Version: 2.1\nName: pillow\n" + requires
             + b'Requires-Dist: pytest; extra == "tests"\n\nA long description\n')  # fmt: skip
        _add(tar, f"{SITE}/PIL/__init__.py", b"")
    return stream.getvalue()


def shared_artifact(tmp_path: Path, env: bytes | None, steps: tuple[str, ...] = ("pre", "post"),
                    referenced: bool = True) -> Path:  # fmt: skip
    path = tmp_path / "demo_1.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        if env is not None:
            _add(tar, SHARED, env)
        _add(tar, "demo_pipeline/config.pbtxt", CONFIG)
        for step in steps:
            config = REFERENCE if referenced else b'name: "{step}"\nbackend: "python"\n'
            _add(tar, f"demo_{step}/config.pbtxt", config.replace(b"{step}", step.encode())
                 .replace(b"{{", b"{").replace(b"}}", b"}"))  # fmt: skip
    return path


def test_one_env_at_the_root_referenced_by_every_step_and_layered_on_the_image(
    tmp_path: Path,
) -> None:
    report = audit_artifact(shared_artifact(tmp_path, layered_env()), TARGET_2412)
    assert report.ok, report.findings
    (env,) = report.envs
    assert env.archive == SHARED and env.system_site_packages and env.from_image == ("numpy",)
    assert env.numpy == "1.26.4"  # the image's, which the env sees


def test_a_requirement_neither_packed_nor_in_the_image_is_an_error(tmp_path: Path) -> None:
    """Broken cases: not layered (cannot see the image's numpy), and an image without numpy."""
    not_layered = audit_artifact(shared_artifact(tmp_path, layered_env(False)), TARGET_2412)
    assert any("needs numpy>=1.22, which neither the env packs (include-system-site-packages "
               "is false)" in str(f) for f in not_layered.errors)  # fmt: skip
    old = resolve_target("nvcr.io/nvidia/tritonserver:24.05-py3", {"python_version": "3.12",
                         "interpreter_path": "/usr/bin/python3.12"})  # fmt: skip
    no_numpy = audit_artifact(shared_artifact(tmp_path, layered_env()), old)
    assert any("needs numpy>=1.22, which neither the env packs nor the image (no packages "
               "recorded for it)" in str(f) for f in no_numpy.errors)  # fmt: skip


def test_a_config_naming_an_env_the_artifact_lacks_is_an_error(tmp_path: Path) -> None:
    report = audit_artifact(shared_artifact(tmp_path, None), TARGET_2412)
    assert [str(f) for f in report.errors] == [
        f"demo_{step}/config.pbtxt: EXECUTION_ENV_PATH names demo_env.tar.gz, which the artifact "
        "does not hold"
        for step in ("post", "pre")
    ]


def test_an_env_no_config_references_is_a_warning(tmp_path: Path) -> None:
    report = audit_artifact(shared_artifact(tmp_path, layered_env(), referenced=False), TARGET_2412)
    assert report.ok
    assert [str(f) for f in report.findings if f.severity == "warning"] == [
        "demo_1.tar.gz:demo_env.tar.gz: no step's EXECUTION_ENV_PATH references it: shipped for "
        "nothing"
    ]


def test_inspect_shows_the_images_numpy_for_a_layered_env(tmp_path: Path) -> None:
    from rich.console import Console

    from mmetools.rendering.tables import audit_table

    report = audit_artifact(shared_artifact(tmp_path, layered_env(requires=b"")), TARGET_2412)
    console = Console(width=250, record=True)
    console.print(audit_table(report, TARGET_2412))
    assert "1.26.4 (image)" in console.export_text()
