"""The whole app with the registry and shadows on PostgreSQL (a fresh schema per run).

A device updates its shadow through the server; an operator's update made through the
database (what the CLI does) reaches the device at once through LISTEN/NOTIFY.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.identity.apphost import RunningApp
from tests.registry.conftest import _postgres_missing, drop_schema, postgres_settings
from tests.shadows.host import ShadowClient, operator_update, shadow_device


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, postgres_problem: str | None
) -> Iterator[RunningApp]:
    if postgres_problem is not None:
        _postgres_missing(postgres_problem)
    settings = postgres_settings()
    running = RunningApp(
        tmp_path_factory.mktemp("shadows-pg") / "var",
        database_url=settings.database_url,
        database_schema=settings.database_schema,
    )
    try:
        yield running
    finally:
        registry = running.registry
        running.stop()
        drop_schema(registry)
        registry.close()


def test_shadows_on_postgresql_end_to_end(
    app: RunningApp, name: str, shadow_clients: list[ShadowClient]
) -> None:
    client = ShadowClient(app, shadow_device(app, name))
    shadow_clients.append(client)
    client.subscribe(f"{client.prefix}/#")
    outcome, doc = client.request("update", {"state": {"reported": {"t": 20}}, "clientToken": "a"})
    assert (outcome, doc["version"], doc["clientToken"]) == ("accepted", 1, "a")
    operator_update(app, name, {"desired": {"t": 22}})
    delta = client.expect(f"{client.prefix}/update/delta")
    assert delta["state"] == {"t": 22} and delta["version"] == 2
    got = client.request("get")[1]
    assert got["state"]["delta"] == {"t": 22} and got["version"] == 2
