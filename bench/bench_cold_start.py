#!/usr/bin/env python3
"""Benchmark: cold start of an artifact through the SageMaker frontend, env as a tarball vs. as
an unpacked folder in the artifact.

SageMaker pays the artifact's unpack and the model load at every load of a multi-model endpoint.
Triton's python backend accepts a folder for EXECUTION_ENV_PATH (python_backend src/pb_env.cc,
ExtractIfNotExtracted: a directory is used as is, a file is extracted first). Two layouts of the
same model, same env bytes, interleaved in every repetition:

- env tarball   what `mmetools package` writes: <step>/python_env.tar.gz, unpacked by the python
                backend into a temp folder when each step loads
- env folder    the same env unpacked into <step>/python_env/ inside the artifact (config points
                EXECUTION_ENV_PATH at the folder)

Each repetition: extract the artifact into a fresh folder (as SageMaker does after the S3
download), then POST /models and wait for the load; measured on one bundled Triton per layout
with the target's Python emulated. Reports artifact size, extract, load and total (medians).

    .venv/bin/python bench/bench_cold_start.py dist/intent_classifier_1.tar.gz [--reps 3]
"""

from __future__ import annotations

import argparse
import io
import shutil
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

from benchlib import load_note, median, seconds, table, write_results

from mmetools.model.folder import ENV_ARCHIVE
from mmetools.testing.artifact_test import MmeClient, place_target_stub, target_python
from mmetools.testing.serving_env import ensure_serving_env
from mmetools.core.settings import load_settings
from mmetools.testing.triton import BUNDLED, SAGEMAKER, TritonServer

FOLDER_ENV = "python_env"


def folder_layout(artifact: Path, output: Path) -> list[str]:
    """The artifact with each env unpacked into <step>/python_env/; returns the env steps."""
    steps: list[str] = []
    with tarfile.open(artifact) as source, tarfile.open(output, "w:gz") as tar:
        for member in source:
            data = source.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            step, _, rest = member.name.partition("/")
            if rest == ENV_ARCHIVE and data is not None:
                steps.append(step)
                with tarfile.open(fileobj=io.BytesIO(data)) as env:
                    for item in env:
                        item_data = env.extractfile(item).read() if item.isfile() else None  # type: ignore[union-attr]
                        item.name = f"{step}/{FOLDER_ENV}/{item.name}"
                        tar.addfile(item, io.BytesIO(item_data) if item_data is not None else None)
                continue
            if rest == "config.pbtxt" and data is not None:
                data = data.replace(ENV_ARCHIVE.encode(), FOLDER_ENV.encode())
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return steps


def cold_start(
    server: TritonServer, artifact: Path, steps: list[str], version: str
) -> tuple[float, float]:
    assert server.workdir is not None
    model_id = uuid.uuid4().hex[:16]
    model_dir = server.workdir / model_id / "model"
    started = time.perf_counter()
    model_dir.mkdir(parents=True)
    with tarfile.open(artifact) as tar:
        tar.extractall(model_dir, filter="tar")
    extract = time.perf_counter() - started
    place_target_stub(model_dir, steps, version)
    client = MmeClient(server)
    result = client.load(model_id, model_dir, artifact.name, [])
    if result.seconds is None:
        raise SystemExit(
            f"{artifact.name}: load failed: {result.error}\n" + "\n".join(result.log_lines)
        )
    client.unload(model_id, artifact.name)
    shutil.rmtree(model_dir.parent, ignore_errors=True)
    return extract, result.seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    settings = load_settings()
    emulated = target_python(settings)
    work = Path(tempfile.mkdtemp(prefix="bench-cold-start-"))
    try:
        folder_artifact = work / args.artifact.name
        steps = folder_layout(args.artifact, folder_artifact)
        layouts = {"env tarball": args.artifact, "env folder": folder_artifact}
        env = ensure_serving_env(
            settings.root / "models" / "none" / "requirements.txt", settings.cache_dir
        )
        servers = {
            name: TritonServer(mode=BUNDLED, frontend=SAGEMAKER, python_env=env,
                               cache_dir=settings.cache_dir, target_python=emulated).start()
            for name in layouts
        }  # fmt: skip
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in layouts}
        with load_note() as note:
            for _ in range(args.reps):
                for name, path in layouts.items():
                    times[name].append(cold_start(servers[name], path, steps, emulated.version))
        for server in servers.values():
            server.stop()
        rows = []
        results = {}
        for name, path in layouts.items():
            extract = median([t[0] for t in times[name]])
            load = median([t[1] for t in times[name]])
            size = path.stat().st_size
            results[name] = {"size": size, "extract": extract, "load": load, "total": extract + load,
                             "runs": times[name]}  # fmt: skip
            rows.append([name, f"{size / 1e6:.1f} MB", seconds(extract), seconds(load),
                         seconds(extract + load)])  # fmt: skip
        ratio = results["env tarball"]["total"] / results["env folder"]["total"]
        print(table(["layout", "artifact", "extract", "load", "cold start"], rows))
        print(f"\ncold start, env tarball / env folder: {ratio:.2f}x  (load average {note})")
        write_results(
            "bench_cold_start",
            {
                "artifact": args.artifact.name,
                "reps": args.reps,
                "layouts": results,
                "ratio": ratio,
                "load": note,
            },
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
