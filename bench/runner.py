"""One benchmark run: every selected workload against every selected broker, then the report.

Brokers run one at a time, each freshly started for each workload (so no workload inherits
another's queues or caches), and are always stopped, also on errors and Ctrl+C. A workload
that fails on one broker is recorded as an error in its row; the run goes on.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench import host
from bench.brokers import LAUNCHERS, run_broker
from bench.measurement import Measurement
from bench.report import Report
from bench.workloads import Log, Options, Workload


@dataclass(frozen=True)
class BrokerChoice:
    kind: str  # a key of brokers.LAUNCHERS
    label: str  # column name in the report


def parse_brokers(spec: str) -> list[BrokerChoice]:
    """ "mosquitto,thingcore" -> choices; a kind named twice gets labels kind, kind-2, ..."""
    kinds = [k.strip().lower() for k in spec.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in LAUNCHERS]
    if unknown or not kinds:
        raise ValueError(f"unknown broker(s) {unknown}; choose from {', '.join(LAUNCHERS)}")
    seen: dict[str, int] = {}
    out = []
    for kind in kinds:
        seen[kind] = seen.get(kind, 0) + 1
        label = kind if seen[kind] == 1 else f"{kind}-{seen[kind]}"
        out.append(BrokerChoice(kind, label))
    return out


def run(
    brokers: Sequence[BrokerChoice],
    workloads: Sequence[Workload],
    opts: Options,
    *,
    mode: str,
    command: str,
    results_dir: Path,
    log: Log,
) -> tuple[Report, Sequence[Path]]:
    nofile = host.raise_nofile_limit()
    host.pin_to_cpu(opts.load_cpu)  # the orchestrator stays off the broker's core too
    environment = host.describe(nofile)
    run_id = secrets.token_hex(3)
    results: dict[str, list[Measurement]] = {b.label: [] for b in brokers}
    notes: list[str] = []
    started = time.monotonic()
    names = ", ".join(w.name for w in workloads)
    log(f"run {run_id}: {names} on {', '.join(b.label for b in brokers)}")
    for w_index, workload in enumerate(workloads):
        for b_index, choice in enumerate(brokers):
            log(f"{workload.name} on {choice.label}")
            if opts.quiet_wait > 0:
                host.wait_until_quiet(opts.quiet_wait, opts.disturbed, log)
            tag = f"{run_id}{w_index}{b_index}"
            try:
                with run_broker(
                    choice.kind,
                    f"{workload.name}-{choice.label}",
                    cpu=opts.broker_cpu,
                    log_dir=results_dir / "logs",
                ) as broker:
                    measured = workload.run(broker, opts, tag, log)
                if broker.killed:
                    notes.append(
                        f"{choice.label} did not exit within {broker.stop_timeout:g} s of SIGINT "
                        f"after {workload.name}; it was killed"
                    )
                elif broker.exit_code not in (0, None):
                    notes.append(
                        f"{choice.label} exited with code {broker.exit_code} after "
                        f"{workload.name} (log: {broker.log})"
                    )
            except Exception as exc:  # noqa: BLE001 - the broker under test may fail any way
                message = f"{type(exc).__name__}: {exc}".strip()
                log(f"  {choice.label} failed {workload.name}: {message}")
                measured = [
                    Measurement(metric, None, error=_one_line(message))
                    for metric in workload.metrics
                ]
            results[choice.label].extend(measured)
    report = Report(
        environment=environment,
        options=opts,
        mode=mode,
        command=command,
        labels=[b.label for b in brokers],
        results=results,
        notes=notes,
        elapsed=time.monotonic() - started,
    )
    return report, report.write(results_dir, datetime.now())


def _one_line(message: str, limit: int = 300) -> str:
    text = " ".join(message.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
