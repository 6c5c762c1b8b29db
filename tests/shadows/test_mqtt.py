"""The shadow service over MQTT through mTLS, with paho: AWS's topics, shapes and codes."""

from __future__ import annotations

import json

import pytest

from tests.identity.apphost import Clients, RunningApp, TlsRaw5
from tests.shadows.host import ShadowClient, shadow_device

NOT_AUTHORIZED = 0x87


def connect(app: RunningApp, name: str, made: list[ShadowClient]) -> ShadowClient:
    client = ShadowClient(app, shadow_device(app, name))
    made.append(client)
    client.subscribe(f"{client.prefix}/#")
    return client


def test_get_of_a_missing_shadow_is_404(
    app: RunningApp, name: str, shadow_clients: list[ShadowClient]
) -> None:
    client = connect(app, name, shadow_clients)
    outcome, doc = client.request("get", {"clientToken": "t1"})
    assert outcome == "rejected"
    assert doc["code"] == 404
    assert doc["message"] == f"No shadow exists with name: '{name}'"
    assert doc["clientToken"] == "t1"


def test_update_desired_publishes_delta_and_report_clears_it(
    app: RunningApp, name: str, shadow_clients: list[ShadowClient]
) -> None:
    client = connect(app, name, shadow_clients)
    outcome, doc = client.request(
        "update", {"state": {"desired": {"color": "red"}}, "clientToken": "a"}
    )
    assert outcome == "accepted", doc
    assert doc["version"] == 1 and doc["clientToken"] == "a"
    delta = client.expect(f"{client.prefix}/update/delta")
    assert delta["state"] == {"color": "red"} and delta["version"] == 1
    documents = client.expect(f"{client.prefix}/update/documents")
    assert "previous" not in documents and documents["current"]["version"] == 1
    outcome, doc = client.request("update", {"state": {"reported": {"color": "red"}}})
    assert outcome == "accepted" and doc["version"] == 2
    client.nothing_on(f"{client.prefix}/update/delta")
    outcome, doc = client.request("get")
    assert outcome == "accepted"
    assert "delta" not in doc["state"]
    assert doc["state"]["desired"] == doc["state"]["reported"] == {"color": "red"}


def test_named_shadows_are_separate_from_the_classic_one(
    app: RunningApp, name: str, shadow_clients: list[ShadowClient]
) -> None:
    client = connect(app, name, shadow_clients)
    outcome, doc = client.request("update", {"state": {"reported": {"fw": "1.0"}}}, name="firmware")
    assert outcome == "accepted" and doc["version"] == 1
    outcome, doc = client.request("update", {"state": {"reported": {"on": True}}})
    assert outcome == "accepted" and doc["version"] == 1
    outcome, doc = client.request("get", name="firmware")
    assert doc["state"] == {"reported": {"fw": "1.0"}}
    client.expect(f"{client.prefix}/name/firmware/update/documents")
    outcome, doc = client.request("get", {"clientToken": "x"}, name="missing")
    assert outcome == "rejected" and doc["code"] == 404
    assert doc["message"] == f"No shadow exists with name: '{name}~missing'"
    assert doc["clientToken"] == "x"


def test_stale_version_is_409_and_changes_nothing(
    app: RunningApp, name: str, shadow_clients: list[ShadowClient]
) -> None:
    client = connect(app, name, shadow_clients)
    client.request("update", {"state": {"desired": {"a": 1}}})
    outcome, doc = client.request("update", {"state": {"desired": {"a": 2}}, "version": 1})
    assert outcome == "accepted" and doc["version"] == 2
    outcome, doc = client.request(
        "update", {"state": {"desired": {"a": 3}}, "version": 1, "clientToken": "late"}
    )
    assert outcome == "rejected"
    assert (doc["code"], doc["message"], doc["clientToken"]) == (409, "Version conflict", "late")
    assert client.request("get")[1]["state"]["desired"] == {"a": 2}


DEEP = {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}

BAD_UPDATES = [
    (b"{not json", 400, "Invalid JSON"),
    (b"[1, 2]", 400, "Invalid JSON"),
    (b'{"clientToken": "t"}', 400, "Missing required node: state"),
    (b'{"state": 5}', 400, "State node must be an object"),
    (b'{"state": {"desired": [1]}}', 400, "Desired node must be an object"),
    (b'{"state": {"reported": "on"}}', 400, "Reported node must be an object"),
    (b'{"state": {"delta": {"a": 1}}}', 400, "State contains an invalid node"),
    (b'{"state": {"desired": {"a": [1, null]}}}', 400, "State contains an invalid node"),
    (b'{"state": {"desired": {"a": 1}}, "version": "3"}', 400, "Invalid version"),
    (b'{"state": {"desired": {"a": 1}}, "version": 1.5}', 400, "Invalid version"),
    (b'{"state": {"desired": {"a": 1}}, "clientToken": 7}', 400, "Invalid clientToken"),
    (
        b'{"state": {"desired": {"a": 1}}, "clientToken": "' + b"x" * 65 + b'"}',
        400,
        "Invalid clientToken",
    ),
    (
        json.dumps({"state": {"desired": DEEP}}).encode(),
        400,
        "JSON contains too many levels of nesting; maximum is 6",
    ),
    (b"[" * 100_000 + b"]" * 100_000, 413, "The payload exceeds the maximum size allowed"),
    (
        json.dumps({"state": {"desired": {"blob": "x" * 9000}}}).encode(),
        413,
        "The payload exceeds the maximum size allowed",
    ),
    (b'{"state": {"desired": {"a": "\xff"}}}', 415, None),
]


@pytest.mark.parametrize(("payload", "code", "message"), BAD_UPDATES)
def test_bad_updates_get_the_aws_error_and_change_nothing(
    app: RunningApp,
    name: str,
    shadow_clients: list[ShadowClient],
    payload: bytes,
    code: int,
    message: str | None,
) -> None:
    client = connect(app, name, shadow_clients)
    client.request("update", {"state": {"reported": {"ok": True}}})
    outcome, doc = client.request("update", payload)
    assert outcome == "rejected"
    assert doc["code"] == code
    if message is not None:
        assert doc["message"] == message
    assert isinstance(doc["timestamp"], int)
    outcome, doc = client.request("get")
    assert doc["version"] == 1 and doc["state"] == {"reported": {"ok": True}}


def test_a_rejection_echoes_a_valid_client_token(
    app: RunningApp, name: str, shadow_clients: list[ShadowClient]
) -> None:
    client = connect(app, name, shadow_clients)
    outcome, doc = client.request("update", {"state": 1, "clientToken": "mine"})
    assert (outcome, doc["clientToken"]) == ("rejected", "mine")


def test_a_shadow_name_aws_refuses_is_rejected_on_its_own_topic(
    app: RunningApp, name: str, shadow_clients: list[ShadowClient]
) -> None:
    client = connect(app, name, shadow_clients)
    outcome, doc = client.request("update", {"state": {"reported": {"a": 1}}}, name="bad!name")
    assert outcome == "rejected" and doc["code"] == 400
    outcome, doc = client.request("get", name="a" * 65)
    assert outcome == "rejected" and doc["code"] == 400


def test_delete_answers_with_the_deleted_version_then_404(
    app: RunningApp, name: str, shadow_clients: list[ShadowClient]
) -> None:
    client = connect(app, name, shadow_clients)
    client.request("update", {"state": {"reported": {"a": 1}}})
    client.request("update", {"state": {"reported": {"a": 2}}})
    outcome, doc = client.request("delete", {"clientToken": 12})
    assert outcome == "rejected" and doc["code"] == 400
    outcome, doc = client.request("get", b"the body of a get is ignored")
    assert outcome == "accepted" and doc["version"] == 2
    outcome, doc = client.request("delete", {"clientToken": "d"})
    assert outcome == "accepted"
    assert (
        doc["version"] == 2
        and doc["clientToken"] == "d"
        and set(doc)
        == {
            "version",
            "timestamp",
            "clientToken",
        }
    )
    assert client.request("delete")[1]["code"] == 404
    assert client.request("get")[1]["code"] == 404


def test_a_device_cannot_touch_another_things_shadow(
    app: RunningApp, name: str, clients: Clients, shadow_clients: list[ShadowClient]
) -> None:
    owner = connect(app, name, shadow_clients)
    owner.request("update", {"state": {"reported": {"mine": True}}})
    intruder = shadow_device(app, f"{name}-x")
    raw = clients.raw(5, app.tls_port, intruder.context())
    assert isinstance(raw, TlsRaw5)
    assert raw.connect(intruder.name).return_code == 0
    update = json.dumps({"state": {"reported": {"mine": False}}}).encode()
    topic = f"$aws/things/{name}/shadow/update"
    assert raw.publish5(topic, update, 1, packet_id=1) == NOT_AUTHORIZED
    assert raw.subscribe5((f"$aws/things/{name}/shadow/update/accepted", 1)) == [NOT_AUTHORIZED]
    owner.nothing_on(f"{owner.prefix}/update/accepted")
    assert owner.request("get")[1]["state"]["reported"] == {"mine": True}
