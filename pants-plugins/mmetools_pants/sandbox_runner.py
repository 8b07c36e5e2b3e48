"""Fetches a model's weights in the workspace and returns them to Pants, checked.

mmetools_pants writes this file into the sandbox of the one uncached fetch process per model and
runs it with the Python of the mmetools environment. The sandbox holds what Pants hashed: the
model's files and the DVC pointers (*.dvc) of its weights. For each pointer:
  1. take the weight from the workspace; when one is missing or differs from the pointer, run
     `mmetools fetch <model>` in the workspace (DVC's cache, remote config and credentials are there);
  2. copy each weight into the output folder and check its md5 against the sandbox's pointer, so
     the model processes run on exactly the weights the pointers name.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WeightOut:
    """One output of a DVC pointer: its path (relative to the repository) and md5, if known."""

    pointer: Path
    path: Path
    md5: str | None


class StagingError(Exception):
    pass


def read_outs(pointer: Path) -> list[WeightOut]:
    """The `outs:` of a .dvc file: a list of mappings with `path` and usually `md5`.

    A small reader of the one YAML shape DVC writes, so this file needs nothing but the stdlib.
    """
    outs: list[dict[str, str]] = []
    in_outs = False
    for raw in pointer.read_text(encoding="utf-8").splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if not raw.startswith((" ", "-")):
            in_outs = raw.rstrip() == "outs:"
            continue
        if not in_outs:
            continue
        line = raw
        if line.startswith("- "):
            outs.append({})
            line = "  " + line[2:]
        # Only the item's own keys (two-space indent), not nested mappings such as `meta:`.
        if outs and line.startswith("  ") and not line.startswith("   ") and ":" in line:
            key, _, value = line.strip().partition(":")
            outs[-1][key.strip()] = value.strip().strip("'\"")
    result = []
    for out in outs:
        if "path" not in out:
            raise StagingError(f"{pointer}: an entry of `outs:` has no `path`")
        md5 = out.get("md5")
        # DVC 2 pointers (no `hash: md5`) hash text files after dos2unix; directories end in .dir.
        verifiable = md5 is not None and out.get("hash") == "md5" and not md5.endswith(".dir")
        result.append(WeightOut(pointer, pointer.parent / out["path"], md5 if verifiable else None))
    return result


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _matches(path: Path, out: WeightOut) -> bool:
    if not path.exists():
        return False
    return out.md5 is None or (path.is_file() and md5_of(path) == out.md5)


def stage_weights(
    build_root: Path, model: str, mmetools: str, sandbox: Path, out_dir: Path
) -> list[WeightOut]:
    """Copy the model's weights from the workspace into ``out_dir``, fetching them if needed."""
    outs = [out for p in sorted((sandbox / model).rglob("*.dvc")) for out in read_outs(p)]
    outs = [
        WeightOut(o.pointer.relative_to(sandbox), o.path.relative_to(sandbox), o.md5) for o in outs
    ]
    if not all(_matches(build_root / o.path, o) for o in outs):
        fetched = subprocess.run(
            [mmetools, "fetch", model], cwd=build_root, stdout=sys.stderr, stderr=sys.stderr
        )
        if fetched.returncode != 0:
            raise StagingError(
                f"{model}: `mmetools fetch {model}` failed (exit {fetched.returncode})"
            )
    for out in outs:
        source, target = build_root / out.path, out_dir / out.path
        if not source.exists():
            raise StagingError(
                f"{out.path}: missing after `mmetools fetch` (pointer {out.pointer})"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(source, target)
        if not _matches(target, out):
            raise StagingError(
                f"{out.path}: the workspace's file does not match {out.pointer} as Pants read it "
                "(the pointer changed during the run?): run again"
            )
    return outs


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build-root", required=True, type=Path)
    parser.add_argument("--mmetools", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        outs = stage_weights(args.build_root, args.model, args.mmetools, Path.cwd(), args.out)
    except StagingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"staged {len(outs)} weight file(s) of {args.model}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
