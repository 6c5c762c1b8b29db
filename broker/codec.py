"""MQTT packet encoding and decoding: pure functions over bytes, no IO.

Covers MQTT 3.1 (protocol level 3), 3.1.1 (level 4) and 5.0 (level 5). Every function takes
the protocol level where the wire format depends on it; the 3.1/3.1.1 paths come first and are
untouched by MQTT 5, whose differences (properties after the variable header, reason codes in
every acknowledgement, AUTH) live in separate ``_v5`` functions. Properties themselves are
``broker.properties``; reason codes and the errors are ``broker.reason_codes``.

The decoder trusts nothing: every length is checked against the packet's bounds. Bytes that
cannot be parsed raise ``MalformedPacket``; an MQTT 5 packet that parses but breaks a protocol
rule raises ``ProtocolError``; a CONNECT for an unknown level raises ``UnsupportedProtocol``.
All three are ``CodecError``, the only exception the decoder may raise, and each carries the
``reason_code`` an MQTT 5 server answers with.
Spec references are to MQTT 3.1.1 (OASIS, 2014) in the 3.1.1 code and to MQTT 5.0 (OASIS,
2019) in the ``_v5`` code, section numbers in brackets.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from broker.properties import (
    WILL_PROPERTIES,
    Properties,
    decode_properties_deferred,
    encode_properties,
    encode_property_bytes,
    encode_varint,
)
from broker.properties import decode_utf8 as decode_utf8
from broker.reason_codes import VALID_IN, ReasonCode, describe
from broker.reason_codes import CodecError as CodecError
from broker.reason_codes import MalformedPacket as MalformedPacket
from broker.reason_codes import ProtocolError as ProtocolError

MAX_REMAINING_LENGTH = 268_435_455  # [2.2.3] four bytes of variable-length integer
MQTT_31 = 3
MQTT_311 = 4
MQTT_5 = 5
PROTOCOL_NAMES = {MQTT_31: "MQIsdp", MQTT_311: "MQTT", MQTT_5: "MQTT"}

_U16 = struct.Struct(">H")


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
    AUTH = 15  # MQTT 5 only [2.1.2]; reserved in 3.1.1


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
    PacketType.AUTH: 0,  # [3.15.1-1]
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
    properties: Properties = field(default_factory=Properties)  # MQTT 5 [3.1.3.2]


@dataclass(slots=True)
class Connect:
    client_id: str
    clean_session: bool = True  # Clean Start in MQTT 5 [3.1.2.4]
    keep_alive: int = 60
    protocol_level: int = MQTT_311
    will: Will | None = None
    username: str | None = None
    password: bytes | None = None
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class ConnAck:
    session_present: bool
    return_code: int  # the Connect Reason Code in MQTT 5 [3.2.2.2]
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class PubAck:
    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class PubRec:
    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class PubRel:
    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class PubComp:
    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Subscribe:
    packet_id: int
    # (filter, byte): the requested QoS in 3.1.1; in MQTT 5 the whole Subscription Options
    # byte [3.8.3.1], see ``subscription_options``.
    topics: list[tuple[str, int]] = field(default_factory=list)
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class SubAck:
    packet_id: int
    return_codes: list[int] = field(default_factory=list)  # reason codes in MQTT 5 [3.9.3]
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Unsubscribe:
    packet_id: int
    topics: list[str] = field(default_factory=list)
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class UnsubAck:
    packet_id: int
    reason_codes: list[int] = field(default_factory=list)  # MQTT 5 only [3.11.3]
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class PingReq:
    pass


@dataclass(slots=True)
class PingResp:
    pass


@dataclass(slots=True)
class Disconnect:
    reason_code: int = 0  # MQTT 5 only [3.14.2.1]
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Auth:
    """MQTT 5 enhanced authentication exchange [3.15]."""

    reason_code: int = 0
    properties: Properties = field(default_factory=Properties)


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
    | Auth
)


def subscription_options(options: int) -> tuple[int, bool, bool, int]:
    """Split an MQTT 5 Subscription Options byte [3.8.3.1].

    Returns ``(qos, no_local, retain_as_published, retain_handling)``.
    """
    return options & 3, bool(options & 4), bool(options & 8), (options >> 4) & 3


def make_subscription_options(
    qos: int, no_local: bool = False, retain_as_published: bool = False, retain_handling: int = 0
) -> int:
    """The Subscription Options byte [3.8.3.1] for these options."""
    if not 0 <= qos <= 2:
        raise CodecError(f"maximum QoS {qos} is not 0, 1 or 2 [3.8.3.1]")
    if not 0 <= retain_handling <= 2:
        raise CodecError(f"Retain Handling {retain_handling} is not 0, 1 or 2 [3.8.3.1]")
    return qos | (4 if no_local else 0) | (8 if retain_as_published else 0) | (retain_handling << 4)


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
    if version == MQTT_5:
        return _decode_v5(ptype, flags, body)
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
    if version == MQTT_5:
        # [3.3.2.3] the properties follow the packet identifier.
        props, pos, problem = decode_properties_deferred(body, pos, PacketType.PUBLISH)
        if problem is not None:
            raise problem
        if not topic and props.topic_alias is None:
            raise ProtocolError("PUBLISH with an empty Topic Name and no Topic Alias [3.3.2.1]")
        return Publish(topic, body[pos:], qos, bool(flags & 1), dup, packet_id, props)
    return Publish(topic, body[pos:], qos, bool(flags & 1), dup, packet_id)


def decode_connect(body: bytes) -> Connect:
    """Decode a CONNECT body [3.1]. Raises ``UnsupportedProtocol`` for an unknown level."""
    name, pos = _string(body, 0)
    if pos >= len(body):
        raise MalformedPacket("CONNECT ends before its protocol level")
    level = body[pos]
    if name not in ("MQTT", "MQIsdp"):
        raise MalformedPacket(f"unknown protocol name {name!r} [3.1.2-1]")
    if level not in (MQTT_31, MQTT_311, MQTT_5) or PROTOCOL_NAMES[level] != name:
        raise UnsupportedProtocol(level)
    if pos + 4 > len(body):
        raise MalformedPacket("CONNECT ends inside its variable header")
    flags = body[pos + 1]
    if flags & 1:
        raise MalformedPacket("CONNECT flags reserved bit is set [3.1.2-3]")
    keep_alive = _u16(body, pos + 2)
    pos += 4
    if level == MQTT_5:
        return _decode_connect_v5(body, pos, flags, keep_alive)
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

    reason_code: int = ReasonCode.UNSUPPORTED_PROTOCOL_VERSION  # MQTT 5 [3.1.2-2]

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
# Decoding MQTT 5 (everything but PUBLISH, which shares ``decode_publish``)
# --------------------------------------------------------------------------------------------
#
# A packet that cannot be parsed is Malformed even if it also breaks a protocol rule [1.2]: each
# decoder below parses the whole packet first and raises the Protocol Error it found after.


def _check_reason(kind: PacketType, code: int) -> None:
    """[3.2.2-8, 3.4.2-1 ... 3.15.2-1]: a sender uses only its packet type's reason codes."""
    if code not in VALID_IN[kind]:
        raise ProtocolError(f"reason code {describe(code)} is not allowed in {kind.name} [2.4]")


def _decode_v5(ptype: int, flags: int, body: bytes) -> Packet:
    if ptype == 0:
        raise MalformedPacket("packet type 0 is reserved [2.1.2]")
    kind = _KINDS[ptype]
    if flags != _REQUIRED_FLAGS[kind]:
        raise MalformedPacket(f"{kind.name} has reserved fixed-header flags {flags:#x} [2.1.3]")
    if kind is PacketType.CONNECT:
        return decode_connect(body)
    if kind in _ACK_CLASSES:
        return _decode_ack_v5(kind, body)
    if kind is PacketType.SUBSCRIBE:
        return _decode_subscribe_v5(body)
    if kind is PacketType.UNSUBSCRIBE:
        return _decode_unsubscribe_v5(body)
    if kind is PacketType.PINGREQ or kind is PacketType.PINGRESP:
        if body:
            raise MalformedPacket(f"{kind.name} must have a remaining length of 0")
        return _EMPTY_CLASSES[kind]()
    if kind is PacketType.DISCONNECT:
        return _decode_disconnect_v5(body)
    if kind is PacketType.AUTH:
        return _decode_auth(body)
    if kind is PacketType.CONNACK:
        return _decode_connack_v5(body)
    # SUBACK and UNSUBACK are left: packet id, properties, one reason code per filter.
    pid = _packet_id(body, 0)
    props, pos, problem = decode_properties_deferred(body, 2, kind)
    codes = list(body[pos:])
    if not codes:
        raise MalformedPacket(f"{kind.name} has no reason codes [3.9.3, 3.11.3]")
    if problem is not None:
        raise problem
    for code in codes:
        _check_reason(kind, code)
    if kind is PacketType.SUBACK:
        return SubAck(pid, codes, props)
    return UnsubAck(pid, codes, props)


def _decode_ack_v5(kind: PacketType, body: bytes) -> PubAck | PubRec | PubRel | PubComp:
    n = len(body)
    if n < 2:
        raise MalformedPacket(f"{kind.name} must have a remaining length of at least 2")
    pid = _packet_id(body, 0)
    cls = _ACK_CLASSES[kind]
    if n == 2:  # [3.4.2.1] remaining length 2: Success and no properties
        return cls(pid)
    code = body[2]
    if n == 3:  # [3.4.2.2.1] remaining length under 4: no property length
        _check_reason(kind, code)
        return cls(pid, code)
    props, end, problem = decode_properties_deferred(body, 3, kind)
    if end != n:
        raise MalformedPacket(f"{kind.name} has bytes after its properties")
    if problem is not None:
        raise problem
    _check_reason(kind, code)
    return cls(pid, code, props)


def _decode_connack_v5(body: bytes) -> ConnAck:
    if len(body) < 2:
        raise MalformedPacket("CONNACK ends before its reason code [3.2.2]")
    if body[0] & 0xFE:
        raise MalformedPacket("CONNACK acknowledge flags has reserved bits set [3.2.2-1]")
    code = body[1]
    props, end, problem = decode_properties_deferred(body, 2, PacketType.CONNACK)
    if end != len(body):
        raise MalformedPacket("CONNACK has bytes after its properties")
    if problem is not None:
        raise problem
    _check_reason(PacketType.CONNACK, code)
    return ConnAck(bool(body[0] & 1), code, props)


def _decode_connect_v5(body: bytes, pos: int, flags: int, keep_alive: int) -> Connect:
    """The rest of an MQTT 5 CONNECT after its keep alive [3.1.2.11, 3.1.3]."""
    props, pos, problem = decode_properties_deferred(body, pos, PacketType.CONNECT)
    client_id, pos = _string(body, pos)
    will = None
    will_qos = (flags >> 3) & 3
    will_retain = bool(flags & 0x20)
    if flags & 0x04:
        if will_qos == 3:
            raise MalformedPacket("will QoS 3 [3.1.2-12]")
        # [3.1.3-1] the will properties come first, then the will topic and payload.
        will_props, pos, will_problem = decode_properties_deferred(body, pos, WILL_PROPERTIES)
        problem = problem or will_problem
        will_topic, pos = _string(body, pos)
        will_payload, pos = _binary(body, pos)
        will = Will(will_topic, will_payload, will_qos, will_retain, will_props)
    elif will_qos or will_retain:
        raise MalformedPacket("will QoS or retain set without the will flag [3.1.2-11, 3.1.2-13]")
    username = None
    password = None
    if flags & 0x80:
        username, pos = _string(body, pos)
    if flags & 0x40:  # [3.1.2.9] MQTT 5 allows a password without a user name
        password, pos = _binary(body, pos)
    if pos != len(body):
        raise MalformedPacket("CONNECT has bytes after its payload")
    if problem is not None:
        raise problem
    if props.authentication_data is not None and props.authentication_method is None:
        raise ProtocolError("Authentication Data without an Authentication Method [3.1.2.11.10]")
    return Connect(
        client_id, bool(flags & 0x02), keep_alive, MQTT_5, will, username, password, props
    )


def _decode_subscribe_v5(body: bytes) -> Subscribe:
    pid = _packet_id(body, 0)
    props, pos, problem = decode_properties_deferred(body, 2, PacketType.SUBSCRIBE)
    n = len(body)
    topics: list[tuple[str, int]] = []
    while pos < n:
        topic, pos = _string(body, pos)
        if pos >= n:
            raise MalformedPacket("SUBSCRIBE ends before a subscription options byte")
        options = body[pos]
        pos += 1
        if options & 0xC0:
            raise MalformedPacket(
                f"SUBSCRIBE options {options:#04x} set reserved bits 6-7 [3.8.3-5]"
            )
        if problem is None:
            if options & 3 == 3:
                problem = ProtocolError("SUBSCRIBE with Maximum QoS 3 [3.8.3.1]")
            elif options & 0x30 == 0x30:
                problem = ProtocolError("SUBSCRIBE with Retain Handling 3 [3.8.3.1]")
        topics.append((topic, options))
    if problem is not None:
        raise problem
    if not topics:
        raise ProtocolError("SUBSCRIBE without any topic filter [3.8.3-2]")
    return Subscribe(pid, topics, props)


def _decode_unsubscribe_v5(body: bytes) -> Unsubscribe:
    pid = _packet_id(body, 0)
    props, pos, problem = decode_properties_deferred(body, 2, PacketType.UNSUBSCRIBE)
    topics: list[str] = []
    while pos < len(body):
        topic, pos = _string(body, pos)
        topics.append(topic)
    if problem is not None:
        raise problem
    if not topics:
        raise ProtocolError("UNSUBSCRIBE without any topic filter [3.10.3-2]")
    return Unsubscribe(pid, topics, props)


def _decode_disconnect_v5(body: bytes) -> Disconnect:
    n = len(body)
    if not n:  # [3.14.2.1] remaining length 0: Normal disconnection
        return Disconnect()
    code = body[0]
    if n == 1:  # [3.14.2.2.1] remaining length under 2: no properties
        _check_reason(PacketType.DISCONNECT, code)
        return Disconnect(code)
    props, end, problem = decode_properties_deferred(body, 1, PacketType.DISCONNECT)
    if end != n:
        raise MalformedPacket("DISCONNECT has bytes after its properties")
    if problem is not None:
        raise problem
    _check_reason(PacketType.DISCONNECT, code)
    return Disconnect(code, props)


def _decode_auth(body: bytes) -> Auth:
    n = len(body)
    if not n:  # [3.15.2.1] remaining length 0: Success and no properties
        return Auth()
    # Otherwise a reason code and a property length, which AUTH never omits [3.15.2.2.1].
    code = body[0]
    props, end, problem = decode_properties_deferred(body, 1, PacketType.AUTH)
    if end != n:
        raise MalformedPacket("AUTH has bytes after its properties")
    if problem is not None:
        raise problem
    _check_reason(PacketType.AUTH, code)
    if props.authentication_method is None:
        raise ProtocolError("AUTH without an Authentication Method [3.15.2.2.2]")
    return Auth(code, props)


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
    """Encode a CONNECT in the format of its ``protocol_level``."""
    level = packet.protocol_level
    if level == MQTT_5:
        return _encode_connect_v5(packet)
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


def encode_packet(packet: Packet, version: int = MQTT_311) -> bytes:
    """Encode any packet (client or server side); used by tests, tools and the bench.

    ``version`` picks the wire format (MQTT 5 or 3.1/3.1.1, where MQTT 5 fields such as
    properties and reason codes are left out); a CONNECT is encoded for its own
    ``protocol_level``.
    """
    if version == MQTT_5:
        return _encode_v5(packet)
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
        case Auth():
            raise CodecError("AUTH exists only in MQTT 5 [2.1.2]")
    raise CodecError(f"cannot encode {packet!r}")  # pragma: no cover - exhaustive above


# --------------------------------------------------------------------------------------------
# Encoding MQTT 5
# --------------------------------------------------------------------------------------------
#
# The encoders refuse (``CodecError``) what the MQTT 5 decoder would refuse: properties not
# allowed in the packet, reason codes of another packet type, forbidden values.

AUTH_SUCCESS = b"\xf0\x00"  # [3.15.2.1] Success with no properties: remaining length 0
_ACK_FIRST_BYTES = {4: 0x40, 5: 0x50, 6: 0x62, 7: 0x70}  # [3.6.1-1] PUBREL's flags are 0010


def _require_reason(packet_type: int, code: int) -> None:
    if code not in VALID_IN[packet_type]:
        raise CodecError(
            f"reason code {describe(code)} is not allowed in {PacketType(packet_type).name} [2.4]"
        )


def encode_connack_v5(session_present: bool, reason_code: int, props: Properties) -> bytes:
    """An MQTT 5 CONNACK [3.2]: acknowledge flags, Connect Reason Code, properties."""
    _require_reason(2, reason_code)
    flags = 1 if session_present else 0
    return frame(0x20, bytes((flags, reason_code)) + encode_properties(props, 2))


def encode_ack_v5(
    packet_type: int, packet_id: int, reason_code: int = 0, props: Properties | None = None
) -> bytes:
    """An MQTT 5 PUBACK, PUBREC, PUBREL or PUBCOMP (``packet_type`` 4 to 7) [3.4-3.7].

    In the shortest form the spec allows: the packet id alone for Success without properties
    [3.4.2.1], the reason code without a property length when there are no properties
    [3.4.2.2.1].
    """
    first = _ACK_FIRST_BYTES.get(packet_type)
    if first is None:
        raise CodecError(f"packet type {packet_type} is not PUBACK, PUBREC, PUBREL or PUBCOMP")
    raw = b"" if props is None else encode_property_bytes(props, packet_type)
    if not raw:
        if not reason_code:
            return bytes((first, 2, packet_id >> 8, packet_id & 0xFF))
        _require_reason(packet_type, reason_code)
        return bytes((first, 3, packet_id >> 8, packet_id & 0xFF, reason_code))
    _require_reason(packet_type, reason_code)
    return frame(
        first, _U16.pack(packet_id) + bytes((reason_code,)) + encode_varint(len(raw)) + raw
    )


def encode_suback_v5(packet_id: int, codes: list[int], props: Properties | None = None) -> bytes:
    """An MQTT 5 SUBACK [3.9]: one Subscribe Reason Code per filter, in order [3.9.3-1]."""
    return _encode_ack_list(0x90, 9, packet_id, codes, props)


def encode_unsuback_v5(packet_id: int, codes: list[int], props: Properties | None = None) -> bytes:
    """An MQTT 5 UNSUBACK [3.11]: one Unsubscribe Reason Code per filter, in order [3.11.3-1]."""
    return _encode_ack_list(0xB0, 11, packet_id, codes, props)


def _encode_ack_list(
    first: int, packet_type: int, packet_id: int, codes: list[int], props: Properties | None
) -> bytes:
    if not codes:
        raise CodecError(f"{PacketType(packet_type).name} needs at least one reason code")
    for code in codes:
        _require_reason(packet_type, code)
    block = b"\x00" if props is None else encode_properties(props, packet_type)
    return frame(first, _U16.pack(packet_id) + block + bytes(codes))


def encode_disconnect_v5(reason_code: int = 0, props: Properties | None = None) -> bytes:
    """An MQTT 5 DISCONNECT [3.14], as short as the spec allows [3.14.2.1, 3.14.2.2.1]."""
    raw = b"" if props is None else encode_property_bytes(props, 14)
    if not raw:
        if not reason_code:
            return DISCONNECT
        _require_reason(14, reason_code)
        return bytes((0xE0, 1, reason_code))
    _require_reason(14, reason_code)
    return frame(0xE0, bytes((reason_code,)) + encode_varint(len(raw)) + raw)


def encode_auth(reason_code: int = 0, props: Properties | None = None) -> bytes:
    """An AUTH [3.15]; any but the empty Success form needs an Authentication Method."""
    raw = b"" if props is None else encode_property_bytes(props, 15)
    if not raw and not reason_code:
        return AUTH_SUCCESS
    _require_reason(15, reason_code)
    if props is None or props.authentication_method is None:
        raise CodecError("AUTH needs an Authentication Method [3.15.2.2.2]")
    return frame(0xF0, bytes((reason_code,)) + encode_varint(len(raw)) + raw)


def publish_v5_parts(
    topic: bytes, payload_len: int, qos: int, retain: bool, dup: bool, props: bytes
) -> tuple[bytes, bytes]:
    """The two pieces of an MQTT 5 PUBLISH around its packet id [3.3].

    ``props`` is encoded properties without their length (cached ones concatenated with
    per-subscriber ones such as subscription identifiers or a topic alias). Returns ``(head,
    block)``: the fixed header and topic, and the property length followed by ``props``; the
    packet is ``head + [packet id if qos] + block + payload``.
    """
    n = len(props)
    block = bytes((n,)) + props if n < 128 else encode_varint(n) + props
    remaining = 2 + len(topic) + (2 if qos else 0) + len(block) + payload_len
    first = 0x30 | (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    head = (
        bytes((first,)) + encode_remaining_length(remaining) + len(topic).to_bytes(2, "big") + topic
    )
    return head, block


def _encode_publish_v5(packet: Publish) -> bytes:
    topic = packet.topic.encode("utf-8")
    if len(topic) > 65535:
        raise CodecError("topic longer than 65,535 bytes cannot be encoded")
    props = packet.properties
    if not topic and props.topic_alias is None:
        raise CodecError("a PUBLISH with an empty topic needs a Topic Alias [3.3.2.1]")
    head, block = publish_v5_parts(
        topic,
        len(packet.payload),
        packet.qos,
        packet.retain,
        packet.dup,
        encode_property_bytes(props, 3),
    )
    if packet.qos:
        if not packet.packet_id:
            raise CodecError("a QoS 1 or 2 PUBLISH needs a packet identifier")
        return head + _U16.pack(packet.packet_id) + block + packet.payload
    return head + block + packet.payload


def _encode_connect_v5(packet: Connect) -> bytes:
    props = packet.properties
    if props.authentication_data is not None and props.authentication_method is None:
        raise CodecError("Authentication Data needs an Authentication Method [3.1.2.11.10]")
    flags = 0x02 if packet.clean_session else 0
    # [3.1.3-1] client id, will properties, will topic, will payload, user name, password.
    payload = _utf8_field(packet.client_id)
    will = packet.will
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        payload += (
            encode_properties(will.properties, WILL_PROPERTIES)
            + _utf8_field(will.topic)
            + _binary_field(will.payload)
        )
    if packet.username is not None:
        flags |= 0x80
        payload += _utf8_field(packet.username)
    if packet.password is not None:  # [3.1.2.9] allowed without a user name
        flags |= 0x40
        payload += _binary_field(packet.password)
    header = _utf8_field("MQTT") + bytes((MQTT_5, flags)) + _U16.pack(packet.keep_alive)
    return frame(0x10, header + encode_properties(props, 1) + payload)


def _options_byte(options: int) -> bytes:
    if options & 0xC0 or options & 3 == 3 or options & 0x30 == 0x30:
        raise CodecError(f"subscription options {options:#04x} are invalid [3.8.3.1]")
    return bytes((options,))


def _encode_subscribe_v5(packet: Subscribe) -> bytes:
    if not packet.topics:
        raise CodecError("SUBSCRIBE needs at least one topic filter [3.8.3-2]")
    body = (
        _U16.pack(packet.packet_id)
        + encode_properties(packet.properties, 8)
        + b"".join(_utf8_field(topic) + _options_byte(options) for topic, options in packet.topics)
    )
    return frame(0x82, body)


def _encode_unsubscribe_v5(packet: Unsubscribe) -> bytes:
    if not packet.topics:
        raise CodecError("UNSUBSCRIBE needs at least one topic filter [3.10.3-2]")
    body = (
        _U16.pack(packet.packet_id)
        + encode_properties(packet.properties, 10)
        + b"".join(_utf8_field(t) for t in packet.topics)
    )
    return frame(0xA2, body)


def _encode_v5(packet: Packet) -> bytes:
    match packet:
        case Publish():
            return _encode_publish_v5(packet)
        case Connect():
            return encode_connect(packet)
        case ConnAck():
            return encode_connack_v5(packet.session_present, packet.return_code, packet.properties)
        case PubAck() | PubRec() | PubRel() | PubComp():
            return encode_ack_v5(
                _ACK_TYPES[type(packet)], packet.packet_id, packet.reason_code, packet.properties
            )
        case Subscribe():
            return _encode_subscribe_v5(packet)
        case SubAck():
            return encode_suback_v5(packet.packet_id, packet.return_codes, packet.properties)
        case Unsubscribe():
            return _encode_unsubscribe_v5(packet)
        case UnsubAck():
            return encode_unsuback_v5(packet.packet_id, packet.reason_codes, packet.properties)
        case PingReq():
            return PINGREQ
        case PingResp():
            return PINGRESP
        case Disconnect():
            return encode_disconnect_v5(packet.reason_code, packet.properties)
        case Auth():
            return encode_auth(packet.reason_code, packet.properties)
    raise CodecError(f"cannot encode {packet!r}")  # pragma: no cover - exhaustive above


_ACK_TYPES: dict[type, int] = {PubAck: 4, PubRec: 5, PubRel: 6, PubComp: 7}


def decode_stream(data: bytes, version: int = MQTT_311) -> tuple[list[Packet], int]:
    """Decode every complete packet in ``data``; returns the packets and bytes consumed."""
    packets: list[Packet] = []
    pos = 0
    while (found := split_packet(data, pos)) is not None:
        first, start, end = found
        packets.append(decode_packet(first, bytes(data[start:end]), version))
        pos = end
    return packets, pos
