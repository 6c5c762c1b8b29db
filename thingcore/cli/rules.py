"""``thingcore rules``: routing rules in AWS IoT's shape, kept as files and applied like code.

A folder of ``*.json`` files (one rule each: the file name is the rule name and the content
AWS's ``TopicRulePayload``, or the ``{"ruleName": ..., "topicRulePayload": ...}`` skeleton of
``aws iot create-topic-rule``) is applied with ``thingcore rules apply DIR``: idempotent, it
reports what it created, changed and deleted. A running server picks changes up within a
second.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from rules.actions.republish import target_topic
from rules.definition import RuleDefinition, parse_definition
from rules.engine import output_payload
from rules.errors import RuleError
from rules.sql.compiler import compile_rule
from rules.sql.context import EvalContext
from rules.store import RuleStore, StoredRule
from thingcore.cli.common import (
    DataDir,
    Json,
    iso,
    key_values,
    print_json,
    read_input,
    registry_for,
    settings_for,
    stdout_console,
    subtyper,
)
from thingcore.errors import ThingcoreError

app = subtyper(
    "Rules: AWS IoT SQL that routes device messages to actions.\n\n"
    "Keep rules as files in your project and apply the folder: "
    "`thingcore rules apply rules/`. "
    "Try one on a message without performing its actions: "
    "`thingcore rules test hot_readings --topic sensors/kitchen/telemetry "
    "--payload '{\"temp\": 61}'`."
)

RuleName = Annotated[str, typer.Argument(help="The rule's name.", show_default=False)]


@contextmanager
def open_rules(data_dir: Path | None) -> Iterator[RuleStore]:
    with registry_for(settings_for(data_dir)) as registry:
        yield RuleStore(registry.db)


# -- reading rule files ----------------------------------------------------------------------


def read_rule_file(path: Path) -> RuleDefinition:
    """One rule file: AWS's payload named by the file, or the CLI skeleton with its name."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RuleError(f"{path}: cannot read it: {exc.strerror}") from None
    except ValueError as exc:
        raise RuleError(f"{path}: not valid JSON: {exc}") from None
    if isinstance(raw, dict) and "topicRulePayload" in raw:
        name = raw.get("ruleName", path.stem)
        payload = raw["topicRulePayload"]
    else:
        name, payload = path.stem, raw
    if not isinstance(name, str):
        raise RuleError(f"{path}: ruleName must be a string")
    try:
        return parse_definition(name, payload)
    except ThingcoreError as exc:
        raise RuleError(f"{path}: {exc}") from None


def read_folder(folder: Path) -> list[RuleDefinition]:
    """Every ``*.json`` rule of ``folder``; all problems are reported together."""
    if not folder.is_dir():
        raise RuleError(f"{folder} is not a folder of rule files")
    definitions: list[RuleDefinition] = []
    problems: list[str] = []
    for path in sorted(folder.glob("*.json")):
        try:
            definitions.append(read_rule_file(path))
        except RuleError as exc:
            problems.append(str(exc))
    if problems:
        raise RuleError(
            f"{len(problems)} of the rule files cannot be applied; nothing was changed:\n"
            + "\n".join(problems)
        )
    return definitions


# -- renderers ---------------------------------------------------------------------------------


def rule_summary(stored: StoredRule) -> dict[str, Any]:
    payload = stored.payload
    try:
        source = compile_rule(payload["sql"], payload.get("awsIotSqlVersion")).topic_filter
    except ThingcoreError:
        source = None
    return {
        "ruleName": stored.name,
        "from": source,
        "ruleDisabled": bool(payload.get("ruleDisabled", False)),
        "actions": [next(iter(a)) for a in payload.get("actions", [])],
        "managed": stored.managed,
        "updatedAt": stored.updated_at,
    }


def rules_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(show_edge=False)
    for column in ("Rule", "FROM", "Enabled", "Actions", "From files", "Updated"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["ruleName"],
            row["from"] or "(Basic Ingest only)",
            "no" if row["ruleDisabled"] else "yes",
            ", ".join(row["actions"]) or "-",
            "yes" if row["managed"] else "no",
            iso(row["updatedAt"]),
        )
    return table


def rule_view(stored: StoredRule, metrics: dict[str, Any]) -> RenderableType:
    payload = stored.payload
    mean = metrics["meanEvalMicros"]
    rows: list[tuple[str, RenderableType]] = [
        ("Rule", stored.name),
        ("SQL", Text(payload["sql"])),
        ("SQL version", payload.get("awsIotSqlVersion") or "2015-10-08 (AWS's default)"),
        ("Enabled", "no" if payload.get("ruleDisabled") else "yes"),
        ("Description", payload.get("description") or "-"),
        ("Actions", Text(json.dumps(payload.get("actions", []), indent=1))),
        (
            "Error action",
            Text(json.dumps(payload["errorAction"])) if "errorAction" in payload else "-",
        ),
        ("Matched", str(metrics["matched"])),
        ("Passed WHERE", str(metrics["passed"])),
        ("Failed evaluation", str(metrics["failed"])),
        ("Outputs", str(metrics["outputs"])),
        ("Dropped (queue full)", str(metrics["dropped"])),
        ("Mean evaluation", "-" if mean is None else f"{mean} µs"),
    ]
    return key_values(rows)


# -- commands ----------------------------------------------------------------------------------


@app.command("apply")
def apply(
    folder: Annotated[Path, typer.Argument(help="A folder of *.json rule files.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the files and say what would change.")
    ] = False,
    data_dir: DataDir = None,
    json_output: Json = False,
) -> None:
    """Make the rules of FOLDER the rules applied from files: create and replace what it
    holds, delete rules applied earlier whose file is gone. Rules made otherwise are kept.
    Idempotent: applying the same folder twice changes nothing. Every file is checked
    first (its SQL compiled); if any is wrong, nothing is applied."""
    definitions = read_folder(folder)
    with open_rules(data_dir) as store:
        if dry_run:
            current = {r.name: r for r in store.all()}
            report: dict[str, list[str]] = {
                "created": [],
                "changed": [],
                "unchanged": [],
                "deleted": [],
            }
            for d in definitions:
                old = current.get(d.name)
                if old is None:
                    report["created"].append(d.name)
                elif old.payload != d.to_dict() or not old.managed:
                    report["changed"].append(d.name)
                else:
                    report["unchanged"].append(d.name)
            names = {d.name for d in definitions}
            report["deleted"] = [n for n, r in current.items() if r.managed and n not in names]
        else:
            report = store.apply(definitions).as_dict()
    if json_output:
        print_json({**report, "dryRun": dry_run})
        return
    console = stdout_console()
    verb = "would be" if dry_run else ""
    for kind in ("created", "changed", "deleted"):
        for name in report[kind]:
            console.print(f"{kind:>8} {verb} {name}".replace("  ", " "), highlight=False)
    console.print(
        f"{len(report['created'])} created, {len(report['changed'])} changed, "
        f"{len(report['deleted'])} deleted, {len(report['unchanged'])} unchanged"
        + (" (dry run: nothing was written)" if dry_run else ""),
        highlight=False,
    )


@app.command("list")
def list_rules(data_dir: DataDir = None, json_output: Json = False) -> None:
    """List the rules: their FROM filter, whether enabled, their actions."""
    with open_rules(data_dir) as store:
        rows = [rule_summary(r) for r in store.all()]
    if json_output:
        print_json({"rules": rows})
        return
    console = stdout_console()
    if not rows:
        console.print("No rules yet: `thingcore rules apply FOLDER` creates them from files.")
        return
    console.print(rules_table(rows))


@app.command("show")
def show(name: RuleName, data_dir: DataDir = None, json_output: Json = False) -> None:
    """Show a rule's definition and its counters (matched, passed WHERE, failed, outputs,
    mean evaluation time), as running servers last wrote them (every few seconds)."""
    with open_rules(data_dir) as store:
        stored = store.get(name)
        metrics = store.metrics(name)
    if json_output:
        print_json({"ruleName": name, "rule": stored.payload, "metrics": metrics})
        return
    stdout_console().print(rule_view(stored, metrics))


@app.command("delete")
def delete(name: RuleName, data_dir: DataDir = None, json_output: Json = False) -> None:
    """Delete a rule (a later `apply` of a folder that still has its file creates it again)."""
    with open_rules(data_dir) as store:
        store.delete(name)
    if json_output:
        print_json({"ruleName": name, "deleted": True})
    else:
        stdout_console().print(f"Deleted rule {name}", highlight=False)


def _set_disabled(name: str, disabled: bool, data_dir: Path | None, json_output: bool) -> None:
    with open_rules(data_dir) as store:
        store.set_disabled(name, disabled)
    if json_output:
        print_json({"ruleName": name, "ruleDisabled": disabled})
    else:
        state = "disabled" if disabled else "enabled"
        stdout_console().print(f"Rule {name} is {state}", highlight=False)


@app.command("enable")
def enable(name: RuleName, data_dir: DataDir = None, json_output: Json = False) -> None:
    """Enable a rule (AWS's EnableTopicRule)."""
    _set_disabled(name, False, data_dir, json_output)


@app.command("disable")
def disable(name: RuleName, data_dir: DataDir = None, json_output: Json = False) -> None:
    """Disable a rule: it stays stored but matches nothing (AWS's DisableTopicRule)."""
    _set_disabled(name, True, data_dir, json_output)


@app.command("test")
def test(
    rule: Annotated[
        str, typer.Argument(help="A rule's name, or the path of a rule file.", show_default=False)
    ],
    topic: Annotated[str, typer.Option("--topic", "-t", help="The message's topic.")],
    payload: Annotated[
        str,
        typer.Option(
            "--payload", "-p", help="The payload: a file, - for standard input, or JSON text."
        ),
    ],
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="The publisher's client id.")
    ] = None,
    data_dir: DataDir = None,
    json_output: Json = False,
) -> None:
    """Evaluate a rule on one message and print what each action would get, without
    performing any action. Nothing is written; no server is needed."""
    definition = _definition_for(rule, data_dir)
    compiled = definition.compiled
    body = _payload_bytes(payload)
    ctx = EvalContext(topic=topic, payload=body, client_id=client_id, rule_name=definition.name)
    if compiled.topic_filter is not None:
        from broker.topics import matches

        if not matches(compiled.topic_filter, topic):
            raise RuleError(
                f"topic {topic!r} does not match the rule's FROM {compiled.topic_filter!r}: "
                "the rule would not see this message"
            )
    output = compiled.evaluate(ctx)
    results: list[dict[str, Any]] = []
    if output is not None:
        for action in definition.actions:
            entry: dict[str, Any] = {"action": action.kind}
            if action.kind == "republish":
                entry["topic"] = target_topic(action.params.topic, ctx, compiled)
                entry["qos"] = action.params.qos
            entry["payload"] = _shown(output)
            results.append(entry)
    if json_output:
        print_json(
            {
                "ruleName": definition.name,
                "wherePassed": output is not None,
                "output": None if output is None else _shown(output),
                "actions": results,
            }
        )
        return
    console = stdout_console()
    if output is None:
        console.print("WHERE did not pass: the rule produces nothing for this message.")
        return
    parts: list[RenderableType] = [Text("Output: ") + Text(json.dumps(_shown(output)))]
    for entry in results:
        target = f" to {entry['topic']} (QoS {entry['qos']})" if "topic" in entry else ""
        parts.append(Text(f"{entry['action']}{target}: {json.dumps(entry['payload'])}"))
    if not results:
        parts.append(Text("(the rule has no actions)"))
    console.print(Group(*parts))


def _definition_for(rule: str, data_dir: Path | None) -> RuleDefinition:
    path = Path(rule)
    if path.suffix == ".json" or path.is_file():
        return read_rule_file(path)
    with open_rules(data_dir) as store:
        return store.get(rule).definition()


def _payload_bytes(source: str) -> bytes:
    stripped = source.strip()
    if stripped[:1] in ("{", "[", '"') or stripped in ("true", "false", "null"):
        return source.encode("utf-8")
    return read_input(source, "payload").encode("utf-8")


def _shown(output: Any) -> Any:
    """An output for printing: bytes (a binary ``SELECT *``) as base64 under a key."""
    if isinstance(output, bytes | bytearray):
        import base64

        return {"base64": base64.b64encode(output_payload(output)).decode()}
    return output
