"""Rules in the database: create, replace, delete, apply a folder, and their counters.

Every change writes a ``rule`` change row in its transaction, so a running server reloads its
rules within a poll interval, whether the change came from the CLI or elsewhere (DESIGN.md,
control plane).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlmodel import col, select

from registry.clock import now
from registry.db import Database
from registry.service import record_change
from rules.definition import RuleDefinition, parse_definition
from rules.delivery import DeliveryCounters
from rules.errors import RuleError
from rules.models import DeliveryMetricsRow, RuleMetricsRow, RuleRow

RULE_CHANGE = "rule"

_ADD_METRICS = text(
    "INSERT INTO rule_metrics "
    "(name, matched, passed, failed, outputs, dropped, eval_ns, updated_at) "
    "VALUES (:name, :matched, :passed, :failed, :outputs, :dropped, :eval_ns, :at) "
    "ON CONFLICT (name) DO UPDATE SET "
    "matched = rule_metrics.matched + excluded.matched, "
    "passed = rule_metrics.passed + excluded.passed, "
    "failed = rule_metrics.failed + excluded.failed, "
    "outputs = rule_metrics.outputs + excluded.outputs, "
    "dropped = rule_metrics.dropped + excluded.dropped, "
    "eval_ns = rule_metrics.eval_ns + excluded.eval_ns, "
    "updated_at = excluded.updated_at"
)


_DELIVERY_FIELDS = (
    "delivered",
    "retried",
    "failed",
    "error_actions",
    "dead_lettered",
    "refused",
    "spilled",
    "latency_ns",
)
_ADD_DELIVERY_METRICS = text(
    "INSERT INTO delivery_metrics (scope, name, "
    + ", ".join(_DELIVERY_FIELDS)
    + ", depth, updated_at) VALUES (:scope, :name, "
    + ", ".join(f":{f}" for f in _DELIVERY_FIELDS)
    + ", :depth, :at) ON CONFLICT (scope, name) DO UPDATE SET "
    + ", ".join(f"{f} = delivery_metrics.{f} + excluded.{f}" for f in _DELIVERY_FIELDS)
    + ", depth = CASE WHEN excluded.depth < 0 THEN delivery_metrics.depth"
    " ELSE excluded.depth END, updated_at = excluded.updated_at"
)


@dataclass(frozen=True, slots=True)
class StoredRule:
    name: str
    payload: dict[str, Any]
    managed: bool
    created_at: float
    updated_at: float

    def definition(self) -> RuleDefinition:
        return parse_definition(self.name, self.payload)


@dataclass(slots=True)
class ApplyReport:
    created: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "created": self.created,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
        }


@dataclass(slots=True)
class Counters:
    matched: int = 0
    passed: int = 0
    failed: int = 0
    outputs: int = 0
    dropped: int = 0
    eval_ns: int = 0

    def __bool__(self) -> bool:
        return bool(self.matched or self.failed or self.dropped)


def _stored(row: RuleRow) -> StoredRule:
    return StoredRule(
        row.name, json.loads(row.payload), row.managed, row.created_at, row.updated_at
    )


class RuleStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self) -> list[StoredRule]:
        with self.db.session() as session:
            return [_stored(r) for r in session.exec(select(RuleRow).order_by(col(RuleRow.name)))]

    def get(self, name: str) -> StoredRule:
        with self.db.session() as session:
            row = session.get(RuleRow, name)
            if row is None:
                raise RuleError(f"rule {name!r} does not exist")
            return _stored(row)

    def put(self, definition: RuleDefinition, *, managed: bool = False) -> str:
        """Create or replace a rule; returns ``created``, ``changed`` or ``unchanged``."""
        with self.db.session() as session:
            outcome = self._put(session, definition, managed)
            if outcome != "unchanged":
                record_change(session, RULE_CHANGE, definition.name)
            return outcome

    def _put(self, session: Any, definition: RuleDefinition, managed: bool) -> str:
        text = definition.to_json()
        row = session.get(RuleRow, definition.name)
        at = now()
        if row is None:
            session.add(
                RuleRow(
                    name=definition.name,
                    payload=text,
                    managed=managed,
                    created_at=at,
                    updated_at=at,
                )
            )
            return "created"
        if json.loads(row.payload) == json.loads(text) and row.managed == managed:
            return "unchanged"
        row.payload = text
        row.managed = managed
        row.updated_at = at
        session.add(row)
        return "changed"

    def delete(self, name: str) -> None:
        with self.db.session() as session:
            row = session.get(RuleRow, name)
            if row is None:
                raise RuleError(f"rule {name!r} does not exist")
            session.delete(row)
            metrics = session.get(RuleMetricsRow, name)
            if metrics is not None:
                session.delete(metrics)
            delivery = session.get(DeliveryMetricsRow, ("rule", name))
            if delivery is not None:
                session.delete(delivery)
            record_change(session, RULE_CHANGE, name)

    def set_disabled(self, name: str, disabled: bool) -> None:
        stored = self.get(name)
        payload = dict(stored.payload)
        payload["ruleDisabled"] = disabled
        self.put(parse_definition(name, payload), managed=stored.managed)

    def apply(self, definitions: list[RuleDefinition]) -> ApplyReport:
        """Make the folder's rules the managed rules, in one transaction: create and replace
        what it holds, delete managed rules it no longer holds. Idempotent."""
        report = ApplyReport()
        names = {d.name for d in definitions}
        if len(names) != len(definitions):
            counts = Counter(d.name for d in definitions)
            twice = sorted(n for n, c in counts.items() if c > 1)
            raise RuleError(f"rules defined twice in the folder: {', '.join(twice)}")
        with self.db.session() as session:
            for definition in sorted(definitions, key=lambda d: d.name):
                outcome = self._put(session, definition, True)
                getattr(report, outcome).append(definition.name)
            for row in session.exec(select(RuleRow).where(col(RuleRow.managed))):
                if row.name not in names:
                    session.delete(row)
                    report.deleted.append(row.name)
            if report.created or report.changed or report.deleted:
                record_change(session, RULE_CHANGE, "apply")
        return report

    # -- counters ------------------------------------------------------------------------------

    def add_metrics(self, deltas: dict[str, Counters]) -> None:
        """Add ``deltas`` to the stored counters: one statement for all rules, because a
        server flushes hundreds of rules every few seconds while it routes messages."""
        if not deltas:
            return
        at = now()
        rows = [
            {
                "name": name,
                "matched": d.matched,
                "passed": d.passed,
                "failed": d.failed,
                "outputs": d.outputs,
                "dropped": d.dropped,
                "eval_ns": d.eval_ns,
                "at": at,
            }
            for name, d in deltas.items()
        ]
        with self.db.engine.begin() as conn:
            conn.execute(_ADD_METRICS, rows)

    def metrics(self, name: str) -> dict[str, Any]:
        with self.db.session() as session:
            row = session.get(RuleMetricsRow, name)
        if row is None:
            return {
                "matched": 0,
                "passed": 0,
                "failed": 0,
                "outputs": 0,
                "dropped": 0,
                "meanEvalMicros": None,
                "updatedAt": None,
            }
        mean = row.eval_ns / row.matched / 1000 if row.matched else None
        return {
            "matched": row.matched,
            "passed": row.passed,
            "failed": row.failed,
            "outputs": row.outputs,
            "dropped": row.dropped,
            "meanEvalMicros": None if mean is None else round(mean, 2),
            "updatedAt": row.updated_at,
        }

    def add_delivery_metrics(
        self,
        rules: dict[str, DeliveryCounters],
        targets: dict[str, tuple[DeliveryCounters, int]],
    ) -> None:
        """Add delivery counters per rule and per target (with each target's depth now)."""
        at = now()
        rows = [
            {"scope": "rule", "name": name, "depth": -1, "at": at, **_fields(c)}
            for name, c in rules.items()
        ] + [
            {"scope": "target", "name": name, "depth": depth, "at": at, **_fields(c)}
            for name, (c, depth) in targets.items()
        ]
        if rows:
            with self.db.engine.begin() as conn:
                conn.execute(_ADD_DELIVERY_METRICS, rows)

    def delivery_metrics(self, scope: str, name: str | None = None) -> list[dict[str, Any]]:
        """Stored delivery counters of ``scope`` ("rule" or "target"), one or all names."""
        with self.db.session() as session:
            query = select(DeliveryMetricsRow).where(DeliveryMetricsRow.scope == scope)
            if name is not None:
                query = query.where(DeliveryMetricsRow.name == name)
            rows = list(session.exec(query.order_by(col(DeliveryMetricsRow.name))))
        return [_delivery_dict(r) for r in rows]


def _fields(counters: DeliveryCounters) -> dict[str, int]:
    return {f: getattr(counters, f) for f in _DELIVERY_FIELDS}


def _delivery_dict(row: DeliveryMetricsRow) -> dict[str, Any]:
    mean = row.latency_ns / row.delivered / 1e6 if row.delivered else None
    return {
        "name": row.name,
        "delivered": row.delivered,
        "retried": row.retried,
        "failed": row.failed,
        "errorActions": row.error_actions,
        "deadLettered": row.dead_lettered,
        "refused": row.refused,
        "spilled": row.spilled,
        "owed": row.depth if row.scope == "target" else None,
        "meanLatencyMs": None if mean is None else round(mean, 3),
        "updatedAt": row.updated_at,
    }
