"""The shadow tables (sqlmodel), in the registry's database.

Created and evolved by the registry's Alembic chain (migration 0003 onwards), so one
``Database.open()`` brings both up to date; a test checks migrations and these classes agree.
A shadow is one row: its state and metadata as one JSON text (read and written whole), its
version, and ``exists`` False for a deleted shadow whose version is remembered for a while.
"""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class ShadowRow(SQLModel, table=True):
    __tablename__ = "shadows"

    thing: str = Field(primary_key=True, max_length=128)
    name: str = Field(primary_key=True, max_length=64)
    """The shadow's name; '' for the classic shadow."""
    version: int
    document: str
    """``{"desired": {...}, "reported": {...}, "metadata": {...}}`` as compact JSON."""
    exists: bool = True
    updated_at: float
    """Epoch seconds of the last accepted update, or of the delete."""


class ShadowHistoryRow(SQLModel, table=True):
    """Beyond AWS: earlier versions, kept as many as the thing type's options say."""

    __tablename__ = "shadow_history"

    thing: str = Field(primary_key=True, max_length=128)
    name: str = Field(primary_key=True, max_length=64)
    version: int = Field(primary_key=True)
    document: str
    """The ``/update/documents`` snapshot of that version: state, metadata, version."""
    client_id: str | None = Field(default=None, max_length=128)
    client_token: str | None = Field(default=None, max_length=64)
    created_at: float


class ShadowRejectionRow(SQLModel, table=True):
    """Beyond AWS: a desired value a device refused, and why."""

    __tablename__ = "shadow_rejections"
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    thing: str = Field(max_length=128, index=True)
    name: str = Field(max_length=64)
    path: str
    """Dotted path of the refused key inside desired."""
    value: str
    """The refused desired value, as JSON."""
    reason: str
    version: int
    """The shadow version that recorded it."""
    client_id: str | None = Field(default=None, max_length=128)
    created_at: float


class ShadowMessageRow(SQLModel, table=True):
    """Messages a running server publishes for shadow changes made outside MQTT (the CLI,
    later REST): written in the change's transaction, announced by a ``shadow`` change row."""

    __tablename__ = "shadow_messages"
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    topic: str
    payload: str
    created_at: float
