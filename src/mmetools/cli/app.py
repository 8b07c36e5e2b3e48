"""The typer application of the ``mmetools`` command line, and what every command shares.

The app, its global options (logging), the ``fixtures`` and ``staging`` sub-apps, the two
consoles (stdout for results, stderr for logs, progress and errors), the ``--mode`` option and
the model-folder arguments. The commands live in the stage modules beside this one and are registered, in the
order ``mmetools --help`` lists them, by :mod:`mmetools.cli`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ContextManager, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler

from mmetools.core.redaction import install_log_redaction

if TYPE_CHECKING:
    from mmetools.model.folder import ModelFolder

app = typer.Typer(
    name="mmetools",
    help="Validate, test, package and publish Triton ensembles for SageMaker multi-model endpoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


@app.callback()
def _global_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, show_time=False)],
        force=True,
    )
    # Every record of every logger (botocore's debug lines included) leaves with its
    # credentials masked: the endpoint's user:password, the session token, signatures.
    install_log_redaction()


fixtures_app = typer.Typer(
    help="Check fixture cases and regenerate their expected values (in-process, no Triton).",
    no_args_is_help=True,
)
app.add_typer(fixtures_app, name="fixtures")

staging_app = typer.Typer(
    help="Staging housekeeping: the folders of branches that are gone or merged.",
    no_args_is_help=True,
)
app.add_typer(staging_app, name="staging")

tenant_app = typer.Typer(
    help="Tenants of a model family: one ensemble, one artifact per tenant.",
    no_args_is_help=True,
)
app.add_typer(tenant_app, name="tenant")

# The --mode option of every command that starts a Triton server.
TritonModeOption = Annotated[
    Optional[str],
    typer.Option("--mode", help="Triton: auto, bundled (CPU, from the wheel), native, docker."),
]


def model_folders_of(paths: Sequence[Path]) -> list[ModelFolder]:
    """The model folders among ``paths`` (plain files such as models/BUILD are skipped with a
    note; anything else that is no model folder is an error)."""
    from mmetools.model.folder import resolve_model_args

    folders, skipped = resolve_model_args(paths)
    for path in skipped:
        err_console.print(f"skipping {path}: a file, not a model folder", markup=False)
    return folders


def status_while(message: str) -> ContextManager[object]:
    """A spinner with ``message`` on a terminal; nothing when the output is a file or a pipe."""
    return console.status(message) if console.is_terminal else contextlib.nullcontext()
