"""The registry's tables (sqlmodel), one database for SQLite and PostgreSQL alike.

Timestamps are epoch seconds (floats) so both engines store and compare them the same way;
JSON-shaped fields (attributes, policy documents) are text. The schema is created and evolved
only by the Alembic migrations in ``registry/migrations``; a test checks that they agree with
these classes.
"""

from __future__ import annotations

from sqlmodel import Field, SQLModel

NAME = 128


class ThingType(SQLModel, table=True):
    __tablename__ = "thing_types"

    name: str = Field(primary_key=True, max_length=NAME)
    type_id: str = Field(max_length=36)
    description: str | None = Field(default=None, max_length=2028)
    searchable_attributes: str = "[]"
    """JSON list of attribute names."""
    deprecated: bool = False
    deprecated_at: float | None = None
    shadow_options: str | None = None
    """Beyond-AWS shadow behaviour for things of this type (JSON, ``shadows/options.py``)."""
    created_at: float


class Thing(SQLModel, table=True):
    __tablename__ = "things"

    name: str = Field(primary_key=True, max_length=NAME)
    thing_id: str = Field(max_length=36, unique=True)
    thing_type: str | None = Field(
        default=None, foreign_key="thing_types.name", max_length=NAME, index=True
    )
    attributes: str = "{}"
    """JSON object of string to string."""
    version: int = 1
    """Starts at 1 and grows by one with every update (optimistic locking, AWS semantics)."""
    created_at: float
    updated_at: float


class ThingGroup(SQLModel, table=True):
    __tablename__ = "thing_groups"

    name: str = Field(primary_key=True, max_length=NAME)
    group_id: str = Field(max_length=36)
    parent: str | None = Field(
        default=None, foreign_key="thing_groups.name", max_length=NAME, index=True
    )
    description: str | None = Field(default=None, max_length=2028)
    attributes: str = "{}"
    version: int = 1
    created_at: float
    updated_at: float


class ThingGroupMember(SQLModel, table=True):
    __tablename__ = "thing_group_members"

    group: str = Field(primary_key=True, foreign_key="thing_groups.name", max_length=NAME)
    thing: str = Field(primary_key=True, foreign_key="things.name", max_length=NAME, index=True)


class CaCertificate(SQLModel, table=True):
    __tablename__ = "ca_certificates"

    id: str = Field(primary_key=True, max_length=64)
    pem: str
    status: str = Field(max_length=16)
    """ACTIVE or INACTIVE: only certificates of an ACTIVE CA may connect."""
    subject: str
    not_before: float
    not_after: float
    builtin: bool = False
    """The development CA this installation created (it can issue; external CAs cannot)."""
    created_at: float
    updated_at: float


class Certificate(SQLModel, table=True):
    __tablename__ = "certificates"

    id: str = Field(primary_key=True, max_length=64)
    """Lowercase hex SHA-256 of the DER bytes, as AWS computes it."""
    pem: str
    status: str = Field(max_length=24, index=True)
    ca_id: str | None = Field(
        default=None, foreign_key="ca_certificates.id", max_length=64, index=True
    )
    """The registered CA that signed it; None for a certificate registered without a CA."""
    serial: str = Field(max_length=64)
    subject: str
    not_before: float
    not_after: float
    created_at: float
    updated_at: float


class ThingPrincipal(SQLModel, table=True):
    __tablename__ = "thing_principals"

    thing: str = Field(primary_key=True, foreign_key="things.name", max_length=NAME)
    principal: str = Field(primary_key=True, max_length=64, index=True)
    """A certificate id."""


class Policy(SQLModel, table=True):
    __tablename__ = "policies"

    name: str = Field(primary_key=True, max_length=NAME)
    default_version: int = 1
    next_version: int = 2
    """Version ids are never reused, even after a version is deleted (AWS semantics)."""
    created_at: float
    updated_at: float


class PolicyVersion(SQLModel, table=True):
    __tablename__ = "policy_versions"

    policy: str = Field(primary_key=True, foreign_key="policies.name", max_length=NAME)
    version: int = Field(primary_key=True)
    document: str
    created_at: float


class PolicyTarget(SQLModel, table=True):
    __tablename__ = "policy_targets"

    policy: str = Field(primary_key=True, foreign_key="policies.name", max_length=NAME)
    target_type: str = Field(primary_key=True, max_length=16)
    """``cert`` or ``thinggroup``."""
    target: str = Field(primary_key=True, max_length=NAME, index=True)


class Change(SQLModel, table=True):
    """One row per change a running server must act on, written in the same transaction."""

    __tablename__ = "changes"
    # Ids must never be reused: a follower remembers the last id it read, and SQLite without
    # AUTOINCREMENT hands out max(id) + 1 again once pruning has emptied the table.
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    """What changed: certificate, ca, policy, attachment, thing, group."""
    key: str = Field(max_length=256)
    """Which one: a certificate id, policy name, thing name..."""
    created_at: float
