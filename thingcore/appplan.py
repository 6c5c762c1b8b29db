"""What ``thingcore apply`` would change: the app file compared with the data directory.

Pure: ``make_plan`` takes the checked app (``thingcore.appfile``), what the data directory
holds (``Current``, gathered by ``thingcore.appstate``) and what earlier applies made
(``AppState``), and returns the changes, one per resource, in the order they are carried out.

Ownership is the state's: only what an apply made is changed or deleted. What is there already
and matches the file is taken as the app's (so losing the state file costs nothing); what is
there and differs, and was not made by the app, is *blocked* unless ``force``. Queues and
buckets hold data: one dropped from the file is *kept* unless ``prune``, and a plan that
deletes one says how many messages or objects go with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from thingcore.appfile import AppSpec
from thingcore.errors import ThingcoreError

Kind = Literal["queue", "bucket", "topic", "subscription", "function", "rule"]
Action = Literal["create", "change", "delete", "unchanged", "blocked", "kept"]

KINDS: tuple[Kind, ...] = ("queue", "bucket", "topic", "subscription", "function", "rule")
"""The order creates and changes are made in (a rule's targets exist before the rule);
deletes go the other way."""
SYMBOLS: dict[Action, str] = {
    "create": "+",
    "change": "~",
    "delete": "-",
    "unchanged": " ",
    "blocked": "!",
    "kept": "=",
}
STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class StoredRuleView:
    payload: Mapping[str, Any]
    managed: bool


@dataclass(frozen=True, slots=True)
class FunctionFiles:
    """A function's files in the functions folder (None: no such file)."""

    code: str | None
    sidecar: str | None


@dataclass(frozen=True, slots=True)
class Current:
    """What the data directory and database hold, for the resources a plan looks at."""

    rules: Mapping[str, StoredRuleView] = field(default_factory=dict)
    functions: Mapping[str, FunctionFiles] = field(default_factory=dict)
    """Only those the app file or the state name (absent: neither file exists)."""
    queues: Mapping[str, int] = field(default_factory=dict)
    """Every queue, with its messages."""
    buckets: Mapping[str, int] = field(default_factory=dict)
    """Every bucket, with its objects."""
    topics: Mapping[str, Mapping[str, bool]] = field(default_factory=dict)
    """Every topic: its subscribed queues and whether each is raw."""


@dataclass(frozen=True, slots=True)
class AppState:
    """What applies of the app made, kept in ``<data dir>/app-state.json``."""

    app: str | None = None
    rules: frozenset[str] = frozenset()
    functions: frozenset[str] = frozenset()
    queues: frozenset[str] = frozenset()
    buckets: frozenset[str] = frozenset()
    topics: frozenset[str] = frozenset()
    subscriptions: frozenset[tuple[str, str]] = frozenset()
    """(topic, queue) pairs."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "app": self.app,
            "rules": sorted(self.rules),
            "functions": sorted(self.functions),
            "queues": sorted(self.queues),
            "buckets": sorted(self.buckets),
            "topics": sorted(self.topics),
            "subscriptions": [list(pair) for pair in sorted(self.subscriptions)],
        }

    @classmethod
    def from_dict(cls, data: Any) -> AppState:
        """The state from its JSON; ``ValueError`` if it is not one this version wrote."""
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError(f"not an app state of version {STATE_VERSION}")
        app = data.get("app")
        if app is not None and not isinstance(app, str):
            raise ValueError("app must be a string")

        def names(key: str) -> frozenset[str]:
            value = data.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{key} must be a list of names")
            return frozenset(value)

        pairs = data.get("subscriptions", [])
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(v, str) for v in p)
            for p in pairs
        ):
            raise ValueError("subscriptions must be a list of [topic, queue] pairs")
        return cls(
            app,
            names("rules"),
            names("functions"),
            names("queues"),
            names("buckets"),
            names("topics"),
            frozenset((t, q) for t, q in pairs),
        )

    def union(self, other: AppState) -> AppState:
        """Everything either state holds (after a failed apply: what may have been made)."""
        return AppState(
            other.app or self.app,
            self.rules | other.rules,
            self.functions | other.functions,
            self.queues | other.queues,
            self.buckets | other.buckets,
            self.topics | other.topics,
            self.subscriptions | other.subscriptions,
        )


@dataclass(frozen=True, slots=True)
class Change:
    kind: Kind
    name: str
    action: Action
    fields: tuple[str, ...] = ()
    """What differs, for a change (a rule's payload keys; a function's code or settings)."""
    note: str = ""

    @property
    def label(self) -> str:
        if self.kind == "subscription":
            topic, queue = self.name.split(":", 1)
            return f"subscription {topic} -> {queue}"
        return f"{self.kind} {self.name}"

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"kind": self.kind, "name": self.name, "action": self.action}
        if self.fields:
            found["fields"] = list(self.fields)
        if self.note:
            found["note"] = self.note
        return found


@dataclass(frozen=True, slots=True)
class Plan:
    app: str
    changes: tuple[Change, ...]
    state: AppState
    """The state once every change is made."""

    @property
    def pending(self) -> tuple[Change, ...]:
        """The changes that write something."""
        return tuple(c for c in self.changes if c.action in ("create", "change", "delete"))

    @property
    def blocked(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action == "blocked")

    def counts(self) -> dict[str, int]:
        actions: tuple[Action, ...] = ("create", "change", "delete", "unchanged", "blocked", "kept")
        return {a: sum(1 for c in self.changes if c.action == a) for a in actions}

    def as_dict(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "changes": [c.as_dict() for c in self.changes],
            "counts": self.counts(),
        }


# -- planning ------------------------------------------------------------------------------------


def make_plan(
    spec: AppSpec, current: Current, state: AppState, *, force: bool = False, prune: bool = False
) -> Plan:
    """The changes that make the data directory match ``spec``."""
    planner = _Planner(spec, current, state, force=force, prune=prune)
    changes = planner.run()
    order = {kind: i for i, kind in enumerate(KINDS)}
    ups = sorted(
        (c for c in changes if c.action != "delete"), key=lambda c: (order[c.kind], c.name)
    )
    downs = sorted(
        (c for c in changes if c.action == "delete"), key=lambda c: (-order[c.kind], c.name)
    )
    return Plan(spec.name, tuple(ups + downs), planner.new_state())


class _Planner:
    def __init__(
        self, spec: AppSpec, current: Current, state: AppState, *, force: bool, prune: bool
    ) -> None:
        self.spec = spec
        self.current = current
        if state.app is not None and state.app != spec.name and not force:
            raise ThingcoreError(
                f"the data directory holds app {state.app} (its app-state.json), and this file "
                f"is app {spec.name}: apply {state.app}'s file, or use --force to make it app "
                f"{spec.name} (what {state.app} made and this file does not name is deleted)"
            )
        self.state = state
        self.force = force
        self.prune = prune
        self.changes: list[Change] = []
        self.made: dict[Kind, set[str]] = {kind: set() for kind in KINDS}
        self.dropped: dict[Kind, set[str]] = {kind: set() for kind in KINDS}

    def run(self) -> list[Change]:
        self.rules()
        self.functions()
        self.stores("queue", self.spec.queues, self.current.queues, self.state.queues, "messages")
        self.stores(
            "bucket", self.spec.buckets, self.current.buckets, self.state.buckets, "objects"
        )
        self.topics()
        return self.changes

    def add(
        self, kind: Kind, name: str, action: Action, fields: Iterable[str] = (), note: str = ""
    ) -> None:
        self.changes.append(Change(kind, name, action, tuple(fields), note))
        if action in ("create", "change"):
            self.made[kind].add(name)
        elif action == "delete":
            self.dropped[kind].add(name)

    def adopt(self, kind: Kind, name: str) -> None:
        self.made[kind].add(name)

    def differs(self, kind: Kind, name: str, fields: Iterable[str], mine: bool) -> None:
        if mine:
            self.add(kind, name, "change", fields)
        elif self.force:
            self.add(kind, name, "change", fields, note="not made by this app; taken over")
        else:
            self.add(
                kind,
                name,
                "blocked",
                fields,
                note="exists and was not made by this app: --force replaces it",
            )

    def rules(self) -> None:
        for name, definition in sorted(self.spec.rules.items()):
            desired = definition.to_dict()
            found = self.current.rules.get(name)
            if found is None:
                self.add("rule", name, "create")
            elif dict(found.payload) == desired:
                self.add("rule", name, "unchanged")
                self.adopt("rule", name)
            else:
                keys = sorted(set(desired) | set(found.payload))
                fields = [k for k in keys if desired.get(k) != found.payload.get(k)]
                self.differs("rule", name, fields, name in self.state.rules)
        for name in sorted(self.state.rules - set(self.spec.rules)):
            if name in self.current.rules:
                self.add("rule", name, "delete")

    def functions(self) -> None:
        for name, function in sorted(self.spec.functions.items()):
            found = self.current.functions.get(name, FunctionFiles(None, None))
            if found.code is None and found.sidecar is None:
                self.add("function", name, "create")
                continue
            fields = []
            if found.code != function.code:
                fields.append("code")
            if found.sidecar != function.sidecar:
                fields.append("settings")
            if not fields:
                self.add("function", name, "unchanged")
                self.adopt("function", name)
            else:
                self.differs("function", name, fields, name in self.state.functions)
        for name in sorted(self.state.functions - set(self.spec.functions)):
            gone = self.current.functions.get(name, FunctionFiles(None, None))
            if gone.code is not None or gone.sidecar is not None:
                self.add("function", name, "delete")

    def stores(
        self,
        kind: Kind,
        wanted: Iterable[str],
        there: Mapping[str, int],
        mine: frozenset[str],
        what: str,
    ) -> None:
        wanted = set(wanted)
        for name in sorted(wanted):
            if name in there:
                self.add(kind, name, "unchanged")
                if name in mine:
                    self.adopt(kind, name)
            else:
                self.add(kind, name, "create")
        for name in sorted(mine - wanted):
            if name not in there:
                continue  # gone already: forgotten
            count = there[name]
            held = f"its {count} {what}" if count else f"it holds no {what}"
            if self.prune:
                self.add(kind, name, "delete", note=f"with {held}" if count else "")
            else:
                self.add(
                    kind,
                    name,
                    "kept",
                    note=f"no longer in the app file; kept with {held} (--prune deletes it)"
                    if count
                    else "no longer in the app file; kept (--prune deletes it)",
                )
                self.adopt(kind, name)

    def topics(self) -> None:
        state = self.state
        for topic, subscribers in sorted(self.spec.topics.items()):
            found = self.current.topics.get(topic)
            if found is None:
                self.add("topic", topic, "create")
                found = {}
            else:
                self.add("topic", topic, "unchanged")
                if topic in state.topics:
                    self.adopt("topic", topic)
            wanted = {s.queue: s.raw for s in subscribers}
            for queue, raw in sorted(wanted.items()):
                key = f"{topic}:{queue}"
                if queue not in found:
                    self.add("subscription", key, "create", note="raw" if raw else "")
                elif found[queue] == raw:
                    self.add("subscription", key, "unchanged")
                    self.adopt("subscription", key)
                else:
                    self.differs(
                        "subscription", key, ["raw"], (topic, queue) in state.subscriptions
                    )
            for t, queue in sorted(state.subscriptions):
                if t == topic and queue not in wanted and queue in found:
                    self.add("subscription", f"{topic}:{queue}", "delete")
        for topic in sorted(state.topics - set(self.spec.topics)):
            if topic in self.current.topics:
                # Its subscriptions go with it; the queues and their messages stay.
                self.add("topic", topic, "delete")
        for topic, queue in sorted(state.subscriptions):
            # Subscriptions the app made to a topic it did not make and no longer names.
            if (
                topic not in self.spec.topics
                and topic not in state.topics
                and queue in self.current.topics.get(topic, {})
            ):
                self.add("subscription", f"{topic}:{queue}", "delete")

    def new_state(self) -> AppState:
        """What the app owns once the plan is carried out: what it makes, changes, keeps or
        takes as its own now (what it deletes, and what is gone, is forgotten)."""
        pairs = (key.split(":", 1) for key in self.made["subscription"])
        return AppState(
            self.spec.name,
            frozenset(self.made["rule"]),
            frozenset(self.made["function"]),
            frozenset(self.made["queue"]),
            frozenset(self.made["bucket"]),
            frozenset(self.made["topic"]),
            frozenset((topic, queue) for topic, queue in pairs),
        )
