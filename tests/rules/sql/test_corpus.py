"""The SQL corpus: tests/rules/sql/corpus/*.json, one case per statement and message.

A case is ``{"name", "sql" | "template", "payload" | "payload_raw", "expect" | "expect_type" |
"expect_types", ...}``:

- ``sql``: a rule statement, evaluated with ``compile_rule(sql, version).evaluate(ctx)``;
  ``template``: an action parameter, expanded with ``substitute(template, ctx, version)``.
- ``version``: the ``awsIotSqlVersion``; omitted means 2016-03-23 (AWS's recommended version;
  cases about 2015-10-08, the default of a rule without one, say so).
- ``payload``: a JSON value sent as compact JSON, or ``{"base64": "..."}`` for raw bytes;
  ``payload_raw``: the exact payload text (UTF-8), JSON or not.
- ``topic`` (default ``a/b``), ``client_id``, ``principal``, ``trace_id``, ``received_ms``
  (default 1481825251155, AWS's ``timestamp()`` example) and ``shadows`` (``{"thing" |
  "thing/shadowName": document}``) build the ``EvalContext``; the account is 123456789012
  (AWS's ``accountid()`` example).
- ``expect``: the output, compared strictly (Int 10 is not Decimal 10.0); ``null`` means no
  message (WHERE did not pass); ``{"base64": "..."}`` means raw bytes; ``{"error": "text"}``
  means compiling fails with a ``RuleSqlError`` whose text contains ``text``.
- ``expect_type`` (with optional ``expect_match``, a regex) checks the AWS type of a
  nondeterministic output; ``expect_types`` the types of the output object's keys.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from rules.sql import EvalContext, RuleSqlError, compile_rule, substitute
from rules.sql.functions import FUNCTIONS
from rules.sql.values import UNDEFINED, type_of

CORPUS = Path(__file__).parent / "corpus"
DEFAULT_VERSION = "2016-03-23"
RECEIVED_MS = 1481825251155
ACCOUNT = "123456789012"

CASES: list[tuple[str, dict[str, Any]]] = [
    (f"{path.stem}: {case['name']}", case)
    for path in sorted(CORPUS.glob("*.json"))
    for case in json.loads(path.read_text(encoding="utf-8"))
]


def payload_of(case: dict[str, Any]) -> bytes:
    if "payload_raw" in case:
        return str(case["payload_raw"]).encode()
    payload = case.get("payload", {})
    if isinstance(payload, dict) and set(payload) == {"base64"}:
        return base64.b64decode(payload["base64"])
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def context_of(case: dict[str, Any]) -> EvalContext:
    shadows: dict[str, Any] = case.get("shadows", {})

    def read_shadow(thing: str, name: str | None) -> Any:
        return shadows.get(thing if name is None else f"{thing}/{name}", UNDEFINED)

    return EvalContext(
        topic=case.get("topic", "a/b"),
        payload=payload_of(case),
        client_id=case.get("client_id"),
        principal=case.get("principal"),
        trace_id=case.get("trace_id"),
        received_ms=case.get("received_ms", RECEIVED_MS),
        account_id=ACCOUNT,
        shadow_reader=read_shadow if shadows else None,
    )


def strictly_equal(got: Any, want: Any) -> bool:
    """JSON equality that tells Int from Decimal and Boolean from both."""
    if type(got) is not type(want):
        return False
    if isinstance(want, dict):
        return got.keys() == want.keys() and all(strictly_equal(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return len(got) == len(want) and all(
            strictly_equal(g, w) for g, w in zip(got, want, strict=True)
        )
    return bool(got == want)


def expected_value(want: Any) -> Any:
    if isinstance(want, dict) and set(want) == {"base64"}:
        return base64.b64decode(want["base64"])
    return want


def run(case: dict[str, Any]) -> Any:
    version = case.get("version", DEFAULT_VERSION)
    if "template" in case:
        return substitute(case["template"], context_of(case), version)
    return compile_rule(case["sql"], version).evaluate(context_of(case))


@pytest.mark.parametrize("case", [case for _, case in CASES], ids=[name for name, _ in CASES])
def test_case(case: dict[str, Any]) -> None:
    want = case.get("expect")
    if isinstance(want, dict) and set(want) == {"error"}:
        with pytest.raises(RuleSqlError) as caught:
            run(case)
        assert want["error"] in str(caught.value)
        return
    got = run(case)
    if "expect_type" in case:
        assert type_of(got) == case["expect_type"], got
        if "expect_match" in case:
            assert re.search(case["expect_match"], got), got
    elif "expect_types" in case:
        assert isinstance(got, dict), got
        assert {k: type_of(v) for k, v in got.items()} == case["expect_types"]
    else:
        assert "expect" in case, "a case needs expect, expect_type or expect_types"
        assert strictly_equal(got, expected_value(want)), f"got {got!r}"


def test_the_corpus_is_large_and_names_are_unique() -> None:
    names = [name for name, _ in CASES]
    assert len(names) >= 150
    assert len(set(names)) == len(names), [n for n in names if names.count(n) > 1]


def test_every_function_appears_in_the_corpus() -> None:
    text = " ".join(c.get("sql", "") + " " + c.get("template", "") for _, c in CASES).lower()
    missing = [name for name in FUNCTIONS if not re.search(rf"\b{name}\s*\(", text)]
    assert not missing, missing


def test_every_operator_appears_in_the_corpus() -> None:
    text = " ".join(c.get("sql", "") for _, c in CASES)
    for op in ("AND", "OR", "NOT", "CASE", "cast("):
        assert re.search(rf"\b{re.escape(op)}", text, re.IGNORECASE), op
    for symbol in ("=", "<>", "!=", "<", "<=", ">", ">=", "+", " - ", "*", "/", "%", ".", "["):
        assert symbol in text, symbol
