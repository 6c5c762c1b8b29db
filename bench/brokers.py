"""Starting and stopping the brokers under test.

Each broker runs as a subprocess on a free loopback port, pinned to the broker CPU with
`taskset`, in its own session (so a Ctrl+C in the terminal reaches only the orchestrator, which
then stops it), with a private temporary directory for its config, data and log. `run_broker`
is a context manager: the broker is stopped by PID whatever happens (SIGINT, then SIGKILL).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

HOST = "127.0.0.1"
RESERVED_PORTS = frozenset({1883, 8883})  # the system Mosquitto's; never ours


@dataclass(frozen=True)
class Limits:
    """The same limits for every broker."""

    max_inflight: int = 20
    max_queued_messages: int = 1000
    max_connections: int = 20_000


class BrokerError(Exception):
    """A broker did not start, or died."""


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    stop_timeout: float


Launcher = Callable[[Path, int, Limits, Path], Launch]


def mosquitto(workdir: Path, port: int, limits: Limits, log: Path) -> Launch:
    exe = shutil.which("mosquitto")
    if exe is None:
        raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
    config = workdir / "mosquitto.conf"
    lines = [
        f"listener {port} {HOST}",
        "allow_anonymous true",
        "max_connections -1",
        "persistence false",
        f"max_inflight_messages {limits.max_inflight}",
        f"max_queued_messages {limits.max_queued_messages}",
        f"log_dest file {log}",
        # Like for like: thingcore logs no line per connection, so neither does Mosquitto
        # (its default writes two per connection, which the connection-rate run would time).
        "log_type error",
        "log_type warning",
        "connection_messages false",
        # Without this Mosquitto's small writes wait on Nagle's algorithm and the subscribers'
        # delayed ACKs (up to 40 ms); asyncio servers such as thingcore set TCP_NODELAY.
        "set_tcp_nodelay true",
    ]
    if os.geteuid() == 0:
        # Run as root Mosquitto would switch to the "mosquitto" user, which cannot write the log
        # in our private directory; stay as the current user instead.
        lines.append(f"user {getpass.getuser()}")
    config.write_text("\n".join(lines) + "\n")
    return Launch([exe, "-c", str(config)], _clean_env(), stop_timeout=5.0)


def thingcore(workdir: Path, port: int, limits: Limits, log: Path) -> Launch:
    env = _clean_env()
    env.update(
        {
            "THINGCORE_DATA_DIR": str(workdir / "data"),
            "THINGCORE_BROKER__HOST": HOST,
            "THINGCORE_BROKER__PORT": str(port),
            "THINGCORE_BROKER__PERSISTENCE": "false",
            "THINGCORE_BROKER__MAX_INFLIGHT": str(limits.max_inflight),
            "THINGCORE_BROKER__MAX_QUEUED_MESSAGES": str(limits.max_queued_messages),
            "THINGCORE_BROKER__MAX_CONNECTIONS": str(limits.max_connections),
        }
    )
    (workdir / "data").mkdir()
    return Launch([sys.executable, "-m", "thingcore", "serve"], env, stop_timeout=10.0)


LAUNCHERS: dict[str, Launcher] = {"mosquitto": mosquitto, "thingcore": thingcore}


def _clean_env() -> dict[str, str]:
    """This process's environment without THINGCORE_ settings that would change the broker."""
    return {k: v for k, v in os.environ.items() if not k.startswith("THINGCORE_")}


def free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port


@dataclass
class RunningBroker:
    kind: str
    label: str
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    stop_timeout: float
    exit_code: int | None = None  # set once stopped
    killed: bool = False  # it needed SIGKILL

    @property
    def pid(self) -> int:
        return self.process.pid

    def _processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def rss_bytes(self) -> int:
        """Resident memory of the broker and all its children."""
        total = 0
        for proc in self._processes():
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the broker and its live children."""
        total = 0.0
        for proc in self._processes():
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BrokerError(
                f"{self.label} exited with code {self.process.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.strip().splitlines()[-lines:])


@contextmanager
def run_broker(
    kind: str,
    label: str,
    *,
    cpu: int | None,
    log_dir: Path,
    limits: Limits | None = None,
    ready_timeout: float = 30.0,
) -> Iterator[RunningBroker]:
    """Start broker `kind` ("mosquitto" or "thingcore"), yield it once its port accepts TCP
    connections, and stop it on exit."""
    launcher = LAUNCHERS.get(kind)
    if launcher is None:
        raise BrokerError(f"unknown broker {kind!r}; choose from {', '.join(LAUNCHERS)}")
    workdir = Path(tempfile.mkdtemp(prefix=f"thingcore-bench-{kind}-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{label}.log"
    log.unlink(missing_ok=True)
    port = free_port()
    launch = launcher(workdir, port, limits or Limits(), log)
    argv = launch.argv
    if cpu is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", str(cpu), *argv]
    output = log if kind != "mosquitto" else workdir / "stdout.log"
    with open(output, "ab") as out:
        process = subprocess.Popen(
            argv,
            env=launch.env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    broker = RunningBroker(kind, label, HOST, port, process, log, launch.stop_timeout)
    try:
        _wait_ready(broker, ready_timeout)
        yield broker
    finally:
        broker.exit_code, broker.killed = stop(process, launch.stop_timeout)
        if kind == "mosquitto":
            _append(log, workdir / "stdout.log")
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_ready(broker: RunningBroker, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        broker.check_alive()
        try:
            with socket.create_connection((broker.host, broker.port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"{broker.label} did not accept connections on {broker.host}:{broker.port} "
                    f"within {timeout:.0f} s:\n{broker.log_tail()}"
                ) from None
            time.sleep(0.1)


def stop(process: subprocess.Popen[bytes], timeout: float) -> tuple[int, bool]:
    """SIGINT, then SIGKILL after `timeout` seconds; returns (exit code, whether it was killed).
    Anything the broker left behind in its own process group (worker processes) is killed too."""
    killed = False
    if process.poll() is None:
        try:
            os.kill(process.pid, signal.SIGINT)
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            killed = True
        except ProcessLookupError:
            pass
    code = process.wait()
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return code, killed


def _append(target: Path, source: Path) -> None:
    try:
        extra = source.read_bytes()
    except OSError:
        return
    if extra.strip():
        with open(target, "ab") as f:
            f.write(extra)
