"""``thingcore functions``: the local functions rules invoke, listed, run and their logs read.

A function is ``<functions dir>/<name>.py`` defining ``handler(event, context)`` (the folder is
``rules.local.functions_dir``, default ``<data dir>/functions``); ``invoke`` runs it through the
same ``FunctionRunner`` a server uses, in a real worker process, so what works here works when a
rule calls it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import RenderableType

from rules.local.functions import FunctionError, FunctionInfo, FunctionRunner, Invocation
from rules.triggers.config import Event, QueueEvent, ScheduleEvent
from thingcore.cli.common import (
    DataDir,
    Json,
    listing,
    print_json,
    read_input,
    settings_for,
    stdout_console,
    subtyper,
)
from thingcore.errors import ThingcoreError

app = subtyper(
    "Local functions: Python handlers that rules invoke, run in worker processes like AWS "
    "Lambda.\n\n"
    "A function is `<data dir>/functions/<name>.py` defining `handler(event, context)`; an "
    "optional `<name>.toml` beside it sets `timeout`, `memory_mb`, `concurrency`, `handler` "
    "and an `[environment]` table.\n\n"
    'Example: `thingcore functions invoke thumbnail \'{"key": "cam-1/0001.jpg"}\'`'
)

Name = Annotated[str, typer.Argument(help="The function's name.", show_default=False)]
POLL = 0.2
"""Seconds between looks at a followed log."""


def runner_for(data_dir: Path | None) -> FunctionRunner:
    """The runner a server with these settings would use."""
    settings = settings_for(data_dir)
    return FunctionRunner.from_settings(
        settings.rules.local,
        settings.data_dir,
        region=settings.registry.region,
        account_id=settings.registry.account_id,
    )


# -- renderers -------------------------------------------------------------------------------------


def render_functions(functions: list[FunctionInfo], directory: Path) -> RenderableType:
    if not functions:
        return (
            f"No functions in {directory}. Write one: {directory / 'hello.py'} with\n"
            "    def handler(event, context):\n"
            '        return {"hello": event}'
        )
    return listing(
        ("name", "handler", "timeout", "memory", "concurrency", "events", "file"),
        (
            (
                f.name,
                f.handler,
                f"{f.timeout:g} s",
                f"{f.memory_mb} MB" if f.memory_mb is not None else "-",
                str(f.concurrency),
                "\n".join(event_text(e) for e in f.events) or "-",
                str(f.path),
            )
            for f in functions
        ),
        fold=("file",),
    )


def event_text(event: Event) -> str:
    """One ``[[events]]`` entry in a few words: ``queue jobs (10 per batch, 2 s)``."""
    if isinstance(event, ScheduleEvent):
        return event.expression
    if isinstance(event, QueueEvent):
        window = f", {event.batch_window:g} s" if event.batch_window else ""
        return f"queue {event.queue} ({event.batch_size} per batch{window})"
    return f"bucket {event.bucket}/{event.prefix}*{event.suffix}"


def failure_line(error: FunctionError) -> str:
    """A failed invocation as the CLI's one error line, its error type always in it."""
    message = str(error)
    if f"{error.error_type}:" in message:
        return message
    return f"{message} ({error.error_type})"


# -- commands ------------------------------------------------------------------------------------


def ls(data_dir: DataDir = None, as_json: Json = False) -> None:
    """List the functions: name, handler, timeout, memory limit, concurrency, the events that
    invoke them (schedules, queues, buckets: their sidecar's `[[events]]`) and file.

    Example: `thingcore functions ls --json`
    """
    runner = runner_for(data_dir)
    functions = runner.functions()
    if as_json:
        print_json(
            {"directory": str(runner.directory), "functions": [f.as_dict() for f in functions]}
        )
    else:
        stdout_console().print(render_functions(functions, runner.directory))


def invoke(
    name: Name,
    event: Annotated[
        str | None,
        typer.Argument(
            help="The event as JSON (default `{}`).", show_default=False, metavar="[EVENT_JSON]"
        ),
    ] = None,
    event_file: Annotated[
        str | None,
        typer.Option(
            "--event-file",
            "-f",
            help="Read the event from this JSON file (`-` for standard input).",
            show_default=False,
        ),
    ] = None,
    message_id: Annotated[
        str | None,
        typer.Option(
            "--message-id",
            help="The delivery id the handler sees as `context.message_id` (what "
            "`@idempotent` keys on).",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Run a function once, in a worker process, and print what its handler returned.

    The handler's prints and logging go to its log (`thingcore functions logs NAME`). A
    failure prints its error type and message and exits with code 1 (`--json`: Lambda's error
    document `{"errorType", "errorMessage", "retryable"}` on standard output).

    Example: `thingcore functions invoke thumbnail '{"key": "cam-1/0001.jpg"}'`
    """
    if event is not None and event_file is not None:
        raise ThingcoreError("give the event as EVENT_JSON or --event-file, not both")
    text = read_input(event_file, "event") if event_file is not None else event
    payload = _parse_event(text, "--event-file" if event_file is not None else "EVENT_JSON")
    runner = runner_for(data_dir)
    try:
        invocation = asyncio.run(_invoke(runner, name, payload, message_id))
    except FunctionError as exc:
        if as_json:
            print_json(
                {
                    "errorType": exc.error_type,
                    "errorMessage": str(exc),
                    "retryable": exc.retryable,
                }
            )
            raise typer.Exit(1) from None
        raise ThingcoreError(failure_line(exc)) from None
    if as_json:
        print_json(
            {
                "functionName": name,
                "requestId": invocation.request_id,
                "durationMs": round(invocation.duration_ms, 3),
                "payload": invocation.value,
            }
        )
    else:
        print(json.dumps(invocation.value, indent=2, ensure_ascii=False))


def logs(
    name: Name,
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=0, help="Show this many of the last lines.")
    ] = 50,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-F", help="Keep printing lines as they are written (Ctrl+C)."),
    ] = False,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Show a function's log: START, its output, END and REPORT lines per invocation.

    The log is `<functions dir>/logs/NAME.log`, rotated to `NAME.log.1` at 10 MiB (the last
    lines are taken from both). `--follow` waits for the log if it does not exist yet and
    follows it across rotations. `--json` prints `{"functionName", "file", "lines"}`, or with
    `--follow` one `{"line": ...}` object per line.

    Example: `thingcore functions logs thumbnail --lines 20 --follow`
    """
    runner = runner_for(data_dir)
    path = runner.log_path(name)
    existed = path.exists()
    if not existed and not path.with_name(path.name + ".1").exists():
        runner.info(name)  # NotFound (with the functions there) beats "no logs"
        if not follow:
            if as_json:
                print_json({"functionName": name, "file": str(path), "lines": []})
            else:
                print(f"No logs for function {name} yet ({path} does not exist).")
            return
    last = _last_lines(path, lines)
    if as_json and not follow:
        print_json({"functionName": name, "file": str(path), "lines": last})
        return
    for line in last:
        _emit(line, as_json)
    if follow:
        try:
            for line in _follow(path, skip_existing=existed):
                _emit(line, as_json)
        except KeyboardInterrupt:
            return  # Ctrl+C is how a follow normally ends: exit code 0


app.command("ls")(ls)
app.command("invoke")(invoke)
app.command("logs")(logs)


# -- helpers -------------------------------------------------------------------------------------


def _parse_event(text: str | None, what: str) -> Any:
    if text is None:
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ThingcoreError(f"the event ({what}) is not JSON: {exc}") from None


async def _invoke(
    runner: FunctionRunner, name: str, event: Any, message_id: str | None
) -> Invocation:
    async with runner:
        return await runner.invoke(name, event, message_id=message_id)


def _emit(line: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"line": line}, ensure_ascii=False), flush=True)
    else:
        print(line, flush=True)


def _read_lines(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ThingcoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    return data.decode("utf-8", "backslashreplace").splitlines()


def _last_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of the log, reaching into the rotated file when needed."""
    if count == 0:
        return []
    current = _read_lines(path)
    if len(current) < count:
        current = _read_lines(path.with_name(path.name + ".1")) + current
    return current[-count:]


def _follow(path: Path, *, skip_existing: bool) -> Iterator[str]:
    """Lines appended to ``path`` from now on, across rotations (a new file at the path).

    ``skip_existing``: the file there now was already shown (its last lines); a file that
    appears later, or replaces it, is read from its start.
    """
    file: IO[bytes] | None = None
    pending = b""
    try:
        while True:
            if file is None:
                try:
                    file = path.open("rb")
                except FileNotFoundError:
                    time.sleep(POLL)
                    continue
                if skip_existing:
                    file.seek(0, os.SEEK_END)
                skip_existing = False
            chunk = file.read()
            if chunk:
                *complete, pending = (pending + chunk).split(b"\n")
                for line in complete:
                    yield line.decode("utf-8", "backslashreplace")
                continue
            if _replaced(path, file):
                file.close()
                file = None
                if pending:
                    yield pending.decode("utf-8", "backslashreplace")
                    pending = b""
                continue
            time.sleep(POLL)
    finally:
        if file is not None:
            file.close()


def _replaced(path: Path, file: IO[bytes]) -> bool:
    try:
        current = path.stat()
    except FileNotFoundError:
        return False  # mid-rotation: the new file comes
    mine = os.fstat(file.fileno())
    return (current.st_ino, current.st_dev) != (mine.st_ino, mine.st_dev)
