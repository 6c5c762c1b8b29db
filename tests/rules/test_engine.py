"""The rules engine on a real broker's Bus (no sockets): matching, isolation, the queue."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from broker.message import Message
from broker.server import Broker
from rules.config import RulesSettings
from rules.engine import RulesEngine
from rules.store import StoredRule
from tests.harness import make_settings


def stored(
    name: str, sql: str, *, actions: list[dict[str, Any]] | None = None, disabled: bool = False
) -> StoredRule:
    payload: dict[str, Any] = {
        "sql": sql,
        "awsIotSqlVersion": "2016-03-23",
        "ruleDisabled": disabled,
        "actions": actions or [],
    }
    return StoredRule(name, payload, False, 0.0, 0.0)


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    yield Broker(make_settings(), data_dir=None)


def received(broker: Broker, topic_filter: str) -> list[tuple[str, Any]]:
    got: list[tuple[str, Any]] = []
    broker.bus.subscribe(topic_filter, lambda m: got.append((m.topic, json.loads(m.payload))))
    return got


async def test_each_matching_rule_runs_once_even_under_overlapping_filters(
    broker: Broker,
) -> None:
    out = received(broker, "out/#")
    async with RulesEngine(RulesSettings(), broker.bus) as engine:
        engine.install(
            [
                stored(
                    "wide", "SELECT n FROM 'in/#'", actions=[{"republish": {"topic": "out/wide"}}]
                ),
                stored(
                    "narrow",
                    "SELECT n FROM 'in/+/x'",
                    actions=[{"republish": {"topic": "out/narrow"}}],
                ),
                stored(
                    "other",
                    "SELECT n FROM 'elsewhere'",
                    actions=[{"republish": {"topic": "out/other"}}],
                ),
            ]
        )
        broker.publish(Message("in/a/x", b'{"n": 1}', 0, False))
        await engine.drain()
        matched = {name: rule.counters.matched for name, rule in engine.rules.items()}
        assert matched == {"wide": 1, "narrow": 1, "other": 0}
    assert sorted(out) == [("out/narrow", {"n": 1}), ("out/wide", {"n": 1})]


async def test_a_failing_rule_is_counted_and_the_others_go_on(broker: Broker) -> None:
    out = received(broker, "out/#")

    def shadows(thing: str, name: str | None) -> Any:
        if thing == "broken":
            raise RuntimeError("the shadow store is down")
        return {"state": {"reported": {"on": True}}, "version": 3}

    rules = [
        stored("ok", "SELECT n FROM 'in'", actions=[{"republish": {"topic": "out/ok"}}]),
        stored(
            "bad",
            "SELECT get_thing_shadow('broken', 'arn:role') AS s FROM 'in'",
            actions=[{"republish": {"topic": "out/bad"}}],
        ),
        stored(
            "shadow",
            "SELECT get_thing_shadow(thing, 'arn:role').state.reported AS r FROM 'in'",
            actions=[{"republish": {"topic": "out/shadow"}}],
        ),
    ]
    async with RulesEngine(RulesSettings(), broker.bus, shadow_reader=shadows) as engine:
        engine.install(rules)
        assert engine.rules["bad"].compiled.external  # evaluated off the dispatch path
        broker.publish(Message("in", b'{"n": 2, "thing": "lamp"}', 0, False))
        await engine.drain()
        counters = {name: rule.counters for name, rule in engine.rules.items()}
        assert counters["bad"].failed == 1 and counters["ok"].passed == 1
    assert sorted(out) == [("out/ok", {"n": 2}), ("out/shadow", {"r": {"on": True}})]


async def test_disabled_broken_and_where_false_rules_produce_nothing(broker: Broker) -> None:
    out = received(broker, "out/#")
    async with RulesEngine(RulesSettings(), broker.bus) as engine:
        engine.install(
            [
                stored(
                    "off",
                    "SELECT * FROM 'in'",
                    disabled=True,
                    actions=[{"republish": {"topic": "out/off"}}],
                ),
                stored("broken", "SELECT FROM 'in'"),
                stored(
                    "cold",
                    "SELECT * FROM 'in' WHERE t > 50",
                    actions=[{"republish": {"topic": "out/cold"}}],
                ),
            ]
        )
        assert "broken" in engine.broken and "expected" in engine.broken["broken"]
        broker.publish(Message("in", b'{"t": 10}', 0, False))
        await engine.drain()
        assert engine.rules["cold"].counters.matched == 1
        assert engine.rules["cold"].counters.passed == 0
    assert out == []


async def test_a_full_action_queue_drops_and_counts(broker: Broker) -> None:
    async with RulesEngine(RulesSettings(action_queue_size=2), broker.bus) as engine:
        engine.install(
            [stored("r", "SELECT * FROM 'in'", actions=[{"republish": {"topic": "out"}}])]
        )
        for _ in range(5):  # synchronously: the action task has no chance to run in between
            broker.publish(Message("in", b"{}", 0, False))
        assert engine.rules["r"].counters.dropped == 3 and engine.dropped == 3
        await engine.drain()


async def test_basic_ingest_reaches_only_its_rule_with_the_prefix_stripped(
    broker: Broker,
) -> None:
    out = received(broker, "out/#")
    spy = received(broker, "$aws/rules/#")
    async with RulesEngine(RulesSettings(), broker.bus) as engine:
        engine.install(
            [
                stored(
                    "target",
                    "SELECT *, topic() AS t FROM 'x'",
                    actions=[{"republish": {"topic": "out/target"}}],
                ),
                stored(
                    "bystander",
                    "SELECT * FROM 'dev/#'",
                    actions=[{"republish": {"topic": "out/bystander"}}],
                ),
            ]
        )
        broker.publish(Message("$aws/rules/target/dev/1", b'{"v": 1}', 0, False))
        broker.publish(Message("$aws/rules/nosuchrule/dev/1", b'{"v": 2}', 0, False))
        await engine.drain()
    assert out == [("out/target", {"v": 1, "t": "dev/1"})]
    assert spy == []


async def test_a_rule_that_matches_its_own_output_stops_after_the_depth_limit(
    broker: Broker,
) -> None:
    out = received(broker, "loop/#")
    settings = RulesSettings(max_republish_depth=3)
    async with RulesEngine(settings, broker.bus) as engine:
        engine.install(
            [
                stored(
                    "echo",
                    "SELECT n + 1 AS n FROM 'loop/#'",
                    actions=[{"republish": {"topic": "loop/again"}}],
                )
            ]
        )
        broker.publish(Message("loop/start", b'{"n": 0}', 0, False))
        await engine.drain()
        assert engine.loops == 1
    # The original message and three republishes; the third is not evaluated again.
    assert [payload["n"] for _, payload in out] == [0, 1, 2, 3]
