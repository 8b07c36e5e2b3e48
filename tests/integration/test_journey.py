"""Issue 12's journey, end to end: a data scientist's two new models reach staging, then production.

In a temporary git repository made from the project (its tracked files; the bootstrap's .venv
reused through a symlink, so no second install), the commands the README and the scaffold's
README give, in their order, with the venv activated the way `source .venv/bin/activate` does:

    git switch -c feature/new-models
    mmetools new fraud_scorer --framework onnx ; mmetools new text_ranker --framework torchscript
    python models/<name>/train.py ; dvc add <weights> ; dvc push ; mmetools fixtures regen ...
    ./pants tailor :: ; ./pants test models/<name>: ; git add <what mmetools new said> ; git commit
    ci/pipeline            (feature branch: both models to staging, manifests name this commit)
    git switch main ; git merge --no-ff feature/new-models ; ci/pipeline   (production = staging)

The working tree is clean after every step once committed (before that, only the new models and
the DVC remote's new objects change). Each step's time goes to dist/reports/journey.json and
docs/getting-started.md quotes them.

`ci/pipeline` is run as `python ci/pipeline.py`, the script it execs after `ci/bootstrap`: the
bootstrap would re-sync the shared venv against the temporary copy.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO_ROOT
from mmetools.build.files import MANIFEST_SUFFIX
from mmetools.release.publish import branch_slug
from mmetools.model.scaffold import FRAMEWORKS, next_steps
from support.repository import make_repository

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BRANCH = "feature/new-models"
MODELS = {"fraud_scorer": "onnx", "text_ranker": "torchscript"}
# Before the first commit, only these may change: the new models and the DVC remote's objects.
NEW_PATHS = tuple(f"models/{name}/" for name in MODELS) + (".dvc/example-remote/",)
TIMES_REPORT = REPO_ROOT / "dist" / "reports" / "journey.json"


@dataclass
class Journey:
    repo: Path
    env: Mapping[str, str]
    times: list[tuple[str, float]] = field(default_factory=list)

    def run(
        self, command: str, *, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run one shell command line as the README writes it; record its time."""
        started = time.monotonic()
        completed = subprocess.run(
            ["bash", "-c", command],
            cwd=self.repo,
            env={**self.env, **env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=1500,
            check=False,
        )
        label = " ".join(f"{k}={v}" for k, v in env.items()) + (" " if env else "") + command
        self.times.append((label, time.monotonic() - started))
        if check:
            assert completed.returncode == 0, (
                f"`{command}` failed ({completed.returncode}):\n"
                f"{completed.stdout[-6000:]}\n{completed.stderr[-6000:]}"
            )
        return completed

    def status(self) -> list[str]:
        return self.git("status", "--porcelain", "--untracked-files=all").splitlines()

    def assert_clean(self, after: str) -> None:
        assert self.status() == [], f"working tree changed by `{after}`: {self.status()}"

    def assert_only_new_paths(self, after: str) -> None:
        outside = [line for line in self.status() if not line[3:].startswith(NEW_PATHS)]
        assert outside == [], f"`{after}` changed files outside the new models: {outside}"

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.repo, env=dict(self.env), check=True,
            capture_output=True, text=True,
        ).stdout  # fmt: skip


@pytest.fixture
def journey(tmp_path: Path) -> Iterator[Journey]:
    repo = make_repository(tmp_path / "monorepo")
    venv_bin = repo / ".venv" / "bin"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MMETOOLS_", "GIT_"))},
        # What `source .venv/bin/activate` sets.
        "VIRTUAL_ENV": str(repo / ".venv"),
        "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "Data Scientist",
        "GIT_AUTHOR_EMAIL": "ds@example.com",
        "GIT_COMMITTER_NAME": "Data Scientist",
        "GIT_COMMITTER_EMAIL": "ds@example.com",
        "PANTS_PANTSD": "false",  # no daemon left behind in a folder that is deleted
        "CI": "",
    }
    journey = Journey(repo, env)
    journey.git("init", "-q", "-b", "main")
    journey.git("add", "-A")
    journey.git("commit", "-q", "-m", "the project")
    yield journey
    TIMES_REPORT.parent.mkdir(parents=True, exist_ok=True)
    TIMES_REPORT.write_text(
        json.dumps([{"command": c, "seconds": round(s, 1)} for c, s in journey.times], indent=2)
        + "\n"
    )


def published(repo: Path, role: str, namespace: str = "") -> Path:
    return repo / ".published" / role / namespace


def manifest_of(folder: Path, artifact: str) -> dict[str, Any]:
    path = folder / f"{artifact}{MANIFEST_SUFFIX}"
    assert path.is_file(), f"no manifest beside {folder / artifact}: {sorted(os.listdir(folder))}"
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


@pytest.mark.timeout(3600)
def test_two_new_models_reach_staging_then_production_on_a_clean_tree(
    journey: Journey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(journey.repo)  # next_steps() names paths from the repository root
    run = journey.run
    run(f"git switch -c {BRANCH}")

    # 1. scaffold, train, track the weights, regenerate the fixtures (the scaffold README's steps)
    for name, framework in MODELS.items():
        run(f"mmetools new {name} --framework {framework}")
        journey.assert_only_new_paths("mmetools new")
    git_add = ""
    for name, framework in MODELS.items():
        train, dvc_add, dvc_push, regen, lock, _pants_test, git_add = next_steps(
            Path("models") / name, framework
        )
        for command in (train, dvc_add, dvc_push, regen, lock):
            run(command)
            journey.assert_only_new_paths(command)
        weights = f"models/{name}/{name}_inferencer/1/{FRAMEWORKS[framework].weight_file}"
        assert (journey.repo / f"{weights}.dvc").is_file()
        # the packed env installs from the serving target's lock (Python 3.12 by default)
        assert run(f"mmetools lock --check models/{name}").returncode == 0

    # 2. tailor: nothing to add for a scaffolded model (its BUILD is written); a model folder
    # without a BUILD gets exactly its triton_model + python_sources, and nothing elsewhere.
    scaffolded_build = (journey.repo / "models/text_ranker/BUILD").read_text()
    (journey.repo / "models/text_ranker/BUILD").unlink()
    before = set(journey.status())
    run("./pants tailor ::")
    added = set(journey.status()) - before
    assert added == {"?? models/text_ranker/BUILD"}, added
    tailored = (journey.repo / "models/text_ranker/BUILD").read_text()
    # Pants leaves out name="text_ranker": a target named after its folder is the default.
    assert tailored.count("(") == 2 and "triton_model()" in tailored, tailored
    assert "python_sources(" in tailored and 'name="python"' in tailored, tailored
    assert tailored != scaffolded_build  # the plugin wrote it (and the pipeline builds from it)
    assert run("./pants tailor --check ::").returncode == 0

    # 3. try both on Triton as the README says, before committing (Pants caches the result)
    run(f"./pants test {' '.join(f'models/{name}:' for name in MODELS)}")
    journey.assert_only_new_paths("./pants test")

    # 4. commit what the scaffold said to add, then nothing is left over
    assert git_add == "git add models/text_ranker .dvc/example-remote"
    run(f"git add {' '.join(f'models/{name}' for name in MODELS)} .dvc/example-remote")
    run('git commit -q -m "fraud_scorer and text_ranker: first versions"')
    journey.assert_clean("git commit")
    commit = journey.git("rev-parse", "HEAD").strip()

    # The tailor settings are what keep it clean: with Python's own tailoring back on, tailor
    # would add targets (python_requirements for each requirements.txt, bench/BUILD ...).
    broken = run(
        "./pants tailor --check ::",
        check=False,
        PANTS_PYTHON_TAILOR_SOURCE_TARGETS="true",
        PANTS_PYTHON_TAILOR_REQUIREMENTS_TARGETS="true",
        PANTS_TAILOR_IGNORE_PATHS="[]",
    )
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "bench/BUILD" in broken.stdout + broken.stderr
    journey.assert_clean("./pants tailor --check")

    # 5. the feature branch's pipeline: both models tested and published to staging only
    pipeline = run("python ci/pipeline.py")
    journey.assert_clean("ci/pipeline on the feature branch")
    assert "fraud_scorer" in pipeline.stdout and "text_ranker" in pipeline.stdout
    staging = published(journey.repo, "staging", branch_slug("feature/new-models"))
    artifacts = {name: f"{name}_1.tar.gz" for name in MODELS}
    for name, artifact in artifacts.items():
        assert (staging / artifact).is_file(), sorted(os.listdir(staging))
        # publish writes <artifact>.manifest.json: the build's manifest plus provenance.git
        git = manifest_of(staging, artifact)["provenance"]["git"]
        assert git["commit"] == commit and git["dirty"] is False, git
    assert not published(journey.repo, "production").exists()

    # 6. merge to main and rerun: production holds exactly the bytes staging tested
    run("git switch -q main")
    run(f"git merge -q --no-ff {BRANCH} -m 'Merge {BRANCH}'")
    journey.assert_clean("git merge")
    run("python ci/pipeline.py")
    journey.assert_clean("ci/pipeline on main")
    production = published(journey.repo, "production")
    for name, artifact in artifacts.items():
        shipped = (production / artifact).read_bytes()
        assert shipped == (staging / artifact).read_bytes(), f"{artifact}: not the staged bytes"
        assert shipped == (published(journey.repo, "staging", "main") / artifact).read_bytes()


@pytest.mark.timeout(3600)
def test_a_retrained_version_2_reaches_production(journey: Journey) -> None:
    """Issue 21: v1 in production, then a retrained v2 (another seed) through a branch and main,
    with one `mmetools diff --accept` on the branch; a forgotten bump fails on the branch naming
    model_version.txt, and an acceptance recorded for other figures fails. The README's
    "Version 2" section, command for command (quality is the first journey's: skipped here)."""
    run = journey.run
    name, folder = "fraud_scorer", "models/fraud_scorer"
    pipeline = "python ci/pipeline.py --skip-quality"
    # v1 on main, straight to production (the first journey covers the branch route)
    run(f"mmetools new {name} --framework onnx")
    for command in next_steps(Path(folder), "onnx"):  # train .. lock, git add
        if not command.startswith("./pants"):
            run(command)
    run('git commit -q -m "fraud_scorer: first version"')
    run(pipeline)
    production = published(journey.repo, "production")
    v1 = (production / f"{name}_1.tar.gz").read_bytes()

    # v2: retrain with another seed, forget the bump
    branch = "feature/fraud-scorer-v2"
    run(f"git switch -q -c {branch}")
    train = journey.repo / folder / "train.py"
    train.write_text(train.read_text().replace("SEED = 1234", "SEED = 4321", 1))
    weights = f"{folder}/{name}_inferencer/1/model.onnx"
    for command in (f"python {folder}/train.py", f"dvc add {weights}", "dvc push",
                    f"mmetools fixtures regen {folder}"):  # fmt: skip
        run(command)
    run(f"git add {folder} .dvc/example-remote")
    run('git commit -q -m "fraud_scorer: retrained"')
    staging = published(journey.repo, "staging", branch_slug(branch))
    forgot = run(pipeline, check=False)
    assert forgot.returncode == 1, forgot.stdout
    said = " ".join(forgot.stdout.split())  # the pipeline's console wraps long lines
    assert f"{folder}/model_version.txt: version 1 is already in production" in said, said
    assert f"mmetools bump {folder}" in said
    assert not staging.exists(), sorted(os.listdir(staging))

    # bump, push: the diff fails and says how to accept the reviewed change
    bumped = run(f"mmetools bump {folder}")
    assert f"{folder}/model_version.txt: 1 -> 2" in bumped.stdout
    run("git commit -q -am 'fraud_scorer: v2'")
    unreviewed = run(pipeline, check=False)
    assert unreviewed.returncode == 1, unreviewed.stdout
    accept = f"mmetools diff {folder} --accept"
    assert accept in " ".join(unreviewed.stdout.split()), unreviewed.stdout
    assert not staging.exists()

    # review, accept, commit
    accepted = run(accept)
    assert "recorded the reviewed change" in accepted.stdout, accepted.stdout
    record = journey.repo / folder / "diff-acceptance.toml"
    text = record.read_text()
    assert "candidate_version = 2" in text and "previous_version = 1" in text
    # An acceptance recorded for other figures fails, naming the figure.
    edited = re.sub(r"(?m)^max_abs = .*$", "max_abs = 0.5", text, count=1)
    assert edited != text
    record.write_text(edited)
    other = run(f"mmetools diff {folder}", check=False)
    assert other.returncode == 1 and "accepted max_abs 0.5" in other.stdout, other.stdout
    record.write_text(text)
    run(f"git add {folder}/diff-acceptance.toml")
    run('git commit -q -m "fraud_scorer v2: accept the reviewed diff"')
    journey.assert_clean("the acceptance commit")

    # push: v2 to the branch's staging; merge: to production
    run(pipeline)
    assert (staging / f"{name}_2.tar.gz").is_file()
    run("git switch -q main")
    run(f"git merge -q --no-ff {branch} -m 'Merge {branch}'")
    run(pipeline)
    journey.assert_clean("ci/pipeline on main")
    shipped = (production / f"{name}_2.tar.gz").read_bytes()
    assert shipped == (staging / f"{name}_2.tar.gz").read_bytes()
    assert (production / f"{name}_1.tar.gz").read_bytes() == v1  # never overwritten


def test_journey_copy_carries_the_working_tree(tmp_path: Path) -> None:
    """The repository the journey starts from is this checkout's tracked files, byte for byte."""
    repo = make_repository(tmp_path / "copy")
    for relative in ("pants.toml", "ci/pipeline.py", "src/mmetools/model/scaffold.py"):
        assert (repo / relative).read_bytes() == (REPO_ROOT / relative).read_bytes()
    assert (repo / ".venv").resolve() == (REPO_ROOT / ".venv").resolve()
    assert not (repo / ".published").exists() and not (repo / "dist").exists()


# -------------------------------------------------------------------------------------------------
# A fresh clone's commands work as the READMEs write them

ACTIVATE = "source .venv/bin/activate"
VENV_COMMANDS = ("mmetools ", "dvc ", "python ", "pytest ")


def bare_venv_commands(text: str) -> list[str]:
    """Lines of a README that run a venv tool by name (in a code block or an inline command)."""
    found = []
    for line in text.splitlines():
        stripped = line.strip().lstrip("`(").removeprefix("$ ")
        if stripped.startswith(VENV_COMMANDS):
            found.append(stripped)
    return found


def readmes() -> list[Path]:
    paths = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "models").rglob("README.md"))]
    return [*paths, REPO_ROOT / "src/mmetools/model/templates/common/README.md.tmpl"]


def test_every_readme_that_runs_venv_tools_by_name_says_to_activate_the_venv() -> None:
    checked = 0
    for path in readmes():
        text = path.read_text()
        if bare_venv_commands(text):
            checked += 1
            assert ACTIVATE in text, f"{path.relative_to(REPO_ROOT)}: bare commands, no {ACTIVATE}"
    assert checked >= 4  # README.md, models/README.md, the examples' and the scaffold's


def test_the_readme_check_spots_a_bare_command_without_activation() -> None:
    text = "Train it:\n\n    python models/x/train.py\n    dvc push\n"
    assert bare_venv_commands(text) == ["python models/x/train.py", "dvc push"]
    assert ACTIVATE not in text  # what the check above would refuse
    assert bare_venv_commands("    .venv/bin/mmetools test models/x\n    ./pants test ::\n") == []


def test_bootstrap_ends_by_printing_the_activation() -> None:
    # ci/bootstrap is idempotent: on a bootstrapped checkout it only checks, then prints.
    completed = subprocess.run(
        ["ci/bootstrap"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr.rstrip().splitlines()[-1].endswith(ACTIVATE)
