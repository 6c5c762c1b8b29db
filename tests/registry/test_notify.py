"""PostgreSQL wakes a following server at commit (LISTEN/NOTIFY), not at its next poll."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from broker.config import BrokerSettings
from broker.server import Broker
from registry.config import RegistrySettings
from registry.identity import IdentityService
from registry.service import Registry
from tests.conftest import service_required

DATABASE_URL = os.environ.get(
    "THINGCORE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def pg_settings() -> Iterator[RegistrySettings]:
    schema = "tc_notify_" + secrets.token_hex(5)
    # A poll interval far longer than the test's patience: only a notification can wake it.
    settings = RegistrySettings(
        database_url=DATABASE_URL, database_schema=schema, change_poll_interval=60.0
    )
    probe = Registry(settings, Path("/nonexistent"))
    try:
        with probe.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "no PostgreSQL here"
        probe.close()
        if service_required():
            raise
        pytest.skip(f"PostgreSQL at {DATABASE_URL} is not reachable: {exc}")
    yield settings
    with probe.db.engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    probe.close()


async def test_a_change_committed_elsewhere_wakes_the_follower_at_once(
    pg_settings: RegistrySettings, tmp_path: Path
) -> None:
    service = IdentityService(pg_settings, tmp_path, host="127.0.0.1")
    broker = Broker(BrokerSettings(port=None, tls_port=None))
    async with service:
        service.follow(broker)
        async with asyncio.timeout(5):
            await service.listening.wait()
        await asyncio.sleep(0.05)  # let the wake-up that follows LISTEN be consumed
        before = service.reloads
        other = Registry(pg_settings, tmp_path).open()
        try:
            await asyncio.to_thread(other.things.create, "notified-thing")
        finally:
            other.close()
        async with asyncio.timeout(3):
            while service.reloads == before:  # noqa: ASYNC110 - a counter, not an event
                await asyncio.sleep(0.01)
        assert service.notifications >= 1
        assert "notified-thing" in service.authorizer.index.things
