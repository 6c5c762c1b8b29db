"""broker/session.py: the outbound state machine of one session [4.3, 4.4]: QoS downgrade, the
in-flight window, the bounded offline queue, acknowledgements, resume and packet identifiers.

The connection is a recorder of what the session asked it to send: Session is pure state and
calls only ``send_publish`` and ``send_pubrel`` on it and reads ``congested_since``.
"""

from __future__ import annotations

import time
from typing import Any

from broker.auth import AllowAll, Identity
from broker.config import BrokerSettings
from broker.message import Message
from broker.router import pack_options
from broker.session import AWAIT_ACK, AWAIT_COMP, Session
from broker.stats import BrokerStats

Sent = tuple[Any, ...]


class RecordingConnection:
    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.identifiers: list[tuple[int, ...]] = []
        self.congested_since: float | None = None

    def send_publish(
        self,
        message: Message,
        qos: int,
        pid: int,
        retain: bool,
        dup: bool,
        identifiers: tuple[int, ...] = (),
    ) -> bool:
        self.sent.append(("PUBLISH", message.topic, qos, pid, retain, dup))
        self.identifiers.append(identifiers)
        return True

    def send_pubrel(self, pid: int) -> None:
        self.sent.append(("PUBREL", pid))


def make(
    online: bool = True, hooks: Any = None, **settings: Any
) -> tuple[Session, BrokerStats, RecordingConnection]:
    stats = BrokerStats()
    session = Session("client", False, BrokerSettings(**settings), stats, hooks or AllowAll())
    conn = RecordingConnection()
    if online:
        session.attach(conn)  # type: ignore[arg-type]
    return session, stats, conn


def m(topic: str, qos: int = 1) -> Message:
    return Message(topic, b"payload", qos)


def publish(topic: str, qos: int, pid: int, retain: bool = False, dup: bool = False) -> Sent:
    return ("PUBLISH", topic, qos, pid, retain, dup)


def queued(session: Session) -> list[tuple[str, int, bool]]:
    return [(msg.topic, qos, retain) for msg, qos, retain, _ids in session.queue]


# --------------------------------------------------------------------------------------------
# QoS and immediate delivery
# --------------------------------------------------------------------------------------------


def test_qos0_goes_out_at_once_without_packet_id() -> None:
    session, stats, conn = make()
    session.deliver(m("t", 0), 2, False)
    assert conn.sent == [publish("t", 0, 0)]
    assert session.inflight == {}
    assert stats.messages_delivered == 1


def test_delivered_qos_is_min_of_granted_and_message_qos() -> None:
    session, _, conn = make()
    session.deliver(m("a", 2), 1, False)  # granted 1
    session.deliver(m("b", 0), 2, False)  # published at 0
    session.deliver(m("c", 2), 0, False)  # granted 0
    session.deliver(m("d", 1), 2, False)
    session.deliver(m("e", 2), 2, False)
    assert conn.sent == [
        publish("a", 1, 1),
        publish("b", 0, 0),
        publish("c", 0, 0),
        publish("d", 1, 2),
        publish("e", 2, 3),
    ]
    assert {pid: e.qos for pid, e in session.inflight.items()} == {1: 1, 2: 1, 3: 2}


def test_retain_flag_is_passed_through() -> None:
    session, _, conn = make()
    session.deliver(m("a", 1), 1, True)
    session.deliver(m("b", 0), 0, True)
    assert conn.sent == [publish("a", 1, 1, retain=True), publish("b", 0, 0, retain=True)]
    assert session.inflight[1].retain is True


def test_receive_authorization_is_checked_when_hooks_ask_for_it() -> None:
    class OnlyPublic(AllowAll):
        checks_receive = True

        def may_receive(self, identity: Identity, topic: str) -> bool:
            return topic.startswith("public/")

    session, stats, conn = make(hooks=OnlyPublic())
    session.deliver(m("secret/x"), 1, False)
    session.deliver(m("public/x"), 1, False)
    assert conn.sent == [publish("public/x", 1, 1)]
    assert stats.messages_dropped_not_authorized == 1
    assert stats.messages_delivered == 1


# --------------------------------------------------------------------------------------------
# The in-flight window and the queue
# --------------------------------------------------------------------------------------------


def test_window_of_max_inflight_then_queue() -> None:
    session, stats, conn = make(max_inflight=2)
    for topic in ("a", "b", "c", "d"):
        session.deliver(m(topic), 1, False)
    assert conn.sent == [publish("a", 1, 1), publish("b", 1, 2)]
    assert list(session.inflight) == [1, 2]
    assert queued(session) == [("c", 1, False), ("d", 1, False)]
    assert stats.messages_delivered == 2


def test_puback_fills_the_window_in_order() -> None:
    session, stats, conn = make(max_inflight=2)
    for topic in ("a", "b", "c", "d"):
        session.deliver(m(topic), 1, False)
    conn.sent.clear()
    session.on_puback(1)
    assert conn.sent == [publish("c", 1, 3)]
    assert list(session.inflight) == [2, 3]
    assert queued(session) == [("d", 1, False)]
    session.on_puback(3)
    session.on_puback(2)
    assert conn.sent == [publish("c", 1, 3), publish("d", 1, 4)]
    assert session.inflight.keys() == {4}
    assert not session.queue
    assert stats.messages_delivered == 4


def test_queued_qos0_waits_behind_queued_qos1_and_then_goes_without_window() -> None:
    session, _, conn = make(max_inflight=1)
    session.deliver(m("a"), 1, False)
    session.deliver(m("b"), 1, False)  # window full: queued
    session.deliver(m("c", 2), 1, False)  # queue not empty: queued behind b, order kept
    assert queued(session) == [("b", 1, False), ("c", 1, False)]
    session.deliver(m("z", 0), 0, False)  # QoS 0 online is never held
    assert conn.sent[-1] == publish("z", 0, 0)


def test_unknown_or_mismatched_acks_change_nothing() -> None:
    session, _, conn = make(max_inflight=2)
    session.deliver(m("one", 1), 1, False)
    session.deliver(m("two", 2), 2, False)
    session.deliver(m("three", 1), 1, False)  # queued
    session.on_puback(99)
    session.on_puback(2)  # PUBACK for a QoS 2 message
    session.on_pubrec(1)  # PUBREC for a QoS 1 message
    session.on_pubcomp(1)  # PUBCOMP for a QoS 1 message
    session.on_pubcomp(2)  # PUBCOMP before PUBREC
    assert list(session.inflight) == [1, 2]
    assert session.inflight[1].state == AWAIT_ACK
    assert session.inflight[2].state == AWAIT_ACK
    assert queued(session) == [("three", 1, False)]
    assert len(conn.sent) == 2


def test_qos2_flow() -> None:
    session, _, conn = make(max_inflight=1)
    session.deliver(m("a", 2), 2, False)
    session.deliver(m("b", 2), 2, False)
    assert session.inflight[1].state == AWAIT_ACK
    session.on_pubrec(1)
    assert session.inflight[1].state == AWAIT_COMP
    assert queued(session) == [("b", 2, False)]  # still in flight until PUBCOMP
    session.on_pubrec(1)  # a repeated PUBREC is harmless
    assert session.inflight[1].state == AWAIT_COMP
    session.on_pubcomp(1)
    assert list(session.inflight) == [2]
    assert conn.sent == [publish("a", 2, 1), publish("b", 2, 2)]
    session.on_pubrec(2)
    session.on_pubcomp(2)
    assert session.inflight == {}


def test_queue_overflow_drops_newest_and_counts() -> None:
    session, stats, _ = make(online=False, max_queued_messages=2)
    for topic in ("a", "b", "c", "d"):
        session.deliver(m(topic), 1, False)
    assert queued(session) == [("a", 1, False), ("b", 1, False)]
    assert stats.messages_dropped_queue_full == 2


def test_queue_overflow_while_online_with_full_window() -> None:
    session, stats, conn = make(max_inflight=1, max_queued_messages=1)
    for topic in ("a", "b", "c"):
        session.deliver(m(topic), 1, False)
    assert conn.sent == [publish("a", 1, 1)]
    assert queued(session) == [("b", 1, False)]
    assert stats.messages_dropped_queue_full == 1


def test_congested_connection_gets_no_new_qos1_until_it_drains() -> None:
    session, _, conn = make(max_inflight=5)
    session.deliver(m("a"), 1, False)
    conn.congested_since = 10.0
    session.deliver(m("b"), 1, False)
    session.deliver(m("c", 2), 2, False)
    assert conn.sent == [publish("a", 1, 1)]
    assert queued(session) == [("b", 1, False), ("c", 2, False)]
    session.on_puback(1)  # room in the window, but still congested
    session.fill_window()
    assert conn.sent == [publish("a", 1, 1)]
    conn.congested_since = None
    session.fill_window()
    assert conn.sent == [publish("a", 1, 1), publish("b", 1, 2), publish("c", 2, 3)]
    assert not session.queue


# --------------------------------------------------------------------------------------------
# Offline
# --------------------------------------------------------------------------------------------


def test_offline_qos0_is_dropped_and_counted() -> None:
    session, stats, _ = make(online=False)
    session.deliver(m("a", 0), 1, False)
    session.deliver(m("b", 1), 0, False)  # granted 0: a QoS 0 delivery too
    session.deliver(m("c", 1), 1, False)
    assert queued(session) == [("c", 1, False)]
    assert stats.messages_dropped_offline_qos0 == 2
    assert stats.messages_delivered == 0


def test_offline_qos0_is_queued_when_configured() -> None:
    session, stats, _ = make(online=False, queue_qos0_offline=True)
    session.deliver(m("a", 0), 1, False)
    session.deliver(m("b", 1), 1, True)
    assert queued(session) == [("a", 0, False), ("b", 1, True)]
    assert stats.messages_dropped_offline_qos0 == 0
    conn = RecordingConnection()
    session.attach(conn)  # type: ignore[arg-type]
    session.resume()
    assert conn.sent == [publish("a", 0, 0), publish("b", 1, 1, retain=True)]
    assert stats.messages_delivered == 2


def test_detach_and_attach() -> None:
    session, _, conn = make()
    assert session.online
    session.detach(123.0)
    assert not session.online
    assert session.disconnected_at == 123.0
    session.deliver(m("a"), 1, False)
    assert conn.sent == []
    session.fill_window()  # no connection: nothing to do
    session.resume()
    assert queued(session) == [("a", 1, False)]
    session.attach(conn)  # type: ignore[arg-type]
    assert session.online
    assert session.disconnected_at is None


def test_resume_retransmits_inflight_in_order_then_drains_queue() -> None:
    # [4.4] on reconnect: PUBLISH again with DUP for unacknowledged messages, PUBREL again for
    # those whose PUBREC arrived, in the original order.
    session, _, first = make(max_inflight=3)
    session.deliver(m("a", 1), 1, False)
    session.deliver(m("b", 2), 2, True)
    session.deliver(m("c", 2), 2, False)
    session.deliver(m("d", 1), 1, False)  # queued: window full
    session.on_pubrec(2)
    session.detach(1.0)
    session.deliver(m("e", 1), 1, False)  # queued while offline
    second = RecordingConnection()
    session.attach(second)  # type: ignore[arg-type]
    session.resume()
    assert second.sent == [
        publish("a", 1, 1, dup=True),
        ("PUBREL", 2),
        publish("c", 2, 3, dup=True),
    ]
    assert first.sent == [publish("a", 1, 1), publish("b", 2, 2, retain=True), publish("c", 2, 3)]
    assert [e.state for e in session.inflight.values()] == [AWAIT_ACK, AWAIT_COMP, AWAIT_ACK]
    session.on_puback(1)
    assert second.sent[-1] == publish("d", 1, 4)
    session.on_pubcomp(2)
    assert second.sent[-1] == publish("e", 1, 5)
    assert not session.queue


def test_resume_with_room_in_window_sends_queued_messages() -> None:
    session, _, _ = make(online=False, max_inflight=2)
    for topic in ("a", "b", "c"):
        session.deliver(m(topic), 1, False)
    conn = RecordingConnection()
    session.attach(conn)  # type: ignore[arg-type]
    session.resume()
    assert conn.sent == [publish("a", 1, 1), publish("b", 1, 2)]
    assert queued(session) == [("c", 1, False)]


# --------------------------------------------------------------------------------------------
# Packet identifiers
# --------------------------------------------------------------------------------------------


def test_packet_ids_wrap_at_65535_and_skip_ids_in_flight() -> None:
    session, _, conn = make(max_inflight=3)
    session.deliver(m("held-1"), 1, False)  # pid 1, never acknowledged
    session.deliver(m("held-2", 2), 2, False)  # pid 2, never completed
    session.on_pubrec(2)
    for expected in range(3, 65536):
        session.deliver(m("x"), 1, False)
        assert conn.sent[-1][3] == expected
        session.on_puback(expected)
    # 65535 wraps to 1 [2.3.1]; 1 and 2 are still in flight, so the next free id is 3.
    session.deliver(m("wrapped"), 1, False)
    assert conn.sent[-1] == publish("wrapped", 1, 3)
    assert list(session.inflight) == [1, 2, 3]


def test_packet_ids_are_never_zero_or_reused_while_in_flight() -> None:
    session, _, conn = make(max_inflight=20)
    for _ in range(20):
        session.deliver(m("t"), 1, False)
    pids = [sent[3] for sent in conn.sent]
    assert pids == list(range(1, 21))
    session.on_puback(5)
    session.deliver(m("t"), 1, False)
    assert conn.sent[-1][3] == 21  # the next id, not the freed one
    assert 0 not in session.inflight


# ---------------------------------------------------------------------------------------------
# MQTT 5 subscription options, flow control and message expiry
# ---------------------------------------------------------------------------------------------


def test_no_local_skips_the_publishers_own_messages() -> None:
    session, _, conn = make()
    own = Message("t", b"x", 1, client_id=session.client_id)
    other = Message("t", b"y", 1, client_id="someone-else")
    session.deliver(own, pack_options(1, no_local=True), False)
    session.deliver(other, pack_options(1, no_local=True), False)
    assert [(kind, topic) for kind, topic, *_ in conn.sent] == [("PUBLISH", "t")]
    assert len(session.inflight) == 1
    assert next(iter(session.inflight.values())).message is other


def test_no_local_on_one_of_two_overlapping_subscriptions_still_delivers_once() -> None:
    session, _, conn = make()
    own = Message("t", b"x", 2, client_id=session.client_id)
    session.deliver(own, (pack_options(2, no_local=True), pack_options(1, identifier=7)), False)
    # Only the subscription without No Local applies: its QoS and its identifier.
    assert [(q, ids) for (_, _, q, *_), ids in zip(conn.sent, conn.identifiers, strict=True)] == [
        (1, (7,))
    ]


def test_retain_as_published_keeps_the_retain_flag_only_when_asked() -> None:
    session, _, conn = make()
    retained = Message("t", b"x", 0, True)
    session.deliver(retained, pack_options(0, retain_as_published=True), False)
    session.deliver(retained, pack_options(0, identifier=3), False)
    session.deliver(Message("t", b"y", 0, False), pack_options(0, retain_as_published=True), False)
    assert [sent[4] for sent in conn.sent] == [True, False, False]


def test_overlapping_subscriptions_carry_every_identifier_at_the_highest_qos() -> None:
    session, _, conn = make()
    options = (pack_options(0, identifier=1), pack_options(2, identifier=2), pack_options(1))
    session.deliver(Message("t", b"x", 2), options, False)
    assert conn.sent[0][2] == 2
    assert conn.identifiers == [(1, 2)]
    # The identifiers stay with the in-flight entry so a retransmission carries them too.
    session.resume()
    assert conn.identifiers[-1] == (1, 2)


def test_receive_maximum_narrows_the_window() -> None:
    session, _, conn = make(max_inflight=10)
    session.receive_maximum = 2
    for i in range(4):
        session.deliver(m(f"t{i}", 1), 1, False)
    assert len(session.inflight) == 2
    assert len(session.queue) == 2


def test_expired_queued_message_is_dropped_and_counted() -> None:
    session, stats, conn = make(max_inflight=1)
    session.deliver(m("first", 1), 1, False)  # fills the window
    session.deliver(Message("stale", b"x", 1, expires_at=time.time() - 1), 1, False)
    session.deliver(Message("fresh", b"x", 1, expires_at=time.time() + 60), 1, False)
    [pid] = session.inflight
    session.on_puback(pid)
    assert [sent[1] for sent in conn.sent] == ["first", "fresh"]
    assert stats.messages_expired == 1
