"""The yardstick: the AWS IoT Device SDKs, unmodified, against thingcore's TLS listener.

Both SDKs verify the server's name: the v2 SDK (awscrt) against the endpoint it dials, the v1
SDK with Python's ``check_hostname``. The development CA's server certificate names
``localhost`` and ``127.0.0.1`` (and the host name), so either endpoint works; a name outside
its SANs fails the handshake on the client side.

A connection that thingcore ends must not come back by itself during a test (it would take the
client id back from the connection that replaced it), so the SDKs' reconnect delays are long.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from awscrt import mqtt, mqtt5
from awsiot import mqtt5_client_builder, mqtt_connection_builder
from AWSIoTPythonSDK.MQTTLib import AWSIoTMQTTClient

from tests.identity.apphost import WAIT, Device, RunningApp, provision

Cleanup = list[Callable[[], Any]]


@pytest.fixture
def cleanup() -> Iterator[Cleanup]:
    """Teardown steps for SDK clients (run last-in first-out, failures ignored)."""
    steps: Cleanup = []
    yield steps
    for step in reversed(steps):
        with contextlib.suppress(Exception):
            step()


def v2_mqtt3(
    app: RunningApp, device: Device, cleanup: Cleanup, endpoint: str = "localhost", **kw: Any
) -> mqtt.Connection:
    connection = mqtt_connection_builder.mtls_from_path(
        endpoint=endpoint,
        port=app.tls_port,
        cert_filepath=str(device.cert),
        pri_key_filepath=str(device.key),
        ca_filepath=str(device.root_ca),
        client_id=device.name,
        clean_session=True,
        keep_alive_secs=30,
        reconnect_min_timeout_secs=60,
        reconnect_max_timeout_secs=60,
        **kw,
    )
    cleanup.append(lambda: connection.disconnect().result(WAIT))
    return connection


class V2Mqtt5:
    """The v2 SDK's MQTT 5 client with its lifecycle callbacks turned into bounded waits."""

    def __init__(self, app: RunningApp, device: Device, cleanup: Cleanup) -> None:
        self.connected = threading.Event()
        self.stopped = threading.Event()
        self.failures: queue.Queue[Any] = queue.Queue()
        self.disconnections: queue.Queue[mqtt5.LifecycleDisconnectData] = queue.Queue()
        self.messages: queue.Queue[mqtt5.PublishPacket] = queue.Queue()
        self.client = mqtt5_client_builder.mtls_from_path(
            endpoint="localhost",
            port=app.tls_port,
            cert_filepath=str(device.cert),
            pri_key_filepath=str(device.key),
            ca_filepath=str(device.root_ca),
            client_id=device.name,
            min_reconnect_delay_ms=60_000,
            max_reconnect_delay_ms=60_000,
            on_lifecycle_connection_success=lambda data: self.connected.set(),
            on_lifecycle_connection_failure=self.failures.put,
            on_lifecycle_disconnection=self.disconnections.put,
            on_lifecycle_stopped=lambda data: self.stopped.set(),
            on_publish_received=lambda data: self.messages.put(data.publish_packet),
        )
        cleanup.append(self.stop)

    def start(self) -> None:
        self.client.start()
        assert self.connected.wait(WAIT), f"no CONNACK: {list(self.failures.queue)}"

    def stop(self) -> None:
        self.client.stop()
        self.stopped.wait(WAIT)

    def subscribe(self, topic_filter: str) -> list[int]:
        packet = mqtt5.SubscribePacket(
            subscriptions=[mqtt5.Subscription(topic_filter, mqtt5.QoS.AT_LEAST_ONCE)]
        )
        suback = self.client.subscribe(packet).result(WAIT)
        return [int(code) for code in suback.reason_codes]

    def publish(self, topic: str, payload: bytes) -> int:
        packet = mqtt5.PublishPacket(topic=topic, payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE)
        done = self.client.publish(packet).result(WAIT)
        return int(done.puback.reason_code)


@pytest.mark.parametrize("endpoint", ["localhost", "127.0.0.1"])
def test_v2_sdk_mqtt3_connects_subscribes_and_publishes(
    app: RunningApp, name: str, cleanup: Cleanup, endpoint: str
) -> None:
    device = provision(app, name)
    connection = v2_mqtt3(app, device, cleanup, endpoint)
    assert connection.connect().result(WAIT) == {"session_present": False}
    received: queue.Queue[tuple[str, bytes]] = queue.Queue()
    subscribed, _ = connection.subscribe(
        f"things/{name}/cmd/#",
        mqtt.QoS.AT_LEAST_ONCE,
        lambda topic, payload, **kw: received.put((topic, payload)),
    )
    assert subscribed.result(WAIT)["qos"] == mqtt.QoS.AT_LEAST_ONCE
    published, _ = connection.publish(f"things/{name}/cmd/reboot", b"now", mqtt.QoS.AT_LEAST_ONCE)
    published.result(WAIT)  # resolves on PUBACK
    assert received.get(timeout=WAIT) == (f"things/{name}/cmd/reboot", b"now")
    assert app.online(name)


def test_v2_sdk_mqtt5_connects_subscribes_and_publishes(
    app: RunningApp, name: str, cleanup: Cleanup
) -> None:
    device = provision(app, name)
    client = V2Mqtt5(app, device, cleanup)
    client.start()
    assert client.subscribe(f"things/{name}/cmd/#") == [mqtt5.SubackReasonCode.GRANTED_QOS_1]
    assert client.publish(f"things/{name}/cmd/reboot", b"now") == mqtt5.PubackReasonCode.SUCCESS
    message = client.messages.get(timeout=WAIT)
    assert (message.topic, message.payload) == (f"things/{name}/cmd/reboot", b"now")
    # What the policy forbids is refused per request; the connection stays.
    forbidden = client.publish(f"things/someone-else/{name}", b"no")
    assert forbidden == mqtt5.PubackReasonCode.NOT_AUTHORIZED
    assert client.subscribe(f"things/someone-else/{name}") == [
        mqtt5.SubackReasonCode.NOT_AUTHORIZED
    ]
    assert client.disconnections.empty()
    assert app.online(name)


# The v1 SDK builds ``ssl.SSLContext(ssl.PROTOCOL_SSLv23)``, which Python 3.10+ deprecates.
@pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLS is deprecated:DeprecationWarning")
def test_v1_sdk_connects_subscribes_and_publishes(
    app: RunningApp, name: str, cleanup: Cleanup
) -> None:
    device = provision(app, name)
    client = AWSIoTMQTTClient(device.name)
    client.configureEndpoint("localhost", app.tls_port)
    client.configureCredentials(str(device.root_ca), str(device.key), str(device.cert))
    client.configureConnectDisconnectTimeout(int(WAIT))
    client.configureMQTTOperationTimeout(int(WAIT))
    assert client.connect(keepAliveIntervalSecond=30) is True
    cleanup.append(client.disconnect)
    received: queue.Queue[tuple[str, bytes]] = queue.Queue()
    assert client.subscribe(
        f"things/{name}/cmd/#", 1, lambda c, userdata, msg: received.put((msg.topic, msg.payload))
    )
    assert client.publish(f"things/{name}/cmd/reboot", b"now", 1)  # waits for PUBACK
    assert received.get(timeout=WAIT) == (f"things/{name}/cmd/reboot", b"now")
    assert client.disconnect() is True


def test_v2_sdk_mqtt3_second_connection_with_the_same_client_id_takes_over(
    app: RunningApp, name: str, cleanup: Cleanup
) -> None:
    device = provision(app, name)
    interrupted: queue.Queue[Exception] = queue.Queue()
    stopped: queue.Queue[Any] = queue.Queue()

    def on_interrupted(connection: mqtt.Connection, error: Exception, **kw: Any) -> None:
        interrupted.put(error)
        # An application that lost its client id stops here instead of fighting for it.
        connection.disconnect().add_done_callback(stopped.put)

    first = v2_mqtt3(app, device, cleanup, on_connection_interrupted=on_interrupted)
    first.connect().result(WAIT)
    takeovers = app.stats()["takeovers"]

    second = v2_mqtt3(app, device, cleanup)
    second.connect().result(WAIT)
    error = interrupted.get(timeout=WAIT)
    assert error is not None
    stopped.get(timeout=WAIT)
    assert app.stats()["takeovers"] == takeovers + 1
    # The new connection is the one that works.
    received: queue.Queue[bytes] = queue.Queue()
    subscribed, _ = second.subscribe(
        f"things/{name}/t",
        mqtt.QoS.AT_LEAST_ONCE,
        lambda topic, payload, **kw: received.put(payload),
    )
    subscribed.result(WAIT)
    published, _ = second.publish(f"things/{name}/t", b"second", mqtt.QoS.AT_LEAST_ONCE)
    published.result(WAIT)
    assert received.get(timeout=WAIT) == b"second"


def test_v2_sdk_mqtt5_is_told_its_session_was_taken_over(
    app: RunningApp, name: str, cleanup: Cleanup
) -> None:
    device = provision(app, name)
    first = V2Mqtt5(app, device, cleanup)
    first.start()
    second = V2Mqtt5(app, device, cleanup)
    second.start()
    data = first.disconnections.get(timeout=WAIT)
    assert data.disconnect_packet is not None, data.exception
    assert data.disconnect_packet.reason_code == mqtt5.DisconnectReasonCode.SESSION_TAKEN_OVER
    assert second.disconnections.empty()
