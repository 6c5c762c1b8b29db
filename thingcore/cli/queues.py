"""``thingcore queues``: the local queues rules deliver to (``rules.local.queues``).

The commands open the same SQLite file as a running server, so they work beside it: a message
received here is hidden from other consumers for its visibility timeout like any other. Only
``send`` creates the file; the other commands read what is there.
"""

from __future__ import annotations

import base64
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import RenderableType
from rich.text import Text

from rules.local.queues import MAX_BATCH, QueueInfo, QueueMessage, QueueStore, SendItem
from thingcore.cli.common import (
    DataDir,
    Json,
    attributes_text,
    iso,
    listing,
    print_json,
    settings_for,
    stdout_console,
    subtyper,
)
from thingcore.errors import ThingcoreError

app = subtyper(
    "Local queues: durable SQLite queues that rules deliver to; list, peek, receive, purge.\n\n"
    "A rule's `sqs` action (while no AWS endpoint is configured) and its `queue` action add "
    "messages here; your code consumes them with `rules.local.queues.QueueConsumer`.\n\n"
    "Example: `thingcore queues peek orders --limit 5`"
)

Queue = Annotated[str, typer.Argument(help="The queue's name.", show_default=False)]

SHOWN_BODY = 200
"""Characters of a body shown in a table (`--json` has all of it)."""


# -- opening the store -------------------------------------------------------------------------


@contextmanager
def open_queues(data_dir: Path | None) -> Iterator[QueueStore | None]:
    """The queue store of these settings for one command; None when its file does not exist
    yet (commands that only read or take do not make files or folders)."""
    settings = settings_for(data_dir)
    local = settings.rules.local
    if not local.queues(settings.data_dir).exists():
        yield None
        return
    with QueueStore.from_settings(local, settings.data_dir) as store:
        yield store


def existing(store: QueueStore | None, queue: str) -> QueueStore:
    """``store``, or the unknown-queue error when there is no queue file yet."""
    if store is None:
        raise ThingcoreError(f"no queue named {queue}; there are no queues yet")
    return store


# -- renderers -----------------------------------------------------------------------------------


def age_text(seconds: float | None) -> str:
    """A duration the way people read it: ``45s``, ``12m``, ``3h 20m``, ``2d 4h``; "-" for none."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60}m"
    return f"{whole // 86400}d {whole % 86400 // 3600}h"


def body_fields(body: bytes) -> dict[str, str]:
    """``{"body": text}`` for a UTF-8 body, else ``{"bodyBase64": ...}``."""
    try:
        return {"body": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"bodyBase64": base64.b64encode(body).decode("ascii")}


def message_json(message: QueueMessage, *, receipt: bool = False) -> dict[str, Any]:
    """A message in the ``--json`` shape; ``receipt`` adds its receipt handle."""
    shaped: dict[str, Any] = {
        "messageId": message.message_id,
        **body_fields(message.body),
        "priority": message.priority,
        "attributes": message.attributes,
        "sentAt": message.sent_at,
        "receiveCount": message.receive_count,
    }
    if receipt:
        shaped["receiptHandle"] = message.receipt_handle
    return shaped


def body_text(body: bytes) -> Text:
    fields = body_fields(body)
    if "body" in fields:
        shown, style = fields["body"], ""
    else:
        shown, style = f"base64:{fields['bodyBase64']}", "dim"
    if len(shown) > SHOWN_BODY:
        shown = shown[:SHOWN_BODY] + f"... ({len(body)} bytes)"
    return Text(shown, style=style)


def render_queues(infos: list[QueueInfo]) -> RenderableType:
    return listing(
        ["Queue", "Visible", "In flight", "Oldest", "Dead-letter queue"],
        (
            [
                info.name,
                str(info.visible),
                str(info.in_flight),
                age_text(info.oldest_age),
                info.dead_letter or "-",
            ]
            for info in infos
        ),
    )


def render_messages(messages: list[QueueMessage]) -> RenderableType:
    table = listing(
        ["Message id", "Priority", "Receives", "Sent", "Attributes", "Body"],
        (
            [
                m.message_id,
                str(m.priority),
                str(m.receive_count),
                iso(m.sent_at),
                attributes_text(m.attributes),
                body_text(m.body),
            ]
            for m in messages
        ),
        fold=["Message id", "Attributes", "Body"],
    )
    # In a narrow terminal the id and the body share the room; neither disappears.
    table.columns[0].min_width = 12
    table.columns[4].min_width = 10
    table.columns[-1].min_width = 24
    return table


# -- commands --------------------------------------------------------------------------------------


def list_queues(data_dir: DataDir = None, as_json: Json = False) -> None:
    """List the queues: messages visible and in flight, the age of the oldest, where messages
    received too often go.

    `--json` prints a list of `{"name", "visible", "inFlight", "oldestAge", "deadLetterQueue"}`
    (ages in seconds).

    Example: `thingcore queues ls --json`
    """
    with open_queues(data_dir) as store:
        infos = [] if store is None else store.queues()
    if as_json:
        print_json([info.as_dict() for info in infos])
    elif not infos:
        stdout_console().print(
            "No queues yet: rules create them with their first message "
            "(or try `thingcore queues send NAME BODY`)."
        )
    else:
        stdout_console().print(render_queues(infos))


def peek(
    queue: Queue,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=MAX_BATCH, help="Show at most this many.")
    ] = 10,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Show the messages a receive would take next, without taking them.

    Bodies are shown as text when they are UTF-8, else as base64. `--json` prints a list of
    `{"messageId", "body" (or "bodyBase64"), "priority", "attributes", "sentAt",
    "receiveCount"}`.

    Example: `thingcore queues peek orders --limit 5`
    """
    with open_queues(data_dir) as store:
        messages = existing(store, queue).peek(queue, limit)
    if as_json:
        print_json([message_json(m) for m in messages])
    elif not messages:
        stdout_console().print(f"No visible messages in queue {queue}.")
    else:
        stdout_console().print(render_messages(messages))


def receive(
    queue: Queue,
    max_messages: Annotated[
        int, typer.Option("--max", min=1, max=MAX_BATCH, help="Take at most this many.")
    ] = 1,
    visibility: Annotated[
        float | None,
        typer.Option(
            "--visibility",
            min=0,
            help="Seconds the messages stay hidden from other receivers (default: the "
            "setting rules.local.queue_visibility_timeout).",
            show_default=False,
        ),
    ] = None,
    delete: Annotated[
        bool,
        typer.Option(
            "--delete/--keep",
            help="Delete the messages once printed, like a consumer that processed them; "
            "--keep leaves them in flight, to reappear when their visibility timeout ends.",
        ),
    ] = True,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Receive messages from a queue, as a consumer would: highest priority first, then oldest.

    `--json` prints a list shaped as `peek` prints it, with `receiptHandle` when `--keep`.

    Example: `thingcore queues receive orders --max 10 --json`
    """
    with open_queues(data_dir) as store:
        found = existing(store, queue)
        messages = found.receive(queue, max_messages=max_messages, visibility_timeout=visibility)
        if as_json:
            print_json([message_json(m, receipt=not delete) for m in messages])
        elif not messages:
            stdout_console().print(f"No visible messages in queue {queue}.")
        else:
            stdout_console().print(render_messages(messages))
        if not messages:
            return
        # Deleted only after printing: output that failed leaves the messages to reappear.
        if delete:
            for message in messages:
                found.delete(queue, message.receipt_handle or "")
        timeout = found.visibility_timeout if visibility is None else visibility
    if as_json:
        return
    if delete:
        stdout_console().print(f"Received and deleted {_plural(len(messages))}.")
    else:
        stdout_console().print(
            f"Kept {_plural(len(messages))} in flight: back in the queue in {timeout:g} s "
            "unless deleted (`--json` shows the receipt handles)."
        )


def purge(
    queue: Queue,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Delete every message of a queue, visible and in flight; the queue stays.

    Asks first unless `--yes`. `--json` prints `{"queue", "purged"}`.

    Example: `thingcore queues purge orders-dlq --yes`
    """
    with open_queues(data_dir) as store:
        found = existing(store, queue)
        info = found.info(queue)
        total = info.visible + info.in_flight
        if total and not yes:
            question = (
                f"Delete all {total} messages of queue {queue} "
                f"({info.visible} visible, {info.in_flight} in flight)?"
            )
            try:
                confirmed = typer.confirm(question, err=True)
            except typer.Abort:  # no answer: standard input closed
                typer.echo(err=True)
                confirmed = False
            if not confirmed:
                raise ThingcoreError(
                    f"nothing purged from queue {queue}: not confirmed (pass --yes to skip the "
                    "question)"
                )
        purged = found.purge(queue) if total else 0
    if as_json:
        print_json({"queue": queue, "purged": purged})
    elif purged:
        stdout_console().print(f"Purged {_plural(purged)} from queue {queue}.")
    else:
        stdout_console().print(f"Queue {queue} was already empty.")


def send(
    queue: Queue,
    body: Annotated[
        str,
        typer.Argument(
            help="The message body as text; `-` reads it (any bytes) from standard input.",
            show_default=False,
        ),
    ],
    priority: Annotated[
        int,
        typer.Option("--priority", "-p", min=0, max=9, help="0 to 9; higher is received first."),
    ] = 0,
    message_id: Annotated[
        str | None,
        typer.Option(
            "--message-id",
            help="A stable id: a message whose id is already in the queue is not added again "
            "(default: a new UUID).",
            show_default=False,
        ),
    ] = None,
    attrs: Annotated[
        list[str] | None,
        typer.Option(
            "--attr", help="An attribute NAME=VALUE (repeat for more).", show_default=False
        ),
    ] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Send a message to a queue (created by its first message), to try a consumer.

    `--json` prints `{"queue", "messageId", "added"}`; `added` is false when a message with
    that id was already in the queue.

    Example: `thingcore queues send orders '{"id": 42}' --priority 5`
    """
    data = sys.stdin.buffer.read() if body == "-" else body.encode("utf-8")
    attributes: dict[str, str] = {}
    for pair in attrs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ThingcoreError(f"--attr {pair!r} is not NAME=VALUE")
        attributes[name] = value
    item = SendItem(queue, data, message_id or str(uuid.uuid4()), priority, attributes)
    settings = settings_for(data_dir)
    with QueueStore.from_settings(settings.rules.local, settings.data_dir) as store:
        added = store.send_batch([item]) == 1
    if as_json:
        print_json({"queue": queue, "messageId": item.message_id, "added": added})
    elif added:
        stdout_console().print(f"Sent message {item.message_id} to queue {queue}.")
    else:
        stdout_console().print(
            f"Message {item.message_id} is already in queue {queue}: not added again."
        )


def _plural(count: int) -> str:
    return f"{count} message{'' if count == 1 else 's'}"


app.command("ls")(list_queues)
app.command("peek")(peek)
app.command("receive")(receive)
app.command("purge")(purge)
app.command("send")(send)
