"""The in-process Bus: services subscribe and publish on the broker's router, next to MQTT clients.

Bus methods run on the broker's loop (``RunningBroker.call``); handlers run there too and hand
what they receive to the test thread through a queue.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator

import pytest

from broker.bus import InProcessSubscription
from broker.message import Message
from broker.topics import TopicError
from tests.broker.rawclient import ClientPool, RawClient, StartBroker, client_pool
from tests.harness import PahoClient, RunningBroker


@pytest.fixture
def clients(start_broker: StartBroker) -> Iterator[ClientPool]:
    with client_pool() as pool:
        yield pool


class Inbox:
    """A bus handler that queues every message for the test thread."""

    def __init__(self) -> None:
        self.messages: queue.Queue[Message] = queue.Queue()

    def __call__(self, message: Message) -> None:
        self.messages.put(message)

    def get(self, timeout: float = 5.0) -> Message:
        return self.messages.get(timeout=timeout)

    def take(self, count: int, timeout: float = 5.0) -> list[Message]:
        return [self.get(timeout) for _ in range(count)]

    def expect_nothing(self, within: float = 0.2) -> None:
        try:
            got = self.messages.get(timeout=within)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected {got!r}")


def bus_subscribe(
    broker: RunningBroker,
    topic_filter: str,
    handler: Inbox,
    *,
    group: str | None = None,
    exclusive: bool = False,
) -> InProcessSubscription:
    bus = broker.broker.bus
    return broker.call(
        lambda: bus.subscribe(topic_filter, handler, group=group, exclusive=exclusive)
    )


def bus_publish(
    broker: RunningBroker, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
) -> None:
    bus = broker.broker.bus
    broker.call(lambda: bus.publish(topic, payload, qos=qos, retain=retain))


def mqtt_publisher(clients: ClientPool, broker: RunningBroker, name: str) -> RawClient:
    pub = clients.raw(broker.port)
    assert pub.connect(f"{name}-pub").return_code == 0
    return pub


def mqtt_subscriber(
    clients: ClientPool, broker: RunningBroker, client_id: str, topic_filter: str, qos: int = 1
) -> PahoClient:
    sub = clients.connected(broker.port, client_id)
    assert sub.subscribe(topic_filter, qos) == [qos]
    return sub


def test_bus_subscriber_receives_mqtt_publishes(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    inbox = Inbox()
    bus_subscribe(broker, f"{name}/+/telemetry", inbox)
    pub = mqtt_publisher(clients, broker, name)
    pub.publish(f"{name}/dev1/telemetry", b'{"t": 21}', qos=1)
    pub.publish(f"{name}/dev1/other", b"not matched", qos=0)
    got = inbox.get()
    assert (got.topic, got.payload, got.qos, got.retain, got.client_id) == (
        f"{name}/dev1/telemetry",
        b'{"t": 21}',
        1,
        False,
        f"{name}-pub",
    )
    inbox.expect_nothing()


def test_bus_publish_reaches_mqtt_subscribers(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    sub1 = mqtt_subscriber(clients, broker, f"{name}-q1", f"{name}/cmd", qos=1)
    sub0 = mqtt_subscriber(clients, broker, f"{name}-q0", f"{name}/#", qos=0)
    bus_publish(broker, f"{name}/cmd", b"reboot", qos=1)
    [one] = sub1.expect(1)
    [zero] = sub0.expect(1)
    assert (one.topic, one.payload, one.qos) == (f"{name}/cmd", b"reboot", 1)
    assert (zero.payload, zero.qos) == (b"reboot", 0)


def test_bus_publish_retained_is_kept(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    bus_publish(broker, f"{name}/shadow", b"doc", qos=1, retain=True)
    sub = clients.connected(broker.port, f"{name}-late")
    sub.subscribe(f"{name}/shadow", 1)
    [got] = sub.expect(1)
    assert (got.payload, got.retain) == (b"doc", True)


def test_bus_group_splits_messages_between_handlers(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    workers = [Inbox(), Inbox()]
    for inbox in workers:
        bus_subscribe(broker, f"{name}/jobs", inbox, group="workers")
    audit = Inbox()
    bus_subscribe(broker, f"{name}/jobs", audit)
    pub = mqtt_publisher(clients, broker, name)
    for i in range(10):
        pub.publish(f"{name}/jobs", str(i).encode(), qos=1, packet_id=i + 1)
    everything = [str(i).encode() for i in range(10)]
    shares = [[m.payload for m in inbox.take(5)] for inbox in workers]
    for inbox in workers:
        inbox.expect_nothing(0.1)
    assert sorted(shares[0] + shares[1], key=int) == everything
    assert [m.payload for m in audit.take(10)] == everything  # outside the group: all


def test_exclusive_bus_subscription_takes_the_topic_from_mqtt_subscribers(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    mqtt_sub = mqtt_subscriber(clients, broker, f"{name}-sub", f"{name}/#")
    inbox = Inbox()
    subscription = bus_subscribe(broker, f"{name}/private", inbox, exclusive=True)
    pub = mqtt_publisher(clients, broker, name)
    pub.publish(f"{name}/private", b"mine", qos=1)
    pub.publish(f"{name}/public", b"shared", qos=1, packet_id=2)
    assert inbox.get().payload == b"mine"
    [got] = mqtt_sub.expect(1)
    assert got.payload == b"shared"  # other topics still reach MQTT subscribers
    mqtt_sub.expect_nothing(0.2)
    # Once cancelled, the topic goes back to the MQTT subscribers.
    broker.call(subscription.cancel)
    pub.publish(f"{name}/private", b"released", qos=1, packet_id=3)
    assert mqtt_sub.expect(1)[0].payload == b"released"
    inbox.expect_nothing(0.1)


def test_cancel_stops_delivery(broker: RunningBroker, clients: ClientPool, name: str) -> None:
    inbox, other = Inbox(), Inbox()
    subscription = bus_subscribe(broker, f"{name}/t", inbox)
    bus_subscribe(broker, f"{name}/t", other)
    pub = mqtt_publisher(clients, broker, name)
    pub.publish(f"{name}/t", b"before", qos=1)
    assert inbox.get().payload == b"before"
    broker.call(subscription.cancel)
    broker.call(subscription.cancel)  # a second cancel is harmless
    pub.publish(f"{name}/t", b"after", qos=1, packet_id=2)
    assert [m.payload for m in other.take(2)] == [b"before", b"after"]
    inbox.expect_nothing(0.1)


def test_failing_handler_is_counted_and_does_not_stop_others(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    def broken(message: Message) -> None:
        raise RuntimeError(f"handler bug on {message.topic}")

    healthy = Inbox()
    broker.call(lambda: broker.broker.bus.subscribe(f"{name}/t", broken))
    bus_subscribe(broker, f"{name}/+", healthy)
    mqtt_sub = mqtt_subscriber(clients, broker, f"{name}-sub", f"{name}/t")
    pub = mqtt_publisher(clients, broker, name)
    pub.publish(f"{name}/t", b"one", qos=1)
    pub.publish(f"{name}/t", b"two", qos=1, packet_id=2)
    assert [m.payload for m in healthy.take(2)] == [b"one", b"two"]
    assert [m.payload for m in mqtt_sub.expect(2)] == [b"one", b"two"]
    assert broker.stats()["bus_handler_errors"] == 2
    pub.ping()  # the publisher's connection is untouched


def test_bus_rejects_invalid_topics(broker: RunningBroker) -> None:
    bus = broker.broker.bus
    with pytest.raises(TopicError):
        broker.call(lambda: bus.publish("a/+", b"x"))
    with pytest.raises(TopicError):
        broker.call(lambda: bus.subscribe("a/#/b", Inbox()))
