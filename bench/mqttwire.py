"""A tiny MQTT 3.1.1 codec for the load generators.

Only what the benchmark sends and reads: CONNECT, CONNACK, PUBLISH (QoS 0 and 1), PUBACK,
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP and DISCONNECT. Pure functions on bytes, no IO. Packets
that the load generators send over and over are encoded once and reused; `PublishLayout`
describes the exact bytes of a PUBLISH the broker forwards, so subscribers can read whole
batches of them with one `struct.iter_unpack` instead of a Python loop per packet.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    SUBSCRIBE = 8
    SUBACK = 9
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


class MalformedPacket(ValueError):
    """The peer sent bytes that are not a well-formed MQTT 3.1.1 packet."""


PINGREQ = b"\xc0\x00"
PINGRESP = b"\xd0\x00"
DISCONNECT = b"\xe0\x00"
PUBACK_HEADER = b"\x40\x02"
SUBACK_FAILURE = 0x80

# The payload every benchmark PUBLISH starts with: send time (time.monotonic_ns, big-endian
# u64) and the step number of the workload it belongs to (u8); the rest is filler.
STAMP = struct.Struct(">QB")
STAMP_SIZE = STAMP.size


def remaining_length(n: int) -> bytes:
    """The variable-length "remaining length" field of a fixed header."""
    if not 0 <= n <= 268_435_455:
        raise ValueError(f"remaining length {n} out of range")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | 0x80 if n else digit)
        if not n:
            return bytes(out)


def utf8(s: str) -> bytes:
    """An MQTT UTF-8 string: u16 length prefix, then the bytes."""
    raw = s.encode()
    if len(raw) > 0xFFFF:
        raise ValueError("string longer than 65535 bytes")
    return len(raw).to_bytes(2, "big") + raw


def connect(client_id: str, keepalive: int = 60, clean_session: bool = True) -> bytes:
    flags = 0x02 if clean_session else 0x00
    body = utf8("MQTT") + bytes([4, flags]) + keepalive.to_bytes(2, "big") + utf8(client_id)
    return b"\x10" + remaining_length(len(body)) + body


def subscribe(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    body = packet_id.to_bytes(2, "big") + b"".join(utf8(f) + bytes([q]) for f, q in filters)
    return b"\x82" + remaining_length(len(body)) + body


def puback(packet_id: int) -> bytes:
    return PUBACK_HEADER + packet_id.to_bytes(2, "big")


def stamp_payload(sent_ns: int, step: int, size: int) -> bytes:
    """A benchmark payload of `size` bytes stamped with its send time and step."""
    if size < STAMP_SIZE:
        raise ValueError(f"payload must be at least {STAMP_SIZE} bytes")
    return STAMP.pack(sent_ns, step) + b"x" * (size - STAMP_SIZE)


@dataclass(frozen=True)
class PublishLayout:
    """The exact shape of a PUBLISH with a given topic length, payload length and QoS.

    `head` is the fixed header (type byte and remaining length), `size` the whole packet,
    `topic_at` where the topic string (with its length prefix) starts, `packet_id_at` where the
    packet id is (QoS 1 only) and `payload_at` where the payload starts.
    """

    topic_len: int
    payload_len: int
    qos: int

    @property
    def variable_len(self) -> int:
        return 2 + self.topic_len + (2 if self.qos else 0)

    @property
    def head(self) -> bytes:
        return bytes([0x30 | (self.qos << 1)]) + remaining_length(
            self.variable_len + self.payload_len
        )

    @property
    def topic_at(self) -> int:
        return len(self.head)

    @property
    def packet_id_at(self) -> int:
        return self.topic_at + 2 + self.topic_len

    @property
    def payload_at(self) -> int:
        return self.topic_at + self.variable_len

    @property
    def size(self) -> int:
        return self.payload_at + self.payload_len

    def stamps(self, coarse: bool = False) -> struct.Struct:
        """Unpacks (head, sent_ns, step) from a packet of this layout; if `coarse`,
        (head, sent_ns >> 32, (sent_ns >> 16) & 0xFFFF, step), dropping the low 16 bits."""
        head = len(self.head)
        tail = self.payload_len - STAMP_SIZE
        sent = "IH2x" if coarse else "Q"
        return struct.Struct(f">{head}s{self.payload_at - head}x{sent}B{tail}x")

    def packet_ids(self) -> struct.Struct:
        """Unpacks the raw 2-byte packet id from a (QoS 1) packet of this layout."""
        before = self.packet_id_at
        return struct.Struct(f">{before}x2s{self.size - before - 2}x")


def publish_prefix(topic: str, payload_len: int, qos: int) -> bytes:
    """Every byte of a PUBLISH before its packet id (QoS 1) or payload (QoS 0)."""
    raw = topic.encode()
    layout = PublishLayout(len(raw), payload_len, qos)
    return layout.head + len(raw).to_bytes(2, "big") + raw


def publish(topic: str, payload: bytes, qos: int = 0, packet_id: int = 0) -> bytes:
    pid = packet_id.to_bytes(2, "big") if qos else b""
    return publish_prefix(topic, len(payload), qos) + pid + payload


@dataclass(frozen=True)
class Packet:
    type: int
    flags: int
    body: bytes


def split_packets(buf: bytes | bytearray) -> tuple[list[Packet], int]:
    """The complete packets at the start of `buf`, and how many bytes they took."""
    packets: list[Packet] = []
    pos, end = 0, len(buf)
    while pos + 2 <= end:
        first = buf[pos]
        length, multiplier, i = 0, 1, pos + 1
        while True:
            if i >= end:
                return packets, pos
            digit = buf[i]
            length += (digit & 0x7F) * multiplier
            i += 1
            if not digit & 0x80:
                break
            multiplier *= 128
            if multiplier > 128**3:
                raise MalformedPacket("remaining length longer than 4 bytes")
        if i + length > end:
            return packets, pos
        packets.append(Packet(first >> 4, first & 0x0F, bytes(buf[i : i + length])))
        pos = i + length
    return packets, pos


def parse_connack(body: bytes) -> int:
    """The CONNACK return code (0 is accepted)."""
    if len(body) != 2:
        raise MalformedPacket(f"CONNACK body of {len(body)} bytes")
    return body[1]


def parse_suback(body: bytes) -> tuple[int, bytes]:
    """(packet id, granted QoS per filter; 0x80 is failure)."""
    if len(body) < 3:
        raise MalformedPacket(f"SUBACK body of {len(body)} bytes")
    return int.from_bytes(body[:2], "big"), body[2:]


def parse_publish(flags: int, body: bytes) -> tuple[str, int, int, bytes]:
    """(topic, qos, packet id or 0, payload)."""
    qos = (flags >> 1) & 0x03
    if len(body) < 2:
        raise MalformedPacket("PUBLISH without a topic")
    topic_len = int.from_bytes(body[:2], "big")
    pos = 2 + topic_len
    topic = body[2:pos].decode(errors="replace")
    packet_id = 0
    if qos:
        packet_id = int.from_bytes(body[pos : pos + 2], "big")
        pos += 2
    if pos > len(body):
        raise MalformedPacket("PUBLISH shorter than its topic")
    return topic, qos, packet_id, body[pos:]
