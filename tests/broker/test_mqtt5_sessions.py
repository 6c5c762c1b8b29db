"""MQTT 5 sessions over real sockets: Session Expiry Interval, Will Delay Interval, DISCONNECT
reason codes in both directions, takeover, keep alive and shutdown [3.1.2.11.2, 3.1.3.2.2,
3.14, 4.1].

Spec references are to MQTT Version 5.0 (OASIS, 2019), section numbers in brackets. Timed
behaviour uses 1-second intervals (the protocol's unit) and a 50 ms housekeeping tick.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from broker.codec import Disconnect, PubComp, Publish, PubRec, PubRel, Will
from broker.properties import Properties
from broker.reason_codes import ReasonCode
from tests.broker.raw5 import Pool5, Raw5Client, pool5, session_of
from tests.broker.rawclient import StartBroker, wait_for, wait_offline
from tests.harness import RunningBroker

NEVER = 0xFFFFFFFF


@pytest.fixture
def clients(start_broker: StartBroker) -> Iterator[Pool5]:
    with pool5() as pool:
        yield pool


def expiry(seconds: int) -> Properties:
    return Properties(session_expiry_interval=seconds)


def watcher(clients: Pool5, broker: RunningBroker, name: str, topic: str) -> Raw5Client:
    raw = clients.connected5(broker.port, f"{name}-watcher")
    assert raw.subscribe5((topic, 0)) == [0]
    return raw


def delayed_will(topic: str, delay: int) -> Will:
    return Will(topic, b"gone", 0, False, Properties(will_delay_interval=delay))


# -- Session Expiry Interval [3.1.2.11.2] ------------------------------------------------------


def test_session_expiry_0_by_default_ends_the_session_at_disconnect(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    # [3.1.2.11.2] absent means 0: the session ends when the network connection closes, even
    # with Clean Start 0 (unlike 3.1.1's clean session 0).
    first = clients.connected5(broker.port, name, clean=False)
    assert first.subscribe5((f"{name}/t", 1)) == [1]
    first.disconnect5()
    wait_for(lambda: not session_of(broker, name), what="session discarded")
    again = clients.raw5(broker.port)
    assert again.connect(name, clean=False).session_present is False


def test_session_expiry_keeps_the_session_then_it_expires(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    first = clients.connected5(broker.port, name, clean=False, properties=expiry(1))
    assert first.subscribe5((f"{name}/t", 1)) == [1]
    first.disconnect5()
    wait_offline(broker, name)
    back = clients.raw5(broker.port)
    assert back.connect(name, clean=False, properties=expiry(1)).session_present is True
    back.disconnect5()
    wait_offline(broker, name)
    gone_at = time.monotonic()
    wait_for(lambda: broker.stats()["sessions_expired"] == 1, what="session expired")
    # Kept for the interval, not less (one housekeeping tick of slack on the clocks).
    assert time.monotonic() - gone_at >= 0.9
    assert not session_of(broker, name)
    late = clients.raw5(broker.port)
    assert late.connect(name, clean=False, properties=expiry(1)).session_present is False


def test_session_expiry_0xffffffff_never_expires(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    # [3.1.2.11.2] 0xFFFFFFFF: the session does not expire. Shown against a 1 s session that
    # went offline at the same time and did expire.
    forever = clients.connected5(
        broker.port, f"{name}-forever", clean=False, properties=expiry(NEVER)
    )
    brief = clients.connected5(broker.port, f"{name}-brief", clean=False, properties=expiry(1))
    forever.disconnect5()
    brief.disconnect5()
    wait_offline(broker, f"{name}-forever")
    wait_for(lambda: broker.stats()["sessions_expired"] == 1, what="the 1 s session expired")
    assert not session_of(broker, f"{name}-brief")
    again = clients.raw5(broker.port)
    connack = again.connect(f"{name}-forever", clean=False, properties=expiry(NEVER))
    assert connack.session_present is True


def test_disconnect_with_session_expiry_0_ends_a_persistent_session(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    first = clients.connected5(broker.port, name, clean=False, properties=expiry(60))
    # [3.14.2.2.2] the DISCONNECT's Session Expiry Interval replaces CONNECT's.
    first.disconnect5(properties=expiry(0))
    wait_for(lambda: not session_of(broker, name), what="session discarded")
    again = clients.raw5(broker.port)
    assert again.connect(name, clean=False, properties=expiry(60)).session_present is False
    assert broker.stats()["sessions_expired"] == 0  # ended, not expired


def test_disconnect_with_a_shorter_session_expiry_makes_it_expire(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    first = clients.connected5(broker.port, name, clean=False, properties=expiry(NEVER))
    first.disconnect5(properties=expiry(1))
    wait_for(lambda: broker.stats()["sessions_expired"] == 1, what="session expired")
    assert not session_of(broker, name)


def test_disconnect_setting_expiry_after_connect_0_is_a_protocol_error(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    will_watch = watcher(clients, broker, name, f"{name}/will")
    raw = clients.connected5(broker.port, name, will=Will(f"{name}/will", b"gone"))
    raw.send(Disconnect(0, expiry(30)))
    # [3.14.2-2] non-zero after CONNECT's 0 is a Protocol Error: DISCONNECT 0x82 [4.13].
    raw.expect_disconnect(ReasonCode.PROTOCOL_ERROR)
    assert broker.stats()["protocol_violations"] == 1
    # The client's DISCONNECT was not accepted, so its will stands [3.1.2.5].
    assert will_watch.recv_publish().payload == b"gone"
    wait_for(lambda: not session_of(broker, name), what="session discarded")


# -- Will Delay Interval [3.1.3.2.2] ---------------------------------------------------------


def test_delayed_will_is_published_after_the_delay(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    will_watch = watcher(clients, broker, name, f"{name}/will")
    raw = clients.connected5(
        broker.port, name, clean=False, properties=expiry(30), will=delayed_will(f"{name}/will", 1)
    )
    raw.close()  # no DISCONNECT: the will applies
    lost_at = time.monotonic()
    will_watch.expect_nothing(0.5)
    assert will_watch.recv_publish(timeout=3).payload == b"gone"
    assert time.monotonic() - lost_at >= 0.9
    assert broker.stats()["wills_published"] == 1


def test_delayed_will_is_not_published_when_the_client_returns_in_time(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    will_watch = watcher(clients, broker, name, f"{name}/will")
    will = delayed_will(f"{name}/will", 1)
    raw = clients.connected5(broker.port, name, clean=False, properties=expiry(30), will=will)
    raw.close()
    wait_offline(broker, name)
    back = clients.raw5(broker.port)
    assert back.connect(name, clean=False, properties=expiry(30)).session_present is True
    # Past the delay: the will was cancelled by the new connection [3.1.3.2.2].
    will_watch.expect_nothing(1.5)
    assert broker.stats()["wills_published"] == 0


@pytest.mark.parametrize("session_expiry", [0, 1])
def test_delayed_will_is_published_when_the_session_ends_first(
    broker: RunningBroker, clients: Pool5, name: str, session_expiry: int
) -> None:
    # [3.1.3.2.2] published when the delay passes "or the Session ends, whichever happens
    # first": with a 30 s delay, at once (expiry 0) or when the session expires (expiry 1).
    will_watch = watcher(clients, broker, name, f"{name}/will")
    will = delayed_will(f"{name}/will", 30)
    raw = clients.connected5(
        broker.port, name, clean=False, properties=expiry(session_expiry), will=will
    )
    raw.close()
    lost_at = time.monotonic()
    assert will_watch.recv_publish(timeout=5).payload == b"gone"
    took = time.monotonic() - lost_at
    assert took < 0.5 + session_expiry * 2
    if session_expiry:
        assert took >= 0.9
        assert broker.stats()["sessions_expired"] == 1


def test_delayed_will_is_published_at_once_when_clean_start_ends_the_session(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    will_watch = watcher(clients, broker, name, f"{name}/will")
    will = delayed_will(f"{name}/will", 30)
    raw = clients.connected5(broker.port, name, clean=False, properties=expiry(60), will=will)
    raw.close()
    wait_offline(broker, name)
    # Clean Start 1 discards the old session: it ends, so its will goes now [3.1.3.2.2].
    back = clients.raw5(broker.port)
    assert back.connect(name, clean=True).session_present is False
    assert will_watch.recv_publish(timeout=2).payload == b"gone"


# -- DISCONNECT from the client [3.14] ----------------------------------------------------------


def test_disconnect_with_will_message_0x04_publishes_the_will(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    will_watch = watcher(clients, broker, name, f"{name}/will")
    raw = clients.connected5(broker.port, name, will=Will(f"{name}/will", b"gone"))
    # [3.14.2.1] 0x04: the client disconnects but wants its will published.
    raw.disconnect5(ReasonCode.DISCONNECT_WITH_WILL_MESSAGE)
    assert will_watch.recv_publish(timeout=2).payload == b"gone"
    assert broker.stats()["wills_published"] == 1


def test_normal_disconnect_discards_the_will(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    will_watch = watcher(clients, broker, name, f"{name}/will")
    raw = clients.connected5(broker.port, name, will=Will(f"{name}/will", b"gone"))
    raw.disconnect5(ReasonCode.NORMAL_DISCONNECTION)
    wait_offline(broker, name)
    will_watch.expect_nothing(0.3)  # [3.14.4-3] the will is discarded
    assert broker.stats()["wills_published"] == 0


# -- DISCONNECT from the server [3.14, 4.13] ----------------------------------------------------


def test_takeover_sends_disconnect_0x8e_to_the_old_connection(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    old = clients.connected5(broker.port, name, clean=False, properties=expiry(60))
    assert old.subscribe5((f"{name}/t", 1)) == [1]
    new = clients.raw5(broker.port)
    connack = new.connect(name, clean=False, properties=expiry(60))
    # [3.1.4-3] the existing connection is told 0x8E Session taken over, then closed.
    old.expect_disconnect(ReasonCode.SESSION_TAKEN_OVER)
    assert connack.session_present is True
    assert broker.stats()["takeovers"] == 1
    pub = clients.connected5(broker.port, f"{name}-pub")
    pub.publish5(f"{name}/t", b"to-new", qos=1)
    assert new.recv_publish().payload == b"to-new"


def test_keep_alive_timeout_sends_disconnect_0x8d(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    raw = clients.connected5(broker.port, name, keep_alive=1)
    start = time.monotonic()
    # [3.1.2-22] nothing for 1.5 keep-alive periods: DISCONNECT 0x8D Keep Alive timeout.
    raw.expect_disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT, timeout=4)
    assert time.monotonic() - start >= 1.4
    assert broker.stats()["keepalive_timeouts"] == 1


def test_server_stop_sends_disconnect_0x8b(
    start_broker: StartBroker, clients: Pool5, name: str
) -> None:
    broker = start_broker()
    will_watch = clients.connected5(broker.port, f"{name}-watcher")
    assert will_watch.subscribe5((f"{name}/will", 0)) == [0]
    raw = clients.connected5(broker.port, name, will=Will(f"{name}/will", b"gone"))
    stopper = threading.Thread(target=broker.stop)
    stopper.start()
    try:
        # [3.14.2.1] 0x8B Server shutting down; the shutdown is not the client's failure, so
        # no will is published (server.py's written shutdown order).
        raw.expect_disconnect(ReasonCode.SERVER_SHUTTING_DOWN)
        will_watch.expect_disconnect(ReasonCode.SERVER_SHUTTING_DOWN)
    finally:
        stopper.join(timeout=20)
    assert not stopper.is_alive()
    assert broker.broker.stats.wills_published == 0


# -- resuming a session -------------------------------------------------------------------------


def test_resumed_session_resends_in_flight_with_dup_topic_and_properties(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    aliases = Properties(session_expiry_interval=60, topic_alias_maximum=5)
    sub = clients.connected5(broker.port, name, clean=False, properties=aliases)
    assert sub.subscribe5((f"{name}/t", 1)) == [1]
    pub = clients.connected5(broker.port, f"{name}-pub")
    props = Properties(content_type="text/plain", user_properties=[("k", "v")])
    pub.publish5(f"{name}/t", b"first", qos=1, properties=props)
    first = sub.recv_publish()
    assert (first.topic, first.properties.topic_alias) == (f"{name}/t", 1)
    sub.close()  # no PUBACK: the message stays in flight
    wait_offline(broker, name)
    pub.publish5(f"{name}/t", b"queued", qos=1, packet_id=2, properties=props)
    back = clients.raw5(broker.port)
    assert back.connect(name, clean=False, properties=aliases).session_present is True
    again = back.recv_publish()
    # [4.4] resent with DUP and the same packet id; [3.3.2.3.4] aliases do not outlive the
    # connection, so the topic is spelled out (and may be aliased afresh).
    assert (again.dup, again.packet_id, again.payload) == (True, first.packet_id, b"first")
    assert again.topic == f"{name}/t"
    assert (again.properties.content_type, again.properties.user_properties) == (
        "text/plain",
        [("k", "v")],
    )
    queued = back.recv_publish()
    assert (queued.dup, queued.payload, queued.properties.user_properties) == (
        False,
        b"queued",
        [("k", "v")],
    )
    back.ack(again)
    back.ack(queued)
    back.expect_nothing(0.2)


def test_inbound_qos2_state_survives_reconnect(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    # [4.3.3] a PUBREL on the new connection completes the QoS 2 message received on the old.
    sub = clients.connected5(broker.port, f"{name}-sub")
    assert sub.subscribe5((f"{name}/t", 2)) == [2]
    pub = clients.connected5(broker.port, name, clean=False, properties=expiry(60))
    pub.send(Publish(f"{name}/t", b"once", 2, packet_id=3))
    assert pub.recv(PubRec) == PubRec(3)
    pub.close()
    wait_offline(broker, name)
    back = clients.raw5(broker.port)
    assert back.connect(name, clean=False, properties=expiry(60)).session_present is True
    back.send(Publish(f"{name}/t", b"once", 2, dup=True, packet_id=3))
    assert back.recv(PubRec) == PubRec(3)
    back.send(PubRel(3))
    assert back.recv(PubComp) == PubComp(3)
    got = sub.recv_publish()
    assert got.payload == b"once"
    sub.ack(got)
    sub.expect_nothing(0.2)  # routed once
