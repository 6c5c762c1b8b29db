"""`python -m bench.rules_eval`: how fast the rule SQL compiler's output runs, and compiles.

The broker evaluates every matching rule synchronously on the dispatch path, so the figure
that matters is evaluations per second of a typical rule on one core:

    SELECT temp, topic(2) AS device FROM 'sensors/+/telemetry' WHERE temp > 50

on a ~200-byte JSON payload, measured twice: with the message context built and the payload
parsed for every evaluation (one rule per message: the worst case), and with one context
whose parsed payload is shared (many rules on one message: the parse is paid once). It also
reports how long compiling 10,000 varied rules takes (rule creation and server start).
Benchmarks report, they never fail.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
from collections.abc import Callable

from rules.sql import EvalContext, compile_rule, parse

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


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rules_eval", description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="per evaluation figure")
    parser.add_argument("--rules", type=int, default=10_000, help="rules to compile")
    args = parser.parse_args()

    rule = compile_rule(TYPICAL, "2016-03-23")
    shared = EvalContext(topic=TOPIC, payload=PAYLOAD)
    assert rule.evaluate(shared) == {"temp": 72.5, "device": "kitchen-7"}

    def with_parse() -> object:
        return rule.evaluate(EvalContext(topic=TOPIC, payload=PAYLOAD))

    def without_parse() -> object:
        return rule.evaluate(shared)

    print(f"rule:    {TYPICAL}")
    print(f"payload: {len(PAYLOAD)} bytes of JSON")
    for label, fn in (
        ("evaluate, context + JSON parse per call", with_parse),
        ("evaluate, parsed payload shared", without_parse),
    ):
        print(f"{label:<40} {rate(fn, args.seconds):>12,.0f} /s")

    sources = varied_rules(args.rules)
    parsing = best_time(lambda: [parse(sql) for sql in sources], gc_off=True)
    kept = best_time(lambda: [compile_rule(sql, "2016-03-23") for sql in sources])
    paused = best_time(lambda: [compile_rule(sql, "2016-03-23") for sql in sources], gc_off=True)
    print(f"compile {len(sources):,} varied rules, all kept (target < 2 s for 10,000), best of 3:")
    print(f"  {'as is':<38} {kept:>6.2f} s ({kept / len(sources) * 1e6:.0f} us per rule)")
    print(f"  {'with the cyclic GC paused':<38} {paused:>6.2f} s")
    print(f"  {'of which parsing (parse() alone)':<38} {parsing:>6.2f} s")
    print(f"  {'of which checks and closures':<38} {max(0.0, paused - parsing):>6.2f} s")


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


if __name__ == "__main__":
    main()
