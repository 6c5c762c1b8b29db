"""The Alembic migrations build exactly the schema the sqlmodel classes describe, on SQLite and
PostgreSQL, idempotently; a database from an unknown (newer) revision is refused clearly."""

from __future__ import annotations

import multiprocessing
import threading
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlmodel import SQLModel

from registry import models
from registry.config import RegistrySettings
from registry.errors import DatabaseError
from registry.service import Registry
from rules import models as rule_models
from shadows import models as shadow_models

# Importing registry.models and shadows.models registers the tables on SQLModel.metadata.
assert shadow_models.ShadowRow.__tablename__ == "shadows"
assert rule_models.RuleRow.__tablename__ == "rules"
MIGRATIONS = Path(models.__file__).parent / "migrations"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _head() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def _differences(registry: Registry) -> list[object]:
    with registry.db.engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), SQLModel.metadata))


def _revision(registry: Registry) -> str | None:
    with registry.db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@pytest.fixture
def registry(fresh_registry: Registry) -> Registry:
    """Migrations run on a brand-new database in every test of this module."""
    with fresh_registry.db.engine.connect() as conn:
        assert inspect(conn).get_table_names() == []
    return fresh_registry.open()


def test_the_migrated_schema_is_the_models_schema(registry: Registry) -> None:
    assert _differences(registry) == []


def test_every_model_table_exists(registry: Registry) -> None:
    with registry.db.engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
    assert set(SQLModel.metadata.tables) | {"alembic_version"} == tables


def test_the_database_is_at_the_head_revision(registry: Registry) -> None:
    assert _revision(registry) == _head()
    with registry.db.engine.connect() as conn:
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    assert rows == [_head()]


def test_opening_again_is_idempotent(registry: Registry) -> None:
    registry.things.create("survives-reopen")
    registry.open()
    second = Registry(registry.settings, registry.data_dir).open()
    second.close()
    second = Registry(registry.settings, registry.data_dir).open()
    assert _revision(second) == _head()
    assert _differences(second) == []
    try:
        assert second.things.describe("survives-reopen")["thingName"] == "survives-reopen"
    finally:
        second.close()


def test_downgrade_to_base_and_upgrade_again(registry: Registry) -> None:
    with registry.db.engine.begin() as conn:
        command.downgrade(_config(conn), "base")
    with registry.db.engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    registry.open()
    assert _differences(registry) == []
    assert _revision(registry) == _head()


def test_a_database_from_a_newer_thingcore_is_refused(registry: Registry) -> None:
    with registry.db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(DatabaseError, match="newer thingcore") as exc:
        registry.open()
    assert "\n" not in str(exc.value)
    assert "9999" in str(exc.value)


def _open_when_told(settings: RegistrySettings, data_dir: Path, go: EventType) -> None:
    registry = Registry(settings, data_dir)
    go.wait(30)
    registry.open()
    registry.close()


def test_processes_opening_a_new_database_at_once_all_succeed(
    fresh_registry: Registry, tmp_path: Path
) -> None:
    """Servers scaling out on a new database, or the CLI next to a starting server."""
    # fork: the children start at once, with everything imported (Alembic is not thread-safe).
    context = multiprocessing.get_context("fork")
    go = context.Event()
    openers = [
        context.Process(target=_open_when_told, args=(fresh_registry.settings, tmp_path, go))
        for _ in range(3)
    ]
    for opener in openers:
        opener.start()
    go.set()
    for opener in openers:
        opener.join(60)
    assert [opener.exitcode for opener in openers] == [0, 0, 0]
    fresh_registry.open()
    assert _differences(fresh_registry) == []
    assert _revision(fresh_registry) == _head()


def test_threads_opening_new_databases_at_once_all_succeed(tmp_path: Path) -> None:
    """Alembic keeps the running migration in module globals: without a lock, threads that
    migrate different databases at once apply each other's scripts, or fail."""
    go = threading.Event()
    errors: list[BaseException] = []
    registries = [Registry(RegistrySettings(), tmp_path / f"db{i}") for i in range(4)]

    def open_when_told(registry: Registry) -> None:
        go.wait(30)
        try:
            registry.open()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=open_when_told, args=(r,), daemon=True) for r in registries]
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads:
        thread.join(30)
    try:
        assert not any(thread.is_alive() for thread in threads), "deadlocked"
        assert errors == []
        for registry in registries:
            assert _revision(registry) == _head()
            assert _differences(registry) == []
    finally:
        for registry in registries:
            registry.close()
