"""A tiny MQTT 3.1.1 / MQTT 5 codec for the load generators.

Only what the benchmark sends and reads: CONNECT, CONNACK, PUBLISH (QoS 0 and 1), PUBACK,
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP and DISCONNECT. Pure functions on bytes, no IO. Packets
that the load generators send over and over are encoded once and reused; `PublishLayout`
describes the exact bytes of a PUBLISH the broker forwards, so subscribers can read whole
batches of them with one `struct.iter_unpack` instead of a Python loop per packet.

`protocol` is the CONNECT protocol level: 4 (MQTT 3.1.1) or 5 (MQTT 5). With 5, CONNECT and
SUBSCRIBE carry an empty properties block, and every benchmark PUBLISH carries
`PUBLISH_PROPERTIES` (a Content Type and two User Properties). PUBACKs are sent in the short
2-byte form, which MQTT 5 allows for reason code 0 without properties. This codec is the
bench's own, deliberately independent of the broker's.

Payloads are binary by default (`STAMP`, then filler). The JSON variant (`json_payload`, used
where the broker reads the payload: the rules workload) is a JSON object whose first member,
`"stamp"`, holds the same send time and step as 18 hex digits at a fixed offset, so a run of
such PUBLISHes still decodes with one `struct.iter_unpack`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
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
    """The peer sent bytes that are not a well-formed MQTT packet."""


PROTOCOLS = (4, 5)  # MQTT 3.1.1, MQTT 5

# MQTT 5 property identifiers the bench writes or reads.
PROP_CONTENT_TYPE = 0x03
PROP_USER_PROPERTY = 0x26


PINGREQ = b"\xc0\x00"
PINGRESP = b"\xd0\x00"
DISCONNECT = b"\xe0\x00"
PUBACK_HEADER = b"\x40\x02"
SUBACK_FAILURE = 0x80  # and in MQTT 5 every reason code >= 0x80 is a failure

# The payload every benchmark PUBLISH starts with: send time (time.monotonic_ns, big-endian
# u64) and the step number of the workload it belongs to (u8); the rest is filler.
STAMP = struct.Struct(">QB")
STAMP_SIZE = STAMP.size

# The JSON variant: `{"stamp":"<16 hex digits of the send time><2 of the step>",...}`. Hex
# keeps the stamp at a fixed width (a JSON number would not be), and its first 12 digits are
# the send time without its low 16 bits, the subscribers' coarse timing.
JSON_STAMP_OPEN = b'{"stamp":"'
JSON_STAMP_AT = len(JSON_STAMP_OPEN)
JSON_STAMP_LEN = 18
JSON_STAMP_END = JSON_STAMP_AT + JSON_STAMP_LEN


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


def _check_protocol(protocol: int) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol level {protocol} not supported (4 or 5)")


def properties(*props: tuple[int, bytes]) -> bytes:
    """An MQTT 5 properties block: its length (variable byte integer), then each property's
    identifier byte and already-encoded value."""
    raw = b"".join(bytes([ident]) + value for ident, value in props)
    return remaining_length(len(raw)) + raw


def bench_publish_properties(content_type: str, user_properties: list[tuple[str, str]]) -> bytes:
    """The properties block of a benchmark MQTT 5 PUBLISH."""
    return properties(
        (PROP_CONTENT_TYPE, utf8(content_type)),
        *((PROP_USER_PROPERTY, utf8(k) + utf8(v)) for k, v in user_properties),
    )


PUBLISH_CONTENT_TYPE = "application/json"
PUBLISH_USER_PROPERTIES = [("device", "bench"), ("seq", "1")]
# Encoded once; every MQTT 5 benchmark PUBLISH carries exactly these bytes.
PUBLISH_PROPERTIES = bench_publish_properties(PUBLISH_CONTENT_TYPE, PUBLISH_USER_PROPERTIES)
NO_PROPERTIES = b"\x00"


def connect(
    client_id: str, keepalive: int = 60, clean_session: bool = True, protocol: int = 4
) -> bytes:
    _check_protocol(protocol)
    flags = 0x02 if clean_session else 0x00  # "clean start" in MQTT 5, same bit
    props = NO_PROPERTIES if protocol == 5 else b""
    body = (
        utf8("MQTT")
        + bytes([protocol, flags])
        + keepalive.to_bytes(2, "big")
        + props
        + utf8(client_id)
    )
    return b"\x10" + remaining_length(len(body)) + body


def subscribe(packet_id: int, filters: list[tuple[str, int]], protocol: int = 4) -> bytes:
    """SUBSCRIBE; with MQTT 5 an empty properties block and options byte = the maximum QoS
    (no-local, retain-as-published and retain handling all 0)."""
    _check_protocol(protocol)
    props = NO_PROPERTIES if protocol == 5 else b""
    body = packet_id.to_bytes(2, "big") + props + b"".join(utf8(f) + bytes([q]) for f, q in filters)
    return b"\x82" + remaining_length(len(body)) + body


def puback(packet_id: int) -> bytes:
    return PUBACK_HEADER + packet_id.to_bytes(2, "big")


def stamp_payload(sent_ns: int, step: int, size: int) -> bytes:
    """A benchmark payload of `size` bytes stamped with its send time and step."""
    if size < STAMP_SIZE:
        raise ValueError(f"payload must be at least {STAMP_SIZE} bytes")
    return STAMP.pack(sent_ns, step) + b"x" * (size - STAMP_SIZE)


def json_stamp(sent_ns: int, step: int) -> bytes:
    """The 18 hex digits a JSON payload's "stamp" holds."""
    return b"%016x%02x" % (sent_ns, step)


def json_payload(members: Mapping[str, object], size: int) -> bytes:
    """A compact JSON object of exactly `size` bytes: "stamp" first (zeros, for the publisher
    to overwrite), then `members`, then a "pad" string of x's that makes up the size."""
    head = JSON_STAMP_OPEN + b"0" * JSON_STAMP_LEN + b'"'
    body = json.dumps(members, separators=(",", ":")).encode()[1:-1]
    if body:
        head += b"," + body
    room = size - len(head) - len(b',"pad":""}')
    if room < 0:
        raise ValueError(f"the JSON members need more than {size} bytes")
    return head + b',"pad":"' + b"x" * room + b'"}'


def read_json_stamp(payload: bytes) -> tuple[int, int] | None:
    """(send time, step) from a JSON payload's stamp; None if it has none."""
    if payload[:JSON_STAMP_AT] != JSON_STAMP_OPEN or len(payload) < JSON_STAMP_END:
        return None
    try:
        digits = payload[JSON_STAMP_AT:JSON_STAMP_END]
        return int(digits[:16], 16), int(digits[16:], 16)
    except ValueError:
        return None


@dataclass(frozen=True)
class PublishLayout:
    """The exact shape of a PUBLISH with a given topic length, payload length and QoS.

    `head` is the fixed header (type byte and remaining length), `size` the whole packet,
    `topic_at` where the topic string (with its length prefix) starts, `packet_id_at` where the
    packet id is (QoS 1 only), `properties_at` where the MQTT 5 properties block (with its
    length) starts and `payload_at` where the payload starts. `properties` is that whole
    block, empty for MQTT 3.1.1. `json_stamp`: the payload is the JSON variant.
    """

    topic_len: int
    payload_len: int
    qos: int
    properties: bytes = b""
    json_stamp: bool = False

    @property
    def variable_len(self) -> int:
        return 2 + self.topic_len + (2 if self.qos else 0) + len(self.properties)

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
    def properties_at(self) -> int:
        return self.packet_id_at + (2 if self.qos else 0)

    @property
    def payload_at(self) -> int:
        return self.topic_at + self.variable_len

    @property
    def size(self) -> int:
        return self.payload_at + self.payload_len

    def stamps(self, coarse: bool = False) -> struct.Struct:
        """Unpacks (head, sent_ns, step) from a packet of this layout; if `coarse`,
        (head, sent_ns >> 32, (sent_ns >> 16) & 0xFFFF, step), dropping the low 16 bits.
        With `json_stamp`, (head, hex digits of sent_ns, hex digits of the step); `coarse`
        leaves out the last 4 digits of sent_ns."""
        head = len(self.head)
        if self.json_stamp:
            skip = self.payload_at - head + JSON_STAMP_AT
            tail = self.payload_len - JSON_STAMP_END
            sent = "12s4x" if coarse else "16s"
            return struct.Struct(f">{head}s{skip}x{sent}2s{tail}x")
        tail = self.payload_len - STAMP_SIZE
        sent = "IH2x" if coarse else "Q"
        return struct.Struct(f">{head}s{self.payload_at - head}x{sent}B{tail}x")

    def packet_ids(self) -> struct.Struct:
        """Unpacks the raw 2-byte packet id from a (QoS 1) packet of this layout."""
        before = self.packet_id_at
        return struct.Struct(f">{before}x2s{self.size - before - 2}x")


def publish_properties(protocol: int) -> bytes:
    """The properties block the benchmark's PUBLISHes carry at this protocol level."""
    _check_protocol(protocol)
    return PUBLISH_PROPERTIES if protocol == 5 else b""


def publish_prefix(topic: str, payload_len: int, qos: int, props: bytes = b"") -> bytes:
    """Every byte of a PUBLISH before its packet id (QoS 1), or before its payload (QoS 0; this
    includes the properties block `props`, which for QoS 1 follows the packet id)."""
    raw = topic.encode()
    layout = PublishLayout(len(raw), payload_len, qos, props)
    prefix = layout.head + len(raw).to_bytes(2, "big") + raw
    return prefix if qos else prefix + props


def publish(
    topic: str, payload: bytes, qos: int = 0, packet_id: int = 0, props: bytes = b""
) -> bytes:
    if not qos:
        return publish_prefix(topic, len(payload), qos, props) + payload
    pid = packet_id.to_bytes(2, "big")
    return publish_prefix(topic, len(payload), qos, props) + pid + props + payload


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


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A variable byte integer at `pos`: (value, position after it)."""
    value, multiplier = 0, 1
    for i in range(pos, min(pos + 4, len(buf))):
        digit = buf[i]
        value += (digit & 0x7F) * multiplier
        if not digit & 0x80:
            return value, i + 1
        multiplier *= 128
    raise MalformedPacket("truncated or over-long variable byte integer")


def skip_properties(body: bytes, pos: int) -> int:
    """The position just after the MQTT 5 properties block starting at `pos`."""
    length, start = read_varint(body, pos)
    end = start + length
    if end > len(body):
        raise MalformedPacket("properties longer than the packet")
    return end


def decode_properties(block: bytes) -> list[tuple[int, object]]:
    """The properties of a whole block (with its length prefix), for the ones the bench checks:
    Content Type -> str, User Property -> (str, str); any other identifier stops decoding
    (lengths of other types are not needed) and is returned with the undecoded rest."""
    length, pos = read_varint(block, 0)
    end = pos + length
    out: list[tuple[int, object]] = []
    while pos < end:
        ident = block[pos]
        pos += 1
        if ident == PROP_CONTENT_TYPE:
            value, pos = _read_str(block, pos)
            out.append((ident, value))
        elif ident == PROP_USER_PROPERTY:
            key, pos = _read_str(block, pos)
            value, pos = _read_str(block, pos)
            out.append((ident, (key, value)))
        else:
            out.append((ident, bytes(block[pos:end])))
            break
    return out


def _read_str(buf: bytes, pos: int) -> tuple[str, int]:
    if pos + 2 > len(buf):
        raise MalformedPacket("truncated string")
    end = pos + 2 + int.from_bytes(buf[pos : pos + 2], "big")
    if end > len(buf):
        raise MalformedPacket("truncated string")
    return bytes(buf[pos + 2 : end]).decode(errors="replace"), end


def parse_connack(body: bytes, protocol: int = 4) -> int:
    """The CONNACK return code (MQTT 5: reason code; 0 is accepted either way). MQTT 5
    CONNACK properties (Receive Maximum, Topic Alias Maximum, ...) are skipped."""
    if protocol == 5:
        if len(body) < 3:
            raise MalformedPacket(f"MQTT 5 CONNACK body of {len(body)} bytes")
        skip_properties(body, 2)  # checks the block is well-formed
        return body[1]
    if len(body) != 2:
        raise MalformedPacket(f"CONNACK body of {len(body)} bytes")
    return body[1]


def parse_suback(body: bytes, protocol: int = 4) -> tuple[int, bytes]:
    """(packet id, granted QoS / reason code per filter; >= 0x80 is failure). MQTT 5 SUBACK
    properties (a Reason String, ...) are skipped."""
    pos = skip_properties(body, 2) if protocol == 5 and len(body) >= 3 else 2
    if len(body) < pos + 1:
        raise MalformedPacket(f"SUBACK body of {len(body)} bytes")
    return int.from_bytes(body[:2], "big"), body[pos:]


def parse_publish(flags: int, body: bytes, protocol: int = 4) -> tuple[str, int, int, bytes, bytes]:
    """(topic, qos, packet id or 0, properties block with its length or b"", payload)."""
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
    props = b""
    if protocol == 5:
        end = skip_properties(body, pos)
        props, pos = body[pos:end], end
    return topic, qos, packet_id, props, body[pos:]
