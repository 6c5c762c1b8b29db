"""``thingcore topics``: the local topics rules publish to (``rules.local.topics``).

The commands open the same SQLite files as a running server, so they work beside it: a queue
subscribed here gets the next message a rule's ``sns`` action publishes. ``ls`` and the
commands that need an existing topic make no files; ``create`` makes the topics file.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import RenderableType
from rich.text import Text

from rules.local.queues import QueueStore
from rules.local.topics import TopicInfo, TopicStore, check_topic_name
from thingcore.cli.common import (
    DataDir,
    Json,
    listing,
    print_json,
    settings_for,
    stdout_console,
    subtyper,
)
from thingcore.errors import ThingcoreError

app = subtyper(
    "Local topics: SNS-like fan-out to local queues; create topics, subscribe queues, "
    "publish.\n\n"
    "A rule's `sns` action (while no AWS endpoint is configured) publishes to the topic named "
    "by its `targetArn`'s last part; every queue subscribed to it gets the message.\n\n"
    "Example: `thingcore topics create alerts && thingcore topics subscribe alerts pager`"
)

Topic = Annotated[str, typer.Argument(help="The topic's name.", show_default=False)]
Queue = Annotated[
    str,
    typer.Argument(help="The local queue's name (made by its first message).", show_default=False),
]


# -- opening the store -------------------------------------------------------------------------


@contextmanager
def open_topics(data_dir: Path | None) -> Iterator[TopicStore | None]:
    """The topic store of these settings for one command; None when its file does not exist
    yet (commands that only read or need a topic do not make files or folders)."""
    settings = settings_for(data_dir)
    if not settings.rules.local.topics(settings.data_dir).exists():
        yield None
        return
    with make_topics(data_dir) as store:
        yield store


@contextmanager
def make_topics(data_dir: Path | None) -> Iterator[TopicStore]:
    """The topic store of these settings (its file made if need be), with the queue store it
    publishes to; ARNs name the registry's region and account, as the server's do."""
    settings = settings_for(data_dir)
    local = settings.rules.local
    with (
        QueueStore.from_settings(local, settings.data_dir) as queues,
        TopicStore.from_settings(
            local,
            settings.data_dir,
            queues,
            region=settings.registry.region,
            account=settings.registry.account_id,
        ) as store,
    ):
        yield store


def existing(store: TopicStore | None, topic: str) -> TopicStore:
    """``store``, or the unknown-topic error when there is no topics file yet."""
    check_topic_name(topic)
    if store is None:
        raise ThingcoreError(
            f"no topic named {topic}; there are no topics yet: create it with "
            f"`thingcore topics create {topic}`"
        )
    return store


# -- renderers -----------------------------------------------------------------------------------


def subscriptions_text(info: TopicInfo) -> Text:
    if not info.subscriptions:
        return Text("-", style="dim")
    return Text(", ".join(s.queue + (" (raw)" if s.raw else "") for s in info.subscriptions))


def render_topics(infos: list[TopicInfo]) -> RenderableType:
    return listing(
        ["Topic", "Subscribed queues", "ARN"],
        ([info.name, subscriptions_text(info), info.arn] for info in infos),
        fold=["Subscribed queues"],
    )


# -- commands --------------------------------------------------------------------------------------


def list_topics(data_dir: DataDir = None, as_json: Json = False) -> None:
    """List the topics and the queues subscribed to each ("raw": they get the message itself,
    not SNS's JSON envelope).

    `--json` prints a list of `{"name", "topicArn", "subscriptions": [{"queue", "raw"}]}`.

    Example: `thingcore topics ls --json`
    """
    with open_topics(data_dir) as store:
        infos = [] if store is None else store.topics()
    if as_json:
        print_json([info.as_dict() for info in infos])
    elif not infos:
        stdout_console().print("No topics yet: create one with `thingcore topics create NAME`.")
    else:
        stdout_console().print(render_topics(infos))


def create(topic: Topic, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Create a topic (nothing happens if it exists): 1 to 256 letters, digits, '-' or '_'.

    A rule whose `sns` action's `targetArn` ends in `:NAME` publishes to it. `--json` prints
    `{"name", "topicArn", "created"}`.

    Example: `thingcore topics create alerts`
    """
    check_topic_name(topic)
    with make_topics(data_dir) as store:
        created = store.create(topic)
        arn = store.arn(topic)
    if as_json:
        print_json({"name": topic, "topicArn": arn, "created": created})
    elif created:
        stdout_console().print(f"Created topic {topic} ({arn}).")
    else:
        stdout_console().print(f"Topic {topic} exists already ({arn}).")


def delete(topic: Topic, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Delete a topic and its subscriptions; the queues keep their messages.

    A rule still publishing to it fails to its error action. `--json` prints
    `{"name", "deleted", "subscriptions"}` (how many went with it).

    Example: `thingcore topics delete alerts`
    """
    with open_topics(data_dir) as store:
        found = existing(store, topic)
        subscriptions = len(found.subscriptions(topic))  # the unknown-topic error, with names
        found.delete(topic)
    if as_json:
        print_json({"name": topic, "deleted": True, "subscriptions": subscriptions})
    else:
        stdout_console().print(
            f"Deleted topic {topic} and its {_plural(subscriptions, 'subscription')}."
        )


def subscribe(
    topic: Topic,
    queue: Queue,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw/--envelope",
            help="--raw: the queue gets the message itself (SNS's RawMessageDelivery); "
            "--envelope: SNS's JSON notification with the message in `Message`.",
        ),
    ] = False,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Subscribe a local queue to a topic: it gets every message published from now on.

    Subscribing again with the other of --raw/--envelope changes the subscription. `--json`
    prints `{"topic", "queue", "raw", "changed"}`.

    Example: `thingcore topics subscribe alerts pager --raw`
    """
    with open_topics(data_dir) as store:
        changed = existing(store, topic).subscribe(topic, queue, raw=raw)
    if as_json:
        print_json({"topic": topic, "queue": queue, "raw": raw, "changed": changed})
        return
    how = "the message itself" if raw else "SNS's JSON envelope"
    if changed:
        stdout_console().print(f"Subscribed queue {queue} to topic {topic} ({how}).")
    else:
        stdout_console().print(f"Queue {queue} is subscribed to topic {topic} already ({how}).")


def unsubscribe(
    topic: Topic, queue: Queue, data_dir: DataDir = None, as_json: Json = False
) -> None:
    """Stop delivering a topic's messages to a queue; the queue keeps what it has.

    `--json` prints `{"topic", "queue", "removed"}`.

    Example: `thingcore topics unsubscribe alerts pager`
    """
    with open_topics(data_dir) as store:
        found = existing(store, topic)
        if not found.unsubscribe(topic, queue):
            queues = ", ".join(s.queue for s in found.subscriptions(topic)) or "none"
            raise ThingcoreError(
                f"queue {queue} is not subscribed to topic {topic}; its subscribed queues: {queues}"
            )
    if as_json:
        print_json({"topic": topic, "queue": queue, "removed": True})
    else:
        stdout_console().print(f"Unsubscribed queue {queue} from topic {topic}.")


def publish(
    topic: Topic,
    body: Annotated[
        str,
        typer.Argument(
            help="The message as text; `-` reads it (UTF-8) from standard input.",
            show_default=False,
        ),
    ],
    subject: Annotated[
        str | None,
        typer.Option("--subject", help="The envelope's `Subject`.", show_default=False),
    ] = None,
    attrs: Annotated[
        list[str] | None,
        typer.Option(
            "--attr", help="A message attribute NAME=VALUE (repeat for more).", show_default=False
        ),
    ] = None,
    message_id: Annotated[
        str | None,
        typer.Option(
            "--message-id",
            help="A stable id: a queue that holds a message with this id gets no second copy "
            "(default: a new UUID).",
            show_default=False,
        ),
    ] = None,
    structured: Annotated[
        bool,
        typer.Option(
            "--json-structure",
            help='The message is SNS\'s JSON structure, `{"default": TEXT, "sqs": TEXT}`: '
            'queues get the "sqs" text (else "default").',
        ),
    ] = False,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Publish a message to a topic, as a rule's `sns` action does, to try its subscribers.

    `--json` prints `{"topic", "messageId", "queues"}`: how many queues the message was added
    to (a queue that already holds that message id is not counted).

    Example: `thingcore topics publish alerts '{"temp": 99}' --attr severity=high`
    """
    if body == "-":
        try:
            text = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError:
            raise ThingcoreError(
                "the message on standard input is not UTF-8 text; topic messages are text"
            ) from None
    else:
        text = body
    attributes = {}
    for pair in attrs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ThingcoreError(f"--attr {pair!r} is not NAME=VALUE")
        attributes[name] = value
    chosen_id = message_id or str(uuid.uuid4())
    with open_topics(data_dir) as store:
        added = existing(store, topic).publish(
            topic,
            text.encode("utf-8"),
            message_id=chosen_id,
            attributes=attributes,
            subject=subject,
            json_structure=structured,
        )
    if as_json:
        print_json({"topic": topic, "messageId": chosen_id, "queues": added})
    else:
        stdout_console().print(
            f"Published message {chosen_id} to topic {topic}: added to {_plural(added, 'queue')}."
        )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


app.command("ls")(list_topics)
app.command("create")(create)
app.command("delete")(delete)
app.command("subscribe")(subscribe)
app.command("unsubscribe")(unsubscribe)
app.command("publish")(publish)
