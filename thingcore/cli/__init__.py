"""The ``thingcore`` command: one module per noun, one thin function per command.

A ``ThingcoreError`` is printed as one red line with exit code 1; anything else is a bug and
gets a full traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from thingcore.cli import (
    apply,
    buckets,
    ca,
    capture,
    certs,
    functions,
    groups,
    policies,
    queues,
    rules,
    serve,
    shadows,
    targets,
    things,
    topics,
    types,
    version,
)
from thingcore.errors import ThingcoreError

app = typer.Typer(
    name="thingcore",
    help="thingcore: a self-hosted IoT backend that AWS IoT Core devices can use unchanged.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
app.command("serve")(serve.serve)
app.command("version")(version.version)
app.command("capture")(capture.capture)
app.command("targets")(targets.targets)
app.command("apply")(apply.apply)
app.add_typer(things.app, name="things")
app.add_typer(types.app, name="types")
app.add_typer(groups.app, name="groups")
app.add_typer(certs.app, name="certs")
app.add_typer(policies.app, name="policies")
app.add_typer(ca.app, name="ca")
app.add_typer(shadows.app, name="shadows")
app.add_typer(rules.app, name="rules")
app.add_typer(buckets.app, name="buckets")
app.add_typer(queues.app, name="queues")
app.add_typer(topics.app, name="topics")
app.add_typer(functions.app, name="functions")


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=True)
    except ThingcoreError as exc:
        # escape: a message may hold brackets that are not markup (pip install 'thingcore[aws]').
        Console(stderr=True, soft_wrap=True).print(
            f"[red]error:[/red] {escape(str(exc))}", highlight=False
        )
        sys.exit(1)
