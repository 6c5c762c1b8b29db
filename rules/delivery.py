"""Delivery that loses nothing: rule outputs through the durable outbox to their targets.

On the broker's dispatch path ``submit`` expands each action's templates into a ``Delivery``
and adds it to the pending group; the writer task commits each loop pass's group in one
transaction (``Outbox.write``), and only then hands the rows to their targets' lanes: from the
commit on, a delivery is owed and survives a crash. With ``puback_after_commit`` the broker
holds a QoS 1 PUBACK until that commit (``commit_waiter``).

A lane per target (``queue:orders``, ``function:thumbnail``...) delivers in id order, in
batches, at most ``target_window`` rows in memory (more wait in the file: a dead target holds
memory flat). A retryable failure keeps the batch at the head of its lane and waits an
exponential backoff with jitter, so a target that is down gets everything, in order, once it
returns, and never blocks another target. A delivery that fails for good (not retryable, or
``max_attempts`` used) goes to the rule's ``errorAction`` with AWS's error payload, one per
rule output aggregating its failed actions; without an error action, or when the error action
fails too, to the local dead-letter queue ``<rule>-dlq``, which is retried without end.
Each delivery has a stable ``message_id`` that every retry and redelivery repeats.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from rules.actions import KINDS
from rules.actions.base import Resolved, Target, TargetEnv, b64
from rules.config import RulesSettings
from rules.definition import RuleDefinition
from rules.errors import TargetError
from rules.outbox import OWED, WAITING, Outbox, Row, Update
from rules.sql.context import EvalContext

log = logging.getLogger("thingcore.rules.delivery")

ERROR_ACTION = -1
DEAD_LETTER = -2
ERROR_PAYLOAD = "errorPayload"
"""An error action's parameter holding the AWS error payload it carries."""


_ids = random.Random()  # seeded from os.urandom


def new_id() -> str:
    """A random UUID (version 4 layout) from a fast generator: these are ids, not secrets,
    and ``uuid4``'s system call costs more than the rest of a delivery (bench: py-spy)."""
    return str(uuid.UUID(int=_ids.getrandbits(128), version=4))


def follow(first: asyncio.Future[None], then: asyncio.Future[None]) -> None:
    """Resolve ``then`` when ``first`` is resolved."""

    def done(_: asyncio.Future[None]) -> None:
        if not then.done():
            then.set_result(None)

    first.add_done_callback(done)


@dataclass(frozen=True, slots=True)
class Origin:
    """The message a delivery came from: for the error payload and error-action templates, and
    (an MQTT 5 request's response topic and correlation data) for a function's reply."""

    topic: str
    payload: bytes
    client_id: str | None
    principal: str | None
    received_ms: int
    trace_id: str
    response_topic: str | None = None
    correlation_data: bytes | None = None

    @classmethod
    def of(cls, ctx: EvalContext) -> Origin:
        trace = ctx.trace_id
        if trace is None:
            # Made here unless a rule asked for traceid() already; the same from now on.
            trace = ctx.trace_id = new_id()
        return cls(
            ctx.topic,
            ctx.payload,
            ctx.client_id,
            ctx.principal,
            ctx.received_ms,
            trace,
            ctx.response_topic,
            ctx.correlation_data,
        )

    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "topic": self.topic,
            "clientId": self.client_id,
            "principal": self.principal,
            "receivedMs": self.received_ms,
            "traceId": self.trace_id,
        }
        if self.response_topic is not None:
            meta["responseTopic"] = self.response_topic
        if self.correlation_data is not None:
            meta["correlationData"] = b64(self.correlation_data)
        return meta

    @classmethod
    def from_row(cls, meta: dict[str, Any], payload: bytes) -> Origin:
        correlation = meta.get("correlationData")
        return cls(
            meta["topic"],
            payload,
            meta.get("clientId"),
            meta.get("principal"),
            meta["receivedMs"],
            meta["traceId"],
            meta.get("responseTopic"),
            None if correlation is None else base64.b64decode(correlation),
        )

    def context(self, rule: str, account_id: str) -> EvalContext:
        return EvalContext(
            topic=self.topic,
            payload=self.payload,
            client_id=self.client_id,
            principal=self.principal,
            trace_id=self.trace_id,
            received_ms=self.received_ms,
            account_id=account_id,
            rule_name=rule,
            response_topic=self.response_topic,
            correlation_data=self.correlation_data,
        )


@dataclass(slots=True)
class Delivery:
    id: int
    message_id: str
    output_id: str
    rule: str
    action: int
    """The action's index in the rule; ``ERROR_ACTION`` or ``DEAD_LETTER``."""
    siblings: int
    """How many actions the rule output had (the error payload waits for all of them)."""
    kind: str
    target: str
    params: dict[str, Any]
    body: bytes
    origin: Origin
    depth: int
    created: float
    attempts: int = 0
    failure: str | None = None
    """Why it can never be delivered, when that was known before it was written."""

    def row(self, state: int = OWED, error: str | None = None) -> Row:
        return Row(
            self.id,
            self.message_id,
            self.output_id,
            self.rule,
            self.action,
            self.siblings,
            self.kind,
            self.target,
            self.params,
            self.body,
            self.origin.meta(),
            self.origin.payload,
            self.depth,
            self.created,
            self.attempts,
            state,
            error,
        )

    @classmethod
    def from_row(cls, row: Row) -> Delivery:
        return cls(
            row.id,
            row.message_id,
            row.output_id,
            row.rule,
            row.action,
            row.siblings,
            row.kind,
            row.target,
            row.params,
            row.body,
            Origin.from_row(row.origin, row.payload),
            row.depth,
            row.created,
            row.attempts,
        )


@dataclass(slots=True)
class DeliveryCounters:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    """Deliveries that failed for good (each then reached an error action or dead letters)."""
    error_actions: int = 0
    dead_lettered: int = 0
    refused: int = 0
    """Deliveries failed at once because their target already owed ``max_target_depth``."""
    spilled: int = 0
    """Deliveries left in the file because their lane's memory window was full."""
    latency_ns: int = 0
    """Sum over delivered ones of (delivered - received), for the mean."""

    def __bool__(self) -> bool:
        return any(asdict(self).values())


@dataclass(slots=True)
class _Output:
    remaining: int
    failures: list[tuple[Delivery, str]] = field(default_factory=list)


class _Lane:
    """One target's deliveries in id order, a window of them in memory."""

    def __init__(self, manager: DeliveryManager, key: str, kind: str) -> None:
        self.manager = manager
        self.key = key
        self.kind = kind
        self.memory: deque[Delivery] = deque()
        self.spilled = False
        self.high = 0
        """The highest id put in memory: rows above it are read back from the file."""
        self.last = 0
        """The highest id routed here (committed)."""
        self.depth = 0
        """Deliveries owed, in memory or not, including ones not yet committed."""
        self.counters = DeliveryCounters()
        self.reported_depth = -1
        self.failures = 0
        """Consecutive batches with retryable failures (the backoff's exponent)."""
        self.last_error: str | None = None
        self.retry_at: float | None = None
        self.target: Target | None = None
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def route(self, delivery: Delivery) -> None:
        self.last = max(self.last, delivery.id)
        if self.spilled or len(self.memory) >= self.manager.settings.delivery.target_window:
            self.spilled = True
            self.counters.spilled += 1
        else:
            self.memory.append(delivery)
            self.high = max(self.high, delivery.id)
        self.wake.set()
        if self.task is None:
            self.task = asyncio.create_task(self.run(), name=f"rules-lane {self.key}")

    async def run(self) -> None:
        manager = self.manager
        settings = manager.settings.delivery
        while True:
            if not self.memory:
                if self.spilled:
                    await self._read_back()
                    continue
                self.wake.clear()
                await self.wake.wait()
                continue
            limit = settings.batch_size
            if self.target is not None:
                limit = min(limit, self.target.batch_limit)
            batch = [self.memory.popleft() for _ in range(min(limit, len(self.memory)))]
            try:
                if self.target is None:
                    self.target = KINDS[self.kind].open_target(self.key, manager.env)
                    rest = batch[self.target.batch_limit :]  # they go first next time
                    del batch[self.target.batch_limit :]
                    self.memory.extendleft(reversed(rest))
                results = await self.target.deliver(batch)
            except asyncio.CancelledError:
                self.memory.extendleft(reversed(batch))
                raise
            except TargetError as exc:
                results = [exc] * len(batch)
            except Exception as exc:  # noqa: BLE001 - a target's bug must not lose the batch
                log.exception("target %s failed unexpectedly", self.key)
                results = [TargetError(f"{type(exc).__name__}: {exc}", retryable=True)] * len(batch)
            retry: list[Delivery] = []
            for delivery, error in zip(batch, results, strict=True):
                if error is None:
                    manager.succeeded(self, delivery)
                    continue
                delivery.attempts += 1
                forever = delivery.action == DEAD_LETTER
                if (error.retryable and delivery.attempts < settings.max_attempts) or forever:
                    retry.append(delivery)
                    self.last_error = str(error)
                    manager.retrying(self, delivery, str(error))
                else:
                    manager.failed(self, delivery, str(error))
            if retry:
                self.memory.extendleft(reversed(retry))
                await self._backoff()
            else:
                self.failures = 0
                self.retry_at = None

    async def _backoff(self) -> None:
        settings = self.manager.settings.delivery
        wait = min(settings.backoff_max, settings.backoff_initial * 2 ** min(self.failures, 62))
        wait *= 1 - settings.backoff_jitter * random.random()  # noqa: S311 - jitter, not secrecy
        self.failures += 1
        self.retry_at = time.time() + wait
        await asyncio.sleep(wait)

    async def _read_back(self) -> None:
        window = self.manager.settings.delivery.target_window
        rows = await asyncio.to_thread(self.manager.outbox.load, self.key, self.high, window)
        for row in rows:
            self.memory.append(Delivery.from_row(row))
        if rows:
            self.high = rows[-1].id
        if len(rows) < window and self.high >= self.last:
            self.spilled = False


class DeliveryManager:
    """The outbox's writer and the targets' lanes; ``start`` then ``submit``, ``stop``."""

    def __init__(
        self,
        settings: RulesSettings,
        outbox: Outbox,
        env: TargetEnv,
        rule_of: Callable[[str], RuleDefinition | None],
        *,
        account_id: str = "000000000000",
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.env = env
        self.rule_of = rule_of
        self.account_id = account_id
        self.lanes: dict[str, _Lane] = {}
        self.rule_counters: dict[str, DeliveryCounters] = {}
        self._inserts: list[Row] = []
        self._updates: list[Update] = []
        self._deletes: list[int] = []
        self._routes: list[Delivery] = []
        self._outputs: dict[str, _Output] = {}
        self._future: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        """New rows or a PUBACK waiting: commit now, without letting completions gather."""
        self._stopping = False
        self._writer: asyncio.Task[None] | None = None
        self.commits = 0
        self.idle = asyncio.Event()
        self.idle.set()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Take up what the file still owes (after a restart), then start writing."""
        for depth in await asyncio.to_thread(self.outbox.depths):
            lane = self._lane(depth.target, depth.target.partition(":")[0])
            lane.depth = depth.owed
            lane.spilled = True
            lane.last = depth.last_id
            lane.wake.set()
            lane.task = asyncio.create_task(lane.run(), name=f"rules-lane {lane.key}")
        for row in await asyncio.to_thread(self.outbox.open_outputs):
            output = self._outputs.setdefault(row.output_id, _Output(0))
            if row.state == OWED:
                output.remaining += 1
            else:
                output.failures.append((Delivery.from_row(row), row.error or "failed"))
        for output_id, output in list(self._outputs.items()):
            if output.remaining == 0:
                self._finish(output_id, output)
        self._writer = asyncio.create_task(self._write_loop(), name="rules-outbox")
        self._wake.set()

    async def stop(self) -> None:
        """Stop the lanes (what they hold is still owed), then commit everything pending,
        including a commit already handed to its thread, before the writer stops."""
        self._stopping = True
        lanes = [lane.task for lane in self.lanes.values() if lane.task is not None]
        for task in lanes:
            task.cancel()
        for task in lanes:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Cancelling a commit that its thread has not started would drop it: wait for the
        # writer to find nothing left (idle is cleared whenever anything is added).
        self._urgent.set()
        self._wake.set()
        if not self.idle.is_set():
            try:
                await asyncio.wait_for(self.idle.wait(), 30)
            except TimeoutError:
                log.error("rules outbox: %d rows not committed at shutdown", len(self._inserts))
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        for lane in self.lanes.values():
            if lane.target is not None:
                await lane.target.aclose()
        await asyncio.to_thread(self.outbox.close)

    def _pending(self) -> bool:
        return bool(self._inserts or self._updates or self._deletes)

    # -- the dispatch path -------------------------------------------------------------------

    def submit(self, definition: RuleDefinition, ctx: EvalContext, output: Any, depth: int) -> None:
        """Make one rule output's deliveries (one per action) and add them to the next commit."""
        actions = definition.actions
        siblings = len(actions)
        origin = Origin.of(ctx)
        version = definition.compiled.version.name
        created = time.time()
        limit = self.settings.delivery.max_target_depth
        counters = self._rule_counters(definition.name)
        deliveries: list[Delivery] = []
        output_id = ""
        for index, action in enumerate(actions):
            row_id = self.outbox.allocate()
            if not output_id:
                output_id = str(row_id)  # the first delivery's id names the output
            module = KINDS[action.kind]
            failure = None
            try:
                resolved: Resolved = module.resolve(action.params, output, ctx, version)
            except Exception as exc:  # noqa: BLE001 - a template that cannot be expanded
                resolved = Resolved("", {}, b"")
                failure = f"its parameters could not be expanded: {exc}"
            lane = self._lane(resolved.target, action.kind) if resolved.target else None
            if lane is not None and failure is None:
                if lane.depth >= limit:
                    failure = (
                        f"target {lane.key} already owes {lane.depth} deliveries "
                        f"(rules.delivery.max_target_depth); is it down?"
                    )
                    lane.counters.refused += 1
                    counters.refused += 1
                else:
                    lane.depth += 1
            deliveries.append(
                Delivery(
                    row_id,
                    new_id(),
                    output_id,
                    definition.name,
                    index,
                    siblings,
                    action.kind,
                    resolved.target,
                    resolved.params,
                    resolved.body,
                    origin,
                    depth,
                    created,
                    failure=failure,
                )
            )
        if siblings > 1:
            self._outputs[output_id] = _Output(siblings)
        for delivery in deliveries:
            if delivery.failure is None:
                self._inserts.append(delivery.row())
                self._routes.append(delivery)
            else:
                self._fail(delivery, delivery.failure)
        self._kick()

    def commit_waiter(self) -> asyncio.Future[None]:
        """Resolved once everything submitted so far is committed."""
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
            self._urgent.set()
        return self._future

    def _kick(self) -> None:
        self.idle.clear()
        self._wake.set()
        if self._inserts or self._future is not None:
            self._urgent.set()

    # -- the writer --------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        delay = self.settings.delivery.completion_delay
        while True:
            if not self._pending():
                if self._future is not None:
                    self._future.set_result(None)
                    self._future = None
                self.idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            if not self._inserts and self._future is None and delay and not self._stopping:
                # Only completions (deletes, retry counts): they may wait a little for the
                # next new rows' commit, one transaction less per message at low rates. A
                # crash meanwhile delivers those again, with their ids (at least once).
                self._urgent.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), delay)
            inserts, updates, deletes = self._inserts, self._updates, self._deletes
            routes, future = self._routes, self._future
            self._inserts, self._updates, self._deletes, self._routes = [], [], [], []
            self._future = None
            try:
                await asyncio.to_thread(self.outbox.write, inserts, updates, deletes)
            except Exception as exc:  # noqa: BLE001 - a full disk: keep everything, try again
                log.error("cannot write the rules outbox (%s); trying again", exc)
                self._inserts[:0], self._updates[:0], self._deletes[:0] = inserts, updates, deletes
                self._routes[:0] = routes
                if future is not None:
                    if self._future is None:
                        self._future = future
                    else:  # a later commit covers these too
                        follow(self._future, future)
                await asyncio.sleep(self.settings.delivery.backoff_initial)
                continue
            self.commits += 1
            for delivery in routes:
                self.lanes[delivery.target].route(delivery)
            if future is not None:
                future.set_result(None)

    # -- outcomes (called by the lanes) ------------------------------------------------------

    def succeeded(self, lane: _Lane, delivery: Delivery) -> None:
        lane.depth -= 1
        latency = max(0, time.time_ns() - delivery.origin.received_ms * 1_000_000)
        for counters in (lane.counters, self._rule_counters(delivery.rule)):
            counters.delivered += 1
            counters.latency_ns += latency
        self._deletes.append(delivery.id)
        self._resolved(delivery, None)
        self._kick()

    def retrying(self, lane: _Lane, delivery: Delivery, error: str) -> None:
        lane.counters.retried += 1
        self._rule_counters(delivery.rule).retried += 1
        self._updates.append(Update(delivery.id, delivery.attempts, error))
        if delivery.action == DEAD_LETTER and delivery.attempts in (1, 10, 100, 1000):
            log.error(
                "rule %s: the dead-letter queue %s cannot be written (%s); still trying",
                delivery.rule,
                delivery.target,
                error,
            )
        self._kick()

    def failed(self, lane: _Lane, delivery: Delivery, error: str) -> None:
        lane.depth -= 1
        lane.counters.failed += 1
        self._fail(delivery, error, written=True)
        self._kick()

    def _fail(self, delivery: Delivery, error: str, *, written: bool = False) -> None:
        """A delivery failed for good: on to the error path, its row replaced in one commit."""
        self._rule_counters(delivery.rule).failed += 1
        log.warning(
            "rule %s: %s delivery %s to %s failed: %s",
            delivery.rule,
            delivery.kind,
            delivery.message_id,
            delivery.target or "(no target)",
            error,
        )
        if delivery.action < 0:
            # The error action itself failed: its payload goes to the dead-letter queue.
            if written:
                self._deletes.append(delivery.id)
            payload = dict(
                delivery.params.get(ERROR_PAYLOAD)
                or self._payload(delivery.rule, delivery.origin, [])
            )
            payload["failures"] = [*payload.get("failures", []), self._failure(delivery, error)]
            self._emit(delivery.rule, delivery.origin, delivery.depth, payload, dead_letter=True)
            return
        if delivery.siblings == 1:
            if written:
                self._deletes.append(delivery.id)
            self._error([(delivery, error)])
            return
        # Wait for the output's other actions: one error payload lists every failed action.
        if written:
            self._updates.append(Update(delivery.id, delivery.attempts, error, WAITING))
        else:
            self._inserts.append(delivery.row(WAITING, error))
        self._resolved(delivery, error)

    def _resolved(self, delivery: Delivery, error: str | None) -> None:
        if delivery.siblings == 1 or delivery.action < 0:
            return
        output = self._outputs.get(delivery.output_id)
        if output is None:
            return
        output.remaining -= 1
        if error is not None:
            output.failures.append((delivery, error))
        if output.remaining <= 0:
            self._finish(delivery.output_id, output)

    def _finish(self, output_id: str, output: _Output) -> None:
        del self._outputs[output_id]
        if not output.failures:
            return
        self._deletes.extend(d.id for d, _ in output.failures)
        self._error(output.failures)
        self._kick()

    def _failure(self, delivery: Delivery, error: str) -> dict[str, str]:
        module = KINDS.get(delivery.kind)
        return {
            "failedAction": module.FAILED_ACTION if module else delivery.kind,
            "failedResource": module.resource(delivery.params) if module else "",
            "errorMessage": error,
        }

    def _error(self, failures: Sequence[tuple[Delivery, str]]) -> None:
        """AWS's error payload for one rule output, to the error action or dead letters."""
        first = failures[0][0]
        payload = self._payload(
            first.rule, first.origin, [self._failure(d, e) for d, e in failures]
        )
        self._emit(first.rule, first.origin, first.depth, payload, dead_letter=False)

    def evaluation_failed(
        self, rule: str, ctx: EvalContext, depth: int, failure: dict[str, str]
    ) -> None:
        """A rule whose evaluation failed for good (an ``aws_lambda`` call that kept failing):
        AWS's error payload to its error action (or dead letters), as a failed action's is."""
        origin = Origin.of(ctx)
        self._emit(rule, origin, depth, self._payload(rule, origin, [failure]), dead_letter=False)
        self._kick()

    def _payload(self, rule: str, origin: Origin, failures: list[dict[str, str]]) -> dict[str, Any]:
        return {
            "ruleName": rule,
            "topic": origin.topic,
            "cloudwatchTraceId": origin.trace_id,
            "clientId": origin.client_id or "",
            "base64OriginalPayload": b64(origin.payload),
            "failures": failures,
        }

    def _emit(
        self, rule: str, origin: Origin, depth: int, payload: dict[str, Any], *, dead_letter: bool
    ) -> None:
        definition = self.rule_of(rule)
        error_action = definition.error_action if definition is not None else None
        counters = self._rule_counters(rule)
        delivery: Delivery | None = None
        if not dead_letter and error_action is not None and definition is not None:
            module = KINDS[error_action.kind]
            try:
                resolved = module.resolve(
                    error_action.params,
                    payload,
                    origin.context(rule, self.account_id),
                    definition.compiled.version.name,
                )
            except Exception as exc:  # noqa: BLE001 - its template failed: dead letters
                payload["failures"].append(
                    {
                        "failedAction": module.FAILED_ACTION,
                        "failedResource": "",
                        "errorMessage": f"its parameters could not be expanded: {exc}",
                    }
                )
            else:
                # Kept beside the target's parameters: if the error action fails too, its
                # dead letter lists the first failures whatever the error action made of them.
                resolved = Resolved(
                    resolved.target, {**resolved.params, ERROR_PAYLOAD: payload}, resolved.body
                )
                delivery = self._new(rule, ERROR_ACTION, error_action.kind, resolved, origin, depth)
                counters.error_actions += 1
        if delivery is None:
            name = f"{rule}{self.settings.delivery.dead_letter_suffix}"
            resolved = Resolved(
                f"queue:{name}", {"queue": name, "priority": 0}, orjson.dumps(payload)
            )
            delivery = self._new(rule, DEAD_LETTER, "queue", resolved, origin, depth)
            counters.dead_lettered += 1
        self._lane(delivery.target, delivery.kind).depth += 1
        self._inserts.append(delivery.row())
        self._routes.append(delivery)

    def _new(
        self, rule: str, action: int, kind: str, resolved: Resolved, origin: Origin, depth: int
    ) -> Delivery:
        row_id = self.outbox.allocate()
        return Delivery(
            row_id,
            new_id(),
            str(row_id),
            rule,
            action,
            1,
            kind,
            resolved.target,
            resolved.params,
            resolved.body,
            origin,
            depth,
            time.time(),
        )

    # -- bookkeeping -------------------------------------------------------------------------

    def _lane(self, key: str, kind: str) -> _Lane:
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = _Lane(self, key, kind)
        return lane

    def _rule_counters(self, rule: str) -> DeliveryCounters:
        counters = self.rule_counters.get(rule)
        if counters is None:
            counters = self.rule_counters[rule] = DeliveryCounters()
        return counters

    def take_metrics(
        self,
    ) -> tuple[dict[str, DeliveryCounters], dict[str, tuple[DeliveryCounters, int]]]:
        """Counters since the last call per rule, and per target with its depth now."""
        rules = {name: c for name, c in self.rule_counters.items() if c}
        self.rule_counters = {}
        targets: dict[str, tuple[DeliveryCounters, int]] = {}
        for key, lane in self.lanes.items():
            if lane.counters or lane.depth != lane.reported_depth:
                targets[key] = (lane.counters, lane.depth)
                lane.counters = DeliveryCounters()
                lane.reported_depth = lane.depth
        return rules, targets

    def uncommitted(self) -> int:
        """Rows waiting for the next group commit."""
        return len(self._inserts)

    def owed(self) -> int:
        return sum(lane.depth for lane in self.lanes.values())

    async def drain(self, within: float = 10.0) -> None:
        """Wait until nothing is owed (tests and orderly shutdown)."""
        deadline = time.monotonic() + within
        while self.owed() or self._pending():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.owed()} deliveries still owed after {within} s")
            await asyncio.sleep(0.01)
