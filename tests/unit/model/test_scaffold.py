"""``mmetools new``: the scaffolded folder trains, exports, passes its own fixtures and validates."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mmetools.model import scaffold
from mmetools.cli import main
from mmetools.core.errors import ScaffoldError
from mmetools.model.folder import ModelFolder, model_folder
from mmetools.model.reference import regenerate_fixtures, run_cases
from mmetools.model.scaffold import FRAMEWORKS, git_add_paths, next_steps, scaffold_model

from conftest import MODELS_DIR, REPO_ROOT

EXECUTION_ENV_PATH = """parameters: {
  key: "EXECUTION_ENV_PATH"
  value: { string_value: "$$TRITON_MODEL_DIRECTORY/../"""


def test_invalid_name_is_refused_with_the_rule(tmp_path: Path) -> None:
    for name in ("Fraud", "2fast", "with-dash", "trailing_", "x"):
        with pytest.raises(ScaffoldError) as info:
            scaffold_model(name, "onnx", tmp_path)
        assert str(info.value) == (
            f"invalid model name {name!r}: use lowercase letters, digits and '_', starting with "
            "a letter and not ending with '_' (e.g. 'fraud_scorer'); it becomes the folder name, "
            "the Triton model names and the artifact name <name>_<version>.tar.gz"
        )
    assert list(tmp_path.iterdir()) == []


def test_unknown_framework(tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError) as info:
        scaffold_model("demo", "tensorflow", tmp_path)
    assert str(info.value) == "unknown framework 'tensorflow': choose one of onnx, torchscript"


@pytest.mark.parametrize(
    "argv",
    [["new", "demo", "--framework", "tensorflow"], ["new", "x", "--framework", "tensorflow"]],
)
def test_bad_arguments_to_new_are_usage_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """As every other usage error (issue 21 item 6): exit 2, one message, nothing written."""
    assert main([*argv, "--models-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_no_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "demo").mkdir()
    assert main(["new", "demo", "--models-dir", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_existing_folder_is_never_overwritten(tmp_path: Path) -> None:
    existing = tmp_path / "demo"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(ScaffoldError) as info:
        scaffold_model("demo", "onnx", tmp_path)
    assert (
        str(info.value) == f"{existing}: already exists; `mmetools new` never overwrites a folder"
    )
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_failure_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_render = scaffold._render_tree
    calls = []

    def render_then_fail(*args: object) -> None:
        calls.append(args)
        if len(calls) == 2:  # common/ was written, fail on the framework part
            raise OSError(28, "No space left on device")
        real_render(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(scaffold, "_render_tree", render_then_fail)
    with pytest.raises(OSError):
        scaffold_model("demo", "onnx", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cli_new_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new", "Bad", "--models-dir", str(tmp_path)]) == 2  # a usage error
    assert "error: invalid model name 'Bad'" in capsys.readouterr().err
    assert main(["new", "good", "--framework", "torchscript", "--models-dir", str(tmp_path)]) == 0
    assert f"created {tmp_path / 'good'}" in capsys.readouterr().out.replace("\n", "")


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_rendered_files_have_no_tokens_and_valid_python(tmp_path: Path, framework: str) -> None:
    folder = scaffold_model("fraud_scorer", framework, tmp_path)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    names = [str(p.relative_to(folder)) for p in files]
    weight = FRAMEWORKS[framework].weight_file
    assert names == [
        "BUILD",
        "README.md",
        "fraud_scorer_inferencer/config.pbtxt",
        "fraud_scorer_pipeline/config.pbtxt",
        "fraud_scorer_postprocessing/1/labels.txt",
        "fraud_scorer_postprocessing/1/model.py",
        "fraud_scorer_postprocessing/config.pbtxt",
        "fraud_scorer_preprocessing/1/model.py",
        "fraud_scorer_preprocessing/1/normalization.json",
        "fraud_scorer_preprocessing/config.pbtxt",
        "model_version.txt",
        "requirements.txt",
        "tests/fixtures/example.json",
        "train.py",
    ]
    for path in files:
        text = path.read_text()
        assert not re.findall(r"\{\{\w+\}\}", text), path
        if path.suffix == ".py":
            compile(text, str(path), "exec")
    assert weight in (folder / "README.md").read_text()
    assert (folder / "model_version.txt").read_text() == "1\n"
    assert model_folder(folder).ensemble().name == "fraud_scorer_pipeline"
    assert oct(folder.stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.slow
@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_scaffold_trains_and_passes_its_own_fixtures(tmp_path: Path, framework: str) -> None:
    folder = scaffold_model("fraud_scorer", framework, tmp_path / "models")
    model = ModelFolder(folder)

    export = subprocess.run(
        [sys.executable, str(folder / "train.py")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert export.returncode == 0, export.stderr
    weights = folder / "fraud_scorer_inferencer" / "1" / FRAMEWORKS[framework].weight_file
    assert weights.is_file() and weights.stat().st_size < 1_000_000
    assert "training accuracy" in export.stdout

    # The committed example values hold for a fresh export (seeded training) ...
    results = run_cases(model)
    assert [(r.case.name, r.passed) for r in results] == [("example", True)], [
        c.message for r in results for c in r.comparisons
    ]
    # ... and regenerating them moves nothing beyond the tolerances.
    (regenerated,) = regenerate_fixtures(model)
    assert [c.status for c in regenerated.changes] in (
        ["unchanged", "unchanged"],
        ["unchanged", "within tolerance"],
    )
    assert run_cases(model)[0].passed

    try:
        from mmetools.model.validation import validate_path
    except ImportError:  # pragma: no cover - validate.py belongs to another module's work
        return
    problems = [str(p) for p in validate_path(folder)]
    assert problems == []


def test_build_file_is_the_one_the_examples_have(tmp_path: Path) -> None:
    folder = scaffold_model("fraud_scorer", "onnx", tmp_path)
    example = (MODELS_DIR / "screen_detector" / "BUILD").read_text()
    assert (folder / "BUILD").read_text() == example.replace("screen_detector", "fraud_scorer")
    # Pants reads any file named BUILD or BUILD.*: the template itself must not be one.
    templates = REPO_ROOT / "src" / "mmetools" / "templates"
    assert [p for p in templates.rglob("BUILD*")] == []


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_python_steps_carry_their_env_parameter_like_the_examples(
    tmp_path: Path, framework: str
) -> None:
    # Packaging and testing never edit a tracked config: the parameter ships in it.
    folder = scaffold_model("fraud_scorer", framework, tmp_path)
    for example_step in ("screen_detector_preprocessing", "screen_detector_postprocessing"):
        assert (
            EXECUTION_ENV_PATH
            in (MODELS_DIR / "screen_detector" / example_step / "config.pbtxt").read_text()
        )
    configs = {p.parent.name: p.read_text() for p in folder.glob("*/config.pbtxt")}
    carrying = sorted(name for name, text in configs.items() if EXECUTION_ENV_PATH in text)
    assert carrying == ["fraud_scorer_postprocessing", "fraud_scorer_preprocessing"]


def _dvc_repository(root: Path, url: str) -> Path:
    (root / ".dvc").mkdir(parents=True)
    (root / ".dvc" / "config").write_text(
        f"[core]\n    remote = store\n['remote \"store\"']\n    url = {url}\n"
    )
    return root / "models"


def test_git_add_includes_a_dvc_remote_that_lives_in_the_repository(tmp_path: Path) -> None:
    models = _dvc_repository(tmp_path / "repo", "example-remote")
    folder = scaffold_model("fraud_scorer", "onnx", models)
    assert git_add_paths(folder) == ["models/fraud_scorer", ".dvc/example-remote"]
    readme = (folder / "README.md").read_text()
    assert "git add models/fraud_scorer .dvc/example-remote\n" in readme
    assert "`dvc push` wrote the weights' objects into `.dvc/example-remote/`" in readme


def test_git_add_is_the_folder_alone_for_a_cloud_remote(tmp_path: Path) -> None:
    models = _dvc_repository(tmp_path / "repo", "s3://weights/dvcstore")
    folder = scaffold_model("fraud_scorer", "onnx", models)
    assert git_add_paths(folder) == ["models/fraud_scorer"]
    assert "git add models/fraud_scorer\n" in (folder / "README.md").read_text()


def test_the_repository_itself_asks_for_its_example_remote() -> None:
    assert git_add_paths(MODELS_DIR / "fraud_scorer") == [
        "models/fraud_scorer",
        ".dvc/example-remote",
    ]


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_printed_next_steps_are_the_readme_commands(tmp_path: Path, framework: str) -> None:
    models = _dvc_repository(tmp_path / "repo", "example-remote")
    folder = scaffold_model("fraud_scorer", framework, models)
    readme = (folder / "README.md").read_text()
    steps = next_steps(Path("models/fraud_scorer"), framework)
    assert len(steps) == 7
    assert f"mmetools lock models/fraud_scorer" in steps
    for command in steps:
        assert f"       {command}\n" in readme, command


def test_cli_new_prints_the_next_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _dvc_repository(tmp_path, "example-remote")
    monkeypatch.chdir(tmp_path)
    assert main(["new", "fraud_scorer", "--framework", "torchscript"]) == 0
    out = capsys.readouterr().out
    assert "created models/fraud_scorer and its BUILD" in out
    assert "  dvc add models/fraud_scorer/fraud_scorer_inferencer/1/model.pt\n" in out
    assert "  git add models/fraud_scorer .dvc/example-remote\n" in out


def _quality_tool(tool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / tool), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_scaffold_passes_black_and_mypy_as_ci_runs_them(tmp_path: Path, framework: str) -> None:
    """The plugin's mypy-model-steps checker: the venv's mypy, build-support/mypy.ini, one file
    at a time (every step is a module named `model`)."""
    folder = scaffold_model("fraud_scorer", framework, tmp_path / "models")
    black = _quality_tool("black", "--config", "pyproject.toml", "--check", "-q", folder)
    assert black.returncode == 0, black.stdout + black.stderr
    # A cache kept between runs (git-ignored), as the plugin keeps one per folder.
    cache = REPO_ROOT / ".mypy_cache" / "scaffold-test"
    config = ("--config-file", "build-support/mypy.ini", "--cache-dir", cache)
    for source in sorted(folder.rglob("*.py")):
        checked = _quality_tool("mypy", *config, source)
        assert checked.returncode == 0, checked.stdout
    # The check bites: the writer type the first scaffold had is refused at the same call.
    train = folder / "train.py"
    train.write_text(train.read_text().replace("Callable[[str], object]", "Callable[[str], None]"))
    broken = _quality_tool("mypy", *config, train)
    assert broken.returncode == 1 and "write_atomically" in broken.stdout, broken.stdout
