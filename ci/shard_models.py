#!/usr/bin/env python3
"""Splits the models a change affects into CI shards, all sharing the remote cache.

The models come from Pants: `./pants --changed-since=REF --changed-dependents=transitive
--filter-target-type=triton_model list` (a toolkit change selects every model). They are
dealt round-robin over the shards in name order, so a shard's models are stable from run to
run. Two forms, one per CI system:

    ci/shard_models.py --since origin/main --matrix 8
        GitHub Actions: prints `shards=<JSON list>` for $GITHUB_OUTPUT, one entry per non-empty
        shard (at most 8), each the space-separated targets of that shard.
    ci/shard_models.py --since origin/main --index 3 --total 8
        GitLab `parallel: 8` (CI_NODE_INDEX / CI_NODE_TOTAL): prints shard 3's targets, one a line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def changed_models(since: str) -> list[str]:
    """The triton_model targets changed since ``since``, or depending on what changed."""
    completed = subprocess.run(
        [
            str(REPO_ROOT / "pants"),
            f"--changed-since={since}",
            "--changed-dependents=transitive",
            "--filter-target-type=triton_model",
            "list",
        ],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return sorted(line for line in completed.stdout.split() if line)


def shards(targets: Sequence[str], total: int) -> list[list[str]]:
    """``targets`` dealt round-robin over at most ``total`` shards; no shard is empty."""
    if total < 1:
        raise ValueError(f"the number of shards must be at least 1, got {total}")
    ordered = sorted(targets)
    dealt = [ordered[index::total] for index in range(total)]
    return [shard for shard in dealt if shard]


def shard_of(targets: Sequence[str], index: int, total: int) -> list[str]:
    """Shard ``index`` (1-based, as GitLab's CI_NODE_INDEX) of ``total``; may be empty."""
    if not 1 <= index <= total:
        raise ValueError(f"shard index {index} is not between 1 and {total}")
    return sorted(targets)[index - 1 :: total]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--since", required=True, help="git ref to compare with, e.g. origin/main")
    form = parser.add_mutually_exclusive_group(required=True)
    form.add_argument("--matrix", type=int, metavar="N", help="print a GitHub matrix of <= N")
    form.add_argument("--index", type=int, help="print this shard's targets (1-based)")
    parser.add_argument("--total", type=int, help="the number of shards, with --index")
    args = parser.parse_args(argv)
    if args.index is not None and args.total is None:
        parser.error("--index needs --total")
    try:
        targets = changed_models(args.since)
        if args.matrix is not None:
            print("shards=" + json.dumps([" ".join(s) for s in shards(targets, args.matrix)]))
        else:
            print("\n".join(shard_of(targets, args.index, args.total)))
    except ValueError as e:
        parser.error(str(e))
    except subprocess.CalledProcessError as e:
        print(f"error: ./pants list failed (exit {e.returncode}):\n{e.stderr}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
