"""What the example tests share: install an example as its README says (functions copied into
the data directory, rules applied with the CLI), publish with ``mosquitto_pub``, and read
queues, buckets and function logs back through the CLI's ``--json``, polling with a deadline.
Trigger polling is made fast through the environment (``FAST``), as a user could."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.thingcore.test_cli import run_cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FAST = {
    "THINGCORE_RULES__TRIGGERS__SCAN_INTERVAL": "0.2",
    "THINGCORE_RULES__TRIGGERS__POLL_INTERVAL": "0.05",
    "THINGCORE_RULES__METRICS_FLUSH_INTERVAL": "0.2",
}


def until(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def cli(data: Path, *args: str) -> Any:
    done = run_cli(*args, "--json", "--data-dir", str(data), cwd=data.parent)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def install(example: str, data: Path) -> None:
    """What the example's README says: copy its functions (if it has any), apply its rules."""
    (data / "functions").mkdir(parents=True)
    functions = EXAMPLES / example / "functions"
    if functions.is_dir():
        for path in functions.iterdir():
            shutil.copy(path, data / "functions" / path.name)
    applied = cli(data, "rules", "apply", str(EXAMPLES / example / "rules"))
    assert applied["created"], applied


def mosquitto_pub(port: int, topic: str, *args: str, lines: str | None = None) -> None:
    if shutil.which("mosquitto_pub") is None:
        pytest.fail("mosquitto_pub is missing: apt-get install mosquitto-clients")
    subprocess.run(  # noqa: S603 - the Mosquitto client against our own server
        ["mosquitto_pub", "-p", str(port), "-q", "1", "-t", topic, *args],
        check=True,
        timeout=60,
        input=lines,
        text=lines is not None,
    )


def peek(data: Path, queue: str) -> list[dict[str, Any]]:
    """The messages of a local queue, in the order a receive would take them ([] if none yet)."""
    done = run_cli(
        *("queues", "peek", queue, "--limit", "1000", "--json", "--data-dir", str(data)),
        cwd=data.parent,
    )
    if f"no queue named {queue}" in done.stderr:
        return []
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def bodies(data: Path, queue: str) -> list[Any]:
    return [json.loads(m["body"]) for m in peek(data, queue)]


def objects(data: Path, bucket: str) -> list[dict[str, Any]]:
    """The bucket's objects; none while it does not exist yet (its first object makes it)."""
    done = run_cli("buckets", "ls", bucket, "--json", "--data-dir", str(data), cwd=data.parent)
    if f"no bucket named '{bucket}'" in done.stderr:
        return []
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout)["Contents"])


def function_log(data: Path, name: str) -> str:
    log = data / "functions" / "logs" / f"{name}.log"
    return log.read_text() if log.exists() else ""
