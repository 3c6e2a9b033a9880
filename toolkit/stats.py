"""Pure statistics over timing samples: no clock, no I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks (numpy's default).

    `sorted_values` must be sorted ascending and non-empty.
    """
    if not sorted_values:
        raise ValueError("percentile of an empty sample")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    position = (len(sorted_values) - 1) * q / 100.0
    lower = math.floor(position)
    upper = math.ceil(position)
    if lower == upper:
        return float(sorted_values[lower])
    weight = position - lower
    return float(sorted_values[lower] * (1.0 - weight) + sorted_values[upper] * weight)


@dataclass(frozen=True)
class Stats:
    """Summary of one timed series, in milliseconds.

    The raw samples ride along in memory (`samples_ms`, in the order they were taken) but are not
    part of the summary: results.json stores summaries, and the samples go to samples.npz beside
    it (see `toolkit.results`).
    """

    n: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p25_ms: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    cv: float
    samples_ms: tuple[float, ...] = field(default=(), compare=False, repr=False)

    @property
    def iqr_ms(self) -> float:
        """The interquartile range: the spread of the middle half of the samples."""
        return self.p75_ms - self.p25_ms

    def summary(self) -> dict[str, float | int]:
        """The summary fields, without the samples."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "samples_ms"}

    @classmethod
    def from_ns(cls, samples_ns: Sequence[int]) -> Stats:
        return cls.from_ms([s / 1e6 for s in samples_ns])

    @classmethod
    def from_ms(cls, samples_ms: Sequence[float]) -> Stats:
        """Summarise samples; std is the sample standard deviation (n - 1), 0 for one sample."""
        if not samples_ms:
            raise ValueError("cannot summarise an empty sample")
        values = sorted(float(v) for v in samples_ms)
        n = len(values)
        mean = math.fsum(values) / n
        var = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
        std = math.sqrt(var)
        return cls(
            n=n,
            mean_ms=mean,
            std_ms=std,
            min_ms=values[0],
            p25_ms=percentile(values, 25),
            p50_ms=percentile(values, 50),
            p75_ms=percentile(values, 75),
            p90_ms=percentile(values, 90),
            p95_ms=percentile(values, 95),
            p99_ms=percentile(values, 99),
            max_ms=values[-1],
            cv=std / mean if mean > 0 else 0.0,
            samples_ms=tuple(float(v) for v in samples_ms),
        )


def throughput_rows_per_s(batch_size: int, p50_ms: float) -> float:
    """Rows per second at the median latency."""
    if p50_ms <= 0:
        raise ValueError(f"p50 must be positive to compute a throughput, got {p50_ms}")
    return batch_size * 1000.0 / p50_ms
