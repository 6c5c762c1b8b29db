"""The rules engine: compiled rules evaluated on the broker's dispatch path, actions after it.

Each distinct FROM filter is one Bus subscription, so the broker's router decides cheaply
whether a message concerns any rule at all; the engine's ``TopicIndex`` then names the rules
(cached per topic). Evaluation is a plain synchronous call per matching rule (no task, no
``await``, DESIGN.md on speed); each output's actions become deliveries in the durable outbox
(``rules.delivery``), whose lanes carry them out off the dispatch path, so a republish never
re-enters the router while it routes, and a slow target never holds the broker up. A rule that
raises is counted and skipped; the others go on. Rules that call an external function
(``get_thing_shadow``) are evaluated by a task, in a worker thread, off the dispatch path.

Basic Ingest: ``$aws/rules/<rule>/...`` is subscribed exclusively, so such messages reach the
named rule only (no subscribers, no other rules), with the prefix stripped for ``topic()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.bus import Bus, Subscription
from broker.message import Message
from broker.properties import Properties
from rules.actions.base import TargetEnv
from rules.aws import AwsClients
from rules.config import RulesSettings
from rules.definition import RuleDefinition, missing_extras
from rules.delivery import DeliveryManager, follow
from rules.errors import ExternalCallError, TargetError
from rules.index import TopicIndex
from rules.outbox import Outbox
from rules.sql.compiler import CompiledRule
from rules.sql.context import EvalContext, ShadowReader
from rules.store import Counters, RuleStore, StoredRule

if TYPE_CHECKING:
    from rules.local.buckets import BucketStore
    from rules.local.functions import FunctionRunner
    from rules.local.queues import QueueStore
    from rules.local.topics import TopicStore
    from rules.triggers.service import TriggerService

log = logging.getLogger("thingcore.rules")

INGEST_PREFIX = "$aws/rules/"
INGEST_FILTER = "$aws/rules/#"


@dataclass(slots=True)
class LiveRule:
    """A rule as the engine runs it: its definition, compiled SQL and counters."""

    definition: RuleDefinition
    compiled: CompiledRule
    counters: Counters = field(default_factory=Counters)

    @property
    def name(self) -> str:
        return self.definition.name


@dataclass(slots=True)
class _Work:
    rule: LiveRule
    ctx: EvalContext
    depth: int = 0
    """How many republishes led to the message (0: it came from a client or a service)."""
    done: asyncio.Future[None] | None = None
    """Resolved when the outputs are committed (a PUBACK waits on it)."""


class RulesEngine:
    """Runs the rules of a ``RuleStore`` on a Bus; use ``async with``."""

    def __init__(
        self,
        settings: RulesSettings,
        bus: Bus,
        store: RuleStore | None = None,
        *,
        account_id: str = "000000000000",
        region: str = "us-east-1",
        shadow_reader: ShadowReader | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.store = store
        self.account_id = account_id
        self.region = region
        """For the ARNs local functions and topics show (``context.invoked_function_arn``)."""
        self.shadow_reader = shadow_reader
        self.rules: dict[str, LiveRule] = {}
        self.broken: dict[str, str] = {}
        """Stored rules that cannot run (their SQL no longer compiles...), with why."""
        self._index: TopicIndex[LiveRule] = TopicIndex()
        self._subscriptions: dict[str, Subscription] = {}
        self._ingest: Subscription | None = None
        self._last: Message | None = None
        self._queue: deque[_Work] = deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Rules calling aws_lambda wait on the function in these threads, off the default
        # executor, so slow functions never starve the outbox's commits.
        self._executor = ThreadPoolExecutor(
            settings.external_concurrency, thread_name_prefix="rules-external"
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lambda_invoker = self._invoke_lambda  # bound once, not per message
        self.dropped = 0
        """Outputs refused because ``action_queue_size`` outputs were waiting for a commit."""
        self.data_dir = data_dir
        self._queues: QueueStore | None = None
        self._buckets: BucketStore | None = None
        self._functions: FunctionRunner | None = None
        self._topics: TopicStore | None = None
        self.triggers: TriggerService | None = None
        """Functions' schedules, queue batches and bucket writes (with a data directory)."""
        self.aws = AwsClients(settings.aws)
        # Without a data directory (tests, embedding) the outbox lives in memory.
        outbox_path = Path(":memory:") if data_dir is None else data_dir / "outbox.sqlite"
        self.delivery = DeliveryManager(
            settings,
            Outbox(outbox_path, synchronous=settings.delivery.synchronous),
            TargetEnv(
                self._republish,
                self._open_queues,
                self._open_buckets,
                self._open_functions,
                self._open_topics,
                self.aws,
                settings,
            ),
            self._definition_of,
            account_id=account_id,
        )
        self._hold_acks = settings.delivery.puback_after_commit
        self._submitted = False
        self.loops = 0
        """Messages not evaluated because republishing had gone ``max_republish_depth`` deep."""
        self._depth = 0
        """While an action republishes: the depth its message will have. Routing in process is
        synchronous, so ``_on_message`` sees the value set around ``bus.publish``."""
        self.idle = asyncio.Event()
        self.idle.set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> RulesEngine:
        self._loop = asyncio.get_running_loop()
        if self.store is not None:
            await self.reload()
        await self.delivery.start()
        if self.settings.triggers.enabled and self.data_dir is not None:
            await self._start_triggers(self.data_dir)
        self._ingest = self.bus.subscribe(INGEST_FILTER, self._on_ingest, exclusive=True)
        self._tasks = [
            asyncio.create_task(self._act(), name="rules-external"),
            asyncio.create_task(self._flush_metrics_loop(), name="rules-metrics"),
        ]
        return self

    async def _start_triggers(self, data_dir: Path) -> None:
        # One function runner and queue store for rules and triggers alike: one pool of warm
        # workers per function, one connection to the queue file.
        from rules.triggers.context import TriggerContext
        from rules.triggers.service import TriggerService

        context = TriggerContext(
            self._open_functions(),
            self._open_queues,
            self._open_buckets,
            self.settings.triggers,
            data_dir,
            region=self.region,
            account_id=self.account_id,
        )
        self.triggers = await TriggerService(context).__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        if self.triggers is not None:
            await self.triggers.__aexit__(None, None, None)
            self.triggers = None
        for subscription in self._subscriptions.values():
            subscription.cancel()
        self._subscriptions.clear()
        if self._ingest is not None:
            self._ingest.cancel()
            self._ingest = None
        if not self.idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), 10)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._executor.shutdown(wait=False, cancel_futures=True)
        await self.delivery.stop()
        await self.flush_metrics()
        if self._functions is not None:
            await self._functions.aclose()
        if self._topics is not None:
            self._topics.close()
        if self._buckets is not None:
            self._buckets.close()
        if self._queues is not None:
            self._queues.close()

    # -- local targets, opened on first use -----------------------------------------------------

    def _local_dir(self, what: str) -> Path:
        if self.data_dir is None:
            raise TargetError(f"local {what} need a data directory; this engine has none")
        return self.data_dir

    def _open_queues(self) -> QueueStore:
        if self._queues is None:
            from rules.local.queues import QueueStore

            self._queues = QueueStore.from_settings(self.settings.local, self._local_dir("queues"))
        return self._queues

    def _open_buckets(self) -> BucketStore:
        if self._buckets is None:
            from rules.local.buckets import BucketStore

            self._buckets = BucketStore.from_settings(
                self.settings.local, self._local_dir("buckets")
            )
        return self._buckets

    def _open_functions(self) -> FunctionRunner:
        if self._functions is None:
            from rules.local.functions import FunctionRunner

            self._functions = FunctionRunner.from_settings(
                self.settings.local,
                self._local_dir("functions"),
                region=self.region,
                account_id=self.account_id,
            )
        return self._functions

    def _open_topics(self) -> TopicStore:
        if self._topics is None:
            from rules.local.topics import TopicStore

            self._topics = TopicStore.from_settings(
                self.settings.local,
                self._local_dir("topics"),
                self._open_queues(),
                region=self.region,
                account=self.account_id,
            )
        return self._topics

    def _republish(
        self, topic: str, payload: bytes, qos: int, properties: Properties | None, depth: int
    ) -> None:
        # Routing in process is synchronous: _on_message sees the depth set around it.
        self._depth = depth + 1
        try:
            self.bus.publish(topic, payload, qos=qos, properties=properties)
        finally:
            self._depth = 0

    def _definition_of(self, name: str) -> RuleDefinition | None:
        rule = self.rules.get(name)
        return rule.definition if rule is not None else None

    async def reload(self) -> None:
        """Read every rule from the store and run that set from now on."""
        if self.store is None:
            return
        stored = await asyncio.to_thread(self.store.all)
        # Compiling thousands of rules takes a second or two: not on the event loop.
        rules, broken = await asyncio.to_thread(self.compile, stored)
        self._swap(rules, broken)

    async def on_changes(self, kinds: set[str], keys: dict[str, set[str]]) -> None:
        """Change-feed listener: a rule changed somewhere (CLI, another server)."""
        if "rule" in kinds:
            await self.reload()

    def install(self, stored: list[StoredRule]) -> None:
        """Compile ``stored`` and swap it in; unchanged rules keep their counters."""
        self._swap(*self.compile(stored))

    def compile(self, stored: list[StoredRule]) -> tuple[dict[str, LiveRule], dict[str, str]]:
        """The runnable rules of ``stored`` and the broken ones with why (any thread)."""
        # Thousands of compiled rules are hundreds of thousands of long-lived objects: with the
        # cyclic collector running, its full passes over them cost more than compiling
        # (bench/rules_eval.py). Pause it while compiling, then move the result out of its way.
        collecting = gc.isenabled()
        gc.disable()
        try:
            found = self._compile_all(stored)
        finally:
            if collecting:
                gc.enable()
        gc.freeze()
        return found

    def _swap(self, rules: dict[str, LiveRule], broken: dict[str, str]) -> None:
        for name, why in broken.items():
            if self.broken.get(name) != why:
                log.error("rule %s cannot run: %s", name, why)
        index: TopicIndex[LiveRule] = TopicIndex()
        filters: set[str] = set()
        for rule in rules.values():
            topic_filter = rule.compiled.topic_filter
            if topic_filter is not None and not rule.definition.disabled:
                index.add(topic_filter, rule)
                filters.add(topic_filter)
        self.rules, self.broken, self._index = rules, broken, index
        for topic_filter in list(self._subscriptions):
            if topic_filter not in filters:
                self._subscriptions.pop(topic_filter).cancel()
        for topic_filter in sorted(filters - set(self._subscriptions)):
            try:
                self._subscriptions[topic_filter] = self.bus.subscribe(
                    topic_filter, self._on_message
                )
            except Exception as exc:  # noqa: BLE001 - the broker refuses a filter it cannot hold
                log.error("rules with FROM %r cannot be subscribed: %s", topic_filter, exc)

    def _compile_all(self, stored: list[StoredRule]) -> tuple[dict[str, LiveRule], dict[str, str]]:
        rules: dict[str, LiveRule] = {}
        broken: dict[str, str] = {}
        for item in stored:
            try:
                definition = item.definition()
            except Exception as exc:  # noqa: BLE001 - a broken stored rule must not stop the rest
                broken[item.name] = str(exc)
                continue
            missing = missing_extras(definition, self.settings)
            if missing:
                broken[item.name] = "; ".join(missing)
                continue
            old = self.rules.get(item.name)
            counters = old.counters if old is not None else Counters()
            rules[item.name] = LiveRule(definition, definition.compiled, counters)
        return rules, broken

    # -- the dispatch path ----------------------------------------------------------------------

    def _context(self, message: Message, topic: str, rule_name: str = "") -> EvalContext:
        properties = message.properties
        return EvalContext(
            topic=topic,
            payload=message.payload,
            client_id=message.client_id,
            principal=message.principal,
            # The message's trace id is made (a UUID) only if a rule calls traceid().
            trace_source=_trace_of(message),
            received_ms=int(message.received_at * 1000),
            account_id=self.account_id,
            rule_name=rule_name,
            shadow_reader=self.shadow_reader,
            lambda_invoker=self._lambda_invoker,
            response_topic=properties.response_topic if properties is not None else None,
            correlation_data=properties.correlation_data if properties is not None else None,
        )

    def _on_message(self, message: Message) -> None:
        # A message matching several FROM filters arrives once per subscription: run it once.
        if message is self._last:
            return
        self._last = message
        rules = self._index.match(message.topic)
        if not rules:
            return
        depth = self._depth
        if depth >= self.settings.max_republish_depth:
            self.loops += 1
            if self.loops == 1 or self.loops % 10_000 == 0:
                log.warning(
                    "rules republish in a loop: %s was republished %d times in a row and is "
                    "not evaluated again (%d so far); check rules whose FROM matches their "
                    "own republish topic",
                    message.topic,
                    depth,
                    self.loops,
                )
            return
        ctx = self._context(message, message.topic)
        self._submitted = False
        for rule in rules:
            self._evaluate(rule, ctx, depth)
        self._hold_if_submitted(message)

    def _on_ingest(self, message: Message) -> None:
        # $aws/rules/<rule>[/rest]: only that rule, topic() without the prefix (reference 2.8).
        rest = message.topic[len(INGEST_PREFIX) :]
        name, _, topic = rest.partition("/")
        rule = self.rules.get(name)
        if rule is None or rule.definition.disabled:
            return
        self._submitted = False
        self._evaluate(rule, self._context(message, topic, name), self._depth)
        self._hold_if_submitted(message)

    def _hold_if_submitted(self, message: Message) -> None:
        """With ``puback_after_commit``: the client's PUBACK waits for this message's rows."""
        if self._submitted and message.qos and self._hold_acks:
            self.bus.hold_ack(self.delivery.commit_waiter())

    def _evaluate(self, rule: LiveRule, ctx: EvalContext, depth: int) -> None:
        counters = rule.counters
        counters.matched += 1
        if rule.compiled.external:
            self._defer(rule, ctx, depth)
            return
        started = time.perf_counter_ns()
        try:
            output = rule.compiled.evaluate(ctx)
        except Exception:  # noqa: BLE001 - one rule's failure must not stop the others
            counters.failed += 1
            log.debug("rule %s failed on %s", rule.name, ctx.topic, exc_info=True)
            return
        finally:
            counters.eval_ns += time.perf_counter_ns() - started
        if output is None:
            return
        counters.passed += 1
        self._submit(rule, ctx, output, depth)

    def _submit(self, rule: LiveRule, ctx: EvalContext, output: Any, depth: int) -> None:
        rule.counters.outputs += 1
        if not rule.definition.actions:
            return
        if self.delivery.uncommitted() >= self.settings.action_queue_size:
            # The outbox's disk cannot keep up: refuse, count, say so (never silently).
            rule.counters.dropped += 1
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.error(
                    "rules outbox overloaded: %d outputs refused so far (action_queue_size "
                    "%d waiting for a commit); set rules.delivery.puback_after_commit to "
                    "slow devices down instead",
                    self.dropped,
                    self.settings.action_queue_size,
                )
            return
        self.delivery.submit(rule.definition, ctx, output, depth)
        self._submitted = True

    def _defer(self, rule: LiveRule, ctx: EvalContext, depth: int) -> None:
        """A rule that calls an external function: evaluated by ``_act`` in a thread."""
        if len(self._queue) >= self.settings.action_queue_size:
            rule.counters.dropped += 1
            self.dropped += 1
            return
        done = None
        if self._hold_acks:
            done = asyncio.get_running_loop().create_future()
            self.bus.hold_ack(done)
        self._queue.append(_Work(rule, ctx, depth, done))
        self.idle.clear()
        self._wake.set()

    # -- rules evaluated off the dispatch path ---------------------------------------------------

    async def _act(self) -> None:
        # Up to external_concurrency rules are evaluated at once (each may wait on a function);
        # their outputs are submitted in the order the messages came, so per-rule order holds.
        queue = self._queue
        running: deque[tuple[_Work, asyncio.Task[Any]]] = deque()
        limit = self.settings.external_concurrency
        while True:
            while queue and len(running) < limit:
                work = queue.popleft()
                task = asyncio.create_task(self._evaluate_off_path(work))
                running.append((work, task))
            if not running:
                self.idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            work, task = running[0]
            try:
                output = await task
            except asyncio.CancelledError:
                for _, other in running:
                    other.cancel()
                raise
            running.popleft()
            if output is not None:
                self._submit(work.rule, work.ctx, output, work.depth)
            if work.done is not None:
                follow(self.delivery.commit_waiter(), work.done)

    async def _evaluate_off_path(self, work: _Work) -> Any:
        rule, ctx = work.rule, work.ctx
        loop = asyncio.get_running_loop()
        attempts = 0
        while True:
            started = time.perf_counter_ns()
            try:
                output = await loop.run_in_executor(self._executor, rule.compiled.evaluate, ctx)
            except ExternalCallError as exc:
                attempts += 1
                if exc.retryable and attempts < self.settings.delivery.max_attempts:
                    await asyncio.sleep(self._backoff(attempts))
                    continue
                # The message would be lost silently: AWS's error payload goes to the error
                # action (or the dead-letter queue) with what failed.
                rule.counters.failed += 1
                log.warning("rule %s: %s", rule.name, exc)
                failure = {
                    "failedAction": exc.action,
                    "failedResource": exc.resource,
                    "errorMessage": str(exc),
                }
                self.delivery.evaluation_failed(rule.name, ctx, work.depth, failure)
                return None
            except Exception:  # noqa: BLE001 - one rule's failure must not stop the others
                rule.counters.failed += 1
                log.debug("rule %s failed on %s", rule.name, ctx.topic, exc_info=True)
                return None
            finally:
                rule.counters.eval_ns += time.perf_counter_ns() - started
            if output is not None:
                rule.counters.passed += 1
            return output

    def _backoff(self, attempts: int) -> float:
        settings = self.settings.delivery
        wait: float = min(
            settings.backoff_max, settings.backoff_initial * 2 ** min(attempts - 1, 62)
        )
        return wait * (1 - settings.backoff_jitter * random.random())  # noqa: S311 - jitter

    # -- aws_lambda() ---------------------------------------------------------------------------

    def _invoke_lambda(self, function_arn: str, event: Any) -> Any:
        """``aws_lambda``'s call, in a worker thread: a local function while Lambda maps to
        local functions (``aws_targets``), else Lambda's synchronous invoke through boto3."""
        if self.settings.aws_mode("lambda") == "local":
            return self._invoke_local(function_arn, event)
        return self._invoke_aws(function_arn, event)

    def _invoke_local(self, function_arn: str, event: Any) -> Any:
        from rules.actions.lambda_ import function_name
        from rules.local.functions import FunctionError

        name = function_name(function_arn)
        loop = self._loop
        if loop is None:
            raise ExternalCallError(
                "aws_lambda: the rules engine is not running",
                action="aws_lambda",
                resource=function_arn,
                retryable=True,
            )

        async def call() -> Any:
            # Opened and invoked on the event loop: the runner is not thread-safe.
            return (await self._open_functions().invoke(name, event)).value

        # Bounded: a stopping loop must not leave this thread waiting for ever.
        patience = self.settings.local.function_timeout * 4 + 10
        try:
            return asyncio.run_coroutine_threadsafe(call(), loop).result(patience)
        except TimeoutError:
            raise ExternalCallError(
                f"aws_lambda({function_arn}): no answer within {patience:g} s",
                action="aws_lambda",
                resource=function_arn,
                retryable=True,
            ) from None
        except (FunctionError, TargetError) as exc:
            raise ExternalCallError(
                f"aws_lambda({function_arn}): {exc}",
                action="aws_lambda",
                resource=function_arn,
                retryable=exc.retryable,
            ) from None

    def _invoke_aws(self, function_arn: str, event: Any) -> Any:
        import orjson

        from rules.aws import target_error

        what = f"aws_lambda({function_arn})"
        try:
            client = self.aws.client("lambda")
            response = client.invoke(
                FunctionName=function_arn,
                InvocationType="RequestResponse",
                Payload=orjson.dumps(event),
            )
            body = response["Payload"].read()
        except Exception as exc:  # noqa: BLE001 - boto3's errors, classified
            error = exc if isinstance(exc, TargetError) else target_error(exc, what)
            raise ExternalCallError(
                str(error), action="aws_lambda", resource=function_arn, retryable=error.retryable
            ) from None
        if response.get("FunctionError"):
            raise ExternalCallError(
                f"{what}: the function failed ({response['FunctionError']}): {body[:300]!r}",
                action="aws_lambda",
                resource=function_arn,
                retryable=False,
            )
        if not body:
            return None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ExternalCallError(
                f"{what}: the function's answer is not JSON: {body[:300]!r}",
                action="aws_lambda",
                resource=function_arn,
                retryable=False,
            ) from None

    async def drain(self, within: float = 10.0) -> None:
        """Wait until every output so far is evaluated and delivered (or dead-lettered)."""
        await asyncio.wait_for(self.idle.wait(), within)
        await self.delivery.drain(within)

    # -- metrics ---------------------------------------------------------------------------------

    def take_metrics(self) -> dict[str, Counters]:
        """Counters since the last call, per rule (and reset them)."""
        deltas: dict[str, Counters] = {}
        for rule in self.rules.values():
            if rule.counters:
                deltas[rule.name] = rule.counters
                rule.counters = Counters()
        return deltas

    async def flush_metrics(self) -> None:
        deltas = self.take_metrics()
        rules, targets = self.delivery.take_metrics()
        if self.store is None:
            return
        try:
            if deltas:
                await asyncio.to_thread(self.store.add_metrics, deltas)
            if rules or targets:
                await asyncio.to_thread(self.store.add_delivery_metrics, rules, targets)
        except Exception:  # noqa: BLE001 - counters are not worth stopping for
            log.warning("writing rule counters failed", exc_info=True)

    async def _flush_metrics_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.metrics_flush_interval)
            await self.flush_metrics()


def _trace_of(message: Message) -> Callable[[], str]:
    return lambda: message.trace_id
