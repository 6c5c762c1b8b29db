"""Fixtures for the shadow tests that run the whole app (one per module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.identity.apphost import RunningApp
from tests.identity.conftest import clients, name  # noqa: F401 - shared fixtures
from tests.identity.test_sdks import cleanup  # noqa: F401 - SDK clients stopped at teardown
from tests.registry.conftest import (  # noqa: F401 - the registry's database fixtures
    backend,
    make_registry,
    postgres_problem,
    shared_database,
)
from tests.shadows.host import ShadowClient


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    running = RunningApp(tmp_path_factory.mktemp("shadows") / "var")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def shadow_clients() -> Iterator[list[ShadowClient]]:
    made: list[ShadowClient] = []
    yield made
    for client in made:
        client.close()
