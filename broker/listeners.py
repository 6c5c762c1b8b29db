"""Network listeners: plain TCP and TLS, each creating a ``Connection`` per client.

The TLS listener accepts TCP itself and runs each handshake with
``loop.connect_accepted_socket``, taking the server context from a ``TlsContextSource`` for
every new connection. That buys two things
the one-context-per-server API cannot: the trusted CAs can change while the server runs (a CA
or self-signed device certificate registered with the CLI is trusted by the next handshake),
and a failed handshake is ours to log, with the peer and OpenSSL's reason, instead of being
swallowed by the event loop.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from broker.connection import Connection
from thingcore.errors import ConfigError

if TYPE_CHECKING:
    from broker.server import Broker

# X509_V_FLAG_NO_CHECK_TIME (OpenSSL >= 1.1.0): the handshake accepts an expired or
# not-yet-valid client certificate, so the broker can refuse it at CONNECT with a log line that
# names the certificate and says why, rather than with an anonymous TLS alert.
VERIFY_NO_CHECK_TIME = 0x200000


class TlsContextSource(Protocol):
    def current(self) -> ssl.SSLContext:
        """The context for the next handshake."""


class StaticTlsContext:
    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context

    def current(self) -> ssl.SSLContext:
        return self.context


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    name: str
    host: str
    port: int
    tls: TlsContextSource | None = None


def server_ssl_context(
    certfile: Path,
    keyfile: Path | None = None,
    client_cafile: Path | None = None,
    *,
    client_cadata: str | None = None,
    check_client_time: bool = True,
    session_tickets: int | None = None,
) -> ssl.SSLContext:
    """A TLS 1.2+ server context; with client CAs (file or PEM data) a client certificate is
    required. ``check_client_time=False`` leaves validity dates to the authentication hook."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if session_tickets is not None:
        context.num_tickets = session_tickets
    try:
        context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
        if client_cafile is not None:
            context.load_verify_locations(cafile=str(client_cafile))
        if client_cadata:
            context.load_verify_locations(cadata=client_cadata)
        if client_cafile is not None or client_cadata:
            context.verify_mode = ssl.CERT_REQUIRED
            if not check_client_time:
                context.verify_flags |= VERIFY_NO_CHECK_TIME
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load TLS certificate or key ({certfile}, {keyfile}, {client_cafile}): {exc}"
        ) from exc
    return context


class TlsServer:
    """A listening socket whose accepted connections each get the then-current TLS context.

    ``loop.connect_accepted_socket`` runs the handshake and reports its failure to us; an
    acceptor protocol with ``start_tls`` cannot be used because uvloop starts reading before
    the protocol could pause it, so a ClientHello would be lost.
    """

    def __init__(self, broker: Broker, name: str, source: TlsContextSource, sock: socket.socket):
        self.broker = broker
        self.name = name
        self.source = source
        self.sockets = [sock]
        self._sock = sock
        self._closed = False
        broker.loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, _addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: log, keep listening
                self.broker.log.warning("accept", "accepting a TLS connection failed: %s", exc)
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.broker.spawn_handshake(self._handshake(conn))

    async def _handshake(self, sock: socket.socket) -> None:
        broker = self.broker
        try:
            peer = sock.getpeername()
            where = f"{peer[0]}:{peer[1]}"
        except OSError:
            where = "?"
        try:
            await broker.loop.connect_accepted_socket(
                lambda: Connection(broker, self.name, True),
                sock,
                ssl=self.source.current(),
                ssl_handshake_timeout=broker.settings.connect_timeout,
                # A closed connection waits for the client's close_notify only this long: a
                # device that no longer reads (say, one just revoked) is gone at once.
                ssl_shutdown_timeout=broker.settings.tls_shutdown_timeout,
            )
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            broker.stats.tls_handshake_failures += 1
            broker.log.warning(
                "tls_handshake", "TLS handshake with %s failed: %s", where, _handshake_reason(exc)
            )
            sock.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.broker.loop.remove_reader(self._sock.fileno())
            self._sock.close()

    async def wait_closed(self) -> None:
        return None


_ACCEPT_BATCH = 64


def _handshake_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no handshake within connect_timeout"
    if isinstance(exc, ssl.SSLCertVerificationError):
        hint = ""
        if "unable to get local issuer" in str(exc) or "unknown ca" in str(exc).lower():
            hint = " (the client certificate is not signed by a registered CA)"
        return f"client certificate refused: {exc.verify_message}{hint}"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
            return "the client sent no certificate; this listener requires one"
        return reason
    return str(exc) or type(exc).__name__


class Listener(Protocol):
    @property
    def sockets(self) -> Any: ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


async def start_listener(broker: Broker, spec: ListenerSpec) -> Listener:
    loop = asyncio.get_running_loop()
    source = spec.tls
    try:
        if source is None:
            return await loop.create_server(
                lambda: Connection(broker, spec.name, False),
                spec.host,
                spec.port,
                backlog=4096,
                reuse_address=True,
            )
        infos = await loop.getaddrinfo(
            spec.host, spec.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _name, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(4096)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return TlsServer(broker, spec.name, source, sock)
    except OSError as exc:
        variable = "TLS_PORT" if source is not None else "PORT"
        raise ConfigError(
            f"cannot listen on {spec.host}:{spec.port} for {spec.name} ({exc.strerror}); "
            f"is another broker using that port? Choose another with THINGCORE_BROKER__{variable}"
        ) from exc
