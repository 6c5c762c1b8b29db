"""Rule test cases: a folder of JSON files saying what a rule must make of a message (pure).

Beyond AWS (issue 7): AWS has no way to test a rule without deploying it. A case names a rule
(in the database, or a rule file relative to the case file), a message (topic, payload, client
id) and what must come out: the output, or ``null`` for "nothing" (WHERE does not pass), and
optionally the actions' targets. ``load_cases`` reads a folder with errors that name the file
and the case; ``run_cases`` evaluates each case as the engine would (the FROM filter through a
``TopicIndex``, Basic Ingest topics ``$aws/rules/<rule>/...`` for their rule only, with the
prefix stripped) and compares; the CLI renders the results.

Case file format (``*.json``, one case or a list of them)::

    {"name": "a hot reading becomes an alert",
     "rule": "../hot_readings.json",          # or a rule name in the database
     "topic": "sensors/kitchen/telemetry",
     "payload": {"temp": 61},                 # any JSON value, or {"base64": "..."} for bytes
     "clientId": "kitchen",                   # optional
     "expect": {"temp": 61, "device": "kitchen"},   # null: no output
     "expectActions": [{"action": "republish", "topic": "alerts/kitchen/hot"}],
     "ignore": ["at"]}                        # keys left out of the comparison (timestamp())

Comparison: JSON equality (``61`` equals ``61.0``, ``true`` is not ``1``); ``ignore`` names keys
of the output (and of the actions' payloads), dotted for nested ones (``"a.b"``), removed from
both sides. Each ``expectActions`` entry must match the action at its position on the keys it
gives (``action``, ``topic``, ``qos``, ``payload``); there must be as many actions as entries.
"""

from __future__ import annotations

import base64
import binascii
import copy
import difflib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rules.definition import RuleDefinition, rule_name
from rules.errors import RuleError
from rules.index import TopicIndex
from rules.sql.context import EvalContext
from thingcore.errors import ThingcoreError

INGEST_PREFIX = "$aws/rules/"
"""Basic Ingest topics (rules.engine.INGEST_PREFIX; not imported: the engine is a service)."""

CASE_KEYS = frozenset(
    {"name", "rule", "topic", "payload", "clientId", "expect", "expectActions", "ignore"}
)
_ABSENT: Any = object()

Status = Literal["pass", "fail", "error"]


# -- outputs as JSON -------------------------------------------------------------------------


def shown(output: Any) -> Any:
    """A rule output as JSON: bytes (a binary ``SELECT *``, an Undefined VALUE) as
    ``{"base64": ...}``, anything else as it is (outputs are JSON-ready)."""
    if isinstance(output, bytes | bytearray):
        return {"base64": base64.b64encode(bytes(output)).decode("ascii")}
    return output


def planned_actions(
    definition: RuleDefinition, ctx: EvalContext, output: Any
) -> list[dict[str, Any]]:
    """What each of the rule's actions would get for ``output``, without performing it."""
    if output is None:
        return []
    # Lazily: the action modules bring in the broker's properties, which evaluating needs not.
    from rules.actions import KINDS

    version = definition.compiled.version.name
    planned: list[dict[str, Any]] = []
    for action in definition.actions:
        resolved = KINDS[action.kind].resolve(action.params, output, ctx, version)
        entry: dict[str, Any] = {"action": action.kind, **resolved.params}
        entry["payload"] = shown(output)
        planned.append(entry)
    return planned


def seen_topic(definition: RuleDefinition, topic: str) -> str:
    """The topic as ``topic()`` shows it to the rule, if the engine would give the rule this
    message at all; ``RuleError`` saying why not otherwise."""
    if topic.startswith(INGEST_PREFIX):
        # $aws/rules/<rule>[/rest]: that rule only, without the prefix (rules.engine).
        name, _, rest = topic[len(INGEST_PREFIX) :].partition("/")
        if name != definition.name:
            raise RuleError(
                f"the Basic Ingest topic {topic!r} reaches rule {name!r} only, "
                f"not {definition.name!r}"
            )
        return rest
    topic_filter = definition.compiled.topic_filter
    if topic_filter is None:
        raise RuleError(
            f"rule {definition.name!r} has no FROM: it sees Basic Ingest topics only "
            f"({INGEST_PREFIX}{definition.name}/...)"
        )
    if not TopicIndex([(topic_filter, definition.name)]).match(topic):
        raise RuleError(
            f"topic {topic!r} does not match the rule's FROM {topic_filter!r}: "
            "the rule would not see this message"
        )
    return topic


# -- cases -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    file: Path
    """The case file (rule files are found relative to it)."""
    rule: str
    """As written: a rule name, or a rule file's path relative to ``file``."""
    rule_file: Path | None
    """The rule file, when ``rule`` names one; None for a rule in the database."""
    topic: str
    payload: bytes
    client_id: str | None = None
    expect: Any = _ABSENT
    """The expected output; None for "no output"; ``_ABSENT`` when not checked."""
    expect_actions: tuple[dict[str, Any], ...] | None = None
    ignore: tuple[str, ...] = ()

    @property
    def checks_output(self) -> bool:
        return self.expect is not _ABSENT


def _case_error(file: Path, label: str, message: str) -> RuleError:
    return RuleError(f"{file}: {label}: {message}")


def _payload(value: Any, fail: Callable[[str], RuleError]) -> bytes:
    if isinstance(value, dict) and set(value) == {"base64"}:
        encoded = value["base64"]
        if not isinstance(encoded, str):
            raise fail('"payload": {"base64": ...} takes a string')
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise fail('"payload": {"base64": ...} is not valid base64') from None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _is_rule_file(rule: str) -> bool:
    return rule.endswith(".json") or "/" in rule or "\\" in rule


def parse_case(raw: Any, file: Path, position: int | None = None) -> Case:
    """One case from its JSON; ``position`` is its index in a file that holds a list."""
    label = "the case" if position is None else f"case {position + 1}"
    if not isinstance(raw, dict):
        raise _case_error(file, label, "a case is a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise _case_error(file, label, '"name" is missing (a non-empty string)')
    label = f"case {name!r}"

    def fail(message: str) -> RuleError:
        return _case_error(file, label, message)

    unknown = sorted(set(raw) - CASE_KEYS)
    if unknown:
        raise fail(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"a case has {', '.join(sorted(CASE_KEYS))}"
        )
    rule = raw.get("rule")
    if not isinstance(rule, str) or not rule:
        raise fail('"rule" is missing: a rule name, or a rule file relative to the case file')
    rule_file: Path | None = None
    if _is_rule_file(rule):
        rule_file = file.parent / rule
    else:
        try:
            rule_name(rule)
        except RuleError as exc:
            raise fail(f'"rule": {exc} (a rule file needs its .json)') from None
    topic = raw.get("topic")
    if not isinstance(topic, str) or not topic:
        raise fail('"topic" is missing (the topic the message is published to)')
    if "payload" not in raw:
        raise fail('"payload" is missing: a JSON value, or {"base64": "..."} for bytes')
    payload = _payload(raw["payload"], fail)
    client_id = raw.get("clientId")
    if client_id is not None and not isinstance(client_id, str):
        raise fail('"clientId" must be a string')
    if "expect" not in raw and "expectActions" not in raw:
        raise fail(
            'nothing to check: give "expect" (the output, or null for none) and/or "expectActions"'
        )
    expect_actions = raw.get("expectActions")
    if expect_actions is not None:
        if not isinstance(expect_actions, list) or not all(
            isinstance(a, dict) and isinstance(a.get("action"), str) for a in expect_actions
        ):
            raise fail(
                '"expectActions" is a list of objects like {"action": "republish", "topic": "..."}'
            )
        expect_actions = tuple(expect_actions)
    ignore = raw.get("ignore", [])
    if not isinstance(ignore, list) or not all(isinstance(k, str) and k for k in ignore):
        raise fail('"ignore" is a list of output keys (dotted for nested ones: "a.b")')
    return Case(
        name=name,
        file=file,
        rule=rule,
        rule_file=rule_file,
        topic=topic,
        payload=payload,
        client_id=client_id,
        expect=raw.get("expect", _ABSENT),
        expect_actions=expect_actions,
        ignore=tuple(ignore),
    )


def read_case_file(file: Path) -> list[Case]:
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RuleError(f"{file}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise RuleError(f"{file}: not UTF-8 text") from None
    except ValueError as exc:
        raise RuleError(f"{file}: not valid JSON: {exc}") from None
    if isinstance(raw, list):
        if not raw:
            raise RuleError(f"{file}: the list of cases is empty")
        return [parse_case(item, file, i) for i, item in enumerate(raw)]
    if isinstance(raw, dict) and ("sql" in raw or "topicRulePayload" in raw):
        return []  # a rule file kept next to its cases
    return [parse_case(raw, file)]


def load_cases(source: Path) -> list[Case]:
    """The cases of every ``*.json`` file of folder ``source`` (or of the one file
    ``source``), in file-name order; rule files among them (objects with ``sql`` or
    ``topicRulePayload``) are skipped. All problems are reported together."""
    if source.is_dir():
        files = sorted(source.glob("*.json"))
        if not files:
            raise RuleError(f"{source} holds no case files (*.json)")
    elif source.is_file():
        files = [source]
    else:
        raise RuleError(f"{source} is not a folder of case files")
    cases: list[Case] = []
    problems: list[str] = []
    for file in files:
        try:
            cases.extend(read_case_file(file))
        except RuleError as exc:
            problems.append(str(exc))
    if problems:
        if len(problems) == 1:
            raise RuleError(problems[0])
        raise RuleError(f"{len(problems)} case files have problems:\n" + "\n".join(problems))
    if not cases:
        raise RuleError(f"{source} holds no test cases (only rule files)")
    return cases


# -- running ---------------------------------------------------------------------------------


@dataclass(slots=True)
class CaseResult:
    case: Case
    status: Status
    rule_name: str | None = None
    message: str | None = None
    """Why a case failed or could not run."""
    where_passed: bool | None = None
    output: Any = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    diff: list[str] = field(default_factory=list)
    """A unified diff, expected -> actual, of what differed."""

    def as_dict(self) -> dict[str, Any]:
        case = self.case
        entry: dict[str, Any] = {
            "name": case.name,
            "file": str(case.file),
            "rule": self.rule_name or case.rule,
            "status": self.status,
            "message": self.message,
            "wherePassed": self.where_passed,
            "output": self.output,
            "actions": self.actions,
            "diff": self.diff,
        }
        if case.checks_output:
            entry["expect"] = case.expect
        if case.expect_actions is not None:
            entry["expectActions"] = list(case.expect_actions)
        return entry


@dataclass(slots=True)
class CaseReport:
    results: list[CaseResult]
    seconds: float = 0.0

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def ok(self) -> bool:
        return all(r.status == "pass" for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cases": [r.as_dict() for r in self.results],
            "passed": self.count("pass"),
            "failed": self.count("fail"),
            "errors": self.count("error"),
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
        }


RuleLoader = Callable[[Path], RuleDefinition]
RuleLookup = Callable[[str], RuleDefinition]


class RuleSource:
    """The cases' rules, each read once: files through ``read_file``, names through
    ``lookup`` (the database). A rule that cannot be had fails its cases, not the run."""

    def __init__(self, read_file: RuleLoader, lookup: RuleLookup | None = None) -> None:
        self._read_file = read_file
        self._lookup = lookup
        self._found: dict[Path | str, RuleDefinition | ThingcoreError] = {}

    def __call__(self, case: Case) -> RuleDefinition:
        key: Path | str = case.rule_file if case.rule_file is not None else case.rule
        found = self._found.get(key)
        if found is None:
            try:
                if case.rule_file is not None:
                    found = self._read_file(case.rule_file)
                elif self._lookup is None:
                    found = RuleError(f"rule {case.rule!r}: no rules database to look it up in")
                else:
                    found = self._lookup(case.rule)
            except ThingcoreError as exc:
                found = exc
            self._found[key] = found
        if isinstance(found, ThingcoreError):
            raise found
        return found


def run_case(case: Case, definition: RuleDefinition, *, now_ms: int | None = None) -> CaseResult:
    """Evaluate ``definition`` on the case's message and compare with what the case expects."""
    result = CaseResult(case, "pass", definition.name)
    try:
        topic = seen_topic(definition, case.topic)
    except RuleError as exc:
        result.status, result.message = "error", str(exc)
        return result
    ctx = EvalContext(
        topic=topic,
        payload=case.payload,
        client_id=case.client_id,
        rule_name=definition.name,
        received_ms=int(time.time() * 1000) if now_ms is None else now_ms,
    )
    compiled = definition.compiled
    try:
        passed = compiled.where(ctx)
        output = compiled.select(ctx) if passed else None
        actions = planned_actions(definition, ctx, output)
    except Exception as exc:  # noqa: BLE001 - the rule's failure is the case's result
        result.status = "error"
        result.message = f"the rule failed on this message: {type(exc).__name__}: {exc}"
        return result
    result.where_passed = passed
    result.output = None if output is None else shown(output)
    result.actions = actions
    problems: list[str] = []
    if case.checks_output:
        expected = _without(case.expect, case.ignore)
        actual = _without(result.output, case.ignore)
        if not same_json(expected, actual):
            if expected is None:
                problems.append("expected no output, but the rule produced one")
            elif actual is None:
                why = "WHERE did not pass" if not passed else "the output cannot be sent"
                problems.append(f"expected an output, but the rule produced none ({why})")
            else:
                problems.append("the output differs")
            result.diff += _diff(expected, actual, "output")
    if case.expect_actions is not None:
        wanted = [_without_payload_keys(a, case.ignore) for a in case.expect_actions]
        keys = {"action", "topic"}.union(*(a.keys() for a in wanted))
        got = [
            {k: v for k, v in _without_payload_keys(a, case.ignore).items() if k in keys}
            for a in actions
        ]
        matched = len(wanted) == len(got) and all(
            all(k in g and same_json(v, g[k]) for k, v in w.items())
            for w, g in zip(wanted, got, strict=True)
        )
        if not matched:
            problems.append("the actions differ")
            result.diff += _diff(wanted, got, "actions")
    if problems:
        result.status = "fail"
        result.message = "; ".join(problems)
    return result


def run_cases(
    cases: Sequence[Case], rules: Callable[[Case], RuleDefinition], *, now_ms: int | None = None
) -> CaseReport:
    """Run every case; a case whose rule cannot be read is an error, the others still run."""
    started = time.perf_counter()
    results: list[CaseResult] = []
    for case in cases:
        try:
            definition = rules(case)
        except ThingcoreError as exc:
            results.append(CaseResult(case, "error", message=str(exc)))
            continue
        results.append(run_case(case, definition, now_ms=now_ms))
    return CaseReport(results, time.perf_counter() - started)


# -- comparing -------------------------------------------------------------------------------


def same_json(a: Any, b: Any) -> bool:
    """Equality of JSON values: numbers by value (``61 == 61.0``), but Booleans are not
    numbers (Python's ``True == 1`` is not JSON's)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def _without(value: Any, ignore: Sequence[str]) -> Any:
    """``value`` without the (dotted) keys of ``ignore``; untouched when it is no object."""
    if not ignore or not isinstance(value, dict):
        return value
    value = copy.deepcopy(value)
    for dotted in ignore:
        *parents, last = dotted.split(".")
        node: Any = value
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return value


def _without_payload_keys(action: dict[str, Any], ignore: Sequence[str]) -> dict[str, Any]:
    if "payload" not in action or not ignore:
        return action
    return {**action, "payload": _without(action["payload"], ignore)}


def _diff(expected: Any, actual: Any, what: str) -> list[str]:
    def lines(value: Any) -> list[str]:
        return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines()

    return list(
        difflib.unified_diff(
            lines(expected),
            lines(actual),
            fromfile=f"expected {what}",
            tofile=f"actual {what}",
            lineterm="",
        )
    )
