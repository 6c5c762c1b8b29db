"""The application file ``thingcore-app.toml``: a whole IoT application in one versioned file.

Distinct from the server's settings (``thingcore.toml``): this file says *what runs* (rules,
functions, queues, buckets, topics), ``thingcore apply`` makes the data directory match it::

    [app]
    name = "greenhouse"

    [rules.hot_readings]                 # AWS's TopicRulePayload fields...
    sql = "SELECT temp, topic(2) AS device FROM 'sensors/+/telemetry' WHERE temp > 50"
    actions = [{ queue = { queueName = "hot" } }]

    [rules.cold_readings]                # ...or a rule file (JSON) relative to this file
    file = "rules/cold.json"

    [functions.notify]                   # the handler file, relative to this file; the other
    source = "functions/notify.py"       # keys are the function's sidecar (rules.local.functions)
    timeout = 5.0
    concurrency = 2
    environment = { LEVEL = "high" }
    events = [{ queue = "hot", batch_size = 10 }, { schedule = "rate(1 hour)" }]

    [queues.hot]                         # made (empty) if missing
    [buckets.readings]                   # made (empty) if missing
    [topics.alerts]                      # a local SNS-like topic and its subscribed queues
    subscribers = ["pager", { queue = "audit", raw = true }]

Parsing is pure: ``parse_app`` takes the decoded TOML and a function that reads the files the
app names, checks everything (rule SQL compiled, events parsed, names as the stores check them,
handler source compiled) and reports every problem at once, each naming its table and key.
``load_app`` is the thin IO shell around it.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rules.definition import RuleDefinition, parse_definition
from rules.local.buckets import BucketError, check_bucket
from rules.local.functions import (
    FUNCTION_NAME,
    HANDLER_NAME,
    MIN_MEMORY_MB,
    SIDECAR_KEYS,
)
from rules.local.queues import QueueError, check_queue_name
from rules.local.topics import TopicError, check_topic_name
from rules.triggers.config import parse_events
from thingcore.errors import ThingcoreError

APP_FILE = "thingcore-app.toml"
"""The file ``thingcore apply`` reads when given none."""
APP_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
TABLES = ("app", "rules", "functions", "queues", "buckets", "topics")
SIDECAR_HEADER = (
    "# Made by `thingcore apply` from the app file; edit the app file and apply it instead.\n"
)

Reader = Callable[[str], str]
"""Reads a file the app names (a path relative to the app file): its text, or ``ValueError``
saying why it cannot."""


class AppFileError(ThingcoreError):
    """The app file cannot be applied; ``problems`` lists every reason, each naming where."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        listed = "\n".join(f"  {p}" for p in problems)
        count = "a problem" if len(problems) == 1 else f"{len(problems)} problems"
        super().__init__(f"{source} has {count}; nothing was applied:\n{listed}")


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A function as the app file defines it: its handler's code and the sidecar made for it."""

    name: str
    source: str
    """The handler file, as the app file names it."""
    code: str
    sidecar: str | None
    """The ``<name>.toml`` text, or None when the function sets nothing beyond its source."""


@dataclass(frozen=True, slots=True)
class Subscriber:
    queue: str
    raw: bool = False


@dataclass(frozen=True, slots=True)
class AppSpec:
    """A checked app file: every resource it declares, by kind and name."""

    name: str
    rules: Mapping[str, RuleDefinition]
    functions: Mapping[str, FunctionSpec]
    queues: tuple[str, ...]
    buckets: tuple[str, ...]
    topics: Mapping[str, tuple[Subscriber, ...]]


# -- reading -------------------------------------------------------------------------------------


def load_app(path: Path) -> AppSpec:
    """Read and check the app file at ``path`` (files it names are relative to its folder)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = f" (write one, or name it: `thingcore apply path/to/{APP_FILE}`)"
        raise ThingcoreError(f"cannot read the app file: {path} does not exist{hint}") from None
    except IsADirectoryError:
        raise ThingcoreError(f"cannot read the app file: {path} is a folder") from None
    except OSError as exc:
        raise ThingcoreError(f"cannot read the app file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ThingcoreError(f"cannot read the app file {path}: it is not UTF-8 text") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AppFileError(str(path), [f"not valid TOML: {exc}"]) from None
    base = path.parent

    def read(relative: str) -> str:
        target = base / relative
        try:
            return target.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ValueError(f"{target} does not exist") from None
        except IsADirectoryError:
            raise ValueError(f"{target} is a folder") from None
        except OSError as exc:
            raise ValueError(f"cannot read {target}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ValueError(f"{target} is not UTF-8 text") from None

    return parse_app(raw, read, source=str(path))


def parse_app(raw: Mapping[str, Any], read: Reader, *, source: str = APP_FILE) -> AppSpec:
    """Check a decoded app file; ``AppFileError`` listing every problem, or the app."""
    problems: list[str] = []
    unknown = sorted(set(raw) - set(TABLES))
    if unknown:
        problems.append(
            f"unknown table [{unknown[0]}] (known: {', '.join(f'[{t}]' for t in TABLES)})"
        )
    name = _app_name(raw.get("app"), problems)
    tables = {kind: _table(raw, kind, problems) for kind in TABLES[1:]}
    rules = {
        key: rule
        for key, value in tables["rules"].items()
        if (rule := _rule(key, value, read, problems)) is not None
    }
    functions = {
        key: function
        for key, value in tables["functions"].items()
        if (function := _function(key, value, read, problems)) is not None
    }
    queues = tuple(k for k, v in tables["queues"].items() if _queue(k, v, problems))
    buckets = tuple(k for k, v in tables["buckets"].items() if _bucket(k, v, problems))
    topics = {
        key: subscribers
        for key, value in tables["topics"].items()
        if (subscribers := _topic(key, value, problems)) is not None
    }
    if problems:
        raise AppFileError(source, problems)
    return AppSpec(name or "", rules, functions, queues, buckets, topics)


def _app_name(value: Any, problems: list[str]) -> str | None:
    if not isinstance(value, dict):
        problems.append('[app] is missing: it names the app (name = "greenhouse")')
        return None
    unknown = sorted(set(value) - {"name"})
    if unknown:
        problems.append(f"app.{unknown[0]}: unknown key (known: name)")
    name = value.get("name")
    if not isinstance(name, str) or not APP_NAME.fullmatch(name):
        problems.append(f"app.name must be 1 to 64 letters, digits, '-' or '_', not {name!r:.80}")
        return None
    return name


def _table(raw: Mapping[str, Any], kind: str, problems: list[str]) -> dict[str, Any]:
    value = raw.get(kind, {})
    if not isinstance(value, dict):
        problems.append(f"{kind} must be tables such as [{kind}.NAME], not {value!r:.80}")
        return {}
    return value


def _rule(name: str, value: Any, read: Reader, problems: list[str]) -> RuleDefinition | None:
    where = f"rules.{name}"
    if not isinstance(value, dict):
        problems.append(f"{where} must be a table")
        return None
    payload: Any = value
    if "file" in value:
        if len(value) > 1:
            extra = sorted(set(value) - {"file"})[0]
            problems.append(f"{where}.{extra}: a rule from a file has no other keys")
            return None
        path = value["file"]
        if not isinstance(path, str) or not path:
            problems.append(f"{where}.file must name a JSON rule file, not {path!r:.80}")
            return None
        try:
            payload = json.loads(read(path))
        except ValueError as exc:  # JSONDecodeError is one too
            problems.append(f"{where}.file: {exc}")
            return None
        if isinstance(payload, dict) and "topicRulePayload" in payload:
            payload = payload["topicRulePayload"]  # the `aws iot create-topic-rule` skeleton
        if not isinstance(payload, dict):
            problems.append(f"{where}.file: a rule file holds a JSON object")
            return None
    try:
        return parse_definition(name, payload)
    except ThingcoreError as exc:
        # parse_definition says "rule NAME: ..." already; the table names the place.
        problems.append(f"{where}: {str(exc).removeprefix(f'rule {name}: ')}")
        return None


def _function(name: str, value: Any, read: Reader, problems: list[str]) -> FunctionSpec | None:
    where = f"functions.{name}"
    before = len(problems)
    if not FUNCTION_NAME.fullmatch(name) or name.startswith("_"):
        problems.append(
            f"{where}: a function name is 1 to 64 letters, digits, '-' or '_', not beginning "
            "with '_' (those files are helpers)"
        )
    if not isinstance(value, dict):
        problems.append(f"{where} must be a table")
        return None
    known = ("source", *SIDECAR_KEYS)
    unknown = sorted(set(value) - set(known))
    if unknown:
        problems.append(f"{where}.{unknown[0]}: unknown key (known: {', '.join(known)})")
    code = ""
    source = value.get("source")
    if not isinstance(source, str) or not source:
        problems.append(
            f"{where}.source must name the handler's .py file (relative to the app file), "
            f"not {source!r:.80}"
        )
    else:
        try:
            code = read(source)
            compile(code, source, "exec")
        except SyntaxError as exc:
            problems.append(f"{where}.source: {source}:{exc.lineno}: {exc.msg}")
        except ValueError as exc:  # unreadable, or null bytes in the code
            problems.append(f"{where}.source: {exc}")
    settings = {k: value[k] for k in SIDECAR_KEYS if k in value}
    problems.extend(f"{where}.{p}" for p in sidecar_problems(settings))
    if len(problems) > before:
        return None
    return FunctionSpec(name, str(source), code, sidecar_text(settings) if settings else None)


def sidecar_problems(settings: Mapping[str, Any]) -> list[str]:
    """What is wrong with a function's settings, as ``rules.local.functions`` reads its
    sidecar; each begins with the key."""
    problems: list[str] = []
    if "handler" in settings:
        handler = settings["handler"]
        if not isinstance(handler, str) or not HANDLER_NAME.fullmatch(handler):
            problems.append(f"handler must be a Python name, not {handler!r}")
    if "timeout" in settings:
        timeout = settings["timeout"]
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            problems.append(f"timeout must be seconds greater than 0, not {timeout!r}")
    if "memory_mb" in settings:
        memory = settings["memory_mb"]
        if isinstance(memory, bool) or not isinstance(memory, int) or memory < MIN_MEMORY_MB:
            problems.append(
                f"memory_mb must be a whole number of MiB >= {MIN_MEMORY_MB}, not {memory!r}"
            )
    if "concurrency" in settings:
        concurrency = settings["concurrency"]
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            problems.append(f"concurrency must be a whole number >= 1, not {concurrency!r}")
    if "environment" in settings:
        environment = settings["environment"]
        if not isinstance(environment, dict):
            problems.append("environment must be a table of strings")
        else:
            for key, value in environment.items():
                if not isinstance(value, str):
                    problems.append(f"environment.{key} must be a string, not {value!r}")
                elif not key or "=" in key or "\0" in key or "\0" in value:
                    problems.append(f"environment: {key!r} cannot be an environment variable")
    if "events" in settings:
        try:
            parse_events(settings["events"])
            _check_plain(settings["events"], "events")
        except ValueError as exc:
            problems.append(str(exc))
    return problems


def _queue(name: str, value: Any, problems: list[str]) -> bool:
    return _plain_resource("queues", name, value, check_queue_name, QueueError, problems)


def _bucket(name: str, value: Any, problems: list[str]) -> bool:
    return _plain_resource("buckets", name, value, check_bucket, BucketError, problems)


def _plain_resource(
    kind: str,
    name: str,
    value: Any,
    check: Callable[[object], str],
    error: type[Exception],
    problems: list[str],
) -> bool:
    where = f"{kind}.{name}"
    ok = True
    try:
        check(name)
    except error as exc:
        problems.append(f"{where}: {exc}")
        ok = False
    if not isinstance(value, dict):
        problems.append(f"{where} must be a table ([{where}])")
        return False
    if value:
        problems.append(f"{where}.{sorted(value)[0]}: unknown key ([{kind}.NAME] has no keys)")
        return False
    return ok


def _topic(name: str, value: Any, problems: list[str]) -> tuple[Subscriber, ...] | None:
    where = f"topics.{name}"
    before = len(problems)
    try:
        check_topic_name(name)
    except TopicError as exc:
        problems.append(f"{where}: {exc}")
    if not isinstance(value, dict):
        problems.append(f"{where} must be a table")
        return None
    unknown = sorted(set(value) - {"subscribers"})
    if unknown:
        problems.append(f"{where}.{unknown[0]}: unknown key (known: subscribers)")
    entries = value.get("subscribers", [])
    if not isinstance(entries, list):
        problems.append(f"{where}.subscribers must be an array of queue names or tables")
        return None
    subscribers: dict[str, Subscriber] = {}
    for i, entry in enumerate(entries):
        at = f"{where}.subscribers[{i}]"
        if isinstance(entry, str):
            entry = {"queue": entry}
        if not isinstance(entry, dict):
            problems.append(f'{at} must be a queue name or {{ queue = "...", raw = true }}')
            continue
        extra = sorted(set(entry) - {"queue", "raw"})
        if extra:
            problems.append(f"{at}.{extra[0]}: unknown key (known: queue, raw)")
            continue
        raw = entry.get("raw", False)
        if not isinstance(raw, bool):
            problems.append(f"{at}.raw must be true or false, not {raw!r}")
            continue
        try:
            queue = check_queue_name(entry.get("queue"))
        except QueueError as exc:
            problems.append(f"{at}.queue: {exc}")
            continue
        if queue in subscribers:
            problems.append(f"{at}: queue {queue} is subscribed twice")
            continue
        subscribers[queue] = Subscriber(queue, raw)
    if len(problems) > before:
        return None
    return tuple(sorted(subscribers.values(), key=lambda s: s.queue))


def _check_plain(value: Any, where: str) -> None:
    """Values a sidecar can hold and an event can carry as JSON: no TOML dates or times."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif not isinstance(value, str | int | float | bool):
        raise ValueError(f"{where}: a {type(value).__name__} cannot be part of an event")


# -- the sidecar ---------------------------------------------------------------------------------


def sidecar_text(settings: Mapping[str, Any]) -> str:
    """The ``<name>.toml`` sidecar holding ``settings`` (checked ones): stable text, so the
    same settings always give the same file and a plan compares files byte for byte."""
    lines = [SIDECAR_HEADER.rstrip("\n")]
    for key in ("handler", "timeout", "memory_mb", "concurrency"):
        if key in settings:
            lines.append(f"{key} = {toml_value(settings[key])}")
    environment = settings.get("environment")
    if environment:
        lines += ["", "[environment]"]
        lines += [f"{_key(k)} = {toml_value(v)}" for k, v in environment.items()]
    for event in settings.get("events", ()):
        lines += ["", "[[events]]"]
        lines += [f"{_key(k)} = {toml_value(v)}" for k, v in event.items()]
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    """``value`` (strings, numbers, booleans, arrays and tables of them) as inline TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # 5.0, 1e-05, inf, nan: all TOML floats
    if isinstance(value, str):
        # JSON's escapes are TOML's; DEL is the one control character JSON leaves raw.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"{type(value).__name__} has no TOML form here")


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_value(key)
