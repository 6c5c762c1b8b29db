"""Connection-rate load: CONNECT, CONNACK, DISCONNECT cycles as fast as the broker allows.

A plain epoll loop over non-blocking sockets rather than asyncio: a cycle is mostly socket
setup, and asyncio's transport machinery would cost more than the broker's work per cycle.
`concurrency` cycles are always in progress; each finished one starts the next.
"""

from __future__ import annotations

import errno
import select
import socket
import time
from collections import Counter
from dataclasses import dataclass, field

from bench import mqttwire
from bench.stats import Histogram

CONNECTING, WAITING = 1, 2


@dataclass
class ConnRateResult:
    completed: int = 0  # cycles that got an accepting CONNACK within the duration
    refused: int = 0  # CONNACK with a non-zero return code
    errors: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    connack_latency: Histogram = field(default_factory=Histogram)  # µs, connect() to CONNACK


class _Attempt:
    __slots__ = ("sock", "state", "started_ns", "packet", "received")

    def __init__(self, sock: socket.socket, state: int, started_ns: int, packet: bytes) -> None:
        self.sock = sock
        self.state = state
        self.started_ns = started_ns
        self.packet = packet
        self.received = b""


def tally_connack(result: ConnRateResult, data: bytes, started_ns: int) -> str | None:
    """Count the CONNACK at the start of ``data`` (accepted or refused); for anything else,
    return what went wrong."""
    if data[0] == 0x20 and data[3] == 0:
        result.completed += 1
        result.connack_latency.add((time.monotonic_ns() - started_ns) // 1000)
        return None
    if data[0] == 0x20:
        result.refused += 1
        return None
    return f"unexpected packet type {data[0] >> 4}"


def run_cycles(
    host: str,
    port: int,
    *,
    concurrency: int,
    duration: float,
    client_prefix: str,
    timeout: float = 5.0,
) -> ConnRateResult:
    result = ConnRateResult()
    address = (host, port)
    poller = select.epoll()
    live: dict[int, _Attempt] = {}
    counter = 0
    monotonic_ns = time.monotonic_ns

    def start() -> None:
        nonlocal counter
        counter += 1
        packet = mqttwire.connect(f"{client_prefix}-{counter}", keepalive=60)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        started = monotonic_ns()
        err = sock.connect_ex(address)
        if err not in (0, errno.EINPROGRESS):
            result.errors[errno.errorcode.get(err, str(err))] += 1
            sock.close()
            return
        state = CONNECTING
        try:
            sock.send(packet)  # on loopback the handshake has usually completed already
            state = WAITING
        except BlockingIOError:
            pass
        except OSError as exc:
            result.errors[type(exc).__name__] += 1
            sock.close()
            return
        fd = sock.fileno()
        live[fd] = _Attempt(sock, state, started, packet)
        poller.register(fd, select.EPOLLIN if state == WAITING else select.EPOLLOUT)

    def restart(fd: int, error: str | None = None) -> None:
        if error is not None:
            result.errors[error] += 1
        poller.unregister(fd)
        live.pop(fd).sock.close()
        start()

    def on_connected(fd: int, attempt: _Attempt, events: int) -> None:
        if events & (select.EPOLLERR | select.EPOLLHUP):
            err = attempt.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            restart(fd, errno.errorcode.get(err, "connect failed"))
            return
        try:
            attempt.sock.send(attempt.packet)
        except OSError as exc:
            restart(fd, type(exc).__name__)
            return
        attempt.state = WAITING
        poller.modify(fd, select.EPOLLIN)

    def on_readable(fd: int, attempt: _Attempt) -> None:
        try:
            data = attempt.sock.recv(64)
        except OSError as exc:
            restart(fd, type(exc).__name__)
            return
        if not data:
            restart(fd, "closed before CONNACK")
            return
        data = attempt.received + data
        if len(data) < 4:
            attempt.received = data
            return
        error = tally_connack(result, data, attempt.started_ns)
        try:
            attempt.sock.send(mqttwire.DISCONNECT)
        except OSError:
            pass
        restart(fd, error)

    t0 = time.monotonic()
    deadline = t0 + duration
    next_timeout_check = t0 + 0.5
    for _ in range(concurrency):
        start()
    while (now := time.monotonic()) < deadline:
        for fd, events in poller.poll(min(0.05, deadline - now)):
            attempt = live[fd]
            if attempt.state == CONNECTING:
                on_connected(fd, attempt, events)
            else:
                on_readable(fd, attempt)
        if now >= next_timeout_check:
            next_timeout_check = now + 0.5
            limit = monotonic_ns() - int(timeout * 1e9)
            for fd in [fd for fd, a in live.items() if a.started_ns < limit]:
                restart(fd, "no CONNACK within timeout")
    result.elapsed = time.monotonic() - t0
    for attempt in live.values():
        attempt.sock.close()
    poller.close()
    return result
