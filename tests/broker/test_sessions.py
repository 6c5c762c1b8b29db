"""Sessions [3.1.2.4, 4.1]: clean and persistent, offline queue, takeover, keep-alive, expiry."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from broker import codec
from broker.codec import ConnAck, Connect, PubAck
from tests.broker.rawclient import ClientPool, StartBroker, client_pool, wait_for, wait_offline
from tests.harness import RunningBroker


@pytest.fixture
def clients(start_broker: StartBroker) -> Iterator[ClientPool]:
    with client_pool() as pool:
        yield pool


def connect_bytes(level: int, name: bytes = b"MQTT", client_id: bytes = b"c") -> bytes:
    """A CONNECT for any protocol name and level (the codec only encodes the ones it knows)."""
    body = struct.pack(">H", len(name)) + name + bytes((level, 0x02)) + struct.pack(">H", 0)
    body += struct.pack(">H", len(client_id)) + client_id
    return codec.frame(0x10, body)


def test_clean_session_discards_subscriptions_and_queue(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    cid = f"{name}-c"
    first = clients.raw(broker.port)
    assert first.connect(cid, clean=False).session_present is False
    first.subscribe((f"{name}/t", 1))
    first.disconnect()
    wait_offline(broker, cid)
    pub = clients.connected(broker.port, f"{name}-pub")
    pub.publish(f"{name}/t", b"queued", qos=1)  # queued for the offline session

    clean = clients.raw(broker.port)
    assert clean.connect(cid, clean=True).session_present is False
    clean.expect_nothing(0.2)  # the queued message went with the old session
    pub.publish(f"{name}/t", b"after", qos=1)
    clean.expect_nothing(0.2)  # and so did the subscription
    clean.disconnect()

    # A clean session ends with its connection: nothing is left for a persistent one.
    again = clients.raw(broker.port)
    assert again.connect(cid, clean=False).session_present is False
    again.expect_nothing(0.2)


def test_persistent_session_keeps_subscription_and_queues_qos1_qos2_but_not_qos0(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    cid = f"{name}-c"
    sub = clients.connected(broker.port, cid, clean_session=False)
    sub.subscribe(f"{name}/t", 2)
    sub.disconnect()
    wait_offline(broker, cid)
    pub = clients.connected(broker.port, f"{name}-pub")
    for qos in (0, 1, 2, 1):
        pub.publish(f"{name}/t", f"q{qos}".encode(), qos=qos)

    # A raw client: paho hands a QoS 2 message over only at PUBREL, which reorders them.
    back = clients.raw(broker.port)
    assert back.connect(cid, clean=False) == ConnAck(True, 0)
    got = [back.recv_publish() for _ in range(3)]
    assert [(m.payload, m.qos) for m in got] == [(b"q1", 1), (b"q2", 2), (b"q1", 1)]
    back.expect_nothing(0.2)
    assert broker.stats()["messages_dropped_offline_qos0"] == 1
    # The subscription survived too: live messages keep flowing.
    pub.publish(f"{name}/t", b"live", qos=1)
    assert back.recv_publish().payload == b"live"


def test_queue_qos0_offline_setting_queues_qos0_too(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    broker = start_broker(queue_qos0_offline=True)
    cid = f"{name}-c"
    sub = clients.connected(broker.port, cid, clean_session=False)
    sub.subscribe(f"{name}/t", 1)
    sub.disconnect()
    wait_offline(broker, cid)
    pub = clients.connected(broker.port, f"{name}-pub")
    pub.publish(f"{name}/t", b"zero", qos=0)
    pub.publish(f"{name}/t", b"one", qos=1)
    back = clients.paho(broker.port, cid, clean_session=False)
    assert back.connect() == (True, 0)
    assert [(m.payload, m.qos) for m in back.expect(2)] == [(b"zero", 0), (b"one", 1)]
    assert broker.stats()["messages_dropped_offline_qos0"] == 0


def test_offline_queue_bounded_by_max_queued_messages(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    broker = start_broker(max_queued_messages=3)
    cid = f"{name}-c"
    sub = clients.connected(broker.port, cid, clean_session=False)
    sub.subscribe(f"{name}/t", 1)
    sub.disconnect()
    wait_offline(broker, cid)
    pub = clients.raw(broker.port)
    pub.connect(f"{name}-pub")
    for i in range(5):
        pub.publish(f"{name}/t", str(i).encode(), qos=1, packet_id=i + 1)
    assert broker.stats()["messages_dropped_queue_full"] == 2

    back = clients.paho(broker.port, cid, clean_session=False)
    assert back.connect() == (True, 0)
    # The oldest are kept in order; the overflow is dropped.
    assert [m.payload for m in back.expect(3)] == [b"0", b"1", b"2"]
    back.expect_nothing(0.2)


def test_takeover_disconnects_the_first_paho_client(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    cid = f"{name}-c"
    first = clients.connected(broker.port, cid)
    second = clients.connected(broker.port, cid)
    assert first.disconnected.wait(5), "the first connection was not closed"
    # Closed by the takeover itself, not later for want of a session (connect_timeout).
    assert (broker.stats()["takeovers"], broker.stats()["connect_timeouts"]) == (1, 0)
    assert second.subscribe(f"{name}/t", 1) == [1]
    second.publish(f"{name}/t", b"still here", qos=1)
    assert second.expect(1)[0].payload == b"still here"
    assert not second.disconnected.is_set()


def test_takeover_closes_the_first_raw_socket(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    cid = f"{name}-c"
    first = clients.raw(broker.port)
    first.connect(cid)
    second = clients.raw(broker.port)
    assert second.connect(cid).return_code == 0
    assert first.expect_closed(5) < 1.0  # at once, not at some later timeout
    assert (broker.stats()["takeovers"], broker.stats()["connect_timeouts"]) == (1, 0)
    second.ping()


def test_takeover_with_clean_session_0_keeps_the_session(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    cid = f"{name}-c"
    first = clients.raw(broker.port)
    first.connect(cid, clean=False)
    first.subscribe((f"{name}/t", 1))
    pub = clients.raw(broker.port)
    pub.connect(f"{name}-pub")
    pub.publish(f"{name}/t", b"unacked", qos=1)
    sent = first.recv_publish()

    second = clients.raw(broker.port)
    connack = second.connect(cid, clean=False)
    assert (connack.return_code, connack.session_present) == (0, True)
    first.expect_closed(5)
    resent = second.recv_publish()
    assert (resent.payload, resent.dup, resent.packet_id) == (b"unacked", True, sent.packet_id)
    second.send(PubAck(resent.packet_id or 0))
    pub.publish(f"{name}/t", b"next", qos=1, packet_id=2)
    assert second.recv_publish().payload == b"next"


def test_takeover_of_a_clean_session_by_a_persistent_one_starts_a_new_session(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    cid = f"{name}-c"
    first = clients.raw(broker.port)
    first.connect(cid, clean=True)
    second = clients.raw(broker.port)
    connack = second.connect(cid, clean=False)
    first.expect_closed(5)
    # [3.1.2.4] a clean session lasts as long as its connection: nothing is there to resume.
    assert (connack.return_code, connack.session_present) == (0, False)
    second.subscribe((f"{name}/t", 1))
    second.disconnect()
    wait_offline(broker, cid)
    pub = clients.raw(broker.port)
    pub.connect(f"{name}-pub")
    pub.publish(f"{name}/t", b"kept", qos=1)
    # The session the second connection asked for must persist like any clean_session=0 one.
    third = clients.raw(broker.port)
    assert third.connect(cid, clean=False).session_present is True
    assert third.recv_publish().payload == b"kept"


def test_silent_client_dropped_after_one_and_a_half_keepalive_periods(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    raw = clients.raw(broker.port)
    raw.connect(f"{name}-c", keep_alive=1)
    elapsed = raw.expect_closed(4.0)
    # [3.1.2-24] 1.5 x keep-alive (keepalive_grace), checked every housekeeping_interval.
    assert 1.2 <= elapsed <= 3.0, elapsed
    assert broker.stats()["keepalive_timeouts"] == 1


def test_keepalive_grace_is_a_setting(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    broker = start_broker(keepalive_grace=0.5)
    raw = clients.raw(broker.port)
    raw.connect(f"{name}-c", keep_alive=1)
    elapsed = raw.expect_closed(4.0)
    assert 0.3 <= elapsed <= 1.2, elapsed  # 0.5 x 1 s, not the default 1.5 x
    assert broker.stats()["keepalive_timeouts"] == 1


def test_client_pinging_in_time_stays_connected(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    raw = clients.raw(broker.port)
    raw.connect(f"{name}-c", keep_alive=1)
    for _ in range(4):  # 4 x 0.55 s = 2.2 s, well past the 1.5 s a silent client gets
        raw.expect_nothing(0.55)  # paces the pings; also checks nothing else arrives
        raw.ping()
    assert broker.stats()["keepalive_timeouts"] == 0


def test_session_expiry_discards_offline_persistent_sessions(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    broker = start_broker(session_expiry=0.3)
    expired, kept = f"{name}-expired", f"{name}-kept"
    for cid in (expired, kept):
        raw = clients.raw(broker.port)
        raw.connect(cid, clean=False)
        raw.subscribe((f"{name}/t", 1))
        if cid == expired:
            raw.disconnect()  # offline: expires
    wait_for(lambda: broker.stats()["sessions_expired"] >= 1, what="sessions_expired")
    again = clients.raw(broker.port)
    assert again.connect(expired, clean=False).session_present is False
    assert broker.stats()["sessions_expired"] == 1  # the online session is not expired


def test_offline_session_kept_without_session_expiry(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    assert broker.settings.session_expiry is None
    cid = f"{name}-c"
    raw = clients.raw(broker.port)
    raw.connect(cid, clean=False)
    raw.disconnect()
    broker.call(broker.broker.check_timeouts)
    again = clients.raw(broker.port)
    assert again.connect(cid, clean=False).session_present is True


def test_empty_client_id_with_clean_session_gets_an_id_of_its_own(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    a = clients.raw(broker.port)
    b = clients.raw(broker.port)
    assert a.connect("", clean=True) == ConnAck(False, 0)
    assert b.connect("", clean=True) == ConnAck(False, 0)
    # Two anonymous clients are two sessions, not a takeover.
    a.subscribe((f"{name}/t", 0))
    b.publish(f"{name}/t", b"hi")
    assert a.recv_publish().payload == b"hi"
    a.ping()
    b.ping()
    assert broker.stats()["takeovers"] == 0


def test_empty_client_id_with_persistent_session_rejected(
    broker: RunningBroker, clients: ClientPool
) -> None:
    raw = clients.raw(broker.port)
    # [3.1.3-8] return code 2 (identifier rejected), then close.
    assert raw.connect("", clean=False) == ConnAck(False, 2)
    raw.expect_closed()
    assert broker.stats()["connections_refused"] == 1


@pytest.mark.parametrize("level", [6, 2, 7])
def test_unsupported_protocol_level_refused_with_return_code_1(
    broker: RunningBroker, clients: ClientPool, level: int
) -> None:
    raw = clients.raw(broker.port)
    raw.send(connect_bytes(level))
    # [3.1.2-2] return code 1 (unacceptable protocol version), then close.
    assert raw.recv_packet() == ConnAck(False, 1)
    raw.expect_closed()
    assert broker.stats()["connections_refused"] == 1


def test_mqtt_31_protocol_level_3_accepted(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    raw = clients.raw(broker.port)
    raw.send(Connect(f"{name}-c", protocol_level=codec.MQTT_31))
    assert raw.recv_packet() == ConnAck(False, 0)
    raw.ping()
