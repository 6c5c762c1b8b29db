"""Turning measurements into the markdown table and the JSON file (pure rendering, then write).

The first broker is the baseline and the second the candidate: ratios are candidate/baseline
in the metric's own unit, whichever direction is better, and each target is judged on them.
A figure marked "≥" is a lower bound (the load generators were saturated, or the ramp's top
rate passed); ratios and verdicts take that into account and say "inconclusive" rather than
guess. A workload with brokers of its own (policy-throughput: thingcore with policies off,
then on) gets a table of its own under the main one, its first broker the baseline.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from bench import mqttwire, rulesload
from bench.measurement import Measurement
from bench.workloads import WORKLOADS, Options

WORKLOAD_OF = {metric: w.name for w in WORKLOADS.values() for metric in w.metrics}


class Better(Enum):
    HIGHER = "higher"
    LOWER = "lower"


class TargetKind(Enum):
    RATIO_AT_LEAST = "ratio_at_least"  # candidate/baseline >= bound
    RATIO_AT_MOST = "ratio_at_most"  # candidate/baseline <= bound
    AT_MOST = "at_most"  # candidate value <= bound
    ALL = "all"  # candidate value == the number attempted


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    bound: float = 0.0
    unit: str = ""
    attempted: str = "idle_connections"  # ALL: the Options field that says how many were tried
    floor: float = 0.0  # RATIO_AT_LEAST: the candidate's own figure must also reach this

    def describe(self, opts: Options) -> str:
        if self.kind is TargetKind.RATIO_AT_LEAST:
            if self.floor:
                return f"ratio ≥ {self.bound:.1f} and ≥ {self.floor:,g} {self.unit}".rstrip()
            return f"ratio ≥ {self.bound:.1f}"
        if self.kind is TargetKind.RATIO_AT_MOST:
            return f"ratio ≤ {self.bound:.1f}"
        if self.kind is TargetKind.AT_MOST:
            return f"≤ {self.bound:g} {self.unit}".strip()
        count = self.count(opts)
        return f"{count:,}/{count:,}"

    def count(self, opts: Options) -> int:
        value: int = getattr(opts, self.attempted)
        return value


@dataclass(frozen=True)
class Metric:
    label: str
    better: Better
    fmt: Callable[[float], str]
    target: Target | None = None
    cpu_row: bool = True  # listed in the CPU table (not for figures read off another row's run)


def _rate(v: float) -> str:
    return f"{v:,.0f} msg/s"


def _ms(v: float) -> str:
    return f"{v:.3f} ms"


def _kb(v: float) -> str:
    return f"{v:.2f} KB"


def _count(v: float) -> str:
    return f"{v:,.0f}"


def _per_s(v: float) -> str:
    return f"{v:,.0f} /s"


def _updates(v: float) -> str:
    return f"{v:,.0f} updates/s"


def _seconds(v: float) -> str:
    return f"{v:.2f} s"


def _micros(v: float) -> str:
    return f"{v:.2f} µs"


AT_LEAST_1 = Target(TargetKind.RATIO_AT_LEAST, 1.0)

METRICS: dict[str, Metric] = {
    "fanin_qos0": Metric("fan-in QoS 0, sustained msg/s", Better.HIGHER, _rate, AT_LEAST_1),
    "fanin_qos1": Metric("fan-in QoS 1, sustained msg/s", Better.HIGHER, _rate, AT_LEAST_1),
    "fanout": Metric("fan-out 50→100, delivered msg/s", Better.HIGHER, _rate, AT_LEAST_1),
    "latency_p50_qos0": Metric(
        "latency p50 @ 1,000 msg/s, QoS 0", Better.LOWER, _ms, cpu_row=False
    ),
    "latency_p99_qos0": Metric(
        "latency p99 @ 1,000 msg/s, QoS 0",
        Better.LOWER,
        _ms,
        Target(TargetKind.RATIO_AT_MOST, 2.0),
    ),
    "latency_p50_qos1": Metric(
        "latency p50 @ 1,000 msg/s, QoS 1", Better.LOWER, _ms, cpu_row=False
    ),
    "latency_p99_qos1": Metric(
        "latency p99 @ 1,000 msg/s, QoS 1",
        Better.LOWER,
        _ms,
        Target(TargetKind.RATIO_AT_MOST, 2.0),
    ),
    "idle_accepted": Metric("idle connections accepted", Better.HIGHER, _count),
    "idle_kb_per_conn": Metric(
        "memory per idle connection (RSS)",
        Better.LOWER,
        _kb,
        Target(TargetKind.AT_MOST, 4.0, "KB"),
        cpu_row=False,
    ),
    "idle_pings": Metric(
        "idle connections answering PINGREQ",
        Better.HIGHER,
        _count,
        Target(TargetKind.ALL),
        cpu_row=False,
    ),
    "connrate": Metric("connect+CONNACK+DISCONNECT cycles/s", Better.HIGHER, _per_s, AT_LEAST_1),
    "mtls_connect": Metric(
        "mTLS handshake+CONNECT+CONNACK cycles/s", Better.HIGHER, _per_s, AT_LEAST_1
    ),
    "mtls_connect_cpu_ms": Metric("broker CPU per mTLS cycle", Better.LOWER, _ms, cpu_row=False),
    "mtls_idle_accepted": Metric("idle mTLS connections accepted", Better.HIGHER, _count),
    "mtls_idle_kb_per_conn": Metric(
        "memory per idle mTLS connection (RSS)",
        Better.LOWER,
        _kb,
        Target(TargetKind.RATIO_AT_MOST, 1.5),
        cpu_row=False,
    ),
    "mtls_idle_pings": Metric(
        "idle mTLS connections answering PINGREQ",
        Better.HIGHER,
        _count,
        Target(TargetKind.ALL, attempted="mtls_idle_connections"),
        cpu_row=False,
    ),
    "policy_fanin_qos0": Metric(
        "fan-in QoS 0, sustained msg/s",
        Better.HIGHER,
        _rate,
        Target(TargetKind.RATIO_AT_LEAST, 0.8),
    ),
    "policy_fanin_qos1": Metric(
        "fan-in QoS 1, sustained msg/s",
        Better.HIGHER,
        _rate,
        Target(TargetKind.RATIO_AT_LEAST, 0.8),
    ),
    "shadow_updates": Metric(
        "durable shadow updates/s, closed loop",
        Better.HIGHER,
        _updates,
        Target(TargetKind.RATIO_AT_LEAST, 10.0, unit="updates/s", floor=5_000),
    ),
    "shadow_cpu_us": Metric(
        "broker CPU per accepted update, closed loop",
        Better.LOWER,
        lambda v: f"{v:,.0f} µs",
        cpu_row=False,
    ),
    "shadow_p50": Metric("update→accepted p50 at a fixed rate", Better.LOWER, _ms, cpu_row=False),
    "shadow_p99": Metric("update→accepted p99 at a fixed rate", Better.LOWER, _ms),
    "rules_fanin_qos0": Metric(
        "fan-in QoS 0, JSON on 500 topics, sustained msg/s",
        Better.HIGHER,
        _rate,
        Target(TargetKind.RATIO_AT_LEAST, 0.7),
    ),
    "rules_fanin_qos1": Metric(
        "fan-in QoS 1, JSON on 500 topics, sustained msg/s",
        Better.HIGHER,
        _rate,
        Target(TargetKind.RATIO_AT_LEAST, 0.7),
    ),
    "rules_install_s": Metric(
        "in process: RulesEngine.install of 10,000 rules (GC paused by it)",
        Better.LOWER,
        _seconds,
        Target(TargetKind.AT_MOST, 2.0, "s"),
        cpu_row=False,
    ),
    "rules_definitions_s": Metric(
        "in process: parse_definition × 10,000, GC paused",
        Better.LOWER,
        _seconds,
        cpu_row=False,
    ),
    "rules_compile_s": Metric(
        "in process: compile_rule × 10,000, GC paused", Better.LOWER, _seconds, cpu_row=False
    ),
    "rules_evals_parse": Metric(
        "in process: typical rule evaluations/s, context + JSON parse each",
        Better.HIGHER,
        _per_s,
        cpu_row=False,
    ),
    "rules_evals_shared": Metric(
        "in process: typical rule evaluations/s, parsed payload shared",
        Better.HIGHER,
        _per_s,
        cpu_row=False,
    ),
    "rules_engine_typical_us": Metric(
        "in process: CPU per message through Broker.publish, typical rule vs none",
        Better.LOWER,
        lambda v: f"+{v:.2f} µs",
        cpu_row=False,
    ),
    "rules_engine_mix_us": Metric(
        "in process: CPU per message through Broker.publish, this workload's rules vs none",
        Better.LOWER,
        lambda v: f"+{v:.2f} µs",
        cpu_row=False,
    ),
}
RAMP_METRICS = (
    "fanin_qos0",
    "fanin_qos1",
    "fanout",
    "policy_fanin_qos0",
    "policy_fanin_qos1",
    "rules_fanin_qos0",
    "rules_fanin_qos1",
)


@dataclass(frozen=True)
class Ratio:
    value: float
    bound: str  # "=", ">=" (true ratio is at least value), "<=" or "?" (unknown)

    def render(self) -> str:
        if self.bound == "?":
            return f"? ({self.value:.2f}x, both bounds)"
        prefix = {"=": "", ">=": "≥ ", "<=": "≤ "}[self.bound]
        return f"{prefix}{self.value:.2f}x"


def ratio(base: Measurement | None, cand: Measurement | None) -> Ratio | None:
    if base is None or cand is None or base.value is None or cand.value is None:
        return None
    if base.value == 0:
        return None
    value = cand.value / base.value
    if cand.lower_bound and base.lower_bound:
        return Ratio(value, "?")
    if cand.lower_bound:
        return Ratio(value, ">=")
    if base.lower_bound:
        return Ratio(value, "<=")
    return Ratio(value, "=")


def verdict(
    metric: Metric, base: Measurement | None, cand: Measurement | None, opts: Options
) -> str:
    target = metric.target
    if target is None:
        return ""
    if cand is None or cand.value is None or cand.error:
        return "missed"
    if target.kind is TargetKind.AT_MOST:
        return "met" if cand.value <= target.bound else "missed"
    if target.kind is TargetKind.ALL:
        return "met" if cand.value >= target.count(opts) else "missed"
    r = ratio(base, cand)
    if r is None:
        return "n/a"
    if target.kind is TargetKind.RATIO_AT_LEAST:
        if r.value >= target.bound:
            outcome = "met" if r.bound in ("=", ">=") else "inconclusive"
        else:
            outcome = "missed" if r.bound in ("=", "<=") else "inconclusive"
        if target.floor and cand.value < target.floor:
            # A lower bound under the floor says nothing about whether the broker reaches it.
            floor = "inconclusive" if cand.lower_bound else "missed"
            outcome = "missed" if "missed" in (outcome, floor) else "inconclusive"
        return outcome
    if r.value <= target.bound:
        return "met" if r.bound in ("=", "<=") else "inconclusive"
    return "missed" if r.bound in ("=", ">=") else "inconclusive"


def cell(metric: Metric, m: Measurement | None) -> str:
    if m is None:
        return "—"
    if m.value is None:
        return m.text or ("error" if m.error else "—")
    text = m.text or metric.fmt(m.value)
    if m.lower_bound:
        text = "≥ " + text
    if m.error:
        text += " (!)"
    return text


def mqtt5_properties() -> str:
    """The properties every MQTT 5 benchmark PUBLISH carries, for the title."""
    users = ", ".join(f"{k}={v}" for k, v in mqttwire.PUBLISH_USER_PROPERTIES)
    return f'Content Type "{mqttwire.PUBLISH_CONTENT_TYPE}", User Properties {users}'


# These use --protocol (the rules_ metrics: ramps, or in process without clients).
V5_CLIENT_METRICS = ("fanin", "fanout", "latency", "policy_fanin", "rules_")


_MATCHING_KINDS = frozenset(g.kind for g in rulesload.filter_groups("t") if g.matches)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.0%}"


@dataclass
class Section:
    title: str  # "" for the main table
    labels: list[str]  # column order: baseline first
    metrics: list[str]


@dataclass(frozen=True)
class Report:
    environment: dict[str, Any]
    options: Options
    mode: str
    command: str
    labels: list[str]  # column order: baseline first
    results: dict[str, list[Measurement]]  # by broker label
    notes: list[str]
    elapsed: float
    results_name: str = ""  # names the files: latest-<name>.md
    pki: dict[str, Any] | None = None  # the mutual-TLS workloads' PKI, if one was made

    def find(self, label: str, metric: str) -> Measurement | None:
        return next((m for m in self.results.get(label, []) if m.metric == metric), None)

    def metrics(self) -> list[str]:
        seen = {m.metric for ms in self.results.values() for m in ms}
        return [k for k in METRICS if k in seen]

    def sections(self) -> list[Section]:
        """The main table (the run's brokers), then one per workload with brokers of its own."""
        main = Section("", self.labels, [])
        out = [main]
        for key in self.metrics():
            workload = WORKLOADS.get(WORKLOAD_OF.get(key, ""))
            if workload is None or not workload.brokers:
                main.metrics.append(key)
                continue
            labels = [label for _, label in workload.brokers]
            section = next((s for s in out[1:] if s.labels == labels), None)
            if section is None:
                section = Section(workload.title or workload.name, labels, [])
                out.append(section)
            section.metrics.append(key)
        return [s for s in out if s.metrics or s is main]

    def all_labels(self) -> list[str]:
        return self.labels + [label for label in self.results if label not in self.labels]

    def markdown(self) -> str:
        env, opts = self.environment, self.options
        base = self.labels[0]
        cand = self.labels[1] if len(self.labels) > 1 else None
        title = "# thingcore broker benchmark"
        if opts.protocol == 5:
            title += f" with MQTT 5 clients (PUBLISH properties: {mqtt5_properties()})"
        lines = [
            title,
            "",
            f"- Date: {env['date']} ({self.mode}, {self.elapsed / 60:.1f} min)",
            f"- Command: `{self.command}`",
            f"- Machine: {env['cpu']}, {env['cores']} cores, {env['memory_gib']} GiB, "
            f"{env['kernel']}",
            f"- Versions: {env['mosquitto']}; {env['python']}; thingcore {env['thingcore']}; "
            f"uvloop {env['uvloop']}"
            + (f"; amqtt {env.get('amqtt', '?')}" if self._has_shadows() else ""),
            f"- Setup: brokers pinned to CPU {opts.broker_cpu}, load generators to CPU "
            f"{opts.load_cpu}; loopback only"
            + (
                f"; {opts.payload_size}-byte payloads; a ramp step "
                f"lasts {opts.step_seconds:g} s and passes with p99 < {opts.p99_limit_ms:g} ms "
                f"and ≥ {opts.min_delivered:.0%} delivered; same limits for both brokers (max "
                "in-flight 20, max queued 1000, no persistence)."
                if self._has_non_shadow()
                else "; the shadow workload's setup is described with its table."
            ),
            f"- Protocol: {self._protocol_line()}",
            *self._tls_lines(),
            "",
        ]
        sections = self.sections()
        if sections[0].metrics:
            lines += [*self._table(sections[0]), ""]
        lines += [
            f"≥ marks a lower bound: the load generators used ≥ {opts.saturated:.0%} of their "
            "core at that figure (or the ramp's highest rate still passed), so the broker may "
            "be faster than shown. Ratios are "
            + (
                (f"{cand}/{base}" if cand else "n/a")
                if sections[0].metrics
                else "each table's second broker over its first"
            )
            + " in each row's unit; *Better* says which direction is good. (!) marks a figure "
            "with a caveat in the notes.",
        ]
        for section in sections[1:]:
            lines += ["", f"## {section.title}", ""]
            lines += self._section_intro(section)
            lines += self._table(section)
            lines += self._cpu_per_message(section)
        lines += [
            "",
            "## CPU at the reported figure (fraction of one core)",
            "",
            "*other* is every process outside the benchmark plus hypervisor steal time (for a "
            "ramp: the more of its best "
            "passing and first failing step); more "
            f"than {0.10:.0%} means the machine was not quiet and the figures may be disturbed.",
            "",
        ]
        for index, section in enumerate(sections):
            if not section.metrics:
                continue
            if index:
                lines += ["", f"{section.title}:", ""]
            lines += self._cpu_table(section)
        notes = self.notes + self._measurement_notes()
        if notes:
            lines += ["", "## Notes", ""]
            lines += [f"- {n}" for n in notes]
        lines.append("")
        return "\n".join(lines)

    def _table(self, section: Section) -> list[str]:
        opts, labels = self.options, section.labels
        base = labels[0]
        cand = labels[1] if len(labels) > 1 else None
        header = ["Workload", *labels]
        if cand is not None:
            header += [f"{cand}/{base}", "Better", "Target", "Result"]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        for key in section.metrics:
            metric = METRICS[key]
            row = [metric.label] + [cell(metric, self.find(label, key)) for label in labels]
            if cand is not None:
                b, c = self.find(base, key), self.find(cand, key)
                r = ratio(b, c)
                target = metric.target.describe(opts) if metric.target else "—"
                row += [
                    r.render() if r else "—",
                    metric.better.value,
                    target,
                    verdict(metric, b, c, opts) or "—",
                ]
            lines.append("| " + " | ".join(row) + " |")
        return lines

    def _cpu_table(self, section: Section) -> list[str]:
        head = ["Workload"]
        for label in section.labels:
            head += [f"load gen ({label})", f"broker ({label})", f"other ({label})"]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for key in section.metrics:
            if not METRICS[key].cpu_row:
                continue
            row = [METRICS[key].label]
            for label in section.labels:
                m = self.find(label, key)
                row += [
                    _pct(m.load_cpu if m else None),
                    _pct(m.broker_cpu if m else None),
                    _pct(m.other_cpu if m else None),
                ]
            lines.append("| " + " | ".join(row) + " |")
        return lines

    def _cpu_per_message(self, section: Section) -> list[str]:
        """Broker CPU per message at the highest offered rate both brokers' ramps passed: a
        steadier comparison than the ramps' pass/fail edge, which moves by a step or two
        between runs on a small machine. The load generators' CPU per message, the same work
        against both brokers, shows whether the machine itself ran slower during one run."""
        if len(section.labels) < 2 or not any(k in RAMP_METRICS for k in section.metrics):
            return []
        base, cand = section.labels[0], section.labels[1]
        rows = []
        for key in section.metrics:
            if key not in RAMP_METRICS:
                continue
            b, c = self.find(base, key), self.find(cand, key)
            if b is None or c is None:
                continue
            passed = [
                {s["rate"]: s for s in m.details.get("steps", []) if s["passed"]} for m in (b, c)
            ]
            common = sorted(set(passed[0]) & set(passed[1]))
            if not common:
                continue
            rate = common[-1]
            b_step, c_step = passed[0][rate], passed[1][rate]
            b_us, c_us = (st["broker_cpu"] / rate * 1e6 for st in (b_step, c_step))
            b_load, c_load = (st["load_cpu"] / rate * 1e6 for st in (b_step, c_step))
            capacity = b_us / c_us
            normalized = capacity * c_load / b_load if b_load else float("nan")
            rows.append(
                f"| {METRICS[key].label} | {rate:,.0f} msg/s | {b_us:.2f} µs | {c_us:.2f} µs | "
                f"{b_load:.2f} µs | {c_load:.2f} µs | {capacity:.2f}x | {normalized:.2f}x |"
            )
        if not rows:
            return []
        return [
            "",
            "CPU per message at the highest offered rate both ramps passed (one step each). "
            "The load generators do the same work in both runs, so a difference in their CPU "
            "per message means the machine itself was slower in one run; the last column "
            "divides it out.",
            "",
            f"| Workload | rate | broker ({base}) | broker ({cand}) | load gen ({base}) "
            f"| load gen ({cand}) | {cand}/{base} capacity | normalized by load gen |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
        ]

    def _has_shadows(self) -> bool:
        return any(k.startswith("shadow_") for k in self.metrics())

    def _has_non_shadow(self) -> bool:
        metrics = self.metrics()
        return not metrics or any(not k.startswith("shadow_") for k in metrics)

    def _shadow_intro(self) -> list[str]:
        details = next(
            (
                m.details
                for label in self.all_labels()
                for m in self.results.get(label, [])
                if m.metric.startswith("shadow_") and m.details
            ),
            None,
        )
        opts = self.options
        windows = details["windows_per_device"] if details else list(opts.shadow_windows)
        devices = details["devices"] if details else opts.shadow_devices
        things = details["things"] if details else devices * opts.shadow_things_per_device
        windows_text = " and ".join(str(w) for w in windows)
        return [
            f"The same workload on both: {things:,} things, {devices:,} device connections "
            "(MQTT 3.1.1, anonymous, plain listener), each owning "
            f"{things // max(devices, 1):,} things and subscribed at QoS 1 to their "
            "`update/accepted` and `update/rejected` topics; updates "
            '`{"state":{"reported":{"temp":n,"seq":k}},"clientToken":"…"}` published at '
            "QoS 1, one outstanding per thing at most. *updates/s*: closed loop with "
            f"{windows_text} updates outstanding per device (the better of "
            f"{'them' if len(windows) > 1 else 'one'} counts; the JSON has each), accepted "
            "answers per second over "
            f"{opts.shadow_seconds:g} s after a {opts.shadow_warmup:g} s warm-up. *p50/p99*: "
            f"update→accepted at {opts.shadow_rate:,.0f} updates/s offered in total, for "
            f"{opts.latency_seconds:g} s"
            + (
                " (the issue asked for 1,000/s, more than amqtt's plugin answers at all: see "
                "its updates/s)"
                if opts.shadow_rate < 1000
                else ""
            )
            + ". Every update must get exactly one accepted answer "
            "(matched by its `clientToken`; amqtt's by the reported `seq`, as it echoes no "
            "token); lost, rejected, duplicate or malformed answers are noted below.",
            "",
            "Both keep the shadows in SQLite in the broker's temporary directory, WAL journal, "
            "`synchronous=NORMAL`: thingcore's shadow service in `thingcore.db`, amqtt's "
            "`amqtt.contrib.shadows.ShadowPlugin` (aiosqlite) in `shadows.db`. thingcore's "
            "anonymous clients get an allow-all policy (`bench-all`; the default one denies "
            "`$aws/...`). amqtt's plugin has its own topics, `$shadow/<thing>/main/update` and "
            "`…/update/accepted` (always a named shadow), answers with version 1 and "
            "timestamp 123 every time, never publishes `update/rejected`, and also publishes "
            "`update/delta`, `update/iota` and `update/documents` on every update (nobody "
            "subscribes to them here). amqtt closes the connection of any client that "
            "publishes to a `$` topic, after handing the message to the plugin; "
            "`bench.amqtt_broker` keeps the connection open, or a device could send one update "
            "per connection. amqtt 0.12.1 also stores a shadow's second version with the "
            'primary key "", so every later update of an existing shadow fails on that key '
            "and is never answered; `bench.amqtt_broker` gives each version a fresh id. "
            "Ratio = thingcore/amqtt.",
            "",
        ]

    def _section_intro(self, section: Section) -> list[str]:
        if any(k.startswith("shadow_") for k in section.metrics):
            return self._shadow_intro()
        if any(k.startswith("rules_") for k in section.metrics):
            return self._rules_intro(section)
        if any(k.startswith("policy_") for k in section.metrics):
            return [
                "The fan-in ramps above, on thingcore only. *policies on*: `thingcore serve`; "
                "its plain-listener clients are anonymous and get the default anonymous policy, "
                "so every PUBLISH (iot:Publish) and every delivery (iot:Receive) is authorized "
                "by `RegistryAuthorizer`, with decisions cached per session. *policies off*: "
                "the same `broker.server.Broker` and settings without the registry "
                "(`bench.bare_broker`, `broker.auth.AllowAll`). Ratio = on/off.",
                "",
            ]
        return []

    def _rules_intro(self, section: Section) -> list[str]:
        details = next(
            (
                m.details
                for label in section.labels
                for m in self.results.get(label, [])
                if m.metric.startswith("rules_fanin") and m.details.get("rules", {}).get("rules")
            ),
            {},
        )
        mix, feed = details.get("rules", {}), details.get("feed", {})
        counters = details.get("rule_counters", {})
        opts = self.options
        lines = [
            "The fan-in ramps (20 publishers → 1 subscriber) on `thingcore serve`, twice in "
            "the same run: *no rules*, then *1,000 rules*, applied to its data directory "
            "before it starts with `thingcore rules apply DIR` (one file per rule, the file "
            'name its name, the content AWS\'s TopicRulePayload with `"actions": []` and '
            "SQL version 2016-03-23). The server loads them at start: one Bus subscription per "
            "distinct FROM filter, every matching rule evaluated on the dispatch path. "
            f"Payloads are {opts.payload_size}-byte JSON readings, one per device topic, the "
            "send stamp in their first member"
            + (f" (`{feed['payload_example']}`)" if feed.get("payload_example") else "")
            + "; each publisher sends "
            + (
                f"{feed['topics_per_publisher']} device topics in turn, {feed['topics']:,} in all"
                if feed
                else "its device topics in turn"
            )
            + " (`bench/<run>/rt/s<site>/d<device>/telemetry`, 20 sites), so every topic gets "
            "the same share of the messages. The subscriber takes "
            "`bench/<run>/rt/+/+/telemetry`.",
            "",
        ]
        if mix:
            kinds = mix.get("kinds", {})
            matching = ", ".join(f"{n} {k}" for k, n in kinds.items() if k in _MATCHING_KINDS)
            other = ", ".join(f"{n} {k}" for k, n in kinds.items() if k not in _MATCHING_KINDS)
            histogram = ", ".join(
                f"{k} rules: {v} topics" for k, v in mix.get("matched_histogram", {}).items()
            )
            lines += [
                f"**The rules**: {mix['rules']:,}, {mix['distinct_filters']:,} distinct FROM "
                "filters, each `SELECT` of 2-4 attributes and `topic(n)` with a `WHERE` "
                "comparison (5 shapes, e.g. "
                "`SELECT temp, humidity, topic(5) AS device FROM '…' WHERE temp > 31`). "
                f"{mix['matching']} match published topics ({matching}); "
                f"{mix['matching_nothing']} match nothing in the traffic ({other}). "
                "**Per message**, worked out with the engine's own `rules.index.TopicIndex` "
                f"and compiled rules over the {mix['topics']} topics: "
                f"**{mix['matched_per_message']:.2f} rules matched on average** "
                f"({mix['matched_min']}-{mix['matched_max']}; {histogram}), "
                f"{mix['passed_per_message']:.2f} of them with WHERE true.",
                "",
            ]
        if counters and "matched" in counters:
            lines += [
                f"The broker's own rule counters after the run (from its database): "
                f"{counters['matched']:,} evaluations for {counters['messages_sent']:,} "
                "messages sent (warm-ups and repeated steps included): "
                f"{counters['matched_per_message']} per message; WHERE true "
                f"{counters['passed_per_message']} per message; "
                f"{counters['failed']:,} failed; mean evaluation "
                f"{counters['mean_eval_us']} µs (the payload's JSON parse included, once per "
                "message).",
                "",
            ]
        lines += [
            "Rows marked *in process* are `bench.rules_eval`, run after the ramps in a "
            "process of its own on the load generators' CPU, no broker involved: "
            "`RulesEngine.install` of 10,000 varied stored rules on a (never started) "
            "broker's Bus, the server's path at start and on every rule change (validate "
            "each definition, compile, index, subscribe; the engine pauses the cyclic GC "
            "meanwhile); the same validation and compiling alone, GC paused and running; the "
            "typical rule "
            "`SELECT temp, topic(2) AS device FROM 'sensors/+/telemetry' WHERE temp > 50` on "
            "a 198-byte JSON payload, evaluated with a new context (and JSON parse) per call "
            "and with one shared parse; and the CPU a message costs more through "
            "`Broker.publish` (router, Bus, engine, counters) with the typical rule, and with "
            "this workload's 1,000 rules over its 500 topics, than with no rules. Compile "
            f"figures are the best of {opts.rules_eval_runs}. Ratio = 1,000 rules / no "
            "rules.",
            "",
        ]
        return lines

    def _tls_lines(self) -> list[str]:
        if not any(k.startswith("mtls_") for k in self.metrics()):
            return []
        tls = next(
            (
                m.details
                for label in self.labels
                for m in self.results.get(label, [])
                if m.metric.startswith("mtls_") and "tls_version" in m.details
            ),
            None,
        )
        negotiated = (
            f"{tls['tls_version']} with {tls['cipher']}" if tls else "no handshake completed"
        )
        if self.pki is None:
            return [f"- Mutual TLS: {negotiated}."]
        return [
            f"- Mutual TLS: {negotiated}; CA and server certificate EC P-256 from thingcore's "
            "`DevelopmentCA`, the same files for both brokers; "
            f"{self.pki['client_certificates']:,} client certificates "
            f"({self.pki['client_keys']} keys), registered ACTIVE in thingcore with an iot:* "
            "policy attached; Mosquitto with `require_certificate true`. Every handshake is "
            "full: the clients never offer a session to resume (the brokers issue TLS 1.3 "
            "tickets, unused). In the measured loops the clients do not verify the server "
            "certificate (the brokers' work is unchanged); a preflight per broker verifies it "
            "once and checks that a client without a certificate is refused."
        ]

    def _protocol_line(self) -> str:
        if self.options.protocol != 5:
            return "MQTT 3.1.1 (protocol level 4) for every client."
        line = (
            "MQTT 5 (protocol level 5) for the fan-in, fan-out and latency clients: CONNECT and "
            "SUBSCRIBE with empty properties, every PUBLISH with a Content Type and two User "
            "Properties (a 45-byte properties block), short 2-byte PUBACKs; a forwarded PUBLISH "
            "without them counts as not delivered."
        )
        if any(not k.startswith(V5_CLIENT_METRICS) for k in self.metrics()):
            line += " The idle, connection-rate and mutual-TLS clients stay on MQTT 3.1.1."
        return line

    def _measurement_notes(self) -> list[str]:
        out: list[str] = []
        busy_limit = 0.10
        for label in self.all_labels():
            busy: dict[str, float] = {}
            for m in self.results.get(label, []):
                if m.other_cpu is not None and m.other_cpu > busy_limit:
                    name = WORKLOAD_OF.get(m.metric, m.metric)
                    busy[name] = max(busy.get(name, 0.0), m.other_cpu)
            if busy:
                out.append(
                    f"{label}: other processes on the machine used up to "
                    f"{max(busy.values()):.0%} of a core while measuring "
                    f"{', '.join(busy)}; those figures may be disturbed"
                )
            errors: dict[tuple[str, str], None] = {}
            for m in self.results.get(label, []):
                if m.error:
                    errors[(WORKLOAD_OF.get(m.metric, m.metric), m.error)] = None
            out += [f"{label}, {workload}: {error}" for workload, error in errors]
            for key, name in (("idle_accepted", "idle"), ("mtls_idle_accepted", "mTLS idle")):
                idle = self.find(label, key)
                if idle is not None and idle.details.get("connect_failures"):
                    out.append(
                        f"{label}, {name} connect failures: {idle.details['connect_failures']}"
                    )
                if idle is not None and idle.details.get("dropped_after_connack"):
                    out.append(
                        f"{label}, {name} connections closed by the broker after CONNACK: "
                        f"{idle.details['dropped_after_connack']}"
                    )
            for key, name in (("connrate", "connection rate"), ("mtls_connect", "mTLS cycles")):
                conn = self.find(label, key)
                if conn is not None and (conn.details.get("errors") or conn.details.get("refused")):
                    out.append(
                        f"{label}, {name}: refused {conn.details.get('refused')}, "
                        f"errors {conn.details.get('errors')}"
                    )
            for key in ("mtls_connect", "mtls_idle_accepted"):
                tls = self.find(label, key)
                if tls is not None and tls.details.get("no_cert_refused") is False:
                    out.append(
                        f"{label}: a client without a certificate was accepted on the TLS "
                        "listener (the broker does not require client certificates)"
                    )
            for key in RAMP_METRICS:
                ramp = self.find(label, key)
                if ramp is None:
                    continue
                lost = sum(s["lost_connections"] for s in ramp.details.get("steps", []))
                if lost:
                    out.append(f"{label}, {key}: subscribers lost their connection ({lost})")
        out += self._capacity_notes()
        return out

    def _capacity_notes(self) -> list[str]:
        """When a mutual-TLS cycle rate is a bound, the broker CPU per cycle still compares."""
        if len(self.labels) < 2:
            return []
        base, cand = self.labels[0], self.labels[1]
        rates = [self.find(label, "mtls_connect") for label in (base, cand)]
        costs = [self.find(label, "mtls_connect_cpu_ms") for label in (base, cand)]
        if not any(r is not None and r.lower_bound for r in rates):
            return []
        if any(c is None or not c.value for c in costs):
            return []
        base_ms, cand_ms = (c.value for c in costs if c is not None and c.value)
        return [
            f"mTLS cycles/s is a lower bound (the load generator, doing a client handshake per "
            f"cycle, saturated its core); by broker CPU per cycle ({base} {base_ms:.2f} ms, "
            f"{cand} {cand_ms:.2f} ms) {cand} would sustain {base_ms / cand_ms:.2f}x "
            f"{base}'s rate with a core each"
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "options": self.options.__dict__,
            "mode": self.mode,
            "command": self.command,
            "brokers": self.labels,
            "sections": [
                {"title": s.title, "brokers": s.labels, "metrics": s.metrics}
                for s in self.sections()
            ],
            "pki": self.pki,
            "elapsed_seconds": round(self.elapsed, 1),
            "notes": self.notes,
            "results": {label: [m.to_json() for m in ms] for label, ms in self.results.items()},
        }

    def write(self, directory: Path, stamp: datetime) -> Sequence[Path]:
        """Write latest.md/.json (latest-quick.* for a quick run, so a smoke run never replaces
        the last full one; latest-v5.* / latest-quick-v5.* with MQTT 5 clients, so they never
        replace MQTT 3.1.1 results; latest-<results_name>.* when the run is named) and a dated
        copy of each; returns the paths written."""
        directory.mkdir(parents=True, exist_ok=True)
        suffix = "" if self.mode == "full" else f"-{self.mode}"
        if self.options.protocol == 5:
            suffix += "-v5"
        if self.results_name:
            suffix += f"-{self.results_name}"
        dated = stamp.strftime("%Y-%m-%d_%H%M%S") + suffix
        md, js = self.markdown(), json.dumps(self.to_json(), indent=2, default=str) + "\n"
        paths = []
        for name in ("latest" + suffix, dated):
            for ext, text in (("md", md), ("json", js)):
                path = directory / f"{name}.{ext}"
                tmp = path.with_suffix(path.suffix + ".tmp")
                tmp.write_text(text)
                tmp.replace(path)
                paths.append(path)
        return paths
