"""One client connection: bytes in, packets dispatched synchronously, bytes out batched.

``data_received`` parses every complete packet in what arrived and handles each with a plain
call (no coroutine or task per packet). Outgoing packets are appended to a list that the broker
joins and writes once per event-loop pass for every connection that has output (DESIGN.md:
the write syscall was half the cost per message). MQTT 3.1.1 has no way to report most errors,
so a malformed packet or a protocol violation closes the connection [4.8]; each is counted and
logged at a bounded rate.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from typing import TYPE_CHECKING, cast

from broker import codec
from broker.auth import ConnectionInfo, Identity
from broker.codec import (
    MQTT_311,
    ConnectReturnCode,
    MalformedPacket,
    PacketType,
    UnsupportedProtocol,
)
from broker.message import Message
from broker.topics import TopicError, parse_shared, validate_topic_filter, validate_topic_name

if TYPE_CHECKING:
    from broker.server import Broker
    from broker.session import Session

_PUBLISH = PacketType.PUBLISH
_PINGRESP = codec.PINGRESP
_ACKS = frozenset((0x40, 0x50, 0x62, 0x70))  # first bytes of well-formed PUBACK..PUBCOMP


class ProtocolViolation(Exception):
    """A well-formed packet the client was not allowed to send now; closes the connection."""


class Connection(asyncio.Protocol):
    """The MQTT protocol state machine of one network connection."""

    __slots__ = (
        "_pending",
        "_pending_need",
        "_closing",
        "_out",
        "broker",
        "congested_since",
        "connected_at",
        "disconnect_reason",
        "graceful",
        "keep_alive",
        "last_activity",
        "listener",
        "peer",
        "peer_certificate",
        "session",
        "tls",
        "transport",
        "version",
        "will",
    )

    def __init__(self, broker: Broker, listener: str, tls: bool) -> None:
        self.broker = broker
        self.listener = listener
        self.tls = tls
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.version = MQTT_311
        self.keep_alive = 0
        self.will: Message | None = None
        self.graceful = False
        self.disconnect_reason = "CONNECTION_LOST"
        self.peer: tuple[str, int] | None = None
        self.peer_certificate: bytes | None = None
        self._pending = bytearray()
        self._pending_need = 0
        self._out: list[bytes] = []
        self._closing = False
        self.connected_at = 0.0
        self.last_activity = 0.0
        self.congested_since: float | None = None
        """When the transport's buffer went over ``max_output_buffer`` (None: it is not)."""

    # -- asyncio callbacks -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Stream servers give stream transports (uvloop's do not subclass asyncio.Transport).
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = (str(peer[0]), int(peer[1]))
        if self.tls:
            ssl_object = transport.get_extra_info("ssl_object")
            if isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
                self.peer_certificate = ssl_object.getpeercert(binary_form=True)
        self.connected_at = self.last_activity = self.broker.loop.time()
        limit = self.broker.settings.max_output_buffer
        transport.set_write_buffer_limits(high=limit, low=limit // 4)
        self.broker.connection_made(self)

    def pause_writing(self) -> None:
        # The client reads slower than we write: stop adding to its buffer (QoS 0 deliveries
        # are dropped, QoS 1/2 wait in the session queue) until it drains or times out.
        self.congested_since = self.broker.loop.time()

    def resume_writing(self) -> None:
        self.congested_since = None
        if self.session is not None and self.session.queue:
            self.session.fill_window()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._out.clear()
        self.broker.connection_lost(self)
        self.transport = None

    def eof_received(self) -> bool | None:
        return None  # close our side too; half-open MQTT connections have no use

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self.last_activity = self.broker.loop.time()
        pending = self._pending
        if pending:
            # Accumulate until the packet we wait for is complete (appends are amortised, so
            # a large packet arriving in many reads costs linear time), then convert once so
            # the parse view is ``bytes`` and every field below is sliced with one copy.
            pending += data
            if len(pending) < self._pending_need:
                return
            view = bytes(pending)
            pending.clear()
        else:
            view = data
        pos = 0
        end = len(view)
        max_size = self.broker.settings.max_packet_size
        split = codec.split_packet
        try:
            while pos < end:
                found = split(view, pos)
                if found is None:
                    declared = codec.peek_remaining_length(view, pos)
                    if declared is not None and codec.packet_size(declared) > max_size:
                        self._oversize(codec.packet_size(declared))
                        return
                    # Header incomplete: wait for any more bytes; else for the whole packet.
                    self._pending_need = 0 if declared is None else declared + 2
                    break
                first, start, stop = found
                if stop - pos > max_size:
                    self._oversize(stop - pos)
                    return
                session = self.session
                if session is None:
                    self._on_packet(first, bytes(view[start:stop]))
                elif first >> 4 == _PUBLISH:
                    self._on_publish(first, view, pos, start, stop)
                elif stop - start == 2 and first in _ACKS and (view[start] or view[start + 1]):
                    # PUBACK/PUBREC/PUBREL/PUBCOMP, well formed: handled without building a
                    # packet object (one per QoS 1/2 message). Anything else takes the codec.
                    pid = (view[start] << 8) | view[start + 1]
                    if first == 0x40:
                        session.on_puback(pid)
                    elif first == 0x50:
                        session.on_pubrec(pid)
                        self.write(codec.encode_pubrel(pid))
                    elif first == 0x62:
                        session.inbound_qos2.discard(pid)
                        self.write(codec.encode_pubcomp(pid))
                    else:
                        session.on_pubcomp(pid)
                elif first == 0xC0 and stop == start:
                    self.write(_PINGRESP)
                else:
                    self._on_packet(first, bytes(view[start:stop]))
                pos = stop
                if self._closing:
                    return
        except UnsupportedProtocol as exc:
            if self.session is not None:
                # [3.1.0-2] a second CONNECT is a protocol violation, whatever its level.
                self.broker.stats.protocol_violations += 1
                self._drop("protocol", f"protocol violation: second CONNECT ({exc})")
                return
            # [3.1.2-2] answer with return code 1, then close.
            self.broker.stats.connections_refused += 1
            self.broker.log.warning("protocol_level", "client %s: %s", self.describe(), exc)
            self.write(codec.encode_connack(False, ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION))
            self.close("CLIENT_ERROR")
            return
        except MalformedPacket as exc:
            self.broker.stats.malformed_packets += 1
            self._drop("malformed", f"malformed packet: {exc}")
            return
        except ProtocolViolation as exc:
            self.broker.stats.protocol_violations += 1
            self._drop("protocol", f"protocol violation: {exc}")
            return
        except TopicError as exc:
            self.broker.stats.protocol_violations += 1
            self._drop("topic", f"invalid topic: {exc}")
            return
        if pos < end:
            pending += view[pos:]

    # -- output ----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._closing:
            return
        out = self._out
        if not out:
            self.broker.mark_dirty(self)
        out.append(data)

    def flush(self) -> None:
        """Write everything appended since the last pass in one call (the broker calls this)."""
        out = self._out
        transport = self.transport
        if not out or transport is None:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        transport.write(data)

    def send_publish(
        self,
        message: Message,
        qos: int,
        pid: int,
        retain: bool,
        dup: bool,
        identifiers: tuple[int, ...] = (),
    ) -> None:
        if self._closing:
            return
        out = self._out
        if not out:
            self.broker.mark_dirty(self)
        if qos == 0:
            raw = message.raw_qos0
            if raw is not None and not retain:
                out.append(raw)
                return
            out.append(message.wire_head(0, retain))
        else:
            out.append(message.wire_head(qos, retain, dup))
            out.append(pid.to_bytes(2, "big"))
        out.append(message.payload)

    def send_pubrel(self, pid: int) -> None:
        self.write(codec.encode_pubrel(pid))

    # -- closing ---------------------------------------------------------------------------

    def close(self, reason: str = "SERVER_INITIATED_DISCONNECT") -> None:
        """Flush what is pending and close; the will is published unless DISCONNECT was sent."""
        if self._closing or self.transport is None:
            return
        self.disconnect_reason = reason
        self.flush()
        self._closing = True
        self.transport.close()

    def abort(self, reason: str) -> None:
        if self.transport is None:
            return
        self.disconnect_reason = reason
        self._closing = True
        self._out.clear()
        self.transport.abort()

    def _drop(self, kind: str, why: str) -> None:
        self.broker.log.warning(kind, "closing the connection of %s: %s", self.describe(), why)
        self.abort("CLIENT_ERROR")

    def _oversize(self, size: int) -> None:
        self.broker.stats.oversize_packets += 1
        self.broker.log.warning(
            "oversize",
            "client %s sent a %d-byte packet; the limit is %d (max_packet_size)",
            self.describe(),
            size,
            self.broker.settings.max_packet_size,
        )
        self.abort("CLIENT_ERROR")

    def describe(self) -> str:
        who = self.session.client_id if self.session is not None else "(before CONNECT)"
        where = f"{self.peer[0]}:{self.peer[1]}" if self.peer else "?"
        return f"{who!r} at {where}"

    # -- packets ---------------------------------------------------------------------------

    def _on_publish(self, first: int, view: bytes, pos: int, start: int, stop: int) -> None:
        """Handle a PUBLISH; the hot path, so it decodes in place instead of via the codec."""
        broker = self.broker
        broker.stats.messages_received += 1
        qos = (first >> 1) & 3
        if qos == 3:
            raise MalformedPacket("PUBLISH with QoS 3 [3.3.1-4]")
        if qos == 0 and first & 8:
            raise MalformedPacket("PUBLISH with DUP set at QoS 0 [3.3.1-2]")
        if stop - start < 2:
            raise MalformedPacket("PUBLISH ends before its topic name")
        tstart = start + 2
        tend = tstart + ((view[start] << 8) | view[start + 1])
        if tend > stop:
            raise MalformedPacket("PUBLISH ends inside its topic name")
        topic_bytes = bytes(view[tstart:tend])
        topic = broker.topic_cache.get(topic_bytes)
        if topic is None:
            topic = codec.decode_utf8(topic_bytes)
            validate_topic_name(topic, broker.topic_limits)
            broker.remember_topic(topic_bytes, topic)
        retain = bool(first & 1)
        session = self.session
        assert session is not None  # noqa: S101 - checked by data_received
        if qos:
            if tend + 2 > stop:
                raise MalformedPacket("PUBLISH ends inside its packet identifier")
            pid = (view[tend] << 8) | view[tend + 1]
            if pid == 0:
                raise MalformedPacket("packet identifier 0 is not allowed [2.3.1-1]")
            payload = bytes(view[tend + 2 : stop])
            raw = None
        else:
            pid = 0
            payload = bytes(view[tend:stop])
            # A received QoS 0 non-retained PUBLISH is already the packet to forward.
            raw = None if retain else bytes(view[pos:stop])
        identity = session.identity
        allowed = broker.hooks.may_publish(identity, topic, retain)
        if qos == 2:
            if pid in session.inbound_qos2:
                # A retransmission of a message we already routed: acknowledge only [4.3.3].
                self.write(codec.encode_pubrec(pid))
                return
            if len(session.inbound_qos2) >= broker.settings.max_inbound_qos2:
                raise ProtocolViolation(
                    f"more than {broker.settings.max_inbound_qos2} QoS 2 messages awaiting PUBREL"
                )
        if allowed:
            message = Message(
                topic,
                payload,
                qos,
                retain,
                client_id=identity.client_id,
                principal=identity.principal,
                thing=identity.thing,
                topic_bytes=topic_bytes,
                raw_qos0=raw,
                received_at=broker.wall_clock(),
            )
            broker.publish(message)
        else:
            broker.stats.messages_dropped_not_authorized += 1
        if qos == 1:
            self.write(codec.encode_puback(pid))
        elif qos == 2:
            session.inbound_qos2.add(pid)
            self.write(codec.encode_pubrec(pid))

    def _on_packet(self, first: int, body: bytes) -> None:
        packet = codec.decode_packet(first, body, self.version)
        session = self.session
        if session is None:
            if not isinstance(packet, codec.Connect):
                raise ProtocolViolation(f"first packet is {type(packet).__name__}, not CONNECT")
            self._on_connect(packet)
            return
        match packet:
            case codec.PubAck(packet_id=pid):
                session.on_puback(pid)
            case codec.PubRec(packet_id=pid):
                session.on_pubrec(pid)
                self.write(codec.encode_pubrel(pid))
            case codec.PubRel(packet_id=pid):
                session.inbound_qos2.discard(pid)
                self.write(codec.encode_pubcomp(pid))
            case codec.PubComp(packet_id=pid):
                session.on_pubcomp(pid)
            case codec.PingReq():
                self.write(_PINGRESP)
            case codec.Subscribe():
                self._on_subscribe(packet)
            case codec.Unsubscribe():
                self._on_unsubscribe(packet)
            case codec.Disconnect():
                # [3.14.4] discard the will; close the connection.
                self.will = None
                self.graceful = True
                self.close("CLIENT_INITIATED_DISCONNECT")
            case codec.Publish():  # pragma: no cover - routed to _on_publish
                raise ProtocolViolation("unexpected PUBLISH dispatch")
            case _:
                raise ProtocolViolation(f"{type(packet).__name__} is sent by servers only")

    def _on_connect(self, connect: codec.Connect) -> None:
        broker = self.broker
        settings = broker.settings
        self.version = connect.protocol_level
        client_id = connect.client_id
        if not client_id:
            if not connect.clean_session:
                # [3.1.3-8] a zero-length id requires a clean session.
                self._refuse(ConnectReturnCode.IDENTIFIER_REJECTED)
                return
            client_id = connect.client_id = f"auto-{uuid.uuid4().hex}"
        if len(client_id) > settings.max_client_id_length:
            self._refuse(ConnectReturnCode.IDENTIFIER_REJECTED)
            return
        if connect.will is not None:
            validate_topic_name(connect.will.topic, broker.topic_limits)
        info = ConnectionInfo(
            listener=self.listener,
            peer_address=self.peer[0] if self.peer else None,
            peer_port=self.peer[1] if self.peer else None,
            tls=self.tls,
            peer_certificate=self.peer_certificate,
        )
        verdict = broker.hooks.authenticate(info, connect)
        if not isinstance(verdict, Identity):
            self._refuse(verdict)
            return
        self.keep_alive = min(connect.keep_alive, settings.max_keepalive)
        if connect.will is not None:
            will = connect.will
            self.will = Message(
                will.topic,
                will.payload,
                will.qos,
                will.retain,
                client_id=client_id,
                principal=verdict.principal,
                thing=verdict.thing,
            )
        session, present = broker.attach(self, client_id, connect.clean_session, verdict)
        self.session = session
        self.write(codec.encode_connack(present, ConnectReturnCode.ACCEPTED))
        if present:
            session.resume()

    def _refuse(self, code: ConnectReturnCode) -> None:
        self.broker.stats.connections_refused += 1
        self.write(codec.encode_connack(False, code))
        self.close("AUTH_ERROR")

    def _on_subscribe(self, packet: codec.Subscribe) -> None:
        broker = self.broker
        session = self.session
        assert session is not None  # noqa: S101 - only called once connected
        codes: list[int] = []
        granted: list[tuple[str, int]] = []
        for topic_filter, requested in packet.topics:
            try:
                shared = parse_shared(topic_filter, broker.topic_limits)
                if shared is None:
                    validate_topic_filter(topic_filter, broker.topic_limits)
            except TopicError as exc:
                broker.log.warning(
                    "filter", "client %s: refused filter %r: %s", self.describe(), topic_filter, exc
                )
                codes.append(codec.SUBACK_FAILURE)
                continue
            if not broker.hooks.may_subscribe(session.identity, topic_filter) or (
                topic_filter not in session.subscriptions
                and len(session.subscriptions) >= broker.settings.max_subscriptions_per_client
            ):
                codes.append(codec.SUBACK_FAILURE)
                continue
            qos = min(requested, broker.settings.max_qos)
            broker.subscribe(session, topic_filter, qos)
            codes.append(qos)
            if shared is None:  # shared subscriptions get no retained messages
                granted.append((topic_filter, qos))
        self.write(codec.encode_suback(packet.packet_id, codes))
        # [3.3.1.3] retained messages follow the SUBACK, with RETAIN set.
        for topic_filter, qos in granted:
            for message in broker.retained.matching(topic_filter):
                session.deliver(message, qos, True)

    def _on_unsubscribe(self, packet: codec.Unsubscribe) -> None:
        session = self.session
        assert session is not None  # noqa: S101 - only called once connected
        for topic_filter in packet.topics:
            self.broker.unsubscribe(session, topic_filter)
        self.write(codec.encode_unsuback(packet.packet_id))
