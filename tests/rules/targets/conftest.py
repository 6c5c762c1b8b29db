"""Fixtures for the remote targets: a broker for the engine's Bus, and a proxy that can cut
moto's server (``moto`` and ``aws_credentials`` are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from broker.server import Broker
from tests.harness import make_settings
from tests.moto_server import MotoServer
from tests.rules.targets.proxy import TcpProxy


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    """A broker without a data directory; rules engines run on its Bus."""
    yield Broker(make_settings(), data_dir=None)


@pytest.fixture
def moto_proxy(moto: MotoServer) -> Iterator[TcpProxy]:
    """A TcpProxy in front of moto: an AWS endpoint the test takes down and brings back."""
    proxy = TcpProxy("127.0.0.1", moto.port)
    try:
        yield proxy
    finally:
        proxy.close()
