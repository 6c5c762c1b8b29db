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
import math
import ssl
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from broker import codec, mqtt5
from broker.auth import ConnectionInfo, Identity
from broker.codec import (
    MQTT_5,
    MQTT_311,
    CodecError,
    ConnectReturnCode,
    MalformedPacket,
    PacketType,
    UnsupportedProtocol,
)
from broker.message import Message
from broker.properties import (
    Properties,
    application_properties,
    decode_properties,
    encode_message_expiry_interval,
    encode_subscription_identifiers,
    encode_topic_alias,
    read_varint,
)
from broker.reason_codes import ReasonCode
from broker.router import pack_options
from broker.topics import TopicError, parse_shared, validate_topic_filter, validate_topic_name

if TYPE_CHECKING:
    from broker.server import Broker
    from broker.session import Session

_PUBLISH = PacketType.PUBLISH
_PINGRESP = codec.PINGRESP
_ACKS = frozenset((0x40, 0x50, 0x62, 0x70))  # first bytes of well-formed PUBACK..PUBCOMP
_NO_ALIASES_IN: dict[int, str] = {}
_NO_ALIASES_OUT: dict[str, int] = {}


class ProtocolViolation(Exception):
    """A well-formed packet the client was not allowed to send now; closes the connection."""

    def __init__(self, message: str, reason_code: int = ReasonCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class Connection(asyncio.Protocol):
    """The MQTT protocol state machine of one network connection."""

    __slots__ = (
        "_pending",
        "_pending_need",
        "aliases_in",
        "aliases_out",
        "limits",
        "_closing",
        "_held_acks",
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
        self._held_acks: deque[tuple[asyncio.Future[Any] | None, bytes]] | None = None
        """Acknowledgements waiting for a service (rules outbox commit), in PUBLISH order."""
        self._closing = False
        self.connected_at = 0.0
        self.last_activity = 0.0
        self.congested_since: float | None = None
        self.limits: mqtt5.ClientLimits | None = None
        """What an MQTT 5 client asked for in CONNECT (None for 3.1.1)."""
        # Shared empty tables until an MQTT 5 CONNECT gives the connection its own: only v5
        # code touches them, and 10,000 idle 3.1.1 clients should not carry two dicts each.
        self.aliases_in: dict[int, str] = _NO_ALIASES_IN
        self.aliases_out: dict[str, int] = _NO_ALIASES_OUT
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
                    if self.version == MQTT_5:
                        self._on_publish_v5(first, view[start:stop])
                    else:
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
            self._drop("malformed", f"malformed packet: {exc}", exc.reason_code)
            return
        except (ProtocolViolation, CodecError) as exc:
            self.broker.stats.protocol_violations += 1
            code = getattr(exc, "reason_code", ReasonCode.PROTOCOL_ERROR)
            self._drop("protocol", f"protocol violation: {exc}", code)
            return
        except TopicError as exc:
            self.broker.stats.protocol_violations += 1
            self._drop("topic", f"invalid topic: {exc}", ReasonCode.TOPIC_NAME_INVALID)
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
    ) -> bool:
        """Queue a PUBLISH for this pass's write; False when it is not sent at all."""
        if self._closing:
            return True  # the session keeps it in flight for the next connection
        if self.limits is not None:
            return self._send_publish_v5(message, qos, pid, retain, dup, identifiers)
        out = self._out
        if not out:
            self.broker.mark_dirty(self)
        if qos == 0:
            raw = message.raw_qos0
            if raw is not None and not retain:
                out.append(raw)
                return True
            out.append(message.wire_head(0, retain))
        else:
            out.append(message.wire_head(qos, retain, dup))
            out.append(pid.to_bytes(2, "big"))
        out.append(message.payload)
        return True

    def _send_publish_v5(
        self,
        message: Message,
        qos: int,
        pid: int,
        retain: bool,
        dup: bool,
        identifiers: tuple[int, ...],
    ) -> bool:
        limits = self.limits
        assert limits is not None  # noqa: S101 - only called for MQTT 5 connections
        parts = [message.v5_properties()]
        if message.expires_at is not None:
            # [3.3.2.3.3] forward the expiry minus the time the message spent waiting.
            # Onward delivery starts now, so the message goes out even if its lifetime just
            # ran out (an interval of 0); queued and retained copies are checked before.
            remaining = max(0, math.ceil(message.expires_at - time.time()))
            parts.append(encode_message_expiry_interval(remaining))
        if identifiers:
            parts.append(encode_subscription_identifiers(identifiers))
        topic = message.topic_bytes
        alias = self.aliases_out.get(message.topic)
        new_alias = 0
        if alias is None and len(self.aliases_out) < limits.topic_alias_maximum:
            new_alias = len(self.aliases_out) + 1
        if alias is not None:
            parts.append(encode_topic_alias(alias))
            topic = b""  # [3.3.2.3.4] the alias alone names the topic
        elif new_alias:
            parts.append(encode_topic_alias(new_alias))
        head, props = codec.publish_v5_parts(
            topic, len(message.payload), qos, retain, dup, b"".join(parts)
        )
        size = len(head) + len(props) + len(message.payload) + (2 if qos else 0)
        if limits.maximum_packet_size is not None and size > limits.maximum_packet_size:
            # [3.1.2-25] a message too large for the client is dropped, not sent.
            self.broker.stats.messages_dropped_too_large += 1
            return False
        if new_alias:
            self.aliases_out[message.topic] = new_alias
        out = self._out
        if not out:
            self.broker.mark_dirty(self)
        out.append(head)
        if qos:
            out.append(pid.to_bytes(2, "big"))
        out.append(props)
        out.append(message.payload)
        return True

    def send_pubrel(self, pid: int) -> None:
        self.write(codec.encode_pubrel(pid))

    def send_disconnect(self, reason_code: int, reason: str | None = None) -> None:
        """An MQTT 5 server DISCONNECT [3.14]; 3.1.1 has none, so nothing is sent there."""
        limits = self.limits
        if limits is None:
            return
        props = mqtt5.disconnect_properties(reason, limits.problem_information)
        packet = codec.encode_disconnect_v5(reason_code, props)
        if limits.maximum_packet_size is not None and len(packet) > limits.maximum_packet_size:
            # [3.14.2-3] the reason string is dropped rather than exceed the client's maximum.
            packet = codec.encode_disconnect_v5(reason_code, None)
        self.write(packet)

    # -- closing ---------------------------------------------------------------------------

    def close(
        self,
        reason: str = "SERVER_INITIATED_DISCONNECT",
        reason_code: int | None = None,
        why: str | None = None,
    ) -> None:
        """Flush what is pending and close; the will is published unless DISCONNECT was sent.

        With ``reason_code``, an MQTT 5 client is told why in a DISCONNECT first.
        """
        if self._closing or self.transport is None:
            return
        if reason_code is not None and self.session is not None:
            self.send_disconnect(reason_code, why)
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

    def _drop(self, kind: str, why: str, reason_code: int | None = None) -> None:
        self.broker.log.warning(kind, "closing the connection of %s: %s", self.describe(), why)
        if self.limits is not None and reason_code is not None:
            # MQTT 5 can say why [4.13.1]; stop reading and close after the DISCONNECT.
            self.close("CLIENT_ERROR", reason_code, why)
            return
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
        if self.limits is not None:
            self.close("CLIENT_ERROR", ReasonCode.PACKET_TOO_LARGE, "packet too large")
            return
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
        qos, tend, pid, after = _publish_header(first, view, start, stop)
        topic_bytes = view[start + 2 : tend]
        topic = self._topic(topic_bytes)
        retain = bool(first & 1)
        session = self.session
        assert session is not None  # noqa: S101 - checked by data_received
        payload = view[after:stop]
        # A received QoS 0 non-retained PUBLISH is already the packet to forward.
        raw = view[pos:stop] if not qos and not retain else None
        identity = session.identity
        allowed = broker.hooks.may_publish(identity, topic, retain)
        if qos == 2 and self._repeated_qos2(session, pid):
            self.write(codec.encode_pubrec(pid))
            return
        if not allowed:
            # AWS closes a 3.1.1 connection that publishes where its policy does not allow
            # (reference 4.4): 3.1.1 has no way to refuse a single PUBLISH.
            broker.stats.messages_dropped_not_authorized += 1
            broker.log.warning(
                "publish_denied",
                "closing the connection of %s: not authorized to publish to %r",
                self.describe(),
                topic,
            )
            self.abort("AUTH_ERROR")
            return
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
        holds = broker.ack_holds
        if holds is not None:
            broker.ack_holds = None
        if qos == 1:
            self._ack(codec.encode_puback(pid), holds)
        elif qos == 2:
            session.inbound_qos2.add(pid)
            self._ack(codec.encode_pubrec(pid), holds)

    def _topic(self, topic_bytes: bytes) -> str:
        """The topic name in a PUBLISH, validated once and then found in the broker's cache."""
        broker = self.broker
        topic = broker.topic_cache.get(topic_bytes)
        if topic is None:
            topic = codec.decode_utf8(topic_bytes)
            validate_topic_name(topic, broker.topic_limits)
            broker.remember_topic(topic_bytes, topic)
        return topic

    def _repeated_qos2(self, session: Session, pid: int) -> bool:
        """True for a retransmission of a QoS 2 message already routed (acknowledge only
        [4.3.3]); raises when the client has more awaiting PUBREL than we allow."""
        if pid in session.inbound_qos2:
            return True
        limit = self.broker.settings.max_inbound_qos2
        if len(session.inbound_qos2) >= limit:
            # [3.3.4-9] MQTT 5 calls this exceeding our Receive Maximum.
            raise ProtocolViolation(
                f"more than {limit} QoS 2 messages awaiting PUBREL",
                ReasonCode.RECEIVE_MAXIMUM_EXCEEDED,
            )
        return False

    def _on_publish_v5(self, first: int, body: bytes) -> None:
        """An MQTT 5 PUBLISH: properties, topic aliases and reason codes in the acks.

        Parsed in place like 3.1.1's; a property block is validated once and then found by its
        bytes in a cache (devices send the same content type and user properties again and
        again), and forwarded as it arrived when it holds nothing that changes per hop.
        """
        broker = self.broker
        settings = broker.settings
        broker.stats.messages_received += 1
        n = len(body)
        qos, tend, pid, pos = _publish_header(first, body, 0, n)
        if pos >= n:
            raise MalformedPacket("PUBLISH ends before its property length [3.3.2.3]")
        length = body[pos]
        if length < 0x80:
            begin = pos + 1
        else:
            length, begin = read_varint(body, pos, n)
        block_end = begin + length
        if block_end > n:
            raise MalformedPacket("PUBLISH properties run past the end of the packet")
        block = body[begin:block_end]
        cached = broker.property_cache.get(block)
        if cached is None:
            props = decode_properties(body, pos, PacketType.PUBLISH)[0]
            if props.subscription_identifiers:
                # [3.3.4-6] identifiers are the server's to send, never the client's.
                raise ProtocolViolation("a PUBLISH from a client carries a subscription identifier")
            cached = (props, application_properties(props))
            broker.remember_properties(block, cached)
        props, forwarded = cached
        payload = body[block_end:]
        alias = props.topic_alias
        topic_bytes = body[2:tend]
        topic = self._topic(topic_bytes) if topic_bytes else ""
        if not topic_bytes and alias is None:
            raise ProtocolViolation("PUBLISH without a topic name or a topic alias [3.3.2.1]")
        if alias is not None:
            if alias > settings.max_topic_alias:
                raise ProtocolViolation(
                    f"topic alias {alias} is above the maximum {settings.max_topic_alias}",
                    ReasonCode.TOPIC_ALIAS_INVALID,
                )
            if topic_bytes:
                self.aliases_in[alias] = topic  # [3.3.2.3.4] set or replace the mapping
            else:
                known = self.aliases_in.get(alias)
                if known is None:
                    raise ProtocolViolation(f"topic alias {alias} was never set")
                topic = known
        # Forward the block as it arrived unless it holds what changes per hop (alias, expiry).
        forwarded_wire = (
            block
            if forwarded is not None and alias is None and props.message_expiry_interval is None
            else None
        )
        session = self.session
        assert session is not None  # noqa: S101 - checked by data_received
        retain = bool(first & 1)
        if qos > settings.max_qos:
            # [3.2.2-11] above the Maximum QoS our CONNACK announced.
            raise ProtocolViolation(
                f"PUBLISH at QoS {qos} above the maximum {settings.max_qos}",
                ReasonCode.QOS_NOT_SUPPORTED,
            )
        if qos == 2 and self._repeated_qos2(session, pid):
            self.write(codec.encode_ack_v5(PacketType.PUBREC, pid))
            return
        reason: int = ReasonCode.SUCCESS
        if props.payload_format_indicator == 1:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                reason = ReasonCode.PAYLOAD_FORMAT_INVALID  # [3.3.2.3.2]
        identity = session.identity
        if reason == ReasonCode.SUCCESS:
            if broker.hooks.may_publish(identity, topic, retain):
                message = Message(
                    topic,
                    payload,
                    qos,
                    retain,
                    client_id=identity.client_id,
                    principal=identity.principal,
                    thing=identity.thing,
                    properties=forwarded,
                    received_at=broker.wall_clock(),
                    v5_properties=forwarded_wire,
                )
                if not broker.publish(message):
                    reason = ReasonCode.NO_MATCHING_SUBSCRIBERS
            else:
                broker.stats.messages_dropped_not_authorized += 1
                reason = ReasonCode.NOT_AUTHORIZED
        holds = broker.ack_holds
        if holds is not None:
            broker.ack_holds = None
        if qos == 1:
            self._ack(codec.encode_ack_v5(PacketType.PUBACK, pid, reason), holds)
        elif qos == 2:
            if reason < 0x80:
                session.inbound_qos2.add(pid)
            self._ack(codec.encode_ack_v5(PacketType.PUBREC, pid, reason), holds)

    def _ack(self, packet: bytes, holds: list[asyncio.Future[None]] | None) -> None:
        """Send a PUBACK/PUBREC now, or once ``holds`` are done; in the order of the PUBLISHes
        either way [4.6.0-2], so one held acknowledgement holds back those after it."""
        held = self._held_acks
        if holds is None and not held:
            self.write(packet)
            return
        if held is None:
            held = self._held_acks = deque()
        waiter: asyncio.Future[Any] | None = None
        if holds is not None:
            waiter = holds[0] if len(holds) == 1 else asyncio.gather(*holds)
        held.append((waiter, packet))
        if waiter is None or waiter.done():
            self._release_acks()
        else:
            waiter.add_done_callback(self._release_acks)

    def _release_acks(self, _: object = None) -> None:
        held = self._held_acks
        while held:
            waiter, packet = held[0]
            if waiter is not None and not waiter.done():
                return
            held.popleft()
            self.write(packet)

    def _on_packet(self, first: int, body: bytes) -> None:
        session = self.session
        if session is not None and first >> 4 == PacketType.CONNECT:
            # [3.1.0-2] whatever it contains, a second CONNECT is a protocol violation.
            raise ProtocolViolation("a second CONNECT on an established connection")
        packet = codec.decode_packet(first, body, self.version)
        if session is None:
            if not isinstance(packet, codec.Connect):
                raise ProtocolViolation(f"first packet is {type(packet).__name__}, not CONNECT")
            self._on_connect(packet)
            return
        match packet:
            case codec.PubAck(packet_id=pid):
                session.on_puback(pid)
            case codec.PubRec(packet_id=pid, reason_code=code):
                if code >= 0x80:
                    # [4.3.3] a PUBREC with an error ends the flow: no PUBREL follows.
                    session.on_pubrec_failed(pid)
                else:
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
                self._on_disconnect(packet)
            case codec.Auth():
                # [4.12.0-1] AUTH is only for a connection that named an authentication
                # method, and a CONNECT naming one was already refused with 0x8C (no enhanced
                # authentication methods are offered yet): here it is a protocol error.
                raise ProtocolViolation("AUTH without an authentication method in CONNECT")
            case codec.Publish():  # pragma: no cover - routed to _on_publish
                raise ProtocolViolation("unexpected PUBLISH dispatch")
            case _:
                raise ProtocolViolation(f"{type(packet).__name__} is sent by servers only")

    def _on_disconnect(self, packet: codec.Disconnect) -> None:
        session = self.session
        assert session is not None  # noqa: S101 - only called once connected
        if self.limits is not None:
            expiry = packet.properties.session_expiry_interval
            if expiry is not None:
                if session.expiry_interval == 0 and expiry != 0:
                    # [3.14.2-2] a session that was to end cannot be prolonged at DISCONNECT.
                    raise ProtocolViolation("DISCONNECT sets a session expiry after CONNECT's 0")
                session.expiry_interval = None if expiry == mqtt5.NEVER_EXPIRES else float(expiry)
        if packet.reason_code != ReasonCode.DISCONNECT_WITH_WILL_MESSAGE:
            # [3.14.4] discard the will; MQTT 5 reason 0x04 asks for it to be published.
            self.will = None
            self.graceful = True
        self.close("CLIENT_INITIATED_DISCONNECT")

    def _on_connect(self, connect: codec.Connect) -> None:
        broker = self.broker
        settings = broker.settings
        self.version = connect.protocol_level
        v5 = self.version == MQTT_5
        client_id = connect.client_id
        assigned = None
        if not client_id:
            if not connect.clean_session and not v5:
                # [3.1.3-8] a zero-length id requires a clean session (3.1.1 only).
                self._refuse(ConnectReturnCode.IDENTIFIER_REJECTED)
                return
            client_id = connect.client_id = assigned = f"auto-{uuid.uuid4().hex}"
        if len(client_id) > settings.max_client_id_length:
            self._refuse(ConnectReturnCode.IDENTIFIER_REJECTED)
            return
        if v5 and connect.properties.authentication_method is not None:
            self._refuse(ReasonCode.BAD_AUTHENTICATION_METHOD)
            return
        if v5 and connect.will is not None and connect.will.qos > settings.max_qos:
            self._refuse(ReasonCode.QOS_NOT_SUPPORTED)  # [3.2.2-12]
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
        # The certificate has done its job (the identity carries what policies need): at
        # thousands of TLS connections its bytes are worth dropping.
        self.peer_certificate = None
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
                properties=application_properties(will.properties) if v5 else None,
            )
        if v5:
            limits = self.limits = mqtt5.client_limits(connect)
            self.aliases_in = {}
            self.aliases_out = {}
            session, present = broker.attach(
                self, client_id, connect.clean_session, verdict, limits.session_expiry
            )
            session.receive_maximum = min(settings.max_inflight, limits.receive_maximum)
            props = mqtt5.connack_properties(
                settings,
                assigned_client_id=assigned,
                requested_keep_alive=connect.keep_alive,
                granted_keep_alive=self.keep_alive,
            )
            self.session = session
            self.write(codec.encode_connack_v5(present, ReasonCode.SUCCESS, props))
        else:
            session, present = broker.attach(self, client_id, connect.clean_session, verdict)
            session.receive_maximum = settings.max_inflight
            self.session = session
            self.write(codec.encode_connack(present, ConnectReturnCode.ACCEPTED))
        broker.lifecycle.connected(
            client_id, verdict.principal, self.peer[0] if self.peer is not None else None
        )
        if present:
            session.resume()

    def _refuse(self, code: int) -> None:
        self.broker.stats.connections_refused += 1
        if self.version == MQTT_5:
            self.write(codec.encode_connack_v5(False, mqtt5.refusal_reason(code), Properties()))
        else:
            self.write(codec.encode_connack(False, code))
        self.close("AUTH_ERROR")

    def _on_subscribe(self, packet: codec.Subscribe) -> None:
        broker = self.broker
        session = self.session
        assert session is not None  # noqa: S101 - only called once connected
        v5 = self.limits is not None
        identifiers = packet.properties.subscription_identifiers
        identifier = identifiers[0] if v5 and identifiers else 0
        codes: list[int] = []
        granted: list[tuple[str, int]] = []
        for topic_filter, requested in packet.topics:
            qos, no_local, as_published, retain_handling = codec.subscription_options(requested)
            try:
                shared = parse_shared(topic_filter, broker.topic_limits)
                if shared is None:
                    validate_topic_filter(topic_filter, broker.topic_limits)
            except TopicError as exc:
                broker.log.warning(
                    "filter", "client %s: refused filter %r: %s", self.describe(), topic_filter, exc
                )
                codes.append(ReasonCode.TOPIC_FILTER_INVALID if v5 else codec.SUBACK_FAILURE)
                continue
            if shared is not None and no_local:
                # [3.8.3-4] No Local on a shared subscription is a protocol error.
                raise ProtocolViolation(f"No Local set on shared subscription {topic_filter!r}")
            existed = topic_filter in session.subscriptions
            if not broker.hooks.may_subscribe(session.identity, topic_filter):
                codes.append(ReasonCode.NOT_AUTHORIZED if v5 else codec.SUBACK_FAILURE)
                continue
            if not existed and (
                len(session.subscriptions) >= broker.settings.max_subscriptions_per_client
            ):
                codes.append(ReasonCode.QUOTA_EXCEEDED if v5 else codec.SUBACK_FAILURE)
                continue
            qos = min(qos, broker.settings.max_qos)
            options = pack_options(
                qos,
                no_local=no_local,
                retain_as_published=as_published,
                identifier=identifier,
            )
            broker.subscribe(session, topic_filter, options)
            codes.append(qos)
            # Shared subscriptions get no retained messages; MQTT 5 retain handling 1 sends
            # them only for a new subscription and 2 never [3.8.3.1].
            if shared is None and (retain_handling == 0 or (retain_handling == 1 and not existed)):
                granted.append((topic_filter, options))
        if v5:
            self.write(codec.encode_suback_v5(packet.packet_id, codes))
        else:
            self.write(codec.encode_suback(packet.packet_id, codes))
        accepted = [f for (f, _), code in zip(packet.topics, codes, strict=True) if code < 0x80]
        broker.lifecycle.subscriptions(
            session.client_id, session.identity.principal, accepted, subscribed=True
        )
        # [3.3.1.3] retained messages follow the SUBACK, with RETAIN set.
        now = time.time()
        for topic_filter, options in granted:
            for message in broker.retained.matching(topic_filter):
                if message.expires_at is not None and message.expires_at <= now:
                    continue
                session.deliver(message, options, True)

    def _on_unsubscribe(self, packet: codec.Unsubscribe) -> None:
        session = self.session
        assert session is not None  # noqa: S101 - only called once connected
        codes: list[int] = []
        for topic_filter in packet.topics:
            removed = self.broker.unsubscribe(session, topic_filter)
            codes.append(ReasonCode.SUCCESS if removed else ReasonCode.NO_SUBSCRIPTION_EXISTED)
        if self.limits is not None:
            self.write(codec.encode_unsuback_v5(packet.packet_id, codes))
        else:
            self.write(codec.encode_unsuback(packet.packet_id))
        unsubscribed = [
            f for f, code in zip(packet.topics, codes, strict=True) if code == ReasonCode.SUCCESS
        ]
        self.broker.lifecycle.subscriptions(
            session.client_id, session.identity.principal, unsubscribed, subscribed=False
        )


def _publish_header(first: int, data: bytes, start: int, stop: int) -> tuple[int, int, int, int]:
    """Check a PUBLISH's fixed-header flags, topic length and packet id in place [3.3.1-3.3.2].

    Returns ``(qos, end of topic, packet id or 0, position after the packet id)``.
    """
    qos = (first >> 1) & 3
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3 [3.3.1-4]")
    if qos == 0 and first & 8:
        raise MalformedPacket("PUBLISH with DUP set at QoS 0 [3.3.1-2]")
    if stop - start < 2:
        raise MalformedPacket("PUBLISH ends before its topic name")
    tend = start + 2 + ((data[start] << 8) | data[start + 1])
    if tend > stop:
        raise MalformedPacket("PUBLISH ends inside its topic name")
    if not qos:
        return 0, tend, 0, tend
    if tend + 2 > stop:
        raise MalformedPacket("PUBLISH ends inside its packet identifier")
    pid = (data[tend] << 8) | data[tend + 1]
    if pid == 0:
        raise MalformedPacket("packet identifier 0 is not allowed [2.3.1-1]")
    return qos, tend, pid, tend + 2
