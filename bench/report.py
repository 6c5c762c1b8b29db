"""Turning measurements into the markdown table and the JSON file (pure rendering, then write).

The first broker is the baseline and the second the candidate: ratios are candidate/baseline
in the metric's own unit, whichever direction is better, and each target is judged on them.
A figure marked "≥" is a lower bound (the load generators were saturated, or the ramp's top
rate passed); ratios and verdicts take that into account and say "inconclusive" rather than
guess.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from bench import mqttwire
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

    def describe(self, opts: Options) -> str:
        if self.kind is TargetKind.RATIO_AT_LEAST:
            return f"ratio ≥ {self.bound:.1f}"
        if self.kind is TargetKind.RATIO_AT_MOST:
            return f"ratio ≤ {self.bound:.1f}"
        if self.kind is TargetKind.AT_MOST:
            return f"≤ {self.bound:g} {self.unit}".strip()
        return f"{opts.idle_connections:,}/{opts.idle_connections:,}"


@dataclass(frozen=True)
class Metric:
    label: str
    better: Better
    fmt: Callable[[float], str]
    target: Target | None = None


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


AT_LEAST_1 = Target(TargetKind.RATIO_AT_LEAST, 1.0)

METRICS: dict[str, Metric] = {
    "fanin_qos0": Metric("fan-in QoS 0, sustained msg/s", Better.HIGHER, _rate, AT_LEAST_1),
    "fanin_qos1": Metric("fan-in QoS 1, sustained msg/s", Better.HIGHER, _rate, AT_LEAST_1),
    "fanout": Metric("fan-out 50→100, delivered msg/s", Better.HIGHER, _rate, AT_LEAST_1),
    "latency_p50_qos0": Metric("latency p50 @ 1,000 msg/s, QoS 0", Better.LOWER, _ms),
    "latency_p99_qos0": Metric(
        "latency p99 @ 1,000 msg/s, QoS 0",
        Better.LOWER,
        _ms,
        Target(TargetKind.RATIO_AT_MOST, 2.0),
    ),
    "latency_p50_qos1": Metric("latency p50 @ 1,000 msg/s, QoS 1", Better.LOWER, _ms),
    "latency_p99_qos1": Metric(
        "latency p99 @ 1,000 msg/s, QoS 1",
        Better.LOWER,
        _ms,
        Target(TargetKind.RATIO_AT_MOST, 2.0),
    ),
    "idle_accepted": Metric("idle connections accepted", Better.HIGHER, _count),
    "idle_kb_per_conn": Metric(
        "memory per idle connection (RSS)", Better.LOWER, _kb, Target(TargetKind.AT_MOST, 4.0, "KB")
    ),
    "idle_pings": Metric(
        "idle connections answering PINGREQ", Better.HIGHER, _count, Target(TargetKind.ALL)
    ),
    "connrate": Metric("connect+CONNACK+DISCONNECT cycles/s", Better.HIGHER, _per_s, AT_LEAST_1),
}


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
        return "met" if cand.value >= opts.idle_connections else "missed"
    r = ratio(base, cand)
    if r is None:
        return "n/a"
    if target.kind is TargetKind.RATIO_AT_LEAST:
        if r.value >= target.bound:
            return "met" if r.bound in ("=", ">=") else "inconclusive"
        return "missed" if r.bound in ("=", "<=") else "inconclusive"
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


V5_CLIENT_METRICS = ("fanin", "fanout", "latency")  # metric prefixes that use --protocol


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.0%}"


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

    def find(self, label: str, metric: str) -> Measurement | None:
        return next((m for m in self.results.get(label, []) if m.metric == metric), None)

    def metrics(self) -> list[str]:
        seen = {m.metric for ms in self.results.values() for m in ms}
        return [k for k in METRICS if k in seen]

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
            f"uvloop {env['uvloop']}",
            f"- Setup: brokers pinned to CPU {opts.broker_cpu}, load generators to CPU "
            f"{opts.load_cpu}; loopback only; {opts.payload_size}-byte payloads; a ramp step "
            f"lasts {opts.step_seconds:g} s and passes with p99 < {opts.p99_limit_ms:g} ms and "
            f"≥ {opts.min_delivered:.0%} delivered; same limits for both brokers (max in-flight "
            "20, max queued 1000, no persistence).",
            f"- Protocol: {self._protocol_line()}",
            "",
        ]
        header = ["Workload", *self.labels]
        if cand is not None:
            header += [f"{cand}/{base}", "Better", "Target", "Result"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        for key in self.metrics():
            metric = METRICS[key]
            row = [metric.label] + [cell(metric, self.find(label, key)) for label in self.labels]
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
        lines += [
            "",
            f"≥ marks a lower bound: the load generators used ≥ {opts.saturated:.0%} of their "
            "core at that figure (or the ramp's highest rate still passed), so the broker may "
            "be faster than shown. Ratios are "
            + (f"{cand}/{base}" if cand else "n/a")
            + " in each row's unit; *Better* says which direction is good. (!) marks a figure "
            "with a caveat in the notes.",
            "",
            "## CPU at the reported figure (fraction of one core)",
            "",
            "*other* is every process outside the benchmark plus hypervisor steal time (for a "
            "ramp: the more of its best "
            "passing and first failing step); more "
            f"than {0.10:.0%} means the machine was not quiet and the figures may be disturbed.",
            "",
        ]
        head = ["Workload"]
        for label in self.labels:
            head += [f"load gen ({label})", f"broker ({label})", f"other ({label})"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join("---" for _ in head) + "|")
        for key in self.metrics():
            if key.startswith("latency_p50") or key in ("idle_kb_per_conn", "idle_pings"):
                continue
            row = [METRICS[key].label]
            for label in self.labels:
                m = self.find(label, key)
                row += [
                    _pct(m.load_cpu if m else None),
                    _pct(m.broker_cpu if m else None),
                    _pct(m.other_cpu if m else None),
                ]
            lines.append("| " + " | ".join(row) + " |")
        notes = self.notes + self._measurement_notes()
        if notes:
            lines += ["", "## Notes", ""]
            lines += [f"- {n}" for n in notes]
        lines.append("")
        return "\n".join(lines)

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
            line += " The idle and connection-rate clients stay on MQTT 3.1.1."
        return line

    def _measurement_notes(self) -> list[str]:
        out: list[str] = []
        busy_limit = 0.10
        for label in self.labels:
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
            idle = self.find(label, "idle_accepted")
            if idle is not None and idle.details.get("connect_failures"):
                out.append(f"{label}, idle connect failures: {idle.details['connect_failures']}")
            if idle is not None and idle.details.get("dropped_after_connack"):
                out.append(
                    f"{label}, idle connections closed by the broker after CONNACK: "
                    f"{idle.details['dropped_after_connack']}"
                )
            conn = self.find(label, "connrate")
            if conn is not None and (conn.details.get("errors") or conn.details.get("refused")):
                out.append(
                    f"{label}, connection rate: refused {conn.details.get('refused')}, "
                    f"errors {conn.details.get('errors')}"
                )
            for key in ("fanin_qos0", "fanin_qos1", "fanout"):
                ramp = self.find(label, key)
                if ramp is None:
                    continue
                lost = sum(s["lost_connections"] for s in ramp.details.get("steps", []))
                if lost:
                    out.append(f"{label}, {key}: subscribers lost their connection ({lost})")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "options": self.options.__dict__,
            "mode": self.mode,
            "command": self.command,
            "brokers": self.labels,
            "elapsed_seconds": round(self.elapsed, 1),
            "notes": self.notes,
            "results": {label: [m.to_json() for m in ms] for label, ms in self.results.items()},
        }

    def write(self, directory: Path, stamp: datetime) -> Sequence[Path]:
        """Write latest.md/.json (latest-quick.* for a quick run, so a smoke run never replaces
        the last full one; latest-v5.* / latest-quick-v5.* with MQTT 5 clients, so they never
        replace MQTT 3.1.1 results) and a dated copy of each; returns the paths written."""
        directory.mkdir(parents=True, exist_ok=True)
        suffix = "" if self.mode == "full" else f"-{self.mode}"
        if self.options.protocol == 5:
            suffix += "-v5"
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
