"""MQTT 5 properties [2.2.2]: the ``Properties`` value object and its wire encoding.

A property block is a Variable Byte Integer length followed by properties, each an identifier
and a value of a fixed data type [1.5]. Which identifiers a packet may carry is fixed by the
table of [2.2.2.2]; this module enforces it in both directions, so ``codec`` never sees a
property that does not belong where it is.

Also here are the data-type primitives both this module and ``codec`` read with (UTF-8 strings
[1.5.4] and Variable Byte Integers [1.5.5]), since ``codec`` builds on this module, not the
other way round.

Decoding trusts nothing: every read is bounded by the end of the property block. Bytes that
cannot be parsed raise ``MalformedPacket``; a block that parses but breaks a rule (a property
not allowed in the packet, a duplicate, a forbidden value) raises ``ProtocolError``.
Spec references are to MQTT Version 5.0 (OASIS, 2019), section numbers in brackets.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from broker.reason_codes import CodecError, MalformedPacket, ProtocolError, ReasonCode

MAX_VARINT = 268_435_455  # [1.5.5] four bytes of seven bits
MAX_U32 = 0xFFFF_FFFF

# The packet-type number ``encode_properties``/``decode_properties`` take for the Will
# Properties of a CONNECT payload [3.1.3.2]; 0 is no packet type, so it cannot clash.
WILL_PROPERTIES = 0
_CONNECT, _CONNACK, _PUBLISH, _PUBACK, _PUBREC, _PUBREL, _PUBCOMP = 1, 2, 3, 4, 5, 6, 7
_SUBSCRIBE, _SUBACK, _UNSUBSCRIBE, _UNSUBACK, _DISCONNECT, _AUTH = 8, 9, 10, 11, 14, 15

_WHERE = {
    WILL_PROPERTIES: "Will Properties",
    _CONNECT: "CONNECT",
    _CONNACK: "CONNACK",
    _PUBLISH: "PUBLISH",
    _PUBACK: "PUBACK",
    _PUBREC: "PUBREC",
    _PUBREL: "PUBREL",
    _PUBCOMP: "PUBCOMP",
    _SUBSCRIBE: "SUBSCRIBE",
    _SUBACK: "SUBACK",
    _UNSUBSCRIBE: "UNSUBSCRIBE",
    _UNSUBACK: "UNSUBACK",
    12: "PINGREQ",
    13: "PINGRESP",
    _DISCONNECT: "DISCONNECT",
    _AUTH: "AUTH",
}


@dataclass(slots=True, repr=False)
class Properties:
    """The properties of one packet (or of a will), ``None``/empty where absent.

    Field comments give the identifier and data type [2.2.2.2]. User properties keep their
    order and may repeat [3.3.2-18]; subscription identifiers may repeat in PUBLISH only.
    """

    payload_format_indicator: int | None = None  # 0x01 byte 0/1
    message_expiry_interval: int | None = None  # 0x02 four-byte integer
    content_type: str | None = None  # 0x03 UTF-8 string
    response_topic: str | None = None  # 0x08 UTF-8 string, a topic name
    correlation_data: bytes | None = None  # 0x09 binary data
    subscription_identifiers: list[int] = field(default_factory=list)  # 0x0B varint 1..max
    session_expiry_interval: int | None = None  # 0x11 four-byte integer
    assigned_client_identifier: str | None = None  # 0x12 UTF-8 string
    server_keep_alive: int | None = None  # 0x13 two-byte integer
    authentication_method: str | None = None  # 0x15 UTF-8 string
    authentication_data: bytes | None = None  # 0x16 binary data
    request_problem_information: int | None = None  # 0x17 byte 0/1
    will_delay_interval: int | None = None  # 0x18 four-byte integer
    request_response_information: int | None = None  # 0x19 byte 0/1
    response_information: str | None = None  # 0x1A UTF-8 string
    server_reference: str | None = None  # 0x1C UTF-8 string
    reason_string: str | None = None  # 0x1F UTF-8 string
    receive_maximum: int | None = None  # 0x21 two-byte integer, not 0
    topic_alias_maximum: int | None = None  # 0x22 two-byte integer
    topic_alias: int | None = None  # 0x23 two-byte integer, not 0
    maximum_qos: int | None = None  # 0x24 byte 0/1
    retain_available: int | None = None  # 0x25 byte 0/1
    user_properties: list[tuple[str, str]] = field(default_factory=list)  # 0x26 string pairs
    maximum_packet_size: int | None = None  # 0x27 four-byte integer, not 0
    wildcard_subscription_available: int | None = None  # 0x28 byte 0/1
    subscription_identifier_available: int | None = None  # 0x29 byte 0/1
    shared_subscription_available: int | None = None  # 0x2A byte 0/1

    def __repr__(self) -> str:
        # Only what is set: 27 fields of None would bury the one that matters in a test diff.
        shown = [
            f"{spec.name}={value!r}"
            for spec, value in zip(_SPECS, _ALL_VALUES(self), strict=True)
            if value is not None and value != []
        ]
        return f"Properties({', '.join(shown)})"


# --------------------------------------------------------------------------------------------
# The property table [2.2.2.2]
# --------------------------------------------------------------------------------------------

_BYTE, _U16, _U32, _VARINT, _UTF8, _BINARY, _PAIR = range(7)


class _Spec(NamedTuple):
    ident: int
    name: str  # the Properties field
    title: str  # the spec's name, for messages
    kind: int
    allowed: int  # bit n set: allowed in packet type n (bit 0: Will Properties)
    boolean: bool = False  # only 0 or 1 may be sent
    nonzero: bool = False  # 0 is a Protocol Error


def _mask(*packet_types: int) -> int:
    bits = 0
    for packet_type in packet_types:
        bits |= 1 << packet_type
    return bits


_ACKS = (_PUBACK, _PUBREC, _PUBREL, _PUBCOMP)
_MESSAGE = _mask(_PUBLISH, WILL_PROPERTIES)

PAYLOAD_FORMAT_INDICATOR = 0x01
SUBSCRIPTION_IDENTIFIER = 0x0B
RESPONSE_TOPIC = 0x08
TOPIC_ALIAS = 0x23
USER_PROPERTY = 0x26

# In identifier order, which is also the order the encoder writes them in.
_SPECS = (
    _Spec(0x01, "payload_format_indicator", "Payload Format Indicator", _BYTE, _MESSAGE, True),
    _Spec(0x02, "message_expiry_interval", "Message Expiry Interval", _U32, _MESSAGE),
    _Spec(0x03, "content_type", "Content Type", _UTF8, _MESSAGE),
    _Spec(0x08, "response_topic", "Response Topic", _UTF8, _MESSAGE),
    _Spec(0x09, "correlation_data", "Correlation Data", _BINARY, _MESSAGE),
    _Spec(
        0x0B,
        "subscription_identifiers",
        "Subscription Identifier",
        _VARINT,
        _mask(_PUBLISH, _SUBSCRIBE),
        nonzero=True,  # [3.8.2.1.2]
    ),
    _Spec(
        0x11,
        "session_expiry_interval",
        "Session Expiry Interval",
        _U32,
        _mask(_CONNECT, _CONNACK, _DISCONNECT),
    ),
    _Spec(0x12, "assigned_client_identifier", "Assigned Client Identifier", _UTF8, _mask(_CONNACK)),
    _Spec(0x13, "server_keep_alive", "Server Keep Alive", _U16, _mask(_CONNACK)),
    _Spec(
        0x15,
        "authentication_method",
        "Authentication Method",
        _UTF8,
        _mask(_CONNECT, _CONNACK, _AUTH),
    ),
    _Spec(
        0x16,
        "authentication_data",
        "Authentication Data",
        _BINARY,
        _mask(_CONNECT, _CONNACK, _AUTH),
    ),
    _Spec(
        0x17,
        "request_problem_information",
        "Request Problem Information",
        _BYTE,
        _mask(_CONNECT),
        boolean=True,  # [3.1.2.11.7]
    ),
    _Spec(0x18, "will_delay_interval", "Will Delay Interval", _U32, _mask(WILL_PROPERTIES)),
    _Spec(
        0x19,
        "request_response_information",
        "Request Response Information",
        _BYTE,
        _mask(_CONNECT),
        boolean=True,  # [3.1.2.11.6]
    ),
    _Spec(0x1A, "response_information", "Response Information", _UTF8, _mask(_CONNACK)),
    _Spec(0x1C, "server_reference", "Server Reference", _UTF8, _mask(_CONNACK, _DISCONNECT)),
    _Spec(
        0x1F,
        "reason_string",
        "Reason String",
        _UTF8,
        _mask(_CONNACK, *_ACKS, _SUBACK, _UNSUBACK, _DISCONNECT, _AUTH),
    ),
    _Spec(
        0x21,
        "receive_maximum",
        "Receive Maximum",
        _U16,
        _mask(_CONNECT, _CONNACK),
        nonzero=True,  # [3.1.2.11.3, 3.2.2.3.3]
    ),
    _Spec(0x22, "topic_alias_maximum", "Topic Alias Maximum", _U16, _mask(_CONNECT, _CONNACK)),
    _Spec(0x23, "topic_alias", "Topic Alias", _U16, _mask(_PUBLISH), nonzero=True),  # [3.3.2-8]
    _Spec(0x24, "maximum_qos", "Maximum QoS", _BYTE, _mask(_CONNACK), boolean=True),
    _Spec(0x25, "retain_available", "Retain Available", _BYTE, _mask(_CONNACK), boolean=True),
    _Spec(
        0x26,
        "user_properties",
        "User Property",
        _PAIR,
        _mask(
            WILL_PROPERTIES,
            _CONNECT,
            _CONNACK,
            _PUBLISH,
            *_ACKS,
            _SUBSCRIBE,
            _SUBACK,
            _UNSUBSCRIBE,
            _UNSUBACK,
            _DISCONNECT,
            _AUTH,
        ),
    ),
    _Spec(
        0x27,
        "maximum_packet_size",
        "Maximum Packet Size",
        _U32,
        _mask(_CONNECT, _CONNACK),
        nonzero=True,  # [3.1.2.11.4, 3.2.2.3.6]
    ),
    _Spec(
        0x28,
        "wildcard_subscription_available",
        "Wildcard Subscription Available",
        _BYTE,
        _mask(_CONNACK),
        boolean=True,
    ),
    _Spec(
        0x29,
        "subscription_identifier_available",
        "Subscription Identifier Available",
        _BYTE,
        _mask(_CONNACK),
        boolean=True,
    ),
    _Spec(
        0x2A,
        "shared_subscription_available",
        "Shared Subscription Available",
        _BYTE,
        _mask(_CONNACK),
        boolean=True,
    ),
)
_BY_ID: tuple[_Spec | None, ...] = tuple(
    next((spec for spec in _SPECS if spec.ident == i), None) for i in range(256)
)
_SUBSCRIPTION_IDENTIFIER_SPEC = next(s for s in _SPECS if s.ident == SUBSCRIPTION_IDENTIFIER)
_ALL_VALUES = operator.attrgetter(*(spec.name for spec in _SPECS))  # every field, in id order
_NO_VALUES = _ALL_VALUES(Properties())

# Carried from an incoming PUBLISH to every subscriber, unaltered [3.3.2-4, 3.3.2-16 to 3.3.2-20]
# except the Message Expiry Interval, sent less the time the message waited [3.3.2-6].
APPLICATION_PROPERTIES = (
    "payload_format_indicator",
    "message_expiry_interval",
    "content_type",
    "response_topic",
    "correlation_data",
    "user_properties",
)


def application_properties(props: Properties) -> Properties | None:
    """A copy holding only the properties a PUBLISH forwards to subscribers; None if none."""
    if (
        props.payload_format_indicator is None
        and props.message_expiry_interval is None
        and props.content_type is None
        and props.response_topic is None
        and props.correlation_data is None
        and not props.user_properties
    ):
        return None
    return Properties(
        payload_format_indicator=props.payload_format_indicator,
        message_expiry_interval=props.message_expiry_interval,
        content_type=props.content_type,
        response_topic=props.response_topic,
        correlation_data=props.correlation_data,
        user_properties=list(props.user_properties),
    )


# --------------------------------------------------------------------------------------------
# Data types [1.5]
# --------------------------------------------------------------------------------------------


def decode_utf8(raw: bytes) -> str:
    """A UTF-8 Encoded String as [1.5.4] defines it: well formed, no U+0000.

    Python's strict decoder already refuses surrogates (U+D800..U+DFFF) and overlong forms
    [1.5.4-1]; U+0000 is checked here [1.5.4-2].
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPacket(f"string is not well-formed UTF-8 ({exc.reason})") from None
    if "\x00" in text:
        raise MalformedPacket("string contains the null character U+0000")
    return text


def encode_varint(n: int) -> bytes:
    """The Variable Byte Integer of [1.5.5], in the fewest bytes [1.5.5-1]."""
    if not 0 <= n <= MAX_VARINT:
        raise CodecError(f"variable byte integer {n} is outside 0..{MAX_VARINT}")
    if n < 128:
        return bytes((n,))
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The Variable Byte Integer at ``pos`` and the position after it, reading before ``end``.

    Raises ``MalformedPacket`` for one running to ``end``, longer than four bytes, or not in
    its shortest form [1.5.5-1].
    """
    value = 0
    shift = 0
    start = pos
    while pos < end:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and pos - start > 1:
                raise MalformedPacket("variable byte integer not in its shortest form [1.5.5-1]")
            return value, pos
        if pos - start == 4:
            raise MalformedPacket("variable byte integer longer than four bytes [1.5.5]")
        shift += 7
    raise MalformedPacket("packet ends inside a variable byte integer")


def _length_prefixed(data: bytes, pos: int, end: int, spec: _Spec) -> tuple[bytes, int]:
    if pos + 2 > end:
        raise MalformedPacket(f"property block ends inside the length of {spec.title}")
    stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if stop > end:
        raise MalformedPacket(f"property block ends inside {spec.title}")
    return data[pos + 2 : stop], stop


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def decode_properties(body: bytes, pos: int, packet_type: int) -> tuple[Properties, int]:
    """Decode the property block at ``pos`` of a ``packet_type`` packet (0: a will's).

    Returns the properties and the position after the block. Raises ``MalformedPacket`` for
    bytes that do not parse (truncation, a bad Variable Byte Integer or UTF-8 string, an
    unknown identifier) and ``ProtocolError`` for a block that parses but is not allowed.
    """
    props, end, problem = decode_properties_deferred(body, pos, packet_type)
    if problem is not None:
        raise problem
    return props, end


def decode_properties_deferred(
    body: bytes, pos: int, packet_type: int
) -> tuple[Properties, int, ProtocolError | None]:
    """``decode_properties``, but a Protocol Error is returned instead of raised.

    A packet that cannot be parsed is Malformed even if it also breaks a protocol rule [1.2]:
    the codec parses the whole packet before raising the first Protocol Error it found.
    """
    n = len(body)
    if pos >= n:
        raise MalformedPacket("packet ends before its property length [2.2.2.1]")
    length = body[pos]
    if length < 0x80:  # the common case: a short block, one length byte
        pos += 1
    else:
        length, pos = read_varint(body, pos, n)
    end = pos + length
    if end > n:
        raise MalformedPacket(f"property length {length} runs past the end of the packet")
    props = Properties()
    if not length:
        return props, end, None
    problem: ProtocolError | None = None
    seen = 0
    where = 1 << packet_type
    while pos < end:
        ident = body[pos]
        spec = _BY_ID[ident]
        if spec is None:
            raise MalformedPacket(f"unknown property identifier {ident:#04x} [2.2.2.2]")
        pos += 1
        if problem is None:
            if not spec.allowed & where:
                problem = ProtocolError(
                    f"{spec.title} is not allowed in {_WHERE.get(packet_type, packet_type)}"
                    " [2.2.2.2]"
                )
            elif seen >> ident & 1 and not (
                ident == USER_PROPERTY
                or (ident == SUBSCRIPTION_IDENTIFIER and packet_type == _PUBLISH)
            ):
                problem = ProtocolError(f"{spec.title} included more than once [2.2.2.2]")
            seen |= 1 << ident
        kind = spec.kind
        if kind >= _UTF8:
            raw, pos = _length_prefixed(body, pos, end, spec)
            if kind == _BINARY:
                if problem is None:
                    setattr(props, spec.name, raw)
                continue
            text = decode_utf8(raw)
            if kind == _PAIR:
                raw, pos = _length_prefixed(body, pos, end, spec)
                value = decode_utf8(raw)
                if problem is None:
                    props.user_properties.append((text, value))
                continue
            if problem is None:
                if ident == RESPONSE_TOPIC and (not text or "+" in text or "#" in text):
                    # A topic name [3.3.2-13]: no wildcards [3.3.2-14], not empty [4.7.3-1].
                    problem = ProtocolError(f"Response Topic {text!r} is not a topic name")
                else:
                    setattr(props, spec.name, text)
            continue
        if kind == _BYTE:
            if pos >= end:
                raise MalformedPacket(f"property block ends inside {spec.title}")
            number = body[pos]
            pos += 1
        elif kind == _U16:
            if pos + 2 > end:
                raise MalformedPacket(f"property block ends inside {spec.title}")
            number = (body[pos] << 8) | body[pos + 1]
            pos += 2
        elif kind == _U32:
            if pos + 4 > end:
                raise MalformedPacket(f"property block ends inside {spec.title}")
            number = int.from_bytes(body[pos : pos + 4], "big")
            pos += 4
        else:
            number, pos = read_varint(body, pos, end)
        if problem is not None:
            continue
        if number == 0 and spec.nonzero:
            problem = ProtocolError(
                f"{spec.title} of 0 is a Protocol Error",
                # [3.3.2-8] is the one zero with its own reason code [4.13].
                ReasonCode.TOPIC_ALIAS_INVALID
                if ident == TOPIC_ALIAS
                else ReasonCode.PROTOCOL_ERROR,
            )
        elif number > 1 and spec.boolean:
            problem = ProtocolError(f"{spec.title} of {number} is not 0 or 1")
        elif ident == SUBSCRIPTION_IDENTIFIER:
            props.subscription_identifiers.append(number)
        else:
            setattr(props, spec.name, number)
    return props, end, problem


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def encode_properties(props: Properties, packet_type: int) -> bytes:
    """The property block of a ``packet_type`` packet (0: a will's): length, then properties."""
    raw = encode_property_bytes(props, packet_type)
    return encode_varint(len(raw)) + raw


def encode_property_bytes(props: Properties, packet_type: int) -> bytes:
    """The properties of a ``packet_type`` packet without the length prefix.

    Raises ``CodecError`` for a property not allowed in that packet type, or a value the
    decoder would refuse.
    """
    values = _ALL_VALUES(props)
    if values == _NO_VALUES:  # the common case, one tuple comparison
        return b""
    out: list[bytes] = []
    where = 1 << packet_type
    for spec, value in zip(_SPECS, values, strict=True):
        if value is None or value == []:
            continue
        if not spec.allowed & where:
            raise CodecError(
                f"{spec.title} is not allowed in {_WHERE.get(packet_type, packet_type)} [2.2.2.2]"
            )
        ident = bytes((spec.ident,))
        kind = spec.kind
        if kind == _PAIR:
            for key, text in value:
                out.append(ident + _string(key, spec) + _string(text, spec))
        elif kind == _VARINT:
            if len(value) > 1 and packet_type != _PUBLISH:
                raise CodecError(f"{spec.title} may appear only once in a non-PUBLISH packet")
            out.extend(ident + _varint_value(n, spec) for n in value)
        elif kind == _UTF8:
            if spec.ident == RESPONSE_TOPIC and (not value or "+" in value or "#" in value):
                raise CodecError(f"Response Topic {value!r} is not a topic name [3.3.2-14]")
            out.append(ident + _string(value, spec))
        elif kind == _BINARY:
            if len(value) > 65535:
                raise CodecError(f"{spec.title} longer than 65,535 bytes cannot be encoded")
            out.append(ident + len(value).to_bytes(2, "big") + value)
        else:
            out.append(ident + _integer(value, spec))
    return b"".join(out)


def _string(text: str, spec: _Spec) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 65535:
        raise CodecError(f"{spec.title} longer than 65,535 bytes cannot be encoded")
    return len(raw).to_bytes(2, "big") + raw


def _varint_value(n: int, spec: _Spec) -> bytes:
    if not 1 <= n <= MAX_VARINT:
        raise CodecError(f"{spec.title} {n} is outside 1..{MAX_VARINT}")
    return encode_varint(n)


def _integer(n: int, spec: _Spec) -> bytes:
    kind = spec.kind
    top = 1 if spec.boolean else 255 if kind == _BYTE else 65535 if kind == _U16 else MAX_U32
    low = 1 if spec.nonzero else 0
    if not low <= n <= top:
        raise CodecError(f"{spec.title} {n} is outside {low}..{top}")
    return n.to_bytes(1 if kind == _BYTE else 2 if kind == _U16 else 4, "big")


# Single properties the server adds per delivery to a PUBLISH whose other properties are
# encoded once and cached (``codec.publish_v5_parts`` takes the concatenation).


def encode_subscription_identifiers(identifiers: Iterable[int]) -> bytes:
    """Subscription Identifier properties (0x0B), one per identifier [3.3.4-4]."""
    return b"".join(b"\x0b" + _varint_value(n, _SUBSCRIPTION_IDENTIFIER_SPEC) for n in identifiers)


def encode_topic_alias(alias: int) -> bytes:
    """A Topic Alias property (0x23), 1..65535 [3.3.2-8]."""
    if not 1 <= alias <= 65535:
        raise CodecError(f"Topic Alias {alias} is outside 1..65535")
    return bytes((TOPIC_ALIAS, alias >> 8, alias & 0xFF))


def encode_message_expiry_interval(seconds: int) -> bytes:
    """A Message Expiry Interval property (0x02), the seconds left for this delivery [3.3.2-6]."""
    if not 0 <= seconds <= MAX_U32:
        raise CodecError(f"Message Expiry Interval {seconds} is outside 0..{MAX_U32}")
    return b"\x02" + seconds.to_bytes(4, "big")
