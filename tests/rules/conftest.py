"""Fixtures for the rules tests: the whole app (one per module) and the registry databases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.broker.rawclient import ClientPool, client_pool
from tests.identity.apphost import RunningApp
from tests.identity.conftest import name  # noqa: F401 - the per-test name fixture
from tests.registry.conftest import (  # noqa: F401 - the registry's database fixtures
    backend,
    make_registry,
    postgres_problem,
    shared_database,
)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    running = RunningApp(tmp_path_factory.mktemp("rules") / "var")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def clients() -> Iterator[ClientPool]:
    with client_pool() as pool:
        yield pool
