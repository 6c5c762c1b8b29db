"""Rule deliveries survive a killed server: ``thingcore serve`` as a real process, SIGKILLed
(no shutdown, nothing drained) while deliveries are still owed, started again on the same
data directory.

With ``rules.delivery.puback_after_commit`` a QoS 1 PUBACK means the message's deliveries are
in the outbox file, so everything a device saw acknowledged reaches its targets after the
restart: at least once, a duplicate carrying the first copy's ``message_id`` (a function may
act on it once; a local queue drops it while the first copy is there). The held PUBACKs
still go out in the order of the PUBLISHes [MQTT-4.6.0-2].
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from broker.codec import PubAck, Publish, encode_packet
from registry.config import RegistrySettings
from registry.service import Registry
from rules.definition import parse_definition
from rules.local.queues import QueueStore
from rules.outbox import OWED
from rules.store import RuleStore
from tests.broker.rawclient import ClientPool, wait_for
from tests.shadows.test_persistence import kill
from tests.thingcore.test_cli import ServeProcess

N = 300
"""Messages per crash test: at 20 ms a call and two calls at once, seconds of owed work."""
SETTLE = 20.0
"""Seconds a restarted server may take to deliver everything it owes."""
HOLD = "THINGCORE_RULES__DELIVERY__PUBACK_AFTER_COMMIT"
QUICK_RETRIES = {
    # A target that is down is retried every few hundredths of a second, and never given up
    # on within a test (the error path is test_delivery.py's subject).
    "THINGCORE_RULES__DELIVERY__MAX_ATTEMPTS": "100000",
    "THINGCORE_RULES__DELIVERY__BACKOFF_INITIAL": "0.02",
    "THINGCORE_RULES__DELIVERY__BACKOFF_MAX": "0.1",
}

SINK = """
import time
from pathlib import Path

SEEN = Path({seen!r})

def handler(event, context):
    time.sleep({pause})
    with SEEN.open("a") as f:
        f.write(f"{{context.message_id}} {{event['n']}}\\n")
"""
DOWN = """
def handler(event, context):
    raise ConnectionError("the backend is down")
"""


class Server:
    """``thingcore serve`` on one data directory, started (again) with the same settings."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.data_dir = tmp_path / "var"
        self.workdir = tmp_path / "cwd"
        self.workdir.mkdir(exist_ok=True)
        self.env = env
        self.seen = tmp_path / "seen.txt"
        """What the ``sink`` function was called with: ``<message_id> <n>`` lines."""

    def rules(self, prefix: str, *actions: dict[str, Any]) -> None:
        """One rule per action, each on ``<prefix>/in/#``, stored as the CLI stores them."""
        registry = Registry(RegistrySettings(), self.data_dir).open()
        try:
            store = RuleStore(registry.db)
            for index, action in enumerate(actions):
                payload = {
                    "sql": f"SELECT * FROM '{prefix}/in/#'",
                    "awsIotSqlVersion": "2016-03-23",
                    "actions": [action],
                }
                store.put(parse_definition(f"r{index}", payload))
        finally:
            registry.close()

    def function(self, source: str, *, concurrency: int = 2) -> None:
        folder = self.data_dir / "functions"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "sink.py").write_text(textwrap.dedent(source))
        (folder / "sink.toml").write_text(f"concurrency = {concurrency}\n")

    def sink(self, pause: float = 0.02) -> None:
        self.function(SINK.format(seen=str(self.seen), pause=pause))

    @contextlib.contextmanager
    def start(self) -> Iterator[ServeProcess]:
        with ServeProcess(self.data_dir, self.workdir, **self.env) as serving:
            yield serving

    # -- what the files say ------------------------------------------------------------------

    def outbox(self) -> list[tuple[str, str, int, int]]:
        """(target, message_id, n, state) of every row, read-only (the server may run)."""
        uri = f"{(self.data_dir / 'outbox.sqlite').as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            rows = db.execute("SELECT target, message_id, body, state FROM deliveries").fetchall()
        # -1: not a rule output of these tests (an error payload, say).
        return [(t, mid, json.loads(body).get("n", -1), state) for t, mid, body, state in rows]

    def calls(self) -> list[tuple[str, int]]:
        """(message_id, n) of every call of ``sink`` so far, in the order they ended."""
        if not self.seen.exists():
            return []
        # The last piece is "" or a line being written as we read (complete next time).
        *lines, _ = self.seen.read_text().split("\n")
        return [(mid, int(n)) for mid, n in (line.split() for line in lines)]

    def queue(self, name: str) -> list[tuple[str, int]]:
        """(message_id, n) of the messages of local queue ``name`` (none before its first)."""
        if name not in self.queue_names():
            return []
        with QueueStore(self.data_dir / "queues.sqlite") as store:
            return [(m.message_id, json.loads(m.body)["n"]) for m in store.peek(name, limit=1000)]

    def queue_names(self) -> set[str]:
        path = self.data_dir / "queues.sqlite"
        if not path.exists():  # the server makes it when a rule first queues something
            return set()
        with QueueStore(path) as store:
            return {info.name for info in store.queues()}


def publish_all(
    clients: ClientPool, serving: ServeProcess, client_id: str, topic: str, count: int
) -> None:
    """``count`` QoS 1 messages ``{"n": 0..count-1}``, all sent at once; return as soon as
    the last PUBACK has arrived (an event set by paho's thread, not a poll)."""
    client = clients.paho(serving.port, client_id)
    client.client.max_inflight_messages_set(count)
    acked: set[int] = set()
    all_acked = threading.Event()

    def on_publish(_c: object, _u: object, mid: int, _rc: object, _p: object) -> None:
        acked.add(mid)
        if len(acked) == count:
            all_acked.set()

    client.client.on_publish = on_publish
    assert client.connect() == (False, 0)
    sent = [client.client.publish(topic, json.dumps({"n": n}), qos=1) for n in range(count)]
    assert all(info.rc == mqtt.MQTT_ERR_SUCCESS for info in sent)
    assert all_acked.wait(15), f"{len(acked)} of {count} PUBACKs within 15 s"


def settled(server: Server, done: Callable[[], bool]) -> None:
    """Wait until the outbox is empty and ``done()`` holds."""
    wait_for(lambda: not server.outbox() and done(), timeout=SETTLE, what="the outbox empty")


def first_ids(calls: list[tuple[str, int]]) -> dict[int, str]:
    """n -> the message_id of the first call with it; every later call must repeat it."""
    first: dict[int, str] = {}
    for mid, n in calls:
        assert first.setdefault(n, mid) == mid, f"n={n} came with two message ids"
    return first


def test_a_server_killed_mid_delivery_delivers_everything_it_acknowledged(
    tmp_path: Path, name: str, clients: ClientPool
) -> None:
    server = Server(tmp_path, **{HOLD: "true"})
    server.rules(name, {"function": {"functionName": "sink"}}, {"queue": {"queueName": "q"}})
    server.sink()
    with server.start() as serving:
        publish_all(clients, serving, f"{name}-pub", f"{name}/in/x", N)
        # Mid-delivery: some calls made (their rows deleted or about to be), two running,
        # the rest owed.
        wait_for(lambda: len(server.calls()) >= N // 4, timeout=15, what="calls of sink")
        kill(serving)
    # What the restart finds: work still owed, so the test is not passed vacuously.
    owed = server.outbox()
    called_before = {n for _, n in server.calls()}
    assert owed, "everything was delivered before the kill: nothing was tested"
    assert {target for target, *_ in owed} <= {"function:sink", "queue:q"}
    assert all(state == OWED for *_, state in owed)
    owed_to_sink = {n for target, _, n, _ in owed if target == "function:sink"}
    assert owed_to_sink | called_before == set(range(N)), "an acknowledged message was lost"
    owed_ids = {(t, n): mid for t, mid, n, _ in owed}

    with server.start() as serving:
        settled(server, lambda: {n for _, n in server.calls()} == set(range(N)))
        assert serving.interrupt() == 0, "".join(serving.stderr)

    calls = server.calls()
    first = first_ids(calls)
    assert sorted(first) == list(range(N))
    for (target, n), mid in owed_ids.items():
        if target == "function:sink":
            assert first[n] == mid, f"n={n} was redelivered with a new message id"
    queued = server.queue("q")
    assert sorted(n for _, n in queued) == list(range(N)), "missing or duplicated in the queue"
    for (target, n), mid in owed_ids.items():
        if target == "queue:q":
            assert (mid, n) in queued
    assert not any(q.endswith("-dlq") for q in server.queue_names())


def test_every_acknowledged_message_is_in_the_outbox_when_its_target_is_down(
    tmp_path: Path, name: str, clients: ClientPool
) -> None:
    """The function fails every call, so nothing leaves the outbox: at the kill, right after
    the last PUBACK, it must hold one row per acknowledged message. Restarted with the function
    mended, each arrives once, with the id its row had."""
    count = 100
    server = Server(tmp_path, **{HOLD: "true"}, **QUICK_RETRIES)
    server.rules(name, {"function": {"functionName": "sink"}})
    server.function(DOWN)
    with server.start() as serving:
        publish_all(clients, serving, f"{name}-pub", f"{name}/in/x", count)
        kill(serving)
    owed = server.outbox()
    assert sorted(n for *_, n, _ in owed) == list(range(count))
    assert {target for target, *_ in owed} == {"function:sink"}
    ids = {n: mid for _, mid, n, _ in owed}

    server.sink(pause=0)
    with server.start() as serving:
        settled(server, lambda: len(server.calls()) >= count)
        assert serving.interrupt() == 0, "".join(serving.stderr)
    calls = server.calls()
    assert sorted(n for _, n in calls) == list(range(count))
    assert {n: mid for mid, n in calls} == ids


def test_without_holding_pubacks_messages_are_acknowledged_and_delivered(
    tmp_path: Path, name: str, clients: ClientPool
) -> None:
    count = 100
    server = Server(tmp_path, **{HOLD: "false"})
    server.rules(name, {"queue": {"queueName": "q"}})
    with server.start() as serving:
        publish_all(clients, serving, f"{name}-pub", f"{name}/in/x", count)
        settled(server, lambda: len(server.queue("q")) == count)
        assert serving.interrupt() == 0, "".join(serving.stderr)
    assert sorted(n for _, n in server.queue("q")) == list(range(count))


def test_a_held_puback_holds_back_the_ones_after_it(
    tmp_path: Path, name: str, clients: ClientPool
) -> None:
    """QoS 1 PUBLISHes that no rule matches, sent behind ones whose PUBACK waits for the
    outbox's commit, are acknowledged after them: in the order of the PUBLISHes
    [MQTT-4.6.0-2]."""
    server = Server(tmp_path, **{HOLD: "true"})
    server.rules(name, {"queue": {"queueName": "q"}})
    with server.start() as serving:
        raw = clients.raw(serving.port)
        assert raw.connect(f"{name}-raw").return_code == 0
        # Matching and not, in runs of different lengths; one write, so the broker reads the
        # lot in one go while the first commit is still on its way.
        matching = [pid % 7 in (1, 2, 5) for pid in range(1, 121)]
        packets = b"".join(
            encode_packet(
                Publish(
                    f"{name}/in/x" if match else f"{name}/other",
                    json.dumps({"n": pid}).encode(),
                    qos=1,
                    packet_id=pid,
                )
            )
            for pid, match in enumerate(matching, start=1)
        )
        raw.send(packets)
        acked = [raw.recv(PubAck, timeout=10).packet_id for _ in matching]
        assert acked == list(range(1, len(matching) + 1))
        settled(server, lambda: len(server.queue("q")) == sum(matching))
        assert serving.interrupt() == 0, "".join(serving.stderr)
