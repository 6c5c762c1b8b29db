"""``thingcore shadows`` and ``thingcore types update --shadow-options``.

The commands run in-process through ``Cli`` (see ``test_cli_registry.py``); where a test needs
to look behind them (the outbox, or a change made while ``watch`` runs) it opens the same
database with its own ``Registry``, as a running server would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from registry.config import RegistrySettings
from registry.service import Registry
from shadows.batch import Kind, Op
from shadows.config import ShadowSettings
from shadows.document import parse_update
from shadows.names import ShadowKey
from shadows.store import SHADOW_CHANGE, ShadowStore
from tests.thingcore.test_cli_registry import Cli, cli
from thingcore.cli import app, main

__all__ = ["cli"]  # the fixture, imported from the main CLI test module

COMMANDS = {"get", "update", "delete", "list", "history", "rejections", "watch"}


@pytest.fixture
def store(cli: Cli) -> Iterator[ShadowStore]:
    """The shadow store of ``cli``'s data directory, on an engine of its own."""
    registry = Registry(RegistrySettings(), cli.data_dir).open()
    try:
        yield ShadowStore(registry.db, ShadowSettings())
    finally:
        registry.close()


def options_file(tmp_path: Path, options: Any) -> str:
    path = tmp_path / "shadow-options.json"
    path.write_text(options if isinstance(options, str) else json.dumps(options))
    return str(path)


def typed_thing(cli: Cli, tmp_path: Path, thing: str, options: dict[str, Any]) -> None:
    """``thing`` of a new thing type ``<thing>-type`` with these shadow options."""
    cli.ok("types", "create", f"{thing}-type")
    cli.ok("types", "update", f"{thing}-type", "--shadow-options", options_file(tmp_path, options))
    cli.ok("things", "create", thing, "--type", f"{thing}-type")


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# -- get and update ----------------------------------------------------------------------------


def test_desired_shows_a_delta_that_reported_clears(cli: Cli, name: str) -> None:
    accepted = cli.json("shadows", "update", name, "--desired", '{"light": "on", "fan": 2}')
    assert accepted["state"] == {"desired": {"light": "on", "fan": 2}}
    assert accepted["version"] == 1

    got = cli.json("shadows", "get", name)
    assert got["state"]["delta"] == {"light": "on", "fan": 2}
    assert got["version"] == 1
    assert set(got["metadata"]["desired"]) == {"light", "fan"}
    text = cli.ok("shadows", "get", name).text
    assert 'Delta {"light": "on", "fan": 2}' in text
    assert "in the delta" in text

    out = cli.ok("shadows", "update", name, "--reported", '{"light": "on"}').text
    assert "now version 2" in out
    assert 'Delta: {"fan": 2}' in out
    cli.ok("shadows", "update", name, "--reported", '{"fan": 2}')
    got = cli.json("shadows", "get", name)
    assert "delta" not in got["state"]
    assert got["state"]["reported"] == {"light": "on", "fan": 2}
    assert got["version"] == 3
    assert "none: reported matches desired" in cli.ok("shadows", "get", name).text


def test_null_removes_a_key_and_both_sections_combine(cli: Cli, name: str) -> None:
    cli.ok("shadows", "update", name, "--desired", '{"a": 1, "b": 2}')
    accepted = cli.json(
        "shadows", "update", name, "--desired", '{"a": null}', "--reported", '{"b": 2}'
    )
    assert accepted["state"] == {"desired": {"a": None}, "reported": {"b": 2}}
    state = cli.json("shadows", "get", name)["state"]
    assert state == {"desired": {"b": 2}, "reported": {"b": 2}}


def test_whole_requests_from_a_file_or_inline(cli: Cli, name: str, tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"state": {"desired": {"mode": "eco"}}, "clientToken": "t-1"}))
    accepted = cli.json("shadows", "update", name, "--file", str(request))
    assert accepted["clientToken"] == "t-1"
    payload = json.dumps({"state": {"reported": {"mode": "eco"}}})
    assert cli.json("shadows", "update", name, "--payload", payload)["version"] == 2
    from_stdin = cli.json("shadows", "update", name, "--file", "-", input=payload)
    assert from_stdin["version"] == 3


def test_version_conflict_is_409_and_changes_nothing(cli: Cli, name: str) -> None:
    cli.ok("shadows", "update", name, "--desired", '{"a": 1}')
    cli.ok("shadows", "update", name, "--desired", '{"a": 2}')
    error = cli.fails("shadows", "update", name, "--desired", '{"a": 3}', "--version", "1")
    assert error == "error: 409 Version conflict"
    payload = json.dumps({"state": {"desired": {"a": 3}}})
    error = cli.fails("shadows", "update", name, "--payload", payload, "--version", "7")
    assert error == "error: 409 Version conflict"
    got = cli.json("shadows", "get", name)
    assert (got["version"], got["state"]["desired"]) == (2, {"a": 2})
    assert cli.json("shadows", "update", name, "--desired", '{"a": 3}', "--version", "2")[
        "version"
    ] == (3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--desired", '{"a": '], "error: 400 Invalid JSON: --desired: Expecting value"),
        (["--reported", "{'a': 1}"], "error: 400 Invalid JSON: --reported: Expecting property"),
        (["--desired", "[1, 2]"], "error: 400 Desired node must be an object"),
        (["--payload", "{"], "error: 400 Invalid JSON: --payload: Expecting"),
        (["--payload", '{"desired": {}}'], "error: 400 Missing required node: state"),
        (["--payload", '{"state": {"other": {}}}'], "error: 400 State contains an invalid node"),
        (["--desired", '{"a": NaN}'], "error: 400 Invalid JSON"),
        (["--desired", '{"a": [1, null]}'], "error: 400 State contains an invalid node"),
        ([], "error: give --desired and/or --reported"),
        (["--payload", "{}", "--desired", "{}"], "error: give --desired and/or --reported"),
    ],
)
def test_bad_requests_are_one_line_and_change_nothing(
    cli: Cli, name: str, args: list[str], message: str
) -> None:
    assert cli.fails("shadows", "update", name, *args).startswith(message)
    assert "No shadow exists" in cli.fails("shadows", "get", name)


def test_a_missing_file_is_one_line(cli: Cli, name: str, tmp_path: Path) -> None:
    error = cli.fails("shadows", "update", name, "--file", str(tmp_path / "missing.json"))
    assert "does not exist" in error


def test_a_missing_shadow_is_404(cli: Cli, name: str) -> None:
    assert cli.fails("shadows", "get", name) == f"error: 404 No shadow exists with name: '{name}'"
    assert cli.fails("shadows", "delete", name) == (
        f"error: 404 No shadow exists with name: '{name}'"
    )


def test_invalid_names_are_one_line(cli: Cli) -> None:
    assert "thing name 'bad name' is invalid" in cli.fails("shadows", "get", "bad name")
    assert "shadow name 'no/slash' is invalid" in cli.fails(
        "shadows", "update", "dev", "-n", "no/slash", "--desired", "{}"
    )


def test_named_shadows_are_separate_from_the_classic_one(cli: Cli, name: str) -> None:
    cli.ok("shadows", "update", name, "-n", "config", "--desired", '{"rate": 5}')
    cli.ok("shadows", "update", name, "--name", "other", "--reported", '{"rate": 1}')
    assert cli.json("shadows", "get", name, "-n", "config")["state"]["delta"] == {"rate": 5}
    assert cli.json("shadows", "get", name, "-n", "other")["state"] == {"reported": {"rate": 1}}
    assert f"'{name}'" in cli.fails("shadows", "get", name)
    assert f"'{name}~missing'" in cli.fails("shadows", "get", name, "-n", "missing")
    text = cli.ok("shadows", "update", name, "-n", "config", "--reported", '{"rate": 5}').text
    assert f"Updated shadow config of {name}: now version 2" in text
    assert "No delta" in text


def test_require_thing_refuses_unknown_things(cli: Cli, name: str) -> None:
    strict = Cli(cli.data_dir, {"THINGCORE_SHADOWS__REQUIRE_THING": "true"})
    error = strict.fails("shadows", "update", name, "--desired", "{}")
    assert error == "error: 404 Thing not found"
    strict.ok("things", "create", name)
    assert strict.json("shadows", "update", name, "--desired", "{}")["version"] == 1


# -- the outbox: changes reach a running server --------------------------------------------------


def test_update_and_delete_store_their_messages_for_the_server(
    cli: Cli, name: str, store: ShadowStore
) -> None:
    cli.ok("shadows", "update", name, "-n", "cfg", "--desired", '{"light": "on"}')
    prefix = f"$aws/things/{name}/shadow/name/cfg"
    messages = store.messages_after(0)
    assert [topic for _, topic, _ in messages] == [
        f"{prefix}/update/accepted",
        f"{prefix}/update/delta",
        f"{prefix}/update/documents",
    ]
    delta = json.loads(messages[1][2])
    assert (delta["state"], delta["version"]) == ({"light": "on"}, 1)
    registry = Registry(RegistrySettings(), cli.data_dir)
    try:
        assert SHADOW_CHANGE in [c.kind for c in registry.changes_after(0)]
    finally:
        registry.close()

    cli.ok("shadows", "delete", name, "-n", "cfg")
    [(_, topic, payload)] = store.messages_after(messages[-1][0])
    assert topic == f"{prefix}/delete/accepted"
    assert json.loads(payload)["version"] == 1


def test_refused_updates_store_no_messages(cli: Cli, name: str, store: ShadowStore) -> None:
    cli.ok("shadows", "update", name, "--desired", "{}")
    mark = store.last_message_id()
    cli.fails("shadows", "update", name, "--desired", "{}", "--version", "9")
    cli.fails("shadows", "update", name, "--desired", "{")
    assert store.messages_after(mark) == []


# -- delete and list ------------------------------------------------------------------------------


def test_delete_then_get_is_an_error(cli: Cli, name: str) -> None:
    cli.ok("shadows", "update", name, "--desired", '{"a": 1}')
    cli.ok("shadows", "update", name, "--desired", '{"a": 2}')
    assert cli.json("shadows", "delete", name)["version"] == 2
    assert "No shadow exists" in cli.fails("shadows", "get", name)
    assert "No shadow exists" in cli.fails("shadows", "delete", name)
    # AWS: recreated within 48 hours, the shadow continues from its old version.
    assert cli.json("shadows", "update", name, "--desired", '{"a": 3}')["version"] == 3
    text = cli.ok("shadows", "delete", name).text
    assert f"Deleted the classic shadow of {name} at version 3" in text


def test_list_pages_with_next_tokens(cli: Cli, name: str) -> None:
    things = [f"{name}-a", f"{name}-b"]
    cli.ok("shadows", "update", things[0], "--desired", "{}")
    cli.ok("shadows", "update", things[0], "-n", "cfg", "--desired", "{}")
    cli.ok("shadows", "update", things[1], "--desired", "{}")
    cli.ok("shadows", "update", things[1], "-n", "gone", "--desired", "{}")
    cli.ok("shadows", "delete", things[1], "-n", "gone")

    everything = cli.json("shadows", "list")
    assert "nextToken" not in everything
    expected = [(things[0], None), (things[0], "cfg"), (things[1], None)]
    assert [(s["thingName"], s["shadowName"]) for s in everything["shadows"]] == expected

    seen: list[tuple[str, str | None]] = []
    token: list[str] = []
    for _ in range(5):
        page = cli.json("shadows", "list", "--max-results", "1", *token)
        assert len(page["shadows"]) <= 1
        seen += [(s["thingName"], s["shadowName"]) for s in page["shadows"]]
        if "nextToken" not in page:
            break
        token = ["--next-token", page["nextToken"]]
    assert seen == expected

    only = cli.json("shadows", "list", things[0], "--max-results", "5")
    assert [s["shadowName"] for s in only["shadows"]] == [None, "cfg"]
    assert "nextToken" not in only
    text = cli.ok("shadows", "list", "--max-results", "2").text
    assert "(classic)" in text
    assert "More: --next-token" in text
    assert "not one `thingcore shadows list` printed" in cli.fails(
        "shadows", "list", "--next-token", "garbage"
    )


# -- history and rejections (beyond AWS) -------------------------------------------------------


def test_history_keeps_as_many_versions_as_the_type_says(
    cli: Cli, name: str, tmp_path: Path
) -> None:
    typed_thing(cli, tmp_path, name, {"history": 3})
    for n in range(1, 6):
        cli.ok("shadows", "update", name, "--desired", json.dumps({"n": n}))
    kept = cli.json("shadows", "history", name)["history"]
    assert [h["version"] for h in kept] == [5, 4, 3]
    assert kept[0]["document"]["state"] == {"desired": {"n": 5}}
    assert kept[0]["clientId"] is None
    assert [
        h["version"] for h in cli.json("shadows", "history", name, "--limit", "1")["history"]
    ] == [5]
    assert '{"desired": {"n": 4}}' in cli.ok("shadows", "history", name).text


def test_history_explains_when_nothing_is_kept(cli: Cli, name: str) -> None:
    cli.ok("shadows", "update", name, "--desired", "{}")
    assert cli.json("shadows", "history", name) == {"history": []}
    text = cli.ok("shadows", "history", name).text
    assert f"No history is kept for {name}" in text
    assert "--shadow-options" in text
    cli.ok("types", "create", f"{name}-type")
    cli.ok("things", "create", name, "--type", f"{name}-type")
    text = cli.ok("shadows", "history", name).text
    assert f"its thing type {name}-type sets no `history`" in text

    keeping = Cli(cli.data_dir, {"THINGCORE_SHADOWS__HISTORY_DEFAULT": "2"})
    assert "kept yet (it keeps 2)" in keeping.ok("shadows", "history", name, "-n", "x").text
    keeping.ok("shadows", "update", name, "-n", "x", "--desired", "{}")
    assert len(keeping.json("shadows", "history", name, "-n", "x")["history"]) == 1


def test_rejections_are_recorded_when_the_type_enables_them(
    cli: Cli, name: str, tmp_path: Path
) -> None:
    typed_thing(cli, tmp_path, name, {"rejections": {"enabled": True}})
    cli.ok("shadows", "update", name, "--desired", '{"mode": "turbo", "fan": 1}')
    report = {"state": {"reported": {"fan": 1}}, "rejected": {"mode": "not supported"}}
    cli.ok("shadows", "update", name, "--payload", json.dumps(report))

    [rejection] = cli.json("shadows", "rejections", name)["rejections"]
    assert rejection["shadow"] is None
    assert (rejection["path"], rejection["value"]) == ("mode", "turbo")
    assert (rejection["reason"], rejection["version"]) == ("not supported", 2)
    # The default ("desired": "clear"): the refused key leaves desired, so no delta asks again.
    assert cli.json("shadows", "get", name)["state"] == {
        "desired": {"fan": 1},
        "reported": {"fan": 1},
    }
    assert "not supported" in cli.ok("shadows", "rejections", name).text
    assert cli.json("shadows", "rejections", name, "-n", "other")["rejections"] == []
    assert len(cli.json("shadows", "rejections", name, "--classic")["rejections"]) == 1


def test_rejections_are_ignored_without_the_option(cli: Cli, name: str) -> None:
    cli.ok("shadows", "update", name, "--desired", '{"mode": "turbo"}')
    report = {"state": {"reported": {}}, "rejected": {"mode": "no"}}
    cli.ok("shadows", "update", name, "--payload", json.dumps(report))
    assert cli.json("shadows", "rejections", name) == {"rejections": []}
    assert "No rejections recorded" in cli.ok("shadows", "rejections", name).text
    assert cli.json("shadows", "get", name)["state"]["delta"] == {"mode": "turbo"}


# -- watch ---------------------------------------------------------------------------------------


class Watch:
    """``thingcore shadows watch ... --json`` running in a thread, its output readable."""

    def __init__(self, cli: Cli, args: list[str]) -> None:
        self.cli = cli
        self.args = ["shadows", "watch", *args, "--json", "--interval", "0.02"]
        self.codes: list[object] = []
        self.stdout = ""
        self.stderr = ""

    @contextmanager
    def running(self) -> Iterator[Watch]:
        with CliRunner().isolation(env=self.cli.env) as (out, err, _):
            self._out = out
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            yield self
            thread.join(10)
            assert not thread.is_alive(), "the watch did not stop after --count versions"
            self.stdout, self.stderr = out.getvalue().decode(), err.getvalue().decode()
        assert self.codes in ([], [0]), self.stderr

    def _run(self) -> None:
        try:
            main(self.args)
        except SystemExit as exc:
            self.codes.append(exc.code)
        finally:
            sys.stdout.flush()

    def wait_for_lines(self, n: int) -> None:
        wait_until(lambda: self._out.getvalue().count(b"\n") >= n)

    def documents(self) -> list[Any]:
        return [json.loads(line) for line in self.stdout.splitlines()]


def update(store: ShadowStore, key: ShadowKey, request: dict[str, Any]) -> None:
    """An update from elsewhere (a device through a server), not through this CLI."""
    parsed = parse_update(json.dumps(request).encode(), store.limits)
    [result] = store.run([Op(Kind.UPDATE, key, parsed)], outbox=True)
    assert result.error is None


def test_watch_json_prints_each_version_as_it_changes(
    cli: Cli, name: str, store: ShadowStore
) -> None:
    cli.ok("shadows", "update", name, "--desired", '{"n": 1}')
    key = ShadowKey.of(name)
    with Watch(cli, [name, "--count", "3"]).running() as watch:
        watch.wait_for_lines(1)
        update(store, key, {"state": {"reported": {"n": 1}}})
        watch.wait_for_lines(2)
        [result] = store.run([Op(Kind.DELETE, key)], outbox=True)
        assert result.error is None
    first, second, gone = watch.documents()
    assert (first["version"], first["state"]["delta"]) == (1, {"n": 1})
    assert second["version"] == 2
    assert "delta" not in second["state"]
    assert (gone["code"], gone["message"]) == (404, f"No shadow exists with name: '{name}'")


def test_watch_waits_for_a_shadow_to_exist(cli: Cli, name: str, store: ShadowStore) -> None:
    key = ShadowKey.of(name, "cfg")
    cli.ok("shadows", "update", name, "-n", "cfg", "--desired", "{}")
    cli.ok("shadows", "delete", name, "-n", "cfg")
    with Watch(cli, [name, "-n", "cfg", "--count", "1"]).running() as watch:
        update(store, key, {"state": {"reported": {"back": True}}})
    # Not the deletion first: a shadow deleted before the watch began counts as none yet.
    [back] = watch.documents()
    assert (back["version"], back["state"]) == (2, {"reported": {"back": True}})


def test_watch_shows_each_version_when_not_on_a_terminal(cli: Cli, name: str) -> None:
    cli.ok("shadows", "update", name, "-n", "cfg", "--desired", '{"light": "on"}')
    text = cli.ok("shadows", "watch", name, "-n", "cfg", "--count", "1").text
    assert "Version 1" in text
    assert '"on"' in text
    assert "Ctrl+C stops" in text


def test_watch_stops_on_ctrl_c_with_exit_code_0(cli: Cli, name: str) -> None:
    cli.ok("shadows", "update", name, "--desired", "{}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINGCORE_")}
    env["THINGCORE_DATA_DIR"] = str(cli.data_dir)
    watcher = subprocess.Popen(
        [sys.executable, "-m", "thingcore", "shadows", "watch", name, "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell that started pytest in the background may have left SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert watcher.stdout is not None
        assert json.loads(watcher.stdout.readline())["version"] == 1
        watcher.send_signal(signal.SIGINT)
        _, stderr = watcher.communicate(timeout=30)
    finally:
        watcher.kill()
        watcher.wait()
    assert (watcher.returncode, stderr) == (0, "")


# -- thing types: shadow options -----------------------------------------------------------------


def test_types_update_sets_shows_and_clears_shadow_options(
    cli: Cli, name: str, tmp_path: Path
) -> None:
    cli.ok("types", "create", name)
    options = {"history": 5, "rejections": {"enabled": True}}
    described = cli.json(
        "types", "update", name, "--shadow-options", options_file(tmp_path, options)
    )
    assert described["shadowOptions"] == options
    assert cli.json("types", "describe", name)["shadowOptions"] == options
    assert '"history": 5' in cli.ok("types", "describe", name).text
    from_stdin = cli.json("types", "update", name, "--shadow-options", "-", input='{"history": 1}')
    assert from_stdin["shadowOptions"] == {"history": 1}

    text = cli.ok("types", "update", name, "--clear-shadow-options").text
    assert "no shadow options" in text
    assert "shadowOptions" not in cli.json("types", "describe", name)
    assert "AWS behaviour" in cli.ok("types", "describe", name).text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ('{"history": ', "error: shadow options are not valid JSON: Expecting value"),
        ("[1]", "error: shadow options must be a JSON object"),
        ('{"histroy": 3}', "error: invalid shadow options: histroy: Extra inputs"),
        ('{"history": -1}', "error: invalid shadow options: history: Input should be greater"),
        (
            '{"schema": {"desired": {"type": "nope"}}}',
            "error: invalid JSON Schema in shadow options: 'nope' is not valid",
        ),
    ],
)
def test_types_update_refuses_invalid_options_in_one_line(
    cli: Cli, name: str, tmp_path: Path, options: str, message: str
) -> None:
    cli.ok("types", "create", name)
    cli.ok("types", "update", name, "--shadow-options", options_file(tmp_path, {"history": 2}))
    path = tmp_path / "bad.json"
    path.write_text(options)
    assert cli.fails("types", "update", name, "--shadow-options", str(path)).startswith(message)
    assert cli.json("types", "describe", name)["shadowOptions"] == {"history": 2}


def test_types_update_needs_exactly_one_choice(cli: Cli, name: str, tmp_path: Path) -> None:
    cli.ok("types", "create", name)
    assert "--shadow-options FILE or --clear-shadow-options" in cli.fails("types", "update", name)
    path = options_file(tmp_path, {})
    assert "--shadow-options FILE or --clear-shadow-options" in cli.fails(
        "types", "update", name, "--shadow-options", path, "--clear-shadow-options"
    )
    assert "no thing type named" in cli.fails(
        "types", "update", f"{name}-missing", "--shadow-options", path
    )


def test_a_schema_in_the_options_refuses_updates(cli: Cli, name: str, tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"rate": {"type": "integer", "maximum": 10}}}
    typed_thing(cli, tmp_path, name, {"schema": {"desired": schema}})
    cli.ok("shadows", "update", name, "--desired", '{"rate": 5}')
    error = cli.fails("shadows", "update", name, "--desired", '{"rate": 50}')
    assert error.startswith("error: 400 State does not match the thing type's schema: ")
    assert "state.desired.rate" in error
    assert cli.json("shadows", "get", name)["state"]["desired"] == {"rate": 5}


# -- things delete ---------------------------------------------------------------------------------


def test_things_delete_keeps_shadows_by_default(cli: Cli, name: str) -> None:
    cli.ok("things", "create", name)
    cli.ok("shadows", "update", name, "--desired", "{}")
    assert cli.ok("things", "delete", name).stdout == f"Deleted thing {name}\n"
    assert cli.json("shadows", "get", name)["version"] == 1


def test_things_delete_with_thing_removes_its_shadows(cli: Cli, name: str) -> None:
    cli.ok("things", "create", name)
    cli.ok("shadows", "update", name, "--desired", "{}")
    cli.ok("shadows", "update", name, "-n", "cfg", "--desired", "{}")
    cli.ok("shadows", "update", f"{name}-other", "--desired", "{}")
    deleting = Cli(cli.data_dir, {"THINGCORE_SHADOWS__DELETE_WITH_THING": "true"})
    text = deleting.ok("things", "delete", name).text
    assert f"Deleted thing {name}" in text
    assert f"Deleted 2 shadows of {name}" in text
    listed = cli.json("shadows", "list")["shadows"]
    assert [s["thingName"] for s in listed] == [f"{name}-other"]
    assert "No shadow exists" in cli.fails("shadows", "get", name, "-n", "cfg")


# -- help ------------------------------------------------------------------------------------------


def test_every_shadows_command_has_help_with_an_example(cli: Cli) -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    group = root.commands["shadows"]
    assert isinstance(group, typer.core.TyperGroup)
    assert set(group.commands) == COMMANDS
    for command in group.commands.values():
        assert "Example: `thingcore shadows " in (command.help or ""), command.name
    assert "Example:" in cli.ok("shadows", "--help").text
    assert "409" in cli.ok("shadows", "update", "--help").text
    assert "Example:" in cli.ok("types", "update", "--help").text
