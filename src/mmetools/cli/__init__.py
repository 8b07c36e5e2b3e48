"""The ``mmetools`` command line: a thin shell over the library.

Commands parse arguments, call the library, print what :mod:`mmetools.rendering` draws and exit.
Every MmetoolsError becomes a message and an exit code here, in :func:`main`; anything else is a
bug and keeps its traceback. The typer app is :mod:`mmetools.cli.app`; the commands live by stage
in :mod:`.model`, :mod:`.build`, :mod:`.test`, :mod:`.release`, :mod:`.serving`, :mod:`.deploy` and
:mod:`.staging` and are registered below, in
the order ``mmetools --help`` lists them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Optional

import typer

from mmetools.cli.app import app, err_console, fixtures_app, staging_app, tenant_app
from mmetools.cli.build import (
    build_command,
    env_command,
    fetch_command,
    inspect_command,
    package_command,
    targets_command,
)
from mmetools.cli.model import (
    fixtures_check,
    fixtures_regen,
    lock_command,
    new_model,
    tenant_add,
    validate,
)
from mmetools.cli.release import bump_command, diff_command, loadtest_command, publish_command
from mmetools.cli.deploy import (
    CHANGES_EXIT_CODE,
    DETAILED_EXIT_CODE,
    ChangesPlanned,
    endpoint_apply_command,
    endpoint_plan_command,
    endpoint_status_command,
    smoke_command,
)
from mmetools.cli.serving import capacity_command, endpoint_app, serve_command
from mmetools.cli.staging import staging_prune
from mmetools.cli.test import test_command
from mmetools.core.errors import MmetoolsError, Terminated, ValidationFailed
from mmetools.core.process import sigterm_raises
from mmetools.core.redaction import redact

fixtures_app.command("regen")(fixtures_regen)
fixtures_app.command("check")(fixtures_check)
staging_app.command("prune")(staging_prune)
tenant_app.command("add")(tenant_add)
app.command("new")(new_model)
app.command("validate")(validate)
app.command("publish")(publish_command)
app.command("env")(env_command)
app.command("package")(package_command)
app.command("fetch")(fetch_command)
app.command("test")(test_command)
app.command("diff")(diff_command)
app.command("bump")(bump_command)
app.command("loadtest")(loadtest_command)
app.command("targets")(targets_command)
app.command("lock")(lock_command)
app.command("inspect")(inspect_command)
app.command("build")(build_command)
endpoint_app.command("serve")(serve_command)
endpoint_app.command("capacity")(capacity_command)
endpoint_app.command("plan")(endpoint_plan_command)
endpoint_app.command("apply")(endpoint_apply_command)
endpoint_app.command("status")(endpoint_status_command)
app.command("smoke")(smoke_command)
app.add_typer(endpoint_app, name="endpoint")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit code (tests call this directly). SIGTERM ends a command the
    way Ctrl-C does: every cleanup runs (servers stopped, temp folders removed), exit 143.

    With ``--detailed-exit-code`` (``endpoint plan``), as terraform does: 0 nothing differs, 2
    there are changes, 1 any failure (a usage error included, so a drift job cannot take a
    mistyped option for drift)."""
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        code = _run(args)
    except ChangesPlanned:
        return CHANGES_EXIT_CODE
    return 1 if DETAILED_EXIT_CODE in args and code != 0 else code


def _run(args: list[str]) -> int:
    try:
        with sigterm_raises():
            # With standalone_mode=False click returns a typer.Exit's code instead of raising it.
            result = app(args=args, standalone_mode=False)
    except ChangesPlanned:
        raise  # not a failure: main turns it into its exit code
    except Terminated as e:
        err_console.print("terminated (SIGTERM)")
        return int(e.code) if isinstance(e.code, int) else 143
    except ValidationFailed as e:
        # soft_wrap: each message stays one line whatever the terminal width, so the paths in it
        # are not broken (rich wraps CI logs at 80 columns) and stay grep-able.
        for problem in e.problems:
            err_console.print(redact(problem), markup=False, soft_wrap=True)
        return e.exit_code
    except MmetoolsError as e:
        err_console.print(f"error: {redact(str(e))}", markup=False, soft_wrap=True)
        return e.exit_code
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as e:  # click usage errors (newer typer vendors click as typer._click)
        show, exit_code = getattr(e, "show", None), getattr(e, "exit_code", None)
        if callable(show) and isinstance(exit_code, int):
            show()
            return exit_code
        raise
    return result if isinstance(result, int) else 0


def entry_point() -> None:
    sys.exit(main())


__all__ = ["app", "entry_point", "main"]
