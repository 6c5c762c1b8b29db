"""One batch of shadow requests applied in order to the shadows they touch, without IO.

The store loads the shadows a batch names, calls ``apply_batch`` and writes what it returns
in the same transaction; only after the commit are the messages published. Requests are
applied in arrival order, each to the result of the ones before it, so several updates to one
shadow in one batch behave exactly as if they had been committed one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from shadows.document import (
    JsonObject,
    Rejection,
    Shadow,
    ShadowLimits,
    UpdateRequest,
    apply_update,
    delete_document,
    delta,
    delta_document,
    dumps,
    error_document,
    get_document,
    not_found,
    snapshot,
)
from shadows.errors import ShadowError, ShadowErrorCode, bad_request
from shadows.names import ShadowKey
from shadows.options import DEFAULT, ShadowOptions


class Kind(Enum):
    GET = "get"
    UPDATE = "update"
    DELETE = "delete"
    PUSH_DELTA = "push-delta"
    """Beyond AWS: publish the current delta (a device subscribed to its delta topic)."""


@dataclass(slots=True)
class Op:
    """One request: what to do to which shadow, and on whose behalf."""

    kind: Kind
    key: ShadowKey
    request: UpdateRequest | None = None
    client_token: str | None = None
    client_id: str | None = None
    options: ShadowOptions = DEFAULT

    @property
    def token(self) -> str | None:
        return self.request.client_token if self.request is not None else self.client_token


@dataclass(slots=True)
class Result:
    """What one request produced: messages to publish, and its answer for direct callers."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)
    document: JsonObject | None = None
    """The accepted, get or delete document (None when the request failed)."""
    error: ShadowError | None = None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    key: ShadowKey
    version: int
    document: str
    client_id: str | None
    client_token: str | None
    keep: int
    """Versions to keep for this shadow, this one included."""


@dataclass(frozen=True, slots=True)
class RejectionEntry:
    key: ShadowKey
    rejection: Rejection
    version: int
    client_id: str | None


@dataclass(slots=True)
class Writes:
    """What the transaction must write: each touched shadow's final state, and the rest."""

    shadows: dict[ShadowKey, Shadow] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)
    rejections: list[RejectionEntry] = field(default_factory=list)


def rejected(key: ShadowKey, kind: Kind, error: ShadowError, now: int) -> Result:
    """The answer to a refused request: its error document on ``.../<op>/rejected``."""
    topic = key.topic(f"{kind.value}/rejected")
    return Result([(topic, dumps(error_document(error, now)))], None, error)


def apply_batch(
    ops: list[Op],
    loaded: dict[ShadowKey, Shadow],
    now: int,
    limits: ShadowLimits,
    *,
    history_default: int = 0,
    deleted_version_retention: float = 48 * 3600,
) -> tuple[list[Result], Writes]:
    """Apply ``ops`` in order to the ``loaded`` shadows (missing ones do not exist)."""
    working = dict(loaded)
    writes = Writes()
    results: list[Result] = []
    for op in ops:
        current = working.get(op.key)
        if (
            current is not None
            and not current.exists
            and now - current.timestamp > deleted_version_retention
        ):
            # AWS forgets a deleted shadow's version after 48 hours: it starts again.
            current = None
        try:
            result = _apply(op, current, now, limits, writes, working, history_default)
        except ShadowError as exc:
            result = rejected(op.key, op.kind, exc.with_token(op.token), now)
        results.append(result)
    return results, writes


def _apply(
    op: Op,
    current: Shadow | None,
    now: int,
    limits: ShadowLimits,
    writes: Writes,
    working: dict[ShadowKey, Shadow],
    history_default: int,
) -> Result:
    key = op.key
    token = op.token
    exists = current is not None and current.exists
    if op.kind is Kind.GET:
        if current is None or not exists:
            raise not_found(key.thing, key.name, token)
        document = get_document(current, now, token)
        return Result([(key.topic("get/accepted"), dumps(document))], document)
    if op.kind is Kind.DELETE:
        if current is None or not exists:
            raise not_found(key.thing, key.name, token)
        tombstone = Shadow(version=current.version, timestamp=now, exists=False)
        working[key] = writes.shadows[key] = tombstone
        document = delete_document(current.version, now, token)
        return Result([(key.topic("delete/accepted"), dumps(document))], document)
    if op.kind is Kind.PUSH_DELTA:
        if current is None or not exists:
            return Result()
        difference = delta(current.desired, current.reported)
        if not difference:
            return Result()
        desired_meta = current.metadata.get("desired", {})
        document = delta_document(difference, desired_meta, current.version, now, None)
        return Result([(key.topic("update/delta"), dumps(document))], document)
    request = op.request
    if request is None:  # pragma: no cover - the service builds update ops with a request
        raise bad_request("Missing required node: state")
    outcome = apply_update(current, request, now, limits, op.options.rules)
    _check_schema(op.options, outcome.current, token)
    updated = outcome.current
    working[key] = writes.shadows[key] = updated
    keep = op.options.model.history or history_default
    if keep:
        writes.history.append(
            HistoryEntry(
                key,
                updated.version,
                dumps(snapshot(updated)).decode("utf-8"),
                op.client_id,
                token,
                keep,
            )
        )
    for item in outcome.rejections:
        writes.rejections.append(RejectionEntry(key, item, updated.version, op.client_id))
    messages = [(key.topic("update/accepted"), dumps(outcome.accepted))]
    if outcome.delta is not None:
        messages.append((key.topic("update/delta"), dumps(outcome.delta)))
    messages.append((key.topic("update/documents"), dumps(outcome.documents)))
    return Result(messages, outcome.accepted)


def _check_schema(options: ShadowOptions, shadow: Shadow, token: str | None) -> None:
    """Beyond AWS: the thing type's JSON Schema for desired and reported, if it has one."""
    validators: dict[str, Any] = options.validators
    if not validators:
        return
    for section, validator in validators.items():
        value = shadow.desired if section == "desired" else shadow.reported
        error = next(iter(validator.iter_errors(value)), None)
        if error is not None:
            path = ".".join(["state", section, *(str(p) for p in error.absolute_path)])
            raise ShadowError(
                ShadowErrorCode.BAD_REQUEST,
                "State does not match the thing type's schema",
                token,
                detail=f"{path}: {error.message}",
                publish_detail=True,
            )
