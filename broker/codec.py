"""MQTT packet encoding and decoding: pure functions over bytes, no IO.

Covers MQTT 3.1 (protocol level 3) and 3.1.1 (level 4). Every function takes the protocol
level where the wire format depends on it, so MQTT 5 (level 5: properties after the variable
header, reason codes everywhere) adds branches here without changing callers.

The decoder trusts nothing: every length is checked against the packet's bounds and every
violation raises ``MalformedPacket`` (a ``CodecError``), the only exception it may raise.
Spec references are to MQTT 3.1.1 (OASIS, 2014), section numbers in brackets.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from thingcore.errors import ThingcoreError

MAX_REMAINING_LENGTH = 268_435_455  # [2.2.3] four bytes of variable-length integer
MQTT_31 = 3
MQTT_311 = 4
MQTT_5 = 5
PROTOCOL_NAMES = {MQTT_31: "MQIsdp", MQTT_311: "MQTT", MQTT_5: "MQTT"}

_U16 = struct.Struct(">H")


class CodecError(ThingcoreError):
    """Bytes that are not a valid MQTT packet."""


class MalformedPacket(CodecError):
    """The packet violates the wire format; the connection must be closed [4.8]."""


class PacketType(enum.IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


class ConnectReturnCode(enum.IntEnum):
    """CONNACK return codes of MQTT 3.1.1 [3.2.2.3]."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USERNAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


SUBACK_FAILURE = 0x80  # [3.9.3]

# Fixed-header flag nibbles the spec requires for each packet type other than PUBLISH [2.2.2].
_REQUIRED_FLAGS = {
    PacketType.CONNECT: 0,
    PacketType.CONNACK: 0,
    PacketType.PUBACK: 0,
    PacketType.PUBREC: 0,
    PacketType.PUBREL: 2,
    PacketType.PUBCOMP: 0,
    PacketType.SUBSCRIBE: 2,
    PacketType.SUBACK: 0,
    PacketType.UNSUBSCRIBE: 2,
    PacketType.UNSUBACK: 0,
    PacketType.PINGREQ: 0,
    PacketType.PINGRESP: 0,
    PacketType.DISCONNECT: 0,
}


# --------------------------------------------------------------------------------------------
# Packet value objects
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


@dataclass(slots=True)
class Connect:
    client_id: str
    clean_session: bool = True
    keep_alive: int = 60
    protocol_level: int = MQTT_311
    will: Will | None = None
    username: str | None = None
    password: bytes | None = None


@dataclass(slots=True)
class ConnAck:
    session_present: bool
    return_code: int


@dataclass(slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None


@dataclass(slots=True)
class PubAck:
    packet_id: int


@dataclass(slots=True)
class PubRec:
    packet_id: int


@dataclass(slots=True)
class PubRel:
    packet_id: int


@dataclass(slots=True)
class PubComp:
    packet_id: int


@dataclass(slots=True)
class Subscribe:
    packet_id: int
    topics: list[tuple[str, int]] = field(default_factory=list)


@dataclass(slots=True)
class SubAck:
    packet_id: int
    return_codes: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Unsubscribe:
    packet_id: int
    topics: list[str] = field(default_factory=list)


@dataclass(slots=True)
class UnsubAck:
    packet_id: int


@dataclass(slots=True)
class PingReq:
    pass


@dataclass(slots=True)
class PingResp:
    pass


@dataclass(slots=True)
class Disconnect:
    pass


Packet = (
    Connect
    | ConnAck
    | Publish
    | PubAck
    | PubRec
    | PubRel
    | PubComp
    | Subscribe
    | SubAck
    | Unsubscribe
    | UnsubAck
    | PingReq
    | PingResp
    | Disconnect
)

# --------------------------------------------------------------------------------------------
# Framing
# --------------------------------------------------------------------------------------------


def encode_remaining_length(n: int) -> bytes:
    """The variable-length integer of [2.2.3]."""
    if not 0 <= n <= MAX_REMAINING_LENGTH:
        raise CodecError(f"remaining length {n} is outside 0..{MAX_REMAINING_LENGTH}")
    if n < 128:
        return bytes((n,))
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def packet_size(remaining_length: int) -> int:
    """Bytes of a whole packet (fixed header included) whose body is ``remaining_length``."""
    if remaining_length < 128:
        return remaining_length + 2
    if remaining_length < 16_384:
        return remaining_length + 3
    if remaining_length < 2_097_152:
        return remaining_length + 4
    return remaining_length + 5


def frame(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + encode_remaining_length(len(body)) + body


def split_packet(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int, int] | None:
    """Locate the packet starting at ``pos``.

    Returns ``(first_byte, body_start, body_end)``, or None when the buffer does not yet hold
    the whole fixed header or body. Raises ``MalformedPacket`` for a length encoded in more
    than four bytes.
    """
    end = len(buf)
    if end - pos < 2:
        return None
    first = buf[pos]
    i = pos + 1
    byte = buf[i]
    if byte < 128:  # the common case: short packets, one length byte
        body_end = i + 1 + byte
        return (first, i + 1, body_end) if body_end <= end else None
    length = 0
    multiplier = 1
    for _ in range(4):
        if i >= end:
            return None
        byte = buf[i]
        i += 1
        length += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            body_end = i + length
            return (first, i, body_end) if body_end <= end else None
        multiplier *= 128
    raise MalformedPacket("remaining length is encoded in more than four bytes")


def peek_remaining_length(buf: bytes | bytearray, pos: int) -> int | None:
    """The declared body length of the packet at ``pos`` (None while the header is partial).

    Lets a server refuse an oversize packet as soon as its header arrives instead of
    buffering a body it will reject.
    """
    length = 0
    multiplier = 1
    i = pos + 1
    for _ in range(4):
        if i >= len(buf):
            return None
        byte = buf[i]
        i += 1
        length += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            return length
        multiplier *= 128
    raise MalformedPacket("remaining length is encoded in more than four bytes")


# --------------------------------------------------------------------------------------------
# Field readers (bounds-checked)
# --------------------------------------------------------------------------------------------


def _u16(body: bytes, pos: int) -> int:
    if pos + 2 > len(body):
        raise MalformedPacket("packet ends inside a two-byte integer")
    return (body[pos] << 8) | body[pos + 1]


def _binary(body: bytes, pos: int) -> tuple[bytes, int]:
    n = _u16(body, pos)
    start = pos + 2
    end = start + n
    if end > len(body):
        raise MalformedPacket("packet ends inside a length-prefixed field")
    return body[start:end], end


def decode_utf8(raw: bytes) -> str:
    """A UTF-8 encoded string as [1.5.3] defines it: well formed, no U+0000."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPacket(f"string is not well-formed UTF-8 ({exc.reason})") from None
    if "\x00" in text:
        raise MalformedPacket("string contains the null character U+0000")
    return text


def _string(body: bytes, pos: int) -> tuple[str, int]:
    raw, end = _binary(body, pos)
    return decode_utf8(raw), end


def _packet_id(body: bytes, pos: int) -> int:
    pid = _u16(body, pos)
    if pid == 0:
        raise MalformedPacket("packet identifier 0 is not allowed [2.3.1-1]")
    return pid


def _utf8_field(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 65535:
        raise CodecError("string longer than 65,535 bytes cannot be encoded")
    return _U16.pack(len(raw)) + raw


def _binary_field(raw: bytes) -> bytes:
    if len(raw) > 65535:
        raise CodecError("binary field longer than 65,535 bytes cannot be encoded")
    return _U16.pack(len(raw)) + raw


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def decode_packet(first_byte: int, body: bytes, version: int = MQTT_311) -> Packet:
    """Decode one packet from its first byte and body (the bytes after the fixed header)."""
    ptype = first_byte >> 4
    flags = first_byte & 0x0F
    if ptype == PacketType.PUBLISH:
        return decode_publish(flags, body, version)
    if ptype < 1 or ptype > 14:
        raise MalformedPacket(f"packet type {ptype} is reserved")
    kind = _KINDS[ptype]
    if flags != _REQUIRED_FLAGS[kind]:
        raise MalformedPacket(f"{kind.name} has reserved fixed-header flags {flags:#x} [2.2.2]")
    if kind is PacketType.CONNECT:
        return decode_connect(body)
    if kind in (PacketType.PUBACK, PacketType.PUBREC, PacketType.PUBREL, PacketType.PUBCOMP):
        if len(body) != 2:
            raise MalformedPacket(f"{kind.name} must have a remaining length of 2")
        pid = _packet_id(body, 0)
        return _ACK_CLASSES[kind](pid)
    if kind is PacketType.SUBSCRIBE:
        return decode_subscribe(body)
    if kind is PacketType.UNSUBSCRIBE:
        return decode_unsubscribe(body)
    if kind in (PacketType.PINGREQ, PacketType.PINGRESP, PacketType.DISCONNECT):
        if body:
            raise MalformedPacket(f"{kind.name} must have a remaining length of 0")
        return _EMPTY_CLASSES[kind]()
    if kind is PacketType.CONNACK:
        if len(body) != 2:
            raise MalformedPacket("CONNACK must have a remaining length of 2")
        if body[0] & 0xFE:
            raise MalformedPacket("CONNACK acknowledge flags has reserved bits set")
        return ConnAck(bool(body[0] & 1), body[1])
    if kind is PacketType.SUBACK:
        pid = _packet_id(body, 0)
        codes = list(body[2:])
        if not codes:
            raise MalformedPacket("SUBACK has no return codes")
        for code in codes:
            if code not in (0, 1, 2, SUBACK_FAILURE):
                raise MalformedPacket(f"SUBACK return code {code:#x} is reserved [3.9.3-2]")
        return SubAck(pid, codes)
    # UNSUBACK is the only type left.
    if len(body) != 2:
        raise MalformedPacket("UNSUBACK must have a remaining length of 2")
    return UnsubAck(_packet_id(body, 0))


_KINDS = {kind.value: kind for kind in PacketType}  # avoids an enum construction per packet
_ACK_CLASSES: dict[PacketType, type[PubAck] | type[PubRec] | type[PubRel] | type[PubComp]] = {
    PacketType.PUBACK: PubAck,
    PacketType.PUBREC: PubRec,
    PacketType.PUBREL: PubRel,
    PacketType.PUBCOMP: PubComp,
}
_EMPTY_CLASSES: dict[PacketType, type[PingReq] | type[PingResp] | type[Disconnect]] = {
    PacketType.PINGREQ: PingReq,
    PacketType.PINGRESP: PingResp,
    PacketType.DISCONNECT: Disconnect,
}


def decode_publish(flags: int, body: bytes, version: int = MQTT_311) -> Publish:
    """Decode a PUBLISH body; ``flags`` is the low nibble of its first byte [3.3.1]."""
    qos = (flags >> 1) & 3
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3 [3.3.1-4]")
    dup = bool(flags & 8)
    if dup and qos == 0:
        raise MalformedPacket("PUBLISH with DUP set at QoS 0 [3.3.1-2]")
    n = len(body)
    if n < 2:
        raise MalformedPacket("PUBLISH ends before its topic name")
    tlen = (body[0] << 8) | body[1]
    pos = 2 + tlen
    if pos > n:
        raise MalformedPacket("PUBLISH ends inside its topic name")
    topic = decode_utf8(body[2:pos])
    packet_id = None
    if qos:
        packet_id = _packet_id(body, pos)
        pos += 2
    return Publish(topic, body[pos:], qos, bool(flags & 1), dup, packet_id)


def decode_connect(body: bytes) -> Connect:
    """Decode a CONNECT body [3.1]. Raises ``UnsupportedProtocol`` for an unknown level."""
    name, pos = _string(body, 0)
    if pos >= len(body):
        raise MalformedPacket("CONNECT ends before its protocol level")
    level = body[pos]
    if name not in ("MQTT", "MQIsdp"):
        raise MalformedPacket(f"unknown protocol name {name!r} [3.1.2-1]")
    if level not in (MQTT_31, MQTT_311) or PROTOCOL_NAMES[level] != name:
        raise UnsupportedProtocol(level)
    if pos + 4 > len(body):
        raise MalformedPacket("CONNECT ends inside its variable header")
    flags = body[pos + 1]
    if flags & 1:
        raise MalformedPacket("CONNECT flags reserved bit is set [3.1.2-3]")
    keep_alive = _u16(body, pos + 2)
    pos += 4
    client_id, pos = _string(body, pos)
    will = None
    will_flag = bool(flags & 0x04)
    will_qos = (flags >> 3) & 3
    will_retain = bool(flags & 0x20)
    if will_flag:
        if will_qos == 3:
            raise MalformedPacket("will QoS 3 [3.1.2-14]")
        will_topic, pos = _string(body, pos)
        will_payload, pos = _binary(body, pos)
        will = Will(will_topic, will_payload, will_qos, will_retain)
    elif will_qos or will_retain:
        raise MalformedPacket("will QoS or retain set without the will flag [3.1.2-11]")
    username = None
    password = None
    if flags & 0x80:
        username, pos = _string(body, pos)
    if flags & 0x40:
        if username is None:
            raise MalformedPacket("password given without a user name [3.1.2-22]")
        password, pos = _binary(body, pos)
    if pos != len(body):
        raise MalformedPacket("CONNECT has bytes after its payload")
    return Connect(client_id, bool(flags & 0x02), keep_alive, level, will, username, password)


class UnsupportedProtocol(CodecError):
    """A CONNECT for a protocol level this server does not speak [3.1.2-2]."""

    def __init__(self, level: int) -> None:
        super().__init__(f"unsupported MQTT protocol level {level}")
        self.level = level


def decode_subscribe(body: bytes) -> Subscribe:
    pid = _packet_id(body, 0)
    pos = 2
    topics: list[tuple[str, int]] = []
    while pos < len(body):
        topic, pos = _string(body, pos)
        if pos >= len(body):
            raise MalformedPacket("SUBSCRIBE ends before a requested QoS")
        options = body[pos]
        pos += 1
        if options & 0xFC or options == 3:
            raise MalformedPacket(f"SUBSCRIBE requested QoS byte {options:#x} is invalid [3.8.3-4]")
        topics.append((topic, options))
    if not topics:
        raise MalformedPacket("SUBSCRIBE without any topic filter [3.8.3-3]")
    return Subscribe(pid, topics)


def decode_unsubscribe(body: bytes) -> Unsubscribe:
    pid = _packet_id(body, 0)
    pos = 2
    topics: list[str] = []
    while pos < len(body):
        topic, pos = _string(body, pos)
        topics.append(topic)
    if not topics:
        raise MalformedPacket("UNSUBSCRIBE without any topic filter [3.10.3-2]")
    return Unsubscribe(pid, topics)


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------

PINGREQ = b"\xc0\x00"
PINGRESP = b"\xd0\x00"
DISCONNECT = b"\xe0\x00"


def encode_connack(session_present: bool, return_code: int) -> bytes:
    return bytes((0x20, 2, 1 if session_present else 0, return_code))


def encode_puback(packet_id: int) -> bytes:
    return bytes((0x40, 2, packet_id >> 8, packet_id & 0xFF))


def encode_pubrec(packet_id: int) -> bytes:
    return bytes((0x50, 2, packet_id >> 8, packet_id & 0xFF))


def encode_pubrel(packet_id: int) -> bytes:
    return bytes((0x62, 2, packet_id >> 8, packet_id & 0xFF))


def encode_pubcomp(packet_id: int) -> bytes:
    return bytes((0x70, 2, packet_id >> 8, packet_id & 0xFF))


def encode_suback(packet_id: int, return_codes: list[int]) -> bytes:
    return frame(0x90, _U16.pack(packet_id) + bytes(return_codes))


def encode_unsuback(packet_id: int) -> bytes:
    return bytes((0xB0, 2, packet_id >> 8, packet_id & 0xFF))


def publish_head(
    topic: bytes, payload_len: int, qos: int, retain: bool, dup: bool = False
) -> bytes:
    """Fixed header and topic of a PUBLISH: what precedes the packet id (QoS > 0) or payload.

    Split out so one PUBLISH can be written to many subscribers with only the two packet-id
    bytes differing per subscriber and the payload never copied.
    """
    remaining = 2 + len(topic) + payload_len + (2 if qos else 0)
    first = 0x30 | (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    return (
        bytes((first,)) + encode_remaining_length(remaining) + len(topic).to_bytes(2, "big") + topic
    )


def encode_publish(packet: Publish) -> bytes:
    topic = packet.topic.encode("utf-8")
    if len(topic) > 65535:
        raise CodecError("topic longer than 65,535 bytes cannot be encoded")
    head = publish_head(topic, len(packet.payload), packet.qos, packet.retain, packet.dup)
    if packet.qos:
        if not packet.packet_id:
            raise CodecError("a QoS 1 or 2 PUBLISH needs a packet identifier")
        return head + _U16.pack(packet.packet_id) + packet.payload
    return head + packet.payload


def encode_connect(packet: Connect) -> bytes:
    level = packet.protocol_level
    flags = 0
    if packet.clean_session:
        flags |= 0x02
    payload = _utf8_field(packet.client_id)
    if packet.will is not None:
        flags |= 0x04 | (packet.will.qos << 3) | (0x20 if packet.will.retain else 0)
        payload += _utf8_field(packet.will.topic) + _binary_field(packet.will.payload)
    if packet.username is not None:
        flags |= 0x80
        payload += _utf8_field(packet.username)
    if packet.password is not None:
        flags |= 0x40
        payload += _binary_field(packet.password)
    header = _utf8_field(PROTOCOL_NAMES[level]) + bytes((level, flags))
    return frame(0x10, header + _U16.pack(packet.keep_alive) + payload)


def encode_subscribe(packet: Subscribe) -> bytes:
    body = _U16.pack(packet.packet_id) + b"".join(
        _utf8_field(topic) + bytes((qos,)) for topic, qos in packet.topics
    )
    return frame(0x82, body)


def encode_unsubscribe(packet: Unsubscribe) -> bytes:
    body = _U16.pack(packet.packet_id) + b"".join(_utf8_field(t) for t in packet.topics)
    return frame(0xA2, body)


def encode_packet(packet: Packet) -> bytes:
    """Encode any packet (client or server side); used by tests, tools and the bench."""
    match packet:
        case Publish():
            return encode_publish(packet)
        case Connect():
            return encode_connect(packet)
        case ConnAck():
            return encode_connack(packet.session_present, packet.return_code)
        case PubAck():
            return encode_puback(packet.packet_id)
        case PubRec():
            return encode_pubrec(packet.packet_id)
        case PubRel():
            return encode_pubrel(packet.packet_id)
        case PubComp():
            return encode_pubcomp(packet.packet_id)
        case Subscribe():
            return encode_subscribe(packet)
        case SubAck():
            return encode_suback(packet.packet_id, packet.return_codes)
        case Unsubscribe():
            return encode_unsubscribe(packet)
        case UnsubAck():
            return encode_unsuback(packet.packet_id)
        case PingReq():
            return PINGREQ
        case PingResp():
            return PINGRESP
        case Disconnect():
            return DISCONNECT
    raise CodecError(f"cannot encode {packet!r}")  # pragma: no cover - exhaustive above


def decode_stream(data: bytes, version: int = MQTT_311) -> tuple[list[Packet], int]:
    """Decode every complete packet in ``data``; returns the packets and bytes consumed."""
    packets: list[Packet] = []
    pos = 0
    while (found := split_packet(data, pos)) is not None:
        first, start, end = found
        packets.append(decode_packet(first, bytes(data[start:end]), version))
        pos = end
    return packets, pos
