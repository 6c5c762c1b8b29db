"""Lifecycle events (reference 5.1) from the bare broker: shapes, reasons, numbering, order.

The identity tests (tests/identity/) check the same events through mutual TLS with certificate
principals; here the broker runs with its default hooks, so principals are "anonymous".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import StartBroker
from tests.harness import PahoClient, RunningBroker

Paho = Callable[..., PahoClient]


@pytest.fixture
def events_broker(start_broker: StartBroker) -> RunningBroker:
    return start_broker(lifecycle_events=True)


def watcher(paho: Paho, broker: RunningBroker, name: str) -> PahoClient:
    watch = paho(broker.port, f"{name}-watch")
    watch.connect()
    watch.subscribe("$aws/events/presence/+/+", 1)
    watch.subscribe("$aws/events/subscriptions/+/+", 1)
    return watch


def events_for(watch: PahoClient, client_id: str, count: int) -> list[dict[str, Any]]:
    """The next ``count`` events about ``client_id`` (others, e.g. the watcher's, skipped)."""
    found: list[dict[str, Any]] = []
    while len(found) < count:
        got = watch.expect(timeout=5)[0]
        if got.topic.endswith("/" + client_id):
            event = json.loads(got.payload)
            assert got.topic.split("/")[-2] == event["eventType"]
            found.append(event)
    return found


def test_connect_subscribe_unsubscribe_disconnect_in_order_with_aws_fields(
    events_broker: RunningBroker, paho: Paho, name: str
) -> None:
    watch = watcher(paho, events_broker, name)
    device = paho(events_broker.port, f"{name}-dev")
    device.connect()
    device.subscribe(f"{name}/a", 1)
    device.unsubscribe(f"{name}/a")
    device.disconnect()
    connected, subscribed, unsubscribed, disconnected = events_for(watch, f"{name}-dev", 4)
    assert [connected["eventType"], subscribed["eventType"]] == ["connected", "subscribed"]
    assert [unsubscribed["eventType"], disconnected["eventType"]] == [
        "unsubscribed",
        "disconnected",
    ]
    assert set(connected) == {
        "clientId",
        "timestamp",
        "eventType",
        "sessionIdentifier",
        "principalIdentifier",
        "ipAddress",
        "versionNumber",
    }
    assert connected["clientId"] == f"{name}-dev"
    assert connected["ipAddress"] == "127.0.0.1"
    assert connected["principalIdentifier"] == "anonymous"
    # Milliseconds since the epoch (AWS), not seconds.
    assert connected["timestamp"] > 1_600_000_000_000
    assert subscribed["topics"] == [f"{name}/a"]
    assert unsubscribed["topics"] == [f"{name}/a"]
    assert disconnected["sessionIdentifier"] == connected["sessionIdentifier"]
    assert disconnected["versionNumber"] == connected["versionNumber"]
    assert disconnected["clientInitiatedDisconnect"] is True
    assert disconnected["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"
    assert "ipAddress" not in disconnected


def test_version_number_grows_per_connection_and_session_identifier_changes(
    events_broker: RunningBroker, paho: Paho, name: str
) -> None:
    watch = watcher(paho, events_broker, name)
    seen = []
    for _ in range(3):
        device = paho(events_broker.port, f"{name}-dev")
        device.connect()
        device.disconnect()
        seen.extend(events_for(watch, f"{name}-dev", 2))
    versions = [e["versionNumber"] for e in seen]
    assert versions == [0, 0, 1, 1, 2, 2]
    sessions = [e["sessionIdentifier"] for e in seen]
    assert sessions[0] == sessions[1] != sessions[2] == sessions[3] != sessions[4]


@pytest.mark.parametrize(
    ("how", "reason", "client_initiated"),
    [
        ("drop", "CONNECTION_LOST", False),
        ("takeover", "DUPLICATE_CLIENTID", False),
        ("keepalive", "MQTT_KEEP_ALIVE_TIMEOUT", False),
    ],
)
def test_disconnect_reasons(
    events_broker: RunningBroker,
    paho: Paho,
    name: str,
    how: str,
    reason: str,
    client_initiated: bool,
) -> None:
    watch = watcher(paho, events_broker, name)
    device = paho(events_broker.port, f"{name}-dev", keepalive=1)
    device.connect()
    if how == "drop":
        device.drop()
    elif how == "takeover":
        paho(events_broker.port, f"{name}-dev").connect()
    else:
        # Stop paho's loop so no PINGREQ goes out; the broker drops it after 1.5 s.
        device.client.loop_stop()
    connected, disconnected = events_for(watch, f"{name}-dev", 2)
    assert disconnected["disconnectReason"] == reason
    assert disconnected["clientInitiatedDisconnect"] is client_initiated
    assert disconnected["versionNumber"] == connected["versionNumber"]
    if how == "takeover":
        # The new connection's event follows the old one's disconnect, numbered after it.
        (again,) = events_for(watch, f"{name}-dev", 1)
        assert again["eventType"] == "connected"
        assert again["versionNumber"] == connected["versionNumber"] + 1


def test_wildcard_client_ids_get_no_events(
    events_broker: RunningBroker, paho: Paho, name: str
) -> None:
    watch = watcher(paho, events_broker, name)
    odd = paho(events_broker.port, f"{name}-odd+id")
    odd.connect()
    odd.disconnect()
    plain = paho(events_broker.port, f"{name}-plain")
    plain.connect()
    # The next event not about the watcher itself is the plain client's: none was published
    # for the wildcard id.
    got = watch.expect(timeout=5)[0]
    while got.topic.endswith(f"/{name}-watch"):
        got = watch.expect(timeout=5)[0]
    assert got.topic == f"$aws/events/presence/connected/{name}-plain"


def test_switched_off_publishes_nothing(start_broker: StartBroker, paho: Paho, name: str) -> None:
    broker = start_broker(lifecycle_events=False)
    watch = watcher(paho, broker, name)
    device = paho(broker.port, f"{name}-dev")
    device.connect()
    device.disconnect()
    watch.expect_nothing(0.3)
    assert broker.stats()["lifecycle_events"] == 0


def test_the_numbering_table_stays_bounded_under_unique_client_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from broker import lifecycle
    from broker.config import BrokerSettings
    from broker.server import Broker

    monkeypatch.setattr(lifecycle, "MAX_TRACKED_CLIENTS", 100)
    events = Broker(BrokerSettings(port=None, tls_port=None)).lifecycle
    for n in range(1000):
        events.connected(f"auto-{n}", None, "127.0.0.1")
        events.disconnected(f"auto-{n}", None, "CLIENT_INITIATED_DISCONNECT")
    events.connected("kept", None, None)
    for n in range(1000, 1200):
        events.connected(f"auto-{n}", None, "127.0.0.1")
        events.disconnected(f"auto-{n}", None, "CLIENT_INITIATED_DISCONNECT")
    assert len(events._clients) <= 100
    # A connected client is never forgotten: its disconnect still pairs with its connect.
    assert events._clients["kept"].connected
