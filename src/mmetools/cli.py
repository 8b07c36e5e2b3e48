"""The ``mmetools`` command line: a thin shell over the library.

Commands parse arguments, call one library function and print its result. Every MmetoolsError
becomes a message and an exit code here, in ``main``; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler

from mmetools.errors import MmetoolsError, ValidationFailed

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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit code (tests call this directly)."""
    try:
        app(args=list(argv) if argv is not None else None, standalone_mode=False)
    except ValidationFailed as e:
        for problem in e.problems:
            err_console.print(problem, markup=False)
        return e.exit_code
    except MmetoolsError as e:
        err_console.print(f"error: {e}", markup=False)
        return e.exit_code
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as e:  # click's own usage errors
        import click

        if isinstance(e, click.ClickException):
            e.show()
            return e.exit_code
        raise
    return 0


def entry_point() -> None:
    sys.exit(main())
