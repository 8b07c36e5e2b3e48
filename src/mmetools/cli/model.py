"""Commands on model folders: ``new``, ``validate``, ``fixtures regen|check`` and ``lock``.

Each parses its arguments, calls the library, prints what :mod:`mmetools.rendering` draws and
exits (1 when something it checked is wrong); registered by :mod:`mmetools.cli`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mmetools.cli.app import console, err_console, model_folders_of, status_while


def fixtures_regen(
    model: Annotated[Path, typer.Argument(help="Model folder, e.g. models/screen_detector.")],
    case: Annotated[
        Optional[list[str]], typer.Option("--case", help="Only this case (repeatable).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; write nothing.")
    ] = False,
) -> None:
    """Recompute the cases' expected outputs with an in-process run (no Triton).

    Runs the model's pre/post-processing and network directly in Python (onnxruntime / torch);
    datatypes, tolerances, descriptions and inputs stay as they are.
    """
    from mmetools.model.folder import model_folder
    from mmetools.model.reference import regenerate_fixtures
    from mmetools.rendering.tables import regenerated_summary, regenerated_table

    folder = model_folder(model)
    results = regenerate_fixtures(folder, case or (), write=not dry_run)
    console.print(regenerated_table(folder.name, results, dry_run))
    console.print(regenerated_summary(results, dry_run))


def fixtures_check(
    models: Annotated[list[Path], typer.Argument(help="Model folders, e.g. models/*.")],
) -> None:
    """Compare the fixtures with an in-process run (no Triton); exit 1 when a case fails.

    Also checks every fixture file against the ensemble config (names, datatypes, shapes).
    """
    from mmetools.model.cases import load_fixtures, regen_hint
    from mmetools.model.reference import run_cases
    from mmetools.rendering.tables import fixture_check_problems, fixture_check_table

    failed = 0
    wrong_values: list[str] = []
    for folder in model_folders_of(models):
        results = run_cases(folder, load_fixtures(folder))
        console.print(fixture_check_table(folder.name, results))
        for line in fixture_check_problems(results):
            err_console.print(line, markup=False, soft_wrap=True)
        failed += sum(1 for r in results if not r.passed)
        if any(not c.passed for r in results for c in r.comparisons):
            wrong_values.append(str(folder.path))
    if failed:
        err_console.print(f"{failed} case(s) failed")
        for folder_text in wrong_values:
            err_console.print(regen_hint(folder_text), markup=False, soft_wrap=True)
        raise typer.Exit(1)


def new_model(
    name: Annotated[str, typer.Argument(help="Model name: lowercase letters, digits, '_'.")],
    framework: Annotated[
        str, typer.Option("--framework", help="Inferencer format: onnx or torchscript.")
    ] = "onnx",
    models_dir: Annotated[
        Path, typer.Option("--models-dir", help="Folder that holds the model folders.")
    ] = Path("models"),
    family: Annotated[
        bool,
        typer.Option("--family", help="A model family: one ensemble, one artifact per tenant."),
    ] = False,
) -> None:
    """Create a complete model folder: configs, pre/post-processing, train/export script, fixtures."""
    from mmetools.model.scaffold import next_steps, scaffold_model

    folder = scaffold_model(name, framework, models_dir, family=family)
    console.print(f"created {folder} and its BUILD")
    if family:
        console.print(f"next: mmetools tenant add {folder} TENANT (see {folder / 'README.md'})")
        return
    console.print("next, from the repository root after `source .venv/bin/activate`:")
    for command in next_steps(folder, framework):
        console.print(f"  {command}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"each step is explained in {folder / 'README.md'}")


def validate(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Model folders (models/<name>), folders of them, or Triton model repositories.",
            show_default=False,
        ),
    ],
) -> None:
    """Check configs statically: everything Triton rejects when loading the ensembles, plus the
    project's layout rules for model folders. Exit 1 when there is an error (warnings pass)."""
    from mmetools.model.validation import summary_line, validate_paths

    problems = validate_paths(paths)
    for problem in problems:
        style = "red" if problem.is_error else "yellow"
        # soft_wrap: one problem per line, whatever the terminal width (grep-able, CI logs).
        console.print(str(problem), style=style, markup=False, soft_wrap=True)
    console.print(summary_line(problems, paths), markup=False, soft_wrap=True)
    if any(problem.is_error for problem in problems):
        raise typer.Exit(1)


def lock_command(
    models: Annotated[list[Path], typer.Argument(help="Model folders, e.g. models/*.")],
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 when a lock is missing or stale.")
    ] = False,
) -> None:
    """Write models/<name>/requirements-<python>.lock: requirements.txt resolved with hashes by
    uv for the serving target's Python and platform (the env step installs from it)."""
    from mmetools.build.env.lock import lock_model
    from mmetools.core.settings import load_settings
    from mmetools.model.folder import ModelFolder

    target = load_settings().target
    bad = 0
    # A family's lock is its own (beside its requirements.txt), shared by its tenants: once.
    folders = {f.source_dir: ModelFolder(f.source_dir) for f in model_folders_of(models)}
    for folder in folders.values():
        with console.status(f"{folder.name}: resolving for Python {target.python_version}"):
            result = lock_model(folder, target, check=check)
        if result.status in ("missing", "stale"):
            bad += 1
            err_console.print(
                f"{result.path}: {result.status} for Python {target.python_version} on "
                f"{target.manylinux_platform}; run `mmetools lock {folder.path}` and commit it",
                markup=False,
                soft_wrap=True,
            )
        else:
            console.print(f"{result.path}: {result.status}", markup=False, soft_wrap=True)
    if bad:
        raise typer.Exit(1)


def tenant_add(
    family: Annotated[Path, typer.Argument(help="The family's folder, e.g. models/scorer.")],
    tenant: Annotated[str, typer.Argument(help="Tenant name: lowercase letters, digits, '_'.")],
    weights: Annotated[
        Optional[Path],
        typer.Option("--weights", help="Take these trained weights instead of running train.py."),
    ] = None,
    seed: Annotated[
        Optional[int], typer.Option("--seed", help="train.py's seed (default: from the name).")
    ] = None,
    push: Annotated[bool, typer.Option("--push/--no-push", help="dvc push the weights.")] = True,
) -> None:
    """Add a complete tenant: weights (trained or given) tracked and pushed with DVC, fixtures."""
    from mmetools.model.scaffold import commit_tokens
    from mmetools.model.tenant_add import add_tenant

    with status_while(f"adding tenant {tenant}"):  # each step is logged
        added = add_tenant(family, tenant, weights=weights, seed=seed, push=push)
    how = "given weights" if added.seed is None else f"trained with seed {added.seed}"
    console.print(f"added {added.folder} ({how}, {added.fixtures} fixture case(s))", markup=False)
    console.print(f"commit it: {commit_tokens(added.folder)['git_add']}", markup=False)
