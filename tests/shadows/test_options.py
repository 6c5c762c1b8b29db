"""Beyond AWS: shadow options per thing type, through the running app and real devices.

Each test gives its thing a type of its own with the options under test, set the way an
operator does (``shadow_options`` on the type, reaching the server through the change feed).
"""

from __future__ import annotations

import time
from typing import Any

from shadows.config import ShadowSettings
from shadows.names import ShadowKey
from shadows.options import parse_options
from shadows.store import ShadowStore
from tests.broker.rawclient import wait_for
from tests.identity.apphost import WAIT, Device, RunningApp
from tests.shadows.host import ShadowClient, operator_update, shadow_device


def typed_device(app: RunningApp, name: str, options: dict[str, Any]) -> Device:
    """A device whose thing has a type of its own carrying ``options``."""
    thing_type = f"{name[:100]}-type"
    app.registry.things.create_type(thing_type)
    app.registry.things.set_type_shadow_options(thing_type, parse_options(options).to_json())
    device = shadow_device(app, name)
    app.registry.things.update(name, thing_type=thing_type)
    app.synced()
    return device


def store(app: RunningApp) -> ShadowStore:
    return ShadowStore(app.registry.db, ShadowSettings())


def test_without_options_a_rejected_object_is_ignored_as_aws_does(
    app: RunningApp, name: str, shadow_clients: list[ShadowClient]
) -> None:
    client = ShadowClient(app, shadow_device(app, name))
    shadow_clients.append(client)
    client.subscribe(f"{client.prefix}/#")
    client.request("update", {"state": {"desired": {"color": "purple"}}})
    outcome, doc = client.request(
        "update", {"state": {"reported": {"color": "red"}}, "rejected": {"color": "no purple"}}
    )
    assert outcome == "accepted" and "rejected" not in doc
    got = client.request("get")[1]
    assert got["state"]["delta"] == {"color": "purple"}
    assert store(app).rejections(name) == []


def test_clear_desired_on_match_removes_satisfied_keys(
    app: RunningApp, name: str, shadow_clients: list[ShadowClient]
) -> None:
    device = typed_device(app, name, {"clear_desired_on_match": True})
    client = ShadowClient(app, device)
    shadow_clients.append(client)
    client.subscribe(f"{client.prefix}/#")
    client.request("update", {"state": {"desired": {"color": "red", "fan": {"speed": 2}}}})
    client.request("update", {"state": {"reported": {"color": "red", "fan": {"speed": 1}}}})
    got = client.request("get")[1]
    assert got["state"]["desired"] == {"fan": {"speed": 2}}
    assert got["state"]["delta"] == {"fan": {"speed": 2}}
    assert "color" not in got["metadata"]["desired"]
    client.request("update", {"state": {"reported": {"fan": {"speed": 2}}}})
    got = client.request("get")[1]
    assert "desired" not in got["state"] and "delta" not in got["state"]


def test_delta_is_pushed_when_the_device_subscribes_to_it(
    app: RunningApp, name: str, shadow_clients: list[ShadowClient]
) -> None:
    device = typed_device(app, name, {"push_delta_on_subscribe": True})
    operator_update(app, name, {"desired": {"target": 21.5}})
    client = ShadowClient(app, device)
    shadow_clients.append(client)
    client.subscribe(f"{client.prefix}/update/delta")
    delta = client.expect(f"{client.prefix}/update/delta")
    assert delta["state"] == {"target": 21.5} and delta["version"] == 1
    assert "clientToken" not in delta


def test_no_delta_is_pushed_without_the_option(
    app: RunningApp, name: str, shadow_clients: list[ShadowClient]
) -> None:
    device = typed_device(app, name, {"history": 1})
    operator_update(app, name, {"desired": {"target": 19}})
    client = ShadowClient(app, device)
    shadow_clients.append(client)
    client.subscribe(f"{client.prefix}/update/delta")
    client.nothing_on(f"{client.prefix}/update/delta", wait=0.5)


def test_a_device_rejects_a_desired_value_with_a_reason(
    app: RunningApp, name: str, shadow_clients: list[ShadowClient]
) -> None:
    device = typed_device(app, name, {"rejections": {"enabled": True}})
    client = ShadowClient(app, device)
    shadow_clients.append(client)
    client.subscribe(f"{client.prefix}/#")
    client.request("update", {"state": {"desired": {"color": "purple", "volume": 3}}})
    outcome, _ = client.request(
        "update",
        {
            "state": {"reported": {"volume": 3}},
            "rejected": {"color": "this lamp has no purple"},
        },
    )
    assert outcome == "accepted"
    got = client.request("get")[1]
    assert got["state"]["desired"] == {"volume": 3} and "delta" not in got["state"]
    [rejection] = store(app).rejections(name)
    assert rejection["path"] == "color" and rejection["value"] == "purple"
    assert rejection["reason"] == "this lamp has no purple"
    assert rejection["clientId"] == name and rejection["version"] == 2


def test_rejected_desired_values_can_be_kept(
    app: RunningApp, name: str, shadow_clients: list[ShadowClient]
) -> None:
    device = typed_device(app, name, {"rejections": {"enabled": True, "desired": "keep"}})
    client = ShadowClient(app, device)
    shadow_clients.append(client)
    client.subscribe(f"{client.prefix}/#")
    client.request("update", {"state": {"desired": {"mode": "turbo"}}})
    client.request("update", {"state": {"reported": {}}, "rejected": {"mode": "too hot"}})
    assert client.request("get")[1]["state"]["delta"] == {"mode": "turbo"}
    assert [r["reason"] for r in store(app).rejections(name)] == ["too hot"]


def test_history_keeps_the_last_versions(
    app: RunningApp, name: str, shadow_clients: list[ShadowClient]
) -> None:
    device = typed_device(app, name, {"history": 3})
    client = ShadowClient(app, device)
    shadow_clients.append(client)
    client.subscribe(f"{client.prefix}/update/accepted", f"{client.prefix}/update/rejected")
    for value in range(5):
        client.request("update", {"state": {"reported": {"n": value}}, "clientToken": f"t{value}"})
    kept = store(app).history(ShadowKey.of(name))
    assert [h["version"] for h in kept] == [5, 4, 3]
    assert kept[0]["document"]["state"] == {"reported": {"n": 4}}
    assert kept[0]["clientToken"] == "t4" and kept[0]["clientId"] == name


def test_a_schema_violation_is_400_with_the_path(
    app: RunningApp, name: str, shadow_clients: list[ShadowClient]
) -> None:
    schema = {
        "desired": {
            "type": "object",
            "properties": {"fan": {"type": "object", "properties": {"speed": {"maximum": 5}}}},
        },
        "reported": {"type": "object", "properties": {"temp": {"type": "number"}}},
    }
    device = typed_device(app, name, {"schema": schema})
    client = ShadowClient(app, device)
    shadow_clients.append(client)
    client.subscribe(f"{client.prefix}/#")
    outcome, doc = client.request("update", {"state": {"desired": {"fan": {"speed": 3}}}})
    assert outcome == "accepted"
    outcome, doc = client.request(
        "update", {"state": {"desired": {"fan": {"speed": 9}}}, "clientToken": "s"}
    )
    assert outcome == "rejected" and doc["code"] == 400 and doc["clientToken"] == "s"
    assert doc["detail"].startswith("state.desired.fan.speed: 9 is greater than the maximum")
    outcome, doc = client.request("update", {"state": {"reported": {"temp": "hot"}}})
    assert outcome == "rejected" and doc["detail"].startswith("state.reported.temp")
    assert client.request("get")[1]["state"] == {
        "desired": {"fan": {"speed": 3}},
        "delta": {"fan": {"speed": 3}},
    }


def test_presence_is_written_to_a_named_shadow(app: RunningApp, name: str) -> None:
    device = typed_device(app, name, {"presence": {"enabled": True}})
    shadows = store(app)
    key = ShadowKey.of(name, "presence")
    client = ShadowClient(app, device)
    wait_for(lambda: _reported(shadows, key).get("connected") is True, WAIT, what="connected")
    presence = _reported(shadows, key)
    assert presence["versionNumber"] == 0 and presence["since"] > time.time() * 1000 - 60_000
    assert "disconnectReason" not in presence
    client.close()
    wait_for(lambda: _reported(shadows, key).get("connected") is False, WAIT, what="disconnect")
    presence = _reported(shadows, key)
    assert presence["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"
    # The classic shadow stays as AWS has it: nothing was written there.
    assert shadows.get(ShadowKey.of(name)) is None


def _reported(shadows: ShadowStore, key: ShadowKey) -> dict[str, Any]:
    shadow = shadows.get(key)
    return {} if shadow is None or not shadow.exists else dict(shadow.reported)
