"""One benchmark run: every selected workload against every selected broker, then the report.

Brokers run one at a time, each freshly started for each workload (so no workload inherits
another's queues or caches), and are always stopped, also on errors and Ctrl+C. A workload
that fails on one broker is recorded as an error in its row; the run goes on.

A workload with fixed brokers (policy-throughput, shadow-updates, rules-throughput) runs on
those instead of the run's, a workload may ask for thingcore's anonymous clients to be allowed
everything (`allow_all`: shadow-updates), and one may bring rules, made from the run's tag,
for the brokers that take them (`rules`: rules-throughput on `thingcore-rules`). The
mutual-TLS workloads share one PKI (`bench.pki`), made before the first of them in a
temporary directory and removed at the end of the run.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench import host, pki
from bench.brokers import LAUNCHERS, run_broker
from bench.measurement import Measurement
from bench.report import Report
from bench.workloads import Log, Options, Workload, pki_clients_needed


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


class LazyPki:
    """The run's PKI, made on first use (once: a failure is remembered and raised again) and
    removed when the `with` block ends."""

    def __init__(self, opts: Options, log: Log) -> None:
        self.opts, self.log = opts, log
        self.pki: pki.Pki | None = None
        self.error: Exception | None = None

    def get(self) -> pki.Pki:
        if self.pki is None and self.error is None:
            count = pki_clients_needed(self.opts)
            key_type = self.opts.mtls_key_type
            self.log(f"making the run's PKI: CA, server certificate, {count:,} client certificates")
            directory = Path(tempfile.mkdtemp(prefix="thingcore-bench-pki-"))
            try:
                if key_type not in ("ec", "rsa"):
                    raise ValueError(f"unknown client key type {key_type!r}: use ec or rsa")
                self.pki = pki.create(
                    directory, count, key_type="ec" if key_type == "ec" else "rsa", log=self.log
                )
            except Exception as exc:  # noqa: BLE001 - recorded against each workload that needs it
                shutil.rmtree(directory, ignore_errors=True)
                self.error = exc
        if self.error is not None:
            raise self.error
        assert self.pki is not None
        return self.pki

    def __enter__(self) -> LazyPki:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pki is not None:
            shutil.rmtree(self.pki.directory, ignore_errors=True)


def run(
    brokers: Sequence[BrokerChoice],
    workloads: Sequence[Workload],
    opts: Options,
    *,
    mode: str,
    command: str,
    results_dir: Path,
    log: Log,
    results_name: str = "",
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
    with LazyPki(opts, log) as run_pki:
        for w_index, workload in enumerate(workloads):
            choices = [BrokerChoice(k, label) for k, label in workload.brokers] or brokers
            for b_index, choice in enumerate(choices):
                log(f"{workload.name} on {choice.label}")
                if opts.quiet_wait > 0:
                    host.wait_until_quiet(opts.quiet_wait, opts.disturbed, log)
                tag = f"{run_id}{w_index}{b_index}"
                try:
                    with run_broker(
                        choice.kind,
                        f"{workload.name}-{_file_name(choice.label)}",
                        cpu=opts.broker_cpu,
                        log_dir=results_dir / "logs",
                        pki=run_pki.get() if workload.needs_pki else None,
                        allow_all=workload.allow_all,
                        rules=workload.rules(tag) if workload.rules is not None else None,
                    ) as broker:
                        measured = workload.run(broker, opts, tag, log)
                    if broker.killed:
                        notes.append(
                            f"{choice.label} did not exit within {broker.stop_timeout:g} s of "
                            f"SIGINT after {workload.name}; it was killed"
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
                results.setdefault(choice.label, []).extend(measured)
        pki_used = run_pki.pki
    report = Report(
        environment=environment,
        options=opts,
        mode=mode,
        command=command,
        labels=[b.label for b in brokers],
        results=results,
        notes=notes,
        elapsed=time.monotonic() - started,
        results_name=results_name,
        pki=None
        if pki_used is None
        else {
            "client_certificates": len(pki_used.clients),
            "client_keys": pki_used.client_key_description,
            "server_and_ca_keys": "EC P-256",
            "server_names": list(pki_used.server_names),
            "setup_seconds": round(pki_used.setup_seconds, 1),
        },
    )
    return report, report.write(results_dir, datetime.now())


def _file_name(label: str) -> str:
    return label.replace(" ", "-")


def _one_line(message: str, limit: int = 300) -> str:
    text = " ".join(message.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
