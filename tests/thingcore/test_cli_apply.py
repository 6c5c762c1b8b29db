"""``thingcore apply``: the app file's checks (``thingcore.appfile``, pure), its plan and its
application to a data directory, run in-process through ``Cli`` (see ``test_cli_registry.py``),
the results read back with the stores a server uses."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.local.queues import QueueStore
from rules.local.topics import TopicStore
from tests.thingcore.test_cli_registry import Cli, cli
from thingcore.appfile import AppFileError, parse_app, sidecar_text, toml_value
from thingcore.appplan import AppState
from thingcore.config import load_settings

__all__ = ["cli"]  # the fixture, imported from the main CLI test module

HOT_SQL = "SELECT temp, topic(2) AS device FROM 'sensors/+/telemetry' WHERE temp > 50"
HANDLER = "def handler(event, context):\n    return event\n"

APP = f"""
[app]
name = "greenhouse"

[rules.hot_readings]
sql = "{HOT_SQL}"
awsIotSqlVersion = "2016-03-23"
actions = [{{ queue = {{ queueName = "hot" }} }}]

[functions.notify]
source = "functions/notify.py"
timeout = 5.0
concurrency = 2
environment = {{ LEVEL = "high" }}
events = [{{ queue = "hot", batch_size = 10 }}, {{ schedule = "rate(1 hour)" }}]

[queues.hot]
[buckets.readings]
[topics.alerts]
subscribers = ["pager", {{ queue = "audit", raw = true }}]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with the app file and its function."""
    folder = tmp_path / "project"
    (folder / "functions").mkdir(parents=True)
    (folder / "functions" / "notify.py").write_text(HANDLER)
    (folder / "thingcore-app.toml").write_text(APP)
    return folder


def apply(cli: Cli, project: Path, *args: str) -> dict[str, Any]:
    found: dict[str, Any] = cli.json("apply", str(project / "thingcore-app.toml"), *args)
    return found


def changes(plan: dict[str, Any], *actions: str) -> list[str]:
    """``"create rule hot_readings"``... for the changes of the given actions (default: all
    but unchanged)."""
    wanted = actions or ("create", "change", "delete", "blocked", "kept")
    return [
        f"{c['action']} {c['kind']} {c['name']}" for c in plan["changes"] if c["action"] in wanted
    ]


def edit(project: Path, old: str, new: str) -> None:
    path = project / "thingcore-app.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def stores(data_dir: Path) -> tuple[QueueStore, TopicStore]:
    settings = load_settings(data_dir=data_dir)
    queues = QueueStore.from_settings(settings.rules.local, settings.data_dir)
    return queues, TopicStore.from_settings(settings.rules.local, settings.data_dir, queues)


# -- the file ------------------------------------------------------------------------------------


def parse(raw: dict[str, Any], files: dict[str, str] | None = None) -> Any:
    files = {"f.py": HANDLER, **(files or {})}

    def read(path: str) -> str:
        if path not in files:
            raise ValueError(f"{path} does not exist")
        return files[path]

    return parse_app(raw, read)


def test_a_valid_app_parses_into_its_resources(project: Path) -> None:
    spec = parse(
        tomllib.loads(APP), {"functions/notify.py": (project / "functions/notify.py").read_text()}
    )
    assert spec.name == "greenhouse"
    assert list(spec.rules) == ["hot_readings"]
    assert spec.queues == ("hot",) and spec.buckets == ("readings",)
    assert [(s.queue, s.raw) for s in spec.topics["alerts"]] == [("audit", True), ("pager", False)]
    notify = spec.functions["notify"]
    assert notify.code == HANDLER
    assert notify.sidecar is not None
    assert tomllib.loads(notify.sidecar) == {
        "timeout": 5.0,
        "concurrency": 2,
        "environment": {"LEVEL": "high"},
        "events": [{"queue": "hot", "batch_size": 10}, {"schedule": "rate(1 hour)"}],
    }


def test_every_problem_is_reported_together_naming_table_and_key() -> None:
    raw = {
        "app": {"name": "green house"},
        "rules": {
            "bad_sql": {"sql": "SELECT FROM"},
            "bad_file": {"file": "missing.json"},
            "bad-name": {"sql": "SELECT * FROM 'a'"},
        },
        "functions": {
            "f": {"source": "f.py", "timeout": -1, "events": [{"queue": "bad name!"}]},
            "g": {"source": "nope.py", "color": "red"},
            "h": {"source": "broken.py"},
        },
        "queues": {"no spaces": {}},
        "buckets": {"UPPER": {}, "ok-bucket": {"size": 1}},
        "topics": {"alerts": {"subscribers": ["pager", "pager", 3]}},
        "widgets": {},
    }
    with pytest.raises(AppFileError) as caught:
        parse(raw, {"broken.py": "def handler(:\n"})
    problems = caught.value.problems
    text = "\n".join(problems)
    for where in (
        "unknown table [widgets]",
        "app.name must be",
        "rules.bad_sql: ",
        "rules.bad_file.file: missing.json does not exist",
        "rules.bad-name: ",
        "functions.f.timeout must be seconds greater than 0",
        "functions.f.events[0].queue: invalid queue name",
        "functions.g.color: unknown key",
        "functions.g.source: nope.py does not exist",
        "functions.h.source: broken.py:1:",
        "queues.no spaces: invalid queue name",
        "buckets.UPPER: invalid bucket name",
        "buckets.ok-bucket.size: unknown key",
        "topics.alerts.subscribers[1]: queue pager is subscribed twice",
        "topics.alerts.subscribers[2] must be a queue name",
    ):
        assert where in text, (where, problems)
    assert "nothing was applied" in str(caught.value)


def test_a_rule_may_come_from_a_file_in_either_json_shape() -> None:
    payload = {"sql": "SELECT * FROM 'a/b'", "actions": []}
    skeleton = {"ruleName": "x", "topicRulePayload": payload}
    spec = parse(
        {
            "app": {"name": "a"},
            "rules": {"one": {"file": "one.json"}, "two": {"file": "two.json"}},
        },
        {"one.json": json.dumps(payload), "two.json": json.dumps(skeleton)},
    )
    assert spec.rules["one"].to_dict() == spec.rules["two"].to_dict()
    with pytest.raises(AppFileError, match=r"rules.one.sql: a rule from a file has no other"):
        parse({"app": {"name": "a"}, "rules": {"one": {"file": "one.json", "sql": "x"}}})


def test_a_function_without_settings_has_no_sidecar() -> None:
    spec = parse({"app": {"name": "a"}, "functions": {"f": {"source": "f.py"}}})
    assert spec.functions["f"].sidecar is None


def test_app_name_is_required() -> None:
    with pytest.raises(AppFileError, match=r"\[app\] is missing"):
        parse({})


plain = st.recursive(
    st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(min_size=1, max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(value=plain)
def test_toml_values_read_back_as_written(value: Any) -> None:
    assert tomllib.loads(f"v = {toml_value(value)}")["v"] == value


@given(env=st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=3))
def test_sidecars_read_back_as_their_settings(env: dict[str, str]) -> None:
    settings = {"handler": "main", "timeout": 2.5, "environment": env}
    assert tomllib.loads(sidecar_text(settings)) == {k: v for k, v in settings.items() if v != {}}


# -- plan and apply --------------------------------------------------------------------------------


def test_dry_run_prints_the_plan_and_writes_nothing(cli: Cli, project: Path) -> None:
    ran = cli.ok("apply", str(project / "thingcore-app.toml"), "--dry-run")
    assert ran.stdout.splitlines() == [
        "+ queue hot",
        "+ bucket readings",
        "+ topic alerts",
        "+ subscription alerts -> audit: raw",
        "+ subscription alerts -> pager",
        "+ function notify",
        "+ rule hot_readings",
        "Plan: 7 to create, 0 to change, 0 to delete (0 unchanged); dry run: nothing was written",
    ]
    made = {p.name for p in cli.data_dir.iterdir()}
    assert made <= {"thingcore.db", "thingcore.db-wal", "thingcore.db-shm"}  # the registry only
    assert cli.json("rules", "list") == {"rules": []}


def test_apply_makes_everything_and_a_second_apply_changes_nothing(cli: Cli, project: Path) -> None:
    plan = apply(cli, project)
    assert plan["applied"] is True and plan["app"] == "greenhouse"
    assert plan["counts"]["create"] == 7
    data = cli.data_dir
    assert (data / "functions" / "notify.py").read_text() == HANDLER
    sidecar = tomllib.loads((data / "functions" / "notify.toml").read_text())
    assert sidecar["events"] == [{"queue": "hot", "batch_size": 10}, {"schedule": "rate(1 hour)"}]
    assert (data / "buckets" / "readings").is_dir()
    [rule] = cli.json("rules", "list")["rules"]
    assert rule["ruleName"] == "hot_readings"
    queues, topics = stores(data)
    with queues, topics:
        assert [q.name for q in queues.queues()] == ["hot"]
        [alerts] = topics.topics()
        assert [(s.queue, s.raw) for s in alerts.subscriptions] == [
            ("audit", True),
            ("pager", False),
        ]
    # Also the function as the runner reads it.
    [function] = cli.json("functions", "ls")["functions"]
    assert function["timeout"] == 5.0 and function["environment"] == {"LEVEL": "high"}

    again = apply(cli, project)
    assert changes(again) == [] and again["applied"] is False
    assert cli.ok("apply", str(project / "thingcore-app.toml")).stdout.strip() == (
        "No changes: the data directory matches app greenhouse."
    )
    state = AppState.from_dict(json.loads((data / "app-state.json").read_text()))
    assert state.app == "greenhouse" and state.functions == {"notify"}


def test_changes_show_what_differs(cli: Cli, project: Path) -> None:
    apply(cli, project)
    edit(project, "temp > 50", "temp > 60")
    edit(project, "batch_size = 10", "batch_size = 20")
    edit(project, '{ queue = "audit", raw = true }', '{ queue = "audit", raw = false }')
    (project / "functions" / "notify.py").write_text(HANDLER + "# v2\n")
    ran = cli.ok("apply", str(project / "thingcore-app.toml"))
    assert ran.stdout.splitlines()[:3] == [
        "~ subscription alerts -> audit (raw)",
        "~ function notify (code, settings)",
        "~ rule hot_readings (sql)",
    ]
    assert "Applied app greenhouse: 0 created, 3 changed, 0 deleted" in ran.stdout
    [rule] = cli.json("rules", "list")["rules"]
    assert "temp > 60" in cli.json("rules", "show", "hot_readings")["rule"]["sql"], rule
    assert (cli.data_dir / "functions" / "notify.py").read_text().endswith("# v2\n")
    assert changes(apply(cli, project)) == []


def test_deleting_from_the_file_deletes_only_what_the_app_made(cli: Cli, project: Path) -> None:
    # Made by hand before: a rule, a function, a queue with a message, a subscription.
    rules_dir = cli.data_dir.parent / "hand-rules"
    rules_dir.mkdir()
    (rules_dir / "by_hand.json").write_text(json.dumps({"sql": "SELECT * FROM 'x'"}))
    cli.ok("rules", "apply", str(rules_dir))
    functions = cli.data_dir / "functions"
    functions.mkdir(parents=True, exist_ok=True)
    (functions / "mine.py").write_text(HANDLER)
    apply(cli, project)
    cli.ok("queues", "send", "hot", "one")
    cli.ok("topics", "subscribe", "alerts", "ops")
    app = project / "thingcore-app.toml"
    app.write_text('[app]\nname = "greenhouse"\n')
    plan = apply(cli, project, "--dry-run")
    assert changes(plan) == [
        "kept queue hot",
        "kept bucket readings",
        "delete rule hot_readings",
        "delete function notify",
        "delete topic alerts",
    ]
    kept = {c["name"]: c["note"] for c in plan["changes"] if c["action"] == "kept"}
    assert kept["hot"] == "no longer in the app file; kept with its 1 messages (--prune deletes it)"
    apply(cli, project)
    assert [r["ruleName"] for r in cli.json("rules", "list")["rules"]] == ["by_hand"]
    assert (functions / "mine.py").exists() and not (functions / "notify.py").exists()
    assert not (functions / "notify.toml").exists()
    assert cli.json("topics", "ls") == []
    assert [q["name"] for q in cli.json("queues", "ls")] == ["hot"]  # kept, with its message

    # --prune deletes the kept ones, saying the message goes too.
    pruned = apply(cli, project, "--prune")
    assert changes(pruned) == ["delete bucket readings", "delete queue hot"]
    notes = {c["name"]: c.get("note", "") for c in pruned["changes"]}
    assert notes["hot"] == "with its 1 messages"
    assert cli.json("queues", "ls") == []
    assert not (cli.data_dir / "buckets" / "readings").exists()
    assert changes(apply(cli, project, "--prune")) == []


def test_what_was_not_made_by_the_app_needs_force(cli: Cli, project: Path) -> None:
    functions = cli.data_dir / "functions"
    functions.mkdir(parents=True)
    (functions / "notify.py").write_text("def handler(event, context):\n    return 'mine'\n")
    rules_dir = cli.data_dir.parent / "hand-rules"
    rules_dir.mkdir()
    (rules_dir / "hot_readings.json").write_text(json.dumps({"sql": "SELECT * FROM 'x'"}))
    cli.ok("rules", "apply", str(rules_dir))

    ran = cli.run("apply", str(project / "thingcore-app.toml"))
    assert ran.code == 1
    assert "! function notify (code, settings): exists and was not made by this app: " in (
        ran.stdout
    )
    assert "! rule hot_readings (actions, awsIotSqlVersion, sql)" in ran.stdout
    assert ran.stderr.startswith("error: 2 change(s) blocked (marked !)")
    assert "return 'mine'" in (functions / "notify.py").read_text()  # nothing applied
    assert not (cli.data_dir / "app-state.json").exists()

    plan = apply(cli, project, "--force")
    assert {"change function notify", "change rule hot_readings"} <= set(changes(plan))
    assert (functions / "notify.py").read_text() == HANDLER
    # Taken over: now the app's, so removing it from the file deletes it.
    edit(project, "[rules.hot_readings]", "[rules.hot_readings_v2]")
    assert "delete rule hot_readings" in changes(apply(cli, project))


def test_identical_resources_are_taken_as_the_apps(cli: Cli, project: Path) -> None:
    apply(cli, project)
    (cli.data_dir / "app-state.json").unlink()  # the state lost
    plan = apply(cli, project)
    assert changes(plan) == []
    state = AppState.from_dict(json.loads((cli.data_dir / "app-state.json").read_text()))
    assert state.rules == {"hot_readings"} and state.functions == {"notify"}


def test_another_apps_data_directory_needs_force(cli: Cli, project: Path) -> None:
    apply(cli, project)
    edit(project, 'name = "greenhouse"', 'name = "barn"')
    error = cli.fails("apply", str(project / "thingcore-app.toml"))
    assert "holds app greenhouse" in error and "--force" in error
    assert apply(cli, project, "--force")["app"] == "barn"


def test_a_broken_file_applies_nothing(cli: Cli, project: Path) -> None:
    edit(project, "timeout = 5.0", "timeout = -5")
    edit(project, "[queues.hot]", "[queues.hot]\nsize = 3")
    ran = cli.run("apply", str(project / "thingcore-app.toml"))
    assert ran.code == 1
    assert "has 2 problems; nothing was applied" in ran.stderr
    assert "functions.notify.timeout must be seconds greater than 0" in ran.stderr
    assert "queues.hot.size: unknown key" in ran.stderr
    assert not (cli.data_dir / "functions").exists()


def test_missing_or_invalid_files_are_one_clear_error(cli: Cli, tmp_path: Path) -> None:
    error = cli.fails("apply")
    assert "thingcore-app.toml does not exist" in error
    bad = tmp_path / "bad.toml"
    bad.write_text("[app\n")
    assert "not valid TOML" in cli.run("apply", str(bad)).stderr
