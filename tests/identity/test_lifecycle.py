"""Lifecycle events (reference 5.1) as a device with the right policy receives them.

The default anonymous policy keeps plain-listener tools away from ``$aws/...``, so the watcher
is a TLS device whose policy allows ``iot:Subscribe`` on ``topicfilter/$aws/events/*`` and
``iot:Receive`` on ``topic/$aws/events/*``. It watches another device go through a whole life:
connect, subscribe, unsubscribe, disconnect, reconnect, be taken over, lose its connection and
time out, and checks AWS's fields on every event and that they arrive in order.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from broker.codec import Disconnect
from tests.broker.raw5 import Pool5
from tests.harness import PahoClient
from tests.identity.apphost import (
    ARN,
    THING,
    WAIT,
    Clients,
    RunningApp,
    TlsRaw,
    TlsRaw5,
    provision,
)

WATCHER_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/{THING}"},
            {
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": f"{ARN}:topicfilter/$aws/events/*",
            },
            {"Effect": "Allow", "Action": "iot:Receive", "Resource": f"{ARN}:topic/$aws/events/*"},
        ],
    }
)


def watcher(app: RunningApp, pool: Pool5, name: str, topic_filter: str) -> PahoClient:
    device = provision(app, f"{name}-watcher", policy=WATCHER_POLICY)
    client = pool.paho(app.tls_port, device.name, tls=device.paho_tls(), host="localhost")
    assert client.connect() == (False, 0)
    assert client.subscribe(topic_filter, 1) == [1]
    return client


def events(client: PahoClient, count: int) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for _ in range(count):
        message = client.messages.get(timeout=WAIT)
        out.append((message.topic, json.loads(message.payload)))
    return out


def test_presence_and_subscription_events_follow_a_device_through_its_life(
    app: RunningApp, pool: Pool5, clients: Clients, name: str
) -> None:
    watch = watcher(app, pool, name, f"$aws/events/+/+/{name}")
    device = provision(app, name)
    start_ms = int(time.time() * 1000)

    # 1. Connect (MQTT 5), subscribe (one filter refused by the policy), unsubscribe, leave.
    first = clients.raw(5, app.tls_port, device.context())
    assert isinstance(first, TlsRaw5)
    assert first.connect(name).return_code == 0
    codes = first.subscribe5(
        (f"things/{name}/a", 1), (f"things/someone-else/{name}", 1), (f"things/{name}/b", 0)
    )
    assert codes == [1, 0x87, 0]
    assert first.unsubscribe5(f"things/{name}/a", packet_id=2) == [0]
    first.disconnect5()
    # 2. Reconnect (3.1.1); 3. another connection takes the client id over.
    second = clients.raw(3, app.tls_port, device.context())
    assert second.connect(name).return_code == 0
    third = clients.raw(3, app.tls_port, device.context())
    assert third.connect(name).return_code == 0
    second.expect_closed()
    # 4. The connection is lost (TCP reset, no DISCONNECT).
    assert isinstance(third, TlsRaw)
    third.ping()
    third.abort()
    # 5. A client that stops sending within 1.5 x its keep-alive is dropped.
    fourth = clients.raw(3, app.tls_port, device.context())
    assert fourth.connect(name, keep_alive=1).return_code == 0
    fourth.expect_closed(timeout=WAIT)
    end_ms = int(time.time() * 1000)

    got = events(watch, 10)
    kinds = [event["eventType"] for _, event in got]
    assert kinds == [
        "connected",
        "subscribed",
        "unsubscribed",
        "disconnected",
        "connected",
        "disconnected",  # taken over: the old connection's end comes first
        "connected",
        "disconnected",
        "connected",
        "disconnected",
    ]
    for topic, event in got:
        kind = event["eventType"]
        family = "presence" if kind in ("connected", "disconnected") else "subscriptions"
        assert topic == f"$aws/events/{family}/{kind}/{name}"
        assert event["clientId"] == name
        assert event["principalIdentifier"] == device.cert_id
        assert isinstance(event["timestamp"], int)
        assert start_ms - 1000 <= event["timestamp"] <= end_ms + 1000, "not epoch milliseconds"
    stamps = [event["timestamp"] for _, event in got]
    assert stamps == sorted(stamps)

    connects = [event for _, event in got if event["eventType"] == "connected"]
    disconnects = [event for _, event in got if event["eventType"] == "disconnected"]
    for connect, disconnect in zip(connects, disconnects, strict=True):
        assert connect["ipAddress"] == "127.0.0.1"
        assert "ipAddress" not in disconnect
        assert disconnect["sessionIdentifier"] == connect["sessionIdentifier"]
        assert disconnect["versionNumber"] == connect["versionNumber"]
    versions = [event["versionNumber"] for event in connects]
    assert versions == sorted(set(versions)), f"versionNumber not increasing: {versions}"
    assert len({event["sessionIdentifier"] for event in connects}) == 4
    assert [(d["disconnectReason"], d["clientInitiatedDisconnect"]) for d in disconnects] == [
        ("CLIENT_INITIATED_DISCONNECT", True),
        ("DUPLICATE_CLIENTID", False),
        ("CONNECTION_LOST", False),
        ("MQTT_KEEP_ALIVE_TIMEOUT", False),
    ]

    subscribed, unsubscribed = got[1][1], got[2][1]
    # Only what was granted is reported as subscribed.
    assert subscribed["topics"] == [f"things/{name}/a", f"things/{name}/b"]
    assert unsubscribed["topics"] == [f"things/{name}/a"]
    for event in (subscribed, unsubscribed):
        assert event["sessionIdentifier"] == connects[0]["sessionIdentifier"]
    watch.expect_nothing(within=0.1)


def test_mqtt5_takeover_disconnect_is_reported_once(
    app: RunningApp, pool: Pool5, clients: Clients, name: str
) -> None:
    """The old MQTT 5 connection is told 0x8E; the watcher sees one disconnect, then connect."""
    watch = watcher(app, pool, name, f"$aws/events/presence/+/{name}")
    device = provision(app, name)
    old = clients.raw(5, app.tls_port, device.context())
    assert isinstance(old, TlsRaw5)
    assert old.connect(name).return_code == 0
    new = clients.raw(5, app.tls_port, device.context())
    assert new.connect(name).return_code == 0
    assert old.recv(Disconnect).reason_code == 0x8E
    got = events(watch, 3)
    assert [(e["eventType"], e.get("disconnectReason")) for _, e in got] == [
        ("connected", None),
        ("disconnected", "DUPLICATE_CLIENTID"),
        ("connected", None),
    ]
    watch.expect_nothing(within=0.1)


def test_revoked_device_disconnect_is_reported_as_auth_error(
    app: RunningApp, pool: Pool5, clients: Clients, name: str
) -> None:
    watch = watcher(app, pool, name, f"$aws/events/presence/+/{name}")
    device = provision(app, name)
    client = clients.raw(5, app.tls_port, device.context())
    assert isinstance(client, TlsRaw5)
    assert client.connect(name).return_code == 0
    app.registry.certs.update_status(device.cert_id, "REVOKED")
    client.expect_disconnect(0x98)
    client.close()  # what a device does when the server hangs up
    got = events(watch, 2)
    assert [e["eventType"] for _, e in got] == ["connected", "disconnected"]
    assert got[1][1]["disconnectReason"] == "AUTH_ERROR"
    assert got[1][1]["clientInitiatedDisconnect"] is False


@pytest.mark.parametrize("protocol", [pytest.param(3, id="v311"), pytest.param(5, id="v5")])
def test_revoked_device_that_never_reads_is_gone_within_a_second(
    app: RunningApp, pool: Pool5, clients: Clients, name: str, protocol: int
) -> None:
    """A device that is hung (or malicious) does not read: the server must not wait for it."""
    watch = watcher(app, pool, name, f"$aws/events/presence/+/{name}")
    device = provision(app, name)
    client = clients.raw(protocol, app.tls_port, device.context())
    assert client.connect(name).return_code == 0
    [(_, connected)] = events(watch, 1)
    assert connected["eventType"] == "connected"
    app.registry.certs.update_status(device.cert_id, "REVOKED")
    message = watch.messages.get(timeout=2.0)
    assert json.loads(message.payload)["disconnectReason"] == "AUTH_ERROR"
    assert not app.online(name)


@pytest.mark.parametrize("wildcard", ["+", "#"])
def test_client_id_with_a_wildcard_gets_no_events(
    app: RunningApp, pool: Pool5, clients: Clients, name: str, wildcard: str
) -> None:
    watch = watcher(app, pool, name, "$aws/events/presence/connected/#")
    odd = clients.plain(app.port)
    assert odd.connect(f"{name}{wildcard}odd").return_code == 0
    even = clients.plain(app.port)
    assert even.connect(f"{name}-even").return_code == 0
    # Events are published in order, so the first one shows the odd client got none.
    [(topic, event)] = events(watch, 1)
    assert event["clientId"] == f"{name}-even"
    assert event["principalIdentifier"] == "anonymous"
