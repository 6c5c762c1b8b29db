"""Test harness: a real broker on port 0 in its own event-loop thread, and a paho-mqtt client
wrapper whose waits are bounded (no sleeps to wait for delivery).

The broker runs on uvloop in a background thread so that synchronous clients (paho) and
asyncio clients (amqtt) in the test's own loop can both talk to it over real sockets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import queue
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
import uvloop
from paho.mqtt.enums import CallbackAPIVersion

from broker.auth import AuthHooks
from broker.config import BrokerSettings
from broker.server import Broker

T = TypeVar("T")

TEST_DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 0,
    "tls_port": None,
    "housekeeping_interval": 0.05,
    "connect_timeout": 2.0,
    "snapshot_interval": 0,
    "log_interval": 0,
    # Lifecycle events would reach tests' `$aws/#` and `#`-style subscriptions; the tests of
    # the events themselves switch them on.
    "lifecycle_events": False,
}


class RunningBroker:
    """A Broker serving in a background thread; stop() shuts it down cleanly."""

    def __init__(
        self, settings: BrokerSettings, data_dir: Path | None, hooks: AuthHooks | None = None
    ) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.broker = Broker(settings, data_dir=data_dir, hooks=hooks)
        self.loop = uvloop.new_event_loop()
        self._started: Future[None] = Future()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="test-broker", daemon=True)
        self._thread.start()
        self._started.result(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.broker.start())
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            self._started.set_exception(exc)
            return
        self._started.set_result(None)
        self.loop.run_forever()
        self.loop.close()

    @property
    def port(self) -> int:
        return self.broker.ports["mqtt"]

    @property
    def tls_port(self) -> int:
        return self.broker.ports["mqtts"]

    def call(self, fn: Callable[[], T], timeout: float = 5.0) -> T:
        """Run ``fn`` on the broker's loop (where its state lives) and return its result."""
        done: Future[T] = Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - reported to the test thread
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return done.result(timeout)

    def stats(self) -> dict[str, int]:
        return self.call(self.broker.stats.as_dict)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        fut = asyncio.run_coroutine_threadsafe(self.broker.stop(), self.loop)
        fut.result(timeout=15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


def make_settings(**overrides: Any) -> BrokerSettings:
    return dataclasses.replace(BrokerSettings(), **{**TEST_DEFAULTS, **overrides})


@dataclasses.dataclass
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int


class PahoClient:
    """paho-mqtt (MQTT 3.1.1) with bounded waits for CONNACK, SUBACK, acks and messages."""

    def __init__(
        self,
        port: int,
        client_id: str,
        *,
        clean_session: bool = True,
        keepalive: int = 60,
        host: str = "127.0.0.1",
        protocol: int = mqtt.MQTTv311,
        tls: dict[str, Any] | None = None,
        will: tuple[str, bytes, int, bool] | None = None,
        auto_ack: bool = True,
    ) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=protocol,
        )
        self.client.manual_ack_set(not auto_ack)
        self.messages: queue.Queue[Received] = queue.Queue()
        self.connack: queue.Queue[tuple[bool, int]] = queue.Queue()
        self.disconnected = threading.Event()
        self.subacks: queue.Queue[list[int]] = queue.Queue()
        self.host, self.port, self.keepalive = host, port, keepalive
        if tls is not None:
            self.client.tls_set(**tls)
        if will is not None:
            self.client.will_set(will[0], will[1], will[2], will[3])
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connack.put((bool(flags.session_present), int(rc.value)))

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.put(
            Received(msg.topic, msg.payload, msg.qos, bool(msg.retain), bool(msg.dup), msg.mid)
        )

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        self.subacks.put([int(c.value) for c in codes])

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.disconnected.set()

    def connect(self, timeout: float = 5.0) -> tuple[bool, int]:
        """Connect and wait for CONNACK; returns (session_present, return code)."""
        self.client.connect(self.host, self.port, self.keepalive)
        self.client.loop_start()
        return self.connack.get(timeout=timeout)

    def subscribe(self, topic: str, qos: int = 0, timeout: float = 5.0) -> list[int]:
        self.client.subscribe(topic, qos)
        return self.subacks.get(timeout=timeout)

    def unsubscribe(self, topic: str, timeout: float = 5.0) -> None:
        done = threading.Event()
        self.client.on_unsubscribe = lambda *a: done.set()  # set before sending: no race
        self.client.unsubscribe(topic)
        if not done.wait(timeout):
            raise TimeoutError(f"no UNSUBACK for {topic} within {timeout}s")

    def publish(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False, timeout: float = 5.0
    ) -> None:
        info = self.client.publish(topic, payload, qos, retain)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise TimeoutError(f"publish to {topic} not acknowledged within {timeout}s")

    def expect(self, count: int = 1, timeout: float = 5.0) -> list[Received]:
        return [self.messages.get(timeout=timeout) for _ in range(count)]

    def expect_nothing(self, within: float = 0.3) -> None:
        try:
            got = self.messages.get(timeout=within)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message {got}")

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self) -> None:
        """End the connection without DISCONNECT (as a network failure would)."""
        sock = self.client.socket()
        if sock is not None:
            # Shut down first so paho's loop thread wakes at once instead of at its timeout.
            sock.shutdown(socket.SHUT_RDWR)
        self.client.loop_stop()
        if sock is not None:
            sock.close()
