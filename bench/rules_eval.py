"""`python -m bench.rules_eval`: how fast the rule SQL compiler's output runs, and compiles.

The broker evaluates every matching rule synchronously on the dispatch path, so the figure
that matters is evaluations per second of a typical rule on one core:

    SELECT temp, topic(2) AS device FROM 'sensors/+/telemetry' WHERE temp > 50

on a ~200-byte JSON payload, measured twice: with the message context built and the payload
parsed for every evaluation (one rule per message: the worst case), and with one context
whose parsed payload is shared (many rules on one message: the parse is paid once).

Then the same rule on the engine's own path, in process: a message through `Broker.publish`
(router, Bus subscription, `RulesEngine`, counters) with the rule installed, against no rule;
and the `rules-throughput` workload's 1,000 rules on its 500 topics against none (the share
of a broker core that rules take, without sockets).

It also reports how long 10,000 varied rules take to become runnable: `RulesEngine.install`
of 10,000 stored rules (what a server does at start and on every rule change: validate each
definition, compile its SQL, index the filters, subscribe each on the Bus; the engine pauses
the cyclic garbage collector meanwhile), `parse_definition` alone (validation and compiling)
with the collector running and paused, and `compile_rule` alone likewise.

`--json` prints every figure as one JSON object (the `rules-throughput` workload runs this in a
process of its own). Benchmarks report, they never fail.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
from collections.abc import Callable
from typing import Any

from bench import rulesload
from broker.config import BrokerSettings
from broker.message import Message
from broker.server import Broker
from rules.config import RulesSettings
from rules.engine import RulesEngine
from rules.sql import EvalContext, compile_rule, parse
from rules.store import StoredRule

TYPICAL = "SELECT temp, topic(2) AS device FROM 'sensors/+/telemetry' WHERE temp > 50"
TOPIC = "sensors/kitchen-7/telemetry"
PAYLOAD = json.dumps(
    {
        "temp": 72.5,
        "humidity": 41.2,
        "pressure": 1013.25,
        "battery": 87,
        "status": "ok",
        "firmware": "1.4.2",
        "location": {"lat": 47.606, "lon": -122.332},
        "readings": [21.5, 21.7, 21.6],
        "seq": 123456,
    }
).encode()
SQL_VERSION = "2016-03-23"
MIX_PAYLOAD = 200  # the rules-throughput workload's payload size


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn``: the best of three runs of about ``seconds`` / 3 each."""
    best = 0.0
    batch = 1000
    for _ in range(3):
        calls = 0
        start = time.perf_counter()
        deadline = start + seconds / 3
        while True:
            for _ in range(batch):
                fn()
            calls += batch
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, calls / (now - start))
    return best


ATTRIBUTES = ("temp", "humidity", "battery", "status", "location.lat", "readings[0]", "seq")
FUNCTIONS = (
    "upper(status)",
    "round(temp)",
    "topic(2)",
    "timestamp()",
    "concat(status, '-', topic(1))",
    "abs(temp - 50)",
    "substring(firmware, 0, 3)",
    "clientid()",
    "cast(temp AS Int)",
    "newuuid()",
)
CONDITIONS = (
    "temp > {n}",
    "battery < {n} AND status = 'ok'",
    "humidity >= {n} OR temp <= {n}",
    "NOT (seq % {n} = 0)",
    "startswith(topic(), 'sensors') AND temp <> {n}",
    "CASE status WHEN 'ok' THEN temp > {n} ELSE false END",
    "isUndefined(missing) AND location.lat > {n}",
)


def varied_rules(count: int, seed: int = 7) -> list[str]:
    """``count`` distinct, realistic rules: 1-4 items from attributes and function calls,
    sometimes ``*``, a nested SELECT or a CASE, and usually a WHERE."""
    rng = random.Random(seed)
    rules = []
    for i in range(count):
        items = []
        if rng.random() < 0.15:
            items.append("*")
        for j in range(rng.randint(1, 4)):
            kind = rng.random()
            if kind < 0.45:
                items.append(f"{rng.choice(ATTRIBUTES)} AS a{j}")
            elif kind < 0.85:
                items.append(f"{rng.choice(FUNCTIONS)} AS f{j}")
            elif kind < 0.93:
                limit = rng.randint(0, 30)
                items.append(f"(SELECT VALUE v FROM samples WHERE v > {limit}) AS n{j}")
            else:
                items.append(f"CASE status WHEN 'ok' THEN {j} ELSE -1 END AS c{j}")
        where = ""
        if rng.random() < 0.85:
            where = " WHERE " + rng.choice(CONDITIONS).format(n=rng.randint(1, 99))
        rules.append(f"SELECT {', '.join(items)} FROM 'sensors/{i}/+/telemetry'{where}")
    return rules


def stored_rules(sources: list[str]) -> list[StoredRule]:
    """The rules as the server reads them from its database: AWS TopicRulePayloads."""
    return [
        StoredRule(
            f"rule_{i:05d}",
            {"sql": sql, "awsIotSqlVersion": SQL_VERSION, "actions": []},
            True,
            0.0,
            0.0,
        )
        for i, sql in enumerate(sources)
    ]


def best_time(fn: Callable[[], object], runs: int = 3, *, gc_off: bool = False) -> float:
    """The shortest of ``runs`` timings of ``fn``, in seconds. ``gc_off`` pauses Python's
    cyclic garbage collector meanwhile: ten thousand compiled rules are ~650,000 tracked
    objects, and the full collections that a growing heap triggers cost a third of a bulk
    load; a loader can pause the collector (or ``gc.freeze()`` after loading)."""
    best = float("inf")
    for _ in range(runs):
        gc.collect()
        if gc_off:
            gc.disable()
        try:
            start = time.perf_counter()
            result = fn()
            best = min(best, time.perf_counter() - start)
        finally:
            gc.enable()
        del result
    return best


def install_time(stored: list[StoredRule], runs: int = 3) -> float:
    """The shortest of ``runs`` timings of ``RulesEngine.install(stored)``, each on a fresh
    engine over a fresh (never started) broker's Bus. The engine pauses the collector itself
    and freezes what it compiled; that is undone after each run so the next starts clean."""
    best = float("inf")
    for _ in range(runs):
        engine = RulesEngine(RulesSettings(), Broker(BrokerSettings(port=None, tls_port=None)).bus)
        gc.collect()
        try:
            start = time.perf_counter()
            engine.install(stored)
            best = min(best, time.perf_counter() - start)
        finally:
            gc.unfreeze()
        if len(engine.rules) != len(stored):
            raise RuntimeError(f"{len(engine.broken)} rules did not install: {engine.broken}")
        del engine
    return best


def evaluation_rates(seconds: float) -> dict[str, float]:
    rule = compile_rule(TYPICAL, SQL_VERSION)
    shared = EvalContext(topic=TOPIC, payload=PAYLOAD)
    assert rule.evaluate(shared) == {"temp": 72.5, "device": "kitchen-7"}

    def with_parse() -> object:
        return rule.evaluate(EvalContext(topic=TOPIC, payload=PAYLOAD))

    def without_parse() -> object:
        return rule.evaluate(shared)

    return {
        "evals_parse_per_call": rate(with_parse, seconds),
        "evals_parse_shared": rate(without_parse, seconds),
    }


def _publisher(
    stored: list[StoredRule], messages: list[tuple[str, bytes]]
) -> tuple[Callable[[], object], RulesEngine]:
    """A broker (never started: no sockets) with ``stored`` installed in a rules engine, and a
    function that routes the next of ``messages`` (a new Message each time, as the broker
    makes one per PUBLISH) through ``Broker.publish``."""
    broker = Broker(BrokerSettings(port=None, tls_port=None))
    engine = RulesEngine(RulesSettings(), broker.bus)
    engine.install(stored)
    gc.unfreeze()
    turn = [0]
    count = len(messages)

    def publish() -> object:
        i = turn[0]
        turn[0] = i + 1 if i + 1 < count else 0
        topic, payload = messages[i]
        return broker.publish(Message(topic, payload, 0, False))

    return publish, engine


def engine_rates(seconds: float) -> dict[str, float]:
    """Messages per second through Broker.publish, in process: the typical rule against none,
    and the rules-throughput workload's rules on its topics against none."""
    typical = [
        StoredRule("typical", {"sql": TYPICAL, "awsIotSqlVersion": SQL_VERSION}, False, 0.0, 0.0)
    ]
    one = [(TOPIC, PAYLOAD)]
    tag = "0000000a"  # a run's tag is 8 characters
    mix = [
        (rulesload.topic(tag, d), rulesload.payload(d, MIX_PAYLOAD))
        for d in range(rulesload.DEVICES)
    ]
    mix_rules = [
        StoredRule(name, payload, True, 0.0, 0.0) for name, payload in rulesload.rules(tag).items()
    ]
    out: dict[str, float] = {}
    for key, stored, messages in (
        ("engine_typical", typical, one),
        ("engine_no_rule", [], one),
        ("engine_mix", mix_rules, mix),
        ("engine_mix_no_rules", [], mix),
    ):
        publish, engine = _publisher(stored, messages)
        gc.disable()  # like the load generators: no collection pauses inside a timed run
        try:
            out[key] = rate(publish, seconds)
        finally:
            gc.enable()
        if stored:
            matched = sum(r.counters.matched for r in engine.rules.values())
            failed = sum(r.counters.failed for r in engine.rules.values())
            if failed:
                raise RuntimeError(f"{failed} evaluations failed on the engine path ({key})")
            if not matched:
                raise RuntimeError(f"the engine evaluated nothing ({key})")
    out["mix_matched_per_message"] = rulesload.mix(tag, MIX_PAYLOAD).matched_per_message
    return out


def compile_times(count: int, runs: int = 3) -> dict[str, float]:
    sources = varied_rules(count)
    stored = stored_rules(sources)

    def definitions() -> object:
        return [s.definition() for s in stored]

    def compiled() -> object:
        return [compile_rule(sql, SQL_VERSION) for sql in sources]

    return {
        "rules": float(count),
        "runs": float(runs),
        "install_s": install_time(stored, runs),  # the engine's path: it pauses the collector
        "definitions_s": best_time(definitions, runs),
        "definitions_paused_s": best_time(definitions, runs, gc_off=True),
        "compile_s": best_time(compiled, runs),
        "compile_paused_s": best_time(compiled, runs, gc_off=True),
        "parse_paused_s": best_time(lambda: [parse(sql) for sql in sources], runs, gc_off=True),
    }


def measure(seconds: float, count: int, runs: int = 3) -> dict[str, Any]:
    started = time.perf_counter()
    out: dict[str, Any] = {"typical_rule": TYPICAL, "payload_bytes": len(PAYLOAD)}
    out.update(evaluation_rates(seconds))
    out.update(engine_rates(seconds))
    out.update(compile_times(count, runs))
    out["elapsed_s"] = time.perf_counter() - started
    return out


def print_text(figures: dict[str, Any]) -> None:
    count = int(figures["rules"])
    print(f"rule:    {figures['typical_rule']}")
    print(f"payload: {figures['payload_bytes']} bytes of JSON")
    for label, key in (
        ("evaluate, context + JSON parse per call", "evals_parse_per_call"),
        ("evaluate, parsed payload shared", "evals_parse_shared"),
        ("Broker.publish, the rule installed", "engine_typical"),
        ("Broker.publish, no rule", "engine_no_rule"),
        ("Broker.publish, rules-throughput's rules", "engine_mix"),
        ("Broker.publish, its topics, no rules", "engine_mix_no_rules"),
    ):
        print(f"{label:<42} {figures[key]:>12,.0f} /s")
    added = 1e6 / figures["engine_mix"] - 1e6 / figures["engine_mix_no_rules"]
    typical = 1e6 / figures["engine_typical"] - 1e6 / figures["engine_no_rule"]
    print(
        f"  CPU the rules add per message: the typical rule {typical:.2f} us; rules-throughput's "
        f"{added:.2f} us ({figures['mix_matched_per_message']:.2f} rules matched per message)"
    )
    print(f"{count:,} varied rules (target < 2 s for 10,000), best of {figures['runs']:.0f}:")
    for label, key in (
        ("RulesEngine.install (GC paused by it)", "install_s"),
        ("parse_definition, GC running", "definitions_s"),
        ("parse_definition, GC paused", "definitions_paused_s"),
        ("compile_rule, GC running", "compile_s"),
        ("compile_rule, GC paused", "compile_paused_s"),
        ("parse() alone, GC paused", "parse_paused_s"),
    ):
        seconds = figures[key]
        print(f"  {label:<40} {seconds:>6.2f} s ({seconds / count * 1e6:.0f} us per rule)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rules_eval", description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="per evaluation figure")
    parser.add_argument("--rules", type=int, default=10_000, help="rules to compile")
    parser.add_argument("--runs", type=int, default=3, help="timings per compile figure")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures = measure(args.seconds, args.rules, max(1, args.runs))
    if args.json:
        print(json.dumps(figures))
    else:
        print_text(figures)


if __name__ == "__main__":
    main()
