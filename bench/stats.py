"""Latency histograms and per-step delivery counts (pure, picklable).

Latencies are kept in microseconds, exact below 1,024 µs and rounded down to 10 significant
bits above (under 0.1 % error), so a histogram has a few thousand buckets at most whatever
the message count, and merging or shipping one between processes is cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


def bucket(us: int) -> int:
    """The histogram bucket of a latency in microseconds."""
    if us < 1024:
        return us if us > 0 else 0
    shift = us.bit_length() - 10
    return (us >> shift) << shift


@dataclass
class Histogram:
    counts: dict[int, int] = field(default_factory=dict)
    total: int = 0

    def add(self, us: int, n: int = 1) -> None:
        b = bucket(us)
        self.counts[b] = self.counts.get(b, 0) + n
        self.total += n

    def merge(self, other: Histogram) -> None:
        for b, n in other.counts.items():
            self.counts[b] = self.counts.get(b, 0) + n
        self.total += other.total

    def percentile(self, p: float) -> float | None:
        """The latency (µs) at or below which `p` percent of samples fall; None if empty."""
        if not self.total:
            return None
        rank = max(1, -(-self.total * p // 100))
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                return float(b)
        return float(max(self.counts))


@dataclass
class StepStats:
    """What a subscriber process received for one workload step."""

    received: int = 0
    latency: Histogram = field(default_factory=Histogram)


class Recorder:
    """Collects (send time, step) stamps of received messages, keyed by step."""

    def __init__(self) -> None:
        self.steps: dict[int, StepStats] = {}
        self.foreign = 0  # PUBLISHes without a benchmark stamp

    def record(self, now_ns: int, stamps: Mapping[tuple[int, int], int]) -> None:
        """Record messages received at `now_ns`; `stamps` counts (sent_ns, step) pairs."""
        steps = self.steps
        for (sent_ns, step), n in stamps.items():
            stats = steps.get(step)
            if stats is None:
                stats = steps[step] = StepStats()
            stats.received += n
            stats.latency.add((now_ns - sent_ns) // 1000, n)

    def record_one(self, now_ns: int, sent_ns: int, step: int) -> None:
        self.record(now_ns, {(sent_ns, step): 1})

    def received(self, step: int) -> int:
        stats = self.steps.get(step)
        return stats.received if stats else 0

    def pop(self, step: int) -> StepStats:
        return self.steps.pop(step, None) or StepStats()


def merge_steps(parts: Iterable[StepStats]) -> StepStats:
    out = StepStats()
    for part in parts:
        out.received += part.received
        out.latency.merge(part.latency)
    return out
