"""Snapshots: retained messages and persistent sessions survive a restart with the same data_dir."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.auth import ConnectionInfo, Identity
from broker.codec import ConnAck, Connect, PubAck
from broker.snapshot import SnapshotError
from tests.broker.rawclient import ClientPool, StartBroker, client_pool, wait_for, wait_offline
from tests.harness import RunningBroker

SNAPSHOT = "broker-snapshot.json"


@pytest.fixture
def clients(start_broker: StartBroker) -> Iterator[ClientPool]:
    with client_pool() as pool:
        yield pool


def publish(
    clients: ClientPool, broker: RunningBroker, name: str, *messages: tuple[str, bytes, int, bool]
) -> None:
    """Publish ``(topic, payload, qos, retain)`` tuples with a raw client, each acknowledged."""
    pub = clients.raw(broker.port)
    pub.connect(f"{name}-pub")
    for pid, (topic, payload, qos, retain) in enumerate(messages, start=1):
        pub.publish(topic, payload, qos=qos, packet_id=pid, retain=retain)
    pub.disconnect()


def test_retained_messages_survive_a_restart(
    start_broker: StartBroker, clients: ClientPool, name: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = start_broker(data_dir=data)
    publish(
        clients,
        first,
        name,
        (f"{name}/kept", b"v1", 1, True),
        (f"{name}/kept", b"v2", 1, True),
        (f"{name}/cleared", b"x", 0, True),
        (f"{name}/cleared", b"", 0, True),
        (f"{name}/live", b"not retained", 1, False),
    )
    first.stop()
    assert (data / SNAPSHOT).exists()

    second = start_broker(data_dir=data)
    sub = clients.raw(second.port)
    sub.connect(f"{name}-sub")
    assert sub.subscribe((f"{name}/#", 2)) == [2]
    got = sub.recv_publish()
    assert (got.topic, got.payload, got.qos, got.retain) == (f"{name}/kept", b"v2", 1, True)
    sub.expect_nothing(0.2)


def test_persistent_session_subscriptions_and_queue_survive_a_restart(
    start_broker: StartBroker, clients: ClientPool, name: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    cid = f"{name}-dev"
    first = start_broker(data_dir=data)
    dev = clients.raw(first.port)
    dev.connect(cid, clean=False)
    dev.subscribe((f"{name}/cmd", 1))
    # One message delivered but not acknowledged (in flight), then two queued while offline.
    publish(clients, first, name, (f"{name}/cmd", b"inflight", 1, False))
    sent = dev.recv_publish()
    dev.close()
    wait_offline(first, cid)
    publish(
        clients,
        first,
        name,
        (f"{name}/cmd", b"queued-1", 1, False),
        (f"{name}/cmd", b"queued-2", 2, False),
        (f"{name}/cmd", b"qos0-dropped", 0, False),
    )
    first.stop()

    second = start_broker(data_dir=data)
    back = clients.raw(second.port)
    assert back.connect(cid, clean=False) == ConnAck(True, 0)
    resent = back.recv_publish()
    assert (resent.payload, resent.dup, resent.packet_id) == (b"inflight", True, sent.packet_id)
    queued = [back.recv_publish(), back.recv_publish()]
    assert [(m.payload, m.qos, m.dup) for m in queued] == [
        (b"queued-1", 1, False),
        (b"queued-2", 1, False),  # granted QoS 1 caps the QoS 2 message
    ]
    assert len({resent.packet_id, *(m.packet_id for m in queued)}) == 3
    for m in (resent, *queued):
        back.send(PubAck(m.packet_id or 0))
    back.expect_nothing(0.2)
    # The subscription itself was restored.
    publish(clients, second, f"{name}-2", (f"{name}/cmd", b"after restart", 1, False))
    assert back.recv_publish().payload == b"after restart"


def test_session_online_at_shutdown_is_restored(
    start_broker: StartBroker, clients: ClientPool, name: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    cid = f"{name}-dev"
    first = start_broker(data_dir=data)
    dev = clients.raw(first.port)
    dev.connect(cid, clean=False)
    dev.subscribe((f"{name}/cmd", 1))
    first.stop()  # closes the connection, then writes the final snapshot
    dev.expect_closed()
    second = start_broker(data_dir=data)
    publish(clients, second, name, (f"{name}/cmd", b"for the restored session", 1, False))
    back = clients.raw(second.port)
    assert back.connect(cid, clean=False) == ConnAck(True, 0)
    assert back.recv_publish().payload == b"for the restored session"


class OwnerOnly:
    """Hooks letting only principal "owner" receive: receive checks depend on the identity."""

    checks_receive = True

    def authenticate(self, info: ConnectionInfo, connect: Connect) -> Identity:
        return Identity(connect.client_id, principal=connect.username)

    def may_publish(self, identity: Identity, topic: str, retain: bool) -> bool:
        return True

    def may_subscribe(self, identity: Identity, topic_filter: str) -> bool:
        return True

    def may_receive(self, identity: Identity, topic: str) -> bool:
        return identity.principal == "owner"


def test_restored_session_keeps_its_identity_for_receive_checks(
    start_broker: StartBroker, clients: ClientPool, name: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    cid = f"{name}-dev"
    first = start_broker(data_dir=data, hooks=OwnerOnly())
    dev = clients.raw(first.port)
    dev.connect(cid, clean=False, username="owner")
    dev.subscribe((f"{name}/cmd", 1))
    dev.disconnect()
    wait_offline(first, cid)
    first.stop()

    second = start_broker(data_dir=data, hooks=OwnerOnly())
    publish(clients, second, name, (f"{name}/cmd", b"queued after restart", 1, False))
    back = clients.raw(second.port)
    assert back.connect(cid, clean=False, username="owner") == ConnAck(True, 0)
    assert back.recv_publish(timeout=1.0).payload == b"queued after restart"
    assert second.stats()["messages_dropped_not_authorized"] == 0


def test_clean_sessions_are_not_restored(
    start_broker: StartBroker, clients: ClientPool, name: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = start_broker(data_dir=data)
    dev = clients.raw(first.port)
    dev.connect(f"{name}-dev", clean=True)
    dev.subscribe((f"{name}/cmd", 1))
    first.stop()
    doc = json.loads((data / SNAPSHOT).read_text())
    assert doc["sessions"] == []
    second = start_broker(data_dir=data)
    again = clients.raw(second.port)
    assert again.connect(f"{name}-dev", clean=False) == ConnAck(False, 0)


def test_persistence_off_writes_and_restores_nothing(
    start_broker: StartBroker, clients: ClientPool, name: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    first = start_broker(data_dir=data, persistence=False, snapshot_interval=0.05)
    dev = clients.raw(first.port)
    dev.connect(f"{name}-dev", clean=False)
    dev.subscribe((f"{name}/cmd", 1))
    publish(clients, first, name, (f"{name}/kept", b"v", 1, True))
    first.stop()
    assert list(data.iterdir()) == []

    # A snapshot lying there is ignored too when persistence is off.
    second = start_broker(data_dir=data)
    publish(clients, second, name, (f"{name}/kept", b"v", 1, True))
    second.stop()
    assert (data / SNAPSHOT).exists()
    third = start_broker(data_dir=data, persistence=False)
    sub = clients.raw(third.port)
    sub.connect(f"{name}-sub")
    sub.subscribe((f"{name}/#", 1))
    sub.expect_nothing(0.2)


def test_snapshot_file_name_is_a_setting(
    start_broker: StartBroker, clients: ClientPool, name: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = start_broker(data_dir=data, snapshot_file="elsewhere.json")
    publish(clients, first, name, (f"{name}/kept", b"v", 1, True))
    first.stop()
    assert sorted(p.name for p in data.iterdir()) == ["elsewhere.json"]
    second = start_broker(data_dir=data, snapshot_file="elsewhere.json")
    sub = clients.raw(second.port)
    sub.connect(f"{name}-sub")
    sub.subscribe((f"{name}/kept", 1))
    assert sub.recv_publish().payload == b"v"


def test_periodic_snapshot_written_while_running(
    start_broker: StartBroker, clients: ClientPool, name: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    broker = start_broker(data_dir=data, snapshot_interval=0.2)
    publish(clients, broker, name, (f"{name}/kept", b"periodic", 1, True))
    path = data / SNAPSHOT

    def snapshot_has_it() -> bool:
        try:
            doc = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        return any(m["topic"] == f"{name}/kept" for m in doc["retained"])

    wait_for(snapshot_has_it, timeout=5.0, what="a periodic snapshot with the retained message")
    # Written atomically: no temporary file is left next to it.
    assert sorted(p.name for p in data.iterdir()) == [SNAPSHOT]


DAMAGED_JSON: dict[str, str | bytes] = {
    "not json": "this is not json",
    "not utf-8": b'{"format": "\xff\xfe"}',
    "truncated": '{"format": "thingcore-broker-snapshot", "version": 1, "sessions": [',
}
DAMAGED_CONTENT = {
    "foreign document": json.dumps({"hello": "world"}),
    "unknown version": json.dumps(
        {"format": "thingcore-broker-snapshot", "version": 99, "sessions": [], "retained": []}
    ),
    "session missing fields": json.dumps(
        {
            "format": "thingcore-broker-snapshot",
            "version": 1,
            "sessions": [{"client_id": "x"}],
            "retained": [],
        }
    ),
    "retained payload bad base64 padding": json.dumps(
        {
            "format": "thingcore-broker-snapshot",
            "version": 1,
            "sessions": [],
            "retained": [
                {"topic": "a", "payload": "abc", "qos": 0, "retain": True, "received_at": 0}
            ],
        }
    ),
}


def start_with_snapshot(
    start_broker: StartBroker, tmp_path: Path, text: str | bytes
) -> SnapshotError:
    data = tmp_path / "data"
    data.mkdir()
    (data / SNAPSHOT).write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(SnapshotError) as info:
        start_broker(data_dir=data)
    return info.value


@pytest.mark.parametrize("text", DAMAGED_JSON.values(), ids=DAMAGED_JSON.keys())
def test_damaged_snapshot_fails_start_naming_the_file(
    start_broker: StartBroker, tmp_path: Path, text: str | bytes
) -> None:
    error = start_with_snapshot(start_broker, tmp_path, text)
    assert str(tmp_path / "data" / SNAPSHOT) in str(error)
    assert "move it aside" in str(error)


@pytest.mark.parametrize("text", DAMAGED_CONTENT.values(), ids=DAMAGED_CONTENT.keys())
def test_snapshot_with_damaged_content_fails_start(
    start_broker: StartBroker, tmp_path: Path, text: str
) -> None:
    # The broker refuses to start rather than run with half a state, and says which file.
    error = start_with_snapshot(start_broker, tmp_path, text)
    assert str(tmp_path / "data" / SNAPSHOT) in str(error)
    assert "move it aside" in str(error)


def test_snapshot_payload_with_characters_outside_base64_fails_start(
    start_broker: StartBroker, tmp_path: Path
) -> None:
    doc = {
        "format": "thingcore-broker-snapshot",
        "version": 1,
        "sessions": [],
        # "aGVsbG8=" is b"hello"; one damaged character must not load as b"hello" or b"".
        "retained": [
            {"topic": "a", "payload": "aGV$sbG8=", "qos": 0, "retain": True, "received_at": 0}
        ],
    }
    start_with_snapshot(start_broker, tmp_path, json.dumps(doc))
