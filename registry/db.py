"""Opening the registry database and bringing its schema up to date with Alembic.

SQLite (the default, a file in the data directory) runs in WAL mode so the CLI can write while
a server reads; PostgreSQL is reached through psycopg. Both get the same migrations, applied on
open, so a newer thingcore upgrades an older database in place.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from registry.errors import DatabaseError

_MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATING = threading.Lock()
"""Alembic keeps the running migration in module globals: one migration per process at once."""
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (the ``postgres`` extra installs it)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


class Database:
    """An engine on the registry database, migrated to the newest schema by ``open()``."""

    def __init__(
        self, url: str, *, schema: str | None = None, sqlite_synchronous: str = "NORMAL"
    ) -> None:
        self.url = normalise_url(url)
        self.schema = schema
        self.is_sqlite = self.url.startswith("sqlite")
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise DatabaseError(f"database schema {schema!r} must be a lower-case SQL identifier")
        if self.url.partition("//")[2].partition("/")[0].count("@") > 1:
            # Unencoded, an '@' in the password makes the driver take the rest of the password
            # for the host name, and print it in its error messages.
            raise DatabaseError(
                f"the database URL {self.safe_url} has '@' in its user name or password: "
                "write it as %40"
            )
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
            if schema is not None:
                kwargs["connect_args"] = {"options": f"-csearch_path={schema}"}
        try:
            self.engine: Engine = create_engine(self.url, **kwargs)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            # ValueError: a port that is not a number.
            raise DatabaseError(f"cannot use database {self.safe_url}: {_first_line(exc)}") from exc
        if self.is_sqlite:
            synchronous = sqlite_synchronous.upper()

            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA busy_timeout=30000")
                _enable_wal(cursor)
                cursor.execute(f"PRAGMA synchronous={synchronous}")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.close()

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        scheme, sep, rest = self.url.partition("//")
        netloc, slash, path = rest.partition("/")
        userinfo, at, host = netloc.rpartition("@")
        if not (sep and at and ":" in userinfo):
            return self.url
        user = userinfo.partition(":")[0]
        return f"{scheme}//{user}:***@{host}{slash}{path}"

    def open(self) -> Database:
        """Create the database file's folder or the schema, then apply pending migrations."""
        # Alembic narrates every plugin at INFO when it is first imported; the server says
        # itself what it migrated.
        alembic_log = logging.getLogger("alembic")
        if alembic_log.level == logging.NOTSET:
            alembic_log.setLevel(logging.WARNING)
        from alembic.util import CommandError

        try:
            if self.is_sqlite:
                path = self.url.split("///", 1)[1] if "///" in self.url else ""
                if path and path != ":memory:":
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.migrate()
        except (SQLAlchemyError, OSError) as exc:
            raise DatabaseError(
                f"cannot open the registry database {self.safe_url}: {_first_line(exc)}"
            ) from exc
        except CommandError as exc:
            # Alembic does not know the database's revision: a newer thingcore migrated it.
            raise DatabaseError(
                f"cannot open the registry database {self.safe_url}: {_first_line(exc)}; "
                "was it upgraded by a newer thingcore? Use that version or a new database"
            ) from exc
        return self

    def migrate(self) -> None:
        """Create the PostgreSQL schema if missing and apply pending migrations, in one
        transaction that concurrent openers of the same database take in turn."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        with _MIGRATING, self.engine.begin() as connection:
            # Several processes opening a new database at once (servers scaling out, the CLI
            # next to a starting server) would all create the same tables, and all but one
            # fail. Each takes a lock first, held until commit, so the others wait for the
            # first one, then find the schema up to date.
            if self.is_sqlite:
                # pysqlite starts no transaction before DDL on its own; take the write lock.
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                    {"name": f"thingcore-migrate:{self.schema or ''}"},
                )
                if self.schema is not None:
                    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()


def _enable_wal(cursor: Any, patience: float = 30.0) -> None:
    """Switch a SQLite database to WAL, waiting while another process holds it.

    Changing the journal mode needs an exclusive lock, and SQLite answers "database is locked"
    at once rather than through the busy handler when another process is migrating a new
    database; so retry, bounded (only in worker threads and the CLI, never on the event loop).
    """
    import sqlite3

    deadline = time.monotonic() + patience
    delay = 0.01
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
