"""``thingcore rules``: rules kept as files, applied like code, tested without a server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from registry.config import RegistrySettings
from registry.service import Registry
from rules.definition import parse_definition
from rules.store import RuleStore
from tests.thingcore.test_cli_registry import Cli, cli

__all__ = ["cli"]  # the fixture, imported from the main CLI test module

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "rules"


def folder_of_examples(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    shutil.copytree(EXAMPLES, folder)
    return folder


def test_apply_is_idempotent_and_reports_what_changed(cli: Cli, tmp_path: Path) -> None:
    folder = folder_of_examples(tmp_path)
    first = cli.json("rules", "apply", str(folder))
    assert first["created"] == ["hot_readings", "shadow_reports"]
    again = cli.json("rules", "apply", str(folder))
    assert again["created"] == again["changed"] == again["deleted"] == []
    assert again["unchanged"] == ["hot_readings", "shadow_reports"]
    rule = json.loads((folder / "hot_readings.json").read_text())
    rule["description"] = "changed"
    (folder / "hot_readings.json").write_text(json.dumps(rule))
    (folder / "shadow_reports.json").unlink()
    dry = cli.json("rules", "apply", str(folder), "--dry-run")
    assert (dry["changed"], dry["deleted"], dry["dryRun"]) == (
        ["hot_readings"],
        ["shadow_reports"],
        True,
    )
    assert {r["ruleName"] for r in cli.json("rules", "list")["rules"]} == {
        "hot_readings",
        "shadow_reports",
    }
    third = cli.json("rules", "apply", str(folder))
    assert (third["changed"], third["deleted"]) == (["hot_readings"], ["shadow_reports"])
    text = cli.ok("rules", "apply", str(folder)).stdout
    assert "0 created, 0 changed, 0 deleted, 1 unchanged" in text


def test_apply_keeps_rules_made_otherwise(cli: Cli, tmp_path: Path) -> None:
    registry = Registry(RegistrySettings(), cli.data_dir).open()
    try:
        RuleStore(registry.db).put(parse_definition("by_hand", {"sql": "SELECT * FROM 'a'"}))
    finally:
        registry.close()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.json("rules", "apply", str(empty))["deleted"] == []
    assert [r["ruleName"] for r in cli.json("rules", "list")["rules"]] == ["by_hand"]


def test_a_broken_file_applies_nothing_and_points_at_the_error(cli: Cli, tmp_path: Path) -> None:
    folder = folder_of_examples(tmp_path)
    (folder / "broken.json").write_text(
        json.dumps({"sql": "SELECT temp FROM 'a/b' WHERE temp >", "actions": []})
    )
    (folder / "bad_action.json").write_text(
        json.dumps({"sql": "SELECT * FROM 'a'", "actions": [{"dynamoDB": {"tableName": "t"}}]})
    )
    ran = cli.run("rules", "apply", str(folder))
    assert ran.code == 1
    assert "2 of the rule files cannot be applied; nothing was changed" in ran.stderr
    assert "broken.json" in ran.stderr and "line 1" in ran.stderr and "^" in ran.stderr
    assert "bad_action.json" in ran.stderr and "'dynamoDB' is an AWS IoT action" in ran.stderr
    assert cli.json("rules", "list")["rules"] == []
    assert "not a folder" in cli.fails("rules", "apply", str(tmp_path / "missing"))


def test_test_prints_what_each_action_would_get(cli: Cli, tmp_path: Path) -> None:
    cli.ok("rules", "apply", str(folder_of_examples(tmp_path)))
    result = cli.json(
        "rules",
        "test",
        "hot_readings",
        "--topic",
        "sensors/kitchen/telemetry",
        "--payload",
        '{"temp": 61}',
    )
    assert result["wherePassed"] is True
    [action] = result["actions"]
    assert action["action"] == "republish" and action["topic"] == "alerts/kitchen/hot"
    assert action["payload"]["temp"] == 61 and action["payload"]["device"] == "kitchen"
    assert isinstance(action["payload"]["at"], int)
    cold = cli.json(
        "rules",
        "test",
        "hot_readings",
        "--topic",
        "sensors/kitchen/telemetry",
        "--payload",
        '{"temp": 20}',
    )
    assert (cold["wherePassed"], cold["actions"]) == (False, [])
    message = cli.fails(
        "rules", "test", "hot_readings", "--topic", "other/topic", "--payload", "{}"
    )
    assert "does not match the rule's FROM 'sensors/+/telemetry'" in message
    # A rule file works without applying it.
    payload = tmp_path / "payload.json"
    payload.write_text('{"temp": 99}')
    by_file = cli.json(
        "rules",
        "test",
        str(EXAMPLES / "hot_readings.json"),
        "--topic",
        "sensors/x/telemetry",
        "--payload",
        str(payload),
    )
    assert by_file["output"]["temp"] == 99


def test_show_enable_disable_delete(cli: Cli, tmp_path: Path) -> None:
    cli.ok("rules", "apply", str(folder_of_examples(tmp_path)))
    shown = cli.json("rules", "show", "hot_readings")
    assert shown["rule"]["awsIotSqlVersion"] == "2016-03-23"
    assert shown["metrics"]["matched"] == 0
    assert "Passed WHERE" in cli.ok("rules", "show", "hot_readings").stdout
    cli.ok("rules", "disable", "hot_readings")
    assert cli.json("rules", "show", "hot_readings")["rule"]["ruleDisabled"] is True
    cli.ok("rules", "enable", "hot_readings")
    assert cli.json("rules", "show", "hot_readings")["rule"]["ruleDisabled"] is False
    cli.ok("rules", "delete", "hot_readings")
    assert "rule 'hot_readings' does not exist" in cli.fails("rules", "show", "hot_readings")
