"""The yardstick for shadows: the AWS IoT Device SDKs' shadow clients, unmodified, over mTLS.

- v2 ``IotShadowClientV2`` (request/response over the MQTT 5 client): it routes answers by
  ``clientToken`` alone, so every answer must echo the token it generated.
- v2 ``IotShadowClient`` (subscribe-then-publish, over the MQTT 3.1.1 connection).
- v1 ``AWSIoTPythonSDK`` shadow handler: tokens in every body, drops deltas whose version is
  not newer than the last it saw.
"""

from __future__ import annotations

import json
import queue
import threading
from concurrent.futures import Future
from typing import Any

import pytest
from awscrt import mqtt, mqtt_request_response
from awsiot import ServiceStreamOptions, V2ServiceException, iotshadow
from AWSIoTPythonSDK.MQTTLib import AWSIoTMQTTShadowClient

from tests.identity.apphost import WAIT, RunningApp
from tests.identity.test_sdks import Cleanup, V2Mqtt5, v2_mqtt3
from tests.shadows.host import operator_update, shadow_device


def rr_options() -> mqtt_request_response.ClientOptions:
    return mqtt_request_response.ClientOptions(
        max_request_response_subscriptions=4,
        max_streaming_subscriptions=4,
        operation_timeout_in_seconds=int(WAIT),
    )


def v2_error(future: Future[Any]) -> iotshadow.V2ErrorResponse:
    with pytest.raises(V2ServiceException) as failure:
        future.result(WAIT)
    error = failure.value.modeled_error
    assert isinstance(error, iotshadow.V2ErrorResponse), failure.value
    return error


def test_v2_request_response_client_full_cycle(
    app: RunningApp, name: str, cleanup: Cleanup
) -> None:
    device = shadow_device(app, name)
    mqtt5_client = V2Mqtt5(app, device, cleanup)
    mqtt5_client.start()
    shadow = iotshadow.IotShadowClientV2(mqtt5_client.client, rr_options())

    missing = v2_error(shadow.get_shadow(iotshadow.GetShadowRequest(thing_name=name)))
    assert missing.code == 404

    deltas: queue.Queue[iotshadow.ShadowDeltaUpdatedEvent] = queue.Queue()
    documents: queue.Queue[iotshadow.ShadowUpdatedEvent] = queue.Queue()
    subscribed = threading.Event()

    def status(event: mqtt_request_response.SubscriptionStatusEvent) -> None:
        if event.type == mqtt_request_response.SubscriptionStatusEventType.SUBSCRIPTION_ESTABLISHED:
            subscribed.set()

    delta_stream = shadow.create_shadow_delta_updated_stream(
        iotshadow.ShadowDeltaUpdatedSubscriptionRequest(thing_name=name),
        ServiceStreamOptions(deltas.put, status),
    )
    delta_stream.open()
    assert subscribed.wait(WAIT)
    subscribed.clear()
    documents_stream = shadow.create_shadow_updated_stream(
        iotshadow.ShadowUpdatedSubscriptionRequest(thing_name=name),
        ServiceStreamOptions(documents.put, status),
    )
    documents_stream.open()
    assert subscribed.wait(WAIT)

    desired = iotshadow.UpdateShadowRequest(
        thing_name=name, state=iotshadow.ShadowState(desired={"color": "red", "power": "on"})
    )
    accepted = shadow.update_shadow(desired).result(WAIT)
    assert accepted.version == 1
    assert accepted.state.desired == {"color": "red", "power": "on"}
    delta = deltas.get(timeout=WAIT)
    assert delta.state == {"color": "red", "power": "on"} and delta.version == 1
    assert documents.get(timeout=WAIT).current.state.desired == {"color": "red", "power": "on"}

    report = iotshadow.UpdateShadowRequest(
        thing_name=name, state=iotshadow.ShadowState(reported={"color": "red", "power": "on"})
    )
    assert shadow.update_shadow(report).result(WAIT).version == 2
    event = documents.get(timeout=WAIT)
    assert event.previous.version == 1 and event.current.version == 2
    got = shadow.get_shadow(iotshadow.GetShadowRequest(thing_name=name)).result(WAIT)
    assert got.version == 2 and got.state.delta is None
    assert got.state.reported == {"color": "red", "power": "on"}
    assert got.metadata.reported["color"]["timestamp"] > 0
    assert deltas.empty()

    stale = iotshadow.UpdateShadowRequest(
        thing_name=name, version=1, state=iotshadow.ShadowState(desired={"color": "blue"})
    )
    conflict = v2_error(shadow.update_shadow(stale))
    assert (conflict.code, conflict.message) == (409, "Version conflict")

    deleted = shadow.delete_shadow(iotshadow.DeleteShadowRequest(thing_name=name)).result(WAIT)
    assert deleted.version == 2
    assert v2_error(shadow.get_shadow(iotshadow.GetShadowRequest(thing_name=name))).code == 404
    # A shadow recreated after a delete continues from the deleted version (AWS, 48 hours).
    again = shadow.update_shadow(desired).result(WAIT)
    assert again.version == 3


def test_v2_request_response_client_named_shadows(
    app: RunningApp, name: str, cleanup: Cleanup
) -> None:
    device = shadow_device(app, name)
    mqtt5_client = V2Mqtt5(app, device, cleanup)
    mqtt5_client.start()
    shadow = iotshadow.IotShadowClientV2(mqtt5_client.client, rr_options())

    def update(shadow_name: str, reported: dict[str, Any]) -> iotshadow.UpdateShadowResponse:
        request = iotshadow.UpdateNamedShadowRequest(
            thing_name=name,
            shadow_name=shadow_name,
            state=iotshadow.ShadowState(reported=reported),
        )
        response: iotshadow.UpdateShadowResponse = shadow.update_named_shadow(request).result(WAIT)
        return response

    assert update("config", {"interval": 5}).version == 1
    assert update("firmware", {"build": "1.2.3"}).version == 1
    assert update("config", {"interval": 10}).version == 2
    got = shadow.get_named_shadow(
        iotshadow.GetNamedShadowRequest(thing_name=name, shadow_name="firmware")
    ).result(WAIT)
    assert got.state.reported == {"build": "1.2.3"}
    # The classic shadow is separate from the named ones.
    classic = v2_error(shadow.get_shadow(iotshadow.GetShadowRequest(thing_name=name)))
    assert classic.code == 404
    missing = v2_error(
        shadow.get_named_shadow(
            iotshadow.GetNamedShadowRequest(thing_name=name, shadow_name="nothing")
        )
    )
    assert missing.code == 404
    deleted = shadow.delete_named_shadow(
        iotshadow.DeleteNamedShadowRequest(thing_name=name, shadow_name="config")
    ).result(WAIT)
    assert deleted.version == 2


def test_v2_subscribe_then_publish_client_over_mqtt3(
    app: RunningApp, name: str, cleanup: Cleanup
) -> None:
    device = shadow_device(app, name)
    connection = v2_mqtt3(app, device, cleanup)
    connection.connect().result(WAIT)
    shadow = iotshadow.IotShadowClient(connection)
    answers: queue.Queue[tuple[str, Any]] = queue.Queue()
    qos = mqtt.QoS.AT_LEAST_ONCE
    subscriptions = [
        shadow.subscribe_to_update_shadow_accepted(
            iotshadow.UpdateShadowSubscriptionRequest(thing_name=name),
            qos,
            lambda r: answers.put(("update/accepted", r)),
        ),
        shadow.subscribe_to_update_shadow_rejected(
            iotshadow.UpdateShadowSubscriptionRequest(thing_name=name),
            qos,
            lambda r: answers.put(("update/rejected", r)),
        ),
        shadow.subscribe_to_shadow_delta_updated_events(
            iotshadow.ShadowDeltaUpdatedSubscriptionRequest(thing_name=name),
            qos,
            lambda r: answers.put(("delta", r)),
        ),
        shadow.subscribe_to_get_shadow_accepted(
            iotshadow.GetShadowSubscriptionRequest(thing_name=name),
            qos,
            lambda r: answers.put(("get/accepted", r)),
        ),
        shadow.subscribe_to_get_shadow_rejected(
            iotshadow.GetShadowSubscriptionRequest(thing_name=name),
            qos,
            lambda r: answers.put(("get/rejected", r)),
        ),
    ]
    for subscribed, _topic in subscriptions:
        subscribed.result(WAIT)

    def next_answer() -> tuple[str, Any]:
        return answers.get(timeout=WAIT)

    shadow.publish_get_shadow(
        iotshadow.GetShadowRequest(thing_name=name, client_token="g1"), qos
    ).result(WAIT)
    kind, error = next_answer()
    assert kind == "get/rejected" and error.code == 404 and error.client_token == "g1"

    shadow.publish_update_shadow(
        iotshadow.UpdateShadowRequest(
            thing_name=name,
            client_token="u1",
            state=iotshadow.ShadowState(desired={"fan": {"speed": 3}}),
        ),
        qos,
    ).result(WAIT)
    seen = dict([next_answer(), next_answer()])
    assert seen["update/accepted"].client_token == "u1"
    assert seen["delta"].state == {"fan": {"speed": 3}}

    # ``desired_is_nullable``: the SDK sends "desired": null, which removes the section.
    shadow.publish_update_shadow(
        iotshadow.UpdateShadowRequest(
            thing_name=name,
            client_token="u2",
            state=iotshadow.ShadowState(desired=None, desired_is_nullable=True),
        ),
        qos,
    ).result(WAIT)
    kind, accepted = next_answer()
    assert kind == "update/accepted" and accepted.version == 2
    shadow.publish_get_shadow(iotshadow.GetShadowRequest(thing_name=name), qos).result(WAIT)
    kind, got = next_answer()
    assert kind == "get/accepted" and got.state.desired is None and got.version == 2


# The v1 SDK builds ``ssl.SSLContext(ssl.PROTOCOL_SSLv23)``, which Python 3.10+ deprecates.
@pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLS is deprecated:DeprecationWarning")
def test_v1_sdk_shadow_handler(app: RunningApp, name: str, cleanup: Cleanup) -> None:
    device = shadow_device(app, name)
    client = AWSIoTMQTTShadowClient(device.name)
    client.configureEndpoint("localhost", app.tls_port)
    client.configureCredentials(str(device.root_ca), str(device.key), str(device.cert))
    client.configureConnectDisconnectTimeout(int(WAIT))
    client.configureMQTTOperationTimeout(int(WAIT))
    assert client.connect(keepAliveIntervalSecond=30) is True
    cleanup.append(client.disconnect)
    handler = client.createShadowHandlerWithName(name, True)
    answers: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    deltas: queue.Queue[dict[str, Any]] = queue.Queue()

    def answered(payload: str, status: str, _token: str) -> None:
        answers.put((status, json.loads(payload) if payload and status != "timeout" else {}))

    def answer() -> tuple[str, dict[str, Any]]:
        return answers.get(timeout=WAIT + 2)

    handler.shadowRegisterDeltaCallback(lambda p, _s, _t: deltas.put(json.loads(p)))
    handler.shadowGet(answered, int(WAIT))
    status, document = answer()
    assert status == "rejected" and document["code"] == 404

    # An application sets desired outside MQTT (as the CLI does); the running server
    # publishes the delta from the change feed. (The v1 SDK drops a delta whose version it
    # has already seen in an accepted answer, so a device's own desired update would not
    # reach its delta callback: on AWS, too, desired comes from somewhere else.)
    operator_update(app, name, {"desired": {"mode": "eco"}})
    delta = deltas.get(timeout=WAIT)
    assert delta["state"] == {"mode": "eco"} and delta["version"] == 1

    handler.shadowUpdate(json.dumps({"state": {"reported": {"mode": "eco"}}}), answered, int(WAIT))
    status, document = answer()
    assert status == "accepted" and document["version"] == 2
    handler.shadowGet(answered, int(WAIT))
    status, document = answer()
    assert status == "accepted" and "delta" not in document["state"]

    stale = json.dumps({"state": {"desired": {"mode": "max"}}, "version": 1})
    handler.shadowUpdate(stale, answered, int(WAIT))
    status, document = answer()
    assert status == "rejected" and document["code"] == 409

    handler.shadowDelete(answered, int(WAIT))
    status, document = answer()
    assert status == "accepted" and document["version"] == 2
    handler.shadowGet(answered, int(WAIT))
    assert answer()[0] == "rejected"
    assert deltas.empty()
