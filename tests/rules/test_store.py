"""RuleStore on SQLite and PostgreSQL: put, apply a folder's rules, delete, counters."""

from __future__ import annotations

import pytest

from registry.service import Registry
from rules.definition import parse_definition
from rules.errors import RuleError
from rules.store import RULE_CHANGE, Counters, RuleStore
from tests.registry.conftest import MakeRegistry, changes_since


def rule(name: str, sql: str = "SELECT * FROM 'a/b'") -> object:
    return parse_definition(name, {"sql": sql, "actions": []})


@pytest.fixture
def registry(make_registry: MakeRegistry) -> Registry:
    return make_registry()


def test_put_reports_created_changed_unchanged_and_records_changes(registry: Registry) -> None:
    store = RuleStore(registry.db)
    mark = registry.last_change()
    assert store.put(parse_definition("r1", {"sql": "SELECT * FROM 'a'"})) == "created"
    assert store.put(parse_definition("r1", {"sql": "SELECT * FROM 'a'"})) == "unchanged"
    assert store.put(parse_definition("r1", {"sql": "SELECT * FROM 'b'"})) == "changed"
    assert changes_since(registry, mark) == [(RULE_CHANGE, "r1"), (RULE_CHANGE, "r1")]
    assert store.get("r1").payload == {
        "sql": "SELECT * FROM 'b'",
        "actions": [],
        "ruleDisabled": False,
    }


def test_apply_manages_only_the_rules_it_applied(registry: Registry) -> None:
    store = RuleStore(registry.db)
    store.put(parse_definition("by_hand", {"sql": "SELECT * FROM 'x'"}))
    first = store.apply(
        [
            parse_definition("a", {"sql": "SELECT * FROM 'a'"}),
            parse_definition("b", {"sql": "SELECT * FROM 'b'"}),
        ]
    )
    assert (first.created, first.deleted) == (["a", "b"], [])
    second = store.apply([parse_definition("a", {"sql": "SELECT * FROM 'a'"})])
    assert (second.unchanged, second.deleted) == (["a"], ["b"])
    assert [r.name for r in store.all()] == ["a", "by_hand"]
    with pytest.raises(RuleError, match="defined twice"):
        store.apply([parse_definition("a", {"sql": "SELECT * FROM 'a'"})] * 2)


def test_disable_delete_and_counters(registry: Registry) -> None:
    store = RuleStore(registry.db)
    store.put(parse_definition("r", {"sql": "SELECT * FROM 'a'"}))
    store.set_disabled("r", True)
    assert store.get("r").definition().disabled
    store.add_metrics({"r": Counters(matched=4, passed=2, outputs=2, eval_ns=8000)})
    store.add_metrics({"r": Counters(matched=1, failed=1, eval_ns=2000)})
    metrics = store.metrics("r")
    assert (metrics["matched"], metrics["passed"], metrics["failed"], metrics["outputs"]) == (
        5,
        2,
        1,
        2,
    )
    assert metrics["meanEvalMicros"] == 2.0
    store.delete("r")
    with pytest.raises(RuleError, match="does not exist"):
        store.get("r")
    assert store.metrics("r")["matched"] == 0
    with pytest.raises(RuleError, match="does not exist"):
        store.delete("r")
