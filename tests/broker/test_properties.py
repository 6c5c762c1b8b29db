"""broker/properties.py: every MQTT 5 property against bytes written out by hand, the table of
which packet may carry which property [2.2.2.2] (written out again here from the spec, not
imported), duplicates, forbidden values, truncation, and Hypothesis round trips.
Section numbers in brackets are MQTT Version 5.0 (OASIS, 2019).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.properties import (
    APPLICATION_PROPERTIES,
    WILL_PROPERTIES,
    Properties,
    application_properties,
    decode_properties,
    encode_message_expiry_interval,
    encode_properties,
    encode_property_bytes,
    encode_subscription_identifiers,
    encode_topic_alias,
    encode_varint,
    read_varint,
)
from broker.reason_codes import CodecError, MalformedPacket, ProtocolError, ReasonCode

# --------------------------------------------------------------------------------------------
# The spec's table [2.2.2.2], independent of the module under test
# --------------------------------------------------------------------------------------------

WILL = WILL_PROPERTIES
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH = 8, 9, 10, 11, 14, 15
# The packet types that have a property block; 0 stands for a CONNECT's Will Properties.
PACKET_TYPES = [WILL, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15]
ACKS = {PUBACK, PUBREC, PUBREL, PUBCOMP}

# identifier: (Properties field, data type, packet types allowed)
SPEC: dict[int, tuple[str, str, set[int]]] = {
    0x01: ("payload_format_indicator", "byte", {PUBLISH, WILL}),
    0x02: ("message_expiry_interval", "u32", {PUBLISH, WILL}),
    0x03: ("content_type", "utf8", {PUBLISH, WILL}),
    0x08: ("response_topic", "utf8", {PUBLISH, WILL}),
    0x09: ("correlation_data", "binary", {PUBLISH, WILL}),
    0x0B: ("subscription_identifiers", "varint", {PUBLISH, SUBSCRIBE}),
    0x11: ("session_expiry_interval", "u32", {CONNECT, CONNACK, DISCONNECT}),
    0x12: ("assigned_client_identifier", "utf8", {CONNACK}),
    0x13: ("server_keep_alive", "u16", {CONNACK}),
    0x15: ("authentication_method", "utf8", {CONNECT, CONNACK, AUTH}),
    0x16: ("authentication_data", "binary", {CONNECT, CONNACK, AUTH}),
    0x17: ("request_problem_information", "byte", {CONNECT}),
    0x18: ("will_delay_interval", "u32", {WILL}),
    0x19: ("request_response_information", "byte", {CONNECT}),
    0x1A: ("response_information", "utf8", {CONNACK}),
    0x1C: ("server_reference", "utf8", {CONNACK, DISCONNECT}),
    0x1F: ("reason_string", "utf8", {CONNACK, *ACKS, SUBACK, UNSUBACK, DISCONNECT, AUTH}),
    0x21: ("receive_maximum", "u16", {CONNECT, CONNACK}),
    0x22: ("topic_alias_maximum", "u16", {CONNECT, CONNACK}),
    0x23: ("topic_alias", "u16", {PUBLISH}),
    0x24: ("maximum_qos", "byte", {CONNACK}),
    0x25: ("retain_available", "byte", {CONNACK}),
    0x26: ("user_properties", "pair", set(PACKET_TYPES)),
    0x27: ("maximum_packet_size", "u32", {CONNECT, CONNACK}),
    0x28: ("wildcard_subscription_available", "byte", {CONNACK}),
    0x29: ("subscription_identifier_available", "byte", {CONNACK}),
    0x2A: ("shared_subscription_available", "byte", {CONNACK}),
}
NONZERO = {0x0B, 0x21, 0x23, 0x27}  # 0 is a Protocol Error
LIST_FIELDS = {0x0B, 0x26}


def s(text: str) -> bytes:
    """A UTF-8 string [1.5.4]: two length bytes, then the bytes."""
    raw = text.encode("utf-8")
    return len(raw).to_bytes(2, "big") + raw


def varint(n: int) -> bytes:
    """A Variable Byte Integer [1.5.5], the spec's own algorithm."""
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def wire(kind: str, value: Any) -> bytes:
    """A property value in its data type [1.5], written independently of the encoder."""
    match kind:
        case "byte":
            return bytes((value,))
        case "u16":
            return int(value).to_bytes(2, "big")
        case "u32":
            return int(value).to_bytes(4, "big")
        case "varint":
            return varint(value)
        case "utf8":
            return s(value)
        case "binary":
            return len(value).to_bytes(2, "big") + value
        case _:
            return s(value[0]) + s(value[1])


def one(ident: int, value: Any) -> Properties:
    """Properties holding a single value of property ``ident``."""
    name = SPEC[ident][0]
    props = Properties()
    setattr(props, name, [value] if ident in LIST_FIELDS else value)
    return props


def block(raw: bytes) -> bytes:
    """A property block: the length, then the properties [2.2.2.1]."""
    return varint(len(raw)) + raw


def allowed_in(ident: int) -> int:
    return min(SPEC[ident][2])


# --------------------------------------------------------------------------------------------
# Every property, boundary values, byte for byte
# --------------------------------------------------------------------------------------------

BOUNDARIES: dict[str, list[Any]] = {
    "byte": [0, 1],
    "u16": [0, 1, 255, 256, 65535],
    "u32": [0, 1, 65535, 65536, 2**32 - 1],
    "varint": [1, 127, 128, 16383, 16384, 2097151, 2097152, 268435455],
    "utf8": ["", "x", "é€𝄞", "a/b", "a" * 65535],
    "binary": [b"", b"\x00\xff", b"z" * 65535],
    "pair": [("", ""), ("k", "v"), ("é", "𝄞"), ("a" * 65535, "b" * 65535)],
}


def boundary_cases() -> list[tuple[int, Any]]:
    cases = []
    for ident, (_, kind, _where) in SPEC.items():
        for value in BOUNDARIES[kind]:
            if ident in NONZERO and value == 0:
                continue
            if ident == 0x08 and value == "":  # a topic name is never empty [4.7.3-1]
                continue
            cases.append((ident, value))
    return cases


def case_id(ident: int, value: Any) -> str:
    text = repr(value)
    return f"{SPEC[ident][0]}-{text if len(text) < 20 else f'len{len(text)}'}"


@pytest.mark.parametrize(
    ("ident", "value"), boundary_cases(), ids=[case_id(*c) for c in boundary_cases()]
)
def test_every_property_encodes_and_decodes_at_its_boundaries(ident: int, value: Any) -> None:
    _, kind, where = SPEC[ident]
    props = one(ident, value)
    raw = bytes((ident,)) + wire(kind, value)
    for packet_type in sorted(where):
        assert encode_property_bytes(props, packet_type) == raw
        assert encode_properties(props, packet_type) == block(raw)
        assert decode_properties(block(raw), 0, packet_type) == (props, len(block(raw)))


OUT_OF_RANGE: dict[str, list[Any]] = {
    "byte": [-1, 2, 255],
    "u16": [-1, 65536],
    "u32": [-1, 2**32],
    "varint": [-1, 0, 268435456],
    "utf8": ["a" * 65536, "é" * 32768],
    "binary": [b"z" * 65536],
    "pair": [("a" * 65536, ""), ("", "€" * 21846)],
}


@pytest.mark.parametrize("ident", sorted(SPEC), ids=lambda i: SPEC[i][0])
def test_encoder_refuses_values_out_of_range(ident: int) -> None:
    _, kind, _where = SPEC[ident]
    bad = OUT_OF_RANGE[kind] + ([0] if ident in NONZERO else [])
    for value in bad:
        with pytest.raises(CodecError):
            encode_property_bytes(one(ident, value), allowed_in(ident))


def test_decoded_values_come_back_at_the_offset_given() -> None:
    raw = b"\x23\x00\x07"  # Topic Alias 7
    data = b"head" + block(raw) + b"payload"
    assert decode_properties(data, 4, PUBLISH) == (Properties(topic_alias=7), 4 + 1 + 3)
    assert decode_properties(b"\x00payload", 0, PUBLISH) == (Properties(), 1)


# --------------------------------------------------------------------------------------------
# Which packet carries which property [2.2.2.2]
# --------------------------------------------------------------------------------------------

SAMPLE: dict[str, Any] = {
    "byte": 1,
    "u16": 9,
    "u32": 9,
    "varint": 9,
    "utf8": "x",
    "binary": b"x",
    "pair": ("k", "v"),
}
PLACEMENTS = [
    (ident, packet_type, packet_type in where)
    for ident, (_, _kind, where) in SPEC.items()
    for packet_type in PACKET_TYPES
]


@pytest.mark.parametrize(
    ("ident", "packet_type", "allowed"),
    PLACEMENTS,
    ids=[f"{SPEC[i][0]}-in-{t}" for i, t, _ in PLACEMENTS],
)
def test_property_allowed_only_in_its_packet_types(
    ident: int, packet_type: int, allowed: bool
) -> None:
    kind = SPEC[ident][1]
    props = one(ident, SAMPLE[kind])
    data = block(bytes((ident,)) + wire(kind, SAMPLE[kind]))
    if allowed:
        assert decode_properties(data, 0, packet_type) == (props, len(data))
        assert encode_properties(props, packet_type) == data
        return
    with pytest.raises(ProtocolError, match="not allowed") as info:
        decode_properties(data, 0, packet_type)
    assert info.value.reason_code == ReasonCode.PROTOCOL_ERROR
    with pytest.raises(CodecError, match="not allowed"):
        encode_properties(props, packet_type)


@pytest.mark.parametrize(
    "ident", [i for i in range(256) if i not in SPEC], ids=lambda i: f"{i:#04x}"
)
def test_unknown_identifiers_are_malformed(ident: int) -> None:
    for packet_type in PACKET_TYPES:
        with pytest.raises(MalformedPacket, match="unknown property identifier"):
            decode_properties(bytes((3, ident, 0, 0)), 0, packet_type)


# --------------------------------------------------------------------------------------------
# Duplicates and forbidden values
# --------------------------------------------------------------------------------------------

DUPLICATES = [
    (ident, packet_type) for ident, (_, _k, where) in SPEC.items() for packet_type in where
]


@pytest.mark.parametrize(
    ("ident", "packet_type"), DUPLICATES, ids=[f"{SPEC[i][0]}-in-{t}" for i, t in DUPLICATES]
)
def test_a_property_twice_is_a_protocol_error_unless_it_may_repeat(
    ident: int, packet_type: int
) -> None:
    name, kind, _where = SPEC[ident]
    first, second = (1, 0) if kind == "byte" else (SAMPLE[kind], SAMPLE[kind])
    if kind == "varint":
        first, second = 5, 6
    data = block(bytes((ident,)) + wire(kind, first) + bytes((ident,)) + wire(kind, second))
    # [3.3.2-17, 3.3.4-4]: user properties repeat anywhere, subscription identifiers in
    # PUBLISH only ("more than once" is a Protocol Error in SUBSCRIBE [3.8.2.1.2]).
    if ident == 0x26 or (ident == 0x0B and packet_type == PUBLISH):
        props, _ = decode_properties(data, 0, packet_type)
        assert getattr(props, name) == [first, second]
        assert encode_properties(props, packet_type) == data
        return
    with pytest.raises(ProtocolError, match="more than once"):
        decode_properties(data, 0, packet_type)


def test_encoder_refuses_two_subscription_identifiers_outside_publish() -> None:
    props = Properties(subscription_identifiers=[1, 2])
    assert encode_property_bytes(props, PUBLISH) == b"\x0b\x01\x0b\x02"
    with pytest.raises(CodecError, match="only once"):
        encode_property_bytes(props, SUBSCRIBE)


ZEROES = [(ident, packet_type) for ident in sorted(NONZERO) for packet_type in SPEC[ident][2]]


@pytest.mark.parametrize(
    ("ident", "packet_type"), ZEROES, ids=[f"{SPEC[i][0]}-in-{t}" for i, t in ZEROES]
)
def test_forbidden_zero_values_are_protocol_errors(ident: int, packet_type: int) -> None:
    kind = SPEC[ident][1]
    data = block(bytes((ident,)) + wire(kind, 0))
    with pytest.raises(ProtocolError, match="of 0") as info:
        decode_properties(data, 0, packet_type)
    # A Topic Alias of 0 [3.3.2-8] has its own reason code; the others are 0x82.
    expected = ReasonCode.TOPIC_ALIAS_INVALID if ident == 0x23 else ReasonCode.PROTOCOL_ERROR
    assert info.value.reason_code == expected
    with pytest.raises(CodecError):
        encode_property_bytes(one(ident, 0), packet_type)


BYTES_0_OR_1 = [ident for ident, (_, kind, _w) in SPEC.items() if kind == "byte"]


@pytest.mark.parametrize("ident", BYTES_0_OR_1, ids=lambda i: SPEC[i][0])
@pytest.mark.parametrize("value", [2, 3, 0x7F, 0x80, 0xFF])
def test_byte_properties_other_than_0_or_1_are_protocol_errors(ident: int, value: int) -> None:
    data = block(bytes((ident, value)))
    with pytest.raises(ProtocolError, match="not 0 or 1"):
        decode_properties(data, 0, allowed_in(ident))


@pytest.mark.parametrize("topic", ["a/+", "+", "#", "a/#", "a/+/b", "sport/tennis#", ""])
def test_response_topic_must_be_a_topic_name(topic: str) -> None:
    # [3.3.2-14] no wildcards; [4.7.3-1] at least one character.
    for packet_type in (PUBLISH, WILL):
        with pytest.raises(ProtocolError, match="Response Topic"):
            decode_properties(block(b"\x08" + s(topic)), 0, packet_type)
        with pytest.raises(CodecError, match="Response Topic"):
            encode_property_bytes(Properties(response_topic=topic), packet_type)


# --------------------------------------------------------------------------------------------
# User property order, application properties, per-delivery helpers
# --------------------------------------------------------------------------------------------


def test_user_properties_keep_their_order_and_repeats() -> None:
    # [3.3.2-18]: the order is kept, even interleaved with other properties, and a key may repeat.
    raw = (
        b"\x26" + s("b") + s("1")
        + b"\x03" + s("text/plain")
        + b"\x26" + s("a") + s("2")
        + b"\x26" + s("b") + s("3")
    )  # fmt: skip
    props, _ = decode_properties(block(raw), 0, PUBLISH)
    assert props.user_properties == [("b", "1"), ("a", "2"), ("b", "3")]
    assert props.content_type == "text/plain"
    again = encode_property_bytes(props, PUBLISH)
    assert decode_properties(block(again), 0, PUBLISH)[0] == props
    assert again == b"\x03" + s("text/plain") + b"".join(
        b"\x26" + s(k) + s(v) for k, v in [("b", "1"), ("a", "2"), ("b", "3")]
    )


FULL_PUBLISH = Properties(
    payload_format_indicator=1,
    message_expiry_interval=60,
    content_type="application/json",
    response_topic="reply/here",
    correlation_data=b"\x01\x02",
    subscription_identifiers=[7, 300],
    topic_alias=3,
    user_properties=[("a", "1"), ("b", "2")],
)


def test_application_properties_keeps_what_a_publish_forwards() -> None:
    assert set(APPLICATION_PROPERTIES) == {
        "payload_format_indicator",
        "message_expiry_interval",
        "content_type",
        "response_topic",
        "correlation_data",
        "user_properties",
    }
    kept = application_properties(FULL_PUBLISH)
    assert kept == Properties(
        payload_format_indicator=1,
        message_expiry_interval=60,
        content_type="application/json",
        response_topic="reply/here",
        correlation_data=b"\x01\x02",
        user_properties=[("a", "1"), ("b", "2")],
    )
    # A copy: the stored message does not change when the packet's properties do.
    assert kept is not None
    kept.user_properties.append(("c", "3"))
    assert FULL_PUBLISH.user_properties == [("a", "1"), ("b", "2")]


@pytest.mark.parametrize("name", APPLICATION_PROPERTIES)
def test_application_properties_any_one_is_enough(name: str) -> None:
    values = {
        "payload_format_indicator": 0,
        "message_expiry_interval": 0,
        "content_type": "",
        "response_topic": "r",
        "correlation_data": b"",
        "user_properties": [("", "")],
    }
    props = Properties(topic_alias=1, subscription_identifiers=[1])
    setattr(props, name, values[name])
    kept = application_properties(props)
    assert kept is not None
    assert getattr(kept, name) == values[name]
    assert kept.topic_alias is None
    assert kept.subscription_identifiers == []


def test_application_properties_none_when_nothing_to_forward() -> None:
    assert application_properties(Properties()) is None
    assert application_properties(Properties(topic_alias=4, subscription_identifiers=[2])) is None


@pytest.mark.parametrize("ids", [[1], [1, 268435455], [127, 128, 16384]])
def test_encode_subscription_identifiers_matches_the_general_encoder(ids: list[int]) -> None:
    expected = encode_property_bytes(Properties(subscription_identifiers=ids), PUBLISH)
    assert encode_subscription_identifiers(ids) == expected
    assert encode_subscription_identifiers([]) == b""
    with pytest.raises(CodecError):
        encode_subscription_identifiers([0])
    with pytest.raises(CodecError):
        encode_subscription_identifiers([268435456])


@pytest.mark.parametrize("alias", [1, 255, 256, 65535])
def test_encode_topic_alias_matches_the_general_encoder(alias: int) -> None:
    expected = encode_property_bytes(Properties(topic_alias=alias), PUBLISH)
    assert encode_topic_alias(alias) == expected
    for bad in (0, 65536, -1):
        with pytest.raises(CodecError):
            encode_topic_alias(bad)


@pytest.mark.parametrize("seconds", [0, 1, 65536, 2**32 - 1])
def test_encode_message_expiry_interval_matches_the_general_encoder(seconds: int) -> None:
    expected = encode_property_bytes(Properties(message_expiry_interval=seconds), PUBLISH)
    assert encode_message_expiry_interval(seconds) == expected
    for bad in (-1, 2**32):
        with pytest.raises(CodecError):
            encode_message_expiry_interval(bad)


def test_repr_shows_only_what_is_set() -> None:
    assert repr(Properties()) == "Properties()"
    shown = repr(Properties(topic_alias=3, user_properties=[("a", "b")]))
    assert shown == "Properties(topic_alias=3, user_properties=[('a', 'b')])"


# --------------------------------------------------------------------------------------------
# Malformed property blocks
# --------------------------------------------------------------------------------------------

RICH: dict[int, Properties] = {
    PUBLISH: FULL_PUBLISH,
    CONNACK: Properties(
        session_expiry_interval=2**32 - 1,
        assigned_client_identifier="auto-1",
        server_keep_alive=30,
        authentication_method="SCRAM",
        authentication_data=b"\x00" * 3,
        response_information="info",
        server_reference="other:1883",
        reason_string="fine",
        receive_maximum=20,
        topic_alias_maximum=10,
        maximum_qos=1,
        retain_available=0,
        user_properties=[("k", "é")],
        maximum_packet_size=16384,
        wildcard_subscription_available=1,
        subscription_identifier_available=0,
        shared_subscription_available=1,
    ),
}


@pytest.mark.parametrize("packet_type", sorted(RICH))
def test_every_truncation_of_a_property_block_is_malformed(packet_type: int) -> None:
    data = encode_properties(RICH[packet_type], packet_type)
    assert decode_properties(data, 0, packet_type) == (RICH[packet_type], len(data))
    # The body ends before the length the block declares.
    for cut in range(len(data)):
        with pytest.raises(MalformedPacket):
            decode_properties(data[:cut], 0, packet_type)


@pytest.mark.parametrize("packet_type", sorted(RICH))
def test_a_block_length_that_cuts_a_property_is_malformed(packet_type: int) -> None:
    """The declared length agrees with the bytes but ends inside a property."""
    raw = encode_property_bytes(RICH[packet_type], packet_type)
    # Where each property ends, found by decoding growing prefixes that are whole properties.
    ends: dict[int, Properties] = {0: Properties()}
    pos = 0
    while pos < len(raw):
        for stop in range(pos + 2, len(raw) + 1):
            try:
                props, _ = decode_properties(block(raw[:stop]), 0, packet_type)
            except MalformedPacket:
                continue
            ends[stop] = props
            pos = stop
            break
        else:  # pragma: no cover - the whole block decodes
            pytest.fail(f"no property ends after byte {pos}")
    assert len(ends) > 10
    for cut in range(len(raw) + 1):
        data = block(raw[:cut]) + b"more bytes of the packet"
        if cut in ends:
            assert decode_properties(data, 0, packet_type) == (ends[cut], len(block(raw[:cut])))
        else:
            with pytest.raises(MalformedPacket, match="ends inside"):
                decode_properties(data, 0, packet_type)


BAD_BLOCKS = [
    ("empty-body", b"", "property length"),
    ("length-past-end", b"\x05\x23\x00\x01", "past the end"),
    ("length-not-shortest", b"\x80\x00", "shortest form"),
    ("length-five-bytes", b"\xff\xff\xff\xff\x7f", "four bytes"),
    ("length-unterminated", b"\x80\x80", "inside a variable byte integer"),
    ("sub-id-not-shortest", block(b"\x0b\x81\x00"), "shortest form"),
    ("sub-id-five-bytes", block(b"\x0b\xff\xff\xff\xff\x01"), "four bytes"),
    ("sub-id-past-block", b"\x02\x0b\x81" + b"\x01", "inside a variable byte integer"),
    ("u16-past-block", b"\x02\x23\x00" + b"\x01", "inside Topic Alias"),
    ("u32-past-block", b"\x04\x02\x00\x00\x00" + b"\x01", "inside Message Expiry"),
    ("byte-past-block", b"\x01\x01" + b"\x01", "inside Payload Format"),
    ("string-length-past-block", b"\x02\x03\x00" + b"\x00", "length of Content Type"),
    ("string-past-block", b"\x04\x03\x00\x02x" + b"y", "inside Content Type"),
    ("binary-past-block", b"\x04\x09\x00\x05x" + b"yyyy", "inside Correlation Data"),
    ("pair-value-missing", block(b"\x26" + s("k")), "length of User Property"),
    ("invalid-utf8", block(b"\x03\x00\x02\xc3\x28"), "UTF-8"),
    ("surrogate-utf8", block(b"\x03\x00\x03\xed\xa0\x80"), "UTF-8"),
    ("null-in-string", block(b"\x03\x00\x01\x00"), "U\\+0000"),
    ("invalid-utf8-user-key", block(b"\x26\x00\x01\xff" + s("v")), "UTF-8"),
    ("null-in-user-value", block(b"\x26" + s("k") + b"\x00\x01\x00"), "U\\+0000"),
    ("invalid-utf8-response-topic", block(b"\x08\x00\x01\x80"), "UTF-8"),
]


@pytest.mark.parametrize(
    ("data", "message"), [b[1:] for b in BAD_BLOCKS], ids=[b[0] for b in BAD_BLOCKS]
)
def test_malformed_property_blocks(data: bytes, message: str) -> None:
    with pytest.raises(MalformedPacket, match=message) as info:
        decode_properties(data, 0, PUBLISH)
    assert info.value.reason_code == ReasonCode.MALFORMED_PACKET


@pytest.mark.parametrize(
    "raw",
    [
        b"\x11\x00\x00\x00\x01" + b"\x23\x00",  # not allowed in PUBLISH, then truncated
        b"\x23\x00\x01\x23\x00\x02" + b"\x99",  # a duplicate, then an unknown identifier
        b"\x23\x00\x00" + b"\x03\x00\x01\xff",  # a forbidden value, then bad UTF-8
    ],
)
def test_a_block_that_does_not_parse_is_malformed_whatever_else_is_wrong(raw: bytes) -> None:
    # [1.2]: a Protocol Error is found only after the packet has been parsed.
    with pytest.raises(MalformedPacket):
        decode_properties(block(raw), 0, PUBLISH)


# --------------------------------------------------------------------------------------------
# Variable Byte Integers [1.5.5]
# --------------------------------------------------------------------------------------------

VARINTS = [
    (0, b"\x00"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (16383, b"\xff\x7f"),
    (16384, b"\x80\x80\x01"),
    (2097151, b"\xff\xff\x7f"),
    (2097152, b"\x80\x80\x80\x01"),
    (268435455, b"\xff\xff\xff\x7f"),
]


@pytest.mark.parametrize(("n", "encoded"), VARINTS)
def test_varint_boundaries(n: int, encoded: bytes) -> None:
    assert encode_varint(n) == encoded
    assert read_varint(b"xx" + encoded + b"yy", 2, len(encoded) + 4) == (n, len(encoded) + 2)
    for cut in range(len(encoded)):
        with pytest.raises(MalformedPacket):
            read_varint(encoded, 0, cut)


def test_varint_out_of_range_cannot_be_encoded() -> None:
    for n in (-1, 268435456):
        with pytest.raises(CodecError):
            encode_varint(n)


@given(st.integers(0, 268435455))
def test_varint_round_trip(n: int) -> None:
    encoded = encode_varint(n)
    assert encoded == varint(n)
    assert read_varint(encoded, 0, len(encoded)) == (n, len(encoded))


# --------------------------------------------------------------------------------------------
# Hypothesis: generated properties round trip
# --------------------------------------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
topic_names = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00+#"), min_size=1, max_size=8
)
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "byte": st.integers(0, 1),
    "u16": st.integers(0, 65535),
    "u32": st.integers(0, 2**32 - 1),
    "utf8": texts,
    "binary": st.binary(max_size=12),
}


@st.composite
def properties_for(draw: st.DrawFn, packet_type: int) -> Properties:
    """Valid properties of a ``packet_type`` packet: only those the table allows there."""
    props = Properties()
    for ident, (name, kind, where) in SPEC.items():
        if packet_type not in where:
            continue
        if kind == "pair":
            props.user_properties = draw(st.lists(st.tuples(texts, texts), max_size=3))
        elif kind == "varint":
            repeat = 3 if packet_type == PUBLISH else 1
            ids = st.integers(1, 268435455)
            props.subscription_identifiers = draw(st.lists(ids, max_size=repeat))
        else:
            values = topic_names if ident == 0x08 else VALUES[kind]
            if ident in NONZERO:
                values = st.integers(1, 65535 if kind == "u16" else 2**32 - 1)
            setattr(props, name, draw(st.none() | values))
    if props.authentication_data is not None and packet_type == CONNECT:
        # [3.1.2.11.10] Authentication Data only with an Authentication Method.
        props.authentication_method = props.authentication_method or draw(texts)
    return props


@st.composite
def typed_properties(draw: st.DrawFn) -> tuple[int, Properties]:
    packet_type = draw(st.sampled_from(PACKET_TYPES))
    return packet_type, draw(properties_for(packet_type))


@given(typed_properties(), st.binary(max_size=4))
def test_round_trip_generated_properties(typed: tuple[int, Properties], tail: bytes) -> None:
    packet_type, props = typed
    raw = encode_property_bytes(props, packet_type)
    data = encode_properties(props, packet_type)
    assert data == encode_varint(len(raw)) + raw
    assert decode_properties(data + tail, 0, packet_type) == (props, len(data))
