"""What a workload measured: one figure per metric and broker, with how it was obtained."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Measurement:
    metric: str  # a key of report.METRICS
    value: float | None  # None: not obtained (see `text` / `error`)
    lower_bound: bool = False  # the load generator, not the broker, may have been the limit
    text: str | None = None  # how to show the value when a number alone would mislead
    load_cpu: float | None = None  # load generators' CPU, fraction of one core, at this figure
    broker_cpu: float | None = None  # broker CPU, fraction of one core, at this figure
    other_cpu: float | None = None  # most CPU other processes on the machine used meanwhile
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StepResult:
    """One step of a rate ramp (or the single step of the latency workload)."""

    step: int
    rate: float  # offered publish rate, msg/s
    offered: int  # messages the publishers were due to send
    sent: int  # messages the publishers managed to write
    expected: int  # deliveries that should have arrived (sent-side offered x subscribers)
    received: int
    p50_ms: float | None
    p99_ms: float | None
    load_cpu: float
    broker_cpu: float
    load_cpu_by_worker: dict[str, float]
    other_cpu: float  # CPU used by processes outside the benchmark during the step
    lost_connections: int
    passed: bool

    @property
    def delivered(self) -> float:
        return self.received / self.expected if self.expected else 0.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["delivered"] = round(self.delivered, 4)
        return out
