"""Shared subscriptions (``$share/{group}/{filter}``) and ``$`` topics under wildcards [4.7.2]."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from broker.codec import ConnAck, UnsubAck, Unsubscribe
from tests.broker.rawclient import (
    ClientPool,
    RawClient,
    StartBroker,
    client_pool,
    drain_messages,
    wait_offline,
)
from tests.harness import PahoClient, RunningBroker


@pytest.fixture
def clients(start_broker: StartBroker) -> Iterator[ClientPool]:
    with client_pool() as pool:
        yield pool


def member(
    clients: ClientPool, broker: RunningBroker, client_id: str, topic_filter: str
) -> PahoClient:
    client = clients.connected(broker.port, client_id)
    assert client.subscribe(topic_filter, 1) == [1]
    return client


def publish_numbered(clients: ClientPool, broker: RunningBroker, name: str, count: int) -> None:
    pub = clients.raw(broker.port)
    pub.connect(f"{name}-pub")
    for i in range(count):
        pub.publish(f"{name}/t", str(i).encode(), qos=1, packet_id=i % 100 + 1)


def payloads(client: PahoClient, count: int) -> list[bytes]:
    got = [m.payload for m in drain_messages(client, count)]
    client.expect_nothing(0.1)
    return got


def test_shared_group_delivers_each_message_to_exactly_one_member_round_robin(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    a = member(clients, broker, f"{name}-a", f"$share/g/{name}/t")
    b = member(clients, broker, f"{name}-b", f"$share/g/{name}/t")
    publish_numbered(clients, broker, name, 20)
    # Round robin over two online members: ten each, alternating.
    got_a, got_b = payloads(a, 10), payloads(b, 10)
    assert sorted(got_a + got_b, key=int) == [str(i).encode() for i in range(20)]
    assert {int(p) % 2 for p in got_a} in ({0}, {1})
    assert got_a == sorted(got_a, key=int)  # each member still sees publish order


def test_every_group_gets_every_message_and_plain_subscribers_too(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    g1 = [member(clients, broker, f"{name}-g1-{i}", f"$share/one/{name}/t") for i in range(2)]
    g2 = member(clients, broker, f"{name}-g2", f"$share/two/{name}/+")
    plain = member(clients, broker, f"{name}-plain", f"{name}/t")
    publish_numbered(clients, broker, name, 10)
    everything = [str(i).encode() for i in range(10)]
    assert payloads(g2, 10) == everything
    assert payloads(plain, 10) == everything
    assert sorted(payloads(g1[0], 5) + payloads(g1[1], 5), key=int) == everything


def test_shared_subscription_gets_no_retained_messages(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    pub = clients.raw(broker.port)
    pub.connect(f"{name}-pub")
    pub.publish(f"{name}/t", b"retained", qos=1, retain=True)
    shared = clients.raw(broker.port)
    shared.connect(f"{name}-shared")
    assert shared.subscribe((f"$share/g/{name}/t", 1)) == [1]
    shared.expect_nothing(0.3)
    plain = clients.raw(broker.port)
    plain.connect(f"{name}-plain")
    assert plain.subscribe((f"{name}/t", 1)) == [1]
    assert plain.recv_publish().retain  # the retained message exists
    # Live messages do reach the shared subscriber.
    pub.publish(f"{name}/t", b"live", qos=1, packet_id=2)
    assert shared.recv_publish().payload == b"live"


def test_offline_persistent_member_skipped_while_another_is_online(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    away_id = f"{name}-away"
    away = clients.raw(broker.port)
    away.connect(away_id, clean=False)
    assert away.subscribe((f"$share/g/{name}/t", 1)) == [1]
    online = member(clients, broker, f"{name}-online", f"$share/g/{name}/t")
    away.disconnect()
    wait_offline(broker, away_id)
    publish_numbered(clients, broker, name, 6)
    assert payloads(online, 6) == [str(i).encode() for i in range(6)]

    back = clients.raw(broker.port)
    assert back.connect(away_id, clean=False) == ConnAck(True, 0)
    back.expect_nothing(0.3)  # nothing was queued for it


def test_only_member_offline_gets_messages_queued(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    cid = f"{name}-only"
    raw = clients.raw(broker.port)
    raw.connect(cid, clean=False)
    raw.subscribe((f"$share/g/{name}/t", 1))
    raw.disconnect()
    wait_offline(broker, cid)
    publish_numbered(clients, broker, name, 2)
    back = clients.raw(broker.port)
    assert back.connect(cid, clean=False).session_present
    assert [back.recv_publish().payload for _ in range(2)] == [b"0", b"1"]


def dollar_subscriber(clients: ClientPool, broker: RunningBroker, cid: str, f: str) -> RawClient:
    raw = clients.raw(broker.port)
    raw.connect(cid)
    assert raw.subscribe((f, 0)) == [0]
    return raw


@pytest.mark.parametrize("prefix", ["$SYS", "$aws"])
def test_leading_wildcards_do_not_match_dollar_topics(
    broker: RunningBroker, clients: ClientPool, name: str, prefix: str
) -> None:
    hash_all = dollar_subscriber(clients, broker, f"{name}-hash", "#")
    plus = dollar_subscriber(clients, broker, f"{name}-plus", f"+/{name}/x")
    shared = dollar_subscriber(clients, broker, f"{name}-shared", "$share/g/#")
    dollar = dollar_subscriber(clients, broker, f"{name}-dollar", f"{prefix}/#")
    pub = clients.raw(broker.port)
    pub.connect(f"{name}-pub")
    pub.publish(f"{prefix}/{name}/x", b"special", qos=1, retain=True)
    pub.publish(f"plain/{name}/x", b"ordinary", qos=1, packet_id=2)

    # [4.7.2-1] the '$' topic reaches only the filter that names its first level.
    got = dollar.recv_publish()
    assert (got.topic, got.payload) == (f"{prefix}/{name}/x", b"special")
    for sub in (hash_all, plus, shared):
        assert sub.recv_publish().payload == b"ordinary"  # the wildcards do work
        sub.expect_nothing(0.1)
    dollar.expect_nothing(0.1)
    # Nor do leading wildcards pick the '$' topic out of the retained store.
    late = dollar_subscriber(clients, broker, f"{name}-late", "#")
    late.expect_nothing(0.2)
    late_plus = dollar_subscriber(clients, broker, f"{name}-late-plus", "+/#")
    late_plus.expect_nothing(0.1)
    late_dollar = dollar_subscriber(clients, broker, f"{name}-late-dollar", f"{prefix}/+/x")
    assert late_dollar.recv_publish().retain


def test_unsubscribed_member_leaves_the_group(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    leaving = clients.raw(broker.port)
    leaving.connect(f"{name}-leaving")
    assert leaving.subscribe((f"$share/g/{name}/t", 1)) == [1]
    staying = member(clients, broker, f"{name}-staying", f"$share/g/{name}/t")
    leaving.send(Unsubscribe(2, [f"$share/g/{name}/t"]))
    assert leaving.recv_packet() == UnsubAck(2)
    publish_numbered(clients, broker, name, 4)
    assert payloads(staying, 4) == [b"0", b"1", b"2", b"3"]
    leaving.expect_nothing(0.1)
