"""Latency histograms and per-step delivery counts (pure, picklable).

A histogram counts latencies in integer units of `unit_ns` nanoseconds (1 µs by default; the
throughput ramps use 65.536 µs, the send time's low 16 bits dropped, so that messages sent
within one tick share a key and cost one Python iteration together). Values are exact below
1,024 units and rounded down to 10 significant bits above (under 0.1 % error), so a histogram
has a few thousand buckets at most whatever the message count, and shipping one between
processes is cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

FINE_NS = 1000
COARSE_SHIFT = 16
COARSE_NS = 1 << COARSE_SHIFT


def bucket(units: int) -> int:
    """The histogram bucket of a latency in histogram units."""
    if units < 1024:
        return units if units > 0 else 0
    shift = units.bit_length() - 10
    return (units >> shift) << shift


@dataclass
class Histogram:
    unit_ns: int = FINE_NS
    counts: dict[int, int] = field(default_factory=dict)
    total: int = 0

    def add(self, units: int, n: int = 1) -> None:
        b = bucket(units)
        self.counts[b] = self.counts.get(b, 0) + n
        self.total += n

    def merge(self, other: Histogram) -> None:
        if other.unit_ns != self.unit_ns:
            raise ValueError("cannot merge histograms with different units")
        for b, n in other.counts.items():
            self.counts[b] = self.counts.get(b, 0) + n
        self.total += other.total

    def percentile(self, p: float) -> float | None:
        """The latency in µs at or below which `p` percent of samples fall; None if empty."""
        if not self.total:
            return None
        rank = max(1, -(-self.total * p // 100))
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                return b * self.unit_ns / 1000
        return max(self.counts) * self.unit_ns / 1000


@dataclass
class StepStats:
    """What a subscriber process received for one workload step."""

    received: int = 0
    latency: Histogram = field(default_factory=Histogram)


class Recorder:
    """Collects received messages by step: counts and latency histograms."""

    def __init__(self, unit_ns: int = FINE_NS) -> None:
        self.unit_ns = unit_ns
        self.steps: dict[int, StepStats] = {}
        self.foreign = 0  # PUBLISHes without a benchmark stamp

    def _stats(self, step: int) -> StepStats:
        stats = self.steps.get(step)
        if stats is None:
            stats = self.steps[step] = StepStats(latency=Histogram(self.unit_ns))
        return stats

    def record(self, now: int, counts: Mapping[tuple[int, int], int]) -> None:
        """Messages received at `now`: `counts` maps (sent, step) to a count; times in units."""
        last_step, stats = -1, None
        for (sent, step), n in counts.items():
            if step != last_step:
                stats = self._stats(step)
                last_step = step
            assert stats is not None
            stats.received += n
            hist = stats.latency
            units = now - sent
            b = units if 0 <= units < 1024 else bucket(units)
            hist.counts[b] = hist.counts.get(b, 0) + n
            hist.total += n

    def record_one(self, now: int, sent: int, step: int) -> None:
        """One message (the same as `record` with one key, but cheaper)."""
        stats = self.steps.get(step)
        if stats is None:
            stats = self._stats(step)
        stats.received += 1
        hist = stats.latency
        units = now - sent
        b = units if 0 <= units < 1024 else bucket(units)
        counts = hist.counts
        counts[b] = counts.get(b, 0) + 1
        hist.total += 1

    def received(self, step: int) -> int:
        stats = self.steps.get(step)
        return stats.received if stats else 0

    def pop(self, step: int) -> StepStats:
        return self.steps.pop(step, None) or StepStats(latency=Histogram(self.unit_ns))
