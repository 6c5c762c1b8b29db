"""broker/snapshot.py: the JSON form of sessions and retained messages, the atomic write, and
refusing damaged files with a message that says what to do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.message import Message
from broker.properties import Properties
from broker.snapshot import (
    FORMAT,
    VERSION,
    SessionState,
    Snapshot,
    SnapshotError,
    from_json,
    read,
    to_json,
    write_atomic,
)


def fields(m: Message) -> tuple[object, ...]:
    """What a snapshot keeps of a message."""
    return (
        m.topic,
        m.payload,
        m.qos,
        m.retain,
        m.client_id,
        m.received_at,
        m.expires_at,
        m.properties,
    )


def session_fields(s: SessionState) -> tuple[object, ...]:
    return (
        s.client_id,
        s.subscriptions,
        [(pid, st_, q, r, fields(m), ids) for pid, st_, q, r, m, ids in s.inflight],
        [(fields(m), q, r, ids) for m, q, r, ids in s.queue],
        s.inbound_qos2,
        s.expiry_interval,
        s.principal,
        s.thing,
    )


def snapshot_fields(snap: Snapshot) -> tuple[object, ...]:
    return ([session_fields(s) for s in snap.sessions], [fields(m) for m in snap.retained])


def sample() -> Snapshot:
    binary = bytes(range(256))
    return Snapshot(
        sessions=[
            SessionState(
                client_id="dev-1",
                subscriptions={"a/+": 1, "$share/g/b/#": 2, "é/€": 0},
                inflight=[
                    (
                        7,
                        0,
                        1,
                        False,
                        Message("a/x", binary, 1, client_id="pub", received_at=1.5),
                        (),
                    ),
                    (8, 1, 2, True, Message("a/y", b"", 2, True, received_at=2.25), (4, 9)),
                ],
                queue=[
                    (Message("a/z", b"\x00\xff\x00", 1, received_at=3.0), 1, False, ()),
                    (Message("a/e", b"e", 1, received_at=3.0, expires_at=9.5), 1, True, (12,)),
                ],
                expiry_interval=3600.0,
                inbound_qos2=[3, 65535],
            ),
            SessionState(client_id=""),
        ],
        retained=[
            Message("r/1", b"\x80\x81 not utf-8", 1, True, client_id="c", received_at=1e9),
            Message("r/2", "ünïcode".encode(), 0, True, received_at=0.0),
            Message(
                "r/3",
                b"{}",
                1,
                True,
                received_at=5.0,
                properties=Properties(
                    payload_format_indicator=1,
                    message_expiry_interval=600,
                    content_type="application/json",
                    response_topic="reply/r3",
                    correlation_data=b"\x00\x01",
                    user_properties=[("k", "v"), ("k", "v2")],
                ),
            ),
        ],
    )


def test_round_trip_through_json_text() -> None:
    snap = sample()
    doc = to_json(snap)
    assert doc["format"] == FORMAT
    assert doc["version"] == VERSION
    text = json.dumps(doc)  # only JSON types inside
    back = from_json(json.loads(text))
    assert snapshot_fields(back) == snapshot_fields(snap)
    assert isinstance(back.retained[0].payload, bytes)


def test_payloads_are_base64_in_the_document() -> None:
    doc = to_json(Snapshot(retained=[Message("t", b"\xff\x00", 0, True, received_at=1.0)]))
    assert doc["retained"][0]["payload"] == "/wA="


def test_empty_snapshot_round_trips() -> None:
    back = from_json(json.loads(json.dumps(to_json(Snapshot()))))
    assert back.sessions == []
    assert back.retained == []


def test_write_atomic_then_read(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "snapshot.json"
    write_atomic(path, to_json(sample()))
    back = read(path)
    assert back is not None
    assert snapshot_fields(back) == snapshot_fields(sample())
    assert sorted(p.name for p in path.parent.iterdir()) == ["snapshot.json"]  # no .tmp left


def test_write_atomic_replaces_previous_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json"
    write_atomic(path, to_json(sample()))
    write_atomic(path, to_json(Snapshot()))
    back = read(path)
    assert back is not None
    assert back.sessions == []
    assert back.retained == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshot.json"]


def test_read_missing_file_is_none(tmp_path: Path) -> None:
    assert read(tmp_path / "absent.json") is None


@pytest.mark.parametrize("text", ["{not json", "", '{"format": ', "\x00"])
def test_read_damaged_json(tmp_path: Path, text: str) -> None:
    path = tmp_path / "snapshot.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SnapshotError) as info:
        read(path)
    message = str(info.value)
    assert str(path) in message
    assert "not valid JSON" in message
    assert "move it aside" in message


def test_read_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SnapshotError, match="move it aside"):
        read(path)


@pytest.mark.parametrize(
    "doc",
    [[], "snapshot", 1, None, {}, {"format": "something-else", "version": 1}, {"version": 1}],
)
def test_wrong_format(doc: Any) -> None:
    with pytest.raises(SnapshotError, match="not a thingcore broker snapshot"):
        from_json(doc)


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_wrong_version(version: Any) -> None:
    doc = to_json(Snapshot())
    doc["version"] = version
    with pytest.raises(SnapshotError, match=f"version {version} is not supported"):
        from_json(doc)


def test_wrong_format_through_read(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json"
    path.write_text('{"format": "other"}', encoding="utf-8")
    with pytest.raises(SnapshotError, match="not a thingcore broker snapshot"):
        read(path)


def damaged(change: str) -> dict[str, Any]:
    doc = to_json(sample())
    session = doc["sessions"][0]
    match change:
        case "no-sessions":
            del doc["sessions"]
        case "no-retained":
            del doc["retained"]
        case "sessions-not-list":
            doc["sessions"] = 5
        case "subscriptions-list":
            session["subscriptions"] = ["a/+"]
        case "qos-not-int":
            session["subscriptions"]["a/+"] = "high"
        case "bad-base64-padding":
            doc["retained"][0]["payload"] = "abc"
        case "no-topic":
            del doc["retained"][0]["topic"]
        case "no-received-at":
            del session["inflight"][0]["message"]["received_at"]
        case "pid-null":
            session["inflight"][0]["pid"] = None
        case "queue-entry-string":
            session["queue"][0] = "oops"
        case "inbound-not-ints":
            session["inbound_qos2"] = ["x"]
    return doc


@pytest.mark.parametrize(
    "change",
    [
        "no-sessions",
        "no-retained",
        "sessions-not-list",
        "subscriptions-list",
        "qos-not-int",
        "bad-base64-padding",
        "no-topic",
        "no-received-at",
        "pid-null",
        "queue-entry-string",
        "inbound-not-ints",
    ],
)
def test_damaged_structure(change: str) -> None:
    with pytest.raises(SnapshotError, match="snapshot is damaged"):
        from_json(damaged(change))


@pytest.mark.parametrize("payload", ["!!!", "QUJD!", "QU JD"])
def test_payload_with_characters_outside_base64_is_damage(payload: str) -> None:
    doc = to_json(sample())
    doc["retained"][0]["payload"] = payload
    with pytest.raises(SnapshotError, match="snapshot is damaged"):
        from_json(doc)


# --------------------------------------------------------------------------------------------
# Property: any messages round trip
# --------------------------------------------------------------------------------------------

messages = st.builds(
    Message,
    st.text(max_size=20),
    st.binary(max_size=64),
    st.integers(0, 2),
    st.booleans(),
    client_id=st.none() | st.text(max_size=10),
    received_at=st.floats(allow_nan=False, allow_infinity=False),
    expires_at=st.none() | st.floats(allow_nan=False, allow_infinity=False),
)
identifiers = st.lists(st.integers(1, 268_435_455), max_size=3).map(tuple)
sessions = st.builds(
    SessionState,
    client_id=st.text(max_size=10),
    subscriptions=st.dictionaries(st.text(min_size=1, max_size=8), st.integers(0, 2), max_size=3),
    inflight=st.lists(
        st.tuples(
            st.integers(1, 65535),
            st.integers(0, 1),
            st.integers(1, 2),
            st.booleans(),
            messages,
            identifiers,
        ),
        max_size=3,
    ),
    queue=st.lists(st.tuples(messages, st.integers(0, 2), st.booleans(), identifiers), max_size=3),
    expiry_interval=st.none() | st.floats(0, 1e9),
    inbound_qos2=st.lists(st.integers(1, 65535), max_size=3),
)


@given(st.lists(sessions, max_size=3), st.lists(messages, max_size=4))
def test_round_trip_property(sessions_: list[SessionState], retained: list[Message]) -> None:
    snap = Snapshot(sessions_, retained)
    back = from_json(json.loads(json.dumps(to_json(snap))))
    assert snapshot_fields(back) == snapshot_fields(snap)
