"""The registry service: one object the CLI, the server and (later) REST call.

``Registry`` opens the database and groups the operations by noun (``things``, ``certs``,
``policies``), each a small store class. Every public operation is one transaction; every change
a running server must act on also writes a row to ``changes`` in that transaction (DESIGN.md,
control plane), so the CLI works the same whether a server runs or not.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, text
from sqlmodel import Session, col, select

from registry.arns import Arns
from registry.clock import now
from registry.config import RegistrySettings
from registry.db import Database, sqlite_url
from registry.errors import InvalidRequest
from registry.models import Change


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing and the token for the next (None at the end)."""

    items: list[dict[str, Any]]
    next_token: str | None


def record_change(session: Session, kind: str, key: str) -> None:
    """Add a change row to ``session``'s transaction (kinds: see ``models.Change``)."""
    if session.get_bind().dialect.name == "postgresql":
        # A sequence hands out ids before commit, so two writers can commit out of id order,
        # and a follower that has read id 6 never goes back for 5. This lock (it conflicts
        # with itself and with other writes to the table, not with reads) is held until commit,
        # so writers of changes take turns and ids are in commit order. SQLite's single writer
        # gives that order for free. Registry writes are rare and short.
        session.connection().execute(text("LOCK TABLE changes IN SHARE ROW EXCLUSIVE MODE"))
    session.add(Change(kind=kind, key=key, created_at=now()))


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["o"]
    except (ValueError, KeyError, TypeError):
        raise InvalidRequest("the next token is not one this server issued") from None
    if not isinstance(offset, int) or offset < 0:
        raise InvalidRequest("the next token is not one this server issued")
    return offset


def page_bounds(next_token: str | None, max_results: int | None) -> tuple[int, int]:
    limit = 250 if max_results is None else max_results
    if not 1 <= limit <= 250:
        raise InvalidRequest("max results must be between 1 and 250")
    return decode_token(next_token), limit


def make_page(rows: Sequence[dict[str, Any]], offset: int, limit: int) -> Page:
    """``rows`` holds up to ``limit + 1`` items: the extra one says another page exists."""
    more = len(rows) > limit
    return Page(list(rows[:limit]), encode_token(offset + limit) if more else None)


class Registry:
    """Things, types, groups, certificates, CAs and policies in one database."""

    def __init__(self, settings: RegistrySettings, data_dir: Path) -> None:
        from registry.cert_store import CertificateStore
        from registry.policy_store import PolicyStore
        from registry.thing_store import ThingStore

        self.settings = settings
        self.data_dir = data_dir
        self.arns = Arns(settings.region, settings.account_id)
        url = settings.database_url or sqlite_url(data_dir / "thingcore.db")
        self.db = Database(
            url, schema=settings.database_schema, sqlite_synchronous=settings.sqlite_synchronous
        )
        self.ca_dir = data_dir / "ca"
        self.things = ThingStore(self)
        self.certs = CertificateStore(self)
        self.policies = PolicyStore(self)

    def open(self) -> Registry:
        self.db.open()
        return self

    def close(self) -> None:
        self.db.dispose()

    def last_change(self) -> int:
        """The newest change id (0 for none): where a new follower starts reading."""
        with self.db.session() as session:
            value = session.exec(select(func.max(Change.id))).one()
            return int(value or 0)

    def changes_after(self, change_id: int, limit: int = 1000) -> list[Change]:
        with self.db.session() as session:
            query = (
                select(Change)
                .where(col(Change.id) > change_id)
                .order_by(col(Change.id))
                .limit(limit)
            )
            return list(session.exec(query).all())

    def prune_changes(self, older_than: float) -> int:
        """Delete change rows older than ``older_than`` (epoch seconds); returns how many."""
        with self.db.session() as session:
            result = session.exec(delete(Change).where(col(Change.created_at) < older_than))
            return int(result.rowcount or 0)
