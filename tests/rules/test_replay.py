"""Replaying captured traffic: the capture format, and matching exactly as the engine does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.message import Message
from broker.server import Broker
from rules.config import RulesSettings
from rules.definition import RuleDefinition, parse_definition
from rules.engine import RulesEngine
from rules.errors import RuleError
from rules.replay import CapturedMessage, Replayer, parse_capture, parse_line, replay
from rules.store import StoredRule
from tests.harness import make_settings


def rule(name: str, sql: str, *, disabled: bool = False, **extra: Any) -> RuleDefinition:
    return parse_definition(
        name,
        {"sql": sql, "awsIotSqlVersion": "2016-03-23", "ruleDisabled": disabled, **extra},
    )


def message(
    topic: str, payload: Any, t: int = 1_000, client_id: str | None = None
) -> CapturedMessage:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return CapturedMessage(t, topic, body, client_id=client_id)


# -- the format -------------------------------------------------------------------------------


def test_text_payloads_stay_text_and_binary_ones_become_base64() -> None:
    text = CapturedMessage(5, "a/b", '{"é": 1}'.encode(), 1, True, "dev")
    assert json.loads(text.to_line()) == {
        "t": 5,
        "topic": "a/b",
        "qos": 1,
        "retain": True,
        "payload": '{"é": 1}',
        "clientId": "dev",
    }
    binary = CapturedMessage(6, "a/b", b"\xff\x00")
    assert json.loads(binary.to_line())["payloadBase64"] == "/wA="
    assert "payload" not in json.loads(binary.to_line())
    assert parse_line(text.to_line(), "f:1") == text
    assert parse_line(binary.to_line(), "f:2") == binary


@given(
    t=st.integers(0, 2**48),
    topic=st.text(min_size=1, max_size=30),
    payload=st.binary(max_size=64) | st.text(max_size=64).map(str.encode),
    qos=st.integers(0, 2),
    retain=st.booleans(),
    client_id=st.none() | st.text(max_size=10),
)
def test_every_message_survives_a_line(
    t: int, topic: str, payload: bytes, qos: int, retain: bool, client_id: str | None
) -> None:
    captured = CapturedMessage(t, topic, payload, qos, retain, client_id)
    line = captured.to_line()
    assert "\n" not in line
    assert parse_line(line, "f:1") == captured


def test_hand_written_lines_need_only_a_topic_and_a_payload() -> None:
    [m] = parse_capture(['{"topic": "x", "payload": "hi"}'], "f")
    assert (m.topic, m.payload, m.qos, m.retain, m.client_id) == ("x", b"hi", 0, False, None)
    assert m.t > 1_600_000_000_000  # now, when not recorded
    assert len(list(parse_capture(["", '{"topic": "x", "payload": ""}', "  \n"], "f"))) == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{nope", "not a JSON line"),
        ("[1]", "a capture line is a JSON object"),
        ('{"payload": "x"}', '"topic" is missing'),
        ('{"topic": "x"}', 'give the payload as "payload" (text) or "payloadBase64"'),
        ('{"topic": "x", "payload": "a", "payloadBase64": "YQ=="}', "once"),
        ('{"topic": "x", "payload": {"a": 1}}', "JSON payloads as a string"),
        ('{"topic": "x", "payloadBase64": "!"}', "not valid base64"),
        ('{"topic": "x", "payload": "", "t": "now"}', '"t" is epoch milliseconds'),
        ('{"topic": "x", "payload": "", "qos": 3}', '"qos" is 0, 1 or 2'),
        ('{"topic": "x", "payload": "", "retain": 1}', '"retain" is true or false'),
        ('{"topic": "x", "payload": "", "clientId": 1}', '"clientId" is a string or null'),
        ('{"topic": "x", "payload": "", "extra": 1}', "unknown key 'extra'"),
    ],
)
def test_a_bad_line_names_the_file_and_the_line(line: str, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        list(parse_capture(['{"topic": "ok", "payload": ""}', line], "capture.jsonl"))
    assert str(caught.value).startswith("capture.jsonl:2: ")
    assert message in str(caught.value)


# -- replaying --------------------------------------------------------------------------------


def test_outputs_counters_and_the_recorded_time() -> None:
    hot = rule(
        "hot",
        "SELECT temp, timestamp() AS at, clientid() AS client FROM 'sensors/+/t' WHERE temp > 50",
        actions=[{"republish": {"topic": "alerts/${topic(2)}", "qos": 1}}],
    )
    report = replay(
        [
            message("sensors/a/t", {"temp": 61}, t=10, client_id="dev-a"),
            message("sensors/b/t", {"temp": 20}, t=20),
            message("sensors/c/t", {"temp": 70}, t=30),
            message("sensors/d/t", {"temp": 80}, t=5),
            message("elsewhere", {"temp": 99}, t=40),
        ],
        [hot],
        keep=2,
    )
    [r] = report.rules
    assert (r.matched, r.passed, r.failed, r.outputs) == (4, 3, 0, 3)
    assert r.mean_eval_micros is not None and r.mean_eval_micros > 0
    assert (report.messages, report.unmatched, report.first_t, report.last_t) == (5, 1, 5, 40)
    assert r.first_outputs == [
        {
            "t": 10,
            "topic": "sensors/a/t",
            "output": {"temp": 61, "at": 10, "client": "dev-a"},
            "actions": [{"action": "republish", "topic": "alerts/a", "qos": 1}],
        },
        {
            "t": 30,
            "topic": "sensors/c/t",
            "output": {"temp": 70, "at": 30, "client": "n/a"},
            "actions": [{"action": "republish", "topic": "alerts/c", "qos": 1}],
        },
    ]
    as_json = report.as_dict()
    assert as_json["rules"][0]["ruleName"] == "hot" and as_json["rules"][0]["outputs"] == 3


def test_basic_ingest_disabled_rules_and_dollar_topics() -> None:
    rules = [
        rule("target", "SELECT *, topic() AS t FROM 'x'"),
        rule("everything", "SELECT * FROM '#'"),
        rule("only_ingest", "SELECT VALUE v"),
        rule("off", "SELECT * FROM 'x'", disabled=True),
    ]
    report = replay(
        [
            message("$aws/rules/target/dev/1", {"v": 1}),
            message("$aws/rules/only_ingest", {"v": 2}),
            message("$aws/rules/off/x", {"v": 3}),
            message("$aws/rules/nosuchrule/x", {"v": 4}),
            message("$aws/things/t/shadow/update", {"v": 5}),
            message("x", {"v": 6}),
        ],
        rules,
    )
    by_name = {r.name: r for r in report.rules}
    assert by_name["target"].first_outputs[0]["output"] == {"v": 1, "t": "dev/1"}
    assert by_name["target"].matched == 2  # the ingest message and 'x'
    assert by_name["only_ingest"].first_outputs[0]["output"] == 2
    assert by_name["everything"].matched == 1  # not $aws/..., not Basic Ingest
    assert by_name["off"].matched == 0
    assert report.unmatched == 3


def test_a_failing_rule_is_counted_and_the_others_go_on(monkeypatch: pytest.MonkeyPatch) -> None:
    bad, good = rule("bad", "SELECT * FROM 'in'"), rule("good", "SELECT * FROM 'in'")

    def boom(ctx: Any, root: Any) -> Any:
        raise ValueError("broken")

    monkeypatch.setattr(bad.compiled, "_project", boom)
    report = replay([message("in", {"n": i}, t=i) for i in range(5)], [bad, good], keep=2)
    by_name = {r.name: r for r in report.rules}
    assert (by_name["bad"].failed, by_name["bad"].outputs, by_name["good"].outputs) == (5, 0, 5)
    assert by_name["bad"].first_errors == [
        {"t": 0, "topic": "in", "error": "ValueError: broken"},
        {"t": 1, "topic": "in", "error": "ValueError: broken"},
    ]


def test_a_rule_given_twice_is_refused() -> None:
    with pytest.raises(RuleError, match="given twice"):
        Replayer([rule("a", "SELECT * FROM 'x'"), rule("a", "SELECT * FROM 'y'")])


async def test_matching_agrees_with_the_running_engine() -> None:
    """The same rules and messages through the real engine on a Bus and through the replayer:
    the same rules match the same messages and produce the same outputs."""
    sqls = {
        "wide": "SELECT n FROM 'in/#'",
        "narrow": "SELECT n FROM 'in/+/x' WHERE n > 1",
        "exact": "SELECT n FROM 'in/a/x'",
        "everything": "SELECT n FROM '#'",
        "plus_first": "SELECT n FROM '+/a/#'",
        "reserved": "SELECT n FROM '$aws/things/+/shadow/#'",
        "ingest_only": "SELECT n",
        "off": "SELECT n FROM 'in/#'",
    }
    definitions = [rule(n, sql, disabled=n == "off") for n, sql in sqls.items()]
    topics = [
        "in",
        "in/a/x",
        "in/b/x",
        "in/a/x/y",
        "other/a/b",
        "$aws/things/t/shadow/update",
        "$aws/rules/ingest_only/z",
        "$aws/rules/narrow/in/a/x",
        "$aws/rules/off/q",
        "$SYS/x",
    ]
    messages = [message(t, {"n": i}) for i, t in enumerate(topics)]
    report = replay(messages, definitions)
    replayed = {r.name: (r.matched, r.outputs) for r in report.rules}

    broker = Broker(make_settings(), data_dir=None)
    stored = [StoredRule(d.name, d.to_dict(), False, 0.0, 0.0) for d in definitions]
    async with RulesEngine(RulesSettings(), broker.bus) as engine:
        engine.install(stored)
        for m in messages:
            broker.publish(Message(m.topic, m.payload, 0, False))
        await engine.drain()
        live = {n: (r.counters.matched, r.counters.outputs) for n, r in engine.rules.items()}
    assert replayed == live
    assert replayed["everything"][0] == 5 and replayed["off"] == (0, 0)
