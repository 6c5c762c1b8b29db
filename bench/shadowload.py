"""Shadow-update load generator: devices that update their things' shadows over MQTT.

Each `ShadowDevice` is one MQTT 3.1.1 connection that owns a few things. It subscribes (QoS 1)
to each thing's `update/accepted` and `update/rejected` topics, then publishes (QoS 1)
`{"state":{"reported":{"temp":<n>,"seq":<k>}},"clientToken":"<token>"}` to the things'
`update` topics and matches every answer to the request it answers. A thing has at most one
update outstanding at a time (as a device that waits for its shadow's answer before reporting
again), so a device's window of outstanding requests is at most its number of things.

Two ways to offer load, both driven by a `Fleet` (all devices of one process):

- closed loop: every device keeps `window` updates outstanding; an answer releases the next
  update at once, so the broker sets the pace;
- fixed rate: updates are due on a schedule (like the ramps' publishers, each device shifted
  by a fraction of its interval); a due update waits while the device's window is full, and
  after 100 ms of waiting it is given up (offered, not sent).

Every request ends exactly one way: accepted, rejected, or lost (no answer within the request
timeout, or its connection closed). A lost update still holds its thing (and its place in the
window) until its answer comes after all (counted as late) or the run ends, so a broker that
falls behind never has more than the window of updates queued. Answers that match no
outstanding request are counted too: a second answer to an answered request (duplicate), an
answer to an update of an earlier run that was declared lost (late), or an answer to nothing
the device sent (unexpected). Payloads that
lack what the topic layout promises (for AWS: the echoed `clientToken`, `version`, `state`,
`metadata`, `timestamp`) are counted as malformed and described.

Two topic layouts (`Dialect`): AWS IoT's (`$aws/things/<thing>/shadow/update`, answers
matched by `clientToken`) and amqtt's contrib shadow plugin's (`$shadow/<thing>/<shadow
name>/update`, which echoes no client token: answers are matched by the `seq` of the
reported state they carry).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from bench import mqttwire
from bench.loadgen import ClientError, MqttClient
from bench.mqttwire import Packet, PacketType
from bench.stats import Histogram

monotonic_ns = time.monotonic_ns

MAX_PROBLEMS = 20  # distinct malformed-payload descriptions kept per run
BACKLOG_SECONDS = 0.1  # fixed rate: how long a due update may wait for a free window slot
EXPIRY_INTERVAL = 0.1  # how often outstanding requests are checked against the timeout


class Dialect(Enum):
    """A shadow service's topic layout and answer format."""

    AWS = "aws"  # AWS IoT Device Shadow: thingcore
    AMQTT = "amqtt"  # amqtt.contrib.shadows.ShadowPlugin


@dataclass(frozen=True)
class ShadowTopics:
    """The topics of one thing's shadow updates in a dialect."""

    dialect: Dialect
    shadow_name: str = "main"  # amqtt's topics always name a shadow; AWS's classic one has none

    def root(self, thing: str) -> str:
        if self.dialect is Dialect.AWS:
            return f"$aws/things/{thing}/shadow"
        return f"$shadow/{thing}/{self.shadow_name}"

    def update(self, thing: str) -> str:
        return f"{self.root(thing)}/update"

    def accepted(self, thing: str) -> str:
        return f"{self.root(thing)}/update/accepted"

    def rejected(self, thing: str) -> str:
        return f"{self.root(thing)}/update/rejected"


def thing_names(count: int) -> list[str]:
    return [f"bench-thing-{i:04d}" for i in range(count)]


def update_payload(seq: int, token: str) -> bytes:
    """The update a device sends: a changing temperature and the request's sequence number."""
    temp = 20 + seq % 15
    return (
        f'{{"state":{{"reported":{{"temp":{temp},"seq":{seq}}}}},"clientToken":"{token}"}}'
    ).encode()


@dataclass(frozen=True)
class Answer:
    """What an `update/accepted` or `update/rejected` payload says."""

    accepted: bool
    seq: int | None  # the request it answers; None when it cannot be told
    version: int | None = None
    code: int | None = None  # rejected: the error code
    problem: str | None = None  # how the payload differs from what the dialect promises


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_answer(dialect: Dialect, accepted: bool, payload: bytes, token_prefix: str) -> Answer:
    """Decode an answer; `token_prefix` is what every client token of this thing starts with
    (the token is the prefix followed by the request's sequence number)."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return Answer(accepted, None, problem="not JSON")
    if not isinstance(doc, dict):
        return Answer(accepted, None, problem="not a JSON object")
    if dialect is Dialect.AMQTT:
        return _read_amqtt(accepted, doc)
    token = doc.get("clientToken")
    seq = None
    if isinstance(token, str) and token.startswith(token_prefix):
        tail = token[len(token_prefix) :]
        seq = int(tail) if tail.isdigit() else None
    if not accepted:
        code = _int(doc.get("code"))
        problem = None
        if token is None:
            problem = "rejected without clientToken"
        elif code is None or not isinstance(doc.get("message"), str):
            problem = "rejected without code or message"
        return Answer(False, seq, code=code, problem=problem)
    if token is None:
        return Answer(True, None, problem="accepted without clientToken")
    missing = [k for k in ("version", "state", "metadata", "timestamp") if k not in doc]
    if missing:
        return Answer(True, seq, problem=f"accepted without {', '.join(missing)}")
    version = _int(doc["version"])
    if version is None or _int(doc["timestamp"]) is None:
        return Answer(True, seq, problem="accepted with a non-integer version or timestamp")
    if _reported_seq(doc) != seq:
        return Answer(True, seq, version, problem="accepted state is not the update's")
    return Answer(True, seq, version)


def _reported_seq(doc: dict[str, Any]) -> int | None:
    state = doc.get("state")
    reported = state.get("reported") if isinstance(state, dict) else None
    return _int(reported.get("seq")) if isinstance(reported, dict) else None


def _read_amqtt(accepted: bool, doc: dict[str, Any]) -> Answer:
    # amqtt's accepted document is the whole merged state, so its reported `seq` is the one of
    # the update it answers (one update per thing is outstanding at a time). Its `version` is
    # always 1 and its `timestamp` always 123 (amqtt 0.12.1), so neither is checked.
    if not accepted:
        return Answer(False, None, code=_int(doc.get("code")), problem="rejected (no token)")
    missing = [k for k in ("version", "state", "metadata", "timestamp") if k not in doc]
    seq = _reported_seq(doc)
    if missing:
        return Answer(True, seq, problem=f"accepted without {', '.join(missing)}")
    if seq is None:
        return Answer(True, None, problem="accepted without state.reported.seq")
    return Answer(True, seq)


@dataclass
class Counts:
    """Running totals of one process's devices (all requests since the last `reset`)."""

    offered: int = 0  # fixed rate: updates due
    given_up: int = 0  # fixed rate: due updates that waited too long for a window slot
    issued: int = 0  # update requests published
    accepted: int = 0
    rejected: int = 0
    lost: int = 0  # no answer within the request timeout, or the connection closed
    duplicates: int = 0  # a second answer to an answered request
    late: int = 0  # an answer after its request was declared lost
    unexpected: int = 0  # an answer to no request this device sent
    malformed: int = 0  # an answer without what the dialect promises (see `problems`)
    version_regressions: int = 0  # AWS: a version not above the thing's last accepted one

    def minus(self, other: Counts) -> Counts:
        return Counts(
            **{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)}
        )

    def copy(self) -> Counts:
        return Counts(**{f.name: getattr(self, f.name) for f in fields(self)})


@dataclass
class Tally:
    """What all devices of one process counted; shared by them."""

    counts: Counts = field(default_factory=Counts)
    latency: Histogram = field(default_factory=Histogram)  # update -> accepted, µs
    reject_codes: Counter[int] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)
    outstanding: int = 0  # updates written, not yet answered and not yet lost, all devices
    drained: asyncio.Event = field(default_factory=asyncio.Event)  # set when that reaches 0

    def problem(self, text: str) -> None:
        if text in self.problems or len(self.problems) < MAX_PROBLEMS:
            self.problems[text] += 1

    def issued(self) -> None:
        self.counts.issued += 1
        self.outstanding += 1
        self.drained.clear()

    def settled(self) -> None:
        self.outstanding -= 1
        if not self.outstanding:
            self.drained.set()


class ShadowDevice(MqttClient):
    """One device connection updating the shadows of its things (see the module docstring)."""

    def __init__(
        self,
        client_id: str,
        things: Sequence[str],
        *,
        topics: ShadowTopics,
        token_prefix: str,
        tally: Tally,
        keepalive: int = 300,
    ) -> None:
        super().__init__(client_id, keepalive)
        self.dialect = topics.dialect
        self.tally = tally
        self.update_topics = [topics.update(t) for t in things]
        self.token_prefixes = [f"{token_prefix}.{t}." for t in things]
        self.answers: dict[str, tuple[int, bool]] = {}  # topic -> (thing slot, accepted?)
        for slot, thing in enumerate(things):
            self.answers[topics.accepted(thing)] = (slot, True)
            self.answers[topics.rejected(thing)] = (slot, False)
        count = len(things)
        self.next_seq = [1] * count
        self.pending_seq = [0] * count  # 0: nothing outstanding for this thing
        self.pending_ns = [0] * count  # when the outstanding update was written
        self.timed_out = [False] * count  # the outstanding update was declared lost
        self.expired: list[set[int]] = [set() for _ in range(count)]
        self.last_version = [0] * count
        self.idle: deque[int] = deque(range(count))  # things with nothing outstanding
        self.outstanding = 0
        self.window = 0  # updates that may be outstanding; 0 while not sending
        self.closed_loop = False
        self.due = 0  # fixed rate: updates due but not yet sent
        self.next_packet_id = 1
        self.pubacks = 0
        self.out: list[bytes] = []  # packets to write at the end of this turn
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # --- connection ---------------------------------------------------------------------

    def on_connected(self) -> None:
        assert self.transport is not None
        filters = [(topic, 1) for topic in self.answers]
        self.transport.write(mqttwire.subscribe(1, filters))

    def on_lost(self, reason: ClientError) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(reason)
        self.expire(0, release=True)  # nothing can answer them any more

    def fail(self, exc: ClientError) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(exc)
        super().fail(exc)

    def data_received(self, data: bytes) -> None:
        self.read_packets(data)
        self.issue()
        self.flush()

    def flush(self) -> None:
        if self.out and self.transport is not None:
            self.transport.write(b"".join(self.out))
        self.out.clear()

    def handle(self, packet: Packet) -> None:
        kind = packet.type
        if kind == PacketType.PUBLISH:
            topic, qos, packet_id, _, payload = mqttwire.parse_publish(packet.flags, packet.body)
            if qos:
                self.out.append(mqttwire.puback(packet_id))
            self.on_answer(topic, payload)
        elif kind == PacketType.PUBACK:
            self.pubacks += 1
        elif kind == PacketType.SUBACK and not self.subscribed.done():
            _, granted = mqttwire.parse_suback(packet.body)
            refused = sum(1 for code in granted if code >= mqttwire.SUBACK_FAILURE)
            if len(granted) != len(self.answers) or refused:
                self.fail(
                    ClientError(
                        f"{self.client_id}: SUBSCRIBE to {len(self.answers)} shadow topics "
                        f"refused for {refused} of them"
                    )
                )
            else:
                self.subscribed.set_result(None)
        else:
            super().handle(packet)

    # --- requests and answers -------------------------------------------------------------

    def issue(self) -> None:
        """Write as many updates as the window and the mode allow (into `out`)."""
        if self.transport is None:
            return
        while self.idle and self.outstanding < self.window and (self.closed_loop or self.due):
            slot = self.idle.popleft()
            seq = self.next_seq[slot]
            self.next_seq[slot] = seq + 1
            token = f"{self.token_prefixes[slot]}{seq}"
            pid = self.next_packet_id
            self.next_packet_id = pid + 1 if pid < 0xFFFF else 1
            self.out.append(
                mqttwire.publish(self.update_topics[slot], update_payload(seq, token), 1, pid)
            )
            self.pending_seq[slot] = seq
            self.pending_ns[slot] = monotonic_ns()
            self.outstanding += 1
            self.tally.issued()
            if not self.closed_loop:
                self.due -= 1

    def _release(self, slot: int) -> None:
        """The thing's outstanding update is done with: the thing may be updated again."""
        if self.timed_out[slot]:
            self.timed_out[slot] = False
        else:
            self.tally.settled()
        self.pending_seq[slot] = 0
        self.outstanding -= 1
        self.idle.append(slot)

    def _time_out(self, slot: int) -> None:
        self.tally.counts.lost += 1
        self.timed_out[slot] = True
        self.expired[slot].add(self.pending_seq[slot])
        self.tally.settled()

    def on_answer(self, topic: str, payload: bytes) -> None:
        tally, counts = self.tally, self.tally.counts
        where = self.answers.get(topic)
        if where is None:
            counts.unexpected += 1
            tally.problem(f"a message on {topic}, which the device did not subscribe to")
            return
        slot, accepted = where
        answer = read_answer(self.dialect, accepted, payload, self.token_prefixes[slot])
        if answer.problem is not None:
            counts.malformed += 1
            tally.problem(answer.problem)
        seq = answer.seq
        if seq is None:
            counts.unexpected += 1
            return
        if seq != self.pending_seq[slot]:
            if seq in self.expired[slot]:
                counts.late += 1
            elif 0 < seq < self.next_seq[slot]:
                counts.duplicates += 1
            else:
                counts.unexpected += 1
            return
        if self.timed_out[slot]:
            counts.late += 1  # already counted as lost; its thing is free again
        elif accepted:
            counts.accepted += 1
            tally.latency.add((monotonic_ns() - self.pending_ns[slot]) // 1000)
            if answer.version is not None:
                if answer.version <= self.last_version[slot]:
                    counts.version_regressions += 1
                self.last_version[slot] = answer.version
        else:
            counts.rejected += 1
            tally.reject_codes[answer.code if answer.code is not None else -1] += 1
        self._release(slot)

    def expire(self, before_ns: int, *, release: bool = False) -> None:
        """Declare lost every outstanding update written before `before_ns`; with `release`
        (or once the connection is gone: nothing can answer any more), also free the things
        of the lost updates for new ones."""
        if not self.outstanding:
            return
        release = release or self.transport is None
        for slot, seq in enumerate(self.pending_seq):
            if not seq:
                continue
            if not self.timed_out[slot] and (release or self.pending_ns[slot] < before_ns):
                self._time_out(slot)
            if release:
                self._release(slot)


# --- a process's devices and the commands that drive them ---------------------------------


@dataclass(frozen=True)
class ShadowSpec:
    """A load-generator process of shadow devices: `devices` connections, each owning
    `things_per_device` consecutive things of `thing_names(devices * things_per_device)`."""

    host: str
    port: int
    client_prefix: str
    token_prefix: str  # unique to the run: every client token starts with it
    dialect: Dialect
    devices: int = 100
    things_per_device: int = 10
    request_timeout: float = 5.0
    keepalive: int = 300


@dataclass(frozen=True)
class Begin:
    """Start sending: closed loop with `window` outstanding per device (`rate` None), or
    `rate` updates/s in total with at most `window` outstanding per device."""

    window: int
    rate: float | None = None
    tick: float = 0.002


@dataclass(frozen=True)
class Mark:
    """Report the totals so far and the latencies since the previous mark (or `Begin`)."""


@dataclass(frozen=True)
class End:
    """Stop sending, wait for the answers (each request at most its timeout), then `settle`
    more seconds for duplicates, and report."""

    settle: float = 0.5


@dataclass(frozen=True)
class Marked:
    at: float  # monotonic seconds
    counts: Counts
    latency: Histogram  # answers accepted since the previous mark


@dataclass(frozen=True)
class Ended:
    counts: Counts  # every request since `Begin`
    latency: Histogram  # accepted since the last mark
    reject_codes: dict[int, int]
    problems: dict[str, int]
    lost_connections: int
    drain_seconds: float


class Fleet:
    """All shadow devices of one load-generator process and the task that paces them."""

    def __init__(self, spec: ShadowSpec) -> None:
        self.spec = spec
        self.tally = Tally()
        topics = ShadowTopics(spec.dialect)
        names = thing_names(spec.devices * spec.things_per_device)
        per = spec.things_per_device
        self.devices = [
            ShadowDevice(
                f"{spec.client_prefix}{d:03d}",
                names[d * per : (d + 1) * per],
                topics=topics,
                token_prefix=spec.token_prefix,
                tally=self.tally,
                keepalive=spec.keepalive,
            )
            for d in range(spec.devices)
        ]
        self.pacer: asyncio.Task[None] | None = None

    async def wait_subscribed(self) -> None:
        await asyncio.gather(*(d.subscribed for d in self.devices))

    def begin(self, command: Begin) -> None:
        if self.pacer is not None:
            raise RuntimeError("already sending")
        window = max(1, min(command.window, self.spec.things_per_device))
        self.tally.counts = Counts()
        self.tally.latency = Histogram()
        self.tally.reject_codes.clear()
        self.tally.problems.clear()
        for device in self.devices:
            device.window = window
            device.closed_loop = command.rate is None
            device.due = 0
        self.pacer = asyncio.get_running_loop().create_task(self._pace(command))

    def mark(self) -> Marked:
        latency, self.tally.latency = self.tally.latency, Histogram()
        return Marked(time.monotonic(), self.tally.counts.copy(), latency)

    async def _pace(self, command: Begin) -> None:
        """Grant due updates (fixed rate), expire unanswered requests, and send."""
        loop = asyncio.get_running_loop()
        devices = self.devices
        count = len(devices)
        timeout_ns = int(self.spec.request_timeout * 1e9)
        per_device = (command.rate or 0.0) / count
        backlog_limit = max(1, int(per_device * BACKLOG_SECONDS))
        phases = [i / count for i in range(count)]
        granted = [0] * count
        started = next_expiry = loop.time()
        counts = self.tally.counts  # `begin` replaced it before this task started
        while True:
            now = loop.time()
            if command.rate is not None:
                due = per_device * (now - started)
                for i, device in enumerate(devices):
                    target = int(due + phases[i])
                    if target > granted[i]:
                        counts.offered += target - granted[i]
                        device.due += target - granted[i]
                        granted[i] = target
                        device.issue()
                        device.flush()
                    if device.due > backlog_limit:
                        counts.given_up += device.due - backlog_limit
                        device.due = backlog_limit
            if now >= next_expiry:
                next_expiry = now + EXPIRY_INTERVAL
                before = monotonic_ns() - timeout_ns
                for device in devices:
                    device.expire(before)
                    device.issue()
                    device.flush()
            await asyncio.sleep(command.tick if command.rate is not None else EXPIRY_INTERVAL)

    async def end(self, command: End) -> Ended:
        if self.pacer is not None:
            self.pacer.cancel()
            try:
                await self.pacer
            except asyncio.CancelledError:
                pass
            self.pacer = None
        for device in self.devices:
            device.window = 0
            device.closed_loop = False
            device.due = 0
        started = time.monotonic()
        # Every request is answered or declared lost by its timeout; nothing new is sent.
        # (Lost ones may still be answered later: the orchestrator waits for an idle broker
        # before the next run.)
        if self.tally.outstanding:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.spec.request_timeout):
                    await self.tally.drained.wait()
        drained = time.monotonic() - started
        for device in self.devices:
            device.expire(monotonic_ns(), release=True)
        await asyncio.sleep(command.settle)
        tally = self.tally
        return Ended(
            counts=tally.counts.copy(),
            latency=tally.latency,
            reject_codes=dict(tally.reject_codes),
            problems=dict(tally.problems),
            lost_connections=sum(1 for d in self.devices if d.lost.done()),
            drain_seconds=drained,
        )

    async def close(self) -> None:
        if self.pacer is not None:
            self.pacer.cancel()
            try:
                await self.pacer
            except asyncio.CancelledError:
                pass
            self.pacer = None
        for device in self.devices:
            device.close()
