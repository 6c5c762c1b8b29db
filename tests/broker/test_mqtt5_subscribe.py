"""MQTT 5 SUBSCRIBE and UNSUBSCRIBE over real sockets: subscription identifiers, No Local,
Retain As Published, Retain Handling, and the SUBACK / UNSUBACK reason codes [3.8 - 3.11].

Spec references are to MQTT Version 5.0 (OASIS, 2019), section numbers in brackets.
"""

from __future__ import annotations

from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties

from broker.auth import ConnectionInfo, Identity
from broker.codec import (
    Connect,
    ConnectReturnCode,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    frame,
    make_subscription_options,
)
from broker.properties import Properties
from broker.reason_codes import ReasonCode
from tests.broker.raw5 import Pool5, Raw5Client, pool5
from tests.broker.rawclient import StartBroker
from tests.harness import RunningBroker


@pytest.fixture
def clients(start_broker: StartBroker) -> Iterator[Pool5]:
    with pool5() as pool:
        yield pool


def opts(qos: int, *, no_local: bool = False, as_published: bool = False, handling: int = 0) -> int:
    return make_subscription_options(qos, no_local, as_published, handling)


def retained(clients: Pool5, broker: RunningBroker, name: str, topic: str) -> None:
    """Store a retained message on ``topic`` (published by a client of its own)."""
    pub = clients.connected5(broker.port, f"{name}-retainer")
    pub.publish5(topic, b"kept", qos=1, retain=True)
    pub.disconnect5()


# -- Subscription Identifier [3.8.2.1.2, 3.3.2.3.8] ---------------------------------------------


def test_subscription_identifier_is_delivered_with_the_message(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    sub = clients.connected5(broker.port, f"{name}-sub")
    assert sub.subscribe5((f"{name}/t", 1), identifier=7) == [1]
    pub = clients.connected5(broker.port, name)
    pub.publish5(f"{name}/t", b"x", qos=1)
    got = sub.recv_publish()
    assert got.properties.subscription_identifiers == [7]  # [3.3.4-3]


def test_overlapping_subscriptions_give_one_publish_with_every_identifier(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    sub = clients.connected5(broker.port, f"{name}-sub")
    assert sub.subscribe5((f"{name}/+", 1), packet_id=1, identifier=1) == [1]
    assert sub.subscribe5((f"{name}/#", 0), packet_id=2, identifier=2) == [0]
    assert sub.subscribe5((f"{name}/t", 0), packet_id=3) == [0]  # no identifier
    pub = clients.connected5(broker.port, name)
    pub.publish5(f"{name}/t", b"x", qos=1)
    got = sub.recv_publish()
    # [3.3.4-2] one PUBLISH at the highest QoS; [3.3.4-4] with every matching identifier.
    assert got.qos == 1
    assert sorted(got.properties.subscription_identifiers) == [1, 2]
    sub.ack(got)
    sub.expect_nothing(0.2)


def test_resubscribing_without_an_identifier_removes_it(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    sub = clients.connected5(broker.port, f"{name}-sub")
    assert sub.subscribe5((f"{name}/t", 0), packet_id=1, identifier=9) == [0]
    # [3.8.3-3] a SUBSCRIBE for an existing filter replaces the subscription, and with it the
    # identifier [3.8.2.1.2].
    assert sub.subscribe5((f"{name}/t", 0), packet_id=2) == [0]
    pub = clients.connected5(broker.port, name)
    pub.publish5(f"{name}/t", b"x")
    assert sub.recv_publish().properties.subscription_identifiers == []


def test_paho_receives_subscription_identifier(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    sub = clients.paho5(broker.port, f"{name}-sub")
    assert sub.connect()[1] == 0
    props = PahoProperties(PacketTypes.SUBSCRIBE)
    props.SubscriptionIdentifier = 42
    assert sub.subscribe(f"{name}/t", properties=props) == [1]
    pub = clients.connected5(broker.port, name)
    pub.publish5(f"{name}/t", b"x", qos=1)
    [got] = sub.expect(1)
    assert got.prop("SubscriptionIdentifier") == [42]


# -- No Local [3.8.3.1] ---------------------------------------------------------------------------


def test_no_local_skips_own_messages_but_not_others(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    me = clients.paho5(broker.port, name)
    assert me.connect()[1] == 0
    assert me.subscribe(f"{name}/t", mqtt.SubscribeOptions(qos=1, noLocal=True)) == [1]
    other = clients.paho5(broker.port, f"{name}-other")
    assert other.connect()[1] == 0
    assert other.subscribe(f"{name}/t", mqtt.SubscribeOptions(qos=1)) == [1]
    me.publish(f"{name}/t", b"mine")
    # [3.8.3-3] not forwarded to the connection that published it...
    assert [m.payload for m in other.expect(1)] == [b"mine"]
    me.expect_nothing(0.3)
    # ...but a message from anyone else still is.
    other.publish(f"{name}/t", b"theirs")
    assert [m.payload for m in me.expect(1)] == [b"theirs"]
    assert [m.payload for m in other.expect(1)] == [b"theirs"]


def test_no_local_on_one_subscription_leaves_an_overlapping_one_delivering(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    me = clients.connected5(broker.port, name)
    assert me.subscribe5((f"{name}/t", opts(1, no_local=True)), packet_id=1, identifier=1) == [1]
    assert me.subscribe5((f"{name}/#", opts(0)), packet_id=2, identifier=2) == [0]
    me.send(Publish(f"{name}/t", b"mine", 1, packet_id=5))
    packets = [me.recv_packet(), me.recv_packet()]  # the PUBACK and the delivery, either order
    assert PubAck(5) in packets
    [got] = [p for p in packets if isinstance(p, Publish)]
    # Only the subscription without No Local matched: its QoS and its identifier.
    assert (got.payload, got.qos, got.properties.subscription_identifiers) == (b"mine", 0, [2])


# -- Retain As Published [3.8.3.1, 3.3.1.3] -----------------------------------------------------


def test_retain_as_published_keeps_the_flag_and_default_clears_it(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    keep = clients.connected5(broker.port, f"{name}-keep")
    assert keep.subscribe5((f"{name}/t", opts(0, as_published=True))) == [0]
    clear = clients.connected5(broker.port, f"{name}-clear")
    assert clear.subscribe5((f"{name}/t", opts(0))) == [0]
    pub = clients.connected5(broker.port, name)
    pub.publish5(f"{name}/t", b"live", retain=True)
    # [3.3.1-12] RETAIN cleared unless Retain As Published [3.3.1-13].
    assert keep.recv_publish().retain is True
    assert clear.recv_publish().retain is False
    pub.publish5(f"{name}/t", b"plain")
    assert keep.recv_publish().retain is False  # kept as published: it was 0


# -- Retain Handling [3.8.3.1, 3.3.1.3] ----------------------------------------------------------


def subscribe_and_collect(raw: Raw5Client, topic: str, options: int, packet_id: int) -> list[bytes]:
    assert raw.subscribe5((topic, options), packet_id=packet_id) == [options & 3]
    got = []
    while True:
        try:
            got.append(raw.recv_publish(timeout=0.2))
        except TimeoutError:
            return [p.payload for p in got if p.retain]


def test_retain_handling_0_sends_retained_on_every_subscribe(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    retained(clients, broker, name, f"{name}/t")
    sub = clients.connected5(broker.port, f"{name}-sub")
    assert subscribe_and_collect(sub, f"{name}/t", opts(0, handling=0), 1) == [b"kept"]
    assert subscribe_and_collect(sub, f"{name}/t", opts(0, handling=0), 2) == [b"kept"]


def test_retain_handling_1_sends_retained_only_for_a_new_subscription(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    retained(clients, broker, name, f"{name}/t")
    sub = clients.connected5(broker.port, f"{name}-sub")
    assert subscribe_and_collect(sub, f"{name}/t", opts(0, handling=1), 1) == [b"kept"]
    assert subscribe_and_collect(sub, f"{name}/t", opts(0, handling=1), 2) == []
    assert sub.unsubscribe5(f"{name}/t", packet_id=3) == [0]
    assert subscribe_and_collect(sub, f"{name}/t", opts(0, handling=1), 4) == [b"kept"]


def test_retain_handling_2_never_sends_retained(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    retained(clients, broker, name, f"{name}/t")
    sub = clients.connected5(broker.port, f"{name}-sub")
    assert subscribe_and_collect(sub, f"{name}/t", opts(0, handling=2), 1) == []
    # Live messages still flow on that subscription.
    pub = clients.connected5(broker.port, name)
    pub.publish5(f"{name}/t", b"live")
    assert sub.recv_publish().payload == b"live"


# -- SUBACK reason codes [3.9.3] -----------------------------------------------------------------


def test_suback_grants_qos_per_filter_and_refuses_an_invalid_one_with_0x8f(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    sub = clients.connected5(broker.port, f"{name}-sub")
    codes = sub.subscribe5(
        (f"{name}/0", 0), (f"{name}/#/bad", 1), (f"{name}/1", 1), (f"{name}/2", 2)
    )
    # [3.9.3-1] one code per filter, in order; a bad filter does not spoil the others.
    assert codes == [0, ReasonCode.TOPIC_FILTER_INVALID, 1, 2]
    pub = clients.connected5(broker.port, name)
    pub.publish5(f"{name}/1", b"x", qos=2)
    assert sub.recv_publish().qos == 1  # [3.8.4] the granted maximum, not the published QoS


class DenySubscribe:
    checks_receive = False

    def __init__(self, forbidden: str) -> None:
        self.forbidden = forbidden

    def authenticate(self, info: ConnectionInfo, connect: Connect) -> Identity | ConnectReturnCode:
        return Identity(connect.client_id)

    def may_publish(self, identity: Identity, topic: str, retain: bool) -> bool:
        return True

    def may_subscribe(self, identity: Identity, topic_filter: str) -> bool:
        return self.forbidden not in topic_filter

    def may_receive(self, identity: Identity, topic: str) -> bool:
        return True


def test_suback_0x87_when_the_hooks_refuse_the_filter(
    start_broker: StartBroker, clients: Pool5, name: str
) -> None:
    broker = start_broker(hooks=DenySubscribe(f"{name}/secret"))
    sub = clients.connected5(broker.port, f"{name}-sub")
    codes = sub.subscribe5((f"{name}/secret/#", 1), (f"{name}/open", 1))
    assert codes == [ReasonCode.NOT_AUTHORIZED, 1]
    pub = clients.connected5(broker.port, name)
    assert pub.publish5(f"{name}/secret/x", b"x", qos=1) == ReasonCode.NO_MATCHING_SUBSCRIBERS


def test_suback_0x97_over_the_subscription_quota(
    start_broker: StartBroker, clients: Pool5, name: str
) -> None:
    broker = start_broker(max_subscriptions_per_client=2)
    sub = clients.connected5(broker.port, f"{name}-sub")
    codes = sub.subscribe5((f"{name}/a", 1), (f"{name}/b", 1), (f"{name}/c", 1), packet_id=1)
    assert codes == [1, 1, ReasonCode.QUOTA_EXCEEDED]
    # Replacing an existing subscription takes no new quota.
    assert sub.subscribe5((f"{name}/a", 0), packet_id=2) == [0]


def test_no_local_on_a_shared_subscription_is_disconnect_0x82(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    sub = clients.connected5(broker.port, f"{name}-sub")
    sub.send(Subscribe(1, [(f"$share/g/{name}/t", opts(1, no_local=True))]))
    sub.expect_disconnect(ReasonCode.PROTOCOL_ERROR)  # [3.8.3-4]
    assert broker.stats()["protocol_violations"] == 1


def test_shared_subscription_gets_no_retained_messages(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    retained(clients, broker, name, f"{name}/t")
    sub = clients.connected5(broker.port, f"{name}-sub")
    # [3.8.4] (4.8.2) retained messages are not sent for a shared subscription.
    assert subscribe_and_collect(sub, f"$share/g/{name}/t", opts(1), 1) == []


# -- UNSUBACK reason codes [3.11.3] ---------------------------------------------------------------


def test_unsuback_success_and_no_subscription_existed(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    sub = clients.connected5(broker.port, f"{name}-sub")
    assert sub.subscribe5((f"{name}/t", 1)) == [1]
    codes = sub.unsubscribe5(f"{name}/t", f"{name}/never", packet_id=2)
    assert codes == [ReasonCode.SUCCESS, ReasonCode.NO_SUBSCRIPTION_EXISTED]
    pub = clients.connected5(broker.port, name)
    assert pub.publish5(f"{name}/t", b"x", qos=1) == ReasonCode.NO_MATCHING_SUBSCRIBERS


def test_paho_unsubscribe_reason_codes(broker: RunningBroker, clients: Pool5, name: str) -> None:
    sub = clients.paho5(broker.port, f"{name}-sub")
    assert sub.connect()[1] == 0
    assert sub.subscribe(f"{name}/t") == [1]
    assert sub.unsubscribe(f"{name}/t") == [0]
    assert sub.unsubscribe(f"{name}/t") == [ReasonCode.NO_SUBSCRIPTION_EXISTED]


def test_subscribe_properties_are_accepted(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    # [3.8.2.1.3] User Properties in SUBSCRIBE are allowed and ignored.
    sub = clients.connected5(broker.port, f"{name}-sub")
    sub.send(Subscribe(1, [(f"{name}/t", 1)], Properties(user_properties=[("k", "v")])))
    assert sub.recv(SubAck) == SubAck(1, [1])


# -- malformed and forbidden SUBSCRIBE [3.8.3.1, 4.13] -------------------------------------------


def subscribe_bytes(props: bytes, entries: bytes) -> bytes:
    """A SUBSCRIBE with packet id 1, a hand-made property block and filter entries."""
    return frame(0x82, b"\x00\x01" + props + entries)


def entry(topic: str, options: int) -> bytes:
    raw = topic.encode()
    return len(raw).to_bytes(2, "big") + raw + bytes((options,))


@pytest.mark.parametrize(
    ("props", "options", "reason", "counter"),
    [
        pytest.param(b"\x00", 0xC1, 0x81, "malformed_packets", id="reserved-option-bits"),
        pytest.param(b"\x00", 0x31, 0x82, "protocol_violations", id="retain-handling-3"),
        pytest.param(b"\x00", 0x03, 0x82, "protocol_violations", id="qos-3"),
        pytest.param(b"\x02\x0b\x00", 0x01, 0x82, "protocol_violations", id="identifier-0"),
        pytest.param(
            b"\x04\x0b\x01\x0b\x02", 0x01, 0x82, "protocol_violations", id="two-identifiers"
        ),
        pytest.param(b"\x02\x01\x01", 0x01, 0x82, "protocol_violations", id="format-indicator"),
        pytest.param(b"\x02\x0b\x81", 0x01, 0x81, "malformed_packets", id="truncated-varint"),
    ],
)
def test_bad_subscribe_gets_a_disconnect_and_harms_nobody_else(
    broker: RunningBroker,
    clients: Pool5,
    name: str,
    props: bytes,
    options: int,
    reason: int,
    counter: str,
) -> None:
    bad = clients.connected5(broker.port, name)
    bad.send(subscribe_bytes(props, entry(f"{name}/t", options)))
    bad.expect_disconnect(reason)  # [4.13.1]
    assert broker.stats()[counter] == 1
    assert not broker.call(lambda: name in broker.broker.sessions)
    sub = clients.connected5(broker.port, f"{name}-sub")
    assert sub.subscribe5((f"{name}/t", 1), identifier=1) == [1]
    pub = clients.connected5(broker.port, f"{name}-pub")
    assert pub.publish5(f"{name}/t", b"ok", qos=1) == 0
    assert sub.recv_publish().payload == b"ok"
