"""``thingcore version``."""

from __future__ import annotations

import json
import platform

import typer

import thingcore


def version(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object for scripts."),
) -> None:
    """Print thingcore's version and the Python it runs on."""
    if as_json:
        typer.echo(
            json.dumps({"thingcore": thingcore.__version__, "python": platform.python_version()})
        )
    else:
        typer.echo(f"thingcore {thingcore.__version__} (Python {platform.python_version()})")
