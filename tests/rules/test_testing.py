"""Rule test cases: loading them (errors that name the file and the case), running, comparing."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from rules import engine
from rules.definition import RuleDefinition, parse_definition
from rules.errors import RuleError
from rules.testing import (
    INGEST_PREFIX,
    Case,
    RuleSource,
    load_cases,
    parse_case,
    run_case,
    run_cases,
    same_json,
)

HOT = {
    "sql": "SELECT temp, topic(2) AS device, timestamp() AS at, clientid() AS client "
    "FROM 'sensors/+/telemetry' WHERE temp > 50",
    "awsIotSqlVersion": "2016-03-23",
    "actions": [{"republish": {"topic": "alerts/${topic(2)}/hot", "qos": 1}}],
}


def hot() -> RuleDefinition:
    return parse_definition("hot", HOT)


def case(**fields: Any) -> Case:
    raw = {"name": "c", "rule": "hot", "topic": "sensors/k/telemetry", "payload": {}, **fields}
    return parse_case(raw, Path("cases/c.json"))


def write(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))
    return path


# -- loading ----------------------------------------------------------------------------------


def test_the_ingest_prefix_is_the_engines() -> None:
    assert INGEST_PREFIX == engine.INGEST_PREFIX


def test_a_case_reads_payloads_rule_files_and_what_to_check() -> None:
    c = case(payload={"temp": 61}, clientId="dev", expect={"temp": 61}, ignore=["at"])
    assert (c.payload, c.client_id, c.expect, c.ignore) == (
        b'{"temp":61}',
        "dev",
        {"temp": 61},
        ("at",),
    )
    assert c.rule_file is None and c.checks_output
    binary = case(payload={"base64": base64.b64encode(b"\x00\xff").decode()}, expect=None)
    assert binary.payload == b"\x00\xff" and binary.expect is None and binary.checks_output
    assert case(payload="text", expect=None).payload == b'"text"'  # a JSON string value
    by_file = case(rule="../rules/hot.json", expectActions=[])
    assert by_file.rule_file == Path("cases/../rules/hot.json")
    assert not by_file.checks_output and by_file.expect_actions == ()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, 'cases/c.json: the case: "name" is missing'),
        ({"expected": 1}, "case 'c': unknown key 'expected'; a case has clientId, expect"),
        ({"rule": "no such"}, "case 'c': \"rule\": rule name 'no such' is invalid"),
        ({"topic": 5, "expect": None}, "case 'c': \"topic\" is missing"),
        ({}, "case 'c': nothing to check: give \"expect\""),
        ({"payload": {"base64": "!!"}, "expect": None}, "is not valid base64"),
        ({"expectActions": [{"topic": "x"}]}, '"expectActions" is a list of objects'),
        ({"ignore": "at", "expect": None}, '"ignore" is a list of output keys'),
        ({"clientId": 3, "expect": None}, '"clientId" must be a string'),
    ],
)
def test_a_bad_case_is_named_with_its_file(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(RuleError) as caught:
        case(**fields)
    assert message in str(caught.value)
    assert str(caught.value).startswith("cases/c.json: ")


def test_a_folder_holds_lists_single_cases_and_rule_files_which_are_skipped(
    tmp_path: Path,
) -> None:
    one = {"name": "one", "rule": "hot", "topic": "t", "payload": 1, "expect": None}
    write(tmp_path / "b.json", [one, {**one, "name": "two"}])
    write(tmp_path / "a.json", {**one, "name": "zero"})
    write(tmp_path / "hot.json", HOT)
    (tmp_path / "notes.md").write_text("not a case")
    assert [c.name for c in load_cases(tmp_path)] == ["zero", "one", "two"]
    assert [c.name for c in load_cases(tmp_path / "a.json")] == ["zero"]


def test_every_broken_case_file_is_reported_at_once(tmp_path: Path) -> None:
    write(tmp_path / "a.json", [{"name": "fine", "rule": "r", "topic": "t", "payload": 1}])
    (tmp_path / "b.json").write_text("{not json")
    write(tmp_path / "c.json", [])
    with pytest.raises(RuleError) as caught:
        load_cases(tmp_path)
    lines = str(caught.value).splitlines()
    assert lines[0] == "3 case files have problems:"
    assert "a.json: case 'fine': nothing to check" in lines[1]
    assert "b.json: not valid JSON" in lines[2]
    assert "c.json: the list of cases is empty" in lines[3]
    with pytest.raises(RuleError, match="is not a folder of case files"):
        load_cases(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RuleError, match="holds no case files"):
        load_cases(empty)
    write(empty / "hot.json", HOT)
    with pytest.raises(RuleError, match="holds no test cases"):
        load_cases(empty)


# -- running ----------------------------------------------------------------------------------


def test_a_passing_case_with_ignored_keys_and_actions() -> None:
    result = run_case(
        case(
            payload={"temp": 61},
            clientId="dev-1",
            expect={"temp": 61, "device": "k", "client": "dev-1"},
            expectActions=[{"action": "republish", "topic": "alerts/k/hot", "qos": 1}],
            ignore=["at"],
        ),
        hot(),
        now_ms=1234,
    )
    assert result.status == "pass", result.diff
    assert result.output["at"] == 1234 and result.where_passed is True
    assert result.actions == [
        {"action": "republish", "topic": "alerts/k/hot", "qos": 1, "payload": result.output}
    ]


def test_a_different_output_fails_with_a_diff() -> None:
    result = run_case(
        case(payload={"temp": 61}, expect={"temp": 62, "device": "k"}, ignore=["at", "client"]),
        hot(),
    )
    assert (result.status, result.message) == ("fail", "the output differs")
    assert result.diff[:2] == ["--- expected output", "+++ actual output"]
    assert '-  "temp": 62' in result.diff and '+  "temp": 61' in result.diff
    assert not any('"at"' in line for line in result.diff)


def test_null_means_no_output_either_way() -> None:
    assert run_case(case(payload={"temp": 20}, expect=None), hot()).status == "pass"
    cold = run_case(case(payload={"temp": 20}, expect={"temp": 20}), hot())
    assert cold.status == "fail" and cold.where_passed is False
    assert cold.message == "expected an output, but the rule produced none (WHERE did not pass)"
    assert cold.diff[-1] == "+null"
    hot_one = run_case(case(payload={"temp": 70}, expect=None), hot())
    assert hot_one.message == "expected no output, but the rule produced one"
    assert run_case(case(payload={"temp": 20}, expectActions=[]), hot()).status == "pass"


def test_actions_match_on_the_keys_the_case_gives() -> None:
    good = case(
        payload={"temp": 61}, expectActions=[{"action": "republish", "topic": "alerts/k/hot"}]
    )
    assert run_case(good, hot()).status == "pass"
    wrong = case(payload={"temp": 61}, expectActions=[{"action": "republish", "topic": "x"}])
    result = run_case(wrong, hot())
    assert (result.status, result.message) == ("fail", "the actions differ")
    assert '-    "topic": "x"' in result.diff and '+    "topic": "alerts/k/hot"' in result.diff
    assert not any("payload" in line for line in result.diff)  # only the keys compared
    extra = case(payload={"temp": 61}, expectActions=[])
    assert run_case(extra, hot()).status == "fail"
    for temp, status in ((61, "pass"), (60, "fail")):
        expected = {"temp": temp, "device": "k", "client": "n/a"}  # clientid() of none: "n/a"
        with_payload = case(
            payload={"temp": 61},
            expectActions=[{"action": "republish", "payload": expected}],
            ignore=["at"],  # in the actions' payloads too
        )
        assert run_case(with_payload, hot()).status == status


def test_comparison_is_json_equality_and_ignore_takes_dotted_keys() -> None:
    assert same_json({"a": [1, 2.0]}, {"a": [1.0, 2]})
    assert not same_json(True, 1) and not same_json(0, False) and not same_json(None, {})
    assert not same_json({"a": 1}, {"a": 1, "b": 2}) and not same_json([1], [1, 1])
    rule = parse_definition(
        "nested",
        {
            "sql": "SELECT {'id': 1, 'at': timestamp()} AS meta FROM 'x'",
            "awsIotSqlVersion": "2016-03-23",
        },
    )
    c = parse_case(
        {
            "name": "n",
            "rule": "nested",
            "topic": "x",
            "payload": {},
            "expect": {"meta": {"id": 1}},
            "ignore": ["meta.at", "no.such.key"],
        },
        Path("c.json"),
    )
    assert run_case(c, rule).status == "pass"


def test_binary_outputs_compare_as_base64() -> None:
    rule = parse_definition("raw", {"sql": "SELECT * FROM 'raw/#'"})
    data = b"\x00\x01\xfe"
    encoded = base64.b64encode(data).decode()
    c = parse_case(
        {
            "name": "b",
            "rule": "raw",
            "topic": "raw/1",
            "payload": {"base64": encoded},
            "expect": {"base64": encoded},
        },
        Path("c.json"),
    )
    assert run_case(c, rule).status == "pass"


def test_the_rule_must_see_the_topic_as_the_engine_would() -> None:
    outside = run_case(case(topic="other/topic", expect=None), hot())
    assert outside.status == "error"
    assert "does not match the rule's FROM 'sensors/+/telemetry'" in (outside.message or "")
    dollar = parse_definition("all", {"sql": "SELECT * FROM '#'"})
    reserved = run_case(case(rule="all", topic="$aws/things/x/shadow/update", expect=None), dollar)
    assert reserved.status == "error"  # '#' does not match topics that begin with '$'
    ingest = run_case(
        case(
            topic="$aws/rules/hot/sensors/porch/telemetry",
            payload={"temp": 99},
            expect={"temp": 99, "device": "porch", "client": "n/a"},
            ignore=["at"],
        ),
        hot(),
    )
    assert ingest.status == "pass", ingest.diff
    other = run_case(case(topic="$aws/rules/other/x", expect=None), hot())
    assert "reaches rule 'other' only" in (other.message or "")
    no_from = parse_definition("nofrom", {"sql": "SELECT * "})
    assert "sees Basic Ingest topics only" in (
        run_case(case(rule="nofrom", topic="a", expect=None), no_from).message or ""
    )


def test_a_rule_that_raises_is_an_error_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    rule = hot()

    def boom(ctx: Any, root: Any) -> Any:
        raise ValueError("broken")

    monkeypatch.setattr(rule.compiled, "_where", boom)
    result = run_case(case(expect=None), rule)
    assert result.status == "error"
    assert result.message == "the rule failed on this message: ValueError: broken"


def test_rules_are_read_once_and_missing_ones_fail_only_their_cases(tmp_path: Path) -> None:
    reads: list[Path] = []
    write(tmp_path / "hot.json", HOT)

    def read_file(path: Path) -> RuleDefinition:
        reads.append(path)
        if not path.exists():
            raise RuleError(f"{path}: cannot read it")
        return parse_definition(path.stem, json.loads(path.read_text()))

    def lookup(name: str) -> RuleDefinition:
        raise RuleError(f"rule {name!r} does not exist")

    common = {"topic": "sensors/k/telemetry", "payload": {"temp": 1}, "expect": None}
    cases = [
        parse_case({"name": "a", "rule": "hot.json", **common}, tmp_path / "c.json"),
        parse_case({"name": "b", "rule": "hot.json", **common}, tmp_path / "c.json"),
        parse_case({"name": "c", "rule": "gone.json", **common}, tmp_path / "c.json"),
        parse_case({"name": "d", "rule": "in_db", **common}, tmp_path / "c.json"),
    ]
    report = run_cases(cases, RuleSource(read_file, lookup))
    assert [r.status for r in report.results] == ["pass", "pass", "error", "error"]
    assert reads == [tmp_path / "hot.json", tmp_path / "gone.json"]
    assert (report.count("pass"), report.count("error"), report.ok) == (2, 2, False)
    as_json = report.as_dict()
    assert (as_json["passed"], as_json["failed"], as_json["errors"]) == (2, 0, 2)
    assert as_json["cases"][3]["message"] == "rule 'in_db' does not exist"
    no_db = run_cases(cases[3:], RuleSource(read_file))
    assert "no rules database" in (no_db.results[0].message or "")


def test_expected_actions_name_local_targets_by_their_expanded_parameters() -> None:
    definition = parse_definition(
        "hot",
        {
            **HOT,
            "actions": [
                {"queue": {"queueName": "hot-${topic(2)}", "priority": 3}},
                {"bucket": {"bucketName": "readings", "key": "${topic(2)}/${temp}.json"}},
                {"function": {"functionArn": "arn:aws:lambda:us-east-1:1:function:notify"}},
            ],
        },
    )
    expected = [
        {"action": "queue", "queue": "hot-k", "priority": 3},
        {"action": "bucket", "bucket": "readings", "key": "k/61.json"},
        {"action": "function", "function": "notify"},
    ]
    passing = run_case(case(payload={"temp": 61}, expectActions=expected), definition)
    assert passing.status == "pass", passing.message
    expected[1] = {"action": "bucket", "key": "k/62.json"}
    failing = run_case(case(payload={"temp": 61}, expectActions=expected), definition)
    assert failing.status == "fail" and failing.message == "the actions differ"
