"""Shared fixtures: brokers on port 0 with per-test data directories."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import PahoClient, RunningBroker, make_settings
from tests.moto_server import CREDENTIALS, MotoServer

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


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's server as the AWS endpoint (one per module): S3, SQS, SNS, Lambda over HTTP."""
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The standard chain's credentials for boto3 clients made in the test's process."""
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
