"""Shared fixtures: brokers on port 0 with per-test data directories."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import PahoClient, RunningBroker, make_settings

StartBroker = Callable[..., RunningBroker]


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[StartBroker]:
    """Start a broker with settings overrides; every broker started is stopped at teardown."""
    running: list[RunningBroker] = []

    def start(
        *, data_dir: Path | None = None, hooks: Any = None, **overrides: Any
    ) -> RunningBroker:
        b = RunningBroker(make_settings(**overrides), data_dir or tmp_path / "var", hooks)
        running.append(b)
        return b

    yield start
    for b in running:
        b.stop()


@pytest.fixture
def broker(start_broker: StartBroker) -> RunningBroker:
    return start_broker()


@pytest.fixture
def paho() -> Iterator[Callable[..., PahoClient]]:
    """Make paho clients; each one is disconnected at teardown."""
    made: list[PahoClient] = []

    def make(*args: Any, **kwargs: Any) -> PahoClient:
        client = PahoClient(*args, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.disconnect()


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A topic/client-id prefix unique to the test, so tests never share topics."""
    return re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:60] + f"-{os.getpid()}"


def service_required() -> bool:
    """Under CI=true a missing service is a failure, elsewhere a skip."""
    return os.environ.get("CI", "").lower() == "true"
