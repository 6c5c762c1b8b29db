"""The rule tables (sqlmodel), in the registry's database (migration 0004)."""

from __future__ import annotations

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel


class RuleRow(SQLModel, table=True):
    __tablename__ = "rules"

    name: str = Field(primary_key=True, max_length=128)
    payload: str
    """The ``TopicRulePayload`` JSON, as given (validated)."""
    managed: bool = False
    """Applied from a folder (``thingcore rules apply``): a later apply of that folder deletes
    it when its file is gone; rules made otherwise are never deleted by an apply."""
    created_at: float
    updated_at: float


class RuleMetricsRow(SQLModel, table=True):
    """Counters per rule, added to by running servers every few seconds (for the CLI)."""

    __tablename__ = "rule_metrics"

    name: str = Field(primary_key=True, max_length=128)
    matched: int = 0
    passed: int = 0
    """WHERE was true (or absent)."""
    failed: int = 0
    """Evaluation raised (counted and isolated; the other rules go on)."""
    outputs: int = 0
    dropped: int = 0
    """Outputs dropped because the action queue was full."""
    eval_ns: int = Field(default=0, sa_type=BigInteger)
    """Total evaluation time, for the mean latency."""
    updated_at: float


class DeliveryMetricsRow(SQLModel, table=True):
    """Delivery counters per rule (``scope`` "rule") and per target ("target"), added to by
    running servers every few seconds; ``depth`` is a gauge (owed when last written)."""

    __tablename__ = "delivery_metrics"

    scope: str = Field(primary_key=True, max_length=8)
    name: str = Field(primary_key=True, max_length=512)
    delivered: int = Field(default=0, sa_type=BigInteger)
    retried: int = Field(default=0, sa_type=BigInteger)
    failed: int = Field(default=0, sa_type=BigInteger)
    error_actions: int = Field(default=0, sa_type=BigInteger)
    dead_lettered: int = Field(default=0, sa_type=BigInteger)
    refused: int = Field(default=0, sa_type=BigInteger)
    spilled: int = Field(default=0, sa_type=BigInteger)
    latency_ns: int = Field(default=0, sa_type=BigInteger)
    depth: int = Field(default=0, sa_type=BigInteger)
    updated_at: float
