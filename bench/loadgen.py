"""MQTT load-generator clients as raw asyncio Protocols.

Hot paths avoid per-packet Python where they can: publishers write a whole tick's worth of
pre-encoded PUBLISHes with one `transport.write`, QoS 1 publishers count PUBACKs with slice
comparisons, and subscribers decode runs of same-shaped PUBLISHes with `struct.iter_unpack`
and `collections.Counter` (one Python iteration per distinct send stamp, not per message).
Anything unexpected falls back to the general decoder in `mqttwire`.

A publisher either sends the binary stamped payload on its one topic, or (`json_messages`) a
list of JSON payloads, each on its own topic, in turn, with the stamp written into each; its
subscribers then read the stamps from the JSON (`PublishLayout.json_stamp`).

Publishers and subscribers speak MQTT 3.1.1 or MQTT 5 (`protocol` 4 or 5); with 5 every PUBLISH
carries `mqttwire.PUBLISH_PROPERTIES`, and subscribers check that they arrive: on the first
PUBLISH of every read on the fast paths, and on every PUBLISH the general decoder reads (where a
message whose Content Type or User Properties differ from what was sent is counted as foreign,
not as delivered).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, cast

from bench import mqttwire
from bench.mqttwire import (
    JSON_STAMP_AT,
    JSON_STAMP_END,
    STAMP,
    STAMP_SIZE,
    Packet,
    PacketType,
    PublishLayout,
)
from bench.stats import COARSE_NS, COARSE_SHIFT, FINE_NS, Recorder

monotonic_ns = time.monotonic_ns
SMALL_READ = 4  # up to this many PUBLISHes per read, a plain loop beats Counter


class ClientError(Exception):
    """The broker refused or dropped a load-generator client."""


class MqttClient(asyncio.Protocol):
    """Sends CONNECT on connect and resolves `connected` on CONNACK; subclasses do the rest."""

    def __init__(self, client_id: str, keepalive: int, protocol: int = 4) -> None:
        loop = asyncio.get_running_loop()
        self.client_id = client_id
        self.protocol = protocol
        self.connect_packet = mqttwire.connect(client_id, keepalive, protocol=protocol)
        self.transport: asyncio.Transport | None = None
        self.connected: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.connect_packet)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        reason = ClientError(f"{self.client_id}: connection closed by broker ({exc or 'EOF'})")
        if not self.connected.done():
            self.connected.set_exception(reason)
        if not self.lost.done():
            self.lost.set_result(None)
        self.on_lost(reason)

    def on_lost(self, reason: ClientError) -> None:
        """Hook for subclasses that have futures of their own to fail."""

    def close(self) -> None:
        if self.transport is not None:
            self.transport.write(mqttwire.DISCONNECT)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.read_packets(data)

    def read_packets(self, data: bytes) -> None:
        """The general (slow) path: decode every complete packet and dispatch it."""
        if self.buf:
            data = self.buf + data
        try:
            packets, used = mqttwire.split_packets(data)
        except mqttwire.MalformedPacket as exc:
            self.fail(ClientError(f"{self.client_id}: {exc}"))
            return
        self.buf = data[used:]
        for packet in packets:
            self.handle(packet)

    def handle(self, packet: Packet) -> None:
        if packet.type == PacketType.CONNACK and not self.connected.done():
            code = mqttwire.parse_connack(packet.body, self.protocol)
            if code:
                self.fail(ClientError(f"{self.client_id}: CONNACK refused with code {code}"))
            else:
                self.connected.set_result(None)
                self.on_connected()

    def on_connected(self) -> None:
        """Hook: runs once the broker accepted the connection."""

    def fail(self, exc: ClientError) -> None:
        if not self.connected.done():
            self.connected.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()


class Publisher(MqttClient):
    """Publishes stamped messages on one topic as the owner grants them (`due`); with
    `json_messages`, those (topic, JSON payload) pairs in turn instead, every payload
    `payload_size` bytes and every topic as long as `topic`."""

    def __init__(
        self,
        client_id: str,
        topic: str,
        *,
        qos: int,
        payload_size: int,
        window: int,
        keepalive: int,
        protocol: int = 4,
        json_messages: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        super().__init__(client_id, keepalive, protocol)
        self.qos = qos
        self.window = window
        props = mqttwire.publish_properties(protocol)
        # QoS 0: the prefix ends with the properties; QoS 1: they follow the packet id.
        self.prefix = mqttwire.publish_prefix(topic, payload_size, qos, props)
        self.after_id = props if qos else b""
        self.filler = b"x" * (payload_size - STAMP_SIZE)
        self.turns = len(json_messages)  # JSON messages, sent in turn; 0: the binary payload
        self.turn = 0  # the JSON message to send next
        self.packet_size = len(self.prefix) + (2 + len(props) if qos else 0) + payload_size
        # Each JSON message split around its stamp: `heads` ends where the stamp starts (for
        # QoS 1 at the packet id, `mids` following it), `tails` is the payload after it.
        self.heads: list[bytes] = []
        self.mids: list[bytes] = []
        self.tails: list[bytes] = []
        for json_topic, payload in json_messages:
            if len(json_topic.encode()) != len(topic.encode()) or len(payload) != payload_size:
                raise ValueError("JSON messages need the topic's length and the payload size")
            prefix = mqttwire.publish_prefix(json_topic, payload_size, qos, props)
            opening = payload[:JSON_STAMP_AT]
            self.heads.append(prefix if qos else prefix + opening)
            self.mids.append(props + opening)
            self.tails.append(payload[JSON_STAMP_END:])
        # QoS 0 sends runs of whole turns: joined with the tick's stamp, these pieces are
        # every message once (one C-level join per tick, not one per message).
        self.ring_pieces = (
            [
                self.heads[0],
                *(t + h for t, h in zip(self.tails, self.heads[1:], strict=False)),
                self.tails[-1],
            ]
            if json_messages
            else []
        )
        self.step = 0
        self.pending = 0  # messages due but not yet written
        self.inflight = 0  # QoS 1 PUBLISHes not yet acknowledged
        self.sent = 0
        self.paused = False
        self.next_packet_id = 1

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.flush()

    def due(self, n: int, backlog_limit: int) -> None:
        """Grant `n` more messages; those still waiting beyond `backlog_limit` are given up."""
        self.pending += n
        self.flush()
        if self.pending > backlog_limit:
            self.pending = backlog_limit

    def flush(self) -> None:
        n = self.pending
        transport = self.transport
        if not n or self.paused or transport is None:
            return
        if self.turns:
            self.flush_json(n, transport)
            return
        stamp = STAMP.pack(monotonic_ns(), self.step)
        if self.qos == 0:
            transport.write((self.prefix + stamp + self.filler) * n)
        else:
            n = min(n, self.window - self.inflight)
            if n <= 0:
                return
            body = self.after_id + stamp + self.filler
            prefix = self.prefix
            pid = self.next_packet_id
            parts = []
            for _ in range(n):
                parts.append(prefix + pid.to_bytes(2, "big") + body)
                pid = pid + 1 if pid < 0xFFFF else 1
            self.next_packet_id = pid
            self.inflight += n
            transport.write(b"".join(parts))
        self.pending -= n
        self.sent += n

    def flush_json(self, n: int, transport: asyncio.Transport) -> None:
        """`flush` for JSON messages: the next `n` turns, each with the send stamp written in."""
        stamp = mqttwire.json_stamp(monotonic_ns(), self.step)
        turns, turn = self.turns, self.turn
        if self.qos == 0:
            ring = stamp.join(self.ring_pieces)
            start, end = turn * self.packet_size, (turn + n) * self.packet_size
            laps = -(-end // len(ring))
            transport.write((ring * laps)[start:end] if laps > 1 else ring[start:end])
        else:
            n = min(n, self.window - self.inflight)
            if n <= 0:
                return
            heads, mids, tails = self.heads, self.mids, self.tails
            pid = self.next_packet_id
            parts: list[bytes] = []
            for i in range(turn, turn + n):
                k = i % turns
                parts += (heads[k], pid.to_bytes(2, "big"), mids[k], stamp, tails[k])
                pid = pid + 1 if pid < 0xFFFF else 1
            self.next_packet_id = pid
            self.inflight += n
            transport.write(b"".join(parts))
        self.turn = (turn + n) % turns
        self.pending -= n
        self.sent += n

    def data_received(self, data: bytes) -> None:
        if self.connected.done():
            buf = self.buf + data if self.buf else data
            # A run of same-sized PUBACKs: 4 bytes (MQTT 3.1.1, or MQTT 5's short form), or
            # MQTT 5's 5 (reason code) or 6 bytes (reason code, empty properties).
            size = buf[1] + 2 if len(buf) > 1 and buf[0] == 0x40 and 2 <= buf[1] <= 4 else 0
            n = len(buf) // size if size else 0
            end = n * size
            if n and buf[0:end:size] == b"\x40" * n and buf[1:end:size] == bytes([size - 2]) * n:
                self.buf = buf[end:]
                self.inflight = max(0, self.inflight - n)
                self.flush()
                return
            self.buf = b""
            data = buf
        self.read_packets(data)
        self.flush()

    def handle(self, packet: Packet) -> None:
        if packet.type == PacketType.PUBACK:
            self.inflight = max(0, self.inflight - 1)
        else:
            super().handle(packet)


class Subscriber(MqttClient):
    """Subscribes to one filter and records every stamped message it receives.

    With `coarse` timing the send stamps are read at 65.536 µs resolution (plenty for a 50 ms
    criterion), so that a run of messages stamped within one publisher tick is one key.
    """

    def __init__(
        self,
        client_id: str,
        topic_filter: str,
        *,
        qos: int,
        layout: PublishLayout,
        recorder: Recorder,
        keepalive: int,
        coarse: bool = False,
        protocol: int = 4,
    ) -> None:
        super().__init__(client_id, keepalive, protocol)
        self.topic_filter = topic_filter
        self.qos = qos
        self.recorder = recorder
        self.coarse = coarse
        if recorder.unit_ns != (COARSE_NS if coarse else FINE_NS):
            raise ValueError("the recorder's unit does not match the subscriber's resolution")
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ready = False  # subscribed: the fast path may run
        self.lean = False  # subscribed, coarse timing and QoS 0: the single-message path may run
        self.head = layout.head
        self.size = layout.size
        # MQTT 5: the properties block every forwarded PUBLISH should carry, and where.
        self.props = layout.properties
        self.props_at = layout.properties_at
        self.props_end = layout.properties_at + len(layout.properties)
        self.json = layout.json_stamp  # stamps in hex digits: converted per distinct stamp
        self.stamps = layout.stamps(coarse)
        self.packet_ids = layout.packet_ids() if qos else None
        self.acks: list[bytes] = []
        self.now = 0  # receive time (in recorder units) of the chunk being decoded

    def units(self, ns: int) -> int:
        return ns >> COARSE_SHIFT if self.coarse else ns // FINE_NS

    def on_connected(self) -> None:
        assert self.transport is not None
        self.transport.write(
            mqttwire.subscribe(1, [(self.topic_filter, self.qos)], protocol=self.protocol)
        )

    def on_lost(self, reason: ClientError) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(reason)

    def fail(self, exc: ClientError) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(exc)
        super().fail(exc)

    def data_received(self, data: bytes) -> None:
        size = self.size
        if (
            self.lean
            and len(data) <= SMALL_READ * size
            and not len(data) % size
            and not self.buf
            and data[self.props_at : self.props_end] == self.props
        ):
            # The commonest reads from a broker that writes each message on its own: one or a
            # few whole QoS 0 PUBLISHes of the expected shape, decoded inline.
            unpack = self.stamps.unpack_from
            if len(data) == size:
                head, high, mid, step = unpack(data)
                if head == self.head:
                    self.recorder.record_one(monotonic_ns() >> COARSE_SHIFT, high << 16 | mid, step)
                    return
            else:
                fields = [unpack(data, offset) for offset in range(0, len(data), size)]
                head = self.head
                if all(f[0] == head for f in fields):
                    now = monotonic_ns() >> COARSE_SHIFT
                    record = self.recorder.record_one
                    for _, high, mid, step in fields:
                        record(now, high << 16 | mid, step)
                    return
        self.now = self.units(monotonic_ns())
        if self.buf:
            data = self.buf + data
            self.buf = b""
        n = len(data) // self.size
        if n and self.ready and self.read_publishes(data, n):
            end = n * self.size
            if end < len(data):
                self.buf = data[end:]
        else:
            self.read_packets(data)
        if self.acks and self.transport is not None:
            self.transport.write(b"".join(self.acks))
            self.acks.clear()

    def read_publishes(self, data: bytes, n: int) -> bool:
        """The fast path: the first `n` packets in `data` are PUBLISHes of the expected shape."""
        head = self.head
        if self.props and data[self.props_at : self.props_end] != self.props:
            return False  # the general decoder checks them message by message
        view = memoryview(data)[: n * self.size]
        if n == 1:
            fields = self.stamps.unpack_from(data)
            if fields[0] != head:
                return False
            counts: Mapping[tuple[Any, ...], int] = {fields: 1}
        else:
            counts = Counter(self.stamps.iter_unpack(view))
            for key in counts:
                if key[0] != head:
                    return False
        if self.json:
            try:
                if self.coarse:  # the first 12 of 16 hex digits: sent_ns >> 16
                    stamps = {(int(k[1], 16), int(k[2], 16)): c for k, c in counts.items()}
                else:
                    stamps = {
                        (int(k[1], 16) // FINE_NS, int(k[2], 16)): c for k, c in counts.items()
                    }
            except ValueError:
                return False  # not hex: the general decoder counts it as foreign
        elif self.coarse:
            stamps = {(k[1] << 16 | k[2], k[3]): c for k, c in counts.items()}
        else:
            stamps = {(k[1] // FINE_NS, k[2]): c for k, c in counts.items()}
        self.recorder.record(self.now, stamps)
        if self.packet_ids is not None:
            ack = mqttwire.PUBACK_HEADER
            self.acks.extend([ack + pid for (pid,) in self.packet_ids.iter_unpack(view)])
        return True

    def handle(self, packet: Packet) -> None:
        kind = packet.type
        if kind == PacketType.PUBLISH:
            _, qos, packet_id, props, payload = mqttwire.parse_publish(
                packet.flags, packet.body, self.protocol
            )
            if qos:
                self.acks.append(mqttwire.puback(packet_id))
            if props != self.props and not same_properties(props, self.props):
                self.recorder.foreign += 1  # the broker lost or changed the properties
            elif self.json:
                stamped = mqttwire.read_json_stamp(payload)
                if stamped is None:
                    self.recorder.foreign += 1
                else:
                    self.recorder.record_one(self.now, self.units(stamped[0]), stamped[1])
            elif len(payload) >= STAMP_SIZE:
                sent, step = STAMP.unpack_from(payload)
                self.recorder.record_one(self.now, self.units(sent), step)
            else:
                self.recorder.foreign += 1
        elif kind == PacketType.SUBACK and not self.subscribed.done():
            _, granted = mqttwire.parse_suback(packet.body, self.protocol)
            if not granted or granted[0] >= mqttwire.SUBACK_FAILURE:
                self.fail(ClientError(f"{self.client_id}: SUBSCRIBE refused ({granted!r})"))
            else:
                self.ready = True
                # The single-message path reads binary stamps only.
                self.lean = self.coarse and self.qos == 0 and not self.json
                self.subscribed.set_result(None)
        else:
            super().handle(packet)


def same_properties(got: bytes, sent: bytes) -> bool:
    """Whether a forwarded PUBLISH's properties carry the Content Type and User Properties
    (in their order) that were sent; other properties a broker may add are ignored."""
    if not got or not sent:
        return got == sent
    try:
        got_props = mqttwire.decode_properties(got)
    except mqttwire.MalformedPacket:
        return False
    wanted = (mqttwire.PROP_CONTENT_TYPE, mqttwire.PROP_USER_PROPERTY)
    return [p for p in got_props if p[0] in wanted] == mqttwire.decode_properties(sent)


class IdleClient(MqttClient):
    """Holds a connection open; answers the owner's question "did my PINGREQ come back?"."""

    def __init__(self, client_id: str, keepalive: int, tally: PingTally) -> None:
        super().__init__(client_id, keepalive)
        self.tally = tally
        self.ping_sent_ns = 0
        self.answered = False

    def ping(self) -> bool:
        if self.transport is None:
            return False
        self.answered = False
        self.ping_sent_ns = monotonic_ns()
        self.transport.write(mqttwire.PINGREQ)
        return True

    def handle(self, packet: Packet) -> None:
        if packet.type == PacketType.PINGRESP and self.ping_sent_ns and not self.answered:
            self.answered = True
            self.tally.answered(monotonic_ns() - self.ping_sent_ns)
        else:
            super().handle(packet)

    def on_lost(self, reason: ClientError) -> None:
        if self.connected.done():
            self.tally.dropped += 1


class PingTally:
    """Counts PINGRESPs across many idle clients; `done` fires when `expected` arrived."""

    def __init__(self) -> None:
        self.count = 0
        self.expected = 0
        self.dropped = 0  # connections the broker closed after CONNACK
        self.rtts_ns: list[int] = []
        self.done = asyncio.Event()

    def reset(self, expected: int) -> None:
        self.count = 0
        self.expected = expected
        self.rtts_ns.clear()
        self.done.clear()
        if expected == 0:
            self.done.set()

    def answered(self, rtt_ns: int) -> None:
        self.count += 1
        self.rtts_ns.append(rtt_ns)
        if self.count >= self.expected:
            self.done.set()
