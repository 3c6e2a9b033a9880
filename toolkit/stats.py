"""Pure statistics over timing samples: no clock, no I/O.

One timed series (one child, one variant, one batch size) is summarised by `Stats`. The same
case measured in several rounds (fresh processes) is summarised by `Estimate`: the median of the
round medians with a bootstrap 95% interval over rounds. Two runs are compared by
`ratio_test`, and many comparisons at once corrected with `holm`.
"""

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
    p90_ms: float | None  # tail percentiles: None without enough samples (see TAIL_MIN)
    p95_ms: float | None
    p99_ms: float | None
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
            p90_ms=tail(values, 90),
            p95_ms=tail(values, 95),
            p99_ms=tail(values, 99),
            max_ms=values[-1],
            cv=std / mean if mean > 0 else 0.0,
            samples_ms=tuple(float(v) for v in samples_ms),
        )


# A tail percentile is estimated only with at least this many samples beyond its rank.
TAIL_MIN = 100


def tail(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-th percentile where at least TAIL_MIN samples lie above its rank, else None:
    p99 of 200 samples is two samples' worth of guess."""
    if len(sorted_values) * (100.0 - q) / 100.0 < TAIL_MIN:
        return None
    return percentile(sorted_values, q)


def samples_needed(q: float) -> int:
    """How many samples `tail(values, q)` needs."""
    return math.ceil(TAIL_MIN * 100.0 / (100.0 - q))


def throughput_rows_per_s(batch_size: int, samples_ms: Sequence[float]) -> float:
    """Rows per second sustained over the whole series: rows over total time (not over the
    median, which overstates a rate when the latencies are skewed)."""
    total = math.fsum(samples_ms)
    if total <= 0:
        raise ValueError(f"the series took no time ({total} ms): no throughput")
    return batch_size * len(samples_ms) * 1000.0 / total


def median(values: Sequence[float]) -> float:
    return percentile(sorted(values), 50)


def bootstrap_medians(values: Sequence[float], resamples: int = 4000, seed: int = 0
                      ) -> list[float]:
    """Medians of `resamples` resamples (with replacement) of `values`, from a fixed seed."""
    import numpy as np

    data = np.asarray(values, dtype=np.float64)
    picks = np.random.default_rng(seed).integers(0, len(data), size=(resamples, len(data)))
    return np.median(data[picks], axis=1).tolist()


@dataclass(frozen=True)
class Estimate:
    """One case over its rounds: the median of the round medians and its 95% interval
    (percentile bootstrap over rounds), with the spread within a round (IQR / median)."""

    median_ms: float
    low_ms: float
    high_ms: float
    rounds: int
    spread: float

    @classmethod
    def from_rounds(cls, rounds: Sequence[Stats]) -> Estimate:
        if not rounds:
            raise ValueError("no rounds to estimate from")
        medians = [s.p50_ms for s in rounds]
        spread = median([s.iqr_ms / s.p50_ms if s.p50_ms > 0 else 0.0 for s in rounds])
        if len(medians) == 1:
            return cls(medians[0], medians[0], medians[0], 1, spread)
        boot = sorted(bootstrap_medians(medians))
        return cls(median(medians), percentile(boot, 2.5), percentile(boot, 97.5),
                   len(medians), spread)

    @property
    def half_width(self) -> float:
        """Half the interval's width relative to the median (0.05: +/- 5%)."""
        return (self.high_ms - self.low_ms) / 2 / self.median_ms if self.median_ms > 0 else 0.0


@dataclass(frozen=True)
class RatioTest:
    """new / base for one case, from the round medians of both runs.

    `p_slower` is the bootstrap probability that the ratio is at most 1 + threshold (small: the
    case is slower beyond the threshold), `p_faster` that it is at least 1 - threshold, and
    `p_same` that it lies outside +/- threshold (small: the case is the same within it).
    """

    ratio: float
    low: float
    high: float
    p_slower: float
    p_faster: float
    p_same: float


def ratio_test(base: Sequence[float], new: Sequence[float], threshold: float,
               resamples: int = 4000, seed: int = 0) -> RatioTest:
    """Bootstrap the ratio of medians new/base, resampling the rounds of each run apart."""
    import numpy as np

    ratios = (np.asarray(bootstrap_medians(new, resamples, seed + 1))
              / np.asarray(bootstrap_medians(base, resamples, seed)))
    ordered = np.sort(ratios)
    return RatioTest(
        ratio=median(new) / median(base),
        low=percentile(ordered.tolist(), 2.5), high=percentile(ordered.tolist(), 97.5),
        p_slower=float(np.mean(ratios <= 1 + threshold)),
        p_faster=float(np.mean(ratios >= 1 - threshold)),
        p_same=float(max(np.mean(ratios >= 1 + threshold), np.mean(ratios <= 1 - threshold))),
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given): a family of tests whose
    adjusted p-value is below alpha has a family-wise error rate of at most alpha."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
