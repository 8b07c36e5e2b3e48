#!/usr/bin/env python3
"""Benchmark: a cold start on a SageMaker multi-model endpoint, paid the way the endpoint pays it.

For each example (screen_detector, intent_classifier) and each target (Triton 24.09: Python 3.10;
24.12: Python 3.12), the same model in several layouts, interleaved in every repetition:

  (a) per-step envs  what main's packager wrote before issue 22 merged (that merge's first
                     parent), as the AWS blog and Veriff do: a full env (numpy included, no bytecode) in
                     every Python step, <step>/python_env.tar.gz
  (b) one env        this packager's default: <model>_env.tar.gz at the root, referenced by every
                     Python step, holding only what the image lacks (layered on its numpy), with
                     hash-based bytecode and slim rules; no env at all when nothing is missing
  (c) one env folder (b) with the env unpacked into <model>_env/ inside the artifact (the python
                     backend takes a folder as is: no extraction at load); only where (b) has an env

Each cold start: S3 GET of the artifact from moto_server on loopback; native `tar -xzf` into a
fresh folder (as SageMaker unpacks); POST /models through Triton's SageMaker frontend (bundled
CPU Triton, the target's Python emulated, the image's numpy as its site-packages); the first
request; memory (server + stubs) after the load; unload. Triton's log gives each step's load
window: the Python steps' window covers env extraction, stub start and imports; the inferencer's
window is the Python-based stand-in for the native onnxruntime/pytorch backend (not what a GPU
image runs): shown apart. Then the Python steps alone: a fresh unpack whose Python steps are
loaded each as its own SageMaker model, all at once (their env reached through a symbolic link,
so the python backend still extracts it once), with no stand-in competing for the CPU.

  artifact share        native unpack + the Python steps' window (in the whole load)
  artifact share alone  native unpack + the Python steps loaded alone
  whole                 native unpack + Triton load + first request (the stand-in included)
  whole w/o stand-in    native unpack + the Python steps loaded alone

Every repetition runs on two servers per target: the image's defaults, and with
`--disable-auto-complete-config` (an endpoint passes it in SAGEMAKER_TRITON_ADDITIONAL_ARGS):
with auto-complete on, the python backend starts one extra stub per Python step (and per
stand-in) at load to auto-complete the config, and sleeps 1 s before stopping it
(python_backend r24.09/r24.12 src/python_be.cc ModelState::Create, StubLauncher::UpdateHealth).
Ratios compare layouts on the same server.

    .venv/bin/python bench/bench_cold_start.py            # 5 repetitions
    .venv/bin/python bench/bench_cold_start.py --quick    # 2 repetitions
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from benchlib import REPO_ROOT, load_note, median, seconds, start_moto, table, write_results

import boto3

from mmetools.core.settings import Settings, TargetSettings, load_settings
from mmetools.model.folder import ModelFolder, model_env_archive
from mmetools.pipeline import package_model
from mmetools.testing.artifact_test import (
    MmeClient,
    artifact_ensemble,
    load_artifact_fixtures,
    place_target_stub,
    target_python,
)
from mmetools.testing.image_python import (
    give_image_python,
    python_steps_in,
    steps_using_an_env,
)
from mmetools.testing.memory import sample_process_tree
from mmetools.testing.serving_env import ensure_serving_env
from mmetools.testing.triton import BUNDLED, SAGEMAKER, TritonServer

EXAMPLES = ("screen_detector", "intent_classifier")
TARGETS = {"24.09": "nvcr.io/nvidia/tritonserver:24.09-py3",
           "24.12": "nvcr.io/nvidia/tritonserver:24.12-py3"}  # fmt: skip
WEIGHTS = ("*.onnx", "*.pt")
# The servers every repetition runs on: the image's defaults, and auto-complete off.
SERVERS = {"image defaults": (), "no auto-complete": ("--disable-auto-complete-config",)}
_LOG_LINE = re.compile(r'^I\d{4} (\d\d):(\d\d):(\d\d\.\d+) .*?"(loading|successfully loaded)[: ]')
_LOG_MODEL = re.compile(r"::([A-Za-z0-9_.-]+?)(?::\d+)?['\"]")


def _copy_model(name: str, source_root: Path, root: Path) -> ModelFolder:
    copy = root / "models" / name
    shutil.copytree(source_root / "models" / name, copy, ignore=shutil.ignore_patterns(
        "__pycache__", "python_env.tar.gz", "*_env.tar.gz", ".*.json"))  # fmt: skip
    for pattern in WEIGHTS:  # DVC-tracked, git-ignored: from this working tree
        for weight in (REPO_ROOT / "models" / name).glob(f"*/*/{pattern}"):
            shutil.copy2(weight, copy / weight.relative_to(REPO_ROOT / "models" / name))
    return ModelFolder(copy)


def _settings(image: str) -> Settings:
    return dataclasses.replace(load_settings(), target_settings=TargetSettings(image=image))


def build_today(name: str, image: str, work: Path) -> Path:
    """Layout (a): the packager of main just before issue 22 merged (one full env per step), on
    that commit's model folder."""
    # The first parent of the merge that brought one env per model: main as it was before.
    merge = subprocess.run(["git", "log", "--merges", "--grep=^Merge issue 22:", "--format=%P",
                            "-n", "1", "HEAD"], cwd=REPO_ROOT, text=True, capture_output=True,
                           check=True).stdout.split()  # fmt: skip
    if not merge:
        raise SystemExit("layout (a): no 'Merge issue 22:' commit in this history")
    base = merge[0]
    tree = work / f"today-{base[:8]}"
    if not tree.exists():
        tree.mkdir()
        archive = subprocess.run(["git", "archive", base, "src", "models", "mmetools.toml"],
                                 cwd=REPO_ROOT, capture_output=True, check=True).stdout  # fmt: skip
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tree, filter="tar")
    model = _copy_model(name, tree, work / f"a-{image[-7:-4]}")
    out = work / f"dist-a-{image[-7:-4]}"
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "from mmetools.core.settings import load_settings;"
        "from mmetools.model.folder import ModelFolder; from mmetools.pipeline import package_model;"
        "a = package_model(ModelFolder(Path(sys.argv[2])), Path(sys.argv[3]), "
        "load_settings(Path(sys.argv[4])), validate=False, fetch_weights=False); print(a.path)"
    )
    environment = {**os.environ, "MMETOOLS_TARGET_IMAGE": image}
    done = subprocess.run([sys.executable, "-c", code, str(tree / "src"), str(model.path), str(out),
                           str(tree)], env=environment, capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"layout (a) of {name} failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def build_default(name: str, image: str, work: Path) -> Path:
    model = _copy_model(name, REPO_ROOT, work / f"b-{image[-7:-4]}")
    return package_model(model, work / f"dist-b-{image[-7:-4]}", _settings(image), validate=False,
                         fetch_weights=False).path  # fmt: skip


def folder_layout(artifact: Path, name: str, output: Path) -> Path | None:
    """Layout (c) from (b): the root env unpacked into <model>_env/; None when (b) has no env."""
    archive = model_env_archive(name)
    folder = archive.removesuffix(".tar.gz")
    with tarfile.open(artifact) as source:
        if archive not in source.getnames():
            return None
    with tarfile.open(artifact) as source, tarfile.open(output, "w:gz", compresslevel=6) as tar:
        for member in source:
            data = source.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name == archive and data is not None:
                with tarfile.open(fileobj=io.BytesIO(data)) as env:
                    for item in env:
                        item_data = env.extractfile(item).read() if item.isfile() else None  # type: ignore[union-attr]
                        item.name = f"{folder}/{item.name}"
                        tar.addfile(item, io.BytesIO(item_data) if item_data is not None else None)
                continue
            if member.name.endswith("/config.pbtxt") and data is not None:
                data = data.replace(archive.encode(), folder.encode())
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return output


def _log_windows(lines: list[str]) -> dict[str, tuple[float, float]]:
    """Each model's (start, end) from Triton's "loading" / "successfully loaded" lines."""
    starts: dict[str, float] = {}
    windows: dict[str, tuple[float, float]] = {}
    for line in lines:
        match, model = _LOG_LINE.match(line), _LOG_MODEL.search(line)
        if not match or not model:
            continue
        at = int(match.group(1)) * 3600 + int(match.group(2)) * 60 + float(match.group(3))
        if match.group(4) == "loading":
            starts[model.group(1)] = at
        elif model.group(1) in starts:
            windows[model.group(1)] = (starts[model.group(1)], at)
    return windows


def _log_since(server: TritonServer, offset: int) -> list[str]:
    with open(server.log_path, "rb") as handle:
        handle.seek(offset)
        return handle.read().decode("utf-8", "replace").splitlines()


def _tree_size(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
    return sum(p.stat().st_size for p in files), len(files)


def cold_start(
    server: TritonServer, s3: Any, key: str, artifact: Path, name: str
) -> dict[str, Any]:
    assert server.workdir is not None and server.target_python is not None and server.pid
    model_id = uuid.uuid4().hex[:16]
    work = server.workdir / model_id
    model_dir = work / "model"
    model_dir.mkdir(parents=True)
    started = time.perf_counter()
    s3.download_file("bench", key, str(work / artifact.name))
    download = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run(["tar", "-xzf", str(work / artifact.name), "-C", str(model_dir)], check=True)
    unpack = time.perf_counter() - started
    unpacked, files = _tree_size(model_dir)
    give_image_python(model_dir, server.target_python)  # the emulation: not timed
    place_target_stub(model_dir, steps_using_an_env(model_dir), server.target_python.version)
    signature = artifact_ensemble(model_dir, artifact)
    case = load_artifact_fixtures(REPO_ROOT / "models" / name / "tests" / "fixtures",
                                  signature, name)[0]  # fmt: skip
    names = sorted(p.name for p in model_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    client = MmeClient(server)
    before = sample_process_tree(server.pid)
    offset = server.log_offset()
    result = client.load(model_id, model_dir, artifact.name, names)
    if result.seconds is None:
        raise SystemExit(
            f"{artifact.name}: load failed: {result.error}\n" + "\n".join(result.log_lines)
        )
    after = sample_process_tree(server.pid)
    started = time.perf_counter()
    client.invoke(model_id, artifact.name, case)
    first = time.perf_counter() - started
    windows = _log_windows(_log_since(server, offset))
    client.unload(model_id, artifact.name)
    _wait_for_stubs(server, before.stubs)
    shutil.rmtree(work, ignore_errors=True)
    python_steps = [w for step, w in windows.items() if step.endswith("processing")]
    stand_in = [w for step, w in windows.items() if step.endswith("inferencer")]
    python_window = (max(e for _, e in python_steps) - min(s for s, _ in python_steps)
                     if python_steps else 0.0)  # fmt: skip
    stand_in_window = sum(e - s for s, e in stand_in)
    alone = python_steps_alone(server, work.with_name(f"{model_id}-alone"), artifact)
    return {
        "download": download, "unpack": unpack, "unpacked": unpacked, "files": files,
        "load": result.seconds, "python_steps": python_window, "stand_in": stand_in_window,
        "first_request": first, "memory": after.total - before.total, "stubs": after.stubs,
        "python_alone": alone,
        "artifact_share": unpack + python_window, "artifact_alone": unpack + alone,
        "whole": unpack + result.seconds + first, "whole_without_stand_in": unpack + alone,
    }  # fmt: skip


def python_steps_alone(server: TritonServer, work: Path, artifact: Path) -> float:
    """Seconds until every Python step of a fresh unpack of ``artifact`` is loaded, each as its
    own SageMaker model, all at once, with no stand-in: env extraction, stubs, imports. What
    the steps share at the root (the env, the emulated image's Python) is reached through a
    symbolic link, which the python backend resolves, so it still extracts the env once."""
    assert server.target_python is not None
    unpacked = work / "model"
    unpacked.mkdir(parents=True)
    subprocess.run(["tar", "-xzf", str(artifact), "-C", str(unpacked)], check=True)
    give_image_python(unpacked, server.target_python)
    place_target_stub(unpacked, steps_using_an_env(unpacked), server.target_python.version)
    steps = python_steps_in(artifact)
    shared = [p for p in unpacked.iterdir() if not (p.is_dir() and (p / "config.pbtxt").exists())]
    folders = {}
    for step in steps:
        folder = work / step / "model"
        folder.mkdir(parents=True)
        (unpacked / step).rename(folder / step)
        for item in shared:
            (folder / item.name).symlink_to(item)
        folders[step] = folder
    client = MmeClient(server)
    errors: list[str] = []
    ids = {step: uuid.uuid4().hex[:16] for step in steps}

    def load(step: str) -> None:
        result = client.load(ids[step], folders[step], f"{step}.tar.gz", [step])
        if result.seconds is None:
            errors.append(f"{step}: {result.error}")

    threads = [threading.Thread(target=load, args=(step,)) for step in steps]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds_taken = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{artifact.name}: loading the Python steps alone failed: {errors}")
    for step in steps:
        client.unload(ids[step], f"{step}.tar.gz")
    _wait_for_stubs(server, 0)
    shutil.rmtree(work, ignore_errors=True)
    return seconds_taken


def _wait_for_stubs(server: TritonServer, at_most: int) -> None:
    """The stubs exit after the unload answers: wait for them, so the next load starts clean."""
    assert server.pid
    for _ in range(100):
        if sample_process_tree(server.pid).stubs <= at_most:
            return
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 repetitions")
    args = parser.parse_args()
    reps = 2 if args.quick else args.reps
    work = Path(tempfile.mkdtemp(prefix="bench-cold-start-"))
    moto, url = start_moto()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1")  # fmt: skip
    s3 = boto3.client("s3", endpoint_url=url)
    s3.create_bucket(Bucket="bench")
    results: dict[str, Any] = {}
    lost: list[str] = []  # cold starts whose server died (not in the medians)
    try:
        with load_note() as note:
            for release, image in TARGETS.items():
                settings = _settings(image)
                layouts: dict[tuple[str, str], Path] = {}
                for name in EXAMPLES:
                    print(f"building {name} for {release} ...", flush=True)
                    layouts[(name, "a")] = build_today(name, image, work)
                    layouts[(name, "b")] = build_default(name, image, work)
                    folder = folder_layout(layouts[(name, "b")], name,
                                           work / f"c-{release}-{layouts[(name, 'b')].name}")  # fmt: skip
                    if folder is not None:
                        layouts[(name, "c")] = folder
                for (name, layout), path in layouts.items():
                    s3.upload_file(str(path), "bench", f"{release}/{layout}/{path.name}")
                # The stand-ins' (and the emulation's local stub's) env: numpy 1.26 as the models
                # pin it (the bundled python backend returns empty outputs for numpy 2 arrays).
                env = ensure_serving_env(REPO_ROOT / "models" / EXAMPLES[0] / "requirements.txt",
                                         settings.cache_dir)  # fmt: skip
                servers: dict[str, TritonServer] = {}
                runs: dict[tuple[str, str, str], list[dict[str, Any]]] = {
                    (label, *k): [] for label in SERVERS for k in layouts
                }

                def start(options: tuple[str, ...]) -> TritonServer:
                    return TritonServer(mode=BUNDLED, frontend=SAGEMAKER, python_env=env,
                                        options=options, cache_dir=settings.cache_dir,
                                        target_python=target_python(settings)).start()  # fmt: skip

                try:
                    for label, options in SERVERS.items():
                        servers[label] = start(options)
                    for rep in range(reps):
                        for label, server in servers.items():  # interleaved
                            for (name, layout), path in layouts.items():
                                key = f"{release}/{layout}/{path.name}"
                                try:
                                    one = cold_start(server, s3, key, path, name)
                                except Exception as error:  # a server that died: say so, go on
                                    if server.alive():
                                        raise
                                    lost.append(f"{release} {label} {name} ({layout}) rep "
                                                f"{rep + 1}: {type(error).__name__}")  # fmt: skip
                                    print(
                                        f"  server died: {lost[-1]}; its log ends:\n"
                                        + "\n".join(server.log_excerpt()[-15:]),
                                        flush=True,
                                    )
                                    server.stop()
                                    server = servers[label] = start(SERVERS[label])
                                    continue
                                runs[(label, name, layout)].append(one)
                        print(f"  {release}: repetition {rep + 1}/{reps} done", flush=True)
                finally:
                    for server in servers.values():
                        server.stop()
                for (label, name, layout), measured in runs.items():
                    if not measured:
                        continue
                    summary = {k: median([m[k] for m in measured]) for k in measured[0]}
                    summary["bytes"] = layouts[(name, layout)].stat().st_size
                    results[f"{release}/{label}/{name}/{layout}"] = {**summary, "runs": measured}
                write_results("bench_cold_start", {"reps": reps, "results": results, "lost": lost})
        sizes, loads = [], []
        for key, summary in results.items():
            release, label, name, layout = key.split("/")
            base = results[f"{release}/{label}/{name}/a"]
            ratio = {k: f"{summary[k] / base[k]:.2f}x" for k in
                     ("artifact_share", "artifact_alone", "whole", "whole_without_stand_in")}  # fmt: skip
            if label == next(iter(SERVERS)):
                sizes.append([
                    release, name, layout, f"{summary['bytes'] / 1e6:.2f} MB",
                    f"{summary['bytes'] / base['bytes']:.3f}x",
                    f"{summary['unpacked'] / 1e6:.1f} MB / {summary['files']:.0f}",
                    seconds(summary["download"]), seconds(summary["unpack"]),
                ])  # fmt: skip
            loads.append([
                release, label, name, layout, seconds(summary["python_steps"]),
                seconds(summary["stand_in"]), seconds(summary["load"]),
                seconds(summary["first_request"]), seconds(summary["python_alone"]),
                ratio["artifact_share"], ratio["artifact_alone"], ratio["whole"],
                ratio["whole_without_stand_in"],
                f"{summary['memory'] / 2**20:.0f} MiB ({summary['stubs']:.0f} stubs)",
            ])  # fmt: skip
        print()
        print(table(["target", "model", "layout", "artifact", "vs (a)", "unpacked / files",
                     "S3 GET", "native unpack"], sizes))  # fmt: skip
        print()
        print(table(["target", "server", "model", "layout", "Python steps", "stand-in",
                     "Triton load", "1st request", "Python steps alone", "artifact share vs (a)",
                     "alone vs (a)", "whole vs (a)", "whole w/o stand-in vs (a)",
                     "memory after load"], loads))  # fmt: skip
        if lost:
            print("\nnot in the medians (the server died): " + "; ".join(lost))
        print(
            f"\n{reps} repetitions, medians; load average {note['before']:.2f} before, "
            f"{note['after']:.2f} after; {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
        )
        write_results(
            "bench_cold_start", {"reps": reps, "results": results, "lost": lost, "load": note}
        )
    finally:
        moto.terminate()
        moto.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
