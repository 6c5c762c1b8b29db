"""Replaying recorded traffic through rules: what they would have done, and at what cost (pure).

Beyond AWS (issue 7). ``thingcore capture`` records messages as JSON Lines, one
``CapturedMessage`` per line::

    {"t": 1718000000123, "topic": "sensors/kitchen/telemetry", "qos": 0, "retain": false,
     "payload": "{\\"temp\\": 61}", "clientId": null}

``payload`` holds the payload when it is UTF-8 text, ``payloadBase64`` otherwise; ``t`` is when
it was received (epoch milliseconds; ``timestamp()`` during the replay), ``clientId`` the
publisher when known (``clientid()``; a broker does not tell subscribers, so a capture writes
null and a hand-written file may fill it in). Only ``topic`` and one payload key are required.

``Replayer`` matches each message as ``rules.engine.RulesEngine`` does: enabled rules by their
FROM filter through a ``TopicIndex`` (each rule once, one shared context per message), Basic
Ingest topics ``$aws/rules/<rule>/...`` to that rule alone with the prefix stripped, disabled
rules never. It evaluates WHERE and SELECT, counts what the engine counts and keeps the first
few outputs (with where each action would send them) and the first few failures. No action
is performed.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rules.definition import RuleDefinition
from rules.errors import RuleError
from rules.index import TopicIndex
from rules.sql.context import EvalContext
from rules.testing import INGEST_PREFIX, planned_actions, shown

LINE_KEYS = frozenset({"t", "topic", "qos", "retain", "payload", "payloadBase64", "clientId"})


# -- the capture format ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CapturedMessage:
    t: int
    """Received at, epoch milliseconds."""
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    client_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        line: dict[str, Any] = {
            "t": self.t,
            "topic": self.topic,
            "qos": self.qos,
            "retain": self.retain,
        }
        try:
            line["payload"] = self.payload.decode("utf-8")
        except UnicodeDecodeError:
            line["payloadBase64"] = base64.b64encode(self.payload).decode("ascii")
        line["clientId"] = self.client_id
        return line

    def to_line(self) -> str:
        """The message as one JSON Lines line (without the newline)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)


def parse_line(text: str, where: str, *, default_t: int | None = None) -> CapturedMessage:
    """One capture line; ``where`` (``file:line``) starts every error message."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise RuleError(f"{where}: not a JSON line: {exc}") from None
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: a capture line is a JSON object")
    unknown = sorted(set(raw) - LINE_KEYS)
    if unknown:
        raise RuleError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; a line has {', '.join(sorted(LINE_KEYS))}"
        )
    topic = raw.get("topic")
    if not isinstance(topic, str) or not topic:
        raise RuleError(f'{where}: "topic" is missing')
    if ("payload" in raw) == ("payloadBase64" in raw):
        raise RuleError(
            f'{where}: give the payload as "payload" (text) or "payloadBase64" (bytes), once'
        )
    if "payload" in raw:
        text_payload = raw["payload"]
        if not isinstance(text_payload, str):
            raise RuleError(
                f'{where}: "payload" is the payload as text (JSON payloads as a string)'
            )
        payload = text_payload.encode("utf-8")
    else:
        try:
            payload = base64.b64decode(raw["payloadBase64"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise RuleError(f'{where}: "payloadBase64" is not valid base64') from None
    t = raw.get("t", default_t if default_t is not None else int(time.time() * 1000))
    if isinstance(t, bool) or not isinstance(t, int | float):
        raise RuleError(f'{where}: "t" is epoch milliseconds (a number)')
    qos = raw.get("qos", 0)
    if qos not in (0, 1, 2) or isinstance(qos, bool):
        raise RuleError(f'{where}: "qos" is 0, 1 or 2')
    retain = raw.get("retain", False)
    if not isinstance(retain, bool):
        raise RuleError(f'{where}: "retain" is true or false')
    client_id = raw.get("clientId")
    if client_id is not None and not isinstance(client_id, str):
        raise RuleError(f'{where}: "clientId" is a string or null')
    return CapturedMessage(int(t), topic, payload, qos, retain, client_id)


def parse_capture(lines: Iterable[str], source: str) -> Iterator[CapturedMessage]:
    """The messages of a capture file's lines (blank lines skipped); errors name
    ``source:line``."""
    default_t = int(time.time() * 1000)
    for number, text in enumerate(lines, 1):
        if text.strip():
            yield parse_line(text, f"{source}:{number}", default_t=default_t)


# -- replaying -----------------------------------------------------------------------------------


@dataclass(slots=True)
class RuleReplay:
    """One rule's counters over a replay, and the first outputs and failures it had."""

    definition: RuleDefinition
    matched: int = 0
    passed: int = 0
    """WHERE passed (or there is none)."""
    failed: int = 0
    """Evaluation raised (the engine counts and skips these)."""
    outputs: int = 0
    """Messages the rule's actions would have got."""
    eval_ns: int = 0
    first_outputs: list[dict[str, Any]] = field(default_factory=list)
    first_errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def mean_eval_micros(self) -> float | None:
        return round(self.eval_ns / self.matched / 1000, 2) if self.matched else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ruleName": self.name,
            "from": self.definition.compiled.topic_filter,
            "ruleDisabled": self.definition.disabled,
            "matched": self.matched,
            "passed": self.passed,
            "failed": self.failed,
            "outputs": self.outputs,
            "meanEvalMicros": self.mean_eval_micros,
            "firstOutputs": self.first_outputs,
            "firstErrors": self.first_errors,
        }


@dataclass(slots=True)
class ReplayReport:
    messages: int
    unmatched: int
    """Messages no rule saw."""
    first_t: int | None
    last_t: int | None
    rules: list[RuleReplay]
    broken: dict[str, str]
    """Rules that cannot run (their stored SQL no longer compiles...), with why."""
    keep: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "unmatched": self.unmatched,
            "firstT": self.first_t,
            "lastT": self.last_t,
            "rules": [r.as_dict() for r in self.rules],
            "broken": self.broken,
        }


class Replayer:
    """Feeds captured messages to rules as the engine would, without performing actions."""

    def __init__(
        self,
        definitions: Iterable[RuleDefinition],
        *,
        keep: int = 3,
        account_id: str = "000000000000",
        broken: dict[str, str] | None = None,
    ) -> None:
        self.keep = keep
        self.account_id = account_id
        self.broken = dict(broken or {})
        self.rules: dict[str, RuleReplay] = {}
        for definition in sorted(definitions, key=lambda d: d.name):
            if definition.name in self.rules:
                raise RuleError(f"rule {definition.name!r} is given twice")
            self.rules[definition.name] = RuleReplay(definition)
        self._index: TopicIndex[RuleReplay] = TopicIndex()
        for rule in self.rules.values():
            topic_filter = rule.definition.compiled.topic_filter
            if topic_filter is not None and not rule.definition.disabled:
                self._index.add(topic_filter, rule)
        self.messages = 0
        self.unmatched = 0
        self.first_t: int | None = None
        self.last_t: int | None = None

    def feed(self, message: CapturedMessage) -> None:
        self.messages += 1
        if self.first_t is None or message.t < self.first_t:
            self.first_t = message.t
        if self.last_t is None or message.t > self.last_t:
            self.last_t = message.t
        if message.topic.startswith(INGEST_PREFIX):
            # Subscribed exclusively by the engine: the named rule only (rules.engine).
            name, _, topic = message.topic[len(INGEST_PREFIX) :].partition("/")
            rule = self.rules.get(name)
            if rule is None or rule.definition.disabled:
                self.unmatched += 1
                return
            self._evaluate(rule, self._context(message, topic, name), message)
            return
        rules = self._index.match(message.topic)
        if not rules:
            self.unmatched += 1
            return
        ctx = self._context(message, message.topic)
        for rule in rules:
            self._evaluate(rule, ctx, message)

    def run(self, messages: Iterable[CapturedMessage]) -> ReplayReport:
        for message in messages:
            self.feed(message)
        return self.report()

    def report(self) -> ReplayReport:
        return ReplayReport(
            self.messages,
            self.unmatched,
            self.first_t,
            self.last_t,
            list(self.rules.values()),
            self.broken,
            self.keep,
        )

    def _context(self, message: CapturedMessage, topic: str, rule_name: str = "") -> EvalContext:
        return EvalContext(
            topic=topic,
            payload=message.payload,
            client_id=message.client_id,
            received_ms=message.t,
            account_id=self.account_id,
            rule_name=rule_name,
        )

    def _evaluate(self, rule: RuleReplay, ctx: EvalContext, message: CapturedMessage) -> None:
        rule.matched += 1
        compiled = rule.definition.compiled
        started = time.perf_counter_ns()
        try:
            passed = compiled.where(ctx)
            output = compiled.select(ctx) if passed else None
        except Exception as exc:  # noqa: BLE001 - as the engine: count, keep going
            rule.failed += 1
            if len(rule.first_errors) < self.keep:
                rule.first_errors.append(
                    {
                        "t": message.t,
                        "topic": message.topic,
                        "error": f"{type(exc).__name__}: {exc}",
                    }
                )
            return
        finally:
            rule.eval_ns += time.perf_counter_ns() - started
        if not passed:
            return
        rule.passed += 1
        if output is None:
            return
        rule.outputs += 1
        if len(rule.first_outputs) < self.keep:
            try:
                actions = planned_actions(rule.definition, ctx, output)
            except Exception as exc:  # noqa: BLE001 - an action's template failing is shown
                actions = [{"error": f"{type(exc).__name__}: {exc}"}]
            for action in actions:
                action.pop("payload", None)  # the output, shown once
            rule.first_outputs.append(
                {
                    "t": message.t,
                    "topic": message.topic,
                    "output": shown(output),
                    "actions": actions,
                }
            )


def replay(
    messages: Iterable[CapturedMessage], definitions: Iterable[RuleDefinition], **options: Any
) -> ReplayReport:
    """``Replayer(definitions, **options).run(messages)``."""
    return Replayer(definitions, **options).run(messages)
