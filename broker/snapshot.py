"""Snapshots of persistent sessions and retained messages (DESIGN.md, durability levels).

Pure conversion between broker state and a JSON document, plus an atomic file write. The
broker takes a snapshot periodically and on clean shutdown and restores it on start; what
happened after the last snapshot is lost on a crash, as with Mosquitto's autosave.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.message import Message
from broker.properties import Properties
from thingcore.errors import ThingcoreError

FORMAT = "thingcore-broker-snapshot"
VERSION = 1


class SnapshotError(ThingcoreError):
    """A snapshot file that cannot be read; move it aside to start with empty state."""


@dataclass(slots=True)
class SessionState:
    client_id: str
    principal: str | None = None
    thing: str | None = None
    subscriptions: dict[str, int] = field(default_factory=dict)
    inflight: list[tuple[int, int, int, bool, Message, tuple[int, ...]]] = field(
        default_factory=list
    )
    """(packet id, state, qos, retain, message, subscription identifiers) in send order."""
    queue: list[tuple[Message, int, bool, tuple[int, ...]]] = field(default_factory=list)
    expiry_interval: float | None = None
    """Seconds the session outlives its connection (None: until cleaned)."""
    inbound_qos2: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Snapshot:
    sessions: list[SessionState] = field(default_factory=list)
    retained: list[Message] = field(default_factory=list)


def _message_to_json(m: Message) -> dict[str, Any]:
    doc = {
        "topic": m.topic,
        "payload": base64.b64encode(m.payload).decode("ascii"),
        "qos": m.qos,
        "retain": m.retain,
        "client_id": m.client_id,
        "received_at": m.received_at,
    }
    if m.expires_at is not None:
        doc["expires_at"] = m.expires_at
    if m.properties is not None:
        doc["properties"] = _properties_to_json(m.properties)
    return doc


def _properties_to_json(p: Properties) -> dict[str, Any]:
    """The application properties a stored message carries (MQTT 5) [3.3.2.3]."""
    doc: dict[str, Any] = {}
    if p.payload_format_indicator is not None:
        doc["payload_format_indicator"] = p.payload_format_indicator
    if p.message_expiry_interval is not None:
        doc["message_expiry_interval"] = p.message_expiry_interval
    if p.content_type is not None:
        doc["content_type"] = p.content_type
    if p.response_topic is not None:
        doc["response_topic"] = p.response_topic
    if p.correlation_data is not None:
        doc["correlation_data"] = base64.b64encode(p.correlation_data).decode("ascii")
    if p.user_properties:
        doc["user_properties"] = [list(pair) for pair in p.user_properties]
    return doc


def _properties_from_json(d: dict[str, Any]) -> Properties:
    correlation = d.get("correlation_data")
    return Properties(
        payload_format_indicator=d.get("payload_format_indicator"),
        message_expiry_interval=d.get("message_expiry_interval"),
        content_type=d.get("content_type"),
        response_topic=d.get("response_topic"),
        correlation_data=None
        if correlation is None
        else base64.b64decode(correlation, validate=True),
        user_properties=[(str(k), str(v)) for k, v in d.get("user_properties", [])],
    )


def _message_from_json(d: dict[str, Any]) -> Message:
    return Message(
        d["topic"],
        # validate=True: characters outside the alphabet are damage, not something to skip.
        base64.b64decode(d["payload"], validate=True),
        int(d["qos"]),
        bool(d["retain"]),
        client_id=d.get("client_id"),
        received_at=float(d["received_at"]),
        expires_at=None if d.get("expires_at") is None else float(d["expires_at"]),
        properties=None if d.get("properties") is None else _properties_from_json(d["properties"]),
    )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def to_json(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "sessions": [
            {
                "client_id": s.client_id,
                "principal": s.principal,
                "thing": s.thing,
                "subscriptions": s.subscriptions,
                "expiry_interval": s.expiry_interval,
                "inflight": [
                    {
                        "pid": pid,
                        "state": st,
                        "qos": q,
                        "retain": r,
                        "ids": list(ids),
                        "message": _message_to_json(m),
                    }
                    for pid, st, q, r, m, ids in s.inflight
                ],
                "queue": [
                    {"qos": q, "retain": r, "ids": list(ids), "message": _message_to_json(m)}
                    for m, q, r, ids in s.queue
                ],
                "inbound_qos2": s.inbound_qos2,
            }
            for s in snapshot.sessions
        ],
        "retained": [_message_to_json(m) for m in snapshot.retained],
    }


def from_json(doc: Any) -> Snapshot:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SnapshotError("not a thingcore broker snapshot")
    if doc.get("version") != VERSION:
        raise SnapshotError(f"snapshot version {doc.get('version')} is not supported")
    try:
        sessions = [
            SessionState(
                client_id=s["client_id"],
                principal=s.get("principal"),
                thing=s.get("thing"),
                subscriptions={str(k): int(v) for k, v in s["subscriptions"].items()},
                inflight=[
                    (
                        int(e["pid"]),
                        int(e["state"]),
                        int(e["qos"]),
                        bool(e["retain"]),
                        _message_from_json(e["message"]),
                        tuple(int(i) for i in e.get("ids", ())),
                    )
                    for e in s["inflight"]
                ],
                queue=[
                    (
                        _message_from_json(e["message"]),
                        int(e["qos"]),
                        bool(e["retain"]),
                        tuple(int(i) for i in e.get("ids", ())),
                    )
                    for e in s["queue"]
                ],
                expiry_interval=_optional_float(s.get("expiry_interval")),
                inbound_qos2=[int(p) for p in s["inbound_qos2"]],
            )
            for s in doc["sessions"]
        ]
        retained = [_message_from_json(m) for m in doc["retained"]]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SnapshotError(f"snapshot is damaged: {exc!r}") from exc
    return Snapshot(sessions, retained)


def write_atomic(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` so that a crash leaves either the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read(path: Path) -> Snapshot | None:
    """The snapshot at ``path``, or None when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise SnapshotError(
            f"{path} is not UTF-8 text ({exc.reason}); move it aside to start with empty state"
        ) from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SnapshotError(
            f"{path} is not valid JSON ({exc}); move it aside to start with empty state"
        ) from exc
    try:
        return from_json(doc)
    except SnapshotError as exc:
        raise SnapshotError(f"{path}: {exc}; move it aside to start with empty state") from exc
