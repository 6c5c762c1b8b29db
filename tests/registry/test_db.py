"""registry/db.py: URLs, connection settings, sessions, and errors that hide the password."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import make_url, text

from registry.db import Database, normalise_url, sqlite_url
from registry.errors import DatabaseError, RegistryError
from registry.models import Change
from registry.service import Registry
from tests.registry.conftest import POSTGRES_URL
from thingcore.errors import ThingcoreError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_postgresql_urls_use_psycopg_3(url: str, expected: str) -> None:
    assert normalise_url(url) == expected


def test_sqlite_url_is_absolute_for_an_absolute_path(tmp_path: Path) -> None:
    assert sqlite_url(tmp_path / "t.db") == f"sqlite:///{tmp_path}/t.db"


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("postgresql://u:secret@h:5432/db", "postgresql+psycopg://u:***@h:5432/db"),
        ("postgresql://u:se:cr:et@h/db", "postgresql+psycopg://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql://u:p%40ss@h/db", "postgresql+psycopg://u:***@h/db"),
        ("sqlite:////var/lib/a@b/thingcore.db", "sqlite:////var/lib/a@b/thingcore.db"),
    ],
)
def test_safe_url_hides_the_password(url: str, safe: str) -> None:
    assert Database(url).safe_url == safe


def _assert_one_safe_line(exc: pytest.ExceptionInfo[DatabaseError], *expected: str) -> None:
    message = str(exc.value)
    assert "\n" not in message
    assert "secret" not in message
    for part in expected:
        assert part in message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("nosuchdb://u:secret@h/db", ("nosuchdb://u:***@h/db", "nosuchdb")),
        ("not a url", ("Could not parse",)),
        ("postgresql://u:secret@h:notaport/db", ("u:***@h:notaport", "notaport")),
        ("postgresql://u:sec@ret@h/db", ("u:***@h/db", "%40")),
    ],
)
def test_an_unusable_url_is_a_database_error(url: str, expected: tuple[str, ...]) -> None:
    with pytest.raises(DatabaseError) as exc:
        Database(url)
    _assert_one_safe_line(exc, *expected)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:secret@127.0.0.1:1/db",
        # A reachable server (when there is one) with a database that does not exist.
        make_url(normalise_url(POSTGRES_URL))
        .set(password="secret", database="thingcore_no_such_db")
        .render_as_string(hide_password=False),
    ],
    ids=["refused", "no-such-database"],
)
def test_an_unreachable_database_is_one_line_without_the_password(url: str) -> None:
    db = Database(url)
    try:
        with pytest.raises(DatabaseError) as exc:
            db.open()
    finally:
        db.dispose()
    _assert_one_safe_line(exc, "cannot open the registry database", ":***@")


def test_a_sqlite_folder_that_cannot_be_made_is_a_database_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    db = Database(sqlite_url(blocker / "sub" / "thingcore.db"))
    with pytest.raises(DatabaseError, match="cannot open the registry database"):
        db.open()
    db.dispose()


@pytest.mark.parametrize("schema", ["Upper", "has space", "1starts_with_digit", "x" * 64, ""])
def test_a_schema_must_be_a_lower_case_identifier(schema: str) -> None:
    with pytest.raises(DatabaseError, match="lower-case SQL identifier"):
        Database("postgresql://u@h/db", schema=schema)


def test_database_errors_are_registry_and_thingcore_errors() -> None:
    assert issubclass(DatabaseError, RegistryError)
    assert issubclass(DatabaseError, ThingcoreError)


def test_the_sqlite_file_is_created_with_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "thingcore.db"
    db = Database(sqlite_url(path)).open()
    db.dispose()
    assert path.is_file()


@pytest.mark.parametrize(("setting", "value"), [("NORMAL", 1), ("FULL", 2), ("off", 0)])
def test_sqlite_connections_use_wal_foreign_keys_and_the_synchronous_setting(
    tmp_path: Path, setting: str, value: int
) -> None:
    db = Database(sqlite_url(tmp_path / "t.db"), sqlite_synchronous=setting)
    try:
        with db.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA synchronous")).scalar() == value
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    finally:
        db.dispose()


def test_a_session_commits_on_success(registry: Registry) -> None:
    with registry.db.session() as session:
        session.add(Change(kind="thing", key="kept", created_at=1.0))
    assert [c.key for c in registry.changes_after(0)] == ["kept"]


def test_a_session_rolls_back_on_error(registry: Registry) -> None:
    with pytest.raises(RuntimeError), registry.db.session() as session:
        session.add(Change(kind="thing", key="lost", created_at=1.0))
        session.flush()
        raise RuntimeError("boom")
    assert registry.changes_after(0) == []


@pytest.mark.parametrize("backend", ["postgresql"], scope="session")
def test_postgresql_tables_live_in_the_configured_schema(fresh_registry: Registry) -> None:
    registry = fresh_registry.open()
    schema = registry.settings.database_schema
    with registry.db.engine.connect() as conn:
        tables = conn.execute(
            text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
            {"s": schema},
        ).scalars()
        assert {"things", "certificates", "policies", "changes", "alembic_version"} <= set(tables)
        public = conn.execute(
            text(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_name = 'things'"
            )
        ).scalar()
    assert public == 0
