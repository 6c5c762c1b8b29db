"""MQTT 5 PUBLISH over real sockets: properties end to end, PUBACK/PUBREC reason codes, topic
aliases both ways, the client's Maximum Packet Size, Receive Maximum both ways, message expiry
[3.3, 3.4, 3.5, 4.9].

Spec references are to MQTT Version 5.0 (OASIS, 2019), section numbers in brackets.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties

from broker import connection as connection_module
from broker.auth import ConnectionInfo, Identity
from broker.codec import (
    Connect,
    ConnectReturnCode,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Will,
    frame,
)
from broker.properties import Properties, encode_varint
from broker.reason_codes import ReasonCode
from tests.broker.raw5 import Pool5, pool5
from tests.broker.rawclient import StartBroker, wait_offline
from tests.harness import RunningBroker


@pytest.fixture
def clients(start_broker: StartBroker) -> Iterator[Pool5]:
    with pool5() as pool:
        yield pool


USER = [("a", "1"), ("b", "2"), ("a", "3")]  # [3.3.2-18] order kept, duplicates allowed


# -- properties end to end [3.3.2.3] -------------------------------------------------------------


def test_application_properties_reach_the_subscriber_unaltered(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    sub = clients.connected5(broker.port, f"{name}-sub")
    assert sub.subscribe5((f"{name}/t", 1)) == [1]
    pub = clients.connected5(broker.port, f"{name}-pub")
    sent = Properties(
        payload_format_indicator=1,
        message_expiry_interval=60,
        content_type="application/json",
        response_topic=f"{name}/reply",
        correlation_data=b"\x00\x01corr",
        user_properties=USER,
    )
    assert pub.publish5(f"{name}/t", b'{"x": 1}', qos=1, properties=sent) == ReasonCode.SUCCESS
    got = sub.recv_publish()
    props = got.properties
    # [3.3.2-4, 3.3.2-16, 3.3.2-19, 3.3.2-17, 3.3.2-20] forwarded unaltered.
    assert props.payload_format_indicator == 1
    assert props.content_type == "application/json"
    assert props.response_topic == f"{name}/reply"
    assert props.correlation_data == b"\x00\x01corr"
    assert props.user_properties == USER  # [3.3.2-18] same order, duplicates kept
    # [3.3.2-6] the expiry is forwarded less the time the message waited (under a second).
    assert props.message_expiry_interval in (59, 60)
    assert props.topic_alias is None  # the subscriber allows none (default 0)
    assert props.subscription_identifiers == []
    assert got.payload == b'{"x": 1}'


def test_paho_v5_receives_every_property(broker: RunningBroker, clients: Pool5, name: str) -> None:
    sub = clients.paho5(broker.port, f"{name}-sub")
    assert sub.connect()[1] == 0
    assert sub.subscribe(f"{name}/t") == [1]
    pub = clients.paho5(broker.port, f"{name}-pub")
    assert pub.connect()[1] == 0
    props = PahoProperties(PacketTypes.PUBLISH)
    props.PayloadFormatIndicator = 1
    props.ContentType = "text/plain"
    props.MessageExpiryInterval = 120
    props.UserProperty = USER
    pub.publish(f"{name}/t", "héllo".encode(), qos=1, properties=props)
    [got] = sub.expect(1)
    assert (got.topic, got.payload, got.qos) == (f"{name}/t", "héllo".encode(), 1)
    assert got.prop("PayloadFormatIndicator") == 1
    assert got.prop("ContentType") == "text/plain"
    assert got.prop("MessageExpiryInterval") in (119, 120)
    assert got.prop("UserProperty") == USER


def test_request_response_round_trip_with_correlation_data(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    # [4.10] the requester names a Response Topic and Correlation Data; the responder answers
    # there with the same Correlation Data.
    responder = clients.paho5(broker.port, f"{name}-responder")
    assert responder.connect()[1] == 0
    assert responder.subscribe(f"{name}/request") == [1]
    requester = clients.paho5(broker.port, f"{name}-requester")
    assert requester.connect()[1] == 0
    assert requester.subscribe(f"{name}/response/+") == [1]
    ask = PahoProperties(PacketTypes.PUBLISH)
    ask.ResponseTopic = f"{name}/response/7"
    ask.CorrelationData = b"req-7"
    requester.publish(f"{name}/request", b"2+2", properties=ask)
    [request] = responder.expect(1)
    answer = PahoProperties(PacketTypes.PUBLISH)
    answer.CorrelationData = request.prop("CorrelationData")
    responder.publish(request.prop("ResponseTopic"), b"4", properties=answer)
    [response] = requester.expect(1)
    assert (response.topic, response.payload) == (f"{name}/response/7", b"4")
    assert response.prop("CorrelationData") == b"req-7"


def test_expired_messages_queued_for_an_offline_session_are_not_delivered(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    keep = Properties(session_expiry_interval=60)
    sub = clients.connected5(broker.port, name, clean=False, properties=keep)
    assert sub.subscribe5((f"{name}/t", 1)) == [1]
    sub.disconnect5()
    wait_offline(broker, name)
    pub = clients.connected5(broker.port, f"{name}-pub")
    pub.publish5(
        f"{name}/t", b"short", qos=1, packet_id=1, properties=Properties(message_expiry_interval=1)
    )
    pub.publish5(
        f"{name}/t", b"long", qos=1, packet_id=2, properties=Properties(message_expiry_interval=30)
    )
    published_at = time.monotonic()
    # Time passing is the behaviour under test: the 1 s message must outlive its expiry
    # while queued, and the other must show the time it waited [3.3.2.3.3].
    time.sleep(max(0.0, published_at + 1.1 - time.monotonic()))
    back = clients.raw5(broker.port)
    assert back.connect(name, clean=False, properties=keep).session_present is True
    got = back.recv_publish()
    assert got.payload == b"long"
    assert got.properties.message_expiry_interval in (28, 29)  # [3.3.2-6] decremented
    back.ack(got)
    back.expect_nothing(0.2)
    assert broker.stats()["messages_expired"] == 1


def test_message_expiry_0_is_delivered_to_an_online_subscriber(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    sub = clients.connected5(broker.port, f"{name}-sub")
    assert sub.subscribe5((f"{name}/t", 1)) == [1]
    pub = clients.connected5(broker.port, name)
    zero = Properties(message_expiry_interval=0)
    assert pub.publish5(f"{name}/t", b"now", qos=1, properties=zero) == ReasonCode.SUCCESS
    got = sub.recv_publish(timeout=1)
    assert (got.payload, got.properties.message_expiry_interval) == (b"now", 0)
    assert broker.stats()["messages_expired"] == 0


# -- PUBACK / PUBREC reason codes [3.4.2.1, 3.5.2.1] ---------------------------------------------


@pytest.mark.parametrize("qos", [1, 2])
def test_no_matching_subscribers_is_0x10(
    broker: RunningBroker, clients: Pool5, name: str, qos: int
) -> None:
    pub = clients.connected5(broker.port, name)
    assert pub.publish5(f"{name}/nobody", b"x", qos=qos) == ReasonCode.NO_MATCHING_SUBSCRIBERS
    sub = clients.connected5(broker.port, f"{name}-sub")
    assert sub.subscribe5((f"{name}/nobody", 0)) == [0]
    assert pub.publish5(f"{name}/nobody", b"x", qos=qos, packet_id=2) == ReasonCode.SUCCESS


class DenyTopic:
    """Lets everyone do everything except publish to one topic."""

    checks_receive = False

    def __init__(self, forbidden: str) -> None:
        self.forbidden = forbidden

    def authenticate(self, info: ConnectionInfo, connect: Connect) -> Identity | ConnectReturnCode:
        return Identity(connect.client_id)

    def may_publish(self, identity: Identity, topic: str, retain: bool) -> bool:
        return topic != self.forbidden

    def may_subscribe(self, identity: Identity, topic_filter: str) -> bool:
        return True

    def may_receive(self, identity: Identity, topic: str) -> bool:
        return True


def test_denied_publish_is_0x87_and_a_denied_qos2_takes_no_window(
    start_broker: StartBroker, clients: Pool5, name: str
) -> None:
    broker = start_broker(hooks=DenyTopic(f"{name}/no"), max_inbound_qos2=1)
    sub = clients.connected5(broker.port, f"{name}-sub")
    assert sub.subscribe5((f"{name}/#", 1)) == [1]
    pub = clients.connected5(broker.port, name)
    assert pub.publish5(f"{name}/no", b"x", qos=1) == ReasonCode.NOT_AUTHORIZED
    # A QoS 2 PUBREC >= 0x80 ends the flow [4.3.3]: no PUBREL is expected, and the packet id
    # does not count against Receive Maximum (1 here), so a second one is not a violation.
    for pid in (2, 3):
        pub.send(Publish(f"{name}/no", b"x", 2, packet_id=pid))
        assert pub.recv(PubRec) == PubRec(pid, ReasonCode.NOT_AUTHORIZED)
    assert pub.publish5(f"{name}/ok", b"fine", qos=2, packet_id=4) == ReasonCode.SUCCESS
    got = sub.recv_publish()
    assert got.payload == b"fine"  # nothing denied was routed
    assert broker.stats()["messages_dropped_not_authorized"] == 3


@pytest.mark.parametrize("qos", [1, 2])
def test_payload_format_utf8_with_invalid_utf8_is_0x99(
    broker: RunningBroker, clients: Pool5, name: str, qos: int
) -> None:
    sub = clients.connected5(broker.port, f"{name}-sub")
    assert sub.subscribe5((f"{name}/t", 0)) == [0]
    pub = clients.connected5(broker.port, name)
    utf8 = Properties(payload_format_indicator=1)
    # [3.3.2.3.2] the receiver may check the payload; a failure is 0x99 in the ack.
    assert pub.publish5(f"{name}/t", b"\xff\xfe", qos, properties=utf8) == 0x99
    assert pub.publish5(f"{name}/t", "ok é".encode(), qos, packet_id=2, properties=utf8) == 0
    assert sub.recv_publish().payload == "ok é".encode()  # only the valid one was routed
    sub.expect_nothing(0.2)
    binary = Properties(payload_format_indicator=0)
    assert pub.publish5(f"{name}/t", b"\xff", qos, packet_id=3, properties=binary) == 0


# -- topic aliases from the client [3.3.2.3.4] ------------------------------------------------


def test_inbound_topic_alias_is_set_used_and_replaced(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    sub = clients.connected5(broker.port, f"{name}-sub")
    assert sub.subscribe5((f"{name}/#", 0)) == [0]
    pub = clients.connected5(broker.port, name)
    pub.publish5(f"{name}/a", b"1", properties=Properties(topic_alias=1))
    pub.publish5("", b"2", properties=Properties(topic_alias=1))
    pub.publish5(f"{name}/b", b"3", properties=Properties(topic_alias=1))  # replaces it
    pub.publish5("", b"4", qos=1, properties=Properties(topic_alias=1))
    got = [(p.topic, p.payload) for p in (sub.recv_publish() for _ in range(4))]
    assert got == [
        (f"{name}/a", b"1"),
        (f"{name}/a", b"2"),
        (f"{name}/b", b"3"),
        (f"{name}/b", b"4"),
    ]


def test_inbound_topic_alias_above_the_maximum_is_disconnect_0x94(
    start_broker: StartBroker, clients: Pool5, name: str
) -> None:
    broker = start_broker(max_topic_alias=2)
    pub = clients.connected5(broker.port, name)
    pub.send(Publish(f"{name}/t", b"x", properties=Properties(topic_alias=3)))
    pub.expect_disconnect(ReasonCode.TOPIC_ALIAS_INVALID)  # [3.3.2-9, 4.13]
    assert broker.stats()["protocol_violations"] == 1


def test_unknown_inbound_topic_alias_is_disconnect_0x82(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    pub = clients.connected5(broker.port, name)
    pub.send(Publish("", b"x", properties=Properties(topic_alias=1)))
    pub.expect_disconnect(ReasonCode.PROTOCOL_ERROR)  # [3.3.4] alias never set
    assert broker.stats()["protocol_violations"] == 1


def test_inbound_topic_alias_does_not_outlive_the_connection(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    first = clients.connected5(broker.port, name)
    first.publish5(f"{name}/t", b"x", properties=Properties(topic_alias=1))
    first.disconnect5()
    wait_offline(broker, name)
    second = clients.connected5(broker.port, name)
    # [3.3.2-7] mappings do not carry over to another network connection.
    second.send(Publish("", b"x", properties=Properties(topic_alias=1)))
    second.expect_disconnect(ReasonCode.PROTOCOL_ERROR)


# -- topic aliases towards the client [3.3.2.3.4] ----------------------------------------------


def test_outbound_topic_aliases_up_to_the_client_maximum(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    sub = clients.connected5(
        broker.port, f"{name}-sub", properties=Properties(topic_alias_maximum=2)
    )
    assert sub.subscribe5((f"{name}/#", 0)) == [0]
    pub = clients.connected5(broker.port, name)
    for topic in ("a", "a", "b", "c", "c", "a", "b"):
        pub.publish5(f"{name}/{topic}", topic.encode())
    seen = [sub.recv_publish() for _ in range(7)]
    wire = [(p.topic, p.properties.topic_alias, p.payload) for p in seen]
    assert wire == [
        (f"{name}/a", 1, b"a"),  # first use: topic and alias
        ("", 1, b"a"),  # then the alias alone, empty topic
        (f"{name}/b", 2, b"b"),
        (f"{name}/c", None, b"c"),  # [3.3.2-11] none above the client's maximum
        (f"{name}/c", None, b"c"),
        ("", 1, b"a"),
        ("", 2, b"b"),
    ]
    # The alias tables belong to this connection, not to the placeholder every 3.1.1
    # connection shares until an MQTT 5 CONNECT gives it its own.
    assert connection_module._NO_ALIASES_OUT == {}
    assert connection_module._NO_ALIASES_IN == {}


def test_no_outbound_aliases_without_the_client_asking(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    # A paho client announces no Topic Alias Maximum (0): every message names its topic in
    # full [3.1.2.11.5]. (paho 2.2 itself would not resolve an alias it received.)
    sub = clients.paho5(broker.port, f"{name}-sub")
    assert sub.connect()[1] == 0
    assert sub.subscribe(f"{name}/t") == [1]
    pub = clients.connected5(broker.port, name)
    pub.publish5(f"{name}/t", b"1", qos=1)
    pub.publish5(f"{name}/t", b"2", qos=1, packet_id=2)
    got = sub.expect(2)
    assert [(m.topic, m.payload) for m in got] == [(f"{name}/t", b"1"), (f"{name}/t", b"2")]
    assert [m.prop("TopicAlias") for m in got] == [None, None]


def test_outbound_aliases_start_afresh_on_a_new_connection(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    aliases = Properties(topic_alias_maximum=1)
    sub = clients.connected5(broker.port, f"{name}-sub", properties=aliases)
    assert sub.subscribe5((f"{name}/t", 0)) == [0]
    pub = clients.connected5(broker.port, name)
    pub.publish5(f"{name}/t", b"1")
    assert sub.recv_publish().topic == f"{name}/t"
    sub.disconnect5()
    wait_offline(broker, f"{name}-sub")
    again = clients.connected5(broker.port, f"{name}-sub", properties=aliases)
    assert again.subscribe5((f"{name}/t", 0)) == [0]
    pub.publish5(f"{name}/t", b"2")
    got = again.recv_publish()
    assert (got.topic, got.properties.topic_alias) == (f"{name}/t", 1)


# -- the client's Maximum Packet Size [3.1.2.11.4] -----------------------------------------------


@pytest.mark.parametrize("qos", [0, 1])
def test_message_too_large_for_the_client_is_dropped(
    broker: RunningBroker, clients: Pool5, name: str, qos: int
) -> None:
    sub = clients.connected5(
        broker.port, f"{name}-sub", properties=Properties(maximum_packet_size=200)
    )
    assert sub.subscribe5((f"{name}/t", qos)) == [qos]
    pub = clients.connected5(broker.port, name)
    pub.publish5(f"{name}/t", b"L" * 300, qos=qos)
    pub.publish5(f"{name}/t", b"small", qos=qos, packet_id=2)
    # [3.1.2-24, 3.1.2-25] a packet over the client's maximum is discarded as if delivered.
    got = sub.recv_publish()
    assert got.payload == b"small"
    assert sub.last_size <= 200
    if qos:
        sub.ack(got)
    sub.expect_nothing(0.2)
    assert broker.stats()["messages_dropped_too_large"] == 1
    assert broker.call(lambda: len(broker.broker.sessions[f"{name}-sub"].inflight)) == 0


def test_dropped_qos0_message_is_not_counted_as_delivered(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    sub = clients.connected5(
        broker.port, f"{name}-sub", properties=Properties(maximum_packet_size=200)
    )
    assert sub.subscribe5((f"{name}/t", 0)) == [0]
    pub = clients.connected5(broker.port, name)
    pub.publish5(f"{name}/t", b"L" * 300, qos=1)
    assert broker.stats()["messages_dropped_too_large"] == 1
    assert broker.stats()["messages_delivered"] == 0


# -- Receive Maximum [3.3.4, 4.9] ---------------------------------------------------------------


def test_receive_maximum_limits_unacknowledged_qos1_towards_the_client(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    sub = clients.connected5(broker.port, f"{name}-sub", properties=Properties(receive_maximum=2))
    assert sub.subscribe5((f"{name}/t", 1)) == [1]
    pub = clients.connected5(broker.port, name)
    for i in range(5):
        pub.publish5(f"{name}/t", b"m%d" % i, qos=1, packet_id=i + 1)
    # [3.3.4-9] never more than Receive Maximum unacknowledged QoS 1/2 PUBLISH packets.
    window = [sub.recv_publish(), sub.recv_publish()]
    assert [p.payload for p in window] == [b"m0", b"m1"]
    sub.expect_nothing(0.3)
    got = []
    for publish in window:
        sub.send(PubAck(publish.packet_id or 0))
        got.append(sub.recv_publish())  # one more for each PUBACK
        sub.expect_nothing(0.1)
    sub.send(PubAck(got[0].packet_id or 0))
    got.append(sub.recv_publish())
    assert [p.payload for p in got] == [b"m2", b"m3", b"m4"]


def test_receive_maximum_counts_qos2_until_pubcomp(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    sub = clients.connected5(broker.port, f"{name}-sub", properties=Properties(receive_maximum=1))
    assert sub.subscribe5((f"{name}/t", 2)) == [2]
    pub = clients.connected5(broker.port, name)
    pub.publish5(f"{name}/t", b"one", qos=2, packet_id=1)
    pub.publish5(f"{name}/t", b"two", qos=2, packet_id=2)
    first = sub.recv_publish()
    sub.send(PubRec(first.packet_id or 0))
    assert sub.recv(PubRel) == PubRel(first.packet_id or 0)
    sub.expect_nothing(0.2)  # [4.9] still in flight until PUBCOMP
    sub.send(PubComp(first.packet_id or 0))
    assert sub.recv_publish().payload == b"two"


def test_error_pubrec_from_the_client_ends_the_qos2_flow(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    sub = clients.connected5(broker.port, f"{name}-sub", properties=Properties(receive_maximum=1))
    assert sub.subscribe5((f"{name}/t", 2)) == [2]
    pub = clients.connected5(broker.port, name)
    pub.publish5(f"{name}/t", b"refused", qos=2, packet_id=1)
    pub.publish5(f"{name}/t", b"next", qos=2, packet_id=2)
    first = sub.recv_publish()
    assert first.payload == b"refused"
    # [4.3.3] a PUBREC >= 0x80 ends the flow: no PUBREL, and the window slot is free again.
    sub.send(PubRec(first.packet_id or 0, ReasonCode.UNSPECIFIED_ERROR))
    second = sub.recv_publish()
    assert second.payload == b"next"
    sub.ack(second)
    sub.expect_nothing(0.2)
    assert broker.call(lambda: len(broker.broker.sessions[f"{name}-sub"].inflight)) == 0


def test_more_unacknowledged_qos2_than_receive_maximum_is_disconnect_0x93(
    start_broker: StartBroker, clients: Pool5, name: str
) -> None:
    broker = start_broker(max_inbound_qos2=2)
    pub = clients.raw5(broker.port)
    assert pub.connect(name).properties.receive_maximum == 2
    for pid in (1, 2):
        pub.send(Publish(f"{name}/t", b"x", 2, packet_id=pid))
        assert pub.recv(PubRec).packet_id == pid
    # A PUBREL frees its slot [4.9]...
    pub.send(PubRel(1))
    assert pub.recv(PubComp) == PubComp(1)
    pub.send(Publish(f"{name}/t", b"x", 2, packet_id=3))
    assert pub.recv(PubRec).packet_id == 3
    # ...but a third awaiting PUBREL is over the Receive Maximum of 2: DISCONNECT 0x93
    # [3.3.4-7, 4.9].
    pub.send(Publish(f"{name}/t", b"x", 2, packet_id=4))
    pub.expect_disconnect(ReasonCode.RECEIVE_MAXIMUM_EXCEEDED)
    assert broker.stats()["protocol_violations"] == 1


# -- what the server announced, enforced ----------------------------------------------------------


def test_packet_over_the_server_maximum_is_disconnect_0x95(
    start_broker: StartBroker, clients: Pool5, name: str
) -> None:
    broker = start_broker(max_packet_size=256)
    pub = clients.connected5(broker.port, name)
    pub.send(Publish(f"{name}/t", b"x" * 300))
    pub.expect_disconnect(ReasonCode.PACKET_TOO_LARGE)  # [3.2.2.3.6, 4.13]
    assert broker.stats()["oversize_packets"] == 1


def test_publish_above_maximum_qos_is_disconnect_0x9b(
    start_broker: StartBroker, clients: Pool5, name: str
) -> None:
    broker = start_broker(max_qos=1)
    pub = clients.raw5(broker.port)
    assert pub.connect(name).properties.maximum_qos == 1
    pub.send(Publish(f"{name}/t", b"x", 2, packet_id=1))
    # [3.2.2-11] above the announced Maximum QoS: a Protocol Error, DISCONNECT 0x9B.
    pub.expect_disconnect(ReasonCode.QOS_NOT_SUPPORTED)


# -- malformed and forbidden properties [2.2.2, 4.13] --------------------------------------------


def publish_bytes(topic: str, props: bytes, payload: bytes = b"p") -> bytes:
    """A QoS 0 PUBLISH with a hand-made property block (``props`` includes its length)."""
    name = topic.encode()
    return frame(0x30, len(name).to_bytes(2, "big") + name + props + payload)


def block(raw: bytes) -> bytes:
    return encode_varint(len(raw)) + raw


def utf8(text: bytes) -> bytes:
    return len(text).to_bytes(2, "big") + text


@pytest.mark.parametrize(
    ("props", "reason", "counter"),
    [
        pytest.param(block(b"\x7f\x01"), 0x81, "malformed_packets", id="unknown-property-id"),
        pytest.param(
            block(b"\x03" + utf8(b"a") + b"\x03" + utf8(b"b")),
            0x82,
            "protocol_violations",
            id="duplicate-content-type",
        ),
        pytest.param(
            block(b"\x11\x00\x00\x00\x10"), 0x82, "protocol_violations", id="session-expiry"
        ),
        pytest.param(block(b"\x12" + utf8(b"id")), 0x82, "protocol_violations", id="assigned-id"),
        pytest.param(b"\x0a\x03" + utf8(b"a"), 0x81, "malformed_packets", id="length-past-end"),
        pytest.param(block(b"\x03\x00\x09abc"), 0x81, "malformed_packets", id="string-truncated"),
        pytest.param(block(b"\x02\x00\x00"), 0x81, "malformed_packets", id="u32-truncated"),
        pytest.param(block(b"\x01\x02"), 0x82, "protocol_violations", id="format-indicator-2"),
        pytest.param(
            block(b"\x08" + utf8(b"a/#")), 0x82, "protocol_violations", id="wildcard-response"
        ),
        pytest.param(block(b"\x23\x00\x00"), 0x94, "protocol_violations", id="topic-alias-0"),
        pytest.param(
            block(b"\x03" + utf8(b"\xc3\x28")), 0x81, "malformed_packets", id="bad-utf8-string"
        ),
    ],
)
def test_bad_publish_properties_get_a_disconnect_and_harm_nobody_else(
    broker: RunningBroker, clients: Pool5, name: str, props: bytes, reason: int, counter: str
) -> None:
    watch = clients.connected5(broker.port, f"{name}-watch")
    assert watch.subscribe5((f"{name}/#", 0)) == [0]
    bad = clients.connected5(broker.port, name, will=Will(f"{name}/will", b"gone"))
    bad.send(publish_bytes(f"{name}/t", props))
    # [4.13.1] the server may say why in a DISCONNECT, then MUST close the connection.
    bad.expect_disconnect(reason)
    assert broker.stats()[counter] == 1
    # Not a normal disconnection: the will is published [3.1.2.5]; nothing bad was routed.
    got = watch.recv_publish()
    assert (got.topic, got.payload) == (f"{name}/will", b"gone")
    # The broker still serves others.
    pub = clients.connected5(broker.port, f"{name}-pub")
    assert pub.publish5(f"{name}/ok", b"fine", qos=1) == ReasonCode.SUCCESS
    assert watch.recv_publish().payload == b"fine"


def test_subscription_identifier_in_a_client_publish_is_a_protocol_error(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    bad = clients.connected5(broker.port, name)
    bad.send(Publish(f"{name}/t", b"x", properties=Properties(subscription_identifiers=[1])))
    # [3.3.4-6] a client's PUBLISH must not carry one: a Protocol Error [4.13].
    bad.expect_disconnect(ReasonCode.PROTOCOL_ERROR)
