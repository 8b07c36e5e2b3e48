"""``mmetools staging prune``: list, and with ``--yes`` delete, the staging folders of branches
that are gone or merged (the library is :mod:`mmetools.release.staging`); registered by
:mod:`mmetools.cli`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mmetools.cli.app import console, err_console


def staging_prune(
    yes: Annotated[
        bool, typer.Option("--yes", help="Delete the folders listed as 'prune' (default: list).")
    ] = False,
) -> None:
    """List the staging folders of branches that no longer exist or are merged into the
    production branch; delete them with --yes. Never production, never the production branch's
    staging folder, never a folder whose name is no branch. Run `git fetch --prune` first: the
    branches are the ones this clone knows (local and remote-tracking)."""
    from mmetools.core.settings import load_settings
    from mmetools.release.publish import destinations
    from mmetools.release.staging import known_branches, plan_prune, prune
    from mmetools.rendering.tables import staging_table

    settings = load_settings()
    staging, _ = destinations(settings)
    if not settings.publish.namespace_staging_by_branch:
        console.print(
            f"{staging.uri}: staging is not split by branch "
            "(publish.namespace_staging_by_branch = false): nothing to prune",
            markup=False,
            soft_wrap=True,
        )
        return
    known = known_branches(settings.root, settings.publish.production_branch)
    folders = plan_prune(settings, known)
    console.print(staging_table(staging.uri, folders, dry_run=not yes))
    if not known.remote_tracking:
        err_console.print(
            "note: no remote-tracking branch in this clone: only local branches count as "
            "existing (in a clone that never fetched, every other branch looks gone)",
            markup=False,
            soft_wrap=True,
        )
    chosen = [f for f in folders if f.verdict == "prune"]
    if not chosen:
        console.print("nothing to prune")
        return
    if not yes:
        console.print(
            f"dry run: {len(chosen)} folder(s) would be deleted; rerun with --yes to delete them"
        )
        return
    deleted = prune(folders, settings)
    for folder in deleted:
        console.print(f"deleted {folder.uri}", markup=False, soft_wrap=True)
    console.print(f"deleted {len(deleted)} staging folder(s)")
