"""The static artifact audit: each check refuses its deliberately broken artifact, naming the step,
the file and both versions, and the publish gate writes nothing."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from mmetools.build import audit
from mmetools.build.audit import audit_artifact, require_audit, require_audit_of
from mmetools.cli import main
from mmetools.core.errors import ArtifactError
from mmetools.core.targets import ServingTarget, resolve_target

TARGET_2412 = resolve_target("nvcr.io/nvidia/tritonserver:24.12-py3")
TARGET_2409 = resolve_target(
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/sagemaker-tritonserver:24.09-py3"
)
STEP = "demo_preprocessing"
CONFIG = b'name: "demo_pipeline"\nplatform: "ensemble"\n'


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", link: str | None = None) -> None:
    info = tarfile.TarInfo(name)
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def env_bytes(
    python: str = "3.12",
    interpreter: str = "/usr/bin/python3.12",
    home: str = "/usr/bin",
    numpy: str = "1.26.4",
    extra: dict[str, bytes] | None = None,
) -> bytes:
    """A venv-pack-shaped env archive (only what the audit reads)."""
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w:gz") as tar:
        _add(tar, "pyvenv.cfg", f"home = {home}\nversion = {python}\n".encode())
        _add(tar, "bin/activate", b"# activate\n")
        _add(tar, "bin/python", link=interpreter)
        _add(tar, "bin/python3", link="python")
        site = f"lib/python{python}/site-packages"
        _add(tar, f"{site}/numpy-{numpy}.dist-info/METADATA", b"Name: numpy\n")
        _add(tar, f"{site}/numpy/__init__.py", b"")
        for name, data in (extra or {}).items():
            _add(tar, name, data)
    return stream.getvalue()


def artifact(tmp_path: Path, env: bytes, name: str = "demo_1.tar.gz") -> Path:
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "demo_pipeline/config.pbtxt", CONFIG)
        _add(tar, f"{STEP}/config.pbtxt", b'name: "demo_preprocessing"\nbackend: "python"\n')
        _add(tar, f"{STEP}/python_env.tar.gz", env)
    return path


def errors(path: Path, target: ServingTarget = TARGET_2412) -> list[str]:
    return [str(f) for f in audit_artifact(path, target).errors]


def test_a_correct_env_passes(tmp_path: Path) -> None:
    report = audit_artifact(artifact(tmp_path, env_bytes()), TARGET_2412)
    assert report.ok, report.findings
    assert report.envs[0].python_version == "3.12"
    assert report.envs[0].interpreter == "/usr/bin/python3.12"


def test_env_for_311_refused_for_a_312_target(tmp_path: Path) -> None:
    path = artifact(tmp_path, env_bytes("3.11", "/usr/bin/python3.11"))
    found = errors(path)
    assert (
        f"{STEP}/python_env.tar.gz:lib/python3.11: env is for Python 3.11, but target "
        f"{TARGET_2412.image} runs Python 3.12 (its python backend stub); rebuild the env for "
        "the target"
    ) in found


def test_interpreter_outside_the_target_prefix_refused(tmp_path: Path) -> None:
    local = "/opt/pyenv/versions/3.12.1/bin/python3.12"
    found = errors(artifact(tmp_path, env_bytes(interpreter=local, home="/opt/pyenv/bin")))
    assert any(
        f.startswith(f"{STEP}/python_env.tar.gz:bin/python: resolves to {local}, outside")
        for f in found
    ), found
    assert any(
        "pyvenv.cfg: home = /opt/pyenv/bin" in f and "/usr/bin/python3.12" in f for f in found
    )


def test_numpy_2_refused_for_a_pre_2411_target(tmp_path: Path) -> None:
    path = artifact(tmp_path, env_bytes("3.10", "/usr/bin/python3.10", numpy="2.1.3"))
    found = errors(path, TARGET_2409)
    assert any("numpy-2.1.3.dist-info: numpy 2.1.3, but target" in f and "predates" in f
               for f in found), found  # fmt: skip
    # the same env is fine where the python backend takes numpy 2
    assert not errors(artifact(tmp_path, env_bytes(numpy="2.1.3"), "demo_2.tar.gz"))


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not on PATH")
def test_shared_object_needing_a_newer_glibc_refused(tmp_path: Path) -> None:
    # arc4random is GLIBC_2.36: newer than 24.09's glibc 2.35, within 24.12's 2.39.
    source = tmp_path / "needs.c"
    source.write_text("#include <stdlib.h>\nunsigned int f(void) { return arc4random(); }\n")
    library = tmp_path / "needs.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    member = "lib/python3.10/site-packages/needs.so"
    env = env_bytes("3.10", "/usr/bin/python3.10", extra={member: library.read_bytes()})
    found = errors(artifact(tmp_path, env), TARGET_2409)
    assert (
        f"{STEP}/python_env.tar.gz:{member}: needs GLIBC_2.36, but target {TARGET_2409.image} "
        "has GLIBC 2.35: it would not load there (use a wheel for manylinux within 2.35)"
    ) in found


def test_hard_links_absolute_links_and_build_paths_refused(tmp_path: Path) -> None:
    stream = io.BytesIO(env_bytes())
    # add a hard link and an absolute link out of the image to a copy of a good env
    raw = io.BytesIO()
    with (
        tarfile.open(fileobj=stream, mode="r:gz") as source,
        tarfile.open(fileobj=raw, mode="w:gz") as tar,
    ):
        for member in source:
            tar.addfile(member, source.extractfile(member) if member.isfile() else None)
        hard = tarfile.TarInfo("bin/hard")
        hard.type, hard.linkname = tarfile.LNKTYPE, "bin/activate"
        tar.addfile(hard)
        _add(tar, "lib/libssl.so", link="/home/builder/lib/libssl.so")
        _add(tar, "bin/tool", b"#!/home/builder/env/bin/python\n")
    found = errors(artifact(tmp_path, raw.getvalue()))
    assert any("bin/hard: hard link" in f for f in found)
    assert any("lib/libssl.so: absolute symlink to /home/builder/lib/libssl.so" in f for f in found)
    assert any(
        "bin/tool: names a build-machine path (/home/builder/env/bin/python" in f for f in found
    )


def test_sagemaker_layout_rules(tmp_path: Path) -> None:
    path = tmp_path / "demo 1.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "wrapper/demo_pipeline/config.pbtxt", CONFIG)
    found = errors(path)
    assert any("not a TargetModel-safe name" in f for f in found)
    assert any("root entries without a config.pbtxt" in f and "wrapper" in f for f in found)
    assert any("exactly one ensemble config at the root, found 0" in f for f in found)


def test_gate_names_the_step_and_inspect_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = artifact(tmp_path, env_bytes("3.11", "/usr/bin/python3.11"))
    with pytest.raises(ArtifactError, match=r"^publish: demo_1.tar.gz fails the audit for target "):
        require_audit(audit_artifact(path, TARGET_2412), "publish")
    assert main(["inspect", str(path), "--target", TARGET_2412.image]) == 1
    assert "REFUSED" in capsys.readouterr().out
    assert main(["inspect", str(artifact(tmp_path, env_bytes(), "demo_2.tar.gz")), "--json"]) == 0


def test_publish_refuses_a_2409_artifact_for_a_2412_target_writing_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    path = artifact(dist, env_bytes("3.10", "/usr/bin/python3.10"))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (dist / "demo_1.tar.gz.sha256").write_text(f"{digest}  demo_1.tar.gz\n")
    from mmetools.build.manifest import Manifest, ManifestMember, write_manifest

    size = path.stat().st_size
    write_manifest(dist / "demo_1.tar.gz.manifest.json", Manifest(
        model="demo", version=1, sha256=digest, size=size, uncompressed_size=size,
        members=(ManifestMember(STEP, "dir"),),
        triton_version="2.51.0", mmetools_version="0", model_folder="models/demo",
    ))  # fmt: skip
    staging = tmp_path / "staging"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MMETOOLS_TARGET_IMAGE", TARGET_2412.image)
    monkeypatch.setenv("MMETOOLS_STAGING_URI", f"file:{staging}")
    monkeypatch.setenv("MMETOOLS_PRODUCTION_URI", f"file:{tmp_path / 'production'}")
    assert main(["publish", str(path), "--branch", "feature"]) == 1
    err = capsys.readouterr().err
    assert "publish: demo_1.tar.gz fails the audit" in err
    assert "env is for Python 3.10, but target" in err and "runs Python 3.12" in err
    assert not staging.exists() and not (tmp_path / "production").exists()


def test_a_pass_is_remembered_for_these_bytes_and_this_target_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Publishing what `package` just audited does not decompress it again; other bytes, another
    target or a failing artifact are audited every time."""
    cache = tmp_path / "cache"
    good = artifact(tmp_path, env_bytes())
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    calls: list[str] = []
    real = audit.audit_artifact

    def counting(path: Path, target: ServingTarget, **kwargs: object) -> audit.AuditReport:
        calls.append(target.image)
        return real(path, target, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(audit, "audit_artifact", counting)
    for _ in range(2):
        require_audit_of(good, TARGET_2412, "publish", sha256=digest, cache_dir=cache)
    assert calls == [TARGET_2412.image]
    # The same bytes for another target: audited, and refused there (an env for 3.12).
    with pytest.raises(ArtifactError, match="fails the audit for target"):
        require_audit_of(good, TARGET_2409, "publish", sha256=digest, cache_dir=cache)
    with pytest.raises(ArtifactError, match="fails the audit for target"):
        require_audit_of(good, TARGET_2409, "publish", sha256=digest, cache_dir=cache)
    assert calls == [TARGET_2412.image] + [TARGET_2409.image] * 2
    # Other bytes under the same name: audited again.
    bad = artifact(tmp_path, env_bytes("3.11", "/usr/bin/python3.11"))
    other = hashlib.sha256(bad.read_bytes()).hexdigest()
    with pytest.raises(ArtifactError, match="env is for Python 3.11"):
        require_audit_of(bad, TARGET_2412, "publish", sha256=other, cache_dir=cache)
    assert len(calls) == 4


# --------------------------------------------------------------------------------------------
# Issue 20: the audit streams (defect 17) and runs the secret rules over every member (defect 5)


def _big_artifact(tmp_path: Path, size: int, name: str) -> Path:
    """An artifact whose env holds an ELF-looking file and a plain file of ``size`` bytes each,
    beside a weight file of ``size`` bytes (incompressible: the archive is as big)."""
    import os

    block = os.urandom(1 << 20)
    payload = (block * (size // len(block) + 1))[:size]
    env = env_bytes(extra={"lib/libbig.so": b"\x7fELF" + payload, "lib/data.bin": payload})
    path = tmp_path / name
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        _add(tar, "demo_pipeline/config.pbtxt", CONFIG)
        _add(tar, f"{STEP}/config.pbtxt", b'name: "demo_preprocessing"\nbackend: "python"\n')
        _add(tar, f"{STEP}/1/weights.bin", payload)
        _add(tar, f"{STEP}/python_env.tar.gz", env)
    return path


def _peak_bytes(path: Path) -> int:
    import gc
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    try:
        report = audit_artifact(path, TARGET_2412)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        assert report.ok, report.errors


def test_audit_memory_does_not_grow_with_member_size(tmp_path: Path) -> None:
    """Defect 17: the audit read every packed env, and every member of it, whole: a 28 MB artifact
    needed 4.2 GB of RSS. Peak Python allocation for members of 40 MB is that for 1 MB, within a
    few chunks (the env's own bytes are built in memory before tracing starts)."""
    small = _peak_bytes(_big_artifact(tmp_path, 1 << 20, "small_1.tar.gz"))
    large = _peak_bytes(_big_artifact(tmp_path, 40 << 20, "large_1.tar.gz"))
    print(f"peak traced: 1 MB members {small / 1e6:.1f} MB, 40 MB members {large / 1e6:.1f} MB")
    assert large - small < 8 << 20


def _artifact_with(tmp_path: Path, files: dict[str, bytes], env: bytes | None = None) -> Path:
    path = tmp_path / "demo_1.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "demo_pipeline/config.pbtxt", CONFIG)
        _add(tar, f"{STEP}/config.pbtxt", b'name: "demo_preprocessing"\nbackend: "python"\n')
        if env is not None:
            _add(tar, f"{STEP}/python_env.tar.gz", env)
        for name, data in files.items():
            _add(tar, name, data)
    return path


def test_inspect_refuses_secrets_in_any_member_and_notes_where_it_could_not_look(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Defect 5: a GitHub token, a kubeconfig, a Slack webhook and an API key in a *.bak shipped
    (an artifact not made by `package`, or before these rules) and `inspect` said ok."""
    import gzip

    token = b"ghp_" + b"A1b2C3d4E5" * 3 + b"F6g7H8"
    path = _artifact_with(
        tmp_path,
        {
            f"{STEP}/1/model.py": b"TOKEN = '" + token + b"'\n",
            f"{STEP}/1/settings.bak": b'API_KEY = "a8f5f167f44f4964e6c998dee827110c"\n',
            f"{STEP}/1/big.txt": b"x" * (3 << 20) + b"AKIA" + b"ABCDEFGHIJKLMNOP\n",
            f"{STEP}/1/kubeconfig": b"apiVersion: v1\n",
            f"{STEP}/1/vocab.txt.gz": gzip.compress(b"hello\n"),
        },
        env_bytes(),
    )
    assert main(["inspect", str(path)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    for member, rule in (("model.py", "github-token"), ("settings.bak", "api-key"),
                         ("big.txt", "aws-access-key-id")):  # fmt: skip
        assert (f"error: {STEP}/1/{member}: looks like a secret (rule {rule}): remove it from "
                "the model folder") in out  # fmt: skip
    assert f"error: {STEP}/1/kubeconfig: its name is that of a secret" in out
    assert (f"note: {STEP}/1/vocab.txt.gz: gzip-compressed: the secret rules did not look "
            "inside") in out  # fmt: skip
    assert f"note: {STEP}/python_env.tar.gz: gzip-compressed: the secret rules did not" in out
    assert "demo_1.tar.gz: REFUSED" in out


def test_inspect_passes_an_artifact_without_secrets_and_still_notes_the_env(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _artifact_with(tmp_path, {f"{STEP}/1/model.py": b"api_key = os.environ['API_KEY']\n"},
                          env_bytes())  # fmt: skip
    assert main(["inspect", str(path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "demo_1.tar.gz: ok" in out and "note: demo_preprocessing/python_env.tar.gz" in out
