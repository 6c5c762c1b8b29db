"""``thingcore apply``: make the data directory match an app file (``thingcore-app.toml``).

The file (``thingcore.appfile``) is checked whole first; the plan (``thingcore.appplan``)
is printed like a diff, then carried out (``thingcore.appstate``). Idempotent: a second apply
of the same file says there is nothing to change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Group, RenderableType
from rich.text import Text

from rules.definition import missing_extras
from thingcore.appfile import APP_FILE, AppFileError, load_app
from thingcore.appplan import SYMBOLS, Change, Plan, make_plan
from thingcore.appstate import execute, observe, read_state, state_path
from thingcore.cli.common import (
    DataDir,
    Json,
    print_json,
    registry_for,
    settings_for,
    stdout_console,
)
from thingcore.errors import ThingcoreError

STYLES = {
    "create": "green",
    "change": "yellow",
    "delete": "red",
    "blocked": "bold red",
    "kept": "cyan",
    "unchanged": "dim",
}


def change_line(change: Change) -> Text:
    """``+ function notify``, ``~ rule hot_readings (sql)``, ``- topic old``..."""
    line = Text(f"{SYMBOLS[change.action]} {change.label}", style=STYLES[change.action])
    if change.fields:
        line.append(f" ({', '.join(change.fields)})")
    if change.note:
        line.append(f": {change.note}", style="dim" if change.action != "blocked" else "")
    return line


def plan_view(plan: Plan, *, dry_run: bool, verbose: bool = False) -> RenderableType:
    """The plan as a diff and a summary line (unchanged resources only when ``verbose``)."""
    shown = [c for c in plan.changes if verbose or c.action != "unchanged"]
    counts = plan.counts()
    if not plan.pending and not plan.blocked:
        summary = f"No changes: the data directory matches app {plan.app}."
        if counts["kept"]:
            summary += f" ({counts['kept']} kept: --prune deletes them)"
        return Group(*map(change_line, shown), Text(summary))
    summary = (
        f"{'Plan' if dry_run else 'Applied'}: {counts['create']} to create, "
        f"{counts['change']} to change, {counts['delete']} to delete"
    )
    if not dry_run:
        summary = (
            f"Applied app {plan.app}: {counts['create']} created, {counts['change']} changed, "
            f"{counts['delete']} deleted"
        )
    if counts["kept"]:
        summary += f", {counts['kept']} kept"
    summary += f" ({counts['unchanged']} unchanged)"
    if dry_run:
        summary += "; dry run: nothing was written"
    return Group(*map(change_line, shown), Text(summary, style="bold"))


def apply(
    file: Annotated[
        Path,
        typer.Argument(help="The app file.", show_default=True),
    ] = Path(APP_FILE),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the file and print the plan; write nothing.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace rules, function files and subscriptions that exist but were not made "
            "by this app (or take over another app's data directory).",
        ),
    ] = False,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Delete queues and buckets the app made and no longer names, with their "
            "messages and objects (else they are kept).",
        ),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also list what is unchanged.")
    ] = False,
    data_dir: DataDir = None,
    json_output: Json = False,
) -> None:
    """Make the data directory run the app of FILE (default ./thingcore-app.toml): its rules,
    functions, queues, buckets and topics. Prints what changes like a diff (`+` create,
    `~` change, `-` delete, `=` kept, `!` blocked), then makes the changes.

    Idempotent: applying the same file twice changes nothing. The whole file is checked first;
    if anything is wrong, nothing is applied. Only what the app made is changed or deleted
    (recorded in `<data dir>/app-state.json`): a rule or function file made otherwise is
    never replaced without `--force`, and a queue or bucket the file no longer names is kept
    with its data unless `--prune`. A running server picks the changes up by itself.

    Example: `thingcore apply examples/app/thingcore-app.toml --dry-run`"""
    spec = load_app(file)
    settings = settings_for(data_dir)
    # An action whose package is missing would never deliver: refuse it now, with the command
    # that installs it (as `thingcore rules apply` does).
    missing = [
        f"rules.{d.name}: {m}"
        for d in spec.rules.values()
        for m in missing_extras(d, settings.rules)
    ]
    if missing:
        raise AppFileError(str(file), missing)
    path = state_path(settings)
    state = read_state(path)
    with registry_for(settings) as registry:
        current = observe(settings, registry.db, spec, state)
        plan = make_plan(spec, current, state, force=force, prune=prune)
        apply_now = not dry_run and not plan.blocked and bool(plan.pending or plan.state != state)
        if apply_now:
            execute(plan, spec, settings, registry.db, state)
    if json_output:
        print_json({**plan.as_dict(), "dryRun": dry_run, "applied": apply_now})
    else:
        stdout_console().print(
            plan_view(plan, dry_run=dry_run or bool(plan.blocked), verbose=verbose)
        )
    if plan.blocked:
        raise ThingcoreError(
            f"{len(plan.blocked)} change(s) blocked (marked !): they replace what this app did "
            "not make; use --force to replace them. Nothing was applied."
        )
