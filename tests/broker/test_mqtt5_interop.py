"""MQTT 5 and 3.1.1 clients on one broker, and the AWS IoT Device SDK v2's MQTT 5 client.

A message crosses protocol levels with its topic, payload, QoS and retain intact; MQTT 5
properties are dropped cleanly for a 3.1.1 receiver (3.1.1 has no place for them) and absent,
not invented, when a 3.1.1 client published. Spec references are to MQTT Version 5.0 (OASIS,
2019), section numbers in brackets.
"""

from __future__ import annotations

import dataclasses
import queue
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from broker.codec import Publish, Will
from broker.properties import Properties
from tests.broker.raw5 import Pool5, pool5
from tests.broker.rawclient import StartBroker
from tests.harness import PahoClient, RunningBroker


@pytest.fixture
def clients(start_broker: StartBroker) -> Iterator[Pool5]:
    with pool5() as pool:
        yield pool


TEXT = "payload \u00e9 \u2713".encode()
USER = [("origin", "v5"), ("n", "1"), ("n", "2")]
RICH = Properties(
    payload_format_indicator=1,
    message_expiry_interval=300,
    content_type="text/plain",
    response_topic="reply/here",
    correlation_data=b"c-1",
    user_properties=USER,
)


def test_v5_properties_are_dropped_cleanly_for_a_v311_subscriber(
    broker: RunningBroker, clients: Pool5, paho: Callable[..., PahoClient], name: str
) -> None:
    raw311 = clients.raw(broker.port)
    assert raw311.connect(f"{name}-raw311").return_code == 0
    assert raw311.subscribe((f"{name}/t", 1)) == [1]
    paho311 = paho(broker.port, f"{name}-paho311")
    assert paho311.connect()[1] == 0
    assert paho311.subscribe(f"{name}/t", 1) == [1]
    pub = clients.connected5(broker.port, name)
    aliased = dataclasses.replace(RICH, topic_alias=3)
    assert pub.publish5(f"{name}/t", TEXT, qos=1, properties=aliased) == 0
    assert pub.publish5("", b"", qos=1, packet_id=2, properties=Properties(topic_alias=3)) == 0
    # The 3.1.1 decoder reads the exact packet: any property bytes left in would have become
    # part of the payload or broken the framing.
    got = [raw311.recv_publish() for _ in range(2)]
    assert [(p.topic, p.payload, p.qos) for p in got] == [
        (f"{name}/t", TEXT, 1),
        (f"{name}/t", b"", 1),
    ]
    for p in got:
        raw311.send(_puback(p))
    assert [(m.topic, m.payload) for m in paho311.expect(2)] == [
        (f"{name}/t", TEXT),
        (f"{name}/t", b""),
    ]


def _puback(publish: Publish) -> bytes:
    pid = publish.packet_id or 0
    return bytes((0x40, 2, pid >> 8, pid & 0xFF))


@pytest.mark.parametrize("qos", [0, 1])
def test_v311_message_reaches_a_v5_subscriber_intact_without_properties(
    broker: RunningBroker, clients: Pool5, name: str, qos: int
) -> None:
    with_id = clients.connected5(broker.port, f"{name}-id")
    assert with_id.subscribe5((f"{name}/#", 1), identifier=11) == [1]
    plain = clients.connected5(broker.port, f"{name}-plain")
    assert plain.subscribe5((f"{name}/t", 1)) == [1]
    also311 = clients.raw(broker.port)  # shares the forwarded QoS 0 bytes with the v5 path
    assert also311.connect(f"{name}-311").return_code == 0
    assert also311.subscribe((f"{name}/t", 1)) == [1]
    pub = clients.raw(broker.port)
    assert pub.connect(name).return_code == 0
    pub.publish(f"{name}/t", b"from 3.1.1", qos=qos)
    a, b = with_id.recv_publish(), plain.recv_publish()
    assert (a.topic, a.payload, a.qos) == (f"{name}/t", b"from 3.1.1", qos)
    assert (b.topic, b.payload, b.qos) == (f"{name}/t", b"from 3.1.1", qos)
    # Nothing invented: no application properties [3.3.2.3]; the identifier is the
    # subscriber's own [3.3.4-3].
    assert a.properties == Properties(subscription_identifiers=[11])
    assert b.properties == Properties()
    assert also311.recv_publish().payload == b"from 3.1.1"


def test_retained_v5_message_keeps_properties_for_v5_and_drops_them_for_v311(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    pub = clients.connected5(broker.port, name)
    pub.publish5(f"{name}/t", b"state", qos=1, retain=True, properties=RICH)
    pub.disconnect5()
    later5 = clients.connected5(broker.port, f"{name}-v5")
    assert later5.subscribe5((f"{name}/t", 1), identifier=3) == [1]
    got = later5.recv_publish()
    assert (got.payload, got.retain) == (b"state", True)  # [3.3.1-9] retained on subscribe
    props = got.properties
    assert (props.content_type, props.response_topic, props.correlation_data) == (
        "text/plain",
        "reply/here",
        b"c-1",
    )
    assert props.user_properties == USER
    assert props.payload_format_indicator == 1
    assert props.message_expiry_interval in (299, 300)  # [3.3.2-6]
    assert props.subscription_identifiers == [3]
    later311 = clients.raw(broker.port)
    assert later311.connect(f"{name}-311").return_code == 0
    assert later311.subscribe((f"{name}/t", 1)) == [1]
    old = later311.recv_publish()
    assert (old.topic, old.payload, old.retain) == (f"{name}/t", b"state", True)


def test_v5_will_with_properties_reaches_v5_and_v311_subscribers(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    sub5 = clients.connected5(broker.port, f"{name}-v5")
    assert sub5.subscribe5((f"{name}/will", 0)) == [0]
    sub311 = clients.raw(broker.port)
    assert sub311.connect(f"{name}-311").return_code == 0
    assert sub311.subscribe((f"{name}/will", 0)) == [0]
    will_props = Properties(content_type="application/json", user_properties=[("why", "lost")])
    dying = clients.connected5(
        broker.port, name, will=Will(f"{name}/will", b'{"gone": true}', 0, False, will_props)
    )
    dying.close()  # [3.1.2-8] no DISCONNECT: the will is published
    got5 = sub5.recv_publish()
    assert got5.payload == b'{"gone": true}'
    assert got5.properties.content_type == "application/json"  # [3.1.3.2.5]
    assert got5.properties.user_properties == [("why", "lost")]  # [3.1.3.2.8]
    assert sub311.recv_publish().payload == b'{"gone": true}'


# -- the AWS IoT Device SDK v2 (awscrt) MQTT 5 client ------------------------------------------


def test_aws_iot_device_sdk_mqtt5_client_round_trip(broker: RunningBroker, name: str) -> None:
    """awscrt's MQTT 5 client over plain TCP: connect, subscribe, publish, receive.

    Its topic aliasing is switched on both ways (LRU outbound, enabled inbound), so the
    broker's alias handling is checked against a client that is not ours.
    """
    mqtt5 = pytest.importorskip("awscrt.mqtt5", reason="awsiotsdk (awscrt) is not installed")
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    received: queue.Queue[Any] = queue.Queue()
    client = mqtt5.Client(
        mqtt5.ClientOptions(
            host_name="127.0.0.1",
            port=broker.port,
            connect_options=mqtt5.ConnectPacket(client_id=name, keep_alive_interval_sec=30),
            topic_aliasing_options=mqtt5.TopicAliasingOptions(
                outbound_behavior=mqtt5.OutboundTopicAliasBehaviorType.LRU,
                inbound_behavior=mqtt5.InboundTopicAliasBehaviorType.ENABLED,
                inbound_cache_max_size=5,
            ),
            on_lifecycle_event_connection_success_fn=lambda d: events.put(("up", d)),
            on_lifecycle_event_connection_failure_fn=lambda d: events.put(("failed", d)),
            on_lifecycle_event_stopped_fn=lambda d: events.put(("stopped", d)),
            on_publish_callback_fn=lambda d: received.put(d.publish_packet),
        )
    )
    client.start()
    try:
        kind, data = events.get(timeout=10)
        assert kind == "up", f"connection failed: {data.exception!r}"
        assert data.connack_packet.topic_alias_maximum == broker.settings.max_topic_alias
        suback = client.subscribe(
            mqtt5.SubscribePacket(
                [mqtt5.Subscription(f"{name}/+", mqtt5.QoS.AT_LEAST_ONCE)],
                subscription_identifier=21,
            )
        ).result(5)
        assert [int(c) for c in suback.reason_codes] == [1]
        user = [mqtt5.UserProperty("k", "v"), mqtt5.UserProperty("k", "w")]
        for i in range(3):  # the second and third ride on an alias both ways
            result = client.publish(
                mqtt5.PublishPacket(
                    topic=f"{name}/t",
                    payload=b"aws-%d" % i,
                    qos=mqtt5.QoS.AT_LEAST_ONCE,
                    content_type="text/plain",
                    user_properties=user,
                )
            ).result(5)
            assert int(result.puback.reason_code) == 0
        for i in range(3):
            got = received.get(timeout=5)
            assert (got.topic, bytes(got.payload)) == (f"{name}/t", b"aws-%d" % i)
            assert [(p.name, p.value) for p in got.user_properties] == [("k", "v"), ("k", "w")]
            assert got.content_type == "text/plain"
            assert list(got.subscription_identifiers) == [21]
        # The SDK did alias: its topic is mapped on the broker's side of the connection in
        # both directions (the broker keeps no other record of aliases).
        session = broker.call(lambda: broker.broker.sessions[name])
        conn = session.connection
        assert conn is not None
        assert broker.call(lambda: (dict(conn.aliases_in), dict(conn.aliases_out))) == (
            {1: f"{name}/t"},
            {f"{name}/t": 1},
        )
    finally:
        client.stop()
        kind, _ = events.get(timeout=5)
        while kind != "stopped":
            kind, _ = events.get(timeout=5)
    assert broker.stats()["protocol_violations"] == 0
