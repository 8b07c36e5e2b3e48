"""Helpers shared by the publishing tests: artifacts on disk, buckets on moto, settings."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import os
import random
import uuid
from collections.abc import Mapping
from pathlib import Path

import boto3
from mypy_boto3_s3 import S3Client

from mmetools.release.evidence import (
    ARTIFACT_TEST,
    Evidence,
    RecordedTest,
    EvidenceTarget,
    EvidenceRun,
    evidence_path,
    write_evidence,
)
from mmetools.release.evidence_key import EvidenceKey, load_evidence_key
from mmetools.build.manifest import Manifest, ManifestMember, write_manifest
from mmetools.core.settings import Settings, load_settings

MiB = 1024 * 1024


def make_artifact(
    folder: Path,
    name: str = "demo_1.tar.gz",
    size: int = 64 * 1024,
    seed: int = 0,
    *,
    evidence: bool = True,
) -> Path:
    """An artifact with its .sha256, manifest and (unless ``evidence=False``) passing evidence,
    as `mmetools build` leaves them in its --out folder.

    A real (tiny) model repository that passes the audit, whose one weight file is ``size``
    pseudo-random bytes (incompressible, like weights): the tarball is a little over ``size``.
    The evidence is a stand-in for the tests publishing tests do not run (test_pipeline.py and
    test_evidence.py cover evidence written by real test runs).
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    model_name = name.removesuffix(".tar.gz").rsplit("_", 1)[0]
    # Seeded pseudo-random bytes: incompressible like real weights, the same for the same seed.
    rng = random.Random(f"{name}:{seed}")  # in 1 MiB draws: randbytes caps at 256 MiB
    weights = b"".join(rng.randbytes(min(MiB, size - at)) for at in range(0, size, MiB))
    members = {
        f"{model_name}_pipeline/config.pbtxt": b'platform: "ensemble"\n',
        f"{model_name}_inferencer/config.pbtxt": b'platform: "onnxruntime_onnx"\n',
        f"{model_name}_inferencer/1/model.onnx": weights,
    }
    with (
        path.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=1) as gz,
    ):
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for member, data in members.items():
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    digest = sha256_of(path)
    path.with_name(name + ".sha256").write_text(f"{digest}  {name}\n", encoding="utf-8")
    model, version = name.removesuffix(".tar.gz").rsplit("_", 1)
    manifest = Manifest(
        model=model,
        version=int(version),
        sha256=digest,
        size=path.stat().st_size,
        uncompressed_size=size,
        members=(ManifestMember(f"{model}_model", "dir"),
                 ManifestMember(f"{model}_model/1/model.onnx", "file", size, digest)),  # fmt: skip
        triton_version="2.51.0",
        mmetools_version="0",
        model_folder=f"models/{model}",
    )
    write_manifest(path.with_name(f"{model}_{version}.tar.gz.manifest.json"), manifest)
    if evidence:
        write_passing_evidence(path, digest)
    return path


def signing_key_for_tests() -> EvidenceKey:
    """The key this test process signs with: the per-user key of the tests' cache folder (or
    MMETOOLS_EVIDENCE_KEY), the one publish verifies with."""
    key = load_evidence_key(Path(os.environ["MMETOOLS_CACHE_DIR"]), create=True)
    assert key is not None
    return key


def write_passing_evidence(
    path: Path,
    sha256: str,
    *,
    target: EvidenceTarget | None = None,
    commit: str = "unknown",
    key: EvidenceKey | None = None,
) -> Evidence:
    """Signed passing evidence of an MME artifact test for ``sha256``: a stand-in for the test
    run publishing tests do not repeat (for the default [target] unless ``target``)."""
    record = RecordedTest(ARTIFACT_TEST, True, "2.51.0", "bundled", "image", ())
    target = target or EvidenceTarget.of(load_settings(root=path.parent).target)
    evidence = Evidence(path.name, sha256, (record,), target, EvidenceRun("t", None, commit, False))
    return write_evidence(evidence_path(path), evidence, key or signing_key_for_tests())


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def s3_client() -> S3Client:
    """A client from the environment (AWS_ENDPOINT_URL from the aws_env fixture)."""
    return boto3.session.Session().client("s3")


def new_bucket(client: S3Client, label: str = "pub") -> str:
    name = f"{label}-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


def keys(client: S3Client, bucket: str) -> list[str]:
    listing = client.list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def settings_for(
    root: Path, staging: str, production: str, extra: Mapping[str, str] | None = None
) -> Settings:
    environ = {
        "MMETOOLS_STAGING_URI": staging,
        "MMETOOLS_PRODUCTION_URI": production,
        "MMETOOLS_CACHE_DIR": os.environ.get("MMETOOLS_CACHE_DIR", str(root / ".cache")),
        **(extra or {}),
    }
    return load_settings(root=root, environ=environ)
