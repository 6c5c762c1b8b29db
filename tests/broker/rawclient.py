"""A small blocking MQTT 3.1.1 client over a raw socket, for checking exact protocol behaviour.

paho hides what these tests look at: the DUP flag and packet id of a retransmission, a resent
PUBREL, the CONNACK return code, whether the broker closed the connection after bad input.
``RawClient`` sends packets (or arbitrary bytes) built with ``broker.codec`` and reads the
broker's packets back with bounded waits. ``ClientPool`` owns every client a test opens and
closes them at teardown, so no paho loop thread keeps reconnecting and no socket leaks.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from broker import codec
from broker.codec import (
    ConnAck,
    Connect,
    Packet,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Will,
)
from tests.harness import PahoClient, Received, RunningBroker

P = TypeVar("P")
StartBroker = Callable[..., RunningBroker]


class ConnectionClosed(Exception):
    """The broker closed the connection while a packet was expected."""


class RawClient:
    """One TCP connection speaking MQTT through ``broker.codec``; every wait is bounded."""

    def __init__(
        self,
        port: int,
        *,
        host: str = "127.0.0.1",
        rcvbuf: int | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Set before connect so the advertised TCP window is small from the start.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        # Every send() goes out as it is: tests that split packets mean the split.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self._buf = bytearray()

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def local_port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def send(self, packet: Packet | bytes) -> None:
        data = packet if isinstance(packet, bytes | bytearray) else codec.encode_packet(packet)
        self.sock.sendall(data)

    def try_send(self, data: Packet | bytes) -> bool:
        """Send, returning False instead of raising when the broker already closed the socket."""
        try:
            self.send(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def _take_packet(self) -> Packet | None:
        found = codec.split_packet(self._buf, 0)
        if found is None:
            return None
        first, start, stop = found
        packet = codec.decode_packet(first, bytes(self._buf[start:stop]))
        del self._buf[:stop]
        return packet

    def _read(self, deadline: float) -> bytes:
        """One recv() with the time left; b"" when the peer closed, TimeoutError at deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("nothing received in time")
        self.sock.settimeout(left)
        try:
            return self.sock.recv(65536)
        except ConnectionResetError:
            return b""
        except TimeoutError:
            raise TimeoutError("nothing received in time") from None

    def recv_packet(self, timeout: float = 5.0) -> Packet:
        """The next packet from the broker; ConnectionClosed if it closes, TimeoutError if not."""
        deadline = time.monotonic() + timeout
        while True:
            packet = self._take_packet()
            if packet is not None:
                return packet
            data = self._read(deadline)
            if not data:
                raise ConnectionClosed("the broker closed the connection")
            self._buf += data

    def recv(self, kind: type[P], timeout: float = 5.0) -> P:
        """The next packet, which must be a ``kind``."""
        packet = self.recv_packet(timeout)
        assert isinstance(packet, kind), f"expected {kind.__name__}, got {packet!r}"
        return packet

    def expect_closed(self, timeout: float = 5.0, *, drain: bool = False) -> float:
        """Wait until the broker closes the connection; returns the seconds it took.

        Without ``drain`` any packet arriving first fails the test; with it, output that was
        already on its way (a slow reader's backlog) is read and thrown away.
        """
        start = time.monotonic()
        deadline = start + timeout
        while True:
            if not drain:
                packet = self._take_packet()
                assert packet is None, f"expected the connection closed, got {packet!r}"
            try:
                data = self._read(deadline)
            except TimeoutError:
                raise AssertionError(f"connection still open after {timeout} s") from None
            if not data:
                return time.monotonic() - start
            if drain:
                self._buf.clear()
            else:
                self._buf += data

    def expect_nothing(self, within: float = 0.3) -> None:
        """No packet arrives (and the connection stays open) for ``within`` seconds."""
        packet = self._take_packet()
        assert packet is None, f"unexpected {packet!r}"
        deadline = time.monotonic() + within
        while True:
            try:
                data = self._read(deadline)
            except TimeoutError:
                return
            assert data, "the broker closed the connection"
            self._buf += data
            packet = self._take_packet()
            assert packet is None, f"unexpected {packet!r}"

    def close(self) -> None:
        self.sock.close()

    def abort(self) -> None:
        """Close with a TCP reset, as a crashed client or a broken network would."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    # -- MQTT conversations ------------------------------------------------------------------

    def connect(
        self,
        client_id: str,
        *,
        clean: bool = True,
        keep_alive: int = 0,
        will: Will | None = None,
        username: str | None = None,
        password: bytes | None = None,
        timeout: float = 5.0,
    ) -> ConnAck:
        self.send(Connect(client_id, clean, keep_alive, codec.MQTT_311, will, username, password))
        return self.recv(ConnAck, timeout)

    def subscribe(self, *topics: tuple[str, int], packet_id: int = 1) -> list[int]:
        """SUBSCRIBE and return the SUBACK's return codes (the SUBACK must come first)."""
        self.send(Subscribe(packet_id, list(topics)))
        suback = self.recv(SubAck)
        assert suback.packet_id == packet_id
        return suback.return_codes

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        *,
        packet_id: int | None = None,
        retain: bool = False,
        dup: bool = False,
    ) -> None:
        """PUBLISH and complete the QoS 1/2 handshake from the sender's side."""
        if qos and packet_id is None:
            packet_id = 1
        self.send(Publish(topic, payload, qos, retain, dup, packet_id if qos else None))
        if qos == 1:
            assert self.recv(PubAck) == PubAck(packet_id or 0)
        elif qos == 2:
            assert self.recv(PubRec) == PubRec(packet_id or 0)
            self.send(PubRel(packet_id or 0))
            assert self.recv(PubComp) == PubComp(packet_id or 0)

    def recv_publish(self, timeout: float = 5.0) -> Publish:
        return self.recv(Publish, timeout)

    def ping(self) -> None:
        self.send(codec.PINGREQ)
        assert isinstance(self.recv_packet(), codec.PingResp)

    def disconnect(self) -> None:
        self.try_send(codec.DISCONNECT)
        self.close()


class ClientPool:
    """Every paho and raw client of one test; ``close()`` ends them all (for teardown)."""

    def __init__(self) -> None:
        self._paho: list[PahoClient] = []
        self._raw: list[RawClient] = []

    def paho(self, port: int, client_id: str, **kwargs: Any) -> PahoClient:
        """A paho client, not yet connected."""
        client = PahoClient(port, client_id, **kwargs)
        # paho's loop thread reconnects by itself after a lost connection, which would take the
        # client id back from the next connection in takeover tests; there is no public setter.
        client.client._reconnect_on_failure = False
        self._paho.append(client)
        return client

    def connected(self, port: int, client_id: str, **kwargs: Any) -> PahoClient:
        """A paho client that got a CONNACK accepting it."""
        client = self.paho(port, client_id, **kwargs)
        _, rc = client.connect()
        assert rc == 0, f"{client_id} refused with {rc}"
        return client

    def raw(self, port: int, **kwargs: Any) -> RawClient:
        client = RawClient(port, **kwargs)
        self._raw.append(client)
        return client

    def close(self) -> None:
        for client in self._paho:
            # DISCONNECT first: the loop thread then ends at once instead of in its next select.
            with contextlib.suppress(Exception):
                client.client.disconnect()
            with contextlib.suppress(Exception):
                client.client.loop_stop()
            with contextlib.suppress(Exception):
                sock = client.client.socket()
                if sock is not None:
                    sock.close()
        for raw in self._raw:
            raw.close()


def drop(client: PahoClient) -> None:
    """End a paho connection without DISCONNECT, as a network failure would.

    Shutting the socket down wakes paho's loop thread at once (``PahoClient.drop`` waits for
    its next one-second select), and the broker sees a plain EOF.
    """
    sock = client.client.socket()
    assert sock is not None
    sock.shutdown(socket.SHUT_RDWR)
    client.client.loop_stop()


@contextlib.contextmanager
def client_pool() -> Iterator[ClientPool]:
    pool = ClientPool()
    try:
        yield pool
    finally:
        pool.close()


def wait_for(
    predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01, what: str = ""
) -> Any:
    """Poll ``predicate`` (e.g. a broker counter) until truthy; AssertionError at the timeout.

    For state that has no event to wait on, such as a stats counter that another thread bumps.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def drain_messages(client: PahoClient, count: int, timeout: float = 5.0) -> list[Received]:
    """Exactly ``count`` messages, each within ``timeout``."""
    out = []
    for _ in range(count):
        try:
            out.append(client.messages.get(timeout=timeout))
        except queue.Empty:
            raise AssertionError(f"got {len(out)} of {count} messages") from None
    return out


def wait_offline(broker: RunningBroker, client_id: str, timeout: float = 5.0) -> None:
    """Wait until the broker has detached ``client_id``'s session from its closed connection.

    A DISCONNECT or a closed socket is handled on the broker's loop some time after the client
    returns; a test that means "publish while the client is offline" waits for this first.
    """

    def offline() -> bool:
        session = broker.broker.sessions.get(client_id)
        return session is None or session.connection is None

    wait_for(lambda: broker.call(offline), timeout, what=f"{client_id} offline")


def assert_serves(clients: ClientPool, port: int, name: str) -> None:
    """Fresh clients can still connect, subscribe, publish and receive (after some abuse)."""
    sub = clients.raw(port)
    assert sub.connect(f"{name}-check-sub").return_code == 0
    assert sub.subscribe((f"{name}/check", 1), packet_id=99) == [1]
    pub = clients.raw(port)
    assert pub.connect(f"{name}-check-pub").return_code == 0
    pub.publish(f"{name}/check", b"ok", qos=1, packet_id=98)
    assert sub.recv_publish().payload == b"ok"
