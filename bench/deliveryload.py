"""The rules-delivery workload: what delivering rule actions through the durable outbox costs.

Six brokers, one after the other, the same devices against each: 50 device connections
(MQTT 3.1.1, QoS 1, each keeping up to 20 PUBLISHes unacknowledged) send a 200-byte JSON
reading each (`bench.rulesload.payload`) on `bench/<tag>/<variant>/d<NN>/t`. What counts is
where the messages end up (the *sink*):

- `mosquitto` (with `max_queued_messages` 100,000: `mosquitto_deep_queue` says why) and
  `thingcore, no rules`: one subscriber (QoS 1) on `bench/<tag>/#`;
- `republish`: thingcore with the rule `SELECT * FROM 'bench/<tag>/rp/+/t'` republishing
  at QoS 1 to `out/${topic(2)}/${topic(4)}`, one subscriber (QoS 1) on `out/<tag>/#`;
- `queue`: thingcore with the rule `SELECT * FROM 'bench/<tag>/q/+/t'` and a `queue` action
  (`queueName` `bench_<tag>`); the sink is the local queue file `<data dir>/queues.sqlite`,
  read (read-only) by the orchestrator;
- `queue, PUBACK after commit`: the same with `rules.delivery.puback_after_commit` on
  (`THINGCORE_RULES__DELIVERY__PUBACK_AFTER_COMMIT=true`, the broker kind
  `thingcore-rules-puback`);
- `RabbitMQ (amqp action)` (issue 9: a rule publishing to RabbitMQ against one queueing
  locally): thingcore with the rule `SELECT * FROM 'bench/<tag>/amqp/+/t'` and an `amqp`
  action `{"exchange": "", "routingKey": "bench_amqp_<tag>", "persistent": true}` (the
  default exchange routes it to the queue of that name; publisher confirms, `message_id` =
  the delivery id). The action names no `url`: the broker kind `thingcore-rules-amqp` sets
  `rules.amqp.url` (`THINGCORE_RULES__AMQP__URL`) to the sink's RabbitMQ,
  `THINGCORE_BENCH_AMQP_URL` or else `amqp://guest:guest@127.0.0.1:5672/`, so no password
  lands in the results. The sink (`bench.amqpsink`): before the runs the orchestrator
  declares the durable queue `bench_amqp_<tag>` there, consumes it (no acknowledgements) on
  a thread of its own, and deletes it after the runs. A message arrives when the consumer
  reads it, timed with the same monotonic clock as the payload's send stamp (so PUBLISH ->
  sink latency is arrival - stamp, where the queue sink's is the queue's `sent_at` - stamp)
  and counted by the stamp's run; copies of one delivery (the same `message_id`) count
  once and are noted. RabbitMQ is not the benchmark's to pin: it runs wherever the system
  puts it (on this 2-core machine: also on the broker's core); its CPU is kept in the
  details (`rabbitmq_cpu`, taken out of *other*), and the consumer's (the orchestrator's
  process) counts as load-generator CPU. RabbitMQ unreachable: the amqp rule is left out,
  and the variant is reported as *skipped* with the reason (every other variant runs).

Each thingcore with rules gets the republish and queue rules (`rules`, applied with
`thingcore rules apply` before it starts), the amqp variant's also the amqp rule (only that
one: the others do not depend on RabbitMQ or on the amqp action); the devices' topics match
one of them only.

Three runs per broker: a warm-up (unrecorded), a fixed-rate run (1,000 msg/s for 3 s: PUBACK
latency and PUBLISH -> sink latency) and a closed-loop run (100,000 messages, as fast as the
PUBACKs come back: throughput from the first PUBLISH written to the last message at the sink,
and PUBACK latency under that load). A subscriber sink also limits the messages sent and not
yet received to 500 (thingcore's queue per subscriber holds 1,000: a closed loop could
otherwise overflow it and lose messages); a queue sink (local or RabbitMQ) has no such limit,
the outbox keeps what the queue has not taken yet. Ratios between brokers are worked out as
the later ones finish (the runner starts them in the order of `VARIANTS`): throughput ÷
mosquitto, ÷ thingcore without rules, ÷ republish and ÷ queue (the amqp variant's is "amqp ÷
local queue").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from bench import amqpsink, mqttwire, rulesload
from bench.brokers import (
    Launch,
    LaunchContext,
    Launcher,
    RunningBroker,
    mosquitto,
    thingcore_rules,
)
from bench.loadgen import ClientError, Publisher, Subscriber
from bench.measurement import Measurement
from bench.stats import COARSE_NS, Histogram, Recorder, StepStats
from bench.workers import (
    ASYNC_ROLES,
    CONNECT_TIMEOUT,
    Channel,
    Failed,
    Ready,
    Stop,
    Worker,
    WorkerError,
    connect_all,
)

if TYPE_CHECKING:
    from bench.report import Metric
    from bench.workloads import CpuMeter, Log, Options

monotonic_ns = time.monotonic_ns

SQL_VERSION = "2016-03-23"
REPUBLISH_RULE = "bench_delivery_republish"
QUEUE_RULE = "bench_delivery_queue"
AMQP_RULE = "bench_delivery_amqp"
REPUBLISH_TEMPLATE = "out/${topic(2)}/${topic(4)}"
PUBACK_KIND = "thingcore-rules-puback"
AMQP_KIND = "thingcore-rules-amqp"
MOSQUITTO_KIND = "mosquitto-deep-queue"
MOSQUITTO_QUEUE = 100_000
PUBACK_AFTER_COMMIT_ENV = "THINGCORE_RULES__DELIVERY__PUBACK_AFTER_COMMIT"
AMQP_URL_SETTING_ENV = "THINGCORE_RULES__AMQP__URL"
UNLIMITED = 1 << 62  # a publisher's backlog limit that never gives a message up
POLL = 0.02  # seconds between reads of the queue file


# --- the variants, their topics and rules -------------------------------------------------


@dataclass(frozen=True)
class Variant:
    label: str  # the report's column
    kind: str  # a key of bench.brokers.LAUNCHERS
    segment: str  # the topic level naming the variant's traffic
    sink: str  # "subscriber", "queue" (the local queue file) or "amqp" (a RabbitMQ queue)
    republish: bool = False  # the subscriber takes the rule's republished messages


MOSQUITTO = Variant("mosquitto", MOSQUITTO_KIND, "mq", "subscriber")
PLAIN = Variant("thingcore, no rules", "thingcore", "tc", "subscriber")
REPUBLISH = Variant("republish", "thingcore-rules", "rp", "subscriber", republish=True)
QUEUE = Variant("queue", "thingcore-rules", "q", "queue")
QUEUE_PUBACK = Variant("queue, PUBACK after commit", PUBACK_KIND, "q", "queue")
AMQP = Variant("RabbitMQ (amqp action)", AMQP_KIND, "amqp", "amqp")
VARIANTS = (MOSQUITTO, PLAIN, REPUBLISH, QUEUE, QUEUE_PUBACK, AMQP)
BROKERS = tuple((v.kind, v.label) for v in VARIANTS)
NAME = "rules-delivery"
# The runner names each broker it starts `<workload>-<label>`, spaces made dashes.
BY_BROKER_LABEL = {f"{NAME}-{v.label.replace(' ', '-')}": v for v in VARIANTS}


def device_topic(tag: str, segment: str, device: int) -> str:
    return f"bench/{tag}/{segment}/d{device:03d}/t"


def republish_topic(tag: str, device: int) -> str:
    """Where the republish rule sends a device's messages (`REPUBLISH_TEMPLATE` expanded)."""
    return f"out/{tag}/d{device:03d}"


def queue_name(tag: str) -> str:
    return f"bench_{tag}"


def amqp_queue_name(tag: str) -> str:
    return f"bench_amqp_{tag}"


def tag_variant(tag: str) -> Variant | None:
    """The variant a runner tag was made for: the runner's tags end with the broker's index
    in `BROKERS` (`_OUTCOMES` relies on that too)."""
    last = tag[-1:]
    return VARIANTS[int(last)] if last.isdigit() and int(last) < len(VARIANTS) else None


def rules(tag: str) -> dict[str, dict[str, Any]]:
    """The rules (name -> TopicRulePayload) of the thingcore with rules that `tag` was made
    for: every one gets republish for the `rp` traffic and queue for the `q` traffic; the
    amqp variant's also amqp for the `amqp` traffic."""
    out: dict[str, dict[str, Any]] = {
        REPUBLISH_RULE: {
            "sql": f"SELECT * FROM 'bench/{tag}/{REPUBLISH.segment}/+/t'",
            "awsIotSqlVersion": SQL_VERSION,
            "actions": [{"republish": {"topic": REPUBLISH_TEMPLATE, "qos": 1}}],
        },
        QUEUE_RULE: {
            "sql": f"SELECT * FROM 'bench/{tag}/{QUEUE.segment}/+/t'",
            "awsIotSqlVersion": SQL_VERSION,
            "actions": [{"queue": {"queueName": queue_name(tag)}}],
        },
    }
    if tag_variant(tag) is AMQP:
        # No "url": the broker's rules.amqp.url (`thingcore_rules_amqp`) keeps it out of here.
        out[AMQP_RULE] = {
            "sql": f"SELECT * FROM 'bench/{tag}/{AMQP.segment}/+/t'",
            "awsIotSqlVersion": SQL_VERSION,
            "actions": [
                {
                    "amqp": {
                        "exchange": "",
                        "routingKey": amqp_queue_name(tag),
                        "persistent": True,
                    }
                }
            ],
        }
    return out


def thingcore_rules_puback(ctx: LaunchContext) -> Launch:
    """`thingcore-rules` with `rules.delivery.puback_after_commit` on: a QoS 1 PUBACK waits
    for the outbox commit of the deliveries its message produced."""
    launch = thingcore_rules(ctx)
    return dataclasses.replace(launch, env={**launch.env, PUBACK_AFTER_COMMIT_ENV: "true"})


_AMQP_SKIPPED: dict[str, str] = {}
"""RabbitMQ queue name -> why its broker was started without the amqp rule (`run` skips)."""


def thingcore_rules_amqp(ctx: LaunchContext) -> Launch:
    """`thingcore-rules` with `rules.amqp.url` set to the sink's RabbitMQ
    (`bench.amqpsink.amqp_url`). When that RabbitMQ cannot be reached, the amqp rule is left
    out (the broker starts all the same) and the reason noted for `run`, which then reports
    the variant as skipped."""
    url = amqpsink.amqp_url()
    rule = (ctx.rules or {}).get(AMQP_RULE)
    if rule is not None:
        reason = amqpsink.unreachable(url)
        if reason is not None:
            _AMQP_SKIPPED[rule["actions"][0]["amqp"]["routingKey"]] = reason
            kept = {name: r for name, r in (ctx.rules or {}).items() if name != AMQP_RULE}
            ctx = dataclasses.replace(ctx, rules=kept)
    launch = thingcore_rules(ctx)
    return dataclasses.replace(launch, env={**launch.env, AMQP_URL_SETTING_ENV: url})


def mosquitto_deep_queue(ctx: LaunchContext) -> Launch:
    """Mosquitto with `max_queued_messages` 100,000 instead of 1,000. With 1,000, Mosquitto
    2.0.11 drops messages for the subscriber ("Outgoing messages are being dropped") in the
    closed loop even while at most 100 are sent and not yet received (so its queue never
    holds anywhere near 1,000); with 100,000 it loses none. The devices' cap keeps the real
    queue at 500 at most either way."""
    limits = dataclasses.replace(ctx.limits, max_queued_messages=MOSQUITTO_QUEUE)
    return mosquitto(dataclasses.replace(ctx, limits=limits))


LAUNCHERS: dict[str, Launcher] = {
    PUBACK_KIND: thingcore_rules_puback,
    MOSQUITTO_KIND: mosquitto_deep_queue,
    AMQP_KIND: thingcore_rules_amqp,
}
"""The broker kinds this workload adds to `bench.brokers.LAUNCHERS` (`python -m bench` does)."""


# --- the load generator: devices and a subscriber in one process ---------------------------


@dataclass(frozen=True)
class DevicesSpec:
    host: str
    port: int
    client_prefix: str
    messages: Sequence[tuple[str, bytes]]  # per device: its topic and its JSON reading
    window: int  # QoS 1 PUBLISHes a device keeps unacknowledged
    payload_size: int
    sink_filter: str | None  # the subscriber's filter; None: no subscriber (a queue sink)
    sink_topic_len: int  # every topic the subscriber receives has this many bytes
    cap: int  # with a subscriber: messages sent and not yet received, at most (0: no limit)


@dataclass(frozen=True)
class Run:
    """Send `messages` (all devices together), at `rate` msg/s or, for None, as fast as the
    PUBACKs (and the subscriber cap) allow; stamped with `phase`. Done when every PUBACK and
    every message at the subscriber arrived, or nothing did for `settle` seconds."""

    phase: int
    messages: int
    rate: float | None
    tick: float
    settle: float


@dataclass(frozen=True)
class RunDone:
    sent: int
    acked: int
    first_ns: int  # monotonic: the first PUBLISH was written
    first_wall: float  # time.time() at the same moment
    last_ack_ns: int
    puback: Histogram  # PUBLISH written -> PUBACK read, µs
    received: int  # at the subscriber (0 without one)
    last_arrival_ns: int
    latency: Histogram  # PUBLISH stamp -> subscriber, µs
    lost_connections: int
    gave_up: bool  # nothing arrived for `settle` seconds before everything did


class Device(Publisher):
    """A QoS 1 publisher that times each PUBLISH until its PUBACK (acknowledged in order,
    MQTT 3.1.1 4.6.0-2, so one run-length queue of send times serves)."""

    def __init__(self, client_id: str, topic: str, payload: bytes, window: int) -> None:
        super().__init__(
            client_id,
            topic,
            qos=1,
            payload_size=len(payload),
            window=window,
            keepalive=300,
            json_messages=[(topic, payload)],
        )
        self.unacked: deque[list[int]] = deque()  # [written at (ns), messages]
        self.puback = Histogram()
        self.acked = 0
        self.last_ack_ns = 0
        self.sent_before = 0

    def begin(self, phase: int) -> None:
        self.step = phase
        self.puback = Histogram()
        self.acked = 0
        self.sent_before = self.sent

    def flush(self) -> None:
        sent, now = self.sent, monotonic_ns()
        super().flush()
        if self.sent != sent:
            self.unacked.append([now, self.sent - sent])

    def data_received(self, data: bytes) -> None:
        now = monotonic_ns()
        inflight, sent = self.inflight, self.sent
        super().data_received(data)  # counts PUBACKs off `inflight`, then flushes
        acked = inflight + (self.sent - sent) - self.inflight
        if acked > 0:
            self._acked(now, acked)

    def _acked(self, now: int, count: int) -> None:
        self.acked += count
        self.last_ack_ns = now
        unacked, hist = self.unacked, self.puback
        while count and unacked:
            entry = unacked[0]
            taken = min(count, entry[1])
            hist.add((now - entry[0]) // 1000, taken)
            entry[1] -= taken
            count -= taken
            if not entry[1]:
                unacked.popleft()


class Sink(Subscriber):
    """The harness's subscriber, also noting when the last data arrived."""

    last_ns = 0

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.last_ns = monotonic_ns()


async def devices_role(spec: DevicesSpec, channel: Channel) -> None:
    # Coarse stamps (65.536 µs): a read's messages are counted per distinct coarse stamp, so
    # two devices' stamps within one microsecond cannot be taken for one message.
    recorder = Recorder(COARSE_NS)
    sink: Sink | None = None
    if spec.sink_filter is not None:
        layout = mqttwire.PublishLayout(spec.sink_topic_len, spec.payload_size, 1, json_stamp=True)
        sink = Sink(
            f"{spec.client_prefix}-sink",
            spec.sink_filter,
            qos=1,
            layout=layout,
            recorder=recorder,
            keepalive=300,
            coarse=True,
        )
        await connect_all([sink], spec.host, spec.port, concurrency=1, tolerate_failures=False)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await sink.subscribed
        except (ClientError, TimeoutError) as exc:
            raise WorkerError(f"SUBSCRIBE {spec.sink_filter} failed: {exc!r}") from exc
    devices = [
        Device(f"{spec.client_prefix}-d{i:03d}", topic, payload, spec.window)
        for i, (topic, payload) in enumerate(spec.messages)
    ]
    await connect_all(devices, spec.host, spec.port, concurrency=64, tolerate_failures=False)
    channel.send(Ready(connected=len(devices) + (sink is not None)))
    while not isinstance(command := await channel.recv(), Stop):
        if isinstance(command, Run):
            gc.collect()  # never while messages are in flight
            channel.send(await _run(devices, sink, recorder, spec.cap, command))
        else:
            channel.send(Failed(f"cannot handle {command!r}"))
    for client in [*devices, *([sink] if sink else [])]:
        client.close()
    await asyncio.sleep(0.1)


async def _run(
    devices: Sequence[Device], sink: Sink | None, recorder: Recorder, cap: int, run: Run
) -> RunDone:
    loop = asyncio.get_running_loop()
    count = len(devices)
    shares = [run.messages // count + (i < run.messages % count) for i in range(count)]
    granted = [0] * count
    for device in devices:
        device.begin(run.phase)

    def received() -> int:
        return recorder.received(run.phase) if sink is not None else 0

    def progress() -> int:
        return sum(d.acked for d in devices) + received()

    def grant(i: int, n: int) -> None:
        granted[i] += n
        devices[i].due(n, UNLIMITED)

    last, quiet_since, gave_up = -1, loop.time(), False

    def stalled() -> bool:
        """Nothing was acknowledged or received for `run.settle` seconds."""
        nonlocal last, quiet_since
        now, done = loop.time(), progress()
        if done != last:
            last, quiet_since = done, now
        return now - quiet_since > run.settle

    first_ns, first_wall = monotonic_ns(), time.time()
    if run.rate is not None:
        # Each device's schedule is shifted by a fraction of its interval (as the ramps do).
        per_device, started = run.rate / count, loop.time()
        while granted != shares:
            elapsed = loop.time() - started
            for i in range(count):
                due = min(shares[i], int(per_device * elapsed + i / count))
                if due > granted[i]:
                    grant(i, due - granted[i])
            await asyncio.sleep(run.tick)
    elif sink is not None and cap:
        given, start = 0, 0
        while given < run.messages:
            budget = cap - (given - received())
            active = [i for i in range(count) if granted[i] < shares[i]]
            for k in range(len(active)):
                if budget <= 0:
                    break
                i = active[(start + k) % len(active)]
                n = min(budget, shares[i] - granted[i], max(1, budget // len(active)))
                grant(i, n)
                given += n
                budget -= n
            start += 1
            if stalled():
                gave_up = True
                break
            await asyncio.sleep(run.tick)
    else:
        for i in range(count):
            grant(i, shares[i])
    want = sum(granted) * (2 if sink is not None else 1)
    while not gave_up and progress() < want:
        if stalled() or any(d.lost.done() for d in devices):
            gave_up = True
            break
        await asyncio.sleep(0.005)
    stats = recorder.pop(run.phase) if sink is not None else StepStats(latency=Histogram(COARSE_NS))
    recorder.steps.clear()
    puback = Histogram()
    for device in devices:
        puback.merge(device.puback)
    clients: list[Publisher | Subscriber] = [*devices, *([sink] if sink else [])]
    return RunDone(
        sent=sum(d.sent - d.sent_before for d in devices),
        acked=sum(d.acked for d in devices),
        first_ns=first_ns,
        first_wall=first_wall,
        last_ack_ns=max(d.last_ack_ns for d in devices),
        puback=puback,
        received=stats.received,
        last_arrival_ns=sink.last_ns if sink is not None else 0,
        latency=stats.latency,
        lost_connections=sum(1 for c in clients if c.lost.done()),
        gave_up=gave_up,
    )


# The load-generator process is bench.workers' own, with this module's role (as tlsclients).
ASYNC_ROLES[DevicesSpec] = devices_role


# --- the queue sink -------------------------------------------------------------------------


@dataclass(frozen=True)
class Queued:
    count: int  # messages in the queue with seq above the mark
    last_seq: int
    last_sent_at: float | None  # time.time() of the latest send (QueueStore's `sent_at`)


class QueueReader:
    """Reads thingcore's local queue file read-only while the broker writes it (WAL)."""

    def __init__(self, path: Path, queue: str) -> None:
        self.path, self.queue = path, queue
        self.db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection | None:
        if self.db is None and self.path.exists():
            with contextlib.suppress(sqlite3.Error):
                db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
                db.execute("SELECT 1 FROM messages LIMIT 1").fetchall()
                self.db = db
        return self.db

    def read(self, after: int) -> Queued:
        db = self._connect()
        if db is None:
            return Queued(0, after, None)
        count, last, sent_at = db.execute(
            "SELECT count(*), coalesce(max(seq), ?), max(sent_at) FROM messages "
            "WHERE seq > ? AND queue = ?",
            (after, after, self.queue),
        ).fetchone()
        return Queued(int(count), int(last), sent_at)

    def others(self) -> dict[str, int]:
        """Messages in other queues (a rule's dead-letter queue `<rule>-dlq`)."""
        db = self._connect()
        if db is None:
            return {}
        rows = db.execute(
            "SELECT queue, count(*) FROM messages WHERE queue != ? GROUP BY queue", (self.queue,)
        ).fetchall()
        return {str(q): int(n) for q, n in rows}

    def latency(self, after: int, upto: int, offset_ns: int) -> Histogram:
        """PUBLISH stamp -> queued (`sent_at`), µs, for the messages in (after, upto];
        `offset_ns` turns the stamps' monotonic clock into time.time()'s."""
        hist = Histogram()
        db = self._connect()
        if db is None:
            return hist
        for body, sent_at in db.execute(
            "SELECT body, sent_at FROM messages WHERE seq > ? AND seq <= ? AND queue = ?",
            (after, upto, self.queue),
        ):
            stamp = mqttwire.read_json_stamp(bytes(body))
            if stamp is not None:
                hist.add(max(0, int(sent_at * 1e9) - stamp[0] - offset_ns) // 1000)
        return hist

    def wait(
        self, after: int, expected: int, settle: float, broker: RunningBroker
    ) -> tuple[Queued, bool]:
        """Poll until `expected` messages above `after` are queued, or none came for
        `settle` seconds (then True: gave up)."""
        queued = self.read(after)
        quiet_since = time.monotonic()
        while queued.count < expected:
            broker.check_alive()
            time.sleep(POLL)
            now = self.read(after)
            if now.count != queued.count:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > settle:
                return now, True
            queued = now
        return queued, False

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


# --- the workload ---------------------------------------------------------------------------


@dataclass
class Outcome:
    """One broker's figures, kept for the later brokers' ratios."""

    throughput: float | None
    lower_bound: bool


@dataclass
class _RunFigures:
    done: RunDone
    arrived: int  # at the sink (subscriber or queue)
    seconds: float  # first PUBLISH -> last message at the sink
    latency: Histogram  # PUBLISH -> sink, µs
    cpu_load: float = 0.0
    cpu_broker: float = 0.0
    cpu_other: float = 0.0
    broker_cpu_s: float = 0.0
    problems: list[str] = field(default_factory=list)
    sink_cpu: float | None = None  # RabbitMQ's CPU, fraction of one core (amqp sink only)
    extra: dict[str, Any] = field(default_factory=dict)  # the sink's own figures, for the JSON


_OUTCOMES: dict[str, dict[str, Outcome]] = {}
"""This process's earlier brokers of the same run and workload (the runner's tag without its
last character, the broker's index), label -> outcome: the ratios read them."""

METRICS = (
    "delivery_throughput",
    "delivery_vs_mosquitto",
    "delivery_vs_thingcore",
    "delivery_vs_republish",
    "delivery_vs_queue",
    "delivery_broker_us",
    "delivery_puback_p50",
    "delivery_puback_p99",
    "delivery_rate_puback_p50",
    "delivery_rate_puback_p99",
    "delivery_rate_latency_p50",
    "delivery_rate_latency_p99",
)


@dataclass
class _AmqpSide:
    """The amqp variant's sink and what measures the RabbitMQ behind it."""

    sink: amqpsink.AmqpSink
    rabbit: amqpsink.RabbitCpu


def run(broker: RunningBroker, opts: Options, tag: str, log: Log) -> list[Measurement]:
    """The three runs (warm-up, fixed rate, closed loop) on one of `VARIANTS`."""
    from bench.workloads import CpuMeter  # bench.workloads lists this workload: import late

    variant = BY_BROKER_LABEL.get(broker.label)
    if variant is None:
        raise ValueError(f"{NAME} runs on its own brokers, not {broker.label!r}")
    devices = opts.delivery_devices
    messages = [
        (device_topic(tag, variant.segment, d), rulesload.payload(d, opts.payload_size))
        for d in range(devices)
    ]
    if variant.sink == "subscriber":
        sink_filter = f"out/{tag}/#" if variant.republish else f"bench/{tag}/#"
        sink_topic = republish_topic(tag, 0) if variant.republish else messages[0][0]
    else:
        sink_filter, sink_topic = None, ""
    spec = DevicesSpec(
        broker.host,
        broker.port,
        f"{tag}-dl",
        messages,
        opts.delivery_window,
        opts.payload_size,
        sink_filter,
        len(sink_topic.encode()),
        opts.delivery_cap if sink_filter else 0,
    )
    reader = None
    if variant.sink == "queue":
        if broker.data_dir is None:
            raise ValueError(f"{broker.label} has no data directory: no queue file to read")
        reader = QueueReader(broker.data_dir / "queues.sqlite", queue_name(tag))
    amqp = None
    if variant.sink == "amqp":
        url, queue = amqpsink.amqp_url(), amqp_queue_name(tag)
        reason = _AMQP_SKIPPED.pop(queue, None)
        if reason is None:
            sink = amqpsink.AmqpSink(url, queue)
            try:
                sink.start()  # declares the queue
            except RuntimeError as exc:
                reason = str(exc)
            else:
                amqp = _AmqpSide(sink, amqpsink.RabbitCpu(url))
        if amqp is None:
            return _skipped(variant, tag, reason or "no RabbitMQ sink", log)
    rate_messages = max(1, round(opts.delivery_rate * opts.delivery_rate_seconds))
    sink_error = None  # the amqp sink's error before it was closed (each run noted it)
    try:
        worker = Worker(spec, opts.load_cpu, f"devices({variant.segment})")
        with worker:
            worker.recv(60)  # Ready: connected (and subscribed)
            meter = CpuMeter([worker], broker)

            def measure(phase: int, count: int, rate: float | None) -> _RunFigures:
                return _measure(worker, meter, broker, reader, amqp, opts, phase, count, rate)

            warm = measure(1, opts.delivery_warmup, None)
            if warm.problems:
                log(f"  warm-up: {'; '.join(warm.problems)}")
            fixed = measure(2, rate_messages, opts.delivery_rate)
            closed = measure(3, opts.delivery_messages, None)
    finally:
        if reader is not None:
            reader.close()
        if amqp is not None:
            sink_error = amqp.sink.error
            amqp.sink.close()  # deletes the queue
    problems = _log_problems(broker)
    if amqp is not None and amqp.sink.error and amqp.sink.error != sink_error:
        problems.append(amqp.sink.error)  # the queue could not be deleted
    return _measurements(
        variant, broker, opts, tag, fixed, closed, problems, log, amqp.sink if amqp else None
    )


def _skipped(variant: Variant, tag: str, reason: str, log: Log) -> list[Measurement]:
    """Every row "skipped", the reason in the notes (once: the same error on every row)."""
    _OUTCOMES.setdefault(tag[:-1], {})[variant.label] = Outcome(None, False)
    log(f"  {variant.label}: skipped: {reason}")
    return [
        Measurement(metric, None, text="skipped", error=f"skipped: {reason}") for metric in METRICS
    ]


def _measure(
    worker: Worker,
    meter: CpuMeter,
    broker: RunningBroker,
    reader: QueueReader | None,
    amqp: _AmqpSide | None,
    opts: Options,
    phase: int,
    count: int,
    rate: float | None,
) -> _RunFigures:
    mark = reader.read(0).last_seq if reader is not None else 0
    settle = opts.delivery_settle
    wait = count / 100 + 120 + settle  # the worker gives up on its own well before
    meter.reset()
    broker_before = broker.cpu_seconds()
    if amqp is not None:
        own_before, rabbit_before, wall_before = _own_cpu(), amqp.rabbit.seconds(), time.monotonic()
    done: RunDone = worker.request(Run(phase, count, rate, opts.tick, settle), wait)
    problems = []
    if done.gave_up:
        problems.append(f"nothing arrived for {settle:g} s; gave up waiting")
    if done.acked != done.sent or done.sent != count:
        problems.append(f"{done.sent:,} of {count:,} sent, {done.acked:,} acknowledged")
    if done.lost_connections:
        problems.append(f"{done.lost_connections} connections lost")
    extra: dict[str, Any] = {}
    if amqp is not None:
        got, gave_up = _wait_amqp(amqp.sink, phase, count, settle, broker)
        if gave_up:
            problems.append(f"nothing reached the RabbitMQ queue for {settle:g} s; gave up waiting")
        if got.count > got.distinct:
            problems.append(
                f"{got.count - got.distinct:,} copies of messages already received (the same "
                "message_id) reached the sink"
            )
        if amqp.sink.error:
            problems.append(amqp.sink.error)
        arrived = got.distinct
        seconds = (got.last_ns - done.first_ns) / 1e9 if got.last_ns else 0.0
        latency = amqp.sink.arrivals(phase).latency if rate else Histogram()
        extra["amqp_copies"] = got.count - got.distinct
    elif reader is None:
        arrived, latency = done.received, done.latency
        seconds = (done.last_arrival_ns - done.first_ns) / 1e9
    else:
        queued, gave_up = reader.wait(mark, count, settle, broker)
        if gave_up:
            problems.append(f"nothing was queued for {settle:g} s; gave up waiting")
        arrived = queued.count
        seconds = (queued.last_sent_at or done.first_wall) - done.first_wall
        offset_ns = time.time_ns() - monotonic_ns()
        latency = reader.latency(mark, queued.last_seq, offset_ns) if rate else Histogram()
        others = reader.others()
        if others:
            problems.append(f"messages in other queues (dead letters?): {others}")
    cpu = meter.lap()
    cpu_load, cpu_other, sink_cpu = cpu.load, cpu.other, None
    if amqp is not None:
        # The consumer runs in this process, which CpuMeter leaves out of every figure; it is
        # load generation (as a subscriber sink is). RabbitMQ is the sink, not "other".
        wall = max(time.monotonic() - wall_before, 1e-6)
        consumer = (_own_cpu() - own_before) / wall
        cpu_load = round(cpu.load + consumer, 3)
        extra["consumer_cpu"] = round(consumer, 3)
        rabbit_after = amqp.rabbit.seconds()
        if rabbit_before is not None and rabbit_after is not None:
            sink_cpu = round((rabbit_after - rabbit_before) / wall, 3)
            cpu_other = round(max(0.0, cpu.other - sink_cpu), 3)
            extra["rabbitmq_cpu"] = sink_cpu
            extra["rabbitmq_cpu_s"] = round(rabbit_after - rabbit_before, 3)
            if arrived:
                extra["rabbitmq_cpu_us_per_message"] = round(
                    (rabbit_after - rabbit_before) / arrived * 1e6, 1
                )
    broker.check_alive()
    if arrived < count:
        problems.append(f"{count - arrived:,} of {count:,} messages never reached the sink")
    elif arrived > count:
        problems.append(f"{arrived - count:,} duplicates reached the sink")
    return _RunFigures(
        done,
        arrived,
        seconds,
        latency,
        cpu_load,
        cpu.broker,
        cpu_other,
        broker.cpu_seconds() - broker_before,
        problems,
        sink_cpu,
        extra,
    )


def _own_cpu() -> float:
    t = psutil.Process().cpu_times()
    return float(t.user + t.system)


def _wait_amqp(
    sink: amqpsink.AmqpSink, phase: int, expected: int, settle: float, broker: RunningBroker
) -> tuple[amqpsink.Snapshot, bool]:
    """Poll until `expected` distinct messages of run `phase` were consumed, or none came for
    `settle` seconds (then True: gave up)."""
    got = sink.snapshot(phase)
    quiet_since = time.monotonic()
    while got.distinct < expected:
        broker.check_alive()
        time.sleep(POLL)
        now = sink.snapshot(phase)
        if now.count != got.count:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > settle or sink.error:
            return now, True
        got = now
    return got, False


def _log_problems(broker: RunningBroker) -> list[str]:
    """Warnings and errors the broker logged (thingcore logs none on a clean run)."""
    if broker.kind == MOSQUITTO_KIND:
        return []
    try:
        lines = broker.log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    bad = [line for line in lines if " ERROR " in line or " WARNING " in line]
    if not bad:
        return []
    return [f"the broker logged {len(bad)} warnings/errors, first: {bad[0].strip()[:200]}"]


def _ms(hist: Histogram, pct: float) -> float | None:
    value = hist.percentile(pct)
    return None if value is None else value / 1000


def _measurements(
    variant: Variant,
    broker: RunningBroker,
    opts: Options,
    tag: str,
    fixed: _RunFigures,
    closed: _RunFigures,
    log_problems: list[str],
    log: Log,
    amqp_sink: amqpsink.AmqpSink | None = None,
) -> list[Measurement]:
    rate = closed.arrived / closed.seconds if closed.seconds > 0 and closed.arrived else None
    lower = closed.cpu_load >= opts.saturated
    outcomes = _OUTCOMES.setdefault(tag[:-1], {})
    outcomes[variant.label] = Outcome(rate, lower)
    us_per_message = closed.broker_cpu_s / closed.arrived * 1e6 if closed.arrived else None
    details: dict[str, Any] = {
        "variant": variant.label,
        "sink": variant.sink,
        "devices": opts.delivery_devices,
        "window": opts.delivery_window,
        "subscriber_cap": opts.delivery_cap if variant.sink == "subscriber" else None,
        "payload_example": rulesload.payload(0, opts.payload_size).decode(),
        "rules": rules(tag) if variant not in (MOSQUITTO, PLAIN) else {},
        "puback_after_commit": variant.kind == PUBACK_KIND,
        "mosquitto_max_queued_messages": MOSQUITTO_QUEUE if variant is MOSQUITTO else None,
        "closed_loop": _run_json(closed),
        "fixed_rate": {"rate": opts.delivery_rate, **_run_json(fixed)},
    }
    if amqp_sink is not None:
        details["amqp"] = {
            "url": amqpsink.masked(amqp_sink.url),
            "queue": amqp_sink.queue,
            "server": amqp_sink.server,
            "unstamped_messages": amqp_sink.unstamped,
        }
    log(
        f"  {variant.label}: {closed.arrived:,} messages in {closed.seconds:.2f} s = "
        f"{rate or 0:,.0f} msg/s{' (load generator saturated)' if lower else ''}, PUBACK p50 "
        f"{_fmt_ms(_ms(closed.done.puback, 50))} p99 {_fmt_ms(_ms(closed.done.puback, 99))}; "
        f"at {opts.delivery_rate:,.0f} msg/s PUBACK p50 {_fmt_ms(_ms(fixed.done.puback, 50))} "
        f"p99 {_fmt_ms(_ms(fixed.done.puback, 99))}, to the sink p50 "
        f"{_fmt_ms(_ms(fixed.latency, 50))} p99 {_fmt_ms(_ms(fixed.latency, 99))}; load CPU "
        f"{closed.cpu_load:.0%}, broker CPU {closed.cpu_broker:.0%}, other {closed.cpu_other:.0%}"
        + (f", RabbitMQ CPU {closed.sink_cpu:.0%}" if closed.sink_cpu is not None else "")
    )
    closed_error = "; ".join(closed.problems + log_problems) or None
    fixed_error = "; ".join(fixed.problems) or None
    for problem in closed.problems + fixed.problems + log_problems:
        log(f"  {variant.label}: {problem}")
    out = [
        Measurement(
            "delivery_throughput",
            rate,
            lower_bound=lower,
            load_cpu=closed.cpu_load,
            broker_cpu=closed.cpu_broker,
            other_cpu=closed.cpu_other,
            details=details,
            error=closed_error,
        ),
    ]
    for metric, baseline in (
        ("delivery_vs_mosquitto", MOSQUITTO),
        ("delivery_vs_thingcore", PLAIN),
        ("delivery_vs_republish", REPUBLISH),
        ("delivery_vs_queue", QUEUE),
    ):
        if variant is baseline:
            out.append(Measurement(metric, 1.0, text="1.00x (reference)"))
        elif VARIANTS.index(variant) > VARIANTS.index(baseline):
            out.append(_ratio(metric, outcomes[variant.label], outcomes.get(baseline.label)))
    out.append(Measurement("delivery_broker_us", us_per_message, details=details))
    for pct in (50, 99):
        out.append(
            Measurement(
                f"delivery_puback_p{pct}",
                _ms(closed.done.puback, pct),
                details=details,
                error=closed_error,
            )
        )
    for pct in (50, 99):
        out.append(
            Measurement(
                f"delivery_rate_puback_p{pct}",
                _ms(fixed.done.puback, pct),
                details=details,
                error=fixed_error,
                load_cpu=fixed.cpu_load,
                broker_cpu=fixed.cpu_broker,
                other_cpu=fixed.cpu_other,
            )
        )
    for pct in (50, 99):
        out.append(
            Measurement(
                f"delivery_rate_latency_p{pct}",
                _ms(fixed.latency, pct),
                details=details,
                error=fixed_error,
            )
        )
    return out


def _ratio(metric: str, mine: Outcome, base: Outcome | None) -> Measurement:
    if base is None or not base.throughput or mine.throughput is None:
        return Measurement(metric, None, text="n/a")
    value = mine.throughput / base.throughput
    text = None
    if base.lower_bound and mine.lower_bound:
        text = f"? ({value:.2f}x, both bounds)"
    elif base.lower_bound:
        text = f"≤ {value:.2f}x"
    lower = mine.lower_bound and not base.lower_bound
    return Measurement(metric, value, lower_bound=lower, text=text)


def _run_json(figures: _RunFigures) -> dict[str, Any]:
    done = figures.done
    return {
        "sent": done.sent,
        "acknowledged": done.acked,
        "arrived": figures.arrived,
        "seconds": round(figures.seconds, 3),
        "msg_per_s": round(figures.arrived / figures.seconds) if figures.seconds > 0 else None,
        "puback_p50_ms": _ms(done.puback, 50),
        "puback_p99_ms": _ms(done.puback, 99),
        "puback_max_ms": _ms(done.puback, 100),
        "sink_latency_p50_ms": _ms(figures.latency, 50),
        "sink_latency_p99_ms": _ms(figures.latency, 99),
        "acks_done_s": round((done.last_ack_ns - done.first_ns) / 1e9, 3),
        "load_cpu": figures.cpu_load,
        "broker_cpu": figures.cpu_broker,
        "other_cpu": figures.cpu_other,
        "broker_cpu_s": round(figures.broker_cpu_s, 3),
        "problems": figures.problems,
        **figures.extra,
    }


def _fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} ms"


# --- the report's rows ----------------------------------------------------------------------


def report_metrics(opts: Options) -> dict[str, Metric]:
    """This workload's rows for `bench.report.METRICS` (`python -m bench` adds them)."""
    from bench.report import Better, Metric  # bench.report imports the workloads: import late

    def rate(v: float) -> str:
        return f"{v:,.0f} msg/s"

    def times(v: float) -> str:
        return f"{v:.2f}x"

    def ms(v: float) -> str:
        return f"{v:.2f} ms"

    def us(v: float) -> str:
        return f"{v:.1f} µs"

    closed = f"closed loop, {opts.delivery_messages:,} msgs"
    fixed = f"at {opts.delivery_rate:,.0f} msg/s"
    rows: list[tuple[str, str, Better, Callable[[float], str], bool]] = [
        ("delivery_throughput", f"{closed}: msg/s first PUBLISH → last at sink", Better.HIGHER,
         rate, True),
        ("delivery_vs_mosquitto", f"{closed}: ÷ mosquitto", Better.HIGHER, times, False),
        ("delivery_vs_thingcore", f"{closed}: ÷ thingcore, no rules", Better.HIGHER, times,
         False),
        ("delivery_vs_republish", f"{closed}: ÷ republish", Better.HIGHER, times, False),
        ("delivery_vs_queue", f"{closed}: ÷ queue", Better.HIGHER, times, False),
        ("delivery_broker_us", f"{closed}: broker CPU per message", Better.LOWER, us, False),
        ("delivery_puback_p50", f"{closed}: PUBACK latency p50", Better.LOWER, ms, False),
        ("delivery_puback_p99", f"{closed}: PUBACK latency p99", Better.LOWER, ms, False),
        ("delivery_rate_puback_p50", f"{fixed}: PUBACK latency p50", Better.LOWER, ms, True),
        ("delivery_rate_puback_p99", f"{fixed}: PUBACK latency p99", Better.LOWER, ms, False),
        ("delivery_rate_latency_p50", f"{fixed}: PUBLISH → sink p50", Better.LOWER, ms, False),
        ("delivery_rate_latency_p99", f"{fixed}: PUBLISH → sink p99", Better.LOWER, ms, False),
    ]  # fmt: skip
    return {
        key: Metric(label, better, fmt, cpu_row=cpu_row)
        for key, label, better, fmt, cpu_row in rows
    }
