"""Issue 24's "done when", on a small scale: a scaffolded family of three tenants goes through
`ci/pipeline` to a staging bucket on moto_server (three artifacts, each tested with its own
fixtures, each with its evidence); a change to one tenant's weights builds and publishes only
that tenant; a change to the family's preprocessing rebuilds all three.

In a temporary git repository made from the project (support/repository.py), with the commands a
user runs (`mmetools new --family`, `mmetools tenant add`, `git commit`, `ci/pipeline`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.repository import make_repository

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TENANTS = ("acme", "bravo", "charlie")
BRANCH = "feature/fam"
BUCKET = "family-staging"


@dataclass(frozen=True)
class Repo:
    path: Path
    env: Mapping[str, str]

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        completed = subprocess.run(list(argv), cwd=self.path, env=dict(self.env), text=True,
                                   capture_output=True, timeout=1500, check=False)  # fmt: skip
        if check:
            assert completed.returncode == 0, (
                f"{' '.join(argv)} failed ({completed.returncode}):\n"
                f"{completed.stdout[-8000:]}\n{completed.stderr[-4000:]}"
            )
        return completed

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "-m", message)

    def pipeline(self, *extra: str) -> str:
        completed = self.run(sys.executable, "ci/pipeline.py", "--branch", BRANCH, "--no-pants",
                             "--skip-quality", "--detect", "git", *extra)  # fmt: skip
        return completed.stdout


@pytest.fixture
def repo(tmp_path: Path, aws_env: str) -> Iterator[Repo]:
    import boto3

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    path = make_repository(tmp_path / "monorepo")
    venv_bin = path / ".venv" / "bin"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MMETOOLS_", "GIT_"))},
        "VIRTUAL_ENV": str(path / ".venv"),
        "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "ML", "GIT_AUTHOR_EMAIL": "ml@example.com",
        "GIT_COMMITTER_NAME": "ML", "GIT_COMMITTER_EMAIL": "ml@example.com",
        "MMETOOLS_STAGING_URI": f"s3://{BUCKET}/mme",
        "MMETOOLS_PRODUCTION_URI": (tmp_path / "production").as_uri(),
        "CI": "",
    }  # fmt: skip
    repo = Repo(path, env)
    repo.run("git", "init", "-q", "-b", "main")
    repo.commit("the project")
    repo.run("git", "switch", "-q", "-c", BRANCH)
    yield repo


def staged(bucket: str) -> set[str]:
    import boto3

    listed = boto3.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"].rsplit("/", 1)[1] for o in listed if o["Key"].endswith(".tar.gz")}


def run_folder(repo: Repo, output: str) -> Path:
    return repo.path / output.split("run folder: ", 1)[1].split()[0]


def built_models(output: str) -> list[str]:
    """The models the pipeline said it selected (its "changed since" line)."""
    line = next(line for line in output.splitlines() if line.startswith("changed since"))
    return line.split(": ", 1)[1].split(" (of ")[0].split(", ")


def test_a_family_reaches_staging_and_ci_follows_what_changed(repo: Repo) -> None:
    repo.run("mmetools", "new", "fam", "--family")
    # Retrained tenants answer differently by design: the family's diff thresholds say so.
    (repo.path / "models/fam/regression.toml").write_text(
        "max_beyond_share = 1.0\nmax_flip_rate = 1.0\n"
    )
    for tenant in TENANTS:
        repo.run("mmetools", "tenant", "add", "models/fam", tenant)
    assert repo.run("git", "status", "--porcelain").stdout  # nothing else left to do but commit
    repo.commit("fam: three tenants")

    # 1. The whole family: three artifacts, each tested with its own fixtures, with evidence.
    output = repo.pipeline("--base", "main")
    assert built_models(output) == [f"fam-{t}" for t in TENANTS], output
    assert staged(BUCKET) == {f"fam-{t}_1.tar.gz" for t in TENANTS}, output
    run_dir = run_folder(repo, output)
    expected = set()
    for tenant in TENANTS:
        evidence = json.loads((run_dir / f"fam-{tenant}_1.evidence.json").read_text())
        assert {t["kind"]: t["passed"] for t in evidence["tests"]} == {
            "source": True, "mme_artifact": True
        }  # fmt: skip
        fixture = repo.path / f"models/fam/tenants/{tenant}/tests/fixtures/example.json"
        expected.add(json.dumps(json.loads(fixture.read_text())["expected"]["PROBABILITY"]))
    assert len(expected) == 3  # each tenant's own weights, its own expected outputs
    # The published manifest names the family's committed folder, clean at this commit.
    import boto3

    key = "mme/feature~fam/fam-acme_1.tar.gz.manifest.json"
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
    published = json.loads(body)
    assert published["model_folder"] == "models/fam"
    head = repo.run("git", "rev-parse", "HEAD").stdout.strip()
    assert published["provenance"]["git"] == {**published["provenance"]["git"], "commit": head,
                                              "dirty": False}  # fmt: skip

    # 2. One tenant's weights change: only it is built and published.
    bravo = "models/fam/tenants/bravo"
    weights = f"{bravo}/fam_inferencer/1/model.onnx"
    repo.run("python", "models/fam/train.py", "--seed", "7", "--out", bravo)
    repo.run("dvc", "add", weights)
    repo.run("dvc", "push", f"{weights}.dvc")
    repo.run("mmetools", "fixtures", "regen", bravo)
    (repo.path / bravo / "model_version.txt").write_text("2\n")
    repo.commit("bravo: retrained")
    output = repo.pipeline("--base", "HEAD~1")
    assert built_models(output) == ["fam-bravo"], output
    assert sorted(p.name for p in run_folder(repo, output).glob("*.tar.gz")) == [
        "fam-bravo_2.tar.gz"
    ]
    assert staged(BUCKET) == {f"fam-{t}_1.tar.gz" for t in TENANTS} | {"fam-bravo_2.tar.gz"}
    assert "1 model(s) built" in output, output

    # 3. The family's preprocessing changes: every tenant is rebuilt (and, bumped, published).
    model_py = repo.path / "models/fam/fam_preprocessing/1/model.py"
    model_py.write_text(model_py.read_text() + "\n# a shared fix\n")
    for tenant, version in (("acme", 2), ("bravo", 3), ("charlie", 2)):
        (repo.path / f"models/fam/tenants/{tenant}/model_version.txt").write_text(f"{version}\n")
    repo.commit("fam: preprocessing fix")
    output = repo.pipeline("--base", "HEAD~1")
    assert built_models(output) == [f"fam-{t}" for t in TENANTS], output
    assert {"fam-acme_2.tar.gz", "fam-bravo_3.tar.gz", "fam-charlie_2.tar.gz"} <= staged(BUCKET)
    assert len(list(run_folder(repo, output).glob("*.tar.gz"))) == 3
    assert "3 model(s) built" in output, output
