"""``thingcore functions``: ls, invoke (real worker processes) and logs.

The commands run in-process through ``Cli`` (see ``test_cli_registry.py``); ``logs --follow``
runs as a real ``python -m thingcore`` process, stopped with Ctrl+C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.thingcore.test_cli_registry import Cli, cli

__all__ = ["cli"]  # the fixture, imported from the main CLI test module

COMMANDS = ("ls", "invoke", "logs")

ECHO = """
    def handler(event, context):
        print("echoing", event)
        return {"event": event, "request": context.aws_request_id, "message": context.message_id}
"""


def write(cli: Cli, name: str, source: str, *, sidecar: str | None = None) -> Path:
    directory = cli.data_dir / "functions"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
    if sidecar is not None:
        (directory / f"{name}.toml").write_text(textwrap.dedent(sidecar), encoding="utf-8")
    return path


def cells(table: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is ``first``."""
    for line in table.splitlines():
        row = [cell.strip() for cell in line.strip("│┃ ").split("│" if "│" in line else "┃")]
        if row[0] == first:
            return row
    raise AssertionError(f"no row {first!r} in\n{table}")


# -- help ------------------------------------------------------------------------------------------


def test_every_command_has_help_with_an_example(cli: Cli) -> None:
    group = cli.ok("functions", "--help").text
    assert "Local functions: Python handlers that rules invoke" in group
    assert "Example:" in group
    for name in COMMANDS:
        text = cli.ok("functions", name, "--help").text
        assert f"Example: thingcore functions {name}" in text, name
        assert "--json" in text, name


# -- ls --------------------------------------------------------------------------------------------


def test_ls_lists_functions_in_text_and_json(cli: Cli) -> None:
    directory = cli.data_dir / "functions"
    assert f"No functions in {directory}" in cli.ok("functions", "ls").text
    assert cli.json("functions", "ls") == {"directory": str(directory), "functions": []}

    write(cli, "echo", ECHO)
    write(cli, "resize", ECHO, sidecar='handler = "main"\ntimeout = 10\nmemory_mb = 128\n')
    write(cli, "_helpers", "")
    listed = cli.json("functions", "ls")["functions"]
    assert [f["functionName"] for f in listed] == ["echo", "resize"]
    assert listed[0] == {
        "functionName": "echo",
        "file": str(directory / "echo.py"),
        "handler": "handler",
        "timeout": 3.0,
        "memoryMb": None,
        "concurrency": 4,
        "environment": {},
        "events": [],
    }
    assert (listed[1]["handler"], listed[1]["timeout"], listed[1]["memoryMb"]) == (
        "main",
        10.0,
        128,
    )
    table = cli.ok("functions", "ls").stdout
    assert cells(table, "name") == [
        *("name", "handler", "timeout", "memory", "concurrency", "events", "file")
    ]
    assert cells(table, "echo") == [
        *("echo", "handler", "3 s", "-", "4", "-", str(directory / "echo.py"))
    ]
    assert cells(table, "resize")[:5] == ["resize", "main", "10 s", "128 MB", "4"]
    assert "_helpers" not in table


def test_ls_shows_the_events_that_invoke_each_function(cli: Cli) -> None:
    events = (
        '[[events]]\nqueue = "jobs"\nbatch_size = 5\nbatch_window = 1.5\n'
        '[[events]]\nbucket = "uploads"\nprefix = "images/"\nsuffix = ".jpg"\n'
    )
    write(cli, "worker", ECHO, sidecar=events)
    [listed] = cli.json("functions", "ls")["functions"]
    assert listed["events"] == [
        {"queue": "jobs", "batch_size": 5, "batch_window": 1.5},
        {"bucket": "uploads", "prefix": "images/", "suffix": ".jpg"},
    ]
    table = cli.ok("functions", "ls").stdout
    assert "queue jobs (5 per batch, 1.5 s)" in table
    assert "bucket uploads/images/*.jpg" in table


def test_ls_names_an_invalid_event_and_its_file(cli: Cli) -> None:
    write(cli, "worker", ECHO, sidecar='[[events]]\nqueue = "jobs"\nbatch_size = 0\n')
    ran = cli.run("functions", "ls")
    assert ran.code == 1
    assert "worker.toml" in ran.stderr and "events[0].batch_size must be 1 to 10000" in ran.stderr


def test_ls_with_an_invalid_sidecar_is_one_error_line(cli: Cli) -> None:
    write(cli, "odd", ECHO, sidecar="timeout = -1\n")
    line = cli.fails("functions", "ls")
    assert "odd.toml" in line
    assert "timeout must be seconds greater than 0" in line


# -- invoke ----------------------------------------------------------------------------------------


def test_invoke_prints_the_return_value(cli: Cli, tmp_path: Path) -> None:
    write(cli, "echo", ECHO)
    value = json.loads(cli.ok("functions", "invoke", "echo", '{"n": 1}').stdout)
    assert value["event"] == {"n": 1}
    assert value["message"] is None
    assert json.loads(cli.ok("functions", "invoke", "echo").stdout)["event"] == {}

    ran = cli.json("functions", "invoke", "echo", "[1, 2]", "--message-id", "m-7")
    assert set(ran) == {"functionName", "requestId", "durationMs", "payload"}
    assert ran["functionName"] == "echo"
    assert ran["payload"]["event"] == [1, 2]
    assert ran["payload"]["request"] == ran["requestId"]
    assert ran["payload"]["message"] == "m-7"

    event_file = tmp_path / "event.json"
    event_file.write_text('{"from": "file"}')
    from_file = cli.json("functions", "invoke", "echo", "--event-file", str(event_file))
    assert from_file["payload"]["event"] == {"from": "file"}
    from_stdin = cli.json("functions", "invoke", "echo", "-f", "-", input='"piped"')
    assert from_stdin["payload"]["event"] == "piped"


def test_invoke_input_errors_are_one_line(cli: Cli, tmp_path: Path) -> None:
    write(cli, "echo", ECHO)
    assert "the event (EVENT_JSON) is not JSON" in cli.fails("functions", "invoke", "echo", "{x")
    both = cli.fails("functions", "invoke", "echo", "{}", "--event-file", "-")
    assert "not both" in both
    missing = cli.fails("functions", "invoke", "echo", "-f", str(tmp_path / "none.json"))
    assert "does not exist" in missing
    ghost = cli.fails("functions", "invoke", "ghost")
    assert "no function named 'ghost'" in ghost
    assert "functions there: echo" in ghost
    assert "not a function name" in cli.fails("functions", "invoke", "no/such")


def test_invoke_failures_print_type_and_message_and_exit_1(cli: Cli) -> None:
    write(
        cli,
        "fails",
        """
        import time

        def handler(event, context):
            if event == "sleep":
                time.sleep(30)
            raise ValueError("bad reading")
        """,
        sidecar="timeout = 0.3\n",
    )
    assert cli.fails("functions", "invoke", "fails") == (
        "error: function fails failed: ValueError: bad reading"
    )
    assert cli.fails("functions", "invoke", "fails", '"sleep"') == (
        "error: function fails timed out after 0.3 s (Timeout)"
    )
    ran = cli.run("functions", "invoke", "fails", "--json")
    assert ran.code == 1
    assert ran.json() == {
        "errorType": "ValueError",
        "errorMessage": "function fails failed: ValueError: bad reading",
        "retryable": True,
    }
    broken = write(cli, "broken", "def handler(event, context)\n    pass\n")
    line = cli.fails("functions", "invoke", "broken")
    assert f"{broken}:1" in line
    assert "(UserCodeSyntaxError)" in line


# -- logs ------------------------------------------------------------------------------------------


def test_logs_show_the_last_lines(cli: Cli) -> None:
    write(cli, "echo", ECHO)
    log = cli.data_dir / "functions" / "logs" / "echo.log"
    assert (
        f"No logs for function echo yet ({log} does not exist)"
        in cli.ok("functions", "logs", "echo").stdout
    )
    assert cli.json("functions", "logs", "echo")["lines"] == []
    request = cli.json("functions", "invoke", "echo", '"one"')["requestId"]

    lines = cli.ok("functions", "logs", "echo").stdout.splitlines()
    assert lines[0] == f"START RequestId: {request} Version: $LATEST"
    assert lines[1] == "echoing one"
    assert lines[2] == f"END RequestId: {request}"
    assert lines[3].startswith(f"REPORT RequestId: {request}\tDuration: ")
    assert len(lines) == 4

    cli.ok("functions", "invoke", "echo", '"two"')
    last = cli.json("functions", "logs", "echo", "--lines", "3")
    assert last["file"] == str(log)
    assert last["lines"][0] == "echoing two"
    assert last["lines"][2].startswith("REPORT RequestId: ")
    assert cli.ok("functions", "logs", "echo", "-n", "0").stdout == ""


def test_logs_reach_into_the_rotated_file(cli: Cli) -> None:
    write(cli, "echo", ECHO)
    logs = cli.data_dir / "functions" / "logs"
    logs.mkdir(parents=True)
    (logs / "echo.log.1").write_text("old 1\nold 2\n")
    (logs / "echo.log").write_text("new 1\n")
    assert cli.json("functions", "logs", "echo", "--lines", "2")["lines"] == ["old 2", "new 1"]


def test_logs_of_an_unknown_function_is_one_error_line(cli: Cli) -> None:
    assert "no function named 'ghost'" in cli.fails("functions", "logs", "ghost")
    assert "not a function name" in cli.fails("functions", "logs", "../../etc/passwd")


def test_logs_follow_prints_new_lines_until_ctrl_c(cli: Cli) -> None:
    write(cli, "echo", ECHO)
    cli.ok("functions", "invoke", "echo", '"before"')
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINGCORE_")}
    env["THINGCORE_DATA_DIR"] = str(cli.data_dir)
    follower = subprocess.Popen(
        [sys.executable, "-m", "thingcore", "functions", "logs", "echo", "--follow", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell that started pytest in the background may have left SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert follower.stdout is not None

        def next_line() -> str:
            line: str = json.loads(follower.stdout.readline())["line"]  # type: ignore[union-attr]
            return line

        assert next_line().startswith("START RequestId: ")
        assert next_line() == "echoing before"
        assert next_line().startswith("END RequestId: ")
        assert next_line().startswith("REPORT RequestId: ")
        cli.ok("functions", "invoke", "echo", '"after"')
        assert next_line().startswith("START RequestId: ")
        assert next_line() == "echoing after"

        # A rotation: the follower moves on to the new file, from its start.
        log = cli.data_dir / "functions" / "logs" / "echo.log"
        log.rename(log.with_name("echo.log.1"))
        log.write_text("after rotation\n")
        lines = [next_line() for _ in range(3)]
        assert lines[-1] == "after rotation"
        follower.send_signal(signal.SIGINT)
        _, stderr = follower.communicate(timeout=30)
    finally:
        follower.kill()
        follower.wait()
    assert (follower.returncode, stderr) == (0, "")


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_take_data_dir(cli: Cli, tmp_path: Path, command: str) -> None:
    other = tmp_path / "elsewhere"
    (other / "functions").mkdir(parents=True)
    (other / "functions" / "here.py").write_text("def handler(event, context):\n    return 1\n")
    args = {"ls": [], "invoke": ["here"], "logs": ["here"]}[command]
    ran = cli.ok("functions", command, *args, "--data-dir", str(other), "--json")
    assert ran.stdout
