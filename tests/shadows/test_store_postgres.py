"""``ShadowStore`` on the real databases: SQLite and PostgreSQL (test ids ``sqlite`` and
``postgresql``) through the registry's fixtures (``make_registry``): one migrated database per
backend for the run (a ``tc_test_<random>`` schema on PostgreSQL), emptied before each test;
PostgreSQL missing is a skip, or a failure under ``CI=true``.

Beyond the single-store behaviour (versions, named shadows, paging, history, rejections, the
outbox), two stores with their own engines on one database, as two server processes would
be, apply updates to one shadow from two threads: the write lock (SQLite ``BEGIN IMMEDIATE``,
PostgreSQL an advisory lock per shadow) must serialise them so that no version forks.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import text

import shadows.models  # noqa: F401 - registers the shadow tables, so each test starts empty
from shadows.batch import Kind, Op, Result
from shadows.config import ShadowSettings
from shadows.document import parse_update
from shadows.names import ShadowKey
from shadows.options import DEFAULT, ShadowOptions, parse_options
from shadows.store import SHADOW_CHANGE, ShadowStore
from tests.identity.apphost import WAIT
from tests.registry.conftest import MakeRegistry

HISTORY_3 = parse_options({"history": 3})
REJECTIONS = parse_options({"rejections": {"enabled": True}})


@pytest.fixture
def thing(request: pytest.FixtureRequest) -> str:
    """A thing name derived from the test (backend id included)."""
    readable = "".join(c if c.isalnum() else "-" for c in request.node.name)
    return readable.strip("-")[:100]


@pytest.fixture
def store(make_registry: MakeRegistry) -> ShadowStore:
    return ShadowStore(make_registry().db, ShadowSettings())


def update_op(
    store: ShadowStore,
    key: ShadowKey,
    payload: dict[str, Any],
    *,
    options: ShadowOptions = DEFAULT,
    client_id: str | None = None,
) -> Op:
    request = parse_update(json.dumps(payload).encode(), store.limits)
    return Op(Kind.UPDATE, key, request, client_id=client_id, options=options)


def update(
    store: ShadowStore,
    key: ShadowKey,
    payload: dict[str, Any],
    *,
    options: ShadowOptions = DEFAULT,
    client_id: str | None = None,
    outbox: bool = False,
) -> Result:
    [result] = store.run(
        [update_op(store, key, payload, options=options, client_id=client_id)], outbox=outbox
    )
    return result


def accepted(result: Result) -> dict[str, Any]:
    assert result.error is None, result.error
    assert result.document is not None
    return result.document


def one(store: ShadowStore, kind: Kind, key: ShadowKey, token: str | None = None) -> Result:
    [result] = store.run([Op(kind, key, client_token=token)])
    return result


# -- one store ------------------------------------------------------------------------------


def test_create_update_get_delete_and_the_version_continues(store: ShadowStore, thing: str) -> None:
    key = ShadowKey.of(thing)
    assert store.get(key) is None
    assert accepted(update(store, key, {"state": {"desired": {"color": "red"}}}))["version"] == 1
    assert accepted(update(store, key, {"state": {"reported": {"color": "blue"}}}))["version"] == 2

    stored = store.get(key)
    assert stored is not None and stored.exists
    assert (stored.version, stored.desired, stored.reported) == (
        2,
        {"color": "red"},
        {"color": "blue"},
    )
    assert set(stored.metadata) == {"desired", "reported"}
    document = accepted(one(store, Kind.GET, key, "g1"))
    assert document["version"] == 2 and document["clientToken"] == "g1"
    assert document["state"] == {
        "desired": {"color": "red"},
        "reported": {"color": "blue"},
        "delta": {"color": "red"},
    }

    deleted = one(store, Kind.DELETE, key, "d1")
    assert accepted(deleted)["version"] == 2
    assert deleted.messages[0][0] == f"$aws/things/{thing}/shadow/delete/accepted"
    tombstone = store.get(key)
    assert tombstone is not None and not tombstone.exists and tombstone.version == 2
    missing = one(store, Kind.GET, key)
    assert missing.error is not None and missing.error.code == 404
    again = one(store, Kind.DELETE, key)
    assert again.error is not None and again.error.code == 404

    # Recreated within 48 hours: the version continues, the old state is gone.
    recreated = accepted(update(store, key, {"state": {"reported": {"on": True}}}))
    assert recreated["version"] == 3
    fresh = store.get(key)
    assert fresh is not None and fresh.exists
    assert (fresh.desired, fresh.reported, fresh.version) == ({}, {"on": True}, 3)


def test_updates_in_one_batch_apply_in_order_and_conflict_as_if_committed_one_by_one(
    store: ShadowStore, thing: str
) -> None:
    key = ShadowKey.of(thing)
    ops = [
        update_op(store, key, {"state": {"reported": {"n": 1}}}),
        update_op(store, key, {"state": {"reported": {"n": 2}}, "version": 1}),
        update_op(store, key, {"state": {"reported": {"n": 3}}, "version": 1}),
        Op(Kind.GET, key),
    ]
    first, second, stale, got = store.run(ops)
    assert accepted(first)["version"] == 1
    assert accepted(second)["version"] == 2
    assert stale.error is not None and stale.error.code == 409
    assert stale.messages[0][0] == f"$aws/things/{thing}/shadow/update/rejected"
    assert accepted(got)["state"] == {"reported": {"n": 2}}
    stored = store.get(key)
    assert stored is not None and (stored.version, stored.reported) == (2, {"n": 2})


def test_named_and_classic_shadows_of_a_thing_are_separate(store: ShadowStore, thing: str) -> None:
    classic, named = ShadowKey.of(thing), ShadowKey.of(thing, "config")
    update(store, classic, {"state": {"reported": {"kind": "classic"}}})
    update(store, classic, {"state": {"reported": {"kind": "classic", "n": 2}}})
    result = update(store, named, {"state": {"desired": {"kind": "named"}}})
    assert accepted(result)["version"] == 1
    topics = [topic for topic, _ in result.messages]
    assert topics == [
        f"$aws/things/{thing}/shadow/name/config/update/accepted",
        f"$aws/things/{thing}/shadow/name/config/update/delta",
        f"$aws/things/{thing}/shadow/name/config/update/documents",
    ]

    stored_classic, stored_named = store.get(classic), store.get(named)
    assert stored_classic is not None and stored_named is not None
    assert (stored_classic.version, stored_classic.reported) == (2, {"kind": "classic", "n": 2})
    assert (stored_named.version, stored_named.desired) == (1, {"kind": "named"})

    assert accepted(one(store, Kind.DELETE, named))["version"] == 1
    missing = one(store, Kind.GET, named)
    assert missing.error is not None
    assert missing.error.message == f"No shadow exists with name: '{thing}~config'"
    assert accepted(one(store, Kind.GET, classic))["version"] == 2


def test_list_shadows_pages_in_thing_then_name_order(store: ShadowStore, thing: str) -> None:
    # Lower-case letters and digits only: the same order under any collation.
    things = [f"{thing}-{suffix}" for suffix in ("a", "b", "c")]
    keys = [
        ShadowKey.of(things[0]),
        ShadowKey.of(things[0], "alpha"),
        ShadowKey.of(things[0], "beta"),
        ShadowKey.of(things[1], "gamma"),
        ShadowKey.of(things[2]),
        ShadowKey.of(things[2], "delta"),
    ]
    gone = ShadowKey.of(things[1])
    for key in reversed([*keys, gone]):
        update(store, key, {"state": {"reported": {"key": str(key)}}})
    one(store, Kind.DELETE, gone)

    everything = store.list_shadows()
    assert [(s.thing, s.name) for s in everything] == [(k.thing, k.name) for k in keys]
    assert all(s.version == 1 for s in everything)

    paged: list[tuple[str, str | None]] = []
    after: tuple[str, str] | None = None
    for _ in range(len(keys) + 1):
        page = store.list_shadows(limit=4, after=after)
        paged += [(s.thing, s.name) for s in page]
        if len(page) < 4:
            break
        # The classic shadow is stored with name '' and listed with name None.
        after = (page[-1].thing, page[-1].name or "")
    assert paged == [(k.thing, k.name) for k in keys]

    first_thing = store.list_shadows(things[0], limit=2)
    assert [s.name for s in first_thing] == [None, "alpha"]
    rest = store.list_shadows(things[0], limit=2, after=(things[0], "alpha"))
    assert [s.name for s in rest] == ["beta"]
    assert store.list_shadows(things[1]) == [s for s in everything if s.thing == things[1]]


def test_history_keeps_exactly_the_last_three_versions(store: ShadowStore, thing: str) -> None:
    key = ShadowKey.of(thing, "tracked")
    for n in range(1, 6):
        update(store, key, {"state": {"reported": {"n": n}}}, options=HISTORY_3, client_id="dev")
    kept = store.history(key)
    assert [h["version"] for h in kept] == [5, 4, 3]
    assert [h["document"]["state"] for h in kept] == [{"reported": {"n": n}} for n in (5, 4, 3)]
    assert all(h["document"]["version"] == h["version"] for h in kept)
    assert all(h["clientId"] == "dev" for h in kept)

    # Several versions in one batch are trimmed alike.
    store.run(
        [
            update_op(
                store,
                key,
                {"state": {"reported": {"n": n}}, "clientToken": f"t{n}"},
                options=HISTORY_3,
            )
            for n in range(6, 10)
        ]
    )
    kept = store.history(key)
    assert [h["version"] for h in kept] == [9, 8, 7]
    assert [h["clientToken"] for h in kept] == ["t9", "t8", "t7"]
    assert store.history(key, limit=1)[0]["version"] == 9

    # Other shadows keep no history unless their options say so.
    other = ShadowKey.of(thing)
    update(store, other, {"state": {"reported": {"n": 1}}})
    assert store.history(other) == []


def test_a_recreated_shadow_shows_no_history_of_its_earlier_life(
    store: ShadowStore, thing: str
) -> None:
    key = ShadowKey.of(thing)

    def write(n: int, token: str) -> int:
        payload = {"state": {"reported": {"n": n}}, "clientToken": token}
        return int(accepted(update(store, key, payload, options=HISTORY_3))["version"])

    assert [write(n, f"old-{n}") for n in range(1, 6)] == [1, 2, 3, 4, 5]
    accepted(one(store, Kind.DELETE, key))
    # 49 hours later AWS has forgotten the deleted version; the row is aged instead of waiting.
    with store.db.engine.begin() as conn:
        conn.execute(
            text("UPDATE shadows SET updated_at = updated_at - :age WHERE thing = :t"),
            {"age": 49 * 3600, "t": thing},
        )
    assert write(100, "new-1") == 1
    kept = store.history(key)
    assert [(h["version"], h["clientToken"]) for h in kept] == [(1, "new-1")]
    assert kept[0]["document"]["state"] == {"reported": {"n": 100}}
    assert [write(n, f"new-{n - 99}") for n in (101, 102)] == [2, 3]
    kept = store.history(key)
    assert [(h["version"], h["clientToken"]) for h in kept] == [
        (3, "new-3"),
        (2, "new-2"),
        (1, "new-1"),
    ]
    assert [h["document"]["state"]["reported"]["n"] for h in kept] == [102, 101, 100]


def test_refused_desired_values_are_recorded_as_rejections(store: ShadowStore, thing: str) -> None:
    classic, named = ShadowKey.of(thing), ShadowKey.of(thing, "cfg")
    for key in (classic, named):
        update(store, key, {"state": {"desired": {"mode": "turbo", "fan": 3}}}, options=REJECTIONS)
    refusal = {
        "state": {"reported": {"fan": 3}},
        "rejected": {"mode": "unsupported", "unknown": "ignored: never desired"},
    }
    result = update(store, classic, refusal, options=REJECTIONS, client_id="device-1")
    assert accepted(result)["version"] == 2
    update(store, named, {**refusal, "rejected": {"mode": {"why": 42}}}, options=REJECTIONS)

    stored = store.get(classic)
    assert stored is not None and stored.desired == {"fan": 3}  # the refused key is cleared

    rows = store.rejections(thing)
    assert [(r["shadow"], r["path"], r["value"], r["version"]) for r in rows] == [
        ("cfg", "mode", "turbo", 2),
        (None, "mode", "turbo", 2),
    ]
    assert rows[0]["reason"] == '{"why": 42}'
    assert rows[1]["reason"] == "unsupported" and rows[1]["clientId"] == "device-1"
    assert [r["shadow"] for r in store.rejections(thing, "cfg")] == ["cfg"]
    assert store.rejections(thing, limit=1) == rows[:1]
    assert store.rejections(f"{thing}-other") == []


def test_the_outbox_stores_messages_and_announces_them_with_a_shadow_change(
    store: ShadowStore, make_registry: MakeRegistry, thing: str
) -> None:
    registry = make_registry()
    key = ShadowKey.of(thing)
    start = store.last_message_id()
    mark = registry.last_change()

    result = update(store, key, {"state": {"desired": {"mode": "eco"}}}, outbox=True)
    rows = store.messages_after(start)
    assert [(topic, payload) for _, topic, payload in rows] == result.messages
    assert [topic.rsplit("/", 1)[1] for _, topic, _ in rows] == ["accepted", "delta", "documents"]
    ids = [message_id for message_id, _, _ in rows]
    assert ids == sorted(ids) and ids[0] > start
    assert store.last_message_id() == ids[-1]
    assert store.messages_after(ids[0], limit=1) == rows[1:2]
    changes = [(c.kind, c.key) for c in registry.changes_after(mark)]
    assert changes == [(SHADOW_CHANGE, f"$aws/things/{thing}/shadow/update/accepted")]

    # A refused request writes nothing to publish; without outbox nothing is stored either.
    refused = store.run(
        [update_op(store, key, {"state": {"reported": {}}, "version": 7})], outbox=True
    )
    assert refused[0].error is not None and refused[0].error.code == 409
    update(store, key, {"state": {"reported": {"mode": "eco"}}})
    assert store.last_message_id() == ids[-1]
    assert len(registry.changes_after(mark)) == 1

    assert store.prune_messages(time.time() - 3600) == 0
    assert store.prune_messages(time.time() + 1) == 3
    assert store.messages_after(start) == []
    # New messages after a prune still get new, higher ids (a follower never rereads).
    update(store, key, {"state": {"desired": {"mode": "max"}}}, outbox=True)
    assert min(i for i, _, _ in store.messages_after(start)) > ids[-1]


def test_delete_thing_shadows_removes_the_thing_s_shadows_history_and_rejections(
    store: ShadowStore, thing: str
) -> None:
    mine = [ShadowKey.of(thing), ShadowKey.of(thing, "a"), ShadowKey.of(thing, "b")]
    other = ShadowKey.of(f"{thing}-other")
    options = parse_options({"history": 5, "rejections": {"enabled": True}})
    for key in (*mine, other):
        update(store, key, {"state": {"desired": {"x": 1}}}, options=options)
        update(store, key, {"state": {}, "rejected": {"x": "no"}}, options=options)

    assert store.delete_thing_shadows(thing) == 3
    assert all(store.get(key) is None for key in mine)
    assert all(store.history(key) == [] for key in mine)
    assert store.rejections(thing) == []
    assert store.list_shadows(thing) == []
    assert store.delete_thing_shadows(thing) == 0
    # A new shadow of that thing starts again at version 1.
    assert accepted(update(store, mine[0], {"state": {"reported": {"x": 1}}}))["version"] == 1

    kept = store.get(other)
    assert kept is not None and kept.version == 2
    assert [h["version"] for h in store.history(other)] == [2, 1]
    assert len(store.rejections(other.thing)) == 1


# -- two stores on one database -------------------------------------------------------------

UPDATES_EACH = 100


def test_two_stores_on_one_database_never_fork_a_shadow_s_versions(
    make_registry: MakeRegistry, thing: str
) -> None:
    """Two engines (two processes' worth) in two threads, each applying single-op updates
    to one shadow: every update gets its own version and none is lost."""
    stores = [ShadowStore(make_registry().db, ShadowSettings()) for _ in range(2)]
    assert stores[0].db.engine is not stores[1].db.engine
    key = ShadowKey.of(thing, "contended")
    options = parse_options({"history": 2 * UPDATES_EACH})
    start = threading.Barrier(2)

    def writer(index: int) -> list[int]:
        store = stores[index]
        ops = [
            update_op(store, key, {"state": {"reported": {f"w{index}": n}}}, options=options)
            for n in range(UPDATES_EACH)
        ]
        start.wait(WAIT)
        return [accepted(store.run([op])[0])["version"] for op in ops]

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(writer, index) for index in range(2)]
        versions = [future.result(timeout=60) for future in futures]

    total = 2 * UPDATES_EACH
    for own in versions:
        assert own == sorted(own) and len(set(own)) == UPDATES_EACH
    assert sorted(versions[0] + versions[1]) == list(range(1, total + 1))
    stored = stores[0].get(key)
    assert stored is not None and stored.version == total
    assert stored.reported == {"w0": UPDATES_EACH - 1, "w1": UPDATES_EACH - 1}
    # Each version's snapshot holds the other writer's latest value at that moment: walking
    # the history, each writer's counter only ever grows by one.
    history = list(reversed(stores[1].history(key, limit=total)))
    assert [h["version"] for h in history] == list(range(1, total + 1))
    last = {"w0": -1, "w1": -1}
    for entry in history:
        reported = entry["document"]["state"]["reported"]
        changed = [w for w in last if reported.get(w, -1) != last[w]]
        assert len(changed) == 1 and reported[changed[0]] == last[changed[0]] + 1, entry
        last = {w: reported.get(w, -1) for w in last}
