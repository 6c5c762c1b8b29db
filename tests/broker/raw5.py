"""MQTT 5 test clients: a raw socket client on ``broker.codec`` and a paho-mqtt v5 wrapper.

``Raw5Client`` is ``RawClient`` speaking MQTT 5: packets are encoded and decoded at level 5, so
tests see exact reason codes, which properties are present, the DUP flag, topic aliases and
how many PUBLISH packets are in flight. ``Paho5`` is paho-mqtt 2.x's MQTT 5 client with every
wait bounded and every received message kept with its properties. ``Pool5`` owns both kinds
(and the 3.1.1 clients of ``ClientPool``) and closes them at teardown.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties as PahoProperties

from broker import codec
from broker.codec import (
    MQTT_5,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    Will,
)
from broker.properties import Properties
from tests.broker.rawclient import ClientPool, RawClient
from tests.harness import RunningBroker


class Raw5Client(RawClient):
    """``RawClient`` at protocol level 5; ``last_size`` is the size of the last packet read."""

    def __init__(self, port: int, **kwargs: Any) -> None:
        super().__init__(port, **kwargs)
        self.last_size = 0

    def send(self, packet: Packet | bytes) -> None:
        data = packet if isinstance(packet, bytes | bytearray) else codec.encode_packet(packet, 5)
        self.sock.sendall(data)

    def _take_packet(self) -> Packet | None:
        found = codec.split_packet(self._buf, 0)
        if found is None:
            return None
        first, start, stop = found
        packet = codec.decode_packet(first, bytes(self._buf[start:stop]), MQTT_5)
        self.last_size = stop
        del self._buf[:stop]
        return packet

    # -- MQTT 5 conversations ------------------------------------------------------------------

    def connect(  # type: ignore[override]
        self,
        client_id: str,
        *,
        clean: bool = True,
        keep_alive: int = 0,
        properties: Properties | None = None,
        will: Will | None = None,
        username: str | None = None,
        password: bytes | None = None,
        timeout: float = 5.0,
    ) -> ConnAck:
        self.send(
            Connect(
                client_id,
                clean,
                keep_alive,
                MQTT_5,
                will,
                username,
                password,
                properties or Properties(),
            )
        )
        return self.recv(ConnAck, timeout)

    def subscribe5(
        self,
        *topics: tuple[str, int],
        packet_id: int = 1,
        identifier: int | None = None,
    ) -> list[int]:
        """SUBSCRIBE with Subscription Options bytes; returns the SUBACK's reason codes."""
        props = Properties(subscription_identifiers=[identifier] if identifier else [])
        self.send(Subscribe(packet_id, list(topics), props))
        suback = self.recv(SubAck)
        assert suback.packet_id == packet_id
        return suback.return_codes

    def unsubscribe5(self, *topics: str, packet_id: int = 1) -> list[int]:
        self.send(Unsubscribe(packet_id, list(topics)))
        unsuback = self.recv(UnsubAck)
        assert unsuback.packet_id == packet_id
        return unsuback.reason_codes

    def publish5(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        *,
        packet_id: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> int | None:
        """PUBLISH and finish the sender's side of QoS 1/2; the PUBACK/PUBREC reason code."""
        pid = packet_id if qos else None
        self.send(Publish(topic, payload, qos, retain, False, pid, properties or Properties()))
        if qos == 1:
            ack = self.recv(PubAck)
            assert ack.packet_id == packet_id
            return ack.reason_code
        if qos == 2:
            rec = self.recv(PubRec)
            assert rec.packet_id == packet_id
            if rec.reason_code < 0x80:
                # [4.3.3] an error PUBREC ends the flow; otherwise PUBREL, PUBCOMP follow.
                self.send(PubRel(packet_id))
                assert self.recv(PubComp) == PubComp(packet_id)
            return rec.reason_code
        return None

    def ack(self, publish: Publish) -> None:
        """Complete the receiver's side of a QoS 1/2 delivery."""
        assert publish.packet_id is not None
        if publish.qos == 1:
            self.send(PubAck(publish.packet_id))
        elif publish.qos == 2:
            self.send(PubRec(publish.packet_id))
            assert self.recv(PubRel).packet_id == publish.packet_id
            self.send(PubComp(publish.packet_id))

    def expect_disconnect(self, reason_code: int, timeout: float = 5.0) -> Disconnect:
        """A server DISCONNECT with ``reason_code`` [3.14], then the connection closes."""
        packet = self.recv(Disconnect, timeout)
        assert packet.reason_code == reason_code, (
            f"DISCONNECT {packet.reason_code:#04x}, expected {reason_code:#04x}: {packet!r}"
        )
        self.expect_closed(timeout)
        return packet

    def disconnect5(self, reason_code: int = 0, properties: Properties | None = None) -> None:
        self.send(Disconnect(reason_code, properties or Properties()))
        self.close()


@dataclasses.dataclass
class Received5:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    properties: PahoProperties | None

    def prop(self, name: str, default: Any = None) -> Any:
        """A property by paho's attribute name (``"UserProperty"``), or ``default``."""
        return getattr(self.properties, name, default)


class Paho5:
    """paho-mqtt's MQTT 5 client with bounded waits for CONNACK, acks and messages."""

    def __init__(
        self,
        port: int,
        client_id: str,
        *,
        keepalive: int = 60,
        host: str = "127.0.0.1",
    ) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        self.host, self.port, self.keepalive = host, port, keepalive
        self.messages: queue.Queue[Received5] = queue.Queue()
        self.connack: queue.Queue[tuple[bool, int, PahoProperties | None]] = queue.Queue()
        self.subacks: queue.Queue[list[int]] = queue.Queue()
        self.unsubacks: queue.Queue[list[int]] = queue.Queue()
        self.disconnects: queue.Queue[int] = queue.Queue()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_unsubscribe = self._on_unsubscribe
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connack.put((bool(flags.session_present), int(rc.value), props))

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.put(
            Received5(
                msg.topic,
                msg.payload,
                msg.qos,
                bool(msg.retain),
                bool(msg.dup),
                getattr(msg, "properties", None),
            )
        )

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        self.subacks.put([int(c.value) for c in codes])

    def _on_unsubscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        self.unsubacks.put([int(c.value) for c in codes])

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.disconnects.put(int(rc.value))

    def will_set(
        self, topic: str, payload: bytes, qos: int = 0, properties: PahoProperties | None = None
    ) -> None:
        self.client.will_set(topic, payload, qos, False, properties)

    def connect(
        self,
        *,
        clean_start: bool = True,
        properties: PahoProperties | None = None,
        timeout: float = 5.0,
    ) -> tuple[bool, int, PahoProperties | None]:
        """Connect and wait for CONNACK: (session present, reason code, CONNACK properties)."""
        self.client.connect(
            self.host, self.port, self.keepalive, clean_start=clean_start, properties=properties
        )
        self.client.loop_start()
        return self.connack.get(timeout=timeout)

    def subscribe(
        self,
        topic: str,
        options: mqtt.SubscribeOptions | None = None,
        properties: PahoProperties | None = None,
        timeout: float = 5.0,
    ) -> list[int]:
        self.client.subscribe(
            topic, options=options or mqtt.SubscribeOptions(qos=1), properties=properties
        )
        return self.subacks.get(timeout=timeout)

    def unsubscribe(self, topic: str, timeout: float = 5.0) -> list[int]:
        self.client.unsubscribe(topic)
        return self.unsubacks.get(timeout=timeout)

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        properties: PahoProperties | None = None,
        timeout: float = 5.0,
    ) -> None:
        info = self.client.publish(topic, payload, qos, retain, properties)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise TimeoutError(f"publish to {topic} not acknowledged within {timeout}s")

    def expect(self, count: int = 1, timeout: float = 5.0) -> list[Received5]:
        out = []
        for _ in range(count):
            try:
                out.append(self.messages.get(timeout=timeout))
            except queue.Empty:
                raise AssertionError(f"got {len(out)} of {count} messages") from None
        return out

    def expect_nothing(self, within: float = 0.3) -> None:
        try:
            got = self.messages.get(timeout=within)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message {got}")

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        with contextlib.suppress(Exception):
            self.client.loop_stop()
        with contextlib.suppress(Exception):
            sock = self.client.socket()
            if sock is not None:
                sock.close()


class Pool5(ClientPool):
    """``ClientPool`` plus MQTT 5 clients; ``close()`` ends them all."""

    def __init__(self) -> None:
        super().__init__()
        self._paho5: list[Paho5] = []
        self._raw5: list[Raw5Client] = []

    def raw5(self, port: int, **kwargs: Any) -> Raw5Client:
        client = Raw5Client(port, **kwargs)
        self._raw5.append(client)
        return client

    def connected5(
        self, port: int, client_id: str, *, properties: Properties | None = None, **kwargs: Any
    ) -> Raw5Client:
        """A raw MQTT 5 client that got a CONNACK with Success."""
        client = self.raw5(port)
        connack = client.connect(client_id, properties=properties, **kwargs)
        assert connack.return_code == 0, f"{client_id} refused with {connack!r}"
        return client

    def paho5(self, port: int, client_id: str, **kwargs: Any) -> Paho5:
        """A paho MQTT 5 client, not yet connected."""
        client = Paho5(port, client_id, **kwargs)
        self._paho5.append(client)
        return client

    def close(self) -> None:
        for paho in self._paho5:
            paho.close()
        for raw in self._raw5:
            raw.close()
        super().close()


@contextlib.contextmanager
def pool5() -> Iterator[Pool5]:
    pool = Pool5()
    try:
        yield pool
    finally:
        pool.close()


def session_of(broker: RunningBroker, client_id: str) -> bool:
    """Whether the broker holds a session for ``client_id`` (read on the broker's loop)."""
    return broker.call(lambda: client_id in broker.broker.sessions)
