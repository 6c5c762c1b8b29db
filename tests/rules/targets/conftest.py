"""Fixtures for the remote targets: moto's server (one per module) and the AWS test identity."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.rules.targets.moto import CREDENTIALS, MotoServer


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The standard chain's credentials for the targets' boto3 clients (environment)."""
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
