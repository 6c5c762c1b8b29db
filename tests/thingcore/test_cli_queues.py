"""``thingcore queues``: run in-process through ``Cli`` (see ``test_cli_registry.py``), against a
queue file that the tests fill and inspect with their own ``QueueStore``, as a running server
and a consumer would."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import pytest
import typer

from rules.local.queues import QueueStore, SendItem
from tests.thingcore.test_cli_registry import Cli, cli
from thingcore.cli import app
from thingcore.config import load_settings

__all__ = ["cli"]  # the fixture, imported from the main CLI test module

COMMANDS = {"ls", "peek", "receive", "purge", "send"}


@pytest.fixture
def store(cli: Cli) -> Iterator[QueueStore]:
    """The queue file of ``cli``'s data directory, as a running server opens it."""
    settings = load_settings(data_dir=cli.data_dir)
    with QueueStore.from_settings(settings.rules.local, settings.data_dir) as opened:
        yield opened


def rows(table: str) -> list[list[str]]:
    """The cells of each row of a rich table whose cells fit on one line."""
    return [
        [cell.strip() for cell in re.split("[│┃]", line)[1:-1]]
        for line in table.splitlines()
        if line.startswith(("│", "┃"))
    ]


def fill(store: QueueStore) -> None:
    store.send_batch(
        [
            SendItem("orders", b'{"id": 1}', "o1", attributes={"source": "rule-a"}),
            SendItem("orders", b"\xff\xfe binary", "o2", priority=5),
            SendItem("orders", b"plain", "o3"),
            SendItem("alerts", b"fire", "a1"),
        ]
    )


# -- ls ----------------------------------------------------------------------------------------


def test_ls_without_queues_says_so_and_makes_no_file(cli: Cli) -> None:
    assert "No queues yet" in cli.ok("queues", "ls").stdout
    assert cli.json("queues", "ls") == []
    assert not cli.data_dir.exists()


def test_ls_lists_counts_as_text_and_json(cli: Cli, store: QueueStore) -> None:
    fill(store)
    store.receive("orders")

    listed = cli.json("queues", "ls")
    assert [q["name"] for q in listed] == ["alerts", "orders"]
    orders = listed[1]
    assert orders["visible"] == 2
    assert orders["inFlight"] == 1
    assert orders["deadLetterQueue"] == "orders-dlq"
    assert 0 <= orders["oldestAge"] < 60

    table = rows(cli.ok("queues", "ls").stdout)
    assert table[0] == ["Queue", "Visible", "In flight", "Oldest", "Dead-letter queue"]
    assert [row[:3] + row[4:] for row in table[1:]] == [
        ["alerts", "1", "0", "alerts-dlq"],
        ["orders", "2", "1", "orders-dlq"],
    ]
    assert all(re.fullmatch(r"\d+s", row[3]) for row in table[1:])


# -- peek ------------------------------------------------------------------------------------------


def test_peek_shows_the_next_messages_without_taking_them(cli: Cli, store: QueueStore) -> None:
    fill(store)
    peeked = cli.json("queues", "peek", "orders")
    assert [m["messageId"] for m in peeked] == ["o2", "o1", "o3"]
    binary, text_body, _ = peeked
    assert base64.b64decode(binary["bodyBase64"]) == b"\xff\xfe binary"
    assert "body" not in binary
    assert text_body["body"] == '{"id": 1}'
    assert text_body["attributes"] == {"source": "rule-a"}
    assert text_body["priority"] == 0
    assert text_body["receiveCount"] == 0
    assert isinstance(text_body["sentAt"], float)
    assert set(text_body) == {
        "messageId",
        "body",
        "priority",
        "attributes",
        "sentAt",
        "receiveCount",
    }

    assert [m["messageId"] for m in cli.json("queues", "peek", "orders", "--limit", "1")] == ["o2"]
    table = cli.ok("queues", "peek", "orders").text
    assert '{"id": 1}' in table
    assert "source=rule-a" in table
    assert "base64:" in table
    assert store.depth("orders") == 3
    assert store.info("orders").in_flight == 0


def test_peek_of_an_empty_queue(cli: Cli, store: QueueStore) -> None:
    fill(store)
    store.purge("alerts")
    assert cli.json("queues", "peek", "alerts") == []
    assert "No visible messages in queue alerts." in cli.ok("queues", "peek", "alerts").stdout


# -- receive ---------------------------------------------------------------------------------------


def test_receive_deletes_what_it_printed_by_default(cli: Cli, store: QueueStore) -> None:
    fill(store)
    received = cli.json("queues", "receive", "orders", "--max", "2")
    assert [m["messageId"] for m in received] == ["o2", "o1"]
    assert all(m["receiveCount"] == 1 for m in received)
    assert "receiptHandle" not in received[0]
    assert store.depth("orders") == 1

    ran = cli.ok("queues", "receive", "orders", "--max", "5")
    assert "plain" in ran.text
    assert "Received and deleted 1 message." in ran.stdout
    assert store.depth("orders") == 0
    assert "No visible messages in queue orders." in cli.ok("queues", "receive", "orders").stdout


def test_receive_keep_leaves_messages_in_flight_for_a_consumer(cli: Cli, store: QueueStore) -> None:
    fill(store)
    [kept] = cli.json("queues", "receive", "alerts", "--keep", "--visibility", "600")
    assert kept["messageId"] == "a1"
    assert store.info("alerts").in_flight == 1
    assert cli.json("queues", "receive", "alerts") == []  # hidden from the next receiver
    assert store.delete("alerts", kept["receiptHandle"])  # the handle works elsewhere

    store.send("alerts", b"again", message_id="a2")
    ran = cli.ok("queues", "receive", "alerts", "--keep", "--visibility", "0")
    assert "Kept 1 message in flight: back in the queue in 0 s" in ran.text
    [back] = store.receive("alerts")
    assert (back.message_id, back.receive_count) == ("a2", 2)


# -- purge -----------------------------------------------------------------------------------------


def test_purge_asks_first(cli: Cli, store: QueueStore) -> None:
    fill(store)
    store.receive("orders")

    declined = cli.run("queues", "purge", "orders", input="n\n")
    assert declined.code == 1
    assert "Delete all 3 messages of queue orders (2 visible, 1 in flight)?" in declined.stderr
    assert declined.stderr.splitlines()[-1].endswith(
        "error: nothing purged from queue orders: not confirmed (pass --yes to skip the question)"
    )
    assert store.depth("orders") == 3

    unanswered = cli.run("queues", "purge", "orders")  # standard input closed
    assert unanswered.code == 1
    assert store.depth("orders") == 3

    confirmed = cli.run("queues", "purge", "orders", input="y\n")
    assert confirmed.code == 0
    assert "Purged 3 messages from queue orders." in confirmed.stdout
    assert store.depth("orders") == 0
    assert "Queue orders was already empty." in cli.ok("queues", "purge", "orders").stdout


def test_purge_yes_does_not_ask(cli: Cli, store: QueueStore) -> None:
    fill(store)
    assert cli.json("queues", "purge", "orders", "--yes") == {"queue": "orders", "purged": 3}
    assert "Purged 1 message from queue alerts." in cli.ok("queues", "purge", "alerts", "-y").stdout
    assert [q.name for q in store.queues()] == ["alerts", "orders"]


# -- send ------------------------------------------------------------------------------------------


def test_send_adds_a_message_once_per_id(cli: Cli, store: QueueStore) -> None:
    sent = cli.json(
        "queues",
        "send",
        "jobs",
        "hello",
        "--priority",
        "4",
        "--attr",
        "k=v=w",
        "--message-id",
        "j1",
    )
    assert sent == {"queue": "jobs", "messageId": "j1", "added": True}
    again = cli.json("queues", "send", "jobs", "other", "--message-id", "j1")
    assert again["added"] is False
    assert (
        "already in queue jobs: not added again"
        in cli.ok("queues", "send", "jobs", "x", "--message-id", "j1").stdout
    )

    cli.ok("queues", "send", "jobs", "-", input="from stdin")
    [first, second] = store.peek("jobs")
    assert (first.message_id, first.body, first.priority) == ("j1", b"hello", 4)
    assert first.attributes == {"k": "v=w"}
    assert second.body == b"from stdin"
    assert len(second.message_id) == 36


def test_send_refuses_bad_input_in_one_line(cli: Cli) -> None:
    assert "is not NAME=VALUE" in cli.fails("queues", "send", "jobs", "x", "--attr", "novalue")
    assert "invalid queue name 'bad name'" in cli.fails("queues", "send", "bad name", "x")
    assert not cli.data_dir.exists()


# -- errors and help -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["peek"], ["receive"], ["purge", "--yes"]])
def test_an_unknown_queue_is_one_error_line(cli: Cli, command: list[str]) -> None:
    verb, *options = command
    assert cli.fails("queues", verb, "ghost", *options) == (
        "error: no queue named ghost; there are no queues yet"
    )
    cli.ok("queues", "send", "orders", "x")
    cli.ok("queues", "send", "alerts", "x")
    assert cli.fails("queues", verb, "ghost", *options) == (
        "error: no queue named ghost; queues: alerts, orders"
    )


def test_an_invalid_queue_name_names_the_rule(cli: Cli, store: QueueStore) -> None:
    fill(store)
    error = cli.fails("queues", "peek", "no/slashes")
    assert error == (
        "error: invalid queue name 'no/slashes': use 1 to 160 letters, digits, '-' or '_'"
    )


def test_every_queues_command_has_an_example(cli: Cli) -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    group = root.commands["queues"]
    assert isinstance(group, typer.core.TyperGroup)
    assert set(group.commands) == COMMANDS
    for name, command in group.commands.items():
        assert "Example: `thingcore queues " in (command.help or ""), name
    text = cli.ok("queues", "--help").text
    assert "Local queues: durable SQLite queues that rules deliver to" in text
    assert "Example:" in text
