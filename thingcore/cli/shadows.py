"""``thingcore shadows``: device shadows, read and changed outside MQTT.

Changes are committed with their MQTT messages (``/update/accepted``, ``/update/delta``,
``/update/documents``, ``/delete/accepted``) in the shadow outbox, which a running server
publishes: a device subscribed to its delta topic hears an update made here.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from registry.errors import ResourceNotFound
from registry.service import Registry
from shadows.batch import Kind, Op, Result
from shadows.document import (
    JsonObject,
    Shadow,
    delta,
    error_document,
    get_document,
    not_found,
    parse_update,
)
from shadows.errors import ShadowError, ShadowErrorCode
from shadows.names import ShadowKey
from shadows.store import ShadowStore, ShadowSummary
from thingcore.cli.common import (
    DataDir,
    Json,
    iso,
    key_values,
    listing,
    print_json,
    read_input,
    registry_for,
    settings_for,
    stdout_console,
    subtyper,
)
from thingcore.errors import ThingcoreError

app = subtyper(
    "Device shadows: the desired and reported state of things, as AWS IoT keeps it.\n\n"
    "Each thing has a classic (unnamed) shadow and any number of named ones (`--name`). "
    "Updates made here are published to devices by a running `thingcore serve`.\n\n"
    'Example: `thingcore shadows update dev-1 --desired \'{"light": "on"}\'`'
)

Thing = Annotated[str, typer.Argument(help="The thing's name.", show_default=False)]
ShadowName = Annotated[
    str | None,
    typer.Option(
        "--name", "-n", help="A named shadow (default: the classic shadow).", show_default=False
    ),
]
Limit = Annotated[int, typer.Option("--limit", min=1, max=1000, help="Show at most this many.")]

MAX_PAGE = 250
CLASSIC = "(classic)"


# -- opening the store -------------------------------------------------------------------------


@contextmanager
def open_shadows(data_dir: Path | None) -> Iterator[tuple[Registry, ShadowStore]]:
    """The registry and the shadow store on its database, for one command."""
    settings = settings_for(data_dir)
    with registry_for(settings) as registry:
        yield registry, ShadowStore(registry.db, settings.shadows)


def shadow_failure(error: ShadowError) -> ThingcoreError:
    """A refused request as the CLI's one error line: ``<code> <message>[: detail]``."""
    return ThingcoreError(f"{int(error.code)} {error}")


def shown_name(key: ShadowKey) -> str:
    if key.name is None:
        return f"the classic shadow of {key.thing}"
    return f"shadow {key.name} of {key.thing}"


# -- tokens for paging -------------------------------------------------------------------------


def encode_token(last: ShadowSummary) -> str:
    """The position after ``last``, for ``--next-token``."""
    position = {"t": last.thing, "n": last.name or ""}
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def decode_token(token: str) -> tuple[str, str]:
    """The (thing, stored shadow name) a ``--next-token`` continues after."""
    try:
        position = json.loads(base64.urlsafe_b64decode(token.encode()))
        thing, name = position["t"], position["n"]
    except (ValueError, KeyError, TypeError):  # binascii.Error is a ValueError
        thing = name = None
    if not isinstance(thing, str) or not isinstance(name, str):
        raise ThingcoreError(f"--next-token {token!r} is not one `thingcore shadows list` printed")
    return thing, name


# -- building update requests ------------------------------------------------------------------


def load_json(text: str, what: str) -> Any:
    """``text`` as JSON, or AWS's 400 with where the JSON broke."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ShadowError(
            ShadowErrorCode.BAD_REQUEST, "Invalid JSON", detail=f"{what}: {exc}"
        ) from None


def request_payload(
    desired: str | None,
    reported: str | None,
    document: tuple[str, str] | None,
    version: int | None,
) -> bytes:
    """The ``/update`` request body the options describe (``document``: its text and source)."""
    if document is not None:
        text, what = document
        parsed = load_json(text, what)
        if version is not None and isinstance(parsed, dict):
            parsed["version"] = version
            return json.dumps(parsed).encode()
        return text.encode("utf-8")
    state: JsonObject = {}
    if desired is not None:
        state["desired"] = load_json(desired, "--desired")
    if reported is not None:
        state["reported"] = load_json(reported, "--reported")
    request: JsonObject = {"state": state}
    if version is not None:
        request["version"] = version
    return json.dumps(request).encode()


def documents_delta(result: Result) -> JsonObject:
    """The delta after an update, from its ``/update/documents`` message."""
    for topic, payload in result.messages:
        if topic.endswith("/update/documents"):
            state = json.loads(payload)["current"]["state"]
            return delta(state.get("desired", {}), state.get("reported", {}))
    return {}


# -- renderers -----------------------------------------------------------------------------------


def _flatten(tree: JsonObject, prefix: str = "") -> dict[str, Any]:
    """Leaves of a state section by dotted path (arrays and empty objects are leaves)."""
    leaves: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            leaves.update(_flatten(value, f"{path}."))
        else:
            leaves[path] = value
    return leaves


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def render_state(shadow: Shadow) -> RenderableType:
    """Desired and reported side by side, one row per leaf; rows in the delta are marked."""
    desired, reported = _flatten(shadow.desired), _flatten(shadow.reported)
    pending = _flatten(delta(shadow.desired, shadow.reported))
    caption = "* in the delta: desired, not yet reported" if pending else None
    table = Table(caption=caption, caption_justify="left")
    table.add_column("Key", no_wrap=True)
    table.add_column("Desired", overflow="fold")
    table.add_column("Reported", overflow="fold")
    table.add_column("Delta", no_wrap=True)
    for path in sorted(desired.keys() | reported.keys()):
        marked = path in pending
        table.add_row(
            path,
            _value(desired[path]) if path in desired else "",
            _value(reported[path]) if path in reported else "",
            "*" if marked else "",
            style="yellow" if marked else None,
        )
    return table


def render_shadow(key: ShadowKey, shadow: Shadow) -> RenderableType:
    difference = delta(shadow.desired, shadow.reported)
    summary = key_values(
        [
            ("Thing", key.thing),
            ("Shadow", key.name or CLASSIC),
            ("Version", str(shadow.version)),
            ("Updated", iso(shadow.timestamp)),
            ("Delta", _value(difference) if difference else "none: reported matches desired"),
        ]
    )
    if not shadow.desired and not shadow.reported:
        return Group(summary, Text("The shadow is empty."))
    return Group(summary, render_state(shadow))


def render_watch(key: ShadowKey, shadow: Shadow | None, interval: float) -> RenderableType:
    footer = Text(f"Checked every {interval:g}s; Ctrl+C stops.", style="dim")
    if shadow is None:
        return Group(Text(f"No {shown_name(key)} yet: waiting for one."), footer)
    if not shadow.exists:
        when = iso(shadow.timestamp)
        deleted = f"Deleted at {when}: {shown_name(key)} (version {shadow.version})."
        return Group(Text(deleted), footer)
    return Group(render_shadow(key, shadow), footer)


def render_shadows(items: list[ShadowSummary], next_token: str | None) -> RenderableType:
    caption = None if next_token is None else f"More: --next-token {next_token}"
    return listing(
        ["Thing", "Shadow", "Version", "Updated"],
        ([s.thing, s.name or CLASSIC, str(s.version), iso(s.updated_at)] for s in items),
        caption=caption,
    )


def render_history(items: list[dict[str, Any]]) -> RenderableType:
    return listing(
        ["Version", "Saved", "Client", "State"],
        (
            [
                str(h["version"]),
                iso(h["timestamp"]),
                h["clientId"] or "-",
                _value(h["document"].get("state", {})),
            ]
            for h in items
        ),
        fold=["State"],
    )


def render_rejections(items: list[dict[str, Any]]) -> RenderableType:
    return listing(
        ["Shadow", "Key", "Value", "Reason", "Version", "Client", "When"],
        (
            [
                r["shadow"] or CLASSIC,
                r["path"],
                _value(r["value"]),
                r["reason"],
                str(r["version"]),
                r["clientId"] or "-",
                iso(r["timestamp"]),
            ]
            for r in items
        ),
        fold=["Value", "Reason"],
    )


# -- commands ----------------------------------------------------------------------------------


def get(
    thing: Thing, name: ShadowName = None, data_dir: DataDir = None, as_json: Json = False
) -> None:
    """Show a shadow: desired, reported, their delta, version and last update.

    `--json` prints the document a device gets on `.../get/accepted`.

    Example: `thingcore shadows get dev-1 --name config --json`
    """
    key = ShadowKey.of(thing, name)
    with open_shadows(data_dir) as (_, store):
        shadow = store.get(key)
    if shadow is None or not shadow.exists:
        raise shadow_failure(not_found(key.thing, key.name, None))
    if as_json:
        print_json(get_document(shadow, int(time.time()), None))
    else:
        stdout_console().print(render_shadow(key, shadow))


def update(
    thing: Thing,
    name: ShadowName = None,
    desired: Annotated[
        str | None,
        typer.Option("--desired", metavar="JSON", help="Merge this object into desired."),
    ] = None,
    reported: Annotated[
        str | None,
        typer.Option("--reported", metavar="JSON", help="Merge this object into reported."),
    ] = None,
    file: Annotated[
        str | None,
        typer.Option(
            "--file",
            metavar="FILE",
            help='A whole request document {"state": {...}} from a file (- for standard input).',
        ),
    ] = None,
    payload: Annotated[
        str | None,
        typer.Option("--payload", metavar="JSON", help="A whole request document, inline."),
    ] = None,
    version: Annotated[
        int | None,
        typer.Option(
            "--version", help="Apply only if the shadow is at this version (else 409).", min=0
        ),
    ] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Update a shadow, as a device publishing to `.../shadow/update` would.

    The given objects are merged into the shadow: keys set to `null` are removed, objects merge,
    anything else (arrays too) replaces; `--desired null` removes all of desired. With
    `--version N` the update applies only if the shadow is at version N (optimistic locking),
    else it fails with `409 Version conflict`. `--desired` and `--reported` may be combined;
    `--file` and `--payload` take the whole request, `{"state": {"desired": {...}}}`.

    Devices subscribed to the delta topic get the new delta from a running server.
    `--json` prints the `.../update/accepted` document.

    Example: `thingcore shadows update dev-1 --desired '{"light": "on", "old": null}'`

    Example: `thingcore shadows update dev-1 -n config --file request.json --version 4`
    """
    given = [o for o, v in (("--desired", desired), ("--reported", reported)) if v is not None]
    whole = [o for o, v in (("--file", file), ("--payload", payload)) if v is not None]
    if (not given and not whole) or (whole and (given or len(whole) > 1)):
        raise ThingcoreError(
            "give --desired and/or --reported, or one whole request with --file or --payload"
        )
    key = ShadowKey.of(thing, name)
    document = None
    if file is not None:
        document = (read_input(file, "request document"), file)
    elif payload is not None:
        document = (payload, "--payload")
    with open_shadows(data_dir) as (_, store):
        try:
            body = request_payload(desired, reported, document, version)
            request = parse_update(body, store.limits)
        except ShadowError as exc:
            raise shadow_failure(exc) from None
        if store.settings.require_thing and not store.thing_exists(key.thing):
            raise shadow_failure(ShadowError(ShadowErrorCode.NOT_FOUND, "Thing not found"))
        options = store.options_for(key.thing)
        op = Op(Kind.UPDATE, key, request, client_id=None, options=options)
        [result] = store.run([op], outbox=True)
    if result.error is not None:
        raise shadow_failure(result.error)
    accepted = result.document or {}
    if as_json:
        print_json(accepted)
        return
    console = stdout_console()
    console.print(f"Updated {shown_name(key)}: now version {accepted['version']}")
    difference = documents_delta(result)
    console.print(f"Delta: {_value(difference)}" if difference else "No delta: reported matches")


def delete(
    thing: Thing, name: ShadowName = None, data_dir: DataDir = None, as_json: Json = False
) -> None:
    """Delete a shadow. Its version is remembered for 48 hours: recreated within them, it
    continues from there (AWS behaviour).

    `--json` prints the `.../delete/accepted` document.

    Example: `thingcore shadows delete dev-1 --name config`
    """
    key = ShadowKey.of(thing, name)
    with open_shadows(data_dir) as (_, store):
        [result] = store.run([Op(Kind.DELETE, key)], outbox=True)
    if result.error is not None:
        raise shadow_failure(result.error)
    document = result.document or {}
    if as_json:
        print_json(document)
    else:
        stdout_console().print(f"Deleted {shown_name(key)} at version {document['version']}")


def list_shadows(
    thing: Annotated[
        str | None, typer.Argument(help="Only this thing's shadows.", show_default=False)
    ] = None,
    max_results: Annotated[
        int | None,
        typer.Option(
            "--max-results",
            min=1,
            max=MAX_PAGE,
            help="Show one page of at most this many, with a token for the next.",
            show_default=False,
        ),
    ] = None,
    next_token: Annotated[
        str | None,
        typer.Option(
            "--next-token", help="Continue after a page printed before.", show_default=False
        ),
    ] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """List shadows by thing and name: every one, or one page with `--max-results`.

    `--json` prints `{"shadows": [...], "nextToken": "..."}`, the token only when more follow.

    Example: `thingcore shadows list dev-1 --max-results 10 --json`
    """
    if thing is not None:
        ShadowKey.of(thing)
    after = None if next_token is None else decode_token(next_token)
    items: list[ShadowSummary] = []
    token = None
    with open_shadows(data_dir) as (_, store):
        while True:
            size = max_results if max_results is not None else MAX_PAGE
            page = store.list_shadows(thing, limit=size + 1, after=after)
            items.extend(page[:size])
            more = len(page) > size
            if not more:
                break
            after = (page[size - 1].thing, page[size - 1].name or "")
            if max_results is not None:
                token = encode_token(page[size - 1])
                break
    if as_json:
        listed: JsonObject = {
            "shadows": [
                {
                    "thingName": s.thing,
                    "shadowName": s.name,
                    "version": s.version,
                    "lastUpdated": s.updated_at,
                }
                for s in items
            ]
        }
        if token is not None:
            listed["nextToken"] = token
        print_json(listed)
    else:
        stdout_console().print(render_shadows(items, token))


def history(
    thing: Thing,
    name: ShadowName = None,
    limit: Limit = 20,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Earlier versions of a shadow, newest first (beyond AWS).

    Versions are kept only when the thing's type asks for them: `"history": N` in its shadow
    options (`thingcore types update TYPE --shadow-options FILE`), or the setting
    `shadows.history_default` for things without one.

    Example: `thingcore shadows history dev-1 --limit 5`
    """
    key = ShadowKey.of(thing, name)
    with open_shadows(data_dir) as (registry, store):
        items = store.history(key, limit)
        keep = store.options_for(key.thing).model.history or store.settings.history_default
        thing_type = None if items or keep else _thing_type(registry, key.thing)
    if as_json:
        print_json({"history": items})
        return
    console = stdout_console()
    if items:
        console.print(render_history(items))
    elif keep:
        console.print(f"No versions of {shown_name(key)} kept yet (it keeps {keep}).")
    else:
        why = (
            f"its thing type {thing_type} sets no `history` in its shadow options"
            if thing_type
            else "it has no thing type whose shadow options set `history`"
        )
        console.print(
            f"No history is kept for {key.thing}: {why}, and the setting "
            "shadows.history_default is 0. Keep N versions with "
            '`thingcore types update TYPE --shadow-options FILE` and {"history": N} in FILE.'
        )


def _thing_type(registry: Registry, thing: str) -> str | None:
    try:
        described = registry.things.describe(thing)
    except ResourceNotFound:
        return None
    found = described.get("thingTypeName")
    return found if isinstance(found, str) else None


def rejections(
    thing: Thing,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", "-n", help="Only this named shadow (default: all of the thing's shadows)."
        ),
    ] = None,
    classic: Annotated[bool, typer.Option("--classic", help="Only the classic shadow.")] = False,
    limit: Limit = 50,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Desired values the thing refused, newest first (beyond AWS).

    A device refuses values with a top-level `rejected` object beside `state` in its update,
    mirroring the desired keys with a reason at each leaf, e.g.
    `{"state": {"reported": {...}}, "rejected": {"light": "no such mode"}}`. They are recorded
    when the thing type's shadow options say `{"rejections": {"enabled": true}}`.

    Example: `thingcore shadows rejections dev-1 --json`
    """
    if classic and name is not None:
        raise ThingcoreError("give --name or --classic, not both")
    key = ShadowKey.of(thing, name)
    stored = key.stored_name if name is not None or classic else None
    with open_shadows(data_dir) as (_, store):
        items = store.rejections(key.thing, stored, limit)
    if as_json:
        print_json({"rejections": items})
    elif not items:
        stdout_console().print(f"No rejections recorded for {key.thing}.")
    else:
        stdout_console().print(render_rejections(items))


def watch(
    thing: Thing,
    name: ShadowName = None,
    interval: Annotated[
        float, typer.Option("--interval", min=0.01, help="Seconds between checks.")
    ] = 1.0,
    count: Annotated[
        int | None,
        typer.Option(
            "--count", min=1, help="Stop after this many versions seen.", show_default=False
        ),
    ] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Watch a shadow live: its state and delta, shown again whenever it changes.

    Works with or without a running server (it reads the database). The current version is
    the first one seen; a shadow that does not exist yet is waited for. `--json` prints one
    `.../get/accepted` document per line per version instead (and the 404 `.../get/rejected`
    document when the shadow is deleted). Ctrl+C stops.

    Example: `thingcore shadows watch dev-1 --json --count 2`
    """
    key = ShadowKey.of(thing, name)
    console = stdout_console()
    try:
        with open_shadows(data_dir) as (_, store):
            if as_json:
                _watch(store, key, interval, count, lambda s: _print_line(key, s))
            elif console.is_terminal:
                first = render_watch(key, None, interval)
                with Live(first, console=console, auto_refresh=False) as live:

                    def show(shadow: Shadow) -> None:
                        live.update(render_watch(key, shadow, interval), refresh=True)

                    _watch(store, key, interval, count, show)
            else:
                # Not a terminal (a pipe, a file): each version below the one before.
                _watch(
                    store,
                    key,
                    interval,
                    count,
                    lambda s: console.print(render_watch(key, s, interval)),
                )
    except KeyboardInterrupt:
        return  # Ctrl+C is how a watch normally ends: exit code 0


def _print_line(key: ShadowKey, shadow: Shadow) -> None:
    now = int(time.time())
    if shadow.exists:
        document = get_document(shadow, now, None)
    else:
        document = error_document(not_found(key.thing, key.name, None), now)
    print(json.dumps(document, separators=(",", ":"), ensure_ascii=False), flush=True)


def _watch(
    store: ShadowStore,
    key: ShadowKey,
    interval: float,
    count: int | None,
    show: Callable[[Shadow], None],
) -> None:
    seen: tuple[bool, int, int] | None = None
    shown = 0
    while True:
        shadow = store.get(key)
        if shadow is not None:
            state = (shadow.exists, shadow.version, shadow.timestamp)
            # A shadow deleted before the watch began counts as none yet.
            if state != seen and (shadow.exists or seen is not None):
                seen = state
                show(shadow)
                shown += 1
                if count is not None and shown >= count:
                    return
        time.sleep(interval)


app.command("get")(get)
app.command("update")(update)
app.command("delete")(delete)
app.command("list")(list_shadows)
app.command("history")(history)
app.command("rejections")(rejections)
app.command("watch")(watch)
