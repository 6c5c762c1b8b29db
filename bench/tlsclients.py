"""Mutual-TLS load generators: handshake cycles, idle TLS connections and a preflight check.

Every client presents its own device certificate from the run's PKI (`bench.pki`). Clients use
Python's `ssl` module with its defaults (TLS 1.3 when both sides offer it, X25519, the
OpenSSL cipher order) and never offer a session to resume, so every handshake is a full one:
ECDHE plus a certificate and CertificateVerify from each side. In the measured loops the
client does not verify the server's certificate (`client_context` without `verify_with`): that
saves the load generator two ECDSA verifications per handshake and changes nothing on the
broker's side, which still requires, verifies and checks the client's certificate. `preflight`
does one fully verified handshake (CA and host name) per broker first, so a broken PKI cannot go
unnoticed.

- `run_cycles`: TCP connect, TLS handshake, MQTT CONNECT, CONNACK, DISCONNECT, close; as fast
  as the broker allows, `concurrency` at a time, on a plain epoll loop over non-blocking
  `ssl.SSLSocket`s (like `bench.connrate`, which does the same without TLS).
- `tls_idle_role`: many mutual-TLS MQTT connections held open, then a PINGREQ on every one
  (like `bench.workers.idle_role`, over TLS).

Both run in `bench.workers.Worker` processes; this module registers their specs as worker roles.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import select
import socket
import ssl
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import mqttwire, workers
from bench.connrate import ConnRateResult, tally_connack
from bench.loadgen import ClientError, IdleClient, PingTally
from bench.pki import ClientCert
from bench.stats import Histogram
from bench.workers import CONNECT_TIMEOUT, Channel, Ready, Stop

HANDSHAKING, WAITING = 1, 2


def client_context(cert: ClientCert | None, *, verify_with: Path | None = None) -> ssl.SSLContext:
    """A client context presenting `cert` (None: no certificate); it verifies the server's
    certificate and host name against `verify_with` (a CA file), or not at all."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cert is not None:
        context.load_cert_chain(cert.certfile, cert.keyfile)
    if verify_with is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(cafile=verify_with)
    return context


# --- preflight (orchestrator side, blocking) -------------------------------------------------


@dataclass(frozen=True)
class Preflight:
    version: str  # negotiated TLS version
    cipher: str
    session_ticket: bool  # the broker issued a session ticket (which the clients never reuse)
    no_cert_refused: bool  # a client without a certificate got no CONNACK


def _recv_connack(sock: ssl.SSLSocket) -> int:
    """The CONNACK return code, read from a blocking socket."""
    data = b""
    while len(data) < 4:
        chunk = sock.recv(64)
        if not chunk:
            raise ClientError(f"connection closed before CONNACK ({len(data)} bytes)")
        data += chunk
    if data[0] != 0x20:
        raise ClientError(f"expected CONNACK, got packet type {data[0] >> 4}")
    return data[3]


def connect_once(
    host: str,
    port: int,
    context: ssl.SSLContext,
    client_id: str,
    *,
    server_hostname: str | None = None,
    timeout: float = CONNECT_TIMEOUT,
) -> tuple[str, str, bool]:
    """One blocking mutual-TLS CONNECT/CONNACK/DISCONNECT; returns (TLS version, cipher,
    whether the broker issued a session ticket). Raises on refusal or failure."""
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as sock,
    ):
        sock.sendall(mqttwire.connect(client_id, keepalive=60))
        code = _recv_connack(sock)
        if code:
            raise ClientError(f"{client_id}: CONNACK refused with code {code}")
        session = sock.session
        cipher = sock.cipher()
        ticket = bool(session and session.has_ticket)
        info = (sock.version() or "?", cipher[0] if cipher else "?", ticket)
        sock.sendall(mqttwire.DISCONNECT)
        return info


def preflight(
    host: str, port: int, cert: ClientCert, ca_file: Path, client_prefix: str
) -> Preflight:
    """A fully verified handshake with `cert`, then one without any client certificate."""
    version, cipher, ticket = connect_once(
        host,
        port,
        client_context(cert, verify_with=ca_file),
        f"{client_prefix}-preflight",
        server_hostname=host,
    )
    try:
        connect_once(host, port, client_context(None), f"{client_prefix}-nocert", timeout=5.0)
    except (OSError, ClientError):  # ssl.SSLError is an OSError
        refused = True
    else:
        refused = False
    return Preflight(version, cipher, ticket, refused)


# --- handshake cycles -----------------------------------------------------------------------


@dataclass(frozen=True)
class HandshakeSpec:
    host: str
    port: int
    client_prefix: str
    certs: Sequence[ClientCert]  # used round robin, one context each
    concurrency: int


@dataclass(frozen=True)
class Go:
    """Run handshake cycles for `duration` seconds, then answer with a `ConnRateResult`."""

    duration: float


class _Attempt:
    __slots__ = ("sock", "state", "events", "started_ns", "packet", "received")

    def __init__(self, sock: ssl.SSLSocket, started_ns: int, packet: bytes) -> None:
        self.sock = sock
        self.state = HANDSHAKING
        self.events = 0
        self.started_ns = started_ns
        self.packet = packet
        self.received = b""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"SSLError({exc.reason or exc.__class__.__name__})"
    return type(exc).__name__


def run_cycles(
    host: str,
    port: int,
    contexts: Sequence[ssl.SSLContext],
    *,
    concurrency: int,
    duration: float,
    client_prefix: str,
    timeout: float = 5.0,
) -> ConnRateResult:
    """Mutual-TLS connect cycles for `duration` seconds, `concurrency` in progress at once.

    A cycle: non-blocking connect, TLS handshake, CONNECT, CONNACK (counted), DISCONNECT,
    close (no TLS close_notify, as most device SDKs do not wait for one). `connack_latency`
    is from connect() to CONNACK.
    """
    result = ConnRateResult()
    address = (host, port)
    poller = select.epoll()
    live: dict[int, _Attempt] = {}
    counter = 0
    monotonic_ns = time.monotonic_ns
    epollin, epollout = select.EPOLLIN, select.EPOLLOUT

    def watch(fd: int, attempt: _Attempt, events: int) -> None:
        if attempt.events != events:
            attempt.events = events
            poller.modify(fd, events)

    def start() -> None:
        nonlocal counter
        counter += 1
        context = contexts[counter % len(contexts)]
        packet = mqttwire.connect(f"{client_prefix}-{counter}", keepalive=60)
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setblocking(False)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = context.wrap_socket(raw, do_handshake_on_connect=False)
        started = monotonic_ns()
        err = sock.connect_ex(address)
        if err not in (0, errno.EINPROGRESS):
            result.errors[errno.errorcode.get(err, str(err))] += 1
            sock.close()
            return
        fd = sock.fileno()
        attempt = _Attempt(sock, started, packet)
        live[fd] = attempt
        attempt.events = epollout
        poller.register(fd, epollout)
        handshake(fd, attempt)  # on loopback the TCP handshake has usually completed already

    def restart(fd: int, error: str | None = None) -> None:
        if error is not None:
            result.errors[error] += 1
        poller.unregister(fd)
        live.pop(fd).sock.close()
        start()

    def handshake(fd: int, attempt: _Attempt) -> None:
        sock = attempt.sock
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            watch(fd, attempt, epollin)
            return
        except ssl.SSLWantWriteError:
            watch(fd, attempt, epollout)
            return
        except OSError as exc:  # ssl.SSLError included
            restart(fd, _describe(exc))
            return
        try:
            sock.send(attempt.packet)
        except OSError as exc:
            restart(fd, _describe(exc))
            return
        attempt.state = WAITING
        watch(fd, attempt, epollin)

    def on_readable(fd: int, attempt: _Attempt) -> None:
        try:
            data = attempt.sock.recv(64)
        except ssl.SSLWantReadError:
            return  # a record without application data: TLS 1.3 session tickets
        except OSError as exc:
            restart(fd, _describe(exc))
            return
        if not data:
            restart(fd, "closed before CONNACK")
            return
        data = attempt.received + data
        if len(data) < 4:
            attempt.received = data
            return
        error = tally_connack(result, data, attempt.started_ns)
        with contextlib.suppress(OSError):
            attempt.sock.send(mqttwire.DISCONNECT)
        restart(fd, error)

    t0 = time.monotonic()
    deadline = t0 + duration
    next_timeout_check = t0 + 0.5
    for _ in range(concurrency):
        start()
    while (now := time.monotonic()) < deadline:
        for fd, _events in poller.poll(min(0.05, deadline - now)):
            attempt = live.get(fd)
            if attempt is None:
                continue
            if attempt.state == HANDSHAKING:
                handshake(fd, attempt)
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


async def handshake_role(spec: HandshakeSpec, channel: Channel) -> None:
    """Answers each `Go` with the cycles it ran. The cycles block this process's event loop,
    which has nothing else to do meanwhile."""
    contexts = [client_context(cert) for cert in spec.certs]
    channel.send(Ready(connected=0))
    while not isinstance(command := await channel.recv(), Stop):
        assert isinstance(command, Go)
        gc.collect()
        channel.send(
            run_cycles(
                spec.host,
                spec.port,
                contexts,
                concurrency=spec.concurrency,
                duration=command.duration,
                client_prefix=spec.client_prefix,
            )
        )


def merge_results(results: Sequence[ConnRateResult]) -> ConnRateResult:
    """Several processes' cycles as one: counts added, the longest elapsed time."""
    merged = ConnRateResult(errors=Counter(), connack_latency=Histogram())
    for r in results:
        merged.completed += r.completed
        merged.refused += r.refused
        merged.errors.update(r.errors)
        merged.elapsed = max(merged.elapsed, r.elapsed)
        merged.connack_latency.merge(r.connack_latency)
    return merged


# --- idle TLS connections -------------------------------------------------------------------


@dataclass(frozen=True)
class TlsIdleSpec:
    host: str
    port: int
    client_prefix: str
    certs: Sequence[ClientCert]  # one connection per certificate
    keepalive: int = 60
    concurrency: int = 64


async def _connect_tls(
    clients: Sequence[IdleClient],
    contexts: Sequence[ssl.SSLContext],
    host: str,
    port: int,
    concurrency: int,
) -> Ready:
    """Open every client's mutual-TLS connection (at most `concurrency` at a time)."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    errors: Counter[str] = Counter()
    started = time.monotonic()

    async def one(client: IdleClient, context: ssl.SSLContext) -> bool:
        async with gate:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await loop.create_connection(lambda: client, host, port, ssl=context)
                    await client.connected
            except (OSError, ClientError, TimeoutError) as exc:
                errors["timeout" if isinstance(exc, TimeoutError) else _describe(exc)] += 1
                if client.transport is not None:
                    client.transport.abort()
                return False
            return True

    results = await asyncio.gather(*(one(c, ctx) for c, ctx in zip(clients, contexts, strict=True)))
    return Ready(
        connected=sum(results),
        failed=len(results) - sum(results),
        errors=dict(errors),
        elapsed=time.monotonic() - started,
    )


async def tls_idle_role(spec: TlsIdleSpec, channel: Channel) -> None:
    contexts = [client_context(cert) for cert in spec.certs]
    tally = PingTally()
    clients = [
        IdleClient(f"{spec.client_prefix}-{i}", spec.keepalive, tally)
        for i in range(len(spec.certs))
    ]
    channel.send(await _connect_tls(clients, contexts, spec.host, spec.port, spec.concurrency))
    await workers.serve_pings(clients, tally, channel)


workers.ASYNC_ROLES[HandshakeSpec] = handshake_role
workers.ASYNC_ROLES[TlsIdleSpec] = tls_idle_role
