"""broker/codec.py, MQTT 5: every packet type against bytes written out by hand from the spec,
the short forms of acknowledgements, DISCONNECT and AUTH, malformed packets and Protocol Errors,
the reason codes each packet type may carry (the spec's tables written out again here), and
Hypothesis round trips with generated properties. Section numbers in brackets are MQTT
Version 5.0 (OASIS, 2019).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import codec
from broker.codec import (
    MQTT_5,
    Auth,
    CodecError,
    ConnAck,
    Connect,
    Disconnect,
    MalformedPacket,
    Packet,
    PingReq,
    PingResp,
    ProtocolError,
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
    encode_ack_v5,
    encode_auth,
    encode_connack_v5,
    encode_disconnect_v5,
    encode_packet,
    encode_suback_v5,
    encode_unsuback_v5,
    make_subscription_options,
    publish_v5_parts,
    split_packet,
    subscription_options,
)
from broker.properties import Properties, decode_properties, encode_property_bytes
from broker.reason_codes import VALID_IN, ReasonCode
from tests.broker.test_properties import properties_for, s, texts, topic_names, varint


def pkt(first: int, body: bytes) -> bytes:
    """A whole packet: first byte, remaining length [1.5.5], body."""
    return bytes((first,)) + varint(len(body)) + body


def props(raw: bytes) -> bytes:
    """A property block: its length, then the properties [2.2.2.1]."""
    return varint(len(raw)) + raw


def decode5(data: bytes) -> Packet:
    """Decode exactly one whole MQTT 5 packet through the framing functions."""
    found = split_packet(data, 0)
    assert found is not None
    first, start, end = found
    assert end == len(data), "the test bytes hold more than one packet"
    return decode_packet(first, data[start:end], MQTT_5)


def user(key: str, value: str) -> bytes:
    return b"\x26" + s(key) + s(value)


# --------------------------------------------------------------------------------------------
# Valid packets, byte for byte
# --------------------------------------------------------------------------------------------

# The CONNECT of [3.1.2.11] Figure 3-6 (Keep Alive 10, Session Expiry Interval 10) with flags
# 0xCE: user name, password, will QoS 1, will flag, Clean Start. The will properties come
# before the will topic [3.1.3-1].
CONNECT_FULL = pkt(
    0x10,
    s("MQTT")
    + b"\x05"  # protocol version 5 [3.1.2.2]
    + b"\xce"
    + b"\x00\x0a"
    + props(b"\x11\x00\x00\x00\x0a")
    + s("cid")
    + props(b"\x01\x01" + b"\x18\x00\x00\x00\x05")  # payload format 1, will delay 5
    + s("w/t")
    + b"\x00\x02hi"
    + s("user")
    + b"\x00\x02pw",
)

CONNECT_ALL_PROPERTIES = pkt(
    0x10,
    s("MQTT")
    + b"\x05\x02\x00\x3c"
    + props(
        b"\x15"
        + s("SCRAM-SHA-1")  # authentication method
        + b"\x16\x00\x02xy"  # authentication data
        + b"\x17\x00"  # request problem information 0
        + b"\x19\x01"  # request response information 1
        + b"\x21\x00\x14"  # receive maximum 20
        + b"\x22\x00\x0a"  # topic alias maximum 10
        + user("k", "v")
        + b"\x27\x00\x00\x04\x00"  # maximum packet size 1024
    )  # fmt: skip
    + s("c"),
)

CONNACK_ALL_PROPERTIES = pkt(
    0x20,
    b"\x01\x00"
    + props(
        b"\x11\xff\xff\xff\xff"  # session expiry interval
        + b"\x12"
        + s("auto-1")  # assigned client identifier
        + b"\x13\x00\x1e"  # server keep alive 30
        + b"\x1a"
        + s("resp/")  # response information
        + b"\x1f"
        + s("welcome")  # reason string
        + b"\x21\x00\x64"  # receive maximum 100
        + b"\x22\x00\x05"  # topic alias maximum 5
        + b"\x24\x01"  # maximum QoS 1
        + b"\x25\x00"  # retain available 0
        + b"\x27\x00\x01\x00\x00"  # maximum packet size 65536
        + b"\x28\x01\x29\x00\x2a\x01"  # wildcard, subscription id, shared available
    ),  # fmt: skip
)

PUBLISH_PROPERTIES = (
    b"\x01\x01"  # payload format indicator: UTF-8
    + b"\x02\x00\x00\x00\x3c"  # message expiry 60 s
    + b"\x03" + s("text/plain")
    + b"\x08" + s("reply/to")
    + b"\x09\x00\x02\x00\x01"  # correlation data
    + user("a", "1")
    + user("a", "2")
)  # fmt: skip

REASON = b"\x1f" + s("nope") + user("k", "v")  # reason string and a user property
REASON_PROPS = Properties(reason_string="nope", user_properties=[("k", "v")])

VALID: list[tuple[str, bytes, Packet]] = [
    (
        "connect-full",
        CONNECT_FULL,
        Connect(
            "cid",
            True,
            10,
            5,
            Will(
                "w/t",
                b"hi",
                1,
                False,
                Properties(payload_format_indicator=1, will_delay_interval=5),
            ),
            "user",
            b"pw",
            Properties(session_expiry_interval=10),
        ),
    ),
    (
        "connect-minimal",
        pkt(0x10, s("MQTT") + b"\x05\x02\x00\x3c\x00" + s("c")),
        Connect("c", True, 60, 5),
    ),
    (
        # [3.1.2.9] MQTT 5 allows a password without a user name.
        "connect-password-without-user-name",
        pkt(0x10, s("MQTT") + b"\x05\x40\x00\x00\x00" + s("c") + b"\x00\x01p"),
        Connect("c", False, 0, 5, None, None, b"p"),
    ),
    (
        "connect-will-qos2-retain-no-will-properties",
        pkt(0x10, s("MQTT") + b"\x05\x34\x00\x00\x00" + s("c") + b"\x00" + s("t") + b"\x00\x01!"),
        Connect("c", False, 0, 5, Will("t", b"!", 2, True)),
    ),
    (
        "connect-all-properties",
        CONNECT_ALL_PROPERTIES,
        Connect(
            "c",
            properties=Properties(
                authentication_method="SCRAM-SHA-1",
                authentication_data=b"xy",
                request_problem_information=0,
                request_response_information=1,
                receive_maximum=20,
                topic_alias_maximum=10,
                user_properties=[("k", "v")],
                maximum_packet_size=1024,
            ),
            protocol_level=5,
        ),
    ),
    ("connack-success", pkt(0x20, b"\x00\x00\x00"), ConnAck(False, 0)),
    (
        "connack-not-authorized",
        pkt(0x20, b"\x00\x87" + props(b"\x1f" + s("no"))),
        ConnAck(False, 0x87, Properties(reason_string="no")),
    ),
    (
        "connack-all-properties",
        CONNACK_ALL_PROPERTIES,
        ConnAck(
            True,
            0,
            Properties(
                session_expiry_interval=2**32 - 1,
                assigned_client_identifier="auto-1",
                server_keep_alive=30,
                response_information="resp/",
                reason_string="welcome",
                receive_maximum=100,
                topic_alias_maximum=5,
                maximum_qos=1,
                retain_available=0,
                maximum_packet_size=65536,
                wildcard_subscription_available=1,
                subscription_identifier_available=0,
                shared_subscription_available=1,
            ),
        ),
    ),
    ("publish-qos0", pkt(0x30, s("a/b") + b"\x00" + b"hello"), Publish("a/b", b"hello")),
    ("publish-qos0-empty", pkt(0x30, s("a/b") + b"\x00"), Publish("a/b", b"")),
    (
        "publish-qos0-properties",
        pkt(0x31, s("a/b") + props(PUBLISH_PROPERTIES) + b"{}"),
        Publish(
            "a/b",
            b"{}",
            0,
            True,
            properties=Properties(
                payload_format_indicator=1,
                message_expiry_interval=60,
                content_type="text/plain",
                response_topic="reply/to",
                correlation_data=b"\x00\x01",
                user_properties=[("a", "1"), ("a", "2")],
            ),
        ),
    ),
    (
        # [3.3.2.3] the properties come after the packet identifier.
        "publish-qos1-topic-alias",
        pkt(0x32, s("a/b") + b"\x00\x0a" + props(b"\x23\x00\x05") + b"x"),
        Publish("a/b", b"x", 1, False, False, 10, Properties(topic_alias=5)),
    ),
    (
        "publish-qos2-dup-retain-subscription-identifiers",
        pkt(0x3D, s("a/b") + b"\xff\xff" + props(b"\x0b\x01\x0b\x80\x80\x01") + b"p"),
        Publish("a/b", b"p", 2, True, True, 65535, Properties(subscription_identifiers=[1, 16384])),
    ),
    (
        # [3.3.2.3.4] a zero-length topic name with a Topic Alias uses the alias's topic.
        "publish-empty-topic-with-alias",
        pkt(0x34, s("") + b"\x00\x01" + props(b"\x23\xff\xff") + b"p"),
        Publish("", b"p", 2, False, False, 1, Properties(topic_alias=65535)),
    ),
    # Acknowledgements: the packet id alone means Success without properties [3.4.2.1]; a
    # reason code alone means no properties [3.4.2.2.1]; otherwise reason code and properties.
    ("puback-short", pkt(0x40, b"\x00\x0a"), PubAck(10)),
    ("puback-reason", pkt(0x40, b"\x00\x0a\x10"), PubAck(10, 0x10)),
    (
        "puback-properties",
        pkt(0x40, b"\x00\x0a\x87" + props(REASON)),
        PubAck(10, 0x87, REASON_PROPS),
    ),
    (
        "puback-success-properties",
        pkt(0x40, b"\x00\x0a\x00" + props(REASON)),
        PubAck(10, 0, REASON_PROPS),
    ),
    ("pubrec-short", pkt(0x50, b"\x01\x00"), PubRec(256)),
    ("pubrec-reason", pkt(0x50, b"\x01\x00\x97"), PubRec(256, 0x97)),
    (
        "pubrec-properties",
        pkt(0x50, b"\x01\x00\x99" + props(REASON)),
        PubRec(256, 0x99, REASON_PROPS),
    ),
    ("pubrel-short", pkt(0x62, b"\x00\x01"), PubRel(1)),
    ("pubrel-reason", pkt(0x62, b"\x00\x01\x92"), PubRel(1, 0x92)),
    (
        "pubrel-properties",
        pkt(0x62, b"\x00\x01\x92" + props(REASON)),
        PubRel(1, 0x92, REASON_PROPS),
    ),
    ("pubcomp-short", pkt(0x70, b"\xff\xff"), PubComp(65535)),
    ("pubcomp-reason", pkt(0x70, b"\xff\xff\x92"), PubComp(65535, 0x92)),
    (
        "pubcomp-properties",
        pkt(0x70, b"\xff\xff\x00" + props(REASON)),
        PubComp(65535, 0, REASON_PROPS),
    ),
    (
        # Subscription Options [3.8.3.1]: 0x2D = Retain Handling 2, Retain As Published,
        # No Local, QoS 1; 0x18 = Retain Handling 1, Retain As Published, QoS 0.
        "subscribe-options",
        pkt(
            0x82,
            b"\x00\x0a"
            + props(b"\x0b\x07" + user("u", "p"))
            + s("a/b")
            + b"\x2d"
            + s("c/d")
            + b"\x02"
            + s("e")
            + b"\x18",
        ),
        Subscribe(
            10,
            [("a/b", 0x2D), ("c/d", 2), ("e", 0x18)],
            Properties(subscription_identifiers=[7], user_properties=[("u", "p")]),
        ),
    ),
    ("subscribe-minimal", pkt(0x82, b"\x00\x01\x00" + s("#") + b"\x00"), Subscribe(1, [("#", 0)])),
    (
        "suback-every-reason-code",
        pkt(
            0x90,
            b"\x00\x0a"
            + props(b"\x1f" + s("ok"))
            + bytes(
                SUBACK_CODES := [
                    0x00,
                    0x01,
                    0x02,
                    0x80,
                    0x83,
                    0x87,
                    0x8F,
                    0x91,
                    0x97,
                    0x9E,
                    0xA1,
                    0xA2,
                ]
            ),
        ),  # fmt: skip
        SubAck(10, SUBACK_CODES, Properties(reason_string="ok")),
    ),
    (
        "unsubscribe",
        pkt(0xA2, b"\x00\x0a" + props(user("x", "y")) + s("a/b") + s("c/d")),
        Unsubscribe(10, ["a/b", "c/d"], Properties(user_properties=[("x", "y")])),
    ),
    (
        "unsuback-every-reason-code",
        pkt(0xB0, b"\x00\x0a\x00" + b"\x00\x11\x80\x83\x87\x8f\x91"),
        UnsubAck(10, [0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91]),
    ),
    ("pingreq", b"\xc0\x00", PingReq()),
    ("pingresp", b"\xd0\x00", PingResp()),
    # [3.14.2.1] remaining length 0: Normal disconnection; under 2: no properties.
    ("disconnect-normal", b"\xe0\x00", Disconnect()),
    ("disconnect-with-will", b"\xe0\x01\x04", Disconnect(0x04)),
    (
        "disconnect-properties",
        pkt(0xE0, b"\x9c" + props(b"\x11\x00\x00\x00\x00" + b"\x1c" + s("other:1883"))),
        Disconnect(0x9C, Properties(session_expiry_interval=0, server_reference="other:1883")),
    ),
    # [3.15.2.1] remaining length 0: Success without properties.
    ("auth-success", b"\xf0\x00", Auth()),
    (
        "auth-continue",
        pkt(0xF0, b"\x18" + props(b"\x15" + s("SCRAM-SHA-1") + b"\x16\x00\x03abc")),
        Auth(0x18, Properties(authentication_method="SCRAM-SHA-1", authentication_data=b"abc")),
    ),
    (
        "auth-re-authenticate",
        pkt(0xF0, b"\x19" + props(b"\x15" + s("K") + b"\x1f" + s("again"))),
        Auth(0x19, Properties(authentication_method="K", reason_string="again")),
    ),
]


@pytest.mark.parametrize(("data", "packet"), [v[1:] for v in VALID], ids=[v[0] for v in VALID])
def test_decode_spec_bytes(data: bytes, packet: Packet) -> None:
    assert decode5(data) == packet


@pytest.mark.parametrize(("data", "packet"), [v[1:] for v in VALID], ids=[v[0] for v in VALID])
def test_encode_gives_spec_bytes(data: bytes, packet: Packet) -> None:
    assert encode_packet(packet, MQTT_5) == data


# Longer forms the spec allows for the same packet; the encoder writes the shortest.
LONGER_FORMS: list[tuple[str, bytes, Packet]] = [
    ("puback-reason-0", pkt(0x40, b"\x00\x0a\x00"), PubAck(10)),
    ("puback-empty-properties", pkt(0x40, b"\x00\x0a\x00\x00"), PubAck(10)),
    ("pubrel-reason-empty-properties", pkt(0x62, b"\x00\x0a\x92\x00"), PubRel(10, 0x92)),
    ("disconnect-reason-0", pkt(0xE0, b"\x00"), Disconnect()),
    ("disconnect-empty-properties", pkt(0xE0, b"\x00\x00"), Disconnect()),
    ("disconnect-reason-empty-properties", pkt(0xE0, b"\x8b\x00"), Disconnect(0x8B)),
    (
        "publish-properties-out-of-order",
        pkt(0x30, s("t") + props(user("k", "v") + b"\x03" + s("c")) + b"x"),
        Publish("t", b"x", properties=Properties(content_type="c", user_properties=[("k", "v")])),
    ),
    (
        "connect-with-mqtt5-on-a-311-stream-is-still-mqtt5",
        pkt(0x10, s("MQTT") + b"\x05\x02\x00\x3c\x00" + s("c")),
        Connect("c", protocol_level=5),
    ),
]


@pytest.mark.parametrize(
    ("data", "packet"), [v[1:] for v in LONGER_FORMS], ids=[v[0] for v in LONGER_FORMS]
)
def test_longer_forms_decode_and_re_encode_shortest(data: bytes, packet: Packet) -> None:
    assert decode5(data) == packet
    shortest = encode_packet(packet, MQTT_5)
    assert len(shortest) <= len(data)
    assert decode5(shortest) == packet


def test_connect_level_5_is_decoded_whatever_the_stream_version() -> None:
    # The CONNECT sets the connection's version, so it is decoded before one is known.
    data = CONNECT_FULL
    assert decode_stream(data) == decode_stream(data, MQTT_5) == ([decode5(data)], len(data))


def test_mqtt311_connect_decoded_on_a_v5_stream_stays_311() -> None:
    data = pkt(0x10, s("MQTT") + b"\x04\x02\x00\x3c" + s("c"))
    assert decode5(data) == Connect("c", True, 60, 4)


def test_v3_encoding_leaves_out_mqtt5_fields() -> None:
    extra = Properties(reason_string="x", user_properties=[("k", "v")])
    assert encode_packet(PubAck(1, 0x10, extra)) == b"\x40\x02\x00\x01"
    assert encode_packet(PubRel(1, 0x92)) == b"\x62\x02\x00\x01"
    assert encode_packet(UnsubAck(1, [0x11], extra)) == b"\xb0\x02\x00\x01"
    assert encode_packet(Disconnect(0x8B, extra)) == b"\xe0\x00"
    assert encode_packet(Publish("a", b"x", properties=Properties(topic_alias=1))) == (
        b"\x30\x04" + s("a") + b"x"
    )
    assert encode_packet(Connect("c", properties=Properties(receive_maximum=1))) == pkt(
        0x10, s("MQTT") + b"\x04\x02\x00\x3c" + s("c")
    )
    with pytest.raises(CodecError, match="only in MQTT 5"):
        encode_packet(Auth())


# --------------------------------------------------------------------------------------------
# Malformed packets and Protocol Errors
# --------------------------------------------------------------------------------------------


def connect5(flags: int, rest: bytes, properties: bytes = b"\x00") -> bytes:
    """A level-5 CONNECT body: variable header with ``properties``, then ``rest``."""
    return s("MQTT") + bytes((5, flags)) + b"\x00\x3c" + properties + rest


MALFORMED: list[tuple[str, int, bytes, str]] = [
    ("type-0", 0x00, b"", "reserved"),
    ("connect-no-properties", 0x10, s("MQTT") + b"\x05\x02\x00\x3c", "property length"),
    ("connect-properties-past-end", 0x10, connect5(0x02, s("c"), b"\x10\x11"), "past the end"),
    ("connect-will-qos-3", 0x10, connect5(0x1E, s("c") + b"\x00" + s("t") + b"\x00\x00"), "QoS 3"),
    ("connect-will-qos-without-will", 0x10, connect5(0x0A, s("c")), "without the will flag"),
    ("connect-will-retain-without-will", 0x10, connect5(0x22, s("c")), "without the will flag"),
    ("connect-no-will-properties", 0x10, connect5(0x06, s("c")), "property length"),
    ("connect-will-props-past-end", 0x10, connect5(0x06, s("c") + b"\x09\x01"), "past the end"),
    ("connect-trailing-bytes", 0x10, connect5(0x02, s("c") + b"\x00"), "after its payload"),
    ("connect-reserved-flag", 0x10, connect5(0x03, s("c")), "reserved bit"),
    ("connack-empty", 0x20, b"", "reason code"),
    ("connack-no-properties", 0x20, b"\x00\x00", "property length"),
    ("connack-reserved-flags", 0x20, b"\x02\x00\x00", "reserved bits"),
    ("connack-trailing", 0x20, b"\x00\x00\x00\x00", "after its properties"),
    ("publish-no-properties", 0x30, s("a/b"), "property length"),
    ("publish-qos1-no-properties", 0x32, s("a/b") + b"\x00\x01", "property length"),
    ("publish-properties-past-end", 0x30, s("a/b") + b"\x05\x23\x00", "past the end"),
    ("publish-qos-3", 0x36, s("a/b") + b"\x00\x01\x00", "QoS 3"),
    ("publish-dup-qos0", 0x38, s("a/b") + b"\x00", "DUP"),
    ("publish-packet-id-0", 0x32, s("a/b") + b"\x00\x00\x00", "identifier 0"),
    ("puback-empty", 0x40, b"", "at least 2"),
    ("puback-one-byte", 0x40, b"\x01", "at least 2"),
    ("puback-id-0", 0x40, b"\x00\x00", "identifier 0"),
    ("puback-trailing", 0x40, b"\x00\x01\x00\x00\x00", "after its properties"),
    ("puback-properties-past-end", 0x40, b"\x00\x01\x00\x04\x1f", "past the end"),
    ("pubrel-flags", 0x60, b"\x00\x01", "reserved fixed-header flags"),
    ("pubcomp-id-0-long", 0x70, b"\x00\x00\x92\x00", "identifier 0"),
    ("subscribe-flags", 0x80, b"\x00\x01\x00" + s("a") + b"\x00", "reserved fixed-header flags"),
    ("subscribe-no-properties", 0x82, b"\x00\x01", "property length"),
    ("subscribe-missing-options", 0x82, b"\x00\x01\x00" + s("a"), "options byte"),
    ("subscribe-reserved-bit-6", 0x82, b"\x00\x01\x00" + s("a") + b"\x40", "reserved bits"),
    ("subscribe-reserved-bit-7", 0x82, b"\x00\x01\x00" + s("a") + b"\x81", "reserved bits"),
    ("subscribe-invalid-utf8", 0x82, b"\x00\x01\x00\x00\x01\xff\x00", "UTF-8"),
    ("suback-no-codes", 0x90, b"\x00\x01\x00", "no reason codes"),
    ("suback-no-properties", 0x90, b"\x00\x01", "property length"),
    ("unsubscribe-truncated", 0xA2, b"\x00\x01\x00\x00\x05a", "length-prefixed"),
    ("unsuback-no-codes", 0xB0, b"\x00\x01\x00", "no reason codes"),
    ("pingreq-body", 0xC0, b"\x00", "remaining length of 0"),
    ("disconnect-trailing", 0xE0, b"\x00\x00\x00", "after its properties"),
    ("disconnect-properties-past-end", 0xE0, b"\x00\x03\x1f", "past the end"),
    ("disconnect-flags", 0xE1, b"", "reserved fixed-header flags"),
    # AUTH never omits the property length once it has a reason code [3.15.2.2.1].
    ("auth-reason-only", 0xF0, b"\x18", "property length"),
    ("auth-trailing", 0xF0, b"\x18\x00\x00", "after its properties"),
    ("auth-flags", 0xF2, b"", "reserved fixed-header flags"),
]


@pytest.mark.parametrize(
    ("first", "body", "message"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_v5_packets(first: int, body: bytes, message: str) -> None:
    with pytest.raises(MalformedPacket, match=message) as info:
        decode_packet(first, body, MQTT_5)
    assert info.value.reason_code == ReasonCode.MALFORMED_PACKET == 0x81


SUB_A = s("a") + b"\x00"  # one topic filter, QoS 0
WILL_T = s("t") + b"\x00\x00"  # will topic and empty will payload
PROTOCOL_ERRORS: list[tuple[str, int, bytes, str, int]] = [
    ("publish-empty-topic-no-alias", 0x30, s("") + b"\x00x", "no Topic Alias", 0x82),
    ("publish-topic-alias-0", 0x30, s("a") + props(b"\x23\x00\x00"), "Topic Alias of 0", 0x94),
    ("publish-session-expiry", 0x30, s("a") + props(b"\x11\0\0\0\1"), "not allowed", 0x82),
    ("publish-two-content-types", 0x30, s("a") + props(b"\x03\0\0\x03\0\0"), "once", 0x82),
    ("publish-response-wildcard", 0x30, s("a") + props(b"\x08" + s("r/#")), "Response", 0x82),
    ("subscribe-qos-3", 0x82, b"\x00\x01\x00" + s("a") + b"\x03", "Maximum QoS 3", 0x82),
    ("subscribe-retain-handling-3", 0x82, b"\0\1\0" + s("a") + b"\x30", "Retain Handl", 0x82),
    ("subscribe-empty", 0x82, b"\x00\x01\x00", "without any topic filter", 0x82),
    ("subscribe-two-ids", 0x82, b"\0\1" + props(b"\x0b\x01\x0b\x02") + SUB_A, "once", 0x82),
    ("subscribe-id-0", 0x82, b"\x00\x01" + props(b"\x0b\x00") + SUB_A, "of 0", 0x82),
    ("unsubscribe-empty", 0xA2, b"\x00\x01\x00", "without any topic filter", 0x82),
    ("unsubscribe-reason", 0xA2, b"\0\1" + props(b"\x1f" + s("r")) + s("a"), "not allow", 0x82),
    (
        "connect-auth-data-without-method",
        0x10,
        connect5(0x02, s("c"), props(b"\x16\x00\x00")),
        "Authentication Method",
        0x82,
    ),
    ("connect-receive-max-0", 0x10, connect5(0x02, s("c"), props(b"\x21\0\0")), "of 0", 0x82),
    (
        "connect-will-session-expiry",
        0x10,
        connect5(0x06, s("c") + props(b"\x11\x00\x00\x00\x01") + WILL_T),
        "not allowed",
        0x82,
    ),
    (
        "connect-will-delay-in-connect",
        0x10,
        connect5(0x02, s("c"), props(b"\x18\x00\x00\x00\x01")),
        "not allowed",
        0x82,
    ),
    ("connack-maximum-qos-2", 0x20, b"\x00\x00" + props(b"\x24\x02"), "not 0 or 1", 0x82),
    ("connack-reason-0x04", 0x20, b"\x00\x04\x00", "not allowed in CONNACK", 0x82),
    ("puback-reason-0x92", 0x40, b"\x00\x01\x92", "not allowed in PUBACK", 0x82),
    ("puback-topic-alias", 0x40, b"\x00\x01\x00" + props(b"\x23\x00\x01"), "not allowed", 0x82),
    ("pubrel-reason-0x10", 0x62, b"\x00\x01\x10\x00", "not allowed in PUBREL", 0x82),
    ("suback-reason-0x11", 0x90, b"\x00\x01\x00\x11", "not allowed in SUBACK", 0x82),
    ("unsuback-reason-0x01", 0xB0, b"\x00\x01\x00\x01", "not allowed in UNSUBACK", 0x82),
    ("disconnect-reason-0x18", 0xE0, b"\x18", "not allowed in DISCONNECT", 0x82),
    ("disconnect-topic-alias", 0xE0, b"\x00" + props(b"\x23\x00\x01"), "not allowed", 0x82),
    ("auth-without-method", 0xF0, b"\x18\x00", "Authentication Method", 0x82),
    ("auth-0-without-method", 0xF0, b"\0" + props(b"\x1f" + s("r")), "Authentication M", 0x82),
    ("auth-reason-0x80", 0xF0, b"\x80" + props(b"\x15" + s("m")), "not allowed in AUTH", 0x82),
]


@pytest.mark.parametrize(
    ("first", "body", "message", "code"),
    [p[1:] for p in PROTOCOL_ERRORS],
    ids=[p[0] for p in PROTOCOL_ERRORS],
)
def test_protocol_errors(first: int, body: bytes, message: str, code: int) -> None:
    with pytest.raises(ProtocolError, match=message) as info:
        decode_packet(first, body, MQTT_5)
    assert not isinstance(info.value, MalformedPacket)
    assert info.value.reason_code == code


@pytest.mark.parametrize(
    ("first", "body"),
    [
        # [1.2] a packet that does not parse is Malformed, whatever rule it also breaks.
        (0x82, b"\x00\x01\x00" + s("a") + b"\x03" + s("b")),  # QoS 3, then a missing options byte
        (
            0x82,
            b"\x00\x01" + props(b"\x0b\x01\x0b\x02") + s("a") + b"\xc0",
        ),  # two ids, reserved bits
        (0x40, b"\x00\x01\x92" + props(b"\x1f")),  # bad reason code, truncated properties
        (0x90, b"\x00\x01" + props(b"\x23\x00\x01")),  # property not allowed, no codes
        (0x10, connect5(0x02, s("c") + b"\x00", props(b"\x16\x00\x00"))),  # auth data, trailing
        (0x10, connect5(0x06, s("c") + props(b"\x11\x00\x00\x00\x01") + s("t"))),  # no payload
        (0xE0, b"\x18" + props(b"\x23\x00\x01") + b"\x00"),  # bad reason, property, trailing
    ],
)
def test_malformed_wins_over_protocol_error(first: int, body: bytes) -> None:
    with pytest.raises(MalformedPacket):
        decode_packet(first, body, MQTT_5)


def test_every_truncation_of_a_v5_connect_is_malformed() -> None:
    for data in (CONNECT_FULL, CONNECT_ALL_PROPERTIES):
        body = data[2:]
        for cut in range(len(body)):
            with pytest.raises(MalformedPacket):
                decode_packet(0x10, body[:cut], MQTT_5)


def properties_at(first: int, body: bytes) -> int:
    """Where the property block of this CONNACK/PUBLISH/(UN)SUBSCRIBE/(UN)SUBACK starts."""
    if first >> 4 == 3:
        return 2 + ((body[0] << 8) | body[1]) + (2 if first & 0x06 else 0)
    return 2


WITH_PROPERTIES = [v for v in VALID if v[1][0] >> 4 in (2, 3, 8, 9, 10, 11)]


@pytest.mark.parametrize(
    "data", [v[1] for v in WITH_PROPERTIES], ids=[v[0] for v in WITH_PROPERTIES]
)
def test_every_truncation_up_to_the_end_of_the_properties_is_malformed(data: bytes) -> None:
    found = split_packet(data, 0)
    assert found is not None
    first, start, _ = found
    body = data[start:]
    _, end = decode_properties(body, properties_at(first, body), first >> 4)
    for cut in range(end):
        with pytest.raises(MalformedPacket):
            decode_packet(first, body[:cut], MQTT_5)
    for cut in range(end, len(body)):
        # Past the properties a cut may leave a valid packet (fewer filters or codes, a
        # shorter payload) or one without any filter or code; never anything but CodecError.
        try:
            decode_packet(first, body[:cut], MQTT_5)
        except CodecError:
            pass


def test_auth_type_15_is_reserved_before_mqtt5() -> None:
    with pytest.raises(MalformedPacket, match="reserved"):
        decode_packet(0xF0, b"")
    assert decode_packet(0xF0, b"", MQTT_5) == Auth()


@pytest.mark.parametrize("level", [0, 2, 6, 255])
def test_unknown_levels_still_unsupported(level: int) -> None:
    with pytest.raises(UnsupportedProtocol) as info:
        decode_packet(0x10, connect5(0x02, s("c"))[:6] + bytes((level, 2, 0, 60, 0)) + s("c"))
    assert info.value.level == level


# --------------------------------------------------------------------------------------------
# Reason codes each packet type may carry (the spec's tables, written out again)
# --------------------------------------------------------------------------------------------

SPEC_REASON_CODES: dict[int, set[int]] = {
    2: {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90,
        0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F},  # [3.2.2.2]
    4: {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99},  # [3.4.2.1]
    5: {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99},  # [3.5.2.1]
    6: {0x00, 0x92},  # [3.6.2.1]
    7: {0x00, 0x92},  # [3.7.2.1]
    9: {0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2},  # [3.9.3]
    11: {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91},  # [3.11.3]
    # [3.14.2.1], plus 0x8C Bad authentication method, which Table 2-6 [2.4] lists for
    # DISCONNECT too.
    14: {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8C, 0x8D, 0x8E, 0x8F, 0x90,
         0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0,
         0xA1, 0xA2},
    15: {0x00, 0x18, 0x19},  # [3.15.2.1]
}  # fmt: skip

METHOD = b"\x15" + s("m")


def carrying(packet_type: int, code: int) -> list[tuple[int, bytes, Packet]]:
    """Encodings of a ``packet_type`` packet carrying reason code ``code``, and the packet."""
    c = bytes((code,))
    m = Properties(authentication_method="m")
    match packet_type:
        case 2:
            return [(0x20, b"\x00" + c + b"\x00", ConnAck(False, code))]
        case 4 | 5 | 6 | 7:
            cls = {4: PubAck, 5: PubRec, 6: PubRel, 7: PubComp}[packet_type]
            first = packet_type << 4 | (2 if packet_type == 6 else 0)
            r = Properties(reason_string="r")
            return [
                (first, b"\x00\x01" + c, cls(1, code)),
                (first, b"\x00\x01" + c + props(b"\x1f" + s("r")), cls(1, code, r)),
            ]
        case 9:
            return [(0x90, b"\x00\x01\x00\x00" + c, SubAck(1, [0, code]))]
        case 11:
            return [(0xB0, b"\x00\x01\x00" + c + b"\x00", UnsubAck(1, [code, 0]))]
        case 14:
            return [(0xE0, c, Disconnect(code))]
        case _:
            return [(0xF0, c + props(METHOD), Auth(code, m))]


REASON_CASES = [(t, code) for t in sorted(SPEC_REASON_CODES) for code in range(256)]


@pytest.mark.parametrize(
    ("packet_type", "code"), REASON_CASES, ids=[f"{t}-{c:#04x}" for t, c in REASON_CASES]
)
def test_only_the_spec_reason_codes_are_accepted(packet_type: int, code: int) -> None:
    valid = code in SPEC_REASON_CODES[packet_type]
    assert (code in VALID_IN[packet_type]) == valid
    for first, body, packet in carrying(packet_type, code):
        if valid:
            assert decode_packet(first, body, MQTT_5) == packet
            assert decode_packet(first, body, MQTT_5) == decode5(encode_packet(packet, MQTT_5))
        else:
            with pytest.raises(ProtocolError, match="not allowed"):
                decode_packet(first, body, MQTT_5)
            with pytest.raises(CodecError, match="not allowed"):
                encode_packet(packet, MQTT_5)


def test_reason_code_names_and_aliases() -> None:
    assert ReasonCode.NORMAL_DISCONNECTION is ReasonCode.SUCCESS
    assert ReasonCode.GRANTED_QOS_0 is ReasonCode.SUCCESS
    expected = {
        "SUCCESS": 0x00, "GRANTED_QOS_1": 0x01, "GRANTED_QOS_2": 0x02,
        "DISCONNECT_WITH_WILL_MESSAGE": 0x04, "NO_MATCHING_SUBSCRIBERS": 0x10,
        "NO_SUBSCRIPTION_EXISTED": 0x11, "CONTINUE_AUTHENTICATION": 0x18, "RE_AUTHENTICATE": 0x19,
        "UNSPECIFIED_ERROR": 0x80, "MALFORMED_PACKET": 0x81, "PROTOCOL_ERROR": 0x82,
        "IMPLEMENTATION_SPECIFIC_ERROR": 0x83, "UNSUPPORTED_PROTOCOL_VERSION": 0x84,
        "CLIENT_IDENTIFIER_NOT_VALID": 0x85, "BAD_USER_NAME_OR_PASSWORD": 0x86,
        "NOT_AUTHORIZED": 0x87, "SERVER_UNAVAILABLE": 0x88, "SERVER_BUSY": 0x89, "BANNED": 0x8A,
        "SERVER_SHUTTING_DOWN": 0x8B, "BAD_AUTHENTICATION_METHOD": 0x8C,
        "KEEP_ALIVE_TIMEOUT": 0x8D, "SESSION_TAKEN_OVER": 0x8E, "TOPIC_FILTER_INVALID": 0x8F,
        "TOPIC_NAME_INVALID": 0x90, "PACKET_IDENTIFIER_IN_USE": 0x91,
        "PACKET_IDENTIFIER_NOT_FOUND": 0x92, "RECEIVE_MAXIMUM_EXCEEDED": 0x93,
        "TOPIC_ALIAS_INVALID": 0x94, "PACKET_TOO_LARGE": 0x95, "MESSAGE_RATE_TOO_HIGH": 0x96,
        "QUOTA_EXCEEDED": 0x97, "ADMINISTRATIVE_ACTION": 0x98, "PAYLOAD_FORMAT_INVALID": 0x99,
        "RETAIN_NOT_SUPPORTED": 0x9A, "QOS_NOT_SUPPORTED": 0x9B, "USE_ANOTHER_SERVER": 0x9C,
        "SERVER_MOVED": 0x9D, "SHARED_SUBSCRIPTIONS_NOT_SUPPORTED": 0x9E,
        "CONNECTION_RATE_EXCEEDED": 0x9F, "MAXIMUM_CONNECT_TIME": 0xA0,
        "SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED": 0xA1,
        "WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED": 0xA2,
    }  # fmt: skip
    assert {code.name: code.value for code in ReasonCode} == expected


def test_errors_carry_the_reason_code_a_server_answers_with() -> None:
    assert CodecError("x").reason_code == ReasonCode.UNSPECIFIED_ERROR
    assert MalformedPacket("x").reason_code == 0x81
    assert ProtocolError("x").reason_code == 0x82
    assert ProtocolError("x", ReasonCode.TOPIC_ALIAS_INVALID).reason_code == 0x94
    assert UnsupportedProtocol(6).reason_code == 0x84
    assert issubclass(ProtocolError, CodecError)
    assert not issubclass(ProtocolError, MalformedPacket)
    # The codec's names are the same classes.
    assert codec.ProtocolError is ProtocolError
    with pytest.raises(UnsupportedProtocol) as info:
        decode_packet(0x10, s("MQTT") + b"\x06\x02\x00\x3c\x00" + s("c"))
    assert info.value.reason_code == ReasonCode.UNSUPPORTED_PROTOCOL_VERSION


# --------------------------------------------------------------------------------------------
# Subscription options [3.8.3.1]
# --------------------------------------------------------------------------------------------


def test_subscription_options_bits() -> None:
    assert subscription_options(0x2D) == (1, True, True, 2)
    assert subscription_options(0x02) == (2, False, False, 0)
    assert subscription_options(0x18) == (0, False, True, 1)
    assert subscription_options(0x04) == (0, True, False, 0)
    assert (
        make_subscription_options(1, no_local=True, retain_as_published=True, retain_handling=2)
        == 0x2D
    )
    assert make_subscription_options(0) == 0
    for qos, handling in ((3, 0), (-1, 0), (0, 3), (0, -1)):
        with pytest.raises(CodecError):
            make_subscription_options(qos, retain_handling=handling)


VALID_OPTIONS = [b for b in range(256) if not b & 0xC0 and b & 3 != 3 and b & 0x30 != 0x30]


def test_every_valid_options_byte_round_trips() -> None:
    assert len(VALID_OPTIONS) == 3 * 2 * 2 * 3
    for byte in VALID_OPTIONS:
        assert make_subscription_options(*subscription_options(byte)) == byte
        packet = Subscribe(1, [("a", byte)])
        assert decode5(encode_packet(packet, MQTT_5)) == packet
    for byte in set(range(256)) - set(VALID_OPTIONS):
        with pytest.raises(CodecError):
            encode_packet(Subscribe(1, [("a", byte)]), MQTT_5)
        with pytest.raises(CodecError):
            decode_packet(0x82, b"\x00\x01\x00" + s("a") + bytes((byte,)), MQTT_5)


# --------------------------------------------------------------------------------------------
# Fast encoders the server uses
# --------------------------------------------------------------------------------------------


def test_fast_encoders_match_encode_packet() -> None:
    p = Properties(reason_string="r")
    for ptype, cls in ((4, PubAck), (5, PubRec), (6, PubRel), (7, PubComp)):
        assert encode_ack_v5(ptype, 9) == encode_packet(cls(9), MQTT_5) == encode_packet(cls(9))
        assert encode_ack_v5(ptype, 9, 0, Properties()) == encode_ack_v5(ptype, 9)
        code = 0x92 if ptype in (6, 7) else 0x80
        assert encode_ack_v5(ptype, 9, code) == encode_packet(cls(9, code), MQTT_5)
        assert encode_ack_v5(ptype, 9, code, p) == encode_packet(cls(9, code, p), MQTT_5)
    assert encode_connack_v5(True, 0, p) == encode_packet(ConnAck(True, 0, p), MQTT_5)
    assert encode_suback_v5(3, [0, 0x80]) == encode_packet(SubAck(3, [0, 0x80]), MQTT_5)
    assert encode_suback_v5(3, [1], p) == encode_packet(SubAck(3, [1], p), MQTT_5)
    assert encode_unsuback_v5(3, [0x11]) == encode_packet(UnsubAck(3, [0x11]), MQTT_5)
    assert encode_unsuback_v5(3, [0], p) == encode_packet(UnsubAck(3, [0], p), MQTT_5)
    assert encode_disconnect_v5(0) == b"\xe0\x00"
    assert encode_disconnect_v5(0x8B, p) == encode_packet(Disconnect(0x8B, p), MQTT_5)
    assert encode_auth(0) == encode_auth(0, Properties()) == b"\xf0\x00"
    m = Properties(authentication_method="m")
    assert encode_auth(0x18, m) == encode_packet(Auth(0x18, m), MQTT_5)


def test_fast_encoders_refuse_what_the_decoder_refuses() -> None:
    with pytest.raises(CodecError, match="not PUBACK"):
        encode_ack_v5(3, 1)
    with pytest.raises(CodecError, match="not allowed"):
        encode_ack_v5(4, 1, 0x92)
    with pytest.raises(CodecError, match="not allowed"):
        encode_ack_v5(4, 1, 0, Properties(topic_alias=1))
    with pytest.raises(CodecError, match="not allowed"):
        encode_connack_v5(False, 0x04, Properties())
    with pytest.raises(CodecError, match="at least one"):
        encode_suback_v5(1, [])
    with pytest.raises(CodecError, match="at least one"):
        encode_unsuback_v5(1, [])
    with pytest.raises(CodecError, match="not allowed"):
        encode_disconnect_v5(0x18)
    with pytest.raises(CodecError, match="Authentication Method"):
        encode_auth(0x18)
    with pytest.raises(CodecError, match="Authentication Method"):
        encode_auth(0, Properties(reason_string="r"))
    with pytest.raises(CodecError, match="Topic Alias"):
        encode_packet(Publish("", b"x"), MQTT_5)
    with pytest.raises(CodecError, match="packet identifier"):
        encode_packet(Publish("a", b"x", 1), MQTT_5)
    with pytest.raises(CodecError, match="Authentication Method"):
        encode_packet(
            Connect("c", protocol_level=5, properties=Properties(authentication_data=b"")), MQTT_5
        )
    with pytest.raises(CodecError, match="topic filter"):
        encode_packet(Subscribe(1), MQTT_5)
    with pytest.raises(CodecError, match="topic filter"):
        encode_packet(Unsubscribe(1), MQTT_5)


def test_publish_v5_parts_with_a_long_property_block() -> None:
    # 200 bytes of properties: the property length takes two bytes [1.5.5].
    p = Properties(user_properties=[("k", "v" * 194)])
    raw = encode_property_bytes(p, 3)
    assert len(raw) == 200
    head, block = publish_v5_parts(b"a/b", 1000, 1, False, False, raw)
    assert block == b"\xc8\x01" + raw
    data = head + b"\x00\x05" + block + b"x" * 1000
    assert data == encode_packet(Publish("a/b", b"x" * 1000, 1, False, False, 5, p), MQTT_5)
    assert decode5(data) == Publish("a/b", b"x" * 1000, 1, False, False, 5, p)


# --------------------------------------------------------------------------------------------
# Hypothesis: generated packets of every type round trip
# --------------------------------------------------------------------------------------------

packet_ids = st.integers(1, 65535)
qos_levels = st.integers(0, 2)
binaries = st.binary(max_size=40)


def reason(packet_type: int) -> st.SearchStrategy[int]:
    return st.sampled_from(sorted(SPEC_REASON_CODES[packet_type]))


@st.composite
def wills(draw: st.DrawFn) -> Will:
    return Will(
        draw(topic_names),
        draw(binaries),
        draw(qos_levels),
        draw(st.booleans()),
        draw(properties_for(0)),
    )


@st.composite
def connects(draw: st.DrawFn) -> Connect:
    return Connect(
        draw(texts),
        draw(st.booleans()),
        draw(st.integers(0, 65535)),
        5,
        draw(st.none() | wills()),
        draw(st.none() | texts),
        draw(st.none() | binaries),  # [3.1.2.9] independent of the user name
        draw(properties_for(1)),
    )


@st.composite
def publishes(draw: st.DrawFn) -> Publish:
    qos = draw(qos_levels)
    topic = draw(texts)
    p = draw(properties_for(3))
    if not topic and p.topic_alias is None:
        p.topic_alias = draw(st.integers(1, 65535))  # [3.3.2.1]
    return Publish(
        topic,
        draw(binaries),
        qos,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,
        draw(packet_ids) if qos else None,
        p,
    )


@st.composite
def acks(draw: st.DrawFn) -> PubAck | PubRec | PubRel | PubComp:
    packet_type = draw(st.sampled_from([4, 5, 6, 7]))
    cls = {4: PubAck, 5: PubRec, 6: PubRel, 7: PubComp}[packet_type]
    return cls(draw(packet_ids), draw(reason(packet_type)), draw(properties_for(packet_type)))


@st.composite
def auths(draw: st.DrawFn) -> Auth:
    code = draw(reason(15))
    p = draw(properties_for(15))
    if p.authentication_method is None and (code or p != Properties()):
        p.authentication_method = draw(texts)  # [3.15.2.2.2]
    return Auth(code, p)


packets: st.SearchStrategy[Packet] = st.one_of(
    connects(),
    st.builds(ConnAck, st.booleans(), reason(2), properties_for(2)),
    publishes(),
    acks(),
    st.builds(
        Subscribe,
        packet_ids,
        st.lists(st.tuples(texts, st.sampled_from(VALID_OPTIONS)), min_size=1, max_size=4),
        properties_for(8),
    ),
    st.builds(SubAck, packet_ids, st.lists(reason(9), min_size=1, max_size=5), properties_for(9)),
    st.builds(Unsubscribe, packet_ids, st.lists(texts, min_size=1, max_size=4), properties_for(10)),
    st.builds(
        UnsubAck, packet_ids, st.lists(reason(11), min_size=1, max_size=5), properties_for(11)
    ),
    st.builds(PingReq),
    st.builds(PingResp),
    st.builds(Disconnect, reason(14), properties_for(14)),
    auths(),
)


@given(packets)
def test_round_trip_one_packet(packet: Packet) -> None:
    data = encode_packet(packet, MQTT_5)
    assert decode5(data) == packet
    assert decode_stream(data, MQTT_5) == ([packet], len(data))


@given(st.lists(packets, min_size=1, max_size=4))
def test_feeding_byte_by_byte_yields_the_same_packets(batch: list[Packet]) -> None:
    data = b"".join(encode_packet(p, MQTT_5) for p in batch)
    buf = bytearray()
    out: list[Packet] = []
    for byte in data:
        buf.append(byte)
        got, used = decode_stream(bytes(buf), MQTT_5)
        out.extend(got)
        del buf[:used]
    assert out == batch
    assert not buf


@given(publishes(), st.binary(max_size=300))
def test_publish_v5_parts_equals_encode_packet(packet: Publish, payload: bytes) -> None:
    packet.payload = payload
    topic = packet.topic.encode("utf-8")
    head, block = publish_v5_parts(
        topic,
        len(payload),
        packet.qos,
        packet.retain,
        packet.dup,
        encode_property_bytes(packet.properties, 3),
    )
    pid = packet.packet_id.to_bytes(2, "big") if packet.packet_id else b""
    assert head + pid + block + payload == encode_packet(packet, MQTT_5)


@given(acks())
def test_encode_ack_v5_equals_encode_packet(packet: PubAck | PubRec | PubRel | PubComp) -> None:
    packet_type = {PubAck: 4, PubRec: 5, PubRel: 6, PubComp: 7}[type(packet)]
    data = encode_ack_v5(packet_type, packet.packet_id, packet.reason_code, packet.properties)
    assert data == encode_packet(packet, MQTT_5)
    # The shortest form the spec allows [3.4.2.1, 3.4.2.2.1].
    if packet.properties == Properties():
        assert len(data) == (5 if packet.reason_code else 4)
    else:
        assert len(data) > 5
