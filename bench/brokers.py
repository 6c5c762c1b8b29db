"""Starting and stopping the brokers under test.

Each broker runs as a subprocess on a free loopback port, pinned to the broker CPU with
`taskset`, in its own session (so a Ctrl+C in the terminal reaches only the orchestrator, which
then stops it), with a private temporary directory for its config, data and log. `run_broker`
is a context manager: the broker is stopped by PID whatever happens (SIGINT, then SIGKILL).

Five kinds: `mosquitto`, `thingcore` (`thingcore serve`, with the registry),
`thingcore-rules` (the same with a workload's rules applied before it starts),
`thingcore-bare` (the same broker without the registry, `bench.bare_broker`) and `amqtt`
(amqtt's broker with its contrib shadow plugin on SQLite, `bench.amqtt_broker`). Given the
run's PKI (`bench.pki`), Mosquitto and thingcore also listen for mutual TLS on a second free
port with the same CA and server certificate; thingcore always binds its TLS listener to a
free port, never to its default 8883. With `allow_all`, thingcore's anonymous clients get a
policy that allows every action on every resource, `$aws/...` topics included (the other
kinds let anonymous clients do everything anyway).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.pki import Pki

HOST = "127.0.0.1"
RESERVED_PORTS = frozenset({1883, 8883})  # the system Mosquitto's; never ours
ALLOW_ALL_POLICY = "bench-all"
ALLOW_ALL_DOCUMENT = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
}


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


@dataclass(frozen=True)
class LaunchContext:
    """What a launcher needs to write a broker's configuration."""

    workdir: Path  # private temporary directory, removed after the broker stops
    port: int  # plain MQTT listener
    tls_port: int  # mutual-TLS listener: thingcore always binds one; Mosquitto only with `pki`
    limits: Limits
    log: Path
    pki: Pki | None  # the run's PKI, for the mutual-TLS workloads; None: no TLS clients
    allow_all: bool = False  # anonymous clients may use every topic, reserved ones included
    # Rule name -> AWS TopicRulePayload, for the launchers that apply rules (thingcore-rules).
    rules: Mapping[str, Mapping[str, Any]] | None = None


Launcher = Callable[[LaunchContext], Launch]


def mosquitto(ctx: LaunchContext) -> Launch:
    exe = shutil.which("mosquitto")
    if exe is None:
        raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
    config = ctx.workdir / "mosquitto.conf"
    limits, log = ctx.limits, ctx.log
    lines = [
        f"listener {ctx.port} {HOST}",
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
    if ctx.pki is not None:
        # The listener options below apply to this listener only. Both brokers present the
        # same server certificate and trust the same CA; Mosquitto's defaults otherwise (TLS
        # 1.2 and 1.3, OpenSSL's cipher order, session tickets on).
        lines += [
            f"listener {ctx.tls_port} {HOST}",
            f"cafile {ctx.pki.ca_cert}",
            f"certfile {ctx.pki.server_cert}",
            f"keyfile {ctx.pki.server_key}",
            "require_certificate true",
            "use_identity_as_username true",
        ]
    config.write_text("\n".join(lines) + "\n")
    return Launch([exe, "-c", str(config)], _clean_env(), stop_timeout=5.0)


def _thingcore_env(ctx: LaunchContext) -> dict[str, str]:
    limits = ctx.limits
    env = _clean_env()
    env.update(
        {
            "THINGCORE_DATA_DIR": str(ctx.workdir / "data"),
            "THINGCORE_BROKER__HOST": HOST,
            "THINGCORE_BROKER__PORT": str(ctx.port),
            "THINGCORE_BROKER__PERSISTENCE": "false",
            "THINGCORE_BROKER__MAX_INFLIGHT": str(limits.max_inflight),
            "THINGCORE_BROKER__MAX_QUEUED_MESSAGES": str(limits.max_queued_messages),
            "THINGCORE_BROKER__MAX_CONNECTIONS": str(limits.max_connections),
        }
    )
    return env


def thingcore(ctx: LaunchContext) -> Launch:
    """`thingcore serve`: the broker with the registry (policy evaluation on every publish,
    subscribe and delivery; anonymous clients on the plain listener get the default
    anonymous policy). Its TLS listener is always on a free port (never 8883)."""
    env = _thingcore_env(ctx)
    env["THINGCORE_BROKER__TLS_PORT"] = str(ctx.tls_port)
    if ctx.pki is not None:
        ctx.pki.copy_thingcore_data(ctx.workdir / "data")  # the CA and registered devices
    else:
        (ctx.workdir / "data").mkdir()
    if ctx.allow_all:
        _create_allow_all_policy(ctx, env)
        env["THINGCORE_REGISTRY__ANONYMOUS_POLICY"] = ALLOW_ALL_POLICY
    return Launch([sys.executable, "-m", "thingcore", "serve"], env, stop_timeout=10.0)


def _create_allow_all_policy(ctx: LaunchContext, env: dict[str, str]) -> None:
    """Create the `bench-all` policy in the data directory with thingcore's own CLI, before
    the server starts. The default anonymous policy denies the reserved `$aws/...` topics,
    which the shadow workload's anonymous devices use."""
    document = ctx.workdir / "bench-all-policy.json"
    document.write_text(json.dumps(ALLOW_ALL_DOCUMENT))
    _thingcore_cli(ctx, env, ["policies", "create", ALLOW_ALL_POLICY, str(document)])


def _thingcore_cli(ctx: LaunchContext, env: dict[str, str], args: list[str]) -> str:
    """Run `<venv python> -m thingcore ARGS` on the broker's data directory; its stdout."""
    command = f"thingcore {' '.join(args[:2])}"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "thingcore", *args],
            env=env,
            cwd=ctx.workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(f"`{command}` did not finish in {exc.timeout:g} s") from None
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        raise BrokerError(f"`{command}` failed: {output}")
    return done.stdout


def thingcore_rules(ctx: LaunchContext) -> Launch:
    """`thingcore serve` with the workload's rules: before the server starts, one file per
    rule (file name = rule name, content = its TopicRulePayload) goes into a folder, applied
    with thingcore's own CLI (`thingcore rules apply DIR`) to the data directory; the server
    loads them from its database at start."""
    if not ctx.rules:
        raise BrokerError("thingcore-rules runs a workload's rules (rules-throughput) only")
    launch = thingcore(ctx)
    folder = ctx.workdir / "rules"
    folder.mkdir()
    for name, payload in ctx.rules.items():
        (folder / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    report = json.loads(_thingcore_cli(ctx, launch.env, ["rules", "apply", str(folder), "--json"]))
    if len(report.get("created", [])) != len(ctx.rules):
        raise BrokerError(f"`thingcore rules apply` did not create every rule: {report}")
    return launch


def thingcore_bare(ctx: LaunchContext) -> Launch:
    """thingcore's broker without the registry (`bench.bare_broker`: `broker.auth.AllowAll`,
    no TLS listener), with the same broker settings as `thingcore`."""
    if ctx.pki is not None:
        raise BrokerError("thingcore-bare has no TLS listener; it cannot run mutual-TLS workloads")
    env = _thingcore_env(ctx)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    (ctx.workdir / "data").mkdir()
    return Launch([sys.executable, "-m", "bench.bare_broker"], env, stop_timeout=10.0)


def amqtt(ctx: LaunchContext) -> Launch:
    """amqtt's broker (`bench.amqtt_broker`: amqtt's `Broker` as its `amqtt` command runs it,
    letting clients publish to `$shadow/...`) with anonymous clients and its contrib shadow
    plugin, whose shadows are kept in SQLite (aiosqlite) in the private directory, in WAL
    mode with synchronous=NORMAL like thingcore's. amqtt has no equivalent of the in-flight
    and queue limits, so `Limits` does not apply."""
    if ctx.pki is not None:
        raise BrokerError("the amqtt launcher has no TLS listener; it cannot run mTLS workloads")
    config = ctx.workdir / "amqtt.yaml"
    settings = {
        "listeners": {"default": {"type": "tcp", "bind": f"{HOST}:{ctx.port}"}},
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            "bench.amqtt_broker.DurableShadowPlugin": {
                "connection": f"sqlite+aiosqlite:///{ctx.workdir / 'shadows.db'}"
            },
        },
    }
    config.write_text(json.dumps(settings, indent=2) + "\n")  # JSON is YAML
    env = _clean_env()
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return Launch([sys.executable, "-m", "bench.amqtt_broker", str(config)], env, stop_timeout=10.0)


LAUNCHERS: dict[str, Launcher] = {
    "mosquitto": mosquitto,
    "thingcore": thingcore,
    "thingcore-rules": thingcore_rules,
    "thingcore-bare": thingcore_bare,
    "amqtt": amqtt,
}


def _clean_env() -> dict[str, str]:
    """This process's environment without THINGCORE_ settings that would change the broker."""
    return {k: v for k, v in os.environ.items() if not k.startswith("THINGCORE_")}


def free_port(*, avoid: frozenset[int] = frozenset()) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if port not in RESERVED_PORTS and port not in avoid:
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
    tls_port: int | None = None  # the mutual-TLS listener, when started with a PKI
    pki: Pki | None = None
    data_dir: Path | None = None  # thingcore's THINGCORE_DATA_DIR (removed once it stopped)
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
    pki: Pki | None = None,
    allow_all: bool = False,
    rules: Mapping[str, Mapping[str, Any]] | None = None,
) -> Iterator[RunningBroker]:
    """Start broker `kind` (a key of `LAUNCHERS`), yield it once its port accepts TCP
    connections (and, with a `pki`, its mutual-TLS port listens), and stop it on exit.
    `allow_all`: anonymous clients may use every topic, reserved ones included. `rules`
    (name -> TopicRulePayload): applied before the start by the kinds that take rules."""
    launcher = LAUNCHERS.get(kind)
    if launcher is None:
        raise BrokerError(f"unknown broker {kind!r}; choose from {', '.join(LAUNCHERS)}")
    workdir = Path(tempfile.mkdtemp(prefix=f"thingcore-bench-{kind}-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{label}.log"
    log.unlink(missing_ok=True)
    port = free_port()
    tls_port = free_port(avoid=frozenset({port}))
    try:
        launch = launcher(
            LaunchContext(workdir, port, tls_port, limits or Limits(), log, pki, allow_all, rules)
        )
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
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
    broker = RunningBroker(
        kind,
        label,
        HOST,
        port,
        process,
        log,
        launch.stop_timeout,
        tls_port=tls_port if pki is not None else None,
        pki=pki,
        data_dir=Path(data) if (data := launch.env.get("THINGCORE_DATA_DIR")) else None,
    )
    try:
        _wait_ready(broker, ready_timeout)
        if broker.tls_port is not None:
            _wait_listening(broker, broker.tls_port, ready_timeout)
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


def _wait_listening(broker: RunningBroker, port: int, timeout: float) -> None:
    """Wait until the broker listens on `port`, without connecting (a TCP connection that
    never starts a TLS handshake would be logged as a failed handshake)."""
    deadline = time.monotonic() + timeout
    while True:
        broker.check_alive()
        for proc in broker._processes():
            with contextlib.suppress(psutil.Error):
                for conn in proc.net_connections(kind="tcp"):
                    if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                        return
        if time.monotonic() > deadline:
            raise BrokerError(
                f"{broker.label} did not listen on {broker.host}:{port} (TLS) within "
                f"{timeout:.0f} s:\n{broker.log_tail()}"
            )
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
