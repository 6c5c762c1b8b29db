"""amqtt's asyncio client as a second, independent MQTT implementation talking to paho.

The broker runs in its own thread (tests.harness); amqtt runs in the test's event loop, so every
blocking paho wait goes through ``asyncio.to_thread`` to keep amqtt's loop (its acks, its
reading) running meanwhile.

What amqtt 0.12.1's client cannot do, and how the tests work around it: it has no way to drop
its connection without DISCONNECT, so the will test aborts its transport (as a network failure
would); it does not report CONNACK's "session present" flag, so the persistent-session test
checks the queued messages instead; ``deliver_message`` raises ``TimeoutError`` rather than
returning None, and every call here gives it a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from amqtt.client import MQTTClient
from amqtt.session import ApplicationMessage

from tests.harness import PahoClient, Received, RunningBroker

WAIT = 5.0


@pytest.fixture
async def amqtt_clients() -> AsyncIterator[list[MQTTClient]]:
    """amqtt clients a test registers here are disconnected at teardown if still connected."""
    made: list[MQTTClient] = []
    yield made
    for client in made:
        if client.session is not None and client.session.transitions.is_connected():
            await client.disconnect()


async def amqtt_connect(
    registry: list[MQTTClient],
    broker: RunningBroker,
    client_id: str,
    *,
    clean: bool = True,
    **config: Any,
) -> MQTTClient:
    # auto_reconnect off: a dropped connection must stay dropped, not be silently redone.
    client = MQTTClient(client_id, config={"auto_reconnect": False, **config})
    registry.append(client)
    assert await client.connect(f"mqtt://127.0.0.1:{broker.port}", cleansession=clean) == 0
    return client


async def paho_connected(make: Callable[..., PahoClient], *args: Any, **kw: Any) -> PahoClient:
    client = make(*args, **kw)
    assert await asyncio.to_thread(client.connect) == (False, 0)
    return client


async def paho_expect(client: PahoClient, count: int = 1) -> list[Received]:
    return await asyncio.to_thread(client.expect, count, WAIT)


async def amqtt_expect(client: MQTTClient) -> ApplicationMessage:
    message = await client.deliver_message(timeout_duration=WAIT)
    assert message is not None
    return message


@pytest.mark.parametrize("qos", [0, 1, 2])
async def test_amqtt_publishes_to_paho(
    broker: RunningBroker,
    paho: Callable[..., PahoClient],
    amqtt_clients: list[MQTTClient],
    name: str,
    qos: int,
) -> None:
    sub = await paho_connected(paho, broker.port, f"{name}-paho")
    assert await asyncio.to_thread(sub.subscribe, f"{name}/#", 2) == [2]
    pub = await amqtt_connect(amqtt_clients, broker, f"{name}-amqtt")
    await pub.publish(f"{name}/from-amqtt", b"payload-1", qos=qos)
    await pub.publish(f"{name}/from-amqtt", b"payload-2", qos=qos)
    got = await paho_expect(sub, 2)
    assert [(m.topic, m.payload, m.qos, m.retain) for m in got] == [
        (f"{name}/from-amqtt", b"payload-1", qos, False),
        (f"{name}/from-amqtt", b"payload-2", qos, False),
    ]


@pytest.mark.parametrize("qos", [0, 1, 2])
async def test_paho_publishes_to_amqtt(
    broker: RunningBroker,
    paho: Callable[..., PahoClient],
    amqtt_clients: list[MQTTClient],
    name: str,
    qos: int,
) -> None:
    sub = await amqtt_connect(amqtt_clients, broker, f"{name}-amqtt")
    assert await sub.subscribe([(f"{name}/#", qos)]) == [qos]
    pub = await paho_connected(paho, broker.port, f"{name}-paho")
    await asyncio.to_thread(pub.publish, f"{name}/from-paho", b"payload", qos)
    # A marker published next, at the same QoS, arrives next: nothing was delivered twice.
    await asyncio.to_thread(pub.publish, f"{name}/marker", b"", qos)
    first = await amqtt_expect(sub)
    assert (first.topic, bytes(first.data), first.qos, first.retain) == (
        f"{name}/from-paho",
        b"payload",
        qos,
        False,
    )
    second = await amqtt_expect(sub)
    assert second.topic == f"{name}/marker"


async def test_retained_message_delivered_to_amqtt_on_subscribe(
    broker: RunningBroker,
    paho: Callable[..., PahoClient],
    amqtt_clients: list[MQTTClient],
    name: str,
) -> None:
    pub = await paho_connected(paho, broker.port, f"{name}-paho")
    await asyncio.to_thread(pub.publish, f"{name}/state", b"on", 1, True)
    sub = await amqtt_connect(amqtt_clients, broker, f"{name}-amqtt")
    assert await sub.subscribe([(f"{name}/+", 1)]) == [1]
    retained = await amqtt_expect(sub)
    assert (retained.topic, bytes(retained.data), retained.qos, retained.retain) == (
        f"{name}/state",
        b"on",
        1,
        True,
    )
    # A message routed to an existing subscription is not marked retained [3.3.1-9].
    await asyncio.to_thread(pub.publish, f"{name}/state", b"off", 1, True)
    live = await amqtt_expect(sub)
    assert (live.topic, bytes(live.data), live.retain) == (f"{name}/state", b"off", False)


async def test_amqtt_will_published_when_its_connection_drops(
    broker: RunningBroker,
    paho: Callable[..., PahoClient],
    amqtt_clients: list[MQTTClient],
    name: str,
) -> None:
    watcher = await paho_connected(paho, broker.port, f"{name}-watcher")
    assert await asyncio.to_thread(watcher.subscribe, f"{name}/status", 1) == [1]
    will = {"topic": f"{name}/status", "message": "offline", "qos": 1, "retain": False}
    device = await amqtt_connect(amqtt_clients, broker, f"{name}-amqtt", will=will)
    # No DISCONNECT: the transport goes away as on a network failure.
    device._handler.writer._writer.transport.abort()
    [got] = await paho_expect(watcher)
    assert (got.topic, got.payload, got.qos, got.retain) == (
        f"{name}/status",
        b"offline",
        1,
        False,
    )
    assert broker.stats()["wills_published"] == 1


async def test_amqtt_will_not_published_after_disconnect(
    broker: RunningBroker,
    paho: Callable[..., PahoClient],
    amqtt_clients: list[MQTTClient],
    name: str,
) -> None:
    watcher = await paho_connected(paho, broker.port, f"{name}-watcher")
    assert await asyncio.to_thread(watcher.subscribe, f"{name}/status", 1) == [1]
    will = {"topic": f"{name}/status", "qos": 1, "retain": False}
    polite = await amqtt_connect(
        amqtt_clients, broker, f"{name}-polite", will={**will, "message": "polite"}
    )
    await polite.disconnect()
    # A second client connects after the first one's DISCONNECT was sent, then drops. Its will
    # is the first message the watcher gets: the graceful disconnect published nothing.
    dropped = await amqtt_connect(
        amqtt_clients, broker, f"{name}-dropped", will={**will, "message": "dropped"}
    )
    dropped._handler.writer._writer.transport.abort()
    [got] = await paho_expect(watcher)
    assert got.payload == b"dropped"
    assert broker.stats()["wills_published"] == 1


async def test_amqtt_persistent_session_receives_messages_queued_while_offline(
    broker: RunningBroker,
    paho: Callable[..., PahoClient],
    amqtt_clients: list[MQTTClient],
    name: str,
) -> None:
    client_id = f"{name}-amqtt"
    first = await amqtt_connect(amqtt_clients, broker, client_id, clean=False)
    assert await first.subscribe([(f"{name}/queued", 1)]) == [1]
    await first.disconnect()

    pub = await paho_connected(paho, broker.port, f"{name}-paho")
    for i in range(3):
        await asyncio.to_thread(pub.publish, f"{name}/queued", f"m{i}".encode(), 1)

    again = await amqtt_connect(amqtt_clients, broker, client_id, clean=False)
    got = [await amqtt_expect(again) for _ in range(3)]
    assert [(m.topic, bytes(m.data), m.qos) for m in got] == [
        (f"{name}/queued", b"m0", 1),
        (f"{name}/queued", b"m1", 1),
        (f"{name}/queued", b"m2", 1),
    ]
    # The session kept the subscription too: a message published now is delivered live.
    await asyncio.to_thread(pub.publish, f"{name}/queued", b"live", 1)
    live = await amqtt_expect(again)
    assert bytes(live.data) == b"live"
