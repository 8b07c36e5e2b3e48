"""Model families (model/family.py): tenant names, the tenant reader and its rules, assembly of a
tenant's folder, and how every command's model arguments take a family or one tenant."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmetools.core.errors import ConfigError, UsageError
from mmetools.model.family import Family, assemble_tenant, family, tenant_folder, tenant_problems
from mmetools.model.folder import (
    ModelRef,
    artifact_file_name,
    model_folder,
    own_folder,
    parse_artifact_name,
    requirements_of,
    resolve_model_args,
    split_model_name,
    tenant_model_name,
)
from mmetools.model.scaffold import scaffold_model
from mmetools.model.validation import validate_path

WEIGHTS = "fam_inferencer/1/model.onnx"


@pytest.fixture
def fam(tmp_path: Path) -> Family:
    """A scaffolded family with two tenants whose weights are placeholder bytes (static rules only)."""
    (tmp_path / "mmetools.toml").write_text("")
    folder = scaffold_model("fam", "onnx", tmp_path / "models", family=True)
    for tenant in ("acme", "bravo"):
        add_files(folder / "tenants" / tenant, {
            "model_version.txt": "1\n",
            WEIGHTS: f"weights of {tenant}",
            "tests/fixtures/example.json": (folder / "tests/fixtures/example.json").read_text(),
        })  # fmt: skip
    return Family(folder)


def add_files(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


# --- names ---------------------------------------------------------------------------------------


def test_a_tenant_is_named_family_dash_tenant_and_its_artifact_parses_back() -> None:
    name = tenant_model_name("scorer", "acme_co")
    assert name == "scorer-acme_co"
    assert split_model_name(name) == ("scorer", "acme_co")
    assert split_model_name("scorer") == ("scorer", None)
    assert parse_artifact_name(Path(artifact_file_name(name, 3))) == ModelRef("scorer-acme_co", 3)
    root = Path("repo")
    assert own_folder(name, root) == Path("repo/models/scorer/tenants/acme_co")
    assert own_folder("scorer", root) == Path("repo/models/scorer")
    assert requirements_of(name, root) == Path("repo/models/scorer/requirements.txt")


@pytest.mark.parametrize("name", ["a-b-c_1.tar.gz", "-b_1.tar.gz", "a-_1.tar.gz", "a-B_1.tar.gz"])
def test_artifact_names_with_more_than_a_family_and_a_tenant_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="not an artifact name"):
        parse_artifact_name(Path(name))


# --- the tenant's rules (each guarded thing broken once) --------------------------------------


def test_a_complete_tenant_has_no_problems(fam: Family) -> None:
    assert fam.tenants() == ["acme", "bravo"]
    assert tenant_problems(fam, "acme") == []
    assert validate_path(fam.path) == []


@pytest.mark.parametrize(
    ("files", "offender", "words"),
    [
        ({"fam_pipeline/config.pbtxt": "x"}, "fam_pipeline/config.pbtxt", "inside a version"),
        (
            {"fam_postprocessing/1/model.py": "x"},
            "fam_postprocessing/1/model.py",
            "code and configs",
        ),
        ({"other_step/1/x.txt": "x"}, "other_step/1/x.txt", "may only set files inside"),
        ({"notes.txt": "x"}, "notes.txt", "may only set files inside"),
    ],
)
def test_a_tenant_that_overrides_shared_files_is_refused_naming_the_file(
    fam: Family, files: dict[str, str], offender: str, words: str
) -> None:
    add_files(fam.tenant_dir("acme"), files)
    problems = tenant_problems(fam, "acme")
    assert [path for path, _ in problems] == [fam.tenant_dir("acme") / offender]
    assert words in problems[0][1]
    with pytest.raises(ConfigError, match=str(fam.tenant_dir("acme") / offender)):
        model_folder(fam.tenant_dir("acme"))
    assert any(offender in str(p) for p in validate_path(fam.path))


def test_a_tenant_without_a_version_or_with_a_bad_name_is_refused(fam: Family) -> None:
    (fam.tenant_dir("acme") / "model_version.txt").unlink()
    assert tenant_problems(fam, "acme") == [
        (fam.tenant_dir("acme") / "model_version.txt", "missing; it must hold the tenant's version")
    ]
    (fam.tenants_dir / "Bad-Name").mkdir()
    [(path, message)] = tenant_problems(fam, "Bad-Name")
    assert path == fam.tenant_dir("Bad-Name") and "invalid tenant name 'Bad-Name'" in message


def test_a_bad_tenant_version_is_a_problem_of_its_own_file(fam: Family) -> None:
    (fam.tenant_dir("bravo") / "model_version.txt").write_text("two\n")
    problems = [str(p) for p in validate_path(fam.tenant_dir("bravo"))]
    assert any(str(fam.tenant_dir("bravo") / "model_version.txt") in p for p in problems)


def test_a_tenant_missing_its_weights_fails_validation(fam: Family) -> None:
    (fam.tenant_dir("acme") / WEIGHTS).unlink()
    [problem] = validate_path(fam.tenant_dir("acme"))
    # Said against the committed file, not the assembled copy, and naming the tenant.
    assert problem.path == fam.path / "fam_inferencer/config.pbtxt"
    assert "no version folder" in problem.message and "(tenant 'acme')" in problem.message


# --- assembly ------------------------------------------------------------------------------------


def test_the_assembled_tenant_is_the_family_with_the_tenants_files_over_it(fam: Family) -> None:
    root = fam.path.parent.parent
    add_files(fam.tenant_dir("acme"), {"fam_postprocessing/1/labels.txt": "a\nb\nc\n"})
    add_files(fam.path, {"tests/fixtures/family_only.json": "{}"})
    folder = assemble_tenant(fam, "acme", root)
    assert folder.name == "fam-acme" and folder.steps_name == "fam"
    assert folder.path == root / "build/tenants/fam-acme"
    assert folder.version_file == fam.tenant_dir("acme") / "model_version.txt"
    assert folder.fixtures_dir == fam.tenant_dir("acme") / "tests/fixtures"
    assert folder.source_dir == fam.path
    assert (folder.path / WEIGHTS).read_text() == "weights of acme"
    assert (folder.path / "fam_postprocessing/1/labels.txt").read_text() == "a\nb\nc\n"
    assert (folder.path / "fam_postprocessing/1/model.py").read_bytes() == (
        fam.path / "fam_postprocessing/1/model.py"
    ).read_bytes()
    # The family's fixture inputs are no tenant's cases: only the tenant's own are there.
    assert sorted(p.name for p in (folder.path / "tests/fixtures").iterdir()) == ["example.json"]
    assert folder.ref() == ModelRef("fam-acme", 1)

    # A packed env the env step placed survives; a file the tenant no longer sets does not.
    (folder.path / "fam_preprocessing/python_env.tar.gz").write_text("env")
    (fam.tenant_dir("acme") / "fam_postprocessing/1/labels.txt").unlink()
    again = assemble_tenant(fam, "acme", root)
    assert (again.path / "fam_preprocessing/python_env.tar.gz").read_text() == "env"
    assert (again.path / "fam_postprocessing/1/labels.txt").read_bytes() == (
        fam.path / "fam_postprocessing/1/labels.txt"
    ).read_bytes()


def test_model_arguments_take_a_family_or_one_tenant(fam: Family, tmp_path: Path) -> None:
    folders, skipped = resolve_model_args([fam.path, tmp_path / "mmetools.toml"])
    assert [f.name for f in folders] == ["fam-acme", "fam-bravo"]
    assert skipped == [tmp_path / "mmetools.toml"]
    assert model_folder(fam.tenant_dir("bravo")).name == "fam-bravo"
    with pytest.raises(UsageError, match="a model family: give one tenant"):
        model_folder(fam.path)
    with pytest.raises(UsageError, match="has no tenant 'zed'"):
        tenant_folder(fam.path, "zed")
    with pytest.raises(UsageError, match="not a model family"):
        family(fam.tenants_dir)


# --- the commands' usage errors (no tracebacks, nothing written) --------------------------------


def test_tenant_add_refuses_bad_names_existing_tenants_and_missing_weights(
    fam: Family, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mmetools.cli import main

    before = sorted(p.name for p in fam.tenants_dir.iterdir())
    assert main(["tenant", "add", str(fam.path), "Bad-Name"]) == 2
    assert "invalid tenant name 'Bad-Name'" in capsys.readouterr().err
    assert main(["tenant", "add", str(fam.path), "acme"]) == 1
    assert "already exists; `tenant add` never overwrites a tenant" in capsys.readouterr().err
    missing = tmp_path / "nope.onnx"
    assert main(["tenant", "add", str(fam.path), "delta", "--weights", str(missing)]) == 2
    assert f"--weights {missing}: no such file" in capsys.readouterr().err
    assert main(["tenant", "add", str(fam.tenants_dir), "delta"]) == 2
    assert "not a model family" in capsys.readouterr().err
    assert sorted(p.name for p in fam.tenants_dir.iterdir()) == before


def test_new_family_writes_a_family_with_no_tenant(tmp_path: Path) -> None:
    folder = scaffold_model("scorer", "onnx", tmp_path / "models", family=True)
    assert not (folder / "model_version.txt").exists()
    assert (folder / "BUILD").read_text().count('triton_model_family(name="scorer")') == 1
    assert Family(folder).tenants() == []
    with pytest.raises(UsageError, match="has no tenants yet"):
        resolve_model_args([folder])


def test_one_broken_tenant_of_a_family_stops_only_itself(fam: Family) -> None:
    from mmetools.core.errors import ValidationFailed
    from mmetools.model.validation import validate_model

    add_files(fam.tenant_dir("acme"), {"fam_pipeline/config.pbtxt": "x"})
    acme, bravo = resolve_model_args([fam.path])[0]
    with pytest.raises(ValidationFailed) as error:
        validate_model(acme)
    assert any(str(fam.tenant_dir("acme") / "fam_pipeline/config.pbtxt") in p
               for p in error.value.problems)  # fmt: skip
    validate_model(bravo)


def test_a_tenants_env_is_its_familys_as_the_shared_configs_name_it() -> None:
    from mmetools.model.folder import model_env_archive, model_env_value

    assert model_env_archive("fam-acme") == "fam_env.tar.gz"
    assert model_env_value("fam-acme") == model_env_value("fam")
    assert model_env_archive("screen_detector") == "screen_detector_env.tar.gz"
