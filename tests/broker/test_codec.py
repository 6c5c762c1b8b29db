"""broker/codec.py: every packet type against bytes written out by hand from MQTT 3.1.1, every
malformed case the decoder must refuse, and Hypothesis round trips (including incremental
framing). Section numbers in brackets are MQTT 3.1.1 (OASIS, 2014).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import codec
from broker.codec import (
    CodecError,
    ConnAck,
    Connect,
    Disconnect,
    MalformedPacket,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    UnsupportedProtocol,
    Will,
    decode_packet,
    decode_stream,
    encode_packet,
    encode_remaining_length,
    peek_remaining_length,
    publish_head,
    split_packet,
)


def s(text: str) -> bytes:
    """A UTF-8 string field [1.5.3]: two length bytes, then the bytes."""
    raw = text.encode("utf-8")
    return len(raw).to_bytes(2, "big") + raw


def decode_one(data: bytes) -> Packet:
    """Decode exactly one whole packet through the framing functions."""
    found = split_packet(data, 0)
    assert found is not None
    first, start, end = found
    assert end == len(data), "the test bytes hold more than one packet"
    return decode_packet(first, data[start:end])


# --------------------------------------------------------------------------------------------
# Valid packets, byte for byte
# --------------------------------------------------------------------------------------------

# CONNECT with every flag [3.1.2]: user name, password, will retain, will QoS 1, will, clean.
CONNECT_FULL = (
    b"\x10\x22"
    + s("MQTT")
    + b"\x04"  # protocol level 4 = 3.1.1 [3.1.2.2]
    + b"\xee"  # 1110 1110
    + b"\x00\x0a"  # keep alive 10 s
    + s("cid")
    + s("w/t")
    + b"\x00\x02hi"
    + s("user")
    + b"\x00\x02pw"
)

VALID: list[tuple[str, bytes, Packet]] = [
    (
        "connect-all-flags",
        CONNECT_FULL,
        Connect("cid", True, 10, 4, Will("w/t", b"hi", 1, True), "user", b"pw"),
    ),
    (
        "connect-mqtt31-minimal",
        b"\x10\x0f" + s("MQIsdp") + b"\x03\x02\x00\x3c" + s("x"),
        Connect("x", True, 60, 3),
    ),
    (
        "connect-will-qos2-persistent",
        b"\x10\x13" + s("MQTT") + b"\x04\x14\x00\x00" + s("c") + s("t") + b"\x00\x01!",
        Connect("c", False, 0, 4, Will("t", b"!", 2, False)),
    ),
    (
        "connect-username-only-empty-client-id",
        b"\x10\x0f" + s("MQTT") + b"\x04\x82\xff\xff" + s("") + s("u"),
        Connect("", True, 65535, 4, None, "u", None),
    ),
    ("connack-accepted", b"\x20\x02\x00\x00", ConnAck(False, 0)),
    ("connack-session-present", b"\x20\x02\x01\x00", ConnAck(True, 0)),
    ("connack-not-authorized", b"\x20\x02\x00\x05", ConnAck(False, 5)),
    ("publish-qos0", b"\x30\x0a" + s("a/b") + b"hello", Publish("a/b", b"hello")),
    ("publish-qos0-empty-payload", b"\x30\x05" + s("a/b"), Publish("a/b", b"")),
    ("publish-qos0-retain", b"\x31\x06" + s("a/b") + b"x", Publish("a/b", b"x", 0, True)),
    (
        "publish-qos1",
        b"\x32\x0c" + s("a/b") + b"\x00\x0ahello",
        Publish("a/b", b"hello", 1, False, False, 10),
    ),
    (
        "publish-qos1-dup",
        b"\x3a\x07" + s("a/b") + b"\x00\x0a",
        Publish("a/b", b"", 1, False, True, 10),
    ),
    (
        "publish-qos2-dup-retain",
        b"\x3d\x0c" + s("a/b") + b"\xff\xffhello",
        Publish("a/b", b"hello", 2, True, True, 65535),
    ),
    ("puback", b"\x40\x02\x00\x0a", PubAck(10)),
    ("pubrec", b"\x50\x02\x01\x00", PubRec(256)),
    ("pubrel", b"\x62\x02\x00\x01", PubRel(1)),
    ("pubcomp", b"\x70\x02\xff\xff", PubComp(65535)),
    (
        # The example of [3.8.3]: "a/b" at QoS 1 and "c/d" at QoS 2, fixed header 0x82.
        "subscribe",
        b"\x82\x0e\x00\x0a" + s("a/b") + b"\x01" + s("c/d") + b"\x02",
        Subscribe(10, [("a/b", 1), ("c/d", 2)]),
    ),
    ("subscribe-qos0-hash", b"\x82\x06\x00\x01" + s("#") + b"\x00", Subscribe(1, [("#", 0)])),
    ("suback", b"\x90\x06\x00\x0a\x00\x01\x02\x80", SubAck(10, [0, 1, 2, 0x80])),
    (
        "unsubscribe",
        b"\xa2\x0c\x00\x0a" + s("a/b") + s("c/d"),
        Unsubscribe(10, ["a/b", "c/d"]),
    ),
    ("unsuback", b"\xb0\x02\x00\x0a", UnsubAck(10)),
    ("pingreq", b"\xc0\x00", PingReq()),
    ("pingresp", b"\xd0\x00", PingResp()),
    ("disconnect", b"\xe0\x00", Disconnect()),
]


@pytest.mark.parametrize(("data", "packet"), [v[1:] for v in VALID], ids=[v[0] for v in VALID])
def test_decode_spec_bytes(data: bytes, packet: Packet) -> None:
    assert decode_one(data) == packet


@pytest.mark.parametrize(("data", "packet"), [v[1:] for v in VALID], ids=[v[0] for v in VALID])
def test_encode_gives_spec_bytes(data: bytes, packet: Packet) -> None:
    assert encode_packet(packet) == data


def test_connect_non_ascii_strings_use_utf8_byte_lengths() -> None:
    data = b"\x10\x15" + s("MQTT") + b"\x04\x02\x00\x3c" + s("é€𝄞")
    assert decode_one(data) == Connect("é€𝄞", True, 60, 4)
    assert encode_packet(Connect("é€𝄞", True, 60, 4)) == data


def test_publish_head_is_everything_before_packet_id() -> None:
    # QoS 1, retain, dup: 0x30 | 0x02 | 0x01 | 0x08; remaining = 2 + 3 + 2 (pid) + 5.
    assert publish_head(b"a/b", 5, 1, True, True) == b"\x3b\x0c" + s("a/b")
    assert publish_head(b"a/b", 5, 0, False) == b"\x30\x0a" + s("a/b")
    head = publish_head(b"a/b", 200, 2, False)
    assert head == b"\x34" + encode_remaining_length(207) + s("a/b")
    assert decode_one(head + b"\x00\x07" + b"p" * 200) == Publish(
        "a/b", b"p" * 200, 2, False, False, 7
    )


def test_encode_publish_qos1_without_packet_id_is_refused() -> None:
    with pytest.raises(CodecError, match="packet identifier"):
        encode_packet(Publish("a", b"", 1))


def test_encode_string_longer_than_65535_bytes_is_refused() -> None:
    with pytest.raises(CodecError, match="65,535"):
        encode_packet(Connect("x" * 65536))
    with pytest.raises(CodecError, match="65,535"):
        encode_packet(Connect("c", will=Will("t", b"x" * 65536)))


def test_encode_publish_topic_longer_than_65535_bytes_raises_codec_error() -> None:
    with pytest.raises(CodecError):
        encode_packet(Publish("t" * 65536, b""))


def test_decode_stream_returns_whole_packets_and_bytes_consumed() -> None:
    one = b"\x30\x0a" + s("a/b") + b"hello"
    two = b"\x40\x02\x00\x0a"
    partial = b"\x32\x0c" + s("a/b")
    packets, used = decode_stream(one + two + partial)
    assert packets == [Publish("a/b", b"hello"), PubAck(10)]
    assert used == len(one) + len(two)
    assert decode_stream(b"") == ([], 0)
    assert decode_stream(b"\x30") == ([], 0)


def test_split_packet_reports_bounds_from_any_position() -> None:
    data = b"junk" + b"\x40\x02\x00\x0a" + b"\xc0\x00"
    assert split_packet(data, 4) == (0x40, 6, 8)
    assert split_packet(data, 8) == (0xC0, 10, 10)
    assert split_packet(data, 10) is None
    assert split_packet(data, 9) is None  # one byte only: header incomplete
    assert split_packet(bytearray(data), 4) == (0x40, 6, 8)
    assert split_packet(memoryview(data), 4) == (0x40, 6, 8)


# --------------------------------------------------------------------------------------------
# Remaining length [2.2.3]
# --------------------------------------------------------------------------------------------

REMAINING_LENGTHS = [
    (0, b"\x00"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (16383, b"\xff\x7f"),
    (16384, b"\x80\x80\x01"),
    (2097151, b"\xff\xff\x7f"),
    (2097152, b"\x80\x80\x80\x01"),
    (268435455, b"\xff\xff\xff\x7f"),
]


@pytest.mark.parametrize(("n", "encoded"), REMAINING_LENGTHS)
def test_remaining_length_boundaries(n: int, encoded: bytes) -> None:
    assert encode_remaining_length(n) == encoded
    header = b"\x30" + encoded
    assert peek_remaining_length(header, 0) == n
    # The whole header but not the body: a length is known, the packet is not complete.
    if n:
        assert split_packet(header, 0) is None
    else:
        assert split_packet(header, 0) == (0x30, 2, 2)
    # Every shorter prefix of the length bytes is "not yet known".
    for cut in range(1, len(header)):
        assert peek_remaining_length(header[:cut], 0) is None
        assert split_packet(header[:cut], 0) is None


@pytest.mark.parametrize("n", [0, 127, 128, 16383, 16384, 2097151, 2097152])
def test_split_packet_finds_body_after_multibyte_length(n: int) -> None:
    data = b"\x30" + encode_remaining_length(n) + b"\x00" * n
    start = 1 + len(encode_remaining_length(n))
    assert split_packet(data, 0) == (0x30, start, start + n)
    assert split_packet(data[:-1], 0) is None


def test_remaining_length_in_five_bytes_is_malformed() -> None:
    for data in (b"\x30\xff\xff\xff\xff\x7f", b"\x30\x80\x80\x80\x80\x01", b"\x30\xff\xff\xff\xff"):
        with pytest.raises(MalformedPacket, match="four bytes"):
            split_packet(data, 0)
        with pytest.raises(MalformedPacket, match="four bytes"):
            peek_remaining_length(data, 0)
        with pytest.raises(MalformedPacket):
            decode_stream(data)


def test_remaining_length_above_maximum_cannot_be_encoded() -> None:
    with pytest.raises(CodecError):
        encode_remaining_length(268435456)


def test_negative_remaining_length_raises_codec_error() -> None:
    with pytest.raises(CodecError):
        encode_remaining_length(-1)


# --------------------------------------------------------------------------------------------
# Malformed packets
# --------------------------------------------------------------------------------------------

# A valid body for each type whose fixed-header flags are fixed [2.2.2].
BODY_FOR_TYPE = {
    1: CONNECT_FULL[2:],
    2: b"\x00\x00",
    4: b"\x00\x01",
    5: b"\x00\x01",
    6: b"\x00\x01",
    7: b"\x00\x01",
    8: b"\x00\x01" + s("a") + b"\x00",
    9: b"\x00\x01\x00",
    10: b"\x00\x01" + s("a"),
    11: b"\x00\x01",
    12: b"",
    13: b"",
    14: b"",
}
REQUIRED_FLAGS = {1: 0, 2: 0, 4: 0, 5: 0, 6: 2, 7: 0, 8: 2, 9: 0, 10: 2, 11: 0, 12: 0, 13: 0, 14: 0}


@pytest.mark.parametrize("ptype", sorted(BODY_FOR_TYPE))
def test_reserved_fixed_header_flags_are_malformed(ptype: int) -> None:
    body = BODY_FOR_TYPE[ptype]
    required = REQUIRED_FLAGS[ptype]
    decode_packet(ptype << 4 | required, body)  # the body itself is fine
    for flags in range(16):
        if flags == required:
            continue
        with pytest.raises(MalformedPacket, match="reserved fixed-header flags"):
            decode_packet(ptype << 4 | flags, body)


@pytest.mark.parametrize("first", [0x00, 0x0F, 0xF0, 0xFF])
def test_reserved_packet_types_0_and_15_are_malformed(first: int) -> None:
    with pytest.raises(MalformedPacket, match="reserved"):
        decode_packet(first, b"")
    with pytest.raises(MalformedPacket):
        decode_stream(bytes((first, 0)))


MALFORMED_PUBLISH = [
    ("qos-3", 0x36, s("a/b") + b"\x00\x01", "QoS 3"),
    ("qos-3-dup-retain", 0x3F, s("a/b") + b"\x00\x01", "QoS 3"),
    ("dup-at-qos0", 0x38, s("a/b"), "DUP"),
    ("packet-id-0-qos1", 0x32, s("a/b") + b"\x00\x00", "identifier 0"),
    ("packet-id-0-qos2", 0x34, s("a/b") + b"\x00\x00", "identifier 0"),
    ("empty-body", 0x30, b"", "topic"),
    ("one-byte-body", 0x30, b"\x00", "topic"),
    ("truncated-topic", 0x30, b"\x00\x05a/b", "topic"),
    ("qos1-no-packet-id", 0x32, s("a/b"), "two-byte"),
    ("qos1-half-packet-id", 0x32, s("a/b") + b"\x00", "two-byte"),
    ("invalid-utf8-topic", 0x30, b"\x00\x02\xc3\x28", "UTF-8"),
    ("utf16-surrogate-topic", 0x30, b"\x00\x03\xed\xa0\x80", "UTF-8"),
    ("overlong-utf8-topic", 0x30, b"\x00\x02\xc0\xaf", "UTF-8"),
    ("null-in-topic", 0x30, b"\x00\x03a\x00b", "U\\+0000"),
]


@pytest.mark.parametrize(
    ("first", "body", "message"),
    [m[1:] for m in MALFORMED_PUBLISH],
    ids=[m[0] for m in MALFORMED_PUBLISH],
)
def test_malformed_publish(first: int, body: bytes, message: str) -> None:
    with pytest.raises(MalformedPacket, match=message):
        decode_packet(first, body)


def connect_body(flags: int, payload: bytes, name: str = "MQTT", level: int = 4) -> bytes:
    return s(name) + bytes((level, flags)) + b"\x00\x3c" + payload


MALFORMED_CONNECT = [
    ("reserved-bit", connect_body(0x03, s("c")), "reserved bit"),
    ("will-qos-without-will", connect_body(0x0A, s("c")), "without the will flag"),
    ("will-qos2-without-will", connect_body(0x12, s("c")), "without the will flag"),
    ("will-retain-without-will", connect_body(0x22, s("c")), "without the will flag"),
    ("will-qos-3", connect_body(0x1E, s("c") + s("t") + b"\x00\x00"), "will QoS 3"),
    ("password-without-username", connect_body(0x42, s("c") + b"\x00\x01p"), "user name"),
    ("trailing-bytes", connect_body(0x02, s("c") + b"\x00"), "after its payload"),
    ("trailing-string", connect_body(0x02, s("c") + s("x")), "after its payload"),
    ("unknown-protocol-name", connect_body(0x02, s("c"), name="MQTX"), "protocol name"),
    ("lowercase-protocol-name", connect_body(0x02, s("c"), name="mqtt"), "protocol name"),
    ("invalid-utf8-client-id", connect_body(0x02, b"\x00\x02\xc3\x28"), "UTF-8"),
    ("null-in-client-id", connect_body(0x02, b"\x00\x01\x00"), "U\\+0000"),
    ("null-in-username", connect_body(0x82, s("c") + b"\x00\x01\x00"), "U\\+0000"),
    ("invalid-utf8-will-topic", connect_body(0x06, s("c") + b"\x00\x01\xff\x00\x00"), "UTF-8"),
    ("null-in-protocol-name", s("MQ\x00T") + b"\x04\x02\x00\x3c" + s("c"), "U\\+0000"),
    ("missing-will-payload", connect_body(0x06, s("c") + s("t")), "two-byte"),
    ("missing-username", connect_body(0x82, s("c")), "two-byte"),
    ("missing-password", connect_body(0xC2, s("c") + s("u")), "two-byte"),
    ("no-client-id", connect_body(0x02, b""), "two-byte"),
    ("empty-body", b"", "two-byte"),
    ("name-only", s("MQTT"), "protocol level"),
    ("no-keep-alive", s("MQTT") + b"\x04\x02", "variable header"),
]


@pytest.mark.parametrize(
    ("body", "message"),
    [m[1:] for m in MALFORMED_CONNECT],
    ids=[m[0] for m in MALFORMED_CONNECT],
)
def test_malformed_connect(body: bytes, message: str) -> None:
    with pytest.raises(MalformedPacket, match=message):
        decode_packet(0x10, body)


def test_every_truncation_of_a_connect_is_malformed() -> None:
    body = CONNECT_FULL[2:]
    for cut in range(len(body)):
        with pytest.raises(MalformedPacket):
            decode_packet(0x10, body[:cut])


@pytest.mark.parametrize(
    ("name", "level"), [("MQTT", 6), ("MQTT", 3), ("MQIsdp", 4), ("MQIsdp", 5), ("MQTT", 0)]
)
def test_unsupported_protocol_level(name: str, level: int) -> None:
    # [3.1.2-2]: the server answers CONNACK 0x01, so this is not a malformed packet.
    with pytest.raises(UnsupportedProtocol) as info:
        decode_packet(0x10, connect_body(0x02, s("c"), name=name, level=level))
    assert info.value.level == level
    assert not isinstance(info.value, MalformedPacket)
    assert isinstance(info.value, CodecError)
    assert str(level) in str(info.value)


def test_mqtt5_connect_through_the_stream_reports_level_5() -> None:
    # Level 5 is MQTT 5 (tests/broker/test_codec_v5.py), decoded even on a 3.1.1 stream: the
    # CONNECT is what sets the connection's version.
    body = connect_body(0x02, b"\x00" + s("c"), level=5)  # MQTT 5 properties length 0
    assert decode_stream(codec.frame(0x10, body)) == ([Connect("c", True, 60, 5)], len(body) + 2)


MALFORMED_OTHER = [
    ("connack-length-3", 0x20, b"\x00\x00\x00", "remaining length of 2"),
    ("connack-length-1", 0x20, b"\x00", "remaining length of 2"),
    ("connack-reserved-ack-bits", 0x20, b"\x02\x00", "reserved bits"),
    ("connack-ack-bits-ff", 0x20, b"\xff\x00", "reserved bits"),
    ("puback-empty", 0x40, b"", "remaining length of 2"),
    ("puback-length-3", 0x40, b"\x00\x01\x00", "remaining length of 2"),
    ("puback-id-0", 0x40, b"\x00\x00", "identifier 0"),
    ("pubrec-id-0", 0x50, b"\x00\x00", "identifier 0"),
    ("pubrel-id-0", 0x62, b"\x00\x00", "identifier 0"),
    ("pubcomp-id-0", 0x70, b"\x00\x00", "identifier 0"),
    ("pubrel-length-1", 0x62, b"\x01", "remaining length of 2"),
    ("subscribe-empty", 0x82, b"\x00\x01", "without any topic filter"),
    ("subscribe-no-packet-id", 0x82, b"", "two-byte"),
    ("subscribe-id-0", 0x82, b"\x00\x00" + s("a") + b"\x00", "identifier 0"),
    ("subscribe-qos-3", 0x82, b"\x00\x01" + s("a") + b"\x03", "requested QoS"),
    ("subscribe-qos-reserved-bit", 0x82, b"\x00\x01" + s("a") + b"\x04", "requested QoS"),
    ("subscribe-qos-high-bits", 0x82, b"\x00\x01" + s("a") + b"\x81", "requested QoS"),
    ("subscribe-second-qos-bad", 0x82, b"\x00\x01" + s("a") + b"\x01" + s("b") + b"\x40", "QoS"),
    ("subscribe-missing-qos", 0x82, b"\x00\x01" + s("a/b"), "requested QoS"),
    ("subscribe-truncated-filter", 0x82, b"\x00\x01\x00\x05a/b", "length-prefixed"),
    ("subscribe-half-length", 0x82, b"\x00\x01\x00", "two-byte"),
    ("subscribe-invalid-utf8", 0x82, b"\x00\x01\x00\x01\xff\x00", "UTF-8"),
    ("subscribe-null", 0x82, b"\x00\x01\x00\x01\x00\x00", "U\\+0000"),
    ("suback-no-codes", 0x90, b"\x00\x01", "no return codes"),
    ("suback-id-0", 0x90, b"\x00\x00\x00", "identifier 0"),
    ("suback-empty", 0x90, b"", "two-byte"),
    ("unsubscribe-empty", 0xA2, b"\x00\x01", "without any topic filter"),
    ("unsubscribe-id-0", 0xA2, b"\x00\x00" + s("a"), "identifier 0"),
    ("unsubscribe-truncated", 0xA2, b"\x00\x01" + s("a") + b"\x00\x02b", "length-prefixed"),
    ("unsubscribe-invalid-utf8", 0xA2, b"\x00\x01\x00\x01\x80", "UTF-8"),
    ("unsubscribe-null", 0xA2, b"\x00\x01\x00\x01\x00", "U\\+0000"),
    ("unsuback-length-3", 0xB0, b"\x00\x01\x00", "remaining length of 2"),
    ("unsuback-id-0", 0xB0, b"\x00\x00", "identifier 0"),
    ("pingreq-body", 0xC0, b"\x00", "remaining length of 0"),
    ("pingresp-body", 0xD0, b"\x00", "remaining length of 0"),
    ("disconnect-body", 0xE0, b"\x00", "remaining length of 0"),
]


@pytest.mark.parametrize(
    ("first", "body", "message"),
    [m[1:] for m in MALFORMED_OTHER],
    ids=[m[0] for m in MALFORMED_OTHER],
)
def test_malformed_other_packets(first: int, body: bytes, message: str) -> None:
    with pytest.raises(MalformedPacket, match=message):
        decode_packet(first, body)


def test_malformed_packet_in_a_stream_raises_after_framing() -> None:
    good = b"\x40\x02\x00\x0a"
    with pytest.raises(MalformedPacket, match="remaining length of 2"):
        decode_stream(good + b"\x40\x03\x00\x0a\x00")


@pytest.mark.parametrize("code", [0x03, 0x7F, 0x81, 0xFF])
def test_suback_reserved_return_code_is_malformed(code: int) -> None:
    with pytest.raises(MalformedPacket):
        decode_packet(0x90, b"\x00\x01" + bytes((code,)))


# --------------------------------------------------------------------------------------------
# Hypothesis: generated valid packets round trip
# --------------------------------------------------------------------------------------------

# UTF-8 strings as [1.5.3] allows them: no surrogates (Hypothesis never makes them), no U+0000.
texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
binaries = st.binary(max_size=40)
packet_ids = st.integers(1, 65535)
qos_levels = st.integers(0, 2)


@st.composite
def connects(draw: st.DrawFn) -> Connect:
    will = draw(st.none() | st.builds(Will, texts, binaries, qos_levels, st.booleans()))
    username = draw(st.none() | texts)
    password = None if username is None else draw(st.none() | binaries)
    return Connect(
        draw(texts),
        draw(st.booleans()),
        draw(st.integers(0, 65535)),
        draw(st.sampled_from([codec.MQTT_31, codec.MQTT_311])),
        will,
        username,
        password,
    )


@st.composite
def publishes(draw: st.DrawFn) -> Publish:
    qos = draw(qos_levels)
    return Publish(
        draw(texts),
        draw(binaries),
        qos,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,
        draw(packet_ids) if qos else None,
    )


packets: st.SearchStrategy[Packet] = st.one_of(
    connects(),
    st.builds(ConnAck, st.booleans(), st.integers(0, 5)),
    publishes(),
    st.builds(PubAck, packet_ids),
    st.builds(PubRec, packet_ids),
    st.builds(PubRel, packet_ids),
    st.builds(PubComp, packet_ids),
    st.builds(
        Subscribe, packet_ids, st.lists(st.tuples(texts, qos_levels), min_size=1, max_size=4)
    ),
    st.builds(
        SubAck, packet_ids, st.lists(st.sampled_from([0, 1, 2, 0x80]), min_size=1, max_size=5)
    ),
    st.builds(Unsubscribe, packet_ids, st.lists(texts, min_size=1, max_size=4)),
    st.builds(UnsubAck, packet_ids),
    st.builds(PingReq),
    st.builds(PingResp),
    st.builds(Disconnect),
)


@given(packets)
def test_round_trip_one_packet(packet: Packet) -> None:
    data = encode_packet(packet)
    found = split_packet(data, 0)
    assert found is not None
    first, start, end = found
    assert end == len(data)
    assert peek_remaining_length(data, 0) == end - start
    assert decode_packet(first, data[start:end]) == packet
    assert decode_stream(data) == ([packet], len(data))


@given(publishes(), st.binary(min_size=100, max_size=20_000))
def test_round_trip_publish_with_multibyte_remaining_length(
    packet: Publish, payload: bytes
) -> None:
    packet.payload = payload
    assert decode_stream(encode_packet(packet)) == ([packet], len(encode_packet(packet)))


@given(st.lists(packets, min_size=1, max_size=5), st.binary(max_size=3))
def test_round_trip_stream_of_packets(batch: list[Packet], tail: bytes) -> None:
    encoded = [encode_packet(p) for p in batch]
    data = b"".join(encoded)
    # A partial packet after the whole ones is left unconsumed (a one-byte length header that
    # promises more than the tail holds).
    partial = b"\x30\x7f" + tail
    packets_out, used = decode_stream(data + partial)
    assert packets_out == batch
    assert used == len(data)


@given(st.lists(packets, min_size=1, max_size=4))
def test_split_packet_on_every_prefix_is_none_or_the_whole_bounds(batch: list[Packet]) -> None:
    data = b"".join(encode_packet(p) for p in batch)
    whole = split_packet(data, 0)
    assert whole is not None
    first_len = whole[2]
    for cut in range(len(data) + 1):
        got = split_packet(data[:cut], 0)
        if cut < first_len:
            assert got is None, cut
        else:
            assert got == whole, cut


@given(st.lists(packets, min_size=1, max_size=4))
def test_feeding_byte_by_byte_yields_the_same_packets(batch: list[Packet]) -> None:
    data = b"".join(encode_packet(p) for p in batch)
    buf = bytearray()
    out: list[Packet] = []
    for byte in data:
        buf.append(byte)
        got, used = decode_stream(bytes(buf))
        out.extend(got)
        del buf[:used]
    assert out == batch
    assert not buf


@given(st.integers(0, codec.MAX_REMAINING_LENGTH))
def test_remaining_length_round_trip(n: int) -> None:
    encoded = encode_remaining_length(n)
    assert 1 <= len(encoded) <= 4
    # Minimal: the last byte has no continuation bit and is non-zero unless n == 0.
    assert encoded[-1] < 128
    assert all(b >= 128 for b in encoded[:-1])
    assert encoded[-1] != 0 or n == 0
    assert peek_remaining_length(b"\x30" + encoded, 0) == n
