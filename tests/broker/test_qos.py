"""QoS 0/1/2 delivery through real sockets: the flows of [4.3], redelivery [4.4], order [4.6]."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from broker.codec import PubAck, PubComp, Publish, PubRec, PubRel
from tests.broker.rawclient import ClientPool, RawClient, StartBroker, client_pool
from tests.harness import RunningBroker


@pytest.fixture
def clients(start_broker: StartBroker) -> Iterator[ClientPool]:
    with client_pool() as pool:
        yield pool


def subscriber(
    clients: ClientPool,
    broker: RunningBroker,
    client_id: str,
    *subs: tuple[str, int],
    clean: bool = True,
) -> RawClient:
    raw = clients.raw(broker.port)
    assert raw.connect(client_id, clean=clean).return_code == 0
    codes = raw.subscribe(*subs)
    assert codes == [qos for _, qos in subs]
    return raw


def test_qos0_delivered_once_without_acknowledgement(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    sub = clients.connected(broker.port, f"{name}-sub")
    assert sub.subscribe(f"{name}/t", 0) == [0]
    pub = clients.raw(broker.port)
    pub.connect(f"{name}-pub")
    pub.publish(f"{name}/t", b"zero", qos=0)
    [got] = sub.expect(1)
    assert (got.topic, got.payload, got.qos, got.retain, got.dup) == (
        f"{name}/t",
        b"zero",
        0,
        False,
        False,
    )
    # QoS 0 has no acknowledgement to the publisher [4.3.1].
    pub.expect_nothing(0.2)
    sub.expect_nothing(0.1)


def test_qos1_publisher_gets_puback_and_subscriber_one_copy(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    sub = subscriber(clients, broker, f"{name}-sub", (f"{name}/t", 1))
    pub = clients.raw(broker.port)
    pub.connect(f"{name}-pub")
    pub.send(Publish(f"{name}/t", b"one", qos=1, packet_id=321))
    assert pub.recv(PubAck) == PubAck(321)
    got = sub.recv_publish()
    assert (got.topic, got.payload, got.qos, got.dup, got.retain) == (
        f"{name}/t",
        b"one",
        1,
        False,
        False,
    )
    assert got.packet_id
    sub.send(PubAck(got.packet_id))
    # Once acknowledged nothing is resent while the connection lasts [4.4].
    sub.expect_nothing(0.3)


def test_qos2_outbound_flow_publish_pubrec_pubrel_pubcomp(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    sub = subscriber(clients, broker, f"{name}-sub", (f"{name}/t", 2))
    pub = clients.raw(broker.port)
    pub.connect(f"{name}-pub")
    pub.publish(f"{name}/t", b"two", qos=2, packet_id=9)
    got = sub.recv_publish()
    assert (got.payload, got.qos, got.dup) == (b"two", 2, False)
    assert got.packet_id
    sub.send(PubRec(got.packet_id))
    assert sub.recv(PubRel) == PubRel(got.packet_id)
    sub.send(PubComp(got.packet_id))
    sub.expect_nothing(0.3)
    assert broker.call(lambda: len(broker.broker.sessions[f"{name}-sub"].inflight)) == 0


@pytest.mark.parametrize("pub_qos", [0, 1, 2])
@pytest.mark.parametrize("sub_qos", [0, 1, 2])
def test_delivered_qos_is_the_minimum_of_publish_and_subscription(
    broker: RunningBroker, clients: ClientPool, name: str, pub_qos: int, sub_qos: int
) -> None:
    sub = subscriber(clients, broker, f"{name}-sub", (f"{name}/t", sub_qos))
    pub = clients.raw(broker.port)
    pub.connect(f"{name}-pub")
    pub.publish(f"{name}/t", b"m", qos=pub_qos, packet_id=5)
    got = sub.recv_publish()
    assert got.qos == min(pub_qos, sub_qos)
    assert (got.packet_id is None) == (got.qos == 0)


def test_qos2_inbound_retransmission_before_pubrel_is_routed_once(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    sub = clients.connected(broker.port, f"{name}-sub")
    sub.subscribe(f"{name}/t", 2)
    pub = clients.raw(broker.port)
    pub.connect(f"{name}-pub")
    pub.send(Publish(f"{name}/t", b"once", qos=2, packet_id=7))
    assert pub.recv(PubRec) == PubRec(7)
    # The PUBREC "was lost": the publisher retransmits with DUP and the same id [4.3.3].
    pub.send(Publish(f"{name}/t", b"once", qos=2, dup=True, packet_id=7))
    assert pub.recv(PubRec) == PubRec(7)
    pub.send(PubRel(7))
    assert pub.recv(PubComp) == PubComp(7)
    [got] = sub.expect(1)
    assert got.payload == b"once"
    sub.expect_nothing(0.3)
    # After PUBCOMP the id is free again: the same id now carries a new message.
    pub.publish(f"{name}/t", b"again", qos=2, packet_id=7)
    [again] = sub.expect(1)
    assert again.payload == b"again"


def test_unacknowledged_qos1_and_qos2_resent_with_dup_and_same_ids_on_resume(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    cid = f"{name}-sub"
    sub = subscriber(clients, broker, cid, (f"{name}/t", 2), clean=False)
    pub = clients.raw(broker.port)
    pub.connect(f"{name}-pub")
    pub.publish(f"{name}/t", b"q1", qos=1, packet_id=1)
    pub.publish(f"{name}/t", b"q2", qos=2, packet_id=2)
    first = [sub.recv_publish(), sub.recv_publish()]
    assert [(p.payload, p.qos, p.dup) for p in first] == [(b"q1", 1, False), (b"q2", 2, False)]
    sub.close()  # no PUBACK, no PUBREC

    again = clients.raw(broker.port)
    connack = again.connect(cid, clean=False)
    assert (connack.return_code, connack.session_present) == (0, True)
    resent = [again.recv_publish(), again.recv_publish()]
    # [4.4] resent in the original order, DUP set, same packet identifiers.
    assert [(p.payload, p.qos, p.dup, p.packet_id) for p in resent] == [
        (b"q1", 1, True, first[0].packet_id),
        (b"q2", 2, True, first[1].packet_id),
    ]
    assert resent[0].packet_id != resent[1].packet_id
    again.send(PubAck(resent[0].packet_id or 0))
    again.send(PubRec(resent[1].packet_id or 0))
    assert again.recv(PubRel) == PubRel(resent[1].packet_id or 0)
    again.send(PubComp(resent[1].packet_id or 0))
    again.expect_nothing(0.3)


def test_pubrel_resent_on_resume_after_pubrec(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    cid = f"{name}-sub"
    sub = subscriber(clients, broker, cid, (f"{name}/t", 2), clean=False)
    pub = clients.raw(broker.port)
    pub.connect(f"{name}-pub")
    pub.publish(f"{name}/t", b"x", qos=2, packet_id=3)
    got = sub.recv_publish()
    assert got.packet_id
    sub.send(PubRec(got.packet_id))
    assert sub.recv(PubRel) == PubRel(got.packet_id)
    sub.close()  # no PUBCOMP

    again = clients.raw(broker.port)
    assert again.connect(cid, clean=False).session_present
    # [4.4] the PUBREL is resent, not the PUBLISH: the client already has the message.
    assert again.recv_packet() == PubRel(got.packet_id)
    again.send(PubComp(got.packet_id))
    again.expect_nothing(0.3)
    assert broker.call(lambda: len(broker.broker.sessions[cid].inflight)) == 0


def test_inflight_window_holds_back_until_acknowledged_in_order(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    broker = start_broker(max_inflight=2)
    sub = subscriber(clients, broker, f"{name}-sub", (f"{name}/t", 1))
    pub = clients.raw(broker.port)
    pub.connect(f"{name}-pub")
    for i in range(6):
        pub.publish(f"{name}/t", str(i).encode(), qos=1, packet_id=i + 1)
    window = [sub.recv_publish(), sub.recv_publish()]
    assert [p.payload for p in window] == [b"0", b"1"]
    sub.expect_nothing(0.3)  # the window is full
    received = [p.payload for p in window]
    for _ in range(4):
        oldest = window.pop(0)
        sub.send(PubAck(oldest.packet_id or 0))
        window.append(sub.recv_publish())  # exactly one more per PUBACK
        received.append(window[-1].payload)
        sub.expect_nothing(0.05)
    assert received == [str(i).encode() for i in range(6)]  # [4.6] in publish order
    for p in window:
        sub.send(PubAck(p.packet_id or 0))
    sub.expect_nothing(0.2)


def test_many_qos1_messages_arrive_in_publish_order(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    sub = clients.connected(broker.port, f"{name}-sub")
    sub.subscribe(f"{name}/t", 1)
    pub = clients.connected(broker.port, f"{name}-pub")
    count = 200  # ten times the default window: most go through the queue
    for i in range(count):
        pub.client.publish(f"{name}/t", str(i).encode(), 1)
    got = sub.expect(count)
    assert [m.payload for m in got] == [str(i).encode() for i in range(count)]
    sub.expect_nothing(0.1)
