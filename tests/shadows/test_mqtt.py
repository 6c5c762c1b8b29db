"""The shadow service over MQTT through mTLS, with paho: AWS's topics, shapes and codes."""

from __future__ import annotations

from tests.identity.apphost import RunningApp
from tests.shadows.host import ShadowClient, shadow_device


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
