"""The README's five-minute tour, run literally: ``thingcore serve`` and Mosquitto's clients.

The commands are the README's with the port it prints (here a free one, ``--port 0``) and
``-C 1`` so that the subscriber exits after one message:

    mosquitto_sub -h 127.0.0.1 -p PORT -t 'sensors/#' -v -C 1
    mosquitto_pub -h 127.0.0.1 -p PORT -t sensors/kitchen/temperature -m 21.5
    mosquitto_pub -h 127.0.0.1 -p PORT -t sensors/kitchen/temperature -m 22.0 -r

The topics are the README's own; each test has a broker of its own, so they are not shared.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import service_required
from tests.thingcore.test_cli import ServeProcess

TOOLS = ("mosquitto_sub", "mosquitto_pub")
WAIT = 10.0


@pytest.fixture(autouse=True)
def mosquitto_clients() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        reason = f"{' and '.join(missing)} not installed (apt-get install mosquitto-clients)"
        if service_required():
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "cwd"
    path.mkdir()
    return path


def mosquitto_pub(port: int, *args: str) -> None:
    done = subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def start_mosquitto_sub(port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", "sensors/#", "-v", "-C", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(sub: subprocess.Popen[str], timeout: float = WAIT) -> str:
    """Wait (bounded) for mosquitto_sub to exit after its one message; return its output."""
    try:
        out, err = sub.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        sub.kill()
        out, err = sub.communicate()
        raise AssertionError(f"mosquitto_sub printed nothing within {timeout}s: {err}") from None
    assert sub.returncode == 0, err
    return out


def test_subscriber_sees_a_published_reading(tmp_path: Path, workdir: Path) -> None:
    with ServeProcess(tmp_path / "var", workdir) as server:
        sub = start_mosquitto_sub(server.port)
        try:
            # mosquitto_sub cannot say when its SUBSCRIBE has been granted, so the reading is
            # published again until the subscriber, which exits after one message, has it.
            for _ in range(int(WAIT / 0.2)):
                mosquitto_pub(server.port, "-t", "sensors/kitchen/temperature", "-m", "21.5")
                try:
                    sub.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    continue
            assert finish(sub) == "sensors/kitchen/temperature 21.5\n"
        finally:
            if sub.poll() is None:
                sub.kill()
                sub.wait()
        assert server.interrupt() == 0


def test_retained_reading_reaches_later_subscribers_even_after_a_restart(
    tmp_path: Path, workdir: Path
) -> None:
    data_dir = tmp_path / "var"
    with ServeProcess(data_dir, workdir) as server:
        mosquitto_pub(server.port, "-t", "sensors/kitchen/temperature", "-m", "22.0", "-r")
        assert finish(start_mosquitto_sub(server.port)) == "sensors/kitchen/temperature 22.0\n"
        assert server.interrupt() == 0
    with ServeProcess(data_dir, workdir) as again:
        assert finish(start_mosquitto_sub(again.port)) == "sensors/kitchen/temperature 22.0\n"
        assert again.interrupt() == 0
