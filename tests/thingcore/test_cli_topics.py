"""``thingcore topics``: run in-process through ``Cli`` (see ``test_cli_registry.py``), against
the topics and queue files of the data directory, which the tests inspect with their own
stores, as a running server and a consumer would."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from rules.local.queues import QueueStore
from rules.local.topics import TopicStore, TopicSubscription
from tests.thingcore.test_cli_registry import Cli, cli
from thingcore.cli import app
from thingcore.config import load_settings

__all__ = ["cli"]  # the fixture, imported from the main CLI test module

COMMANDS = {"ls", "create", "delete", "subscribe", "unsubscribe", "publish"}
ARN = "arn:aws:sns:us-east-1:000000000000"


@pytest.fixture
def queues(cli: Cli) -> Iterator[QueueStore]:
    """The queue file of ``cli``'s data directory, as a consumer opens it."""
    settings = load_settings(data_dir=cli.data_dir)
    with QueueStore.from_settings(settings.rules.local, settings.data_dir) as opened:
        yield opened


def topic_store(data_dir: Path, queues: QueueStore) -> TopicStore:
    settings = load_settings(data_dir=data_dir)
    return TopicStore.from_settings(settings.rules.local, settings.data_dir, queues)


def rows(table: str) -> list[list[str]]:
    """The cells of each row of a rich table whose cells fit on one line."""
    return [
        [cell.strip() for cell in re.split("[│┃]", line)[1:-1]]
        for line in table.splitlines()
        if line.startswith(("│", "┃"))
    ]


# -- ls and create ----------------------------------------------------------------------------


def test_ls_without_topics_says_so_and_makes_no_file(cli: Cli) -> None:
    assert "No topics yet: create one with `thingcore topics create NAME`." in (
        cli.ok("topics", "ls").stdout
    )
    assert cli.json("topics", "ls") == []
    assert not cli.data_dir.exists()


def test_create_makes_a_topic_once(cli: Cli) -> None:
    assert cli.json("topics", "create", "alerts") == {
        "name": "alerts",
        "topicArn": f"{ARN}:alerts",
        "created": True,
    }
    assert cli.json("topics", "create", "alerts")["created"] is False
    assert cli.ok("topics", "create", "builds").stdout == (
        f"Created topic builds ({ARN}:builds).\n"
    )
    assert (
        f"Topic builds exists already ({ARN}:builds)."
        in cli.ok("topics", "create", "builds").stdout
    )
    assert (cli.data_dir / "topics.sqlite").is_file()


def test_arns_name_the_registry_account_and_region(tmp_path: Path) -> None:
    cli = Cli(
        tmp_path / "var",
        {
            "THINGCORE_REGISTRY__ACCOUNT_ID": "123456789012",
            "THINGCORE_REGISTRY__REGION": "eu-west-1",
        },
    )
    created = cli.json("topics", "create", "alerts")
    assert created["topicArn"] == "arn:aws:sns:eu-west-1:123456789012:alerts"


def test_ls_lists_topics_with_their_subscriptions(cli: Cli) -> None:
    cli.ok("topics", "create", "builds")
    cli.ok("topics", "create", "alerts")
    cli.ok("topics", "subscribe", "alerts", "pager", "--raw")
    cli.ok("topics", "subscribe", "alerts", "audit")

    assert cli.json("topics", "ls") == [
        {
            "name": "alerts",
            "topicArn": f"{ARN}:alerts",
            "subscriptions": [{"queue": "audit", "raw": False}, {"queue": "pager", "raw": True}],
        },
        {"name": "builds", "topicArn": f"{ARN}:builds", "subscriptions": []},
    ]
    table = rows(cli.ok("topics", "ls").stdout)
    assert table == [
        ["Topic", "Subscribed queues", "ARN"],
        ["alerts", "audit, pager (raw)", f"{ARN}:alerts"],
        ["builds", "-", f"{ARN}:builds"],
    ]


# -- subscribe and unsubscribe ------------------------------------------------------------------


def test_subscribe_is_idempotent_and_switches_between_raw_and_envelope(
    cli: Cli, queues: QueueStore
) -> None:
    cli.ok("topics", "create", "alerts")
    assert cli.json("topics", "subscribe", "alerts", "pager") == {
        "topic": "alerts",
        "queue": "pager",
        "raw": False,
        "changed": True,
    }
    assert cli.ok("topics", "subscribe", "alerts", "pager").stdout == (
        "Queue pager is subscribed to topic alerts already (SNS's JSON envelope).\n"
    )
    assert cli.ok("topics", "subscribe", "alerts", "pager", "--raw").stdout == (
        "Subscribed queue pager to topic alerts (the message itself).\n"
    )
    with topic_store(cli.data_dir, queues) as store:
        assert store.subscriptions("alerts") == [TopicSubscription("alerts", "pager", True)]


def test_unsubscribe_removes_a_subscription_or_says_there_was_none(cli: Cli) -> None:
    cli.ok("topics", "create", "alerts")
    cli.ok("topics", "subscribe", "alerts", "pager")
    cli.ok("topics", "subscribe", "alerts", "audit")
    assert cli.json("topics", "unsubscribe", "alerts", "pager") == {
        "topic": "alerts",
        "queue": "pager",
        "removed": True,
    }
    assert cli.fails("topics", "unsubscribe", "alerts", "pager") == (
        "error: queue pager is not subscribed to topic alerts; its subscribed queues: audit"
    )
    assert cli.ok("topics", "unsubscribe", "alerts", "audit").stdout == (
        "Unsubscribed queue audit from topic alerts.\n"
    )
    assert cli.fails("topics", "unsubscribe", "alerts", "audit").endswith(
        "its subscribed queues: none"
    )


# -- publish ---------------------------------------------------------------------------------------


def test_publish_fans_out_with_envelope_or_raw_and_once_per_id(
    cli: Cli, queues: QueueStore
) -> None:
    cli.ok("topics", "create", "alerts")
    cli.ok("topics", "subscribe", "alerts", "pager", "--raw")
    cli.ok("topics", "subscribe", "alerts", "audit")

    published = cli.json(
        "topics",
        "publish",
        "alerts",
        '{"temp": 99}',
        "--attr",
        "severity=high",
        "--subject",
        "Hot",
        "--message-id",
        "m-1",
    )
    assert published == {"topic": "alerts", "messageId": "m-1", "queues": 2}

    [raw] = queues.peek("pager")
    assert (raw.body, raw.message_id, raw.attributes) == (
        b'{"temp": 99}',
        "m-1",
        {"severity": "high"},
    )
    [wrapped] = queues.peek("audit")
    document = json.loads(wrapped.body)
    assert document["Type"] == "Notification"
    assert document["MessageId"] == "m-1"
    assert document["TopicArn"] == f"{ARN}:alerts"
    assert document["Subject"] == "Hot"
    assert document["Message"] == '{"temp": 99}'
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", document["Timestamp"])
    assert document["MessageAttributes"] == {"severity": {"Type": "String", "Value": "high"}}

    again = cli.ok("topics", "publish", "alerts", "other", "--message-id", "m-1")
    assert again.stdout == "Published message m-1 to topic alerts: added to 0 queues.\n"
    assert (queues.depth("pager"), queues.depth("audit")) == (1, 1)


def test_publish_reads_standard_input_and_the_json_structure(cli: Cli, queues: QueueStore) -> None:
    cli.ok("topics", "create", "alerts")
    cli.ok("topics", "subscribe", "alerts", "pager", "--raw")
    ran = cli.ok("topics", "publish", "alerts", "-", input="from stdin ✓")
    assert re.fullmatch(
        r"Published message [0-9a-f-]{36} to topic alerts: added to 1 queue\.\n", ran.stdout
    )
    structure = json.dumps({"default": "for all", "sqs": "for queues"})
    cli.ok("topics", "publish", "alerts", structure, "--json-structure")
    assert [m.body for m in queues.peek("pager")] == ["from stdin ✓".encode(), b"for queues"]

    assert cli.fails("topics", "publish", "alerts", "plain", "--json-structure") == (
        "error: with the JSON message structure the message must be a JSON object with a "
        '"default" text (and optionally an "sqs" text for queues), such as {"default": "..."}'
    )
    assert queues.depth("pager") == 2


def test_publish_to_a_topic_without_subscribers_adds_nothing(cli: Cli) -> None:
    cli.ok("topics", "create", "alerts")
    assert cli.json("topics", "publish", "alerts", "x")["queues"] == 0


def test_publish_refuses_bad_input_in_one_line(cli: Cli) -> None:
    cli.ok("topics", "create", "alerts")
    assert "is not NAME=VALUE" in cli.fails("topics", "publish", "alerts", "x", "--attr", "nov")
    assert "a subject must be 1 to 100 printable characters" in cli.fails(
        "topics", "publish", "alerts", "x", "--subject", "s" * 101
    )
    assert cli.fails("topics", "publish", "alerts", "-", input="") == (
        "error: the message is empty; SNS takes no empty messages"
    )


# -- delete ----------------------------------------------------------------------------------------


def test_delete_removes_the_topic_and_its_subscriptions_not_the_messages(
    cli: Cli, queues: QueueStore
) -> None:
    cli.ok("topics", "create", "alerts")
    cli.ok("topics", "subscribe", "alerts", "pager")
    cli.ok("topics", "subscribe", "alerts", "audit")
    cli.ok("topics", "publish", "alerts", "x")
    assert cli.json("topics", "delete", "alerts") == {
        "name": "alerts",
        "deleted": True,
        "subscriptions": 2,
    }
    assert cli.json("topics", "ls") == []
    assert (queues.depth("pager"), queues.depth("audit")) == (1, 1)
    cli.ok("topics", "create", "builds")
    assert cli.ok("topics", "delete", "builds").stdout == (
        "Deleted topic builds and its 0 subscriptions.\n"
    )


# -- errors and help -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["delete", "ghost"],
        ["subscribe", "ghost", "q"],
        ["unsubscribe", "ghost", "q"],
        ["publish", "ghost", "x"],
    ],
)
def test_an_unknown_topic_is_one_error_line_naming_the_fix(cli: Cli, command: list[str]) -> None:
    assert cli.fails("topics", *command) == (
        "error: no topic named ghost; there are no topics yet: create it with "
        "`thingcore topics create ghost`"
    )
    assert not cli.data_dir.exists()
    cli.ok("topics", "create", "alerts")
    cli.ok("topics", "create", "builds")
    assert cli.fails("topics", *command) == (
        "error: no topic named ghost; topics: alerts, builds (create it with "
        "`thingcore topics create ghost`)"
    )


@pytest.mark.parametrize("verb", ["create", "delete", "publish"])
def test_an_invalid_topic_name_names_the_rule(cli: Cli, verb: str) -> None:
    args = ["topics", verb, "no/slashes"] + (["x"] if verb == "publish" else [])
    assert cli.fails(*args) == (
        "error: invalid topic name 'no/slashes': use 1 to 256 letters, digits, '-' or '_' "
        "(a FIFO topic's name ends with '.fifo')"
    )
    assert not cli.data_dir.exists()


def test_an_invalid_queue_name_names_the_rule(cli: Cli) -> None:
    cli.ok("topics", "create", "alerts")
    assert cli.fails("topics", "subscribe", "alerts", "bad name") == (
        "error: invalid queue name 'bad name': use 1 to 160 letters, digits, '-' or '_'"
    )


def test_every_topics_command_has_an_example(cli: Cli) -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    group = root.commands["topics"]
    assert isinstance(group, typer.core.TyperGroup)
    assert set(group.commands) == COMMANDS
    for name, command in group.commands.items():
        assert "Example: `thingcore topics " in (command.help or ""), name
    text = cli.ok("topics", "--help").text
    assert "Local topics: SNS-like fan-out to local queues" in text
    assert "Example:" in text
