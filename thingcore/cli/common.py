"""What every registry command shares: options, opening the registry, reading input, output.

Renderers elsewhere are pure functions returning rich renderables; this module builds the small
ones they share (key/value grids, listing tables) and the one JSON printer that bypasses rich.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, RenderableType
from rich.table import Table

from registry import names
from registry.ca import write_private, write_public
from registry.service import Page, Registry
from thingcore.config import Settings, load_settings
from thingcore.errors import ThingcoreError

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Data directory (default ./var, or THINGCORE_DATA_DIR); the database is found "
        "through the same settings as `thingcore serve`.",
        show_default=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of text.")]

SHORT_ID = 12
"""Hex digits of a certificate id shown in tables; any unique prefix of 8 or more works."""
MIN_PREFIX = 8

_HEX_PREFIX = re.compile(r"(?:0x)?[0-9a-fA-F]{8,63}")


def subtyper(help_text: str) -> typer.Typer:
    """A noun's command group, configured like the root app."""
    return typer.Typer(
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="markdown",
    )


# -- settings and the registry -----------------------------------------------------------------


def settings_for(data_dir: Path | None) -> Settings:
    """The settings, with ``--data-dir`` (when given) overriding THINGCORE_DATA_DIR."""
    return load_settings(data_dir=data_dir) if data_dir is not None else load_settings()


@contextmanager
def open_registry(data_dir: Path | None) -> Iterator[Registry]:
    """The registry database of these settings, opened (and migrated) for one command."""
    with registry_for(settings_for(data_dir)) as registry:
        yield registry


@contextmanager
def registry_for(settings: Settings) -> Iterator[Registry]:
    """``open_registry`` for commands that also need the rest of the settings."""
    registry = Registry(settings.registry, settings.data_dir)
    try:
        registry.open()
        yield registry
    finally:
        registry.close()


def all_items(fetch: Callable[[str | None], Page]) -> list[dict[str, Any]]:
    """Every item of a paged listing: ``fetch(next_token)`` until the last page."""
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = fetch(token)
        items.extend(page.items)
        if page.next_token is None:
            return items
        token = page.next_token


# -- input -----------------------------------------------------------------------------------------


def read_input(source: str, what: str) -> str:
    """The text of file ``source``, or of standard input when it is ``-``."""
    if source == "-":
        try:
            return sys.stdin.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ThingcoreError(f"cannot read the {what} from standard input: {exc}") from None
    path = Path(source)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ThingcoreError(f"cannot read the {what}: {path} does not exist") from None
    except IsADirectoryError:
        raise ThingcoreError(f"cannot read the {what}: {path} is a directory") from None
    except OSError as exc:
        raise ThingcoreError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ThingcoreError(
            f"cannot read the {what} {path}: it is not UTF-8 text (PEM or JSON expected)"
        ) from None


def parse_pairs(pairs: Sequence[str] | None) -> dict[str, str]:
    """``--attr K=V`` values as a dict (an empty value removes the key where that applies)."""
    return names.parse_attributes(list(pairs or []))


def resolve_cert_id(registry: Registry, value: str) -> str:
    """A certificate id from its 64 hex digits, its ARN, or a unique prefix of 8 or more."""
    return match_id(
        value,
        "certificate",
        lambda: (i["certificateId"] for i in all_items(_cert_pages(registry))),
        "thingcore certs list",
    )


def resolve_ca_id(registry: Registry, value: str) -> str:
    """A CA certificate id from its 64 hex digits, its ARN, or a unique prefix of 8 or more."""
    if value.startswith("arn:") and ":cacert/" in value:
        value = value.rsplit(":cacert/", 1)[1]
    return match_id(
        value,
        "CA certificate",
        lambda: (c["certificateId"] for c in registry.certs.list_cas()),
        "thingcore ca list",
    )


def _cert_pages(registry: Registry) -> Callable[[str | None], Page]:
    return lambda token: registry.certs.list_certificates(next_token=token)


def match_id(value: str, what: str, ids: Callable[[], Iterable[str]], listing: str) -> str:
    """``value`` as a full id: normalised if complete, else the one id in ``ids()`` it begins.

    ``ids`` is only called for a prefix; ``listing`` is the command that shows the ids.
    """
    full = value.removeprefix("0x")
    if value.startswith("arn:") or len(full) == 64:
        return names.certificate_id(value)
    if not _HEX_PREFIX.fullmatch(value):
        raise ThingcoreError(
            f"{value!r} is not a {what} id: give its 64 hex digits, its ARN, or a unique "
            f"prefix of at least {MIN_PREFIX} hex digits (see `{listing}`)"
        )
    prefix = full.lower()
    matches = sorted(i for i in ids() if i.startswith(prefix))
    if not matches:
        raise ThingcoreError(f"no {what} id starts with {prefix} (see `{listing}`)")
    if len(matches) > 1:
        shown = ", ".join(m[:16] + "..." for m in matches[:3])
        more = f" and {len(matches) - 3} more" if len(matches) > 3 else ""
        raise ThingcoreError(
            f"{what} id prefix {prefix} is ambiguous: it matches {shown}{more}; give more digits"
        )
    return matches[0]


# -- files we write ----------------------------------------------------------------------------


def write_file(path: Path, data: str, *, private: bool) -> Path:
    """Write ``data`` atomically, 0600 if ``private`` else 0644; the absolute path written."""
    try:
        (write_private if private else write_public)(path, data)
    except OSError as exc:
        where = exc.filename or path
        raise ThingcoreError(f"cannot write {where}: {exc.strerror or exc}") from None
    return path.absolute()


# -- output ----------------------------------------------------------------------------------------


def stdout_console() -> Console:
    """The console human output goes to: standard output; tables fit its width, messages are
    not wrapped (ids and paths stay on one line, for copying)."""
    return Console(highlight=False, soft_wrap=True)


def print_json(value: Any) -> None:
    """``--json`` output: plain JSON on standard output, bypassing rich."""
    print(json.dumps(value, indent=2, sort_keys=True))


def iso(epoch: float | None) -> str:
    """An epoch timestamp as ISO 8601 UTC, to the second; "-" for none."""
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def short_id(cert_id: str) -> str:
    return cert_id[:SHORT_ID]


def key_values(rows: Iterable[tuple[str, RenderableType]]) -> Table:
    """A two-column grid of labels and values, for ``describe`` and ``show`` commands."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in rows:
        grid.add_row(label, value)
    return grid


def listing(
    columns: Sequence[str],
    rows: Iterable[Sequence[RenderableType]],
    *,
    fold: Sequence[str] = (),
    caption: str | None = None,
) -> Table:
    """A table for ``list`` commands; only the columns named in ``fold`` wrap."""
    table = Table(caption=caption, caption_justify="left")
    for column in columns:
        table.add_column(column, no_wrap=column not in fold, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def attributes_text(attributes: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(attributes.items())) or "-"
