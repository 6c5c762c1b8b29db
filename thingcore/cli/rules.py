"""``thingcore rules``: routing rules in AWS IoT's shape, kept as files and applied like code.

A folder of ``*.json`` files (one rule each: the file name is the rule name and the content
AWS's ``TopicRulePayload``, or the ``{"ruleName": ..., "topicRulePayload": ...}`` skeleton of
``aws iot create-topic-rule``) is applied with ``thingcore rules apply DIR``: idempotent, it
reports what it created, changed and deleted. A running server picks changes up within a
second.

Beyond AWS (issue 7): ``rules test --cases DIR`` runs a folder of test cases
(``rules.testing``) and ``rules replay FILE`` runs rules over traffic recorded by
``thingcore capture`` (``rules.replay``); both only evaluate, no action is performed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from rules.definition import RuleDefinition, missing_extras, parse_definition
from rules.errors import RuleError
from rules.replay import Replayer, ReplayReport, parse_capture
from rules.sql.compiler import compile_rule
from rules.sql.context import EvalContext
from rules.store import RuleStore, StoredRule
from rules.testing import (
    INGEST_PREFIX,
    CaseReport,
    CaseResult,
    RuleSource,
    load_cases,
    planned_actions,
    run_cases,
    seen_topic,
    shown,
)
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
    "--payload '{\"temp\": 61}'`; run a folder of test cases: "
    "`thingcore rules test --cases tests/rules`; replay recorded traffic "
    "(`thingcore capture`): `thingcore rules replay traffic.jsonl`."
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


def rule_view(
    stored: StoredRule, metrics: dict[str, Any], delivery: dict[str, Any] | None = None
) -> RenderableType:
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
    if delivery is not None:
        latency = delivery["meanLatencyMs"]
        rows += [
            ("Delivered", str(delivery["delivered"])),
            ("Retried", str(delivery["retried"])),
            ("Failed for good", str(delivery["failed"])),
            ("To the error action", str(delivery["errorActions"])),
            ("Dead-lettered", f"{delivery['deadLettered']} (queue {stored.name}-dlq)"),
            ("Refused (target full)", str(delivery["refused"])),
            ("Mean delivery latency", "-" if latency is None else f"{latency} ms"),
        ]
    return key_values(rows)


_STATUS_STYLE = {"pass": ("PASS ", "green"), "fail": ("FAIL ", "red"), "error": ("ERROR", "red")}


def case_view(result: CaseResult) -> RenderableType:
    """One case: a PASS/FAIL/ERROR line; under a failure, why and the diff."""
    label, style = _STATUS_STYLE[result.status]
    line = Text.assemble((label, f"bold {style}"), " ", result.case.name)
    line.append(f"  {result.case.file}", style="dim")
    if result.status == "pass":
        return line
    parts: list[RenderableType] = [line]
    if result.message:
        parts.append(Text(f"      {result.message}"))
    for diff_line in result.diff:
        diff_style = ""
        if diff_line.startswith(("---", "+++")):
            diff_style = "bold"
        elif diff_line.startswith("-"):
            diff_style = "red"
        elif diff_line.startswith("+"):
            diff_style = "green"
        elif diff_line.startswith("@@"):
            diff_style = "cyan"
        parts.append(Text(f"      {diff_line}", style=diff_style))
    return Group(*parts)


def cases_summary(report: CaseReport) -> Text:
    counts = [f"{report.count('pass')} passed"]
    if report.count("fail"):
        counts.append(f"{report.count('fail')} failed")
    if report.count("error"):
        errors = report.count("error")
        counts.append(f"{errors} error{'s' if errors > 1 else ''}")
    text = f"{', '.join(counts)} in {report.seconds:.2f} s"
    return Text(text, style="bold green" if report.ok else "bold red")


def cases_view(report: CaseReport) -> RenderableType:
    return Group(*(case_view(r) for r in report.results), cases_summary(report))


def _clock(t: int) -> str:
    return datetime.fromtimestamp(t / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def replay_table(report: ReplayReport) -> Table:
    table = Table(show_edge=False)
    table.add_column("Rule", no_wrap=True)
    table.add_column("FROM", overflow="fold", min_width=20)
    for column in ("Matched", "Passed WHERE", "Failed", "Outputs", "Mean eval"):
        table.add_column(column, justify="right")
    for rule in report.rules:
        source = rule.definition.compiled.topic_filter or "(Basic Ingest only)"
        if rule.definition.disabled:
            source += " (disabled: skipped)"
        mean = rule.mean_eval_micros
        table.add_row(
            rule.name,
            source,
            f"{rule.matched:,}",
            f"{rule.passed:,}",
            Text(f"{rule.failed:,}", style="red" if rule.failed else ""),
            f"{rule.outputs:,}",
            "-" if mean is None else f"{mean} µs",
        )
    return table


def replay_view(report: ReplayReport, source: str) -> RenderableType:
    """The replay's metrics per rule, then each rule's first outputs and failures."""
    span = ""
    if report.first_t is not None and report.last_t is not None:
        span = f" ({_clock(report.first_t)} to {_clock(report.last_t)})"
    parts: list[RenderableType] = [
        Text(
            f"Replayed {report.messages:,} messages from {source}{span}; "
            f"{report.unmatched:,} reached no rule."
        ),
        replay_table(report),
    ]
    for rule in report.rules:
        if rule.first_outputs:
            count = len(rule.first_outputs)
            title = f"{count} output{'s' if count > 1 else ''}"
            if rule.outputs > count:
                title = f"first {count} of {rule.outputs:,} outputs"
            parts.append(Text(f"\n{rule.name}: {title}", style="bold"))
            for entry in rule.first_outputs:
                parts.append(
                    Text(f"  {_clock(entry['t'])} {entry['topic']}: ")
                    + Text(json.dumps(entry["output"], ensure_ascii=False))
                )
                for action in entry["actions"]:
                    if "error" in action:
                        parts.append(Text(f"    action failed: {action['error']}", style="red"))
                        continue
                    target = (
                        f" to {action['topic']} (QoS {action['qos']})" if "topic" in action else ""
                    )
                    parts.append(Text(f"    {action['action']}{target}", style="dim"))
        if rule.first_errors:
            parts.append(
                Text(f"\n{rule.name}: failed {rule.failed:,} times, first:", style="bold red")
            )
            for entry in rule.first_errors:
                parts.append(Text(f"  {_clock(entry['t'])} {entry['topic']}: {entry['error']}"))
    for name, why in sorted(report.broken.items()):
        parts.append(Text(f"rule {name} cannot run (skipped): {why}", style="red"))
    return Group(*parts)


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
    # An action whose package is missing would never deliver: refuse it now, with the command
    # that installs it (an s3 action needs boto3 only where it goes to AWS).
    rules_settings = settings_for(data_dir).rules
    missing = [
        f"rule {d.name}: {m}" for d in definitions for m in missing_extras(d, rules_settings)
    ]
    if missing:
        raise RuleError("nothing was changed:\n" + "\n".join(missing))
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
    mean evaluation time; delivered, retried, failed, dead-lettered, delivery latency), as
    running servers last wrote them (every few seconds)."""
    with open_rules(data_dir) as store:
        stored = store.get(name)
        metrics = store.metrics(name)
        found = store.delivery_metrics("rule", name)
    delivery = found[0] if found else None
    if json_output:
        print_json(
            {"ruleName": name, "rule": stored.payload, "metrics": metrics, "delivery": delivery}
        )
        return
    stdout_console().print(rule_view(stored, metrics, delivery))


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
        str | None,
        typer.Argument(
            help="A rule's name, or the path of a rule file (not with --cases).",
            show_default=False,
        ),
    ] = None,
    topic: Annotated[
        str | None, typer.Option("--topic", "-t", help="The message's topic.", show_default=False)
    ] = None,
    payload: Annotated[
        str | None,
        typer.Option(
            "--payload",
            "-p",
            help="The payload: a file, - for standard input, or JSON text.",
            show_default=False,
        ),
    ] = None,
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="The publisher's client id.")
    ] = None,
    cases: Annotated[
        Path | None,
        typer.Option(
            "--cases",
            help="A folder of test cases (*.json; or one case file): run them all.",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDir = None,
    json_output: Json = False,
) -> None:
    """Evaluate a rule on one message and print what each action would get, or run a folder
    of test cases (`--cases DIR`). No action is performed, nothing is written, no server is
    needed.

    With `--cases DIR`, run a folder of test cases instead, like a test runner: one PASS or
    FAIL line per case (with a diff of the expected and actual output), a summary, exit code
    1 if any case fails. A case file holds a case or a list of them:
    `{"name": "...", "rule": "hot_readings" or "../hot_readings.json", "topic": "...",
    "payload": {...} or {"base64": "..."}, "clientId": "...", "expect": {...} or null,
    "expectActions": [{"action": "republish", "topic": "..."}], "ignore": ["at"]}`
    (`expect: null`: no output; `ignore`: output keys not compared, for timestamp() and
    newuuid()). Rule files are found relative to the case file."""
    if cases is not None:
        if any(v is not None for v in (rule, topic, payload, client_id)):
            raise typer.BadParameter(
                "it runs the folder's cases: give no RULE, --topic, --payload or --client-id",
                param_hint="'--cases'",
            )
        _run_cases(cases, data_dir, json_output)
        return
    if rule is None:
        raise typer.BadParameter("missing: give a rule, or --cases DIR", param_hint="'RULE'")
    if topic is None:
        raise typer.BadParameter("missing", param_hint="'--topic' / '-t'")
    if payload is None:
        raise typer.BadParameter("missing", param_hint="'--payload' / '-p'")
    definition = _definition_for(rule, data_dir)
    compiled = definition.compiled
    body = _payload_bytes(payload)
    if compiled.topic_filter is not None or topic.startswith(INGEST_PREFIX):
        topic = seen_topic(definition, topic)
    ctx = EvalContext(topic=topic, payload=body, client_id=client_id, rule_name=definition.name)
    output = compiled.evaluate(ctx)
    results = planned_actions(definition, ctx, output)
    if json_output:
        print_json(
            {
                "ruleName": definition.name,
                "wherePassed": output is not None,
                "output": None if output is None else shown(output),
                "actions": results,
            }
        )
        return
    console = stdout_console()
    if output is None:
        console.print("WHERE did not pass: the rule produces nothing for this message.")
        return
    parts: list[RenderableType] = [Text("Output: ") + Text(json.dumps(shown(output)))]
    for entry in results:
        target = f" to {entry['topic']} (QoS {entry['qos']})" if "topic" in entry else ""
        parts.append(Text(f"{entry['action']}{target}: {json.dumps(entry['payload'])}"))
    if not results:
        parts.append(Text("(the rule has no actions)"))
    console.print(Group(*parts))


def _run_cases(folder: Path, data_dir: Path | None, json_output: bool) -> None:
    loaded = load_cases(folder)
    with ExitStack() as stack:
        lookup: Callable[[str], RuleDefinition] | None = None
        if any(case.rule_file is None for case in loaded):
            # Only cases naming a rule in the database need it; rule files need none.
            store = stack.enter_context(open_rules(data_dir))

            def lookup(name: str) -> RuleDefinition:
                return store.get(name).definition()

        report = run_cases(loaded, RuleSource(read_rule_file, lookup))
    if json_output:
        print_json(report.as_dict())
    else:
        stdout_console().print(cases_view(report))
    if not report.ok:
        raise typer.Exit(1)


REPLAY_PROGRESS_BYTES = 1 << 20
"""Capture files at least this big get a progress bar (on a terminal)."""


@app.command("replay")
def replay(
    capture: Annotated[
        Path,
        typer.Argument(
            help="A capture file: JSON Lines, as `thingcore capture` writes.", show_default=False
        ),
    ],
    rules_from: Annotated[
        Path | None,
        typer.Option(
            "--rules",
            help="A folder of rule files (or one rule file) instead of the database's rules.",
            show_default=False,
        ),
    ] = None,
    outputs: Annotated[
        int, typer.Option("--outputs", "-n", min=0, help="Outputs and failures shown per rule.")
    ] = 3,
    data_dir: DataDir = None,
    json_output: Json = False,
) -> None:
    """Run the rules over recorded traffic as the server would, and show what they did.

    Messages reach rules as on the server (FROM filters, Basic Ingest topics to their rule
    only, disabled rules skipped; `timestamp()` is when a message was recorded). Shown per
    rule: its first outputs and where its actions would send them, and its counters: matched,
    passed WHERE, failed, outputs, mean evaluation time. No action is performed. Record
    traffic with `thingcore capture FILE --topic '#'`."""
    settings = settings_for(data_dir)
    definitions, broken = _replay_rules(rules_from, data_dir)
    replayer = Replayer(
        definitions, keep=outputs, account_id=settings.registry.account_id, broken=broken
    )
    console = stdout_console()
    with _capture_lines(capture, console, progress=not json_output) as lines:
        report = replayer.run(parse_capture(lines, str(capture)))
    if json_output:
        print_json({"file": str(capture), **report.as_dict()})
        return
    console.print(replay_view(report, str(capture)))


def _replay_rules(
    source: Path | None, data_dir: Path | None
) -> tuple[list[RuleDefinition], dict[str, str]]:
    if source is not None:
        definitions = read_folder(source) if source.is_dir() else [read_rule_file(source)]
        if not definitions:
            raise RuleError(f"{source} holds no rule files (*.json)")
        return definitions, {}
    with open_rules(data_dir) as store:
        stored = store.all()
    definitions = []
    broken: dict[str, str] = {}
    for item in stored:
        try:
            definitions.append(item.definition())
        except ThingcoreError as exc:
            broken[item.name] = str(exc)
    if not stored:
        raise RuleError(
            "there are no rules to replay: apply some (`thingcore rules apply DIR`) "
            "or give --rules DIR"
        )
    return definitions, broken


@contextmanager
def _capture_lines(path: Path, console: Console, *, progress: bool) -> Iterator[Iterable[str]]:
    """The lines of a capture file, with a progress bar when it is big and output is a
    terminal; read errors as one ``RuleError``."""
    try:
        size = path.stat().st_size
        if progress and console.is_terminal and size >= REPLAY_PROGRESS_BYTES:
            import rich.progress

            opened: Any = rich.progress.open(
                path,
                "rt",
                encoding="utf-8",
                description="Replaying",
                console=console,
                transient=True,
            )
        else:
            opened = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise RuleError(f"cannot read the capture: {path} does not exist") from None
    except IsADirectoryError:
        raise RuleError(f"cannot read the capture: {path} is a directory") from None
    except OSError as exc:
        raise RuleError(f"cannot read the capture {path}: {exc.strerror or exc}") from None
    try:
        with opened as lines:
            yield lines
    except UnicodeDecodeError:
        raise RuleError(f"cannot read the capture {path}: it is not UTF-8 text") from None
    except OSError as exc:
        raise RuleError(f"cannot read the capture {path}: {exc.strerror or exc}") from None


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
