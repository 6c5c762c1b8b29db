"""Every limit in BrokerSettings, exceeded over a real socket: refused, counted, others served."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from broker import codec
from broker.codec import ConnAck, Publish, PubRec, PubRel
from tests.broker.rawclient import (
    ClientPool,
    RawClient,
    StartBroker,
    assert_serves,
    client_pool,
    wait_for,
)
from tests.harness import RunningBroker


@pytest.fixture
def clients(start_broker: StartBroker) -> Iterator[ClientPool]:
    with client_pool() as pool:
        yield pool


def connected(clients: ClientPool, broker: RunningBroker, client_id: str) -> RawClient:
    raw = clients.raw(broker.port)
    assert raw.connect(client_id).return_code == 0
    return raw


def publish_of_size(topic: str, total: int) -> bytes:
    """A QoS 0 PUBLISH whose whole packet (fixed header included) is ``total`` bytes."""
    for header in (2, 3, 4):
        payload = total - header - 2 - len(topic.encode())
        packet = codec.encode_packet(Publish(topic, b"p" * payload))
        if len(packet) == total:
            return packet
    raise AssertionError(f"cannot build a {total}-byte PUBLISH")


def test_oversize_publish_closes_the_connection(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    broker = start_broker(max_packet_size=1024)
    sub = connected(clients, broker, f"{name}-sub")
    sub.subscribe((f"{name}/t", 0))
    pub = connected(clients, broker, f"{name}-pub")
    pub.publish(f"{name}/t", b"x" * 900)  # under the limit: delivered
    assert len(sub.recv_publish().payload) == 900
    pub.send(Publish(f"{name}/t", b"x" * 2000))
    pub.expect_closed()
    assert broker.stats()["oversize_packets"] == 1
    sub.expect_nothing(0.2)
    assert_serves(clients, broker.port, name)


def test_oversize_refused_from_the_header_before_the_body_arrives(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    broker = start_broker(max_packet_size=1024)
    pub = connected(clients, broker, f"{name}-pub")
    # Only the fixed header, declaring 10 MB: the broker must not wait for (or buffer) it.
    pub.send(b"\x30" + codec.encode_remaining_length(10_000_000))
    pub.expect_closed()
    assert broker.stats()["oversize_packets"] == 1
    assert_serves(clients, broker.port, name)


def test_oversize_connect_refused_before_connect_completes(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    broker = start_broker(max_packet_size=256)
    raw = clients.raw(broker.port)
    raw.send(codec.encode_packet(codec.Connect(f"{name}-" + "c" * 300)))
    raw.expect_closed()
    assert broker.stats()["oversize_packets"] == 1


def test_packet_of_exactly_max_packet_size_accepted(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    broker = start_broker(max_packet_size=1024)
    sub = connected(clients, broker, f"{name}-sub")
    sub.subscribe((f"{name}/t", 0))
    pub = connected(clients, broker, f"{name}-pub")
    pub.send(publish_of_size(f"{name}/t", 1024))
    assert sub.recv_publish().topic == f"{name}/t"
    pub.ping()
    assert broker.stats()["oversize_packets"] == 0


def test_packet_one_byte_over_max_packet_size_refused(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    broker = start_broker(max_packet_size=1024)
    pub = connected(clients, broker, f"{name}-pub")
    pub.send(publish_of_size(f"{name}/t", 1025))
    pub.expect_closed()
    assert broker.stats()["oversize_packets"] == 1


def test_header_declaring_a_body_that_fits_but_a_packet_that_does_not(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    broker = start_broker(max_packet_size=1024)
    pub = connected(clients, broker, f"{name}-pub")
    # Remaining length 1023 takes a two-byte header: a 1026-byte packet, refused from the
    # header alone.
    pub.send(b"\x30" + codec.encode_remaining_length(1023))
    pub.expect_closed()
    assert broker.stats()["oversize_packets"] == 1


def test_max_topic_length(start_broker: StartBroker, clients: ClientPool, name: str) -> None:
    broker = start_broker(max_topic_length=100)
    too_long = f"{name}/" + "x" * 100
    sub = connected(clients, broker, f"{name}-sub")
    # SUBSCRIBE can answer per filter [3.9.3]: 0x80 for the long one, the connection stays.
    assert sub.subscribe((too_long, 1), (f"{name}/ok", 1)) == [0x80, 1]
    pub = connected(clients, broker, f"{name}-pub")
    pub.publish(f"{name}/ok", b"fine", qos=1)
    assert sub.recv_publish().payload == b"fine"
    # PUBLISH cannot report an error in MQTT 3.1.1: the connection is closed [4.8].
    pub.send(Publish(too_long, b"x", qos=1, packet_id=2))
    pub.expect_closed()
    assert broker.stats()["protocol_violations"] == 1
    assert_serves(clients, broker.port, name)


def test_max_topic_levels(start_broker: StartBroker, clients: ClientPool, name: str) -> None:
    broker = start_broker(max_topic_levels=4)
    sub = connected(clients, broker, f"{name}-sub")
    assert sub.subscribe((f"{name}/a/b/c/d", 0), (f"{name}/+/+/#", 0)) == [0x80, 0]
    pub = connected(clients, broker, f"{name}-pub")
    pub.publish(f"{name}/a/b/c", b"four levels", qos=1)
    assert sub.recv_publish().payload == b"four levels"
    pub.send(Publish(f"{name}/a/b/c/d", b"five levels"))
    pub.expect_closed()
    assert broker.stats()["protocol_violations"] == 1
    sub.expect_nothing(0.1)


def test_max_connections(start_broker: StartBroker, clients: ClientPool, name: str) -> None:
    broker = start_broker(max_connections=2)
    first = connected(clients, broker, f"{name}-1")
    connected(clients, broker, f"{name}-2")
    over = clients.raw(broker.port)
    over.expect_closed()
    assert broker.stats()["connections_refused"] == 1
    first.disconnect()
    wait_for(lambda: broker.stats()["connections_current"] == 1, what="a free connection slot")
    connected(clients, broker, f"{name}-3").ping()


def test_max_subscriptions_per_client(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    broker = start_broker(max_subscriptions_per_client=2)
    raw = connected(clients, broker, f"{name}-c")
    codes = raw.subscribe((f"{name}/1", 0), (f"{name}/2", 1), (f"{name}/3", 1))
    assert codes == [0, 1, 0x80]
    # Replacing an existing subscription is not a new one.
    assert raw.subscribe((f"{name}/1", 1), packet_id=2) == [1]
    # Another client has its own allowance.
    assert connected(clients, broker, f"{name}-d").subscribe((f"{name}/3", 1)) == [1]
    # Unsubscribing frees a slot.
    raw.send(codec.Unsubscribe(3, [f"{name}/2"]))
    assert raw.recv_packet() == codec.UnsubAck(3)
    assert raw.subscribe((f"{name}/3", 1), packet_id=4) == [1]


def test_max_client_id_length(start_broker: StartBroker, clients: ClientPool, name: str) -> None:
    broker = start_broker(max_client_id_length=80)
    raw = clients.raw(broker.port)
    assert raw.connect(f"{name}-" + "x" * 80) == ConnAck(False, 2)  # identifier rejected
    raw.expect_closed()
    assert broker.stats()["connections_refused"] == 1
    fits = clients.raw(broker.port)
    assert fits.connect((f"{name}-" + "x" * 80)[:80]) == ConnAck(False, 0)


def test_max_inbound_qos2_exceeded_disconnects(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    broker = start_broker(max_inbound_qos2=2)
    pub = connected(clients, broker, f"{name}-pub")
    for pid in (1, 2):
        pub.send(Publish(f"{name}/t", b"x", qos=2, packet_id=pid))
        assert pub.recv(PubRec) == PubRec(pid)
    # Completing one frees its slot.
    pub.send(PubRel(1))
    assert pub.recv_packet() == codec.PubComp(1)
    pub.send(Publish(f"{name}/t", b"x", qos=2, packet_id=3))
    assert pub.recv(PubRec) == PubRec(3)
    # A retransmission of one still awaiting PUBREL takes no new slot.
    pub.send(Publish(f"{name}/t", b"x", qos=2, dup=True, packet_id=3))
    assert pub.recv(PubRec) == PubRec(3)
    assert broker.stats()["protocol_violations"] == 0
    # A third one awaiting PUBREL is one too many.
    pub.send(Publish(f"{name}/t", b"x", qos=2, packet_id=4))
    pub.expect_closed()
    assert broker.stats()["protocol_violations"] == 1
    assert_serves(clients, broker.port, name)


def test_overlapping_subscriptions_deliver_once_at_the_highest_qos(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    sub = connected(clients, broker, f"{name}-sub")
    assert sub.subscribe((f"{name}/+", 0), (f"{name}/#", 2), (f"{name}/t", 1)) == [0, 2, 1]
    pub = connected(clients, broker, f"{name}-pub")
    for qos in (2, 1, 0):
        pub.publish(f"{name}/t", f"q{qos}".encode(), qos=qos, packet_id=qos or None)
        got = sub.recv_publish()
        # [3.3.5] one copy, at the highest QoS granted by any matching subscription.
        assert (got.payload, got.qos) == (f"q{qos}".encode(), qos)
        if got.qos == 1:
            sub.send(codec.PubAck(got.packet_id or 0))
        elif got.qos == 2:
            sub.send(PubRec(got.packet_id or 0))
            assert sub.recv(PubRel) == PubRel(got.packet_id or 0)
            sub.send(codec.PubComp(got.packet_id or 0))
        sub.expect_nothing(0.1)
    # Only '+' and '#' match a sibling topic: the highest of those is 2.
    pub.publish(f"{name}/other", b"sibling", qos=2, packet_id=9)
    assert sub.recv_publish().qos == 2
    sub.expect_nothing(0.1)


def test_max_qos_caps_granted_qos(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    broker = start_broker(max_qos=1)
    sub = connected(clients, broker, f"{name}-sub")
    assert sub.subscribe((f"{name}/t", 2), (f"{name}/u", 0)) == [1, 0]
    pub = connected(clients, broker, f"{name}-pub")
    pub.publish(f"{name}/t", b"x", qos=2, packet_id=1)
    assert sub.recv_publish().qos == 1


def test_max_keepalive_caps_the_client_keepalive(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    broker = start_broker(max_keepalive=1)
    raw = clients.raw(broker.port)
    raw.connect(f"{name}-c", keep_alive=600)
    # Treated as keep-alive 1: dropped after 1.5 s of silence, not 15 minutes.
    elapsed = raw.expect_closed(4.0)
    assert 1.2 <= elapsed <= 3.0, elapsed
    assert broker.stats()["keepalive_timeouts"] == 1
