"""``rules.local.functions``: handlers run in real worker processes.

Each test writes its handlers under ``tmp_path`` and runs them through a ``FunctionRunner``
with timeouts of a fraction of a second, so the whole file takes a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rules.config import LocalTargetSettings
from rules.local.functions import FUNCTION_NAME, FunctionError, FunctionRunner

TIMEOUT = 0.5


def write(directory: Path, name: str, source: str, *, sidecar: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
    if sidecar is not None:
        (directory / f"{name}.toml").write_text(textwrap.dedent(sidecar), encoding="utf-8")
    return path


def bump(path: Path) -> None:
    """Move the file's mtime forward, as an edit a second later would."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def functions_dir(tmp_path: Path) -> Path:
    return tmp_path / "functions"


@pytest.fixture
async def runner(functions_dir: Path) -> AsyncIterator[FunctionRunner]:
    async with FunctionRunner(functions_dir, timeout=TIMEOUT, concurrency=2) as running:
        yield running


PID = """
    import os

    def handler(event, context):
        return os.getpid()
"""


# -- a handler and its context ---------------------------------------------------------------


async def test_handler_gets_event_and_lambda_context(
    runner: FunctionRunner, functions_dir: Path
) -> None:
    write(
        functions_dir,
        "echo",
        """
        import os

        def handler(event, context):
            return {
                "event": event,
                "function_name": context.function_name,
                "function_version": context.function_version,
                "arn": context.invoked_function_arn,
                "memory": context.memory_limit_in_mb,
                "request_id": context.aws_request_id,
                "log_group": context.log_group_name,
                "log_stream": context.log_stream_name,
                "remaining": context.get_remaining_time_in_millis(),
                "message_id": context.message_id,
                "env_name": os.environ["AWS_LAMBDA_FUNCTION_NAME"],
                "cwd": os.getcwd(),
            }
        """,
    )
    event = {"temperature": 21.5, "tags": ["a", "b"], "nested": {"ok": True}}
    invocation = await runner.invoke("echo", event, request_id="req-1", message_id="msg-1")
    value = invocation.value
    assert value["event"] == event
    assert value["function_name"] == "echo"
    assert value["function_version"] == "$LATEST"
    assert value["arn"] == "arn:aws:lambda:us-east-1:000000000000:function:echo"
    assert value["memory"] is None
    assert value["request_id"] == "req-1" == invocation.request_id
    assert value["log_group"] == "/aws/lambda/echo"
    assert "[$LATEST]" in value["log_stream"]
    assert 0 < value["remaining"] <= TIMEOUT * 1000
    assert value["message_id"] == "msg-1"
    assert value["env_name"] == "echo"
    assert Path(value["cwd"]) == functions_dir
    assert invocation.duration_ms >= 0

    fresh = await runner.invoke("echo", [1, 2, 3])
    assert fresh.value["event"] == [1, 2, 3]
    assert fresh.value["message_id"] is None
    assert fresh.request_id and fresh.request_id != "req-1"


async def test_async_handler_and_helper_module(runner: FunctionRunner, functions_dir: Path) -> None:
    write(functions_dir, "_shared", "FACTOR = 3\n")
    write(
        functions_dir,
        "triple",
        """
        import asyncio
        from _shared import FACTOR

        async def handler(event, context):
            await asyncio.sleep(0)
            return event * FACTOR
        """,
    )
    assert (await runner.invoke("triple", 7)).value == 21
    assert [f.name for f in runner.functions()] == ["triple"]  # _shared is a helper


# -- workers -------------------------------------------------------------------------------------


async def test_warm_worker_is_reused(runner: FunctionRunner, functions_dir: Path) -> None:
    write(functions_dir, "pid", PID)
    first = (await runner.invoke("pid", None)).value
    second = (await runner.invoke("pid", None)).value
    assert first == second != os.getpid()
    assert alive(first)
    await runner.aclose()
    assert not alive(first)
    with pytest.raises(FunctionError) as closed:
        await runner.invoke("pid", None)
    assert closed.value.error_type == "Closed"


async def test_concurrency_limit_is_respected(functions_dir: Path) -> None:
    write(
        functions_dir,
        "slow",
        """
        import os, time

        def handler(event, context):
            started = time.monotonic()
            time.sleep(0.1)
            return [os.getpid(), started, time.monotonic()]
        """,
    )
    async with FunctionRunner(functions_dir, timeout=2.0, concurrency=2) as runner:
        results = await asyncio.gather(*(runner.invoke("slow", i) for i in range(6)))
    spans = [r.value for r in results]
    assert len({pid for pid, _, _ in spans}) <= 2
    edges = sorted([(start, 1) for _, start, _ in spans] + [(end, -1) for _, _, end in spans])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak == 2


async def test_timeout_kills_the_worker_and_the_next_call_works(
    runner: FunctionRunner, functions_dir: Path
) -> None:
    write(
        functions_dir,
        "sleepy",
        """
        import os, time

        def handler(event, context):
            if event.get("sleep"):
                print("going to sleep", flush=True)
                time.sleep(30)
            return os.getpid()
        """,
    )
    before = (await runner.invoke("sleepy", {})).value
    with pytest.raises(FunctionError) as timed_out:
        await runner.invoke("sleepy", {"sleep": True}, request_id="req-slow")
    assert timed_out.value.error_type == "Timeout"
    assert timed_out.value.retryable
    assert str(timed_out.value) == f"function sleepy timed out after {TIMEOUT} s"
    assert not alive(before)
    after = (await runner.invoke("sleepy", {})).value
    assert after != before
    log = runner.log_path("sleepy").read_text()
    assert "going to sleep" in log
    assert f"req-slow Task timed out after {TIMEOUT:.2f} seconds" in log
    assert "END RequestId: req-slow" in log


async def test_raising_handler_is_retryable_with_its_class_name(
    runner: FunctionRunner, functions_dir: Path
) -> None:
    write(
        functions_dir,
        "fails",
        """
        import os

        class SensorFault(Exception):
            pass

        def handler(event, context):
            if event == "fail":
                raise SensorFault("probe 3 reads -273")
            return os.getpid()
        """,
    )
    pid = (await runner.invoke("fails", "ok")).value
    with pytest.raises(FunctionError) as failed:
        await runner.invoke("fails", "fail")
    assert failed.value.retryable
    assert failed.value.error_type == "SensorFault"
    assert str(failed.value) == "function fails failed: SensorFault: probe 3 reads -273"
    assert (await runner.invoke("fails", "ok")).value == pid  # the worker survives a raise
    log = runner.log_path("fails").read_text()
    assert "Traceback (most recent call last)" in log
    assert 'raise SensorFault("probe 3 reads -273")' in log


async def test_load_failures_are_not_retryable_and_name_file_and_line(
    runner: FunctionRunner, functions_dir: Path
) -> None:
    broken = write(functions_dir, "broken", "x = 1\n\ndef handler(event, context)\n    return 1\n")
    with pytest.raises(FunctionError) as syntax:
        await runner.invoke("broken", {})
    assert not syntax.value.retryable
    assert syntax.value.error_type == "UserCodeSyntaxError"
    assert f"{broken}:3" in str(syntax.value)
    with pytest.raises(FunctionError) as again:  # the same files fail the same way
        await runner.invoke("broken", {})
    assert again.value.error_type == "UserCodeSyntaxError"

    broken.write_text("def handler(event, context):\n    return 'fixed'\n")
    bump(broken)
    assert (await runner.invoke("broken", {})).value == "fixed"

    importing = write(functions_dir, "importing", "import os\nimport no_such_module_here\n")
    with pytest.raises(FunctionError) as imported:
        await runner.invoke("importing", {})
    assert not imported.value.retryable
    assert imported.value.error_type == "ImportModuleError"
    assert f"{importing}:2" in str(imported.value)
    assert "ModuleNotFoundError" in str(imported.value)

    nameless = write(functions_dir, "nameless", "def main(event, context):\n    return 1\n")
    with pytest.raises(FunctionError) as missing:
        await runner.invoke("nameless", {})
    assert not missing.value.retryable
    assert missing.value.error_type == "HandlerNotFound"
    assert str(nameless) in str(missing.value)
    assert "'handler' is not defined" in str(missing.value)


async def test_not_found_lists_the_functions_there(
    runner: FunctionRunner, functions_dir: Path
) -> None:
    with pytest.raises(FunctionError) as none:
        runner.info("ghost")
    assert "it does not exist" in str(none.value)
    write(functions_dir, "alpha", PID)
    write(functions_dir, "beta", PID)
    write(functions_dir, "_helper", "")
    with pytest.raises(FunctionError) as missing:
        await runner.invoke("ghost", {})
    assert missing.value.error_type == "NotFound"
    assert not missing.value.retryable
    message = str(missing.value)
    assert str(functions_dir) in message
    assert "functions there: alpha, beta" in message
    with pytest.raises(FunctionError) as helper:
        runner.info("_helper")
    assert helper.value.error_type == "NotFound"
    with pytest.raises(FunctionError) as bad:
        await runner.invoke("../etc/passwd", {})
    assert bad.value.error_type == "InvalidName"
    assert FUNCTION_NAME.fullmatch("thumbnail-v2_x")
    assert not FUNCTION_NAME.fullmatch("a" * 65)


@pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="RLIMIT_AS limits allocations only on Linux (macOS accepts and ignores it)",
)
async def test_memory_limit_gives_out_of_memory(functions_dir: Path) -> None:
    write(
        functions_dir,
        "hungry",
        """
        import os

        def handler(event, context):
            if event == "eat":
                block = bytearray(200 * 1024 * 1024)
                return len(block)
            return [os.getpid(), context.memory_limit_in_mb]
        """,
    )
    async with FunctionRunner(functions_dir, timeout=2.0, memory_mb=64) as runner:
        pid, limit = (await runner.invoke("hungry", "peek")).value
        assert limit == 64
        with pytest.raises(FunctionError) as starved:
            await runner.invoke("hungry", "eat")
        assert starved.value.error_type == "OutOfMemory"
        assert starved.value.retryable
        assert "64 MB" in str(starved.value)
        again, _ = (await runner.invoke("hungry", "peek")).value
        assert again != pid  # a worker that ran out of memory is replaced
        reports = [
            line.split("\t")
            for line in runner.log_path("hungry").read_text().splitlines()
            if line.startswith("REPORT")
        ]
        assert all("Memory Size: 64 MB" in report for report in reports)
        # The worker's own peak, not the parent's memory its fork copied.
        used = [int(f.split()[3]) for r in reports for f in r if f.startswith("Max Memory Used")]
        assert used
        assert all(0 < mb <= 64 for mb in used)


async def test_worker_that_dies_is_reported_and_replaced(
    runner: FunctionRunner, functions_dir: Path
) -> None:
    write(
        functions_dir,
        "fragile",
        """
        import os, signal

        def handler(event, context):
            if event == "exit":
                os._exit(3)
            if event == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if event == "sys.exit":
                raise SystemExit(4)
            return os.getpid()
        """,
    )
    first = (await runner.invoke("fragile", "ok")).value
    with pytest.raises(FunctionError) as exited:
        await runner.invoke("fragile", "exit")
    assert exited.value.error_type == "WorkerDied"
    assert exited.value.retryable
    assert "exit code 3" in str(exited.value)
    with pytest.raises(FunctionError) as killed:
        await runner.invoke("fragile", "kill")
    assert "killed by signal SIGKILL" in str(killed.value)
    with pytest.raises(FunctionError) as quit_:
        await runner.invoke("fragile", "sys.exit")
    assert quit_.value.error_type == "ExitError"
    assert "exit(4)" in str(quit_.value)
    last = (await runner.invoke("fragile", "ok")).value
    assert last != first


SLEEPY = """
    import os, time

    def handler(event, context):
        if event == "sleep":
            time.sleep(30)
        return os.getpid()
"""


async def test_cancelled_invocation_kills_its_worker(functions_dir: Path) -> None:
    write(functions_dir, "sleepy", SLEEPY)
    async with FunctionRunner(functions_dir, timeout=10.0) as runner:
        pid = (await runner.invoke("sleepy", "ok")).value
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(runner.invoke("sleepy", "sleep"), 0.2)
        assert not alive(pid)
        assert (await runner.invoke("sleepy", "ok")).value != pid


async def test_closing_fails_invocations_in_flight(functions_dir: Path) -> None:
    write(functions_dir, "sleepy", SLEEPY)
    runner = FunctionRunner(functions_dir, timeout=10.0)
    pid = (await runner.invoke("sleepy", "ok")).value
    in_flight = asyncio.create_task(runner.invoke("sleepy", "sleep"))
    done, _ = await asyncio.wait({in_flight}, timeout=0.2)
    assert not done
    await runner.aclose()
    with pytest.raises(FunctionError) as cut:
        await in_flight
    assert cut.value.error_type == "WorkerDied"
    assert cut.value.retryable
    assert not alive(pid)


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs pidfd_open (Linux 5.3+)")
async def test_warm_worker_killed_while_idle_is_replaced(
    runner: FunctionRunner, functions_dir: Path
) -> None:
    write(functions_dir, "pid", PID)
    first = (await runner.invoke("pid", None)).value
    await kill(first)
    assert (await runner.invoke("pid", None)).value != first


async def kill(pid: int) -> None:
    """SIGKILL process ``pid`` and wait until it has terminated (its pidfd turns readable)."""
    fd = os.pidfd_open(pid)
    os.kill(pid, signal.SIGKILL)
    loop = asyncio.get_running_loop()
    gone = asyncio.Event()
    loop.add_reader(fd, gone.set)
    try:
        async with asyncio.timeout(5):
            await gone.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def test_handler_output_stays_out_of_the_protocol(
    runner: FunctionRunner, functions_dir: Path
) -> None:
    write(
        functions_dir,
        "noisy",
        """
        import os, sys

        def handler(event, context):
            os.write(1, b"raw bytes on fd 1\\n")
            sys.stdout.write("x" * 100000)
            print(file=sys.stdout)
            print("to stderr", file=sys.stderr)
            return sys.stdin.read()
        """,
    )
    assert (await runner.invoke("noisy", {})).value == ""
    log = runner.log_path("noisy").read_text()
    assert "raw bytes on fd 1" in log
    assert "to stderr" in log


async def test_module_change_is_picked_up(runner: FunctionRunner, functions_dir: Path) -> None:
    path = write(
        functions_dir,
        "version",
        "import os\ndef handler(event, context):\n    return [1, os.getpid()]\n",
    )
    number, pid = (await runner.invoke("version", {})).value
    assert number == 1
    path.write_text("import os\ndef handler(event, context):\n    return [2, os.getpid()]\n")
    bump(path)
    number, new_pid = (await runner.invoke("version", {})).value
    assert number == 2
    assert new_pid != pid
    assert not alive(pid)  # the old revision's idle worker was retired


async def test_invalid_events_and_returns(runner: FunctionRunner, functions_dir: Path) -> None:
    write(
        functions_dir,
        "returns",
        """
        def handler(event, context):
            if event == "set":
                return {1, 2}
            if event == "big":
                return "x" * (7 * 1024 * 1024)
            return event
        """,
    )
    with pytest.raises(FunctionError) as event:
        await runner.invoke("returns", {"raw": b"bytes"})
    assert event.value.error_type == "InvalidEvent"
    assert not event.value.retryable
    with pytest.raises(FunctionError) as nan:
        await runner.invoke("returns", float("nan"))
    assert nan.value.error_type == "InvalidEvent"
    with pytest.raises(FunctionError) as returned:
        await runner.invoke("returns", "set")
    assert returned.value.error_type == "InvalidReturn"
    assert not returned.value.retryable
    assert "not JSON-serialisable" in str(returned.value)
    with pytest.raises(FunctionError) as big:
        await runner.invoke("returns", "big")
    assert big.value.error_type == "InvalidReturn"
    assert (await runner.invoke("returns", "fine")).value == "fine"


def test_works_on_uvloop_in_a_thread(functions_dir: Path) -> None:
    """As the server runs it: a uvloop loop in a thread other than the main one."""
    uvloop = pytest.importorskip("uvloop")
    write(functions_dir, "pid", PID)
    write(functions_dir, "stuck", "import time\ndef handler(event, context):\n    time.sleep(30)\n")
    seen: list[object] = []

    async def scenario() -> None:
        async with FunctionRunner(functions_dir, timeout=TIMEOUT) as runner:
            first = (await runner.invoke("pid", None)).value
            seen.append((await runner.invoke("pid", None)).value == first)
            with pytest.raises(FunctionError) as timed_out:
                await runner.invoke("stuck", None)
            seen.append(timed_out.value.error_type)
        seen.append(alive(first))

    thread = threading.Thread(target=lambda: uvloop.run(scenario()))
    thread.start()
    thread.join(20)
    assert not thread.is_alive()
    assert seen == [True, "Timeout", False]


# -- idempotency ---------------------------------------------------------------------------------


async def test_idempotent_helper_runs_the_body_once_per_message_id(
    runner: FunctionRunner, functions_dir: Path, tmp_path: Path
) -> None:
    counter = tmp_path / "runs.txt"
    write(
        functions_dir,
        "charge",
        f"""
        import uuid
        from pathlib import Path
        from rules.local.function_worker import idempotent

        RUNS = Path({str(counter)!r})

        @idempotent
        def handler(event, context):
            with RUNS.open("a") as runs:
                runs.write(event["order"] + "\\n")
            return {{"charged": event["order"], "receipt": uuid.uuid4().hex}}
        """,
    )
    write(
        functions_dir,
        "step",
        """
        import itertools
        counter = itertools.count()

        def handler(event, context):
            return context.once(lambda: next(counter))
        """,
    )
    first = await runner.invoke("charge", {"order": "o-1"}, message_id="m-1")
    duplicate = await runner.invoke("charge", {"order": "o-1"}, message_id="m-1")
    assert duplicate.value == first.value
    other = await runner.invoke("charge", {"order": "o-2"}, message_id="m-2")
    assert other.value["charged"] == "o-2"
    without = await runner.invoke("charge", {"order": "o-3"})
    again = await runner.invoke("charge", {"order": "o-3"})
    assert without.value["receipt"] != again.value["receipt"]
    assert counter.read_text().split() == ["o-1", "o-2", "o-3", "o-3"]
    assert (runner.directory / ".idempotency.sqlite").exists()

    assert [(await runner.invoke("step", {}, message_id=m)).value for m in "aab"] == [0, 0, 1]
    # Records outlive the worker: a fresh runner (fresh workers) still sees message m-1.
    async with FunctionRunner(functions_dir, timeout=TIMEOUT) as fresh:
        assert (await fresh.invoke("charge", {"order": "o-1"}, message_id="m-1")).value == (
            first.value
        )
    assert counter.read_text().split() == ["o-1", "o-2", "o-3", "o-3"]


# -- logs ----------------------------------------------------------------------------------------


async def test_log_has_start_output_end_report(runner: FunctionRunner, functions_dir: Path) -> None:
    write(
        functions_dir,
        "talk",
        """
        import logging

        def handler(event, context):
            print("printed", event)
            logging.getLogger("talk").warning("a warning")
            return None
        """,
    )
    await runner.invoke("talk", "first", request_id="r-1")
    await runner.invoke("talk", "second", request_id="r-2")
    lines = runner.log_path("talk").read_text().splitlines()
    assert lines[0] == "START RequestId: r-1 Version: $LATEST"
    assert lines[1] == "printed first"
    assert lines[2].startswith("[WARNING]\t")
    assert lines[2].endswith("\tr-1\ta warning")
    assert lines[3] == "END RequestId: r-1"
    report = lines[4].split("\t")
    assert report[0] == "REPORT RequestId: r-1"
    assert report[1].startswith("Duration: ")
    assert report[1].endswith(" ms")
    assert any(f.startswith("Max Memory Used: ") and f.endswith(" MB") for f in report)
    assert any(f.startswith("Init Duration: ") for f in report)  # a cold start
    assert lines[5] == "START RequestId: r-2 Version: $LATEST"
    assert not any(f.startswith("Init Duration") for f in lines[9].split("\t"))


async def test_log_is_rotated(functions_dir: Path) -> None:
    write(functions_dir, "chatty", "def handler(event, context):\n    print('y' * 500)\n")
    async with FunctionRunner(functions_dir, timeout=TIMEOUT, log_max_bytes=2000) as runner:
        for _ in range(12):
            await runner.invoke("chatty", {})
        log = runner.log_path("chatty")
        rotated = log.with_name("chatty.log.1")
        assert rotated.exists()
        assert log.stat().st_size < 2000 + 1000
        assert rotated.stat().st_size < 2000 + 1000


# -- sidecar settings ----------------------------------------------------------------------------


async def test_sidecar_overrides_timeout_handler_and_environment(functions_dir: Path) -> None:
    write(
        functions_dir,
        "tuned",
        """
        import os, time

        def main(event, context):
            if event == "sleep":
                time.sleep(30)
            return [os.environ["GREETING"], os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]]
        """,
        sidecar="""
        handler = "main"
        timeout = 0.3
        memory_mb = 256
        concurrency = 1

        [environment]
        GREETING = "hello"
        """,
    )
    async with FunctionRunner(functions_dir, timeout=30.0) as runner:
        info = runner.info("tuned")
        assert (info.handler, info.timeout, info.memory_mb, info.concurrency) == (
            "main",
            0.3,
            256,
            1,
        )
        assert info.as_dict()["environment"] == {"GREETING": "hello"}
        assert (await runner.invoke("tuned", {})).value == ["hello", "256"]
        with pytest.raises(FunctionError) as timed_out:
            await runner.invoke("tuned", "sleep")
        assert str(timed_out.value) == "function tuned timed out after 0.3 s"


@pytest.mark.parametrize(
    ("sidecar", "problem"),
    [
        ("timeout = 0\n", "timeout must be seconds greater than 0"),
        ('timeout = "3"\n', "timeout must be seconds greater than 0"),
        ("memory_mb = 8\n", "memory_mb must be a whole number of MiB >= 32"),
        ("concurrency = true\n", "concurrency must be a whole number >= 1"),
        ('handler = "not a name"\n', "handler must be a Python name"),
        ("memroy_mb = 64\n", "unknown key 'memroy_mb'"),
        ("[environment]\nPORT = 80\n", "environment variable PORT must be a string"),
        ("timeout = \n", "line 1"),
    ],
)
async def test_invalid_sidecar_names_the_file_and_problem(
    functions_dir: Path, sidecar: str, problem: str
) -> None:
    write(functions_dir, "odd", PID, sidecar=sidecar)
    runner = FunctionRunner(functions_dir)
    with pytest.raises(FunctionError) as invalid:
        runner.info("odd")
    assert invalid.value.error_type == "InvalidConfig"
    assert not invalid.value.retryable
    assert str(functions_dir / "odd.toml") in str(invalid.value)
    assert problem in str(invalid.value)


def test_listing_and_settings(tmp_path: Path) -> None:
    settings = LocalTargetSettings(function_timeout=1.5, function_memory_mb=128)
    runner = FunctionRunner.from_settings(settings, tmp_path)
    assert runner.directory == tmp_path / "functions"
    assert runner.log_path("x") == tmp_path / "functions" / "logs" / "x.log"
    assert runner.functions() == []
    write(runner.directory, "b", PID)
    write(runner.directory, "a", PID, sidecar="concurrency = 1\n")
    (runner.directory / "not-python.txt").write_text("")
    listed: list[dict[str, Any]] = [f.as_dict() for f in runner.functions()]
    assert [f["functionName"] for f in listed] == ["a", "b"]
    assert listed[0] == {
        "functionName": "a",
        "file": str(runner.directory / "a.py"),
        "handler": "handler",
        "timeout": 1.5,
        "memoryMb": 128,
        "concurrency": 1,
        "environment": {},
        "events": [],
    }
    assert listed[1]["concurrency"] == 4
    json.dumps(listed)
    with pytest.raises(ValueError, match="concurrency"):
        FunctionRunner(tmp_path, concurrency=0)
