"""Shadow documents, pure: parsing requests, merge, delta, metadata, versions, the responses.

Everything here is a function of its arguments (the clock is passed in), so the laws the
service relies on are property-tested without a broker or a database (tests/shadows). The
shapes and messages are AWS's (shared/reference/aws-iot.md, section 1).

JSON objects are plain dicts; functions never mutate their arguments.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from shadows.errors import ShadowError, ShadowErrorCode, bad_request

JsonObject = dict[str, Any]

SECTIONS = ("desired", "reported")


@dataclass(frozen=True, slots=True)
class ShadowLimits:
    """AWS's default shadow limits (reference 1.10); each is a setting."""

    max_state_bytes: int = 8192
    """Size of desired + reported as compact JSON, metadata excluded."""
    max_depth: int = 6
    """Levels of objects and arrays inside ``desired`` or ``reported``."""
    max_client_token_bytes: int = 64

    @property
    def max_request_bytes(self) -> int:
        """Requests larger than this are refused before they are parsed: a request carries
        at most both sections plus a token, a version and some whitespace."""
        return 2 * self.max_state_bytes + 4096


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    """A parsed, validated ``/update`` request."""

    state: JsonObject
    """Only ``desired`` and ``reported``, as sent: each an object or None (remove it)."""
    version: int | None = None
    client_token: str | None = None
    rejected: JsonObject | None = None
    """Beyond AWS: a top-level ``rejected`` object beside ``state`` mirrors desired keys the
    device refuses, with a reason string at each leaf. AWS ignores unknown top-level keys."""

    @property
    def has_desired(self) -> bool:
        return "desired" in self.state


@dataclass(frozen=True, slots=True)
class Shadow:
    """A stored shadow. ``exists`` is False for a deleted one, kept for its version."""

    desired: JsonObject = field(default_factory=dict)
    reported: JsonObject = field(default_factory=dict)
    metadata: JsonObject = field(default_factory=dict)
    """``{"desired": {...}, "reported": {...}}``, each section only when non-empty."""
    version: int = 0
    timestamp: int = 0
    """Epoch seconds of the last accepted update (or of the delete, for a deleted shadow)."""
    exists: bool = True

    def state(self) -> JsonObject:
        state: JsonObject = {}
        if self.desired:
            state["desired"] = self.desired
        if self.reported:
            state["reported"] = self.reported
        return state


@dataclass(frozen=True, slots=True)
class Rejection:
    """One desired value a device refused, with its reason (beyond AWS)."""

    path: tuple[str, ...]
    value: Any
    reason: str


@dataclass(frozen=True, slots=True)
class UpdateOutcome:
    previous: Shadow | None
    """The shadow before the update; None when it did not exist (or was deleted)."""
    current: Shadow
    accepted: JsonObject
    delta: JsonObject | None
    """The ``/update/delta`` document to publish, or None."""
    documents: JsonObject
    rejections: tuple[Rejection, ...] = ()


# -- parsing --------------------------------------------------------------------------------


class _TooDeep(Exception):
    pass


def parse_json(payload: bytes, limits: ShadowLimits) -> Any:
    """Decode a request payload: 413 when too large, 415 unless UTF-8, 400 unless JSON."""
    if len(payload) > limits.max_request_bytes:
        raise ShadowError(
            ShadowErrorCode.PAYLOAD_TOO_LARGE, "The payload exceeds the maximum size allowed"
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ShadowError(
            ShadowErrorCode.UNSUPPORTED_ENCODING,
            "Unsupported documented encoding; supported encoding is UTF-8",
        ) from None
    try:
        document = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        # Thousands of nested brackets exhaust the decoder's recursion before any limit is
        # checked; that is too deep, not broken.
        raise _nesting_error(limits, None) from None
    except ValueError:
        raise bad_request("Invalid JSON") from None
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(document):
        # "\ud800" decodes to a str that cannot be written back as UTF-8: every response
        # and the store would fail on it later.
        raise bad_request("Invalid JSON")
    return document


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _reject_constant(name: str) -> Any:
    """NaN and Infinity are Python's extensions, not JSON; we could not send them back."""
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    """``1e400`` would become ``inf``, which has no JSON spelling either."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is out of range")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def _client_token(document: JsonObject, limits: ShadowLimits) -> str | None:
    token = document.get("clientToken")
    if token is None:
        return None
    if not isinstance(token, str) or len(token.encode("utf-8")) > limits.max_client_token_bytes:
        raise bad_request("Invalid clientToken")
    return token


def parse_token_request(payload: bytes, limits: ShadowLimits) -> str | None:
    """The ``clientToken`` of a ``/get`` or ``/delete`` request; the rest of the body is
    ignored (reference 1.9). An empty or non-JSON payload is a request without a token;
    a token that is not a string of at most 64 bytes is a 400, as in an update."""
    if not payload.strip():
        return None
    try:
        document = parse_json(payload, limits)
    except ShadowError as exc:
        if exc.code is ShadowErrorCode.BAD_REQUEST:
            return None  # not JSON: nothing to read a token from, and the rest is ignored
        raise
    if not isinstance(document, dict):
        return None
    return _client_token(document, limits)


def parse_update(payload: bytes, limits: ShadowLimits) -> UpdateRequest:
    """Parse and validate an ``/update`` request, raising AWS's 400/413/415 errors."""
    document = parse_json(payload, limits)
    if not isinstance(document, dict):
        raise bad_request("Invalid JSON")
    token = _client_token(document, limits)
    try:
        version = document.get("version")
        if version is not None and (type(version) is not int):
            raise bad_request("Invalid version")
        if "state" not in document:
            raise bad_request("Missing required node: state")
        state = document["state"]
        if not isinstance(state, dict):
            raise bad_request("State node must be an object")
        for key, value in state.items():
            if key not in SECTIONS:
                raise bad_request("State contains an invalid node", detail=f"state.{key}")
            if value is not None and not isinstance(value, dict):
                raise bad_request(f"{key.capitalize()} node must be an object")
            if value is not None:
                _check_section(value, key, limits)
        rejected = document.get("rejected")
        if not isinstance(rejected, dict):
            # AWS ignores unknown top-level keys, and parsing does not know whether the
            # rejections feature is on: anything but an object is not a rejection.
            rejected = None
        return UpdateRequest(dict(state), version, token, rejected)
    except ShadowError as exc:
        raise exc.with_token(token) from None


def _nesting_error(limits: ShadowLimits, token: str | None) -> ShadowError:
    return bad_request(
        f"JSON contains too many levels of nesting; maximum is {limits.max_depth}", token
    )


def _check_section(section: JsonObject, name: str, limits: ShadowLimits) -> None:
    """Depth and nulls inside arrays, in one walk without recursion limits of its own."""
    stack: list[tuple[Any, int, str]] = [(section, 1, name)]
    while stack:
        value, level, path = stack.pop()
        if level > limits.max_depth:
            raise _nesting_error(limits, None)
        if isinstance(value, dict):
            for key, child in value.items():
                if isinstance(child, dict | list):
                    stack.append((child, level + 1, f"{path}.{key}"))
        else:
            for index, child in enumerate(value):
                if child is None:
                    raise bad_request(
                        "State contains an invalid node",
                        detail=f"{path}[{index}] is null: arrays may not contain null",
                    )
                if isinstance(child, dict | list):
                    stack.append((child, level + 1, f"{path}[{index}]"))


def depth(value: Any) -> int:
    """Levels of objects and arrays in ``value`` (a scalar has depth 0)."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def dumps(document: Any) -> bytes:
    """Compact UTF-8 JSON, as AWS sends it."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def state_size(desired: JsonObject, reported: JsonObject) -> int:
    """Bytes counted against ``max_state_bytes``: the sections as compact JSON."""
    size = 0
    if desired:
        size += len(dumps(desired))
    if reported:
        size += len(dumps(reported))
    return size


# -- merge, delta, metadata -----------------------------------------------------------------


def strip_nulls(value: JsonObject) -> JsonObject:
    """``value`` without keys set to null, at any depth (what a new subtree stores).

    An object that only held nulls goes too, as in ``merge``: otherwise ``{"a": {"b": null}}``
    would store ``{"a": {}}`` once and remove it when sent again.
    """
    result: JsonObject = {}
    for key, child in value.items():
        if child is None:
            continue
        if isinstance(child, dict):
            stripped = strip_nulls(child)
            if child and not stripped:
                continue
            result[key] = stripped
        else:
            result[key] = child
    return result


def merge(base: JsonObject, patch: JsonObject) -> JsonObject:
    """Deep merge: a null deletes a key, objects merge, anything else (arrays too) replaces.

    An object emptied by deletions is removed with its key, so deleting the last leaf
    of a subtree leaves no empty shells behind.
    """
    return merge_with_metadata(base, {}, patch, 0)[0]


def leaf_metadata(value: Any, timestamp: int) -> Any:
    """Metadata mirroring ``value``: each leaf becomes ``{"timestamp": t}``, arrays per
    element (reference 1.4)."""
    if isinstance(value, dict):
        return {k: leaf_metadata(v, timestamp) for k, v in value.items()}
    if isinstance(value, list):
        return [leaf_metadata(v, timestamp) for v in value]
    return {"timestamp": timestamp}


def merge_with_metadata(
    base: JsonObject, base_meta: JsonObject, patch: JsonObject, timestamp: int
) -> tuple[JsonObject, JsonObject]:
    """``merge(base, patch)`` and the metadata that goes with it: the leaves the patch
    sets get ``timestamp``, the others keep theirs."""
    result = dict(base)
    meta = dict(base_meta)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
            meta.pop(key, None)
            continue
        old = result.get(key)
        if isinstance(value, dict):
            if isinstance(old, dict):
                old_meta = meta.get(key)
                child, child_meta = merge_with_metadata(
                    old, old_meta if isinstance(old_meta, dict) else {}, value, timestamp
                )
                if child or not old and not value:
                    result[key] = child
                    meta[key] = child_meta
                else:
                    # Everything under it was deleted: drop the empty object too.
                    result.pop(key)
                    meta.pop(key, None)
            else:
                child = strip_nulls(value)
                if child or not value:
                    result[key] = child
                    meta[key] = leaf_metadata(child, timestamp)
                else:
                    # Only deletions under a key that held no object: nothing is left.
                    result.pop(key, None)
                    meta.pop(key, None)
        else:
            result[key] = value
            meta[key] = leaf_metadata(value, timestamp)
    return result, meta


def delta(desired: JsonObject, reported: JsonObject) -> JsonObject:
    """Desired keys whose value differs from reported, nested, with full paths (1.6)."""
    result: JsonObject = {}
    for key, want in desired.items():
        have = reported.get(key, _MISSING)
        if have is _MISSING:
            result[key] = want
        elif isinstance(want, dict) and isinstance(have, dict):
            child = delta(want, have)
            if child:
                result[key] = child
        elif not _same(want, have):
            result[key] = want
    return result


_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    """JSON equality. JSON has one number type, so ``1`` and ``1.0`` are the same value; but
    ``true`` is not ``1``, although Python says ``True == 1``."""
    if type(a) is not type(b):
        if isinstance(a, bool) or isinstance(b, bool):
            return False
        if isinstance(a, int | float) and isinstance(b, int | float):
            return bool(a == b)
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def select_metadata(tree: JsonObject, meta: JsonObject) -> JsonObject:
    """The part of ``meta`` covering the keys of ``tree`` (delta metadata from desired's)."""
    result: JsonObject = {}
    for key, value in tree.items():
        child_meta = meta.get(key)
        if child_meta is None:
            continue
        if isinstance(value, dict) and isinstance(child_meta, dict):
            result[key] = select_metadata(value, child_meta)
        else:
            result[key] = child_meta
    return result


def prune_satisfied(
    desired: JsonObject, desired_meta: JsonObject, reported: JsonObject
) -> tuple[JsonObject, JsonObject]:
    """Beyond AWS (option ``clear_desired_on_match``): desired without the keys reported
    already matches, so a satisfied request never shows up as a delta again."""
    result: JsonObject = {}
    meta: JsonObject = {}
    for key, want in desired.items():
        have = reported.get(key, _MISSING)
        child_meta = desired_meta.get(key)
        if isinstance(want, dict) and isinstance(have, dict):
            # Like delta: an empty desired object is satisfied by any reported object.
            child, sub = prune_satisfied(
                want, child_meta if isinstance(child_meta, dict) else {}, have
            )
            if child:
                result[key] = child
                meta[key] = sub
        elif have is _MISSING or not _same(want, have):
            result[key] = want
            if child_meta is not None:
                meta[key] = child_meta
    return result, meta


def collect_rejections(
    rejected: JsonObject, desired: JsonObject, path: tuple[str, ...] = ()
) -> list[Rejection]:
    """Beyond AWS: the leaves of a ``rejected`` object that name current desired keys.

    A leaf is the reason (a string; anything else is turned into one). Keys that are not
    desired are ignored: a device cannot refuse what nobody asked for.
    """
    found: list[Rejection] = []
    for key, reason in rejected.items():
        if key not in desired:
            continue
        want = desired[key]
        if isinstance(reason, dict) and isinstance(want, dict):
            found.extend(collect_rejections(reason, want, (*path, key)))
        else:
            text = reason if isinstance(reason, str) else json.dumps(reason)
            found.append(Rejection((*path, key), want, text[:1024]))
    return found


def remove_paths(
    tree: JsonObject, meta: JsonObject, paths: list[tuple[str, ...]]
) -> tuple[JsonObject, JsonObject]:
    """``tree`` and its metadata without the given leaf paths (empty parents removed)."""
    patch: JsonObject = {}
    for path in paths:
        node = patch
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = None
    return merge_with_metadata(tree, meta, patch, 0)


# -- applying an update ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UpdateRules:
    """How an update is applied beyond AWS's rules (all off: AWS behaviour)."""

    clear_desired_on_match: bool = False
    record_rejections: bool = False
    clear_rejected: bool = True
    """With rejections recorded: remove the refused desired keys (else keep them)."""


AWS_RULES = UpdateRules()


def apply_update(
    current: Shadow | None,
    request: UpdateRequest,
    now: int,
    limits: ShadowLimits,
    rules: UpdateRules = AWS_RULES,
) -> UpdateOutcome:
    """Apply ``request`` to ``current`` (None or a deleted shadow: a new one).

    Raises 409 when the request's version is not the current one and 413 when the result
    would exceed the size limit; nothing is changed then.
    """
    token = request.client_token
    existing = current if current is not None and current.exists else None
    base_version = current.version if current is not None else 0
    if request.version is not None and request.version != base_version:
        raise ShadowError(ShadowErrorCode.CONFLICT, "Version conflict", token)
    desired = existing.desired if existing else {}
    reported = existing.reported if existing else {}
    meta = existing.metadata if existing else {}
    desired_meta: JsonObject = meta.get("desired", {})
    reported_meta: JsonObject = meta.get("reported", {})
    state = request.state
    if "desired" in state:
        patch = state["desired"]
        if patch is None:
            desired, desired_meta = {}, {}
        else:
            desired, desired_meta = merge_with_metadata(desired, desired_meta, patch, now)
    if "reported" in state:
        patch = state["reported"]
        if patch is None:
            reported, reported_meta = {}, {}
        else:
            reported, reported_meta = merge_with_metadata(reported, reported_meta, patch, now)
    rejections: list[Rejection] = []
    if rules.record_rejections and request.rejected:
        rejections = collect_rejections(request.rejected, desired)
        if rejections and rules.clear_rejected:
            desired, desired_meta = remove_paths(
                desired, desired_meta, [r.path for r in rejections]
            )
    if rules.clear_desired_on_match and desired and "reported" in state:
        desired, desired_meta = prune_satisfied(desired, desired_meta, reported)
    if state_size(desired, reported) > limits.max_state_bytes:
        raise ShadowError(
            ShadowErrorCode.PAYLOAD_TOO_LARGE, "The payload exceeds the maximum size allowed", token
        )
    metadata: JsonObject = {}
    if desired_meta:
        metadata["desired"] = desired_meta
    if reported_meta:
        metadata["reported"] = reported_meta
    updated = Shadow(desired, reported, metadata, base_version + 1, now)
    accepted = accepted_document(request, now, updated.version)
    delta_doc = None
    if request.has_desired:
        difference = delta(desired, reported)
        if difference:
            delta_doc = delta_document(difference, desired_meta, updated.version, now, token)
    documents = documents_event(existing, updated, now, token)
    return UpdateOutcome(existing, updated, accepted, delta_doc, documents, tuple(rejections))


# -- response documents ---------------------------------------------------------------------


def _with_token(document: JsonObject, token: str | None) -> JsonObject:
    if token is not None:
        document["clientToken"] = token
    return document


def accepted_document(request: UpdateRequest, now: int, version: int) -> JsonObject:
    """``/update/accepted``: only what the request contained, with metadata (1.4)."""
    return _with_token(
        {
            "state": request.state,
            "metadata": leaf_metadata(request.state, now),
            "version": version,
            "timestamp": now,
        },
        request.client_token,
    )


def get_document(shadow: Shadow, now: int, token: str | None) -> JsonObject:
    """``/get/accepted``: the whole document with its delta (1.5)."""
    state = shadow.state()
    difference = delta(shadow.desired, shadow.reported)
    if difference:
        state["delta"] = difference
    return _with_token(
        {
            "state": state,
            "metadata": shadow.metadata,
            "version": shadow.version,
            "timestamp": now,
        },
        token,
    )


def delta_document(
    difference: JsonObject, desired_meta: JsonObject, version: int, now: int, token: str | None
) -> JsonObject:
    """``/update/delta``: the whole current delta and its desired metadata (1.6)."""
    return _with_token(
        {
            "version": version,
            "timestamp": now,
            "state": difference,
            "metadata": select_metadata(difference, desired_meta),
        },
        token,
    )


def snapshot(shadow: Shadow) -> JsonObject:
    """A shadow as ``/update/documents`` shows it: state, metadata, version (1.7)."""
    return {"state": shadow.state(), "metadata": shadow.metadata, "version": shadow.version}


def documents_event(
    previous: Shadow | None, current: Shadow, now: int, token: str | None
) -> JsonObject:
    """``/update/documents``; ``previous`` is left out for a new shadow."""
    event: JsonObject = {}
    if previous is not None:
        event["previous"] = snapshot(previous)
    event["current"] = snapshot(current)
    event["timestamp"] = now
    return _with_token(event, token)


def delete_document(version: int, now: int, token: str | None) -> JsonObject:
    """``/delete/accepted``: the deleted document's version (1.9)."""
    return _with_token({"version": version, "timestamp": now}, token)


def error_document(error: ShadowError, now: int) -> JsonObject:
    """A ``/rejected`` document (1.8); ``detail`` only for checks that are ours."""
    document: JsonObject = {"code": int(error.code), "message": error.message, "timestamp": now}
    if error.detail is not None and error.publish_detail:
        document["detail"] = error.detail
    return _with_token(document, error.client_token)


def not_found(thing: str, name: str | None, token: str | None) -> ShadowError:
    shown = thing if name is None else f"{thing}~{name}"
    return ShadowError(ShadowErrorCode.NOT_FOUND, f"No shadow exists with name: '{shown}'", token)
