"""ci/pipeline.py with model families: tenants are models named <family>-<tenant>; a tenant's
own files select only it, the family's shared files select every tenant; one build per family
(one env, one Triton for its tenants), then each tenant's own diff and publish."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from rich.console import Console

from support.ci_repository import commit as _commit
from support.ci_repository import git as _git
from support.ci_repository import load_pipeline
from support.ci_repository import write as _write

pipeline = load_pipeline()


def _base(repo: Path) -> str:
    return str(pipeline.merge_base(repo, "feature/x", "main"))


TENANTS = ("acme", "bravo", "charlie")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A plain model `alpha` and a family `fam` of three tenants on main; branch feature/x."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "ci@example.com")
    _git(repo, "config", "user.name", "CI")
    files = {
        "src/mmetools/__init__.py": "",
        "models/alpha/model_version.txt": "2\n",
        "models/alpha/alpha_pipeline/config.pbtxt": 'platform: "ensemble"\n',
        "models/alpha/BUILD": 'triton_model(name="alpha")\n',
        "models/fam/BUILD": 'triton_model_family(name="fam")\n',
        "models/fam/fam_pipeline/config.pbtxt": 'platform: "ensemble"\n',
        "models/fam/fam_preprocessing/1/model.py": "# shared\n",
    }
    for tenant in TENANTS:
        files[f"models/fam/tenants/{tenant}/model_version.txt"] = "2\n"
        files[f"models/fam/tenants/{tenant}/fam_inferencer/1/model.onnx.dvc"] = f"md5: {tenant}\n"
    _write(repo, files)
    _commit(repo, "a model and a family")
    _git(repo, "checkout", "-q", "-b", "feature/x")
    return repo


def test_every_tenant_is_a_model_named_family_dash_tenant(repo: Path) -> None:
    assert pipeline.all_models(repo) == ["alpha", "fam-acme", "fam-bravo", "fam-charlie"]
    assert pipeline.model_dir("fam-bravo") == "models/fam/tenants/bravo"
    assert pipeline.model_dir("alpha") == "models/alpha"
    assert pipeline._version(repo, "fam-acme") == "2"


def test_one_tenants_weights_select_only_that_tenant(repo: Path) -> None:
    _write(repo, {"models/fam/tenants/bravo/fam_inferencer/1/model.onnx.dvc": "md5: new\n"})
    _commit(repo, "retrain bravo")
    assert pipeline.changed_models_git(repo, _base(repo)) == ["fam-bravo"]


def test_a_shared_file_of_the_family_selects_every_tenant_and_no_other_model(repo: Path) -> None:
    _write(repo, {"models/fam/fam_preprocessing/1/model.py": "# shared, fixed\n"})
    _commit(repo, "fix preprocessing")
    assert pipeline.changed_models_git(repo, _base(repo)) == [
        "fam-acme",
        "fam-bravo",
        "fam-charlie",
    ]


def test_pants_detection_maps_generated_tenant_addresses(repo: Path) -> None:
    def runner(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> object:
        # As Pants 2.17 prints them (checked with ./pants list on a family).
        return pipeline.CommandResult(
            0, "models/fam#charlie\nmodels/fam:fam#acme\nmodels/alpha:alpha\n"
        )

    assert pipeline.changed_models_pants(repo, "abc", runner) == [
        "alpha",
        "fam-acme",
        "fam-charlie",
    ]


def test_a_family_with_its_target_generator_is_no_folder_without_a_target(repo: Path) -> None:
    assert pipeline.models_without_target(repo) == []
    _write(repo, {"models/fam/BUILD": "# nothing\n"})
    assert pipeline.models_without_target(repo) == ["fam"]


class FamilyRecorder:
    """Records commands; a build leaves the artifact and evidence of every folder it was given
    except ``failing`` (and then exits 1, as `mmetools build` does when one model fails)."""

    def __init__(self, failing: str | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.failing = failing

    def __call__(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> object:
        self.calls.append(tuple(argv))
        if "build" in argv:
            out = cwd / argv[argv.index("--out") + 1]
            folders = argv[argv.index("build") + 1 : argv.index("--out")]
            for folder in folders:
                parts = folder.split("/")
                model = parts[1] if len(parts) == 2 else f"{parts[1]}-{parts[3]}"
                if model != self.failing:
                    for suffix in (".tar.gz", ".evidence.json"):
                        (out / f"{model}_2{suffix}").write_text("built\n")
            return pipeline.CommandResult(1 if self.failing else 0, "built\n")
        if "diff" in argv:
            report = cwd / argv[argv.index("--json") + 1]
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps({"skipped": True, "passed": True, "note": "first"}))
        return pipeline.CommandResult(0, "ok\n")


def _main(repo: Path, argv: list[str], runner: FamilyRecorder) -> tuple[int, str]:
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    code = pipeline.main(argv, repo=repo, runner=runner, environ={}, console=console)
    return code, out.getvalue()


def test_a_familys_tenants_are_built_by_one_build_then_published_one_by_one(repo: Path) -> None:
    runner = FamilyRecorder()
    code, output = _main(repo, ["--all", "--branch", "feature/x", "--skip-quality"], runner)
    assert code == 0, output
    builds = [c for c in runner.calls if "build" in c]
    assert [c[2 : c.index("--out")] for c in builds] == [
        ("models/alpha",),
        ("models/fam/tenants/acme", "models/fam/tenants/bravo", "models/fam/tenants/charlie"),
    ]
    assert builds[1][-1] == "dist/reports/fam-build.xml"
    published = [Path(c[2]).name for c in runner.calls if "publish" in c]
    assert published == ["alpha_2.tar.gz", "fam-acme_2.tar.gz", "fam-bravo_2.tar.gz",
                         "fam-charlie_2.tar.gz"]  # fmt: skip
    diffs = [c[2] for c in runner.calls if "diff" in c]
    assert diffs[1:] == [f"models/fam/tenants/{t}" for t in TENANTS]
    assert "4 model(s) built" in output


def test_one_failing_tenant_does_not_stop_the_others(repo: Path) -> None:
    runner = FamilyRecorder(failing="fam-bravo")
    code, output = _main(repo, ["--model", "fam-acme", "--model", "fam-bravo", "--model",
                                "fam-charlie", "--branch", "b", "--skip-quality"], runner)  # fmt: skip
    assert code == 1
    published = [Path(c[2]).name for c in runner.calls if "publish" in c]
    assert published == ["fam-acme_2.tar.gz", "fam-charlie_2.tar.gz"]
    assert "fam-bravo: step 'build' (exit 1)" in output
