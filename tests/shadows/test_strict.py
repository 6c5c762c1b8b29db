"""The stricter-than-AWS settings: shadows only for registered things, deleted with them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shadows.config import ShadowSettings
from shadows.names import ShadowKey
from shadows.store import ShadowStore
from tests.broker.rawclient import wait_for
from tests.identity.apphost import ARN, WAIT, RunningApp, provision
from tests.shadows.host import ShadowClient, shadow_device

STRICT = ShadowSettings(require_thing=True, delete_with_thing=True)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    running = RunningApp(tmp_path_factory.mktemp("strict") / "var", shadows=STRICT)
    try:
        yield running
    finally:
        running.stop()


def test_a_shadow_of_an_unregistered_thing_is_404(
    app: RunningApp, name: str, shadow_clients: list[ShadowClient]
) -> None:
    # A device whose policy also allows the shadow of a thing that does not exist.
    policy = (
        '{"Version":"2012-10-17","Statement":['
        f'{{"Effect":"Allow","Action":"iot:*","Resource":"{ARN}:*"}}]}}'
    )
    device = provision(app, name, policy=policy)
    client = ShadowClient(app, device)
    shadow_clients.append(client)
    ghost = f"$aws/things/{name}-ghost/shadow"
    client.subscribe(f"{ghost}/#", f"{client.prefix}/#")
    client.publish(f"{ghost}/update", {"state": {"reported": {"a": 1}}, "clientToken": "g"})
    rejected = client.expect(f"{ghost}/update/rejected")
    assert (rejected["code"], rejected["message"], rejected["clientToken"]) == (
        404,
        "Thing not found",
        "g",
    )
    outcome, _ = client.request("update", {"state": {"reported": {"a": 1}}})
    assert outcome == "accepted"


def test_deleting_the_thing_deletes_its_shadows(
    app: RunningApp, name: str, shadow_clients: list[ShadowClient]
) -> None:
    client = ShadowClient(app, shadow_device(app, name))
    shadow_clients.append(client)
    client.subscribe(f"{client.prefix}/#")
    assert client.request("update", {"state": {"reported": {"a": 1}}})[0] == "accepted"
    assert client.request("update", {"state": {"reported": {"b": 1}}}, name="extra")[0] == (
        "accepted"
    )
    client.close()
    shadow_clients.remove(client)
    registry = app.registry
    for principal in registry.certs.thing_principals(name):
        registry.certs.detach_thing(name, principal)
    registry.things.delete(name)
    store = ShadowStore(registry.db, STRICT)
    wait_for(
        lambda: (
            store.get(ShadowKey.of(name)) is None and store.get(ShadowKey.of(name, "extra")) is None
        ),
        WAIT,
        what="shadows deleted with their thing",
    )
