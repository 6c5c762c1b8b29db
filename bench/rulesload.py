"""The rules workload's traffic and rules: 500 device topics with JSON readings, 1,000 rules.

Traffic: 500 devices, `bench/<tag>/rt/s<site>/d<device>/telemetry` (20 sites of 25 devices,
every topic the same length), each topic with its own 200-byte JSON reading
(`bench.mqttwire.json_payload`: the send stamp, temp, humidity, battery, status, fw, site,
device). The ramp's publishers take the devices in turn (publisher p: devices p, p + P, ...),
so every topic gets the same share of the messages.

Rules: 1,000 `SELECT ... FROM '<filter>' WHERE ...` of a few typical shapes (a few attributes,
`topic(n)`, one comparison or two), `"actions": []`, SQL version 2016-03-23. Half of them
have filters that match some of the published topics, spread so that a message matches a
few rules (most of them one per device and two over every device, like an "archive
everything" rule); the other half match nothing in the traffic, some next to it in the topic
tree (another leaf of a published device, unpublished sites) and some elsewhere (factory
lines, shadow topics, root wildcards of other depths). `mix` works out what that means per
message with the engine's own `rules.index.TopicIndex` and compiled rules.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench import mqttwire
from rules.index import TopicIndex
from rules.sql import CompiledRule, EvalContext, compile_rule

DEVICES = 500
DEVICES_PER_SITE = 25
SITES = DEVICES // DEVICES_PER_SITE
SQL_VERSION = "2016-03-23"
RULE_PREFIX = "bench_rule_"
SEED = 7

# (SQL with {f} for the FROM filter and {n} for the threshold, thresholds to draw from): the
# readings' ranges (see `reading`) make each WHERE true for part of the devices.
SHAPES: tuple[tuple[str, tuple[int, int]], ...] = (
    ("SELECT temp, humidity, topic(5) AS device FROM '{f}' WHERE temp > {n}", (20, 40)),
    ("SELECT temp, battery, topic(4) AS site FROM '{f}' WHERE battery < {n}", (20, 80)),
    (
        "SELECT humidity, status, topic(4) AS site, topic(5) AS device FROM '{f}' "
        "WHERE humidity >= {n}",
        (40, 70),
    ),
    (
        "SELECT temp, status, topic(5) AS device FROM '{f}' WHERE status = 'ok' AND temp > {n}",
        (20, 40),
    ),
    ("SELECT battery, fw, topic(5) AS device FROM '{f}' WHERE battery <= {n}", (20, 80)),
)


def site_of(device: int) -> int:
    return device // DEVICES_PER_SITE


def root(tag: str) -> str:
    return f"bench/{tag}/rt"


def topic(tag: str, device: int) -> str:
    return f"{root(tag)}/s{site_of(device):02d}/d{device:03d}/telemetry"


def subscriber_filter(tag: str) -> str:
    return f"{root(tag)}/+/+/telemetry"


def reading(device: int) -> dict[str, Any]:
    """A device's reading: fixed per device, spread over ranges the WHERE clauses split."""
    battery = 5 + device * 29 % 95
    return {
        "temp": round(15 + device * 37 % 300 / 10, 1),  # 15.0 .. 44.9
        "humidity": round(30 + device * 53 % 500 / 10, 1),  # 30.0 .. 79.9
        "battery": battery,  # 5 .. 99
        "status": "low" if battery < 15 else "ok",
        "fw": "1.4.2",
        "site": f"s{site_of(device):02d}",
        "device": f"d{device:03d}",
    }


def payload(device: int, size: int) -> bytes:
    return mqttwire.json_payload(reading(device), size)


def publisher_messages(tag: str, publishers: int, size: int) -> list[list[tuple[str, bytes]]]:
    """Per publisher, the (topic, JSON payload) pairs it sends in turn."""
    return [
        [(topic(tag, d), payload(d, size)) for d in range(p, DEVICES, publishers)]
        for p in range(publishers)
    ]


@dataclass(frozen=True)
class FilterGroup:
    kind: str  # how the report describes it
    matches: bool  # meant to match published topics
    filters: list[str]


def filter_groups(tag: str) -> list[FilterGroup]:
    """500 filters that match published topics and 500 that match none, in kinds."""
    t = root(tag)
    devices = list(range(DEVICES))
    random.Random(SEED).shuffle(devices)  # each per-device kind takes devices from all sites
    exact, plus_site, hash_dev, plus_run = (
        devices[:320],
        devices[320:420],
        devices[420:455],
        devices[455:490],
    )

    def dev(d: int) -> str:
        return f"s{site_of(d):02d}/d{d:03d}"

    return [
        FilterGroup("exact device topic", True, [f"{t}/{dev(d)}/telemetry" for d in exact]),
        FilterGroup(
            "`+` for the site",
            True,
            [f"{t}/+/d{d:03d}/telemetry" for d in plus_site],
        ),
        FilterGroup("`#` under a device", True, [f"{t}/{dev(d)}/#" for d in hash_dev]),
        FilterGroup(
            "`+` for the run and the last level",
            True,
            [f"bench/+/rt/{dev(d)}/+" for d in plus_run],
        ),
        FilterGroup(
            "`+` for a site's devices", True, [f"{t}/s{s:02d}/+/telemetry" for s in (1, 4, 7, 10)]
        ),
        FilterGroup("`#` under a site", True, [f"{t}/s{s:02d}/#" for s in (2, 13, 16, 18)]),
        FilterGroup("every device", True, [f"{t}/#", f"+/{tag}/rt/+/+/telemetry"]),
        FilterGroup(
            "another leaf of a published device",
            False,
            [f"{t}/{dev(d)}/status" for d in devices[:150]],
        ),
        FilterGroup(
            "under a published device, one level deeper",
            False,
            [f"{t}/{dev(d)}/telemetry/raw" for d in devices[150:175]],
        ),
        FilterGroup(
            "unpublished sites", False, [f"{t}/s{s:02d}/+/telemetry" for s in range(20, 70)]
        ),
        FilterGroup(
            "unpublished devices",
            False,
            [f"{t}/s{k % SITES:02d}/d{DEVICES + k:03d}/telemetry" for k in range(50)],
        ),
        FilterGroup(
            "another subtree of the run", False, [f"bench/{tag}/other/{k:02d}/#" for k in range(40)]
        ),
        FilterGroup(
            "factory lines", False, [f"factory/line{k:02d}/+/temperature" for k in range(50)]
        ),
        FilterGroup("fleets", False, [f"dt/fleet{k % 5}/{k:03d}/#" for k in range(50)]),
        FilterGroup(
            "shadow topics",
            False,
            [f"$aws/things/thing-{k:03d}/shadow/update/accepted" for k in range(30)],
        ),
        FilterGroup("two levels", False, [f"sensors/{k:03d}" for k in range(30)]),
        FilterGroup(
            "root wildcards",
            False,
            [
                f"+/{tag}/rt/+/+/status",
                "+/+/+",
                "+/+/+/+/+/+/+",
                "+/+/rt/+/+/heartbeat",
                f"{t}/+/+/telemetry/+",
                *(f"+/{tag}/rt/s{s:02d}/+/alarm" for s in range(SITES)),
            ],
        ),
    ]


def rules(tag: str) -> dict[str, dict[str, Any]]:
    """The 1,000 rules, rule name -> AWS TopicRulePayload (a rule file's content)."""
    rng = random.Random(SEED)
    filters = [f for group in filter_groups(tag) for f in group.filters]
    rng.shuffle(filters)  # names say nothing about which rules match
    out: dict[str, dict[str, Any]] = {}
    for i, topic_filter in enumerate(filters):
        sql, (low, high) = SHAPES[i % len(SHAPES)]
        out[f"{RULE_PREFIX}{i:04d}"] = {
            "sql": sql.format(f=topic_filter, n=rng.randint(low, high)),
            "awsIotSqlVersion": SQL_VERSION,
            "actions": [],
        }
    return out


@dataclass
class RuleMix:
    """What the rules mean for the traffic, per published message (topics get equal shares)."""

    rules: int
    distinct_filters: int
    matching: int  # rules whose filter matches at least one published topic
    matching_nothing: int
    topics: int
    matched_per_message: float  # rules whose FROM matches, on average
    matched_min: int
    matched_max: int
    matched_histogram: dict[int, int]  # rules matched -> topics
    passed_per_message: float  # of those, rules whose WHERE is true
    failed: int  # evaluations that raised (should be none)
    kinds: dict[str, int] = field(default_factory=dict)  # filter kind -> rules
    shapes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "rules": self.rules,
            "distinct_filters": self.distinct_filters,
            "matching": self.matching,
            "matching_nothing": self.matching_nothing,
            "topics": self.topics,
            "matched_per_message": round(self.matched_per_message, 3),
            "matched_min": self.matched_min,
            "matched_max": self.matched_max,
            "matched_histogram": {str(k): v for k, v in sorted(self.matched_histogram.items())},
            "passed_per_message": round(self.passed_per_message, 3),
            "failed": self.failed,
            "kinds": self.kinds,
            "shapes": self.shapes,
        }


def mix(tag: str, size: int) -> RuleMix:
    """Match every published topic against the rules with the engine's TopicIndex and
    evaluate the matching rules on that topic's payload. Raises if a filter meant to match
    nothing matches, or one meant to match does not (the generator would be wrong)."""
    defined = rules(tag)
    index: TopicIndex[tuple[str, CompiledRule]] = TopicIndex()
    for name, definition in defined.items():
        compiled = compile_rule(definition["sql"], definition["awsIotSqlVersion"])
        assert compiled.topic_filter is not None
        index.add(compiled.topic_filter, (name, compiled))
    histogram: Counter[int] = Counter()
    matched_names: set[str] = set()
    passed = failed = 0
    for device in range(DEVICES):
        name = topic(tag, device)
        found = index.match(name)
        histogram[len(found)] += 1
        body = payload(device, size)
        for rule_name, compiled in found:
            matched_names.add(rule_name)
            try:
                passed += compiled.evaluate(EvalContext(topic=name, payload=body)) is not None
            except Exception:  # noqa: BLE001 - counted: the report says so
                failed += 1
    groups = filter_groups(tag)
    meant = {f for g in groups if g.matches for f in g.filters}
    by_filter = {d["sql"].split("'")[1]: n for n, d in defined.items()}
    actual = {f for f, n in by_filter.items() if n in matched_names}
    if actual != meant:
        raise ValueError(
            f"rule filters do not match as designed: {sorted(actual ^ meant)[:5]} differ"
        )
    total = sum(k * v for k, v in histogram.items())
    return RuleMix(
        rules=len(defined),
        distinct_filters=len(by_filter),
        matching=len(matched_names),
        matching_nothing=len(defined) - len(matched_names),
        topics=DEVICES,
        matched_per_message=total / DEVICES,
        matched_min=min(histogram),
        matched_max=max(histogram),
        matched_histogram=dict(histogram),
        passed_per_message=passed / DEVICES,
        failed=failed,
        kinds={g.kind: len(g.filters) for g in groups},
        shapes=[sql for sql, _ in SHAPES],
    )
