"""Retained messages [3.3.1.3] and wills [3.1.2.5]: kept, replaced, cleared, published when due."""

from __future__ import annotations

import queue
from collections.abc import Iterator

import pytest

from broker.codec import SubAck, Subscribe, Will
from broker.message import Message
from tests.broker.rawclient import ClientPool, RawClient, StartBroker, client_pool, drop
from tests.harness import RunningBroker


@pytest.fixture
def clients(start_broker: StartBroker) -> Iterator[ClientPool]:
    with client_pool() as pool:
        yield pool


def publisher(clients: ClientPool, broker: RunningBroker, name: str) -> RawClient:
    pub = clients.raw(broker.port)
    assert pub.connect(f"{name}-pub").return_code == 0
    return pub


def subscribed(
    clients: ClientPool, broker: RunningBroker, client_id: str, topic_filter: str, qos: int = 1
) -> RawClient:
    """A raw client whose SUBSCRIBE has been answered (retained messages follow it)."""
    sub = clients.raw(broker.port)
    sub.connect(client_id)
    assert sub.subscribe((topic_filter, qos)) == [qos]
    return sub


def test_retained_message_set_replaced_and_cleared(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    topic = f"{name}/state"
    pub = publisher(clients, broker, name)
    pub.publish(topic, b"v1", qos=1, retain=True)
    pub.publish(topic, b"v2", qos=1, retain=True)
    sub = subscribed(clients, broker, f"{name}-a", topic)
    got = sub.recv_publish()
    assert (got.topic, got.payload, got.retain) == (topic, b"v2", True)
    sub.expect_nothing(0.2)  # only the latest is kept

    # [3.3.1-10] an empty retained payload clears the topic's retained message.
    pub.publish(topic, b"", qos=1, retain=True)
    cleared = sub.recv_publish()  # still forwarded to the current subscriber
    assert (cleared.payload, cleared.retain) == (b"", False)
    late = subscribed(clients, broker, f"{name}-b", topic)
    late.expect_nothing(0.3)


def test_retained_delivered_after_suback_with_retain_flag(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    topic = f"{name}/state"
    pub = publisher(clients, broker, name)
    pub.publish(topic, b"kept", qos=1, retain=True)
    sub = clients.raw(broker.port)
    sub.connect(f"{name}-sub")
    sub.send(Subscribe(4, [(topic, 1)]))
    # [3.8.4] the SUBACK comes first, then the retained message with RETAIN set.
    assert sub.recv_packet() == SubAck(4, [1])
    got = sub.recv_publish()
    assert (got.topic, got.payload, got.retain, got.qos) == (topic, b"kept", True, 1)


def test_retained_messages_match_wildcard_filters(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    pub = publisher(clients, broker, name)
    topics = [f"{name}", f"{name}/a", f"{name}/b", f"{name}/a/deep", f"{name}x/a"]
    for topic in topics:
        pub.publish(topic, topic.encode(), qos=1, retain=True)

    def retained(topic_filter: str, client_id: str, count: int) -> set[str]:
        sub = subscribed(clients, broker, client_id, topic_filter)
        got = [sub.recv_publish() for _ in range(count)]
        sub.expect_nothing(0.1)
        assert all(m.retain for m in got)
        return {m.topic for m in got}

    assert retained(f"{name}/+", f"{name}-plus", 2) == {f"{name}/a", f"{name}/b"}
    # [4.7.1-2] '#' matches the parent level too.
    assert retained(f"{name}/#", f"{name}-hash", 4) == {
        f"{name}",
        f"{name}/a",
        f"{name}/b",
        f"{name}/a/deep",
    }
    assert retained("+/a/+", f"{name}-mid", 1) == {f"{name}/a/deep"}
    assert retained("#", f"{name}-all", len(topics)) == set(topics)


def test_live_forwarding_of_a_retained_publish_clears_the_retain_flag(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    topic = f"{name}/state"
    sub = subscribed(clients, broker, f"{name}-sub", topic)
    pub = publisher(clients, broker, name)
    pub.publish(topic, b"live", qos=1, retain=True)
    got = sub.recv_publish()
    # [3.3.1-9] sent because of an existing subscription: RETAIN is 0.
    assert (got.payload, got.retain) == (b"live", False)


@pytest.mark.parametrize(("pub_qos", "sub_qos"), [(2, 1), (0, 2), (1, 0), (2, 2)])
def test_retained_delivery_qos_is_the_minimum(
    broker: RunningBroker, clients: ClientPool, name: str, pub_qos: int, sub_qos: int
) -> None:
    topic = f"{name}/state"
    publisher(clients, broker, name).publish(topic, b"r", qos=pub_qos, packet_id=3, retain=True)
    sub = subscribed(clients, broker, f"{name}-sub", topic, qos=sub_qos)
    got = sub.recv_publish()
    assert (got.qos, got.retain) == (min(pub_qos, sub_qos), True)


def test_resubscribe_sends_retained_messages_again(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    topic = f"{name}/state"
    publisher(clients, broker, name).publish(topic, b"r", qos=1, retain=True)
    sub = subscribed(clients, broker, f"{name}-sub", topic, qos=0)
    assert sub.recv_publish().retain
    # [3.8.4-3] a SUBSCRIBE replacing an existing subscription re-sends retained messages.
    assert sub.subscribe((topic, 0), packet_id=2) == [0]
    again = sub.recv_publish()
    assert (again.payload, again.retain) == (b"r", True)


def test_max_retained_messages_limits_new_topics_but_not_replacements(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    broker = start_broker(max_retained_messages=2)
    live = subscribed(clients, broker, f"{name}-live", f"{name}/#")
    pub = publisher(clients, broker, name)
    for i in range(3):
        pub.publish(f"{name}/{i}", b"first", qos=1, retain=True)
    assert broker.stats()["retained_dropped_store_full"] == 1
    pub.publish(f"{name}/0", b"second", qos=1, retain=True)  # replacing is not a new one
    assert broker.stats()["retained_dropped_store_full"] == 1
    # The refused message was still delivered to current subscribers.
    assert [live.recv_publish().topic for _ in range(4)] == [
        f"{name}/0",
        f"{name}/1",
        f"{name}/2",
        f"{name}/0",
    ]
    late = subscribed(clients, broker, f"{name}-late", f"{name}/#")
    kept = {(m.topic, m.payload) for m in (late.recv_publish(), late.recv_publish())}
    assert kept == {(f"{name}/0", b"second"), (f"{name}/1", b"first")}
    late.expect_nothing(0.2)


# -- wills -------------------------------------------------------------------------------------


def will_watcher(clients: ClientPool, broker: RunningBroker, name: str) -> RawClient:
    return subscribed(clients, broker, f"{name}-watch", f"{name}/will", qos=1)


def will_client(
    clients: ClientPool,
    broker: RunningBroker,
    name: str,
    *,
    retain: bool = False,
    keep_alive: int = 0,
    clean: bool = True,
) -> RawClient:
    raw = clients.raw(broker.port)
    will = Will(f"{name}/will", b"gone", qos=1, retain=retain)
    assert (
        raw.connect(f"{name}-dev", will=will, keep_alive=keep_alive, clean=clean).return_code == 0
    )
    return raw


@pytest.mark.parametrize("how", ["close", "reset"])
def test_will_published_when_the_connection_ends_without_disconnect(
    broker: RunningBroker, clients: ClientPool, name: str, how: str
) -> None:
    watch = will_watcher(clients, broker, name)
    dev = will_client(clients, broker, name)
    watch.expect_nothing(0.1)
    if how == "close":
        dev.close()
    else:
        dev.abort()
    got = watch.recv_publish()
    assert (got.topic, got.payload, got.qos, got.retain) == (f"{name}/will", b"gone", 1, False)
    assert broker.stats()["wills_published"] == 1


def test_will_published_on_a_paho_client_network_failure(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    watch = clients.connected(broker.port, f"{name}-watch")
    watch.subscribe(f"{name}/will", 2)
    dev = clients.connected(broker.port, f"{name}-dev", will=(f"{name}/will", b"bye", 2, False))
    drop(dev)
    [got] = watch.expect(1)
    assert (got.payload, got.qos) == (b"bye", 2)


def test_will_published_on_keepalive_expiry(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    watch = will_watcher(clients, broker, name)
    dev = will_client(clients, broker, name, keep_alive=1)
    got = watch.recv_publish(timeout=4.0)
    assert got.payload == b"gone"
    assert broker.stats()["keepalive_timeouts"] == 1
    dev.expect_closed(1.0)


def test_will_published_on_takeover(broker: RunningBroker, clients: ClientPool, name: str) -> None:
    watch = will_watcher(clients, broker, name)
    dev = will_client(clients, broker, name)
    second = clients.raw(broker.port)
    assert second.connect(f"{name}-dev").return_code == 0
    assert watch.recv_publish().payload == b"gone"
    dev.expect_closed()
    assert broker.stats()["connect_timeouts"] == 0
    # The new connection set no will: closing it publishes nothing more.
    second.close()
    watch.expect_nothing(0.3)
    assert broker.stats()["wills_published"] == 1


def test_will_not_published_after_disconnect(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    watch = will_watcher(clients, broker, name)
    dev = will_client(clients, broker, name)
    dev.disconnect()
    # [3.1.2-10] DISCONNECT discards the will.
    watch.expect_nothing(0.5)
    assert broker.stats()["wills_published"] == 0


@pytest.mark.parametrize("retain", [True, False])
def test_will_retain_flag_honoured(
    broker: RunningBroker, clients: ClientPool, name: str, retain: bool
) -> None:
    watch = will_watcher(clients, broker, name)
    will_client(clients, broker, name, retain=retain).close()
    live = watch.recv_publish()
    assert (live.payload, live.retain) == (b"gone", False)  # live forwarding: RETAIN 0
    late = subscribed(clients, broker, f"{name}-late", f"{name}/will")
    if retain:
        got = late.recv_publish()
        assert (got.payload, got.retain) == (b"gone", True)
    else:
        late.expect_nothing(0.3)


def test_wills_not_published_when_the_broker_shuts_down(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    broker = start_broker(persistence=False)
    seen: queue.Queue[Message] = queue.Queue()
    broker.call(lambda: broker.broker.bus.subscribe(f"{name}/will", seen.put))
    devs = [will_client(clients, broker, f"{name}"), clients.raw(broker.port)]
    devs[1].connect(f"{name}-dev2", will=Will(f"{name}/will", b"x", 0, True))
    broker.stop()
    for dev in devs:
        dev.expect_closed()
    assert seen.empty()
    assert broker.broker.stats.wills_published == 0
    assert len(broker.broker.retained) == 0
