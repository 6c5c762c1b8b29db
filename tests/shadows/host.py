"""Shadow test helpers: devices allowed to use their own shadows, and a paho client that
collects what the shadow service answers."""

from __future__ import annotations

import json
import queue
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt

from shadows.batch import Kind, Op
from shadows.config import ShadowSettings
from shadows.document import parse_update
from shadows.names import ShadowKey
from shadows.store import ShadowStore
from tests.identity.apphost import THING, WAIT, Device, RunningApp, own_topics_policy, provision


def shadow_policy(thing: str = THING) -> str:
    """AWS's usual shadow policy: connect as your own thing, use ``thing``'s shadow topics
    (by default your own thing's only)."""
    return own_topics_policy(topics=f"$aws/things/{thing}/shadow/*")


def shadow_device(app: RunningApp, name: str) -> Device:
    return provision(app, name, policy=shadow_policy())


def operator_update(app: RunningApp, thing: str, state: dict[str, Any]) -> None:
    """Change a shadow outside MQTT, as ``thingcore shadows update`` does, and wait until the
    server has published the result from the change feed."""
    store = ShadowStore(app.registry.db, ShadowSettings())
    request = parse_update(json.dumps({"state": state}).encode(), store.limits)
    op = Op(Kind.UPDATE, ShadowKey.of(thing), request, options=store.options_for(thing))
    [result] = store.run([op], outbox=True)
    assert result.error is None, result.error
    app.synced()


class ShadowClient:
    """A paho MQTT client over mTLS that records every message it receives."""

    def __init__(self, app: RunningApp, device: Device, *, protocol: int = mqtt.MQTTv311) -> None:
        self.device = device
        self.prefix = f"$aws/things/{device.name}/shadow"
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.seen: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=device.name, protocol=protocol
        )
        self.client.tls_set_context(device.context())
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload))
        self.client.connect("localhost", app.tls_port)
        self.client.loop_start()
        deadline = time.monotonic() + WAIT
        while not self.client.is_connected():
            if time.monotonic() > deadline:
                raise AssertionError(f"{device.name} did not connect")
            time.sleep(0.01)

    def subscribe(self, *filters: str) -> None:
        for topic_filter in filters:
            done = self.client.subscribe(topic_filter, qos=1)
            assert done[0] == mqtt.MQTT_ERR_SUCCESS
        self._barrier()

    def _barrier(self) -> None:
        """A round trip through the broker and the shadow service: every SUBSCRIBE sent
        before it has been applied once its answer arrives."""
        probe = f"{self.prefix}/name/barrier-{uuid.uuid4().hex[:8]}/get"
        self.client.subscribe(probe + "/rejected", qos=1)
        self.client.publish(probe, b"", qos=1)
        self.expect(probe + "/rejected")

    def publish(self, topic: str, payload: bytes | str | dict[str, Any], qos: int = 1) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(WAIT)

    def expect(self, topic: str, timeout: float = WAIT) -> dict[str, Any]:
        """The next message on ``topic`` (others are kept in ``seen``), parsed."""
        for index, (seen_topic, payload) in enumerate(self.seen):
            if seen_topic == topic:
                del self.seen[index]
                return dict(json.loads(payload))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"nothing on {topic}; other messages: {self.seen}")
            try:
                seen_topic, payload = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            if seen_topic == topic:
                return dict(json.loads(payload))
            self.seen.append((seen_topic, payload))

    def nothing_on(self, topic: str, wait: float = 0.3) -> None:
        """Assert no message arrives on ``topic`` within ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                seen_topic, payload = self.messages.get(timeout=deadline - time.monotonic())
            except queue.Empty:
                break
            self.seen.append((seen_topic, payload))
        assert all(t != topic for t, _ in self.seen), f"unexpected message on {topic}"

    def request(
        self, op: str, payload: dict[str, Any] | bytes | None = None, *, name: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Publish a request and wait for its accepted or rejected answer."""
        prefix = self.prefix if name is None else f"{self.prefix}/name/{name}"
        body = b"" if payload is None else payload
        self.publish(f"{prefix}/{op}", body)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            for outcome in ("accepted", "rejected"):
                topic = f"{prefix}/{op}/{outcome}"
                if any(t == topic for t, _ in self.seen):
                    return outcome, self.expect(topic)
            try:
                seen_topic, data = self.messages.get(timeout=0.05)
            except queue.Empty:
                continue
            self.seen.append((seen_topic, data))
        raise AssertionError(f"no answer to {prefix}/{op}; seen: {self.seen}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
