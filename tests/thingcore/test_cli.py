"""The ``thingcore`` command, run as a real process (``python -m thingcore``).

``ServeProcess`` starts ``thingcore serve`` with a clean THINGCORE_* environment in a working
directory of its own, reads its stderr on a thread and waits, bounded, for the line announcing
the listener; tests then talk MQTT to it with paho and stop it with SIGINT as Ctrl+C would.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

import thingcore
from tests.harness import PahoClient

READY = re.compile(r"serving mqtt on 127\.0\.0\.1:(\d+)")
STARTUP_TIMEOUT = 15.0
EXIT_TIMEOUT = 10.0


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without THINGCORE_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINGCORE_")}
    env.update(extra)
    return env


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m thingcore ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "thingcore", *args],
        cwd=cwd,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def flat(text: str) -> str:
    """``text`` with whitespace runs collapsed (rich wraps long lines at the terminal width)."""
    return " ".join(text.split())


class ServeProcess:
    """``thingcore serve`` in a subprocess; use as a context manager (always ends it)."""

    def __init__(self, data_dir: Path, cwd: Path, *extra_args: str, **env: str) -> None:
        self.args = [
            sys.executable,
            "-m",
            "thingcore",
            "serve",
            "--port",
            "0",
            "--tls-port",
            "0",
            "--data-dir",
            str(data_dir),
            *extra_args,
        ]
        self.cwd = cwd
        self.env = clean_env(**env)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        self.port = 0

    def __enter__(self) -> ServeProcess:
        self.proc = subprocess.Popen(
            self.args,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name="serve-stderr", daemon=True)
        self._reader.start()
        self.port = int(self.wait_for(READY).group(1))
        return self

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = STARTUP_TIMEOUT) -> re.Match[str]:
        """The first stderr line matching ``pattern`` (bounded wait)."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"no line matching {pattern.pattern!r} within {timeout}s; stderr so far:\n"
                    + "".join(self.stderr)
                ) from None
            if line is None:
                raise AssertionError(
                    f"thingcore serve exited ({self.proc.wait()}) before printing "
                    f"{pattern.pattern!r}; stderr:\n" + "".join(self.stderr)
                )
            match = pattern.search(line)
            if match is not None:
                return match

    def interrupt(self, timeout: float = EXIT_TIMEOUT) -> int:
        """Send SIGINT (Ctrl+C) and return the exit code once it has exited."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout)
        return code

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=EXIT_TIMEOUT)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working directory without a thingcore.toml."""
    path = tmp_path / "cwd"
    path.mkdir()
    return path


@pytest.fixture
def paho() -> Iterator[list[PahoClient]]:
    clients: list[PahoClient] = []
    yield clients
    for client in clients:
        client.disconnect()


def connected(registry: list[PahoClient], port: int, client_id: str) -> PahoClient:
    client = PahoClient(port, client_id)
    registry.append(client)
    assert client.connect() == (False, 0)
    return client


# -- version and help -------------------------------------------------------------------------


def test_version_via_console_script(workdir: Path) -> None:
    script = shutil.which("thingcore", path=str(Path(sys.executable).parent))
    assert script is not None, "the thingcore console script is not installed in the venv"
    done = subprocess.run(
        [script, "version"], cwd=workdir, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout == f"thingcore {thingcore.__version__} (Python {platform.python_version()})\n"
    )


def test_version_json(workdir: Path) -> None:
    done = run_cli("version", "--json", cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "thingcore": thingcore.__version__,
        "python": platform.python_version(),
    }


def test_help_lists_the_commands(workdir: Path) -> None:
    done = run_cli("--help", cwd=workdir)
    assert done.returncode == 0, done.stderr
    text = flat(done.stdout)
    assert "serve" in text
    assert "version" in text
    assert "AWS IoT Core" in text


def test_serve_help_explains_the_options(workdir: Path) -> None:
    done = run_cli("serve", "--help", cwd=workdir, env=clean_env(COLUMNS="200"))
    assert done.returncode == 0, done.stderr
    text = flat(done.stdout)
    for option in ("--host", "--port", "--data-dir", "--log-level"):
        assert option in text
    assert "0 picks a free one" in text
    assert "Ctrl+C" in text


def test_serve_help_names_defaults_and_environment_variables(workdir: Path) -> None:
    done = run_cli("serve", "--help", cwd=workdir, env=clean_env(COLUMNS="200"))
    assert done.returncode == 0, done.stderr
    text = flat(done.stdout)
    for variable in (
        "THINGCORE_BROKER__HOST",
        "THINGCORE_BROKER__PORT",
        "THINGCORE_DATA_DIR",
        "THINGCORE_LOG_LEVEL",
    ):
        assert variable in text
    assert "1884" in text


# -- serve ------------------------------------------------------------------------------------


def test_serve_saves_retained_messages_on_sigint_and_restores_them(
    tmp_path: Path, workdir: Path, paho: list[PahoClient], name: str
) -> None:
    data_dir = tmp_path / "data"
    topic = f"{name}/state"
    with ServeProcess(data_dir, workdir) as server:
        pub = connected(paho, server.port, f"{name}-pub")
        pub.publish(topic, b"kept across restarts", qos=1, retain=True)
        assert server.interrupt() == 0
    stderr = "".join(server.stderr)
    assert "Traceback" not in stderr
    assert "shutting down" in stderr

    snapshot = json.loads((data_dir / "broker-snapshot.json").read_text(encoding="utf-8"))
    retained = {m["topic"]: base64.b64decode(m["payload"]) for m in snapshot["retained"]}
    assert retained == {topic: b"kept across restarts"}

    with ServeProcess(data_dir, workdir) as again:
        sub = connected(paho, again.port, f"{name}-sub")
        assert sub.subscribe(f"{name}/#", 1) == [1]
        [got] = sub.expect(1)
        assert (got.topic, got.payload, got.retain) == (topic, b"kept across restarts", True)
        assert again.interrupt() == 0


@pytest.mark.parametrize(
    ("args", "env", "field"),
    [
        (("--port", "0"), {"THINGCORE_BROKER__MAX_INFLIGHT": "abc"}, "broker.max_inflight"),
        (("--port", "70000"), {}, "port"),
    ],
    ids=["environment", "flag"],
)
def test_bad_setting_exits_1_with_one_error_line(
    tmp_path: Path, workdir: Path, args: tuple[str, ...], env: dict[str, str], field: str
) -> None:
    done = run_cli(
        "serve", *args, "--data-dir", str(tmp_path / "data"), cwd=workdir, env=clean_env(**env)
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert [line for line in lines if line.startswith("error:")] == lines[:1]
    assert re.search(rf"\b{field}\b", flat(done.stderr))
    assert not (tmp_path / "data").exists()  # refused before touching anything


def test_port_in_use_exits_1_naming_the_port(tmp_path: Path, workdir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli(
            "serve",
            "--port",
            str(port),
            "--tls-port",
            "0",
            "--data-dir",
            str(tmp_path / "data"),
            cwd=workdir,
        )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    # The CA is created before the listeners start; the refusal is the one error line.
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert f"127.0.0.1:{port}" in flat(done.stderr)


def test_broken_toml_exits_1_with_one_error_line(tmp_path: Path, workdir: Path) -> None:
    (workdir / "thingcore.toml").write_text("[broker\nport = 1885\n", encoding="utf-8")
    done = run_cli("serve", "--port", "0", "--data-dir", str(tmp_path / "data"), cwd=workdir)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error:")
    assert "thingcore.toml" in flat(done.stderr)
