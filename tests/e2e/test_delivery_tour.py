"""The README's "Try it" for rule delivery, run literally: the rule and function files, the
CLI, ``mosquitto_pub``, and what the queue, bucket and function then show.

Everything is read out of README.md; only ``.venv/bin/thingcore`` becomes this interpreter's
``-m thingcore`` and port 1884 the free port the server listens on. The server starts after
``rules apply`` (a user can apply while it runs; the test need not wait for the change feed).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.test_device_tour import README
from tests.thingcore.test_cli import ServeProcess, clean_env


def try_it_block() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("### Delivery that loses nothing")
    section = text[start : text.index("\n### Local targets", start)]
    match = re.search(r"Try it:.*?```sh\n(.*?)```", section, re.S)
    assert match, "the README's delivery example moved"
    return match.group(1).splitlines(keepends=True)


def shell(script: str, cwd: Path) -> str:
    script = script.replace(".venv/bin/thingcore", f"{sys.executable} -m thingcore")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{script}\n{done.stderr}"
    return done.stdout


def until(what: str, check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_readme_delivery_example_works_as_written(tmp_path: Path) -> None:
    lines = try_it_block()
    publish = next(i for i, line in enumerate(lines) if line.startswith("mosquitto_pub"))
    setup, pub, checks = "".join(lines[:publish]), lines[publish], lines[publish + 1 :]
    assert [c.split()[1:3] for c in checks] == [
        ["queues", "peek"],
        ["buckets", "ls"],
        ["functions", "logs"],
        ["targets"],
    ]
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    assert "hot_to_targets" in shell(setup, workdir)
    with ServeProcess(workdir / "var", workdir) as server:
        shell(pub.replace("-p 1884", f"-p {server.port}"), workdir)

        def peek() -> list[dict[str, object]]:
            found = shell(checks[0].rstrip("\n") + " --json", workdir)
            return json.loads(found) if found.strip() else []

        until("the queue", lambda: peek())
        [message] = peek()
        assert json.loads(str(message["body"])) == {"temp": 61, "device": "kitchen"}
        until("the function's log", lambda: "kitchen is at 61 degrees" in shell(checks[2], workdir))
        objects = shell(checks[1], workdir)
        assert "kitchen/" in objects and ".json" in objects
        # Counters reach the database every rules.metrics_flush_interval (5 s).
        wanted = ("queue:hot-readings", "bucket:readings", "function:notify")
        until("the targets", lambda: all(t in shell(checks[3], workdir) for t in wanted))
        assert server.interrupt() == 0
