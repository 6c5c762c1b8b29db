"""``thingcore buckets``: objects put with ``BucketStore`` (as a rule's bucket action would)
are listed, read and deleted through the CLI in-process (``Cli``, see ``test_cli_registry.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from rules.local.buckets import BucketStore
from tests.thingcore.test_cli_registry import Cli, Ran, cli
from thingcore.cli import app
from thingcore.cli import buckets as buckets_cli

__all__ = ["cli"]  # the fixture, imported from the main CLI test module

BINARY = b"\x00\x01\x02 not text"
"""Valid UTF-8 (so the captured output decodes) but with control characters: binary."""


def cells(ran: Ran) -> str:
    """A table's cells in order, separated by single spaces (borders dropped)."""
    return " ".join(re.sub("[\u2500-\u257f]", " ", ran.stdout).split())


@pytest.fixture
def store(cli: Cli) -> BucketStore:
    """The buckets of the CLI's data directory, filled as a rule would fill them."""
    store = BucketStore(cli.data_dir / "buckets")
    store.put(
        "telemetry",
        "sensors/dev-1/1.json",
        b'{"t": 21}',
        content_type="application/json",
        metadata={"device": "dev-1"},
        message_id="msg-1",
    )
    store.put("telemetry", "sensors/dev-2/1.json", b'{"t": 19}', content_type="application/json")
    store.put("telemetry", "status", b"online")
    store.put("images", "cam-1/latest.jpg", BINARY, content_type="image/jpeg")
    return store


# -- ls ------------------------------------------------------------------------------------------


def test_ls_without_buckets_says_how_they_appear(cli: Cli) -> None:
    ran = cli.ok("buckets", "ls")
    assert "No buckets in" in ran.text
    assert "bucket action creates one" in ran.text
    assert cli.json("buckets", "ls") == {"Buckets": [], "IsTruncated": False}


def test_ls_lists_buckets_with_counts_and_sizes(cli: Cli, store: BucketStore) -> None:
    listed = cli.json("buckets", "ls")
    assert listed == {
        "Buckets": [
            {"Name": "images", "Objects": 1, "Size": len(BINARY)},
            {"Name": "telemetry", "Objects": 3, "Size": 9 + 9 + 6},
        ],
        "IsTruncated": False,
    }
    table = cells(cli.ok("buckets", "ls"))
    assert "images 1 12" in table
    assert "telemetry 3 24" in table
    limited = cli.json("buckets", "ls", "--limit", "1")
    assert [b["Name"] for b in limited["Buckets"]] == ["images"]
    assert limited["IsTruncated"] is True


def test_ls_bucket_lists_objects_by_key(cli: Cli, store: BucketStore) -> None:
    listed = cli.json("buckets", "ls", "telemetry")
    assert listed["Name"] == "telemetry"
    assert listed["KeyCount"] == 3
    assert [o["Key"] for o in listed["Contents"]] == [
        "sensors/dev-1/1.json",
        "sensors/dev-2/1.json",
        "status",
    ]
    first = listed["Contents"][0]
    assert first["ContentType"] == "application/json"
    assert first["Metadata"] == {"device": "dev-1"}
    assert first["MessageId"] == "msg-1"
    assert first["Size"] == 9

    table = cells(cli.ok("buckets", "ls", "telemetry"))
    assert "Key Size Content type Last modified" in table
    assert "sensors/dev-1/1.json 9 application/json" in table
    assert "status 6 application/octet-stream" in table

    prefixed = cli.json("buckets", "ls", "telemetry/sensors/dev-2/")
    assert prefixed["Prefix"] == "sensors/dev-2/"
    assert [o["Key"] for o in prefixed["Contents"]] == ["sensors/dev-2/1.json"]

    limited = cli.json("buckets", "ls", "telemetry", "--limit", "2")
    assert (limited["KeyCount"], limited["IsTruncated"]) == (2, True)
    assert "--limit shows more" in cli.ok("buckets", "ls", "telemetry", "--limit", "2").text
    assert "No objects under 'nothing/' in bucket telemetry" in (
        cli.ok("buckets", "ls", "telemetry/nothing/").text
    )


def test_ls_errors_are_one_line(cli: Cli, store: BucketStore) -> None:
    assert "no bucket named 'ghost'" in cli.fails("buckets", "ls", "ghost")
    assert "invalid bucket name 'Bad_Name'" in cli.fails("buckets", "ls", "Bad_Name")


# -- get -----------------------------------------------------------------------------------------


def test_get_prints_text_and_head(cli: Cli, store: BucketStore) -> None:
    assert cli.ok("buckets", "get", "telemetry", "sensors/dev-1/1.json").stdout == '{"t": 21}'
    head = cli.json("buckets", "get", "telemetry", "sensors/dev-1/1.json")
    assert head["Key"] == "sensors/dev-1/1.json"
    assert head["ContentType"] == "application/json"
    assert head["Metadata"] == {"device": "dev-1"}
    assert head["ETag"] == store.head("telemetry", "sensors/dev-1/1.json").etag
    assert head["MessageId"] == "msg-1"
    assert head["LastModified"].endswith("Z")


def test_get_refuses_binary_on_a_terminal(
    cli: Cli, store: BucketStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Piped, the bytes go through as they are (as curl does).
    assert cli.ok("buckets", "get", "images", "cam-1/latest.jpg").stdout.encode() == BINARY
    monkeypatch.setattr(buckets_cli, "stdout_is_terminal", lambda: True)
    error = cli.fails("buckets", "get", "images", "cam-1/latest.jpg")
    assert "is binary (12 bytes, image/jpeg)" in error
    assert "--out FILE" in error
    assert cli.ok("buckets", "get", "images", "cam-1/latest.jpg", "-o", "-").stdout.encode() == (
        BINARY
    )
    # Text on a terminal ends with a newline, so the prompt starts on its own line.
    assert cli.ok("buckets", "get", "telemetry", "status").stdout == "online\n"


def test_get_out_writes_a_file(cli: Cli, store: BucketStore, tmp_path: Path) -> None:
    target = tmp_path / "latest.jpg"
    ran = cli.ok("buckets", "get", "images", "cam-1/latest.jpg", "--out", str(target))
    assert target.read_bytes() == BINARY
    assert f"Wrote 12 bytes of images/cam-1/latest.jpg to {target}" in ran.text
    head = cli.json("buckets", "get", "images", "cam-1/latest.jpg", "--out", str(target))
    assert head["ContentType"] == "image/jpeg"
    assert "not both" in cli.fails(
        "buckets", "get", "images", "cam-1/latest.jpg", "-o", "-", "--json"
    )


def test_get_unknown_bucket_or_key_is_one_line(cli: Cli, store: BucketStore) -> None:
    assert "no bucket named 'ghost'" in cli.fails("buckets", "get", "ghost", "k")
    assert "no object 'nope' in bucket 'telemetry'" in cli.fails(
        "buckets", "get", "telemetry", "nope"
    )
    # A folder is not an object.
    assert "no object 'sensors'" in cli.fails("buckets", "get", "telemetry", "sensors")
    assert "'..' segment" in cli.fails("buckets", "get", "telemetry", "../x")


# -- rm ------------------------------------------------------------------------------------------


def test_rm_one_object(cli: Cli, store: BucketStore) -> None:
    assert "Deleted telemetry/status" in cli.ok("buckets", "rm", "telemetry", "status").text
    assert "no object 'status'" in cli.fails("buckets", "rm", "telemetry", "status")
    assert "no bucket named 'ghost'" in cli.fails("buckets", "rm", "ghost", "status")
    assert cli.json("buckets", "rm", "images", "cam-1/latest.jpg") == {
        "Bucket": "images",
        "Key": "cam-1/latest.jpg",
        "Deleted": 1,
    }
    assert [o.key for o in store.list("telemetry")] == [
        "sensors/dev-1/1.json",
        "sensors/dev-2/1.json",
    ]


def test_rm_prefix_asks_first(cli: Cli, store: BucketStore) -> None:
    declined = cli.run("buckets", "rm", "telemetry", "--prefix", "sensors/", input="n\n")
    assert declined.code == 1
    assert "Delete 2 object(s) under 'sensors/' in bucket telemetry?" in declined.stderr
    assert "error: nothing deleted: not confirmed" in declined.stderr
    assert len(store.list("telemetry")) == 3

    unanswered = cli.run("buckets", "rm", "telemetry", "--prefix", "sensors/", input="")
    assert unanswered.code == 1
    assert len(store.list("telemetry")) == 3

    confirmed = cli.run("buckets", "rm", "telemetry", "--prefix", "sensors/", input="y\n")
    assert confirmed.code == 0
    assert "Deleted 2 object(s) under 'sensors/' in bucket telemetry" in confirmed.stdout
    assert [o.key for o in store.list("telemetry")] == ["status"]


def test_rm_prefix_with_yes(cli: Cli, store: BucketStore) -> None:
    assert cli.json("buckets", "rm", "telemetry", "--prefix", "sensors/dev-1", "--yes") == {
        "Bucket": "telemetry",
        "Prefix": "sensors/dev-1",
        "Deleted": 1,
    }
    assert "No objects under 'zzz' in bucket telemetry: nothing deleted" in (
        cli.ok("buckets", "rm", "telemetry", "--prefix", "zzz").text
    )
    assert "Deleted 2 object(s) in bucket telemetry" in (
        cli.ok("buckets", "rm", "telemetry", "--prefix", "", "-y").text
    )
    assert store.list("telemetry") == []
    assert "no bucket named 'ghost'" in cli.fails("buckets", "rm", "ghost", "--prefix", "a", "-y")


def test_rm_needs_a_key_or_a_prefix(cli: Cli, store: BucketStore) -> None:
    assert "give a KEY" in cli.fails("buckets", "rm", "telemetry")
    assert "not both" in cli.fails("buckets", "rm", "telemetry", "status", "--prefix", "s")
    assert len(store.list("telemetry")) == 3


# -- help ----------------------------------------------------------------------------------------


def test_every_buckets_command_has_help_with_an_example(cli: Cli) -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    group = root.commands["buckets"]
    assert isinstance(group, typer.core.TyperGroup)
    assert set(group.commands) == {"ls", "get", "rm"}
    for command in group.commands.values():
        assert "Example: `thingcore buckets " in (command.help or ""), command.name
    text = cli.ok("buckets", "--help").text
    assert "Local buckets: folders of objects that rules write to, like S3." in text
    assert "Example:" in text
