"""Pure statistics over timing samples: no clock, no I/O.

One timed series (one child, one variant, one batch size) is summarised by `Stats`. The same
case measured in several rounds (fresh processes) is summarised by `Estimate`: the median of the
round medians, and its 95% interval. Two runs are compared by `shift_test`, and many
comparisons at once corrected with `holm`.

With a few rounds a case cannot say how much processes vary by itself (a percentile bootstrap
of 3 values gives their range, which covers the true median about 75% of the time). So the
variation between rounds is borrowed from all the cases of a run (`pooled_noise`): on a log
scale, where a machine's noise is about the same share of every case's time, each case without
its slowest round, and from a low percentile of the cases' variances: a slow process in a few
cases' rounds cannot move it. That pooled variation, moderated by the case's own spread
(`moderated`, as limma does, the pool weighing as many degrees of freedom as it has cases, at
most PRIOR_DF; the case's own without its slowest round), gives a case's interval, and a
comparison's interval, its test of "slower" or "faster" and its equivalence test, all three
from one standard error and one Student's t, so a verdict can never disagree with the interval
printed beside it. A comparison reads each case's fastest round in each run: slow processes
and slow spells only ever slow a round down, so the fastest is the round they spared
(`benchmarks/compare_sim.py` measures the false alarms and the detections).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from statistics import NormalDist


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


# The variance of the minimum and of the median of k independent standard normal values, for
# k = 1, 2, ... (order statistics; integrated numerically; beyond the table the last value,
# which overstates the variance, so errs on the side of no verdict).
MIN_VARIANCE = (1.0, 0.6817, 0.5595, 0.4917, 0.4475, 0.4159, 0.3919, 0.3729, 0.3574, 0.3443,
                0.3332, 0.3236, 0.3152, 0.3077, 0.301, 0.295, 0.2895, 0.2845, 0.2799, 0.2757,
                0.2718, 0.2681, 0.2647, 0.2615, 0.2585, 0.2557, 0.253, 0.2505, 0.2481, 0.2458)
MEDIAN_VARIANCE = (1.0, 0.5, 0.4487, 0.2981, 0.2868, 0.2145, 0.2104, 0.1682, 0.1661, 0.1383,
                   0.1372, 0.1174)
POOL_QUANTILE = 0.4  # which percentile of the cases' variances the pooled variation is read at
# chi2.ppf(POOL_QUANTILE, df) / df for df = 1 .. 30: where that percentile of a sample variance
# with df degrees of freedom lies, relative to the true variance
CHI2_AT_QUANTILE = (0.275, 0.51083, 0.62306, 0.68821, 0.7311, 0.76169, 0.78475, 0.80283,
                    0.81745, 0.82955, 0.83975, 0.8485, 0.85609, 0.86275, 0.86865, 0.87392,
                    0.87866, 0.88296, 0.88686, 0.89044, 0.89373, 0.89676, 0.89957, 0.90219,
                    0.90462, 0.9069, 0.90904, 0.91104, 0.91294, 0.91472)
# the same for a case of k = 4 .. 30 rounds whose slowest round is left out: the POOL_QUANTILE-th
# percentile of the variance of the lowest k - 1 of k standard normal values (simulated, 400 000
# draws per k; beyond the table the last value, which overstates the variance)
TRIMMED_FROM = 4  # rounds a case needs for its slowest to be left out (with 3, the 2 left say
# too little: over 40 cases at 5% noise the false alarms rose from 4.7% to 7.7% in simulation)
TRIMMED_AT_QUANTILE = (0.2997, 0.3952, 0.4608, 0.5079, 0.5473, 0.5762, 0.6041, 0.6251,
                       0.6427, 0.6603, 0.6753, 0.6873, 0.6992, 0.7092, 0.7198, 0.7285, 0.7364,
                       0.7447, 0.7513, 0.7581, 0.7639, 0.7704, 0.7754, 0.7807, 0.786, 0.7897,
                       0.7937)
# the mean variance of the lowest k - 1 of k standard normal values, k = 4 .. 30 (simulated,
# 400 000 draws per k): a case's own variance without its slowest round, divided by this, is
# the variance its rounds would have without slow processes
TRIMMED_MEAN = (0.631, 0.6683, 0.694, 0.7145, 0.7338, 0.7481, 0.7617, 0.7738, 0.7847, 0.7936,
                0.8015, 0.8098, 0.817, 0.8223, 0.8276, 0.8341, 0.8383, 0.8439, 0.848, 0.8518,
                0.855, 0.8584, 0.8625, 0.8648, 0.8677, 0.8709, 0.874)
MIN_POOLED = 3  # cases with rounds a pooled variation needs
Z95 = 1.959964
# how much the pooled variation weighs against a case's own, in degrees of freedom (the prior
# of limma's moderated t): a case whose rounds spread far more than the pool's (a slow process
# in one of them) gets a wider interval; see benchmarks/compare_sim.py for the coverage
PRIOR_DF = 4
# the 97.5th percentile of Student's t for 1 .. 30 degrees of freedom
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.16, 2.145, 2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06,
        2.056, 2.052, 2.048, 2.045, 2.042)


def order_variance(table: Sequence[float], k: int) -> float:
    """The variance of an order statistic (MIN_VARIANCE, MEDIAN_VARIANCE) of `k` draws, in
    units of one draw's."""
    return table[min(k, len(table)) - 1]


def _chi2_at_quantile(df: int) -> float:
    if df <= len(CHI2_AT_QUANTILE):
        return CHI2_AT_QUANTILE[df - 1]
    z = NormalDist().inv_cdf(POOL_QUANTILE)  # Wilson-Hilferty beyond the table
    return (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


@dataclass(frozen=True)
class Noise:
    """How much a case's round medians vary between processes: the standard deviation of their
    logarithm (0.05: about 5%), pooled over `cases` cases."""

    sigma: float
    cases: int


def _variance(logs: Sequence[float]) -> float:
    mean = math.fsum(logs) / len(logs)
    return math.fsum((x - mean) ** 2 for x in logs) / (len(logs) - 1)


def pooled_noise(groups: Iterable[Sequence[float]]) -> Noise | None:
    """The variation between rounds, pooled over cases: each case's round medians (a case with
    one round says nothing), on a log scale, without its slowest round where it has
    TRIMMED_FROM or more (a slow process only slows a round down); the POOL_QUANTILE-th
    percentile of the cases' variances over where that percentile of such a variance lies.
    Both make it robust to slow processes: with 6 cases of 4 rounds and one process in ten
    slowed 1.2-1.8x, untrimmed variances read the noise 2-3x too high in about one run in
    twenty. None with fewer than MIN_POOLED cases of two rounds or more."""
    scaled = []
    for values in groups:
        logs = sorted(math.log(v) for v in values if v > 0)
        if len(logs) < 2:
            continue
        if len(logs) < TRIMMED_FROM:
            scaled.append(_variance(logs) / _chi2_at_quantile(len(logs) - 1))
        else:
            at = TRIMMED_AT_QUANTILE[min(len(logs) - TRIMMED_FROM, len(TRIMMED_AT_QUANTILE) - 1)]
            scaled.append(_variance(logs[:-1]) / at)
    if len(scaled) < MIN_POOLED:
        return None
    return Noise(math.sqrt(percentile(sorted(scaled), POOL_QUANTILE * 100)), len(scaled))


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with `df` degrees of freedom: half the regularised incomplete
    beta function I_x(df/2, 1/2) at x = df / (df + t^2) (Numerical Recipes' continued
    fraction, to 1e-12)."""
    if df <= 0:
        raise ValueError("degrees of freedom must be positive")
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * _beta_regularised(df / (df + t * t), df / 2, 0.5)
    return tail if t >= 0 else 1.0 - tail


def _beta_regularised(x: float, a: float, b: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(x, a, b) / a
    return 1.0 - front * _beta_fraction(1.0 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    found = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            found *= c * d
        if abs(c * d - 1.0) < 1e-12:
            break
    return found


def t975(df: float) -> float:
    """The 97.5th percentile of Student's t with `df` degrees of freedom (beyond the table, the
    normal's with a first-order correction: within 0.2% there)."""
    if df >= len(T975) + 1:
        z = Z95
        return z + (z ** 3 + z) / (4 * df)
    return T975[max(1, int(df)) - 1]


def moderated(noise: Noise, *cases: Sequence[float]) -> tuple[float, float]:
    """One case's variation between rounds, moderated (limma, Smyth 2004), and the multiplier
    of its 95% interval (Student's t at its degrees of freedom): (sigma, multiplier). See
    `moderated_df`."""
    sigma, df = moderated_df(noise, *cases)
    return sigma, t975(df)


def moderated_df(noise: Noise, *cases: Sequence[float]) -> tuple[float, int]:
    """The pooled variance, weighing as many degrees of freedom as the pool has cases (at most
    PRIOR_DF: a pool read off two matched cases says little more than they do), and the case's
    own (its runs' log round medians about their own means; from TRIMMED_FROM rounds without
    the slowest, which a slow process moves, rescaled by TRIMMED_MEAN) with theirs, averaged by
    those weights: (sigma, the degrees of freedom of both)."""
    own, df = 0.0, 0
    for values in cases:
        logs = sorted(math.log(v) for v in values if v > 0)
        if len(logs) >= TRIMMED_FROM:
            at = TRIMMED_MEAN[min(len(logs) - TRIMMED_FROM, len(TRIMMED_MEAN) - 1)]
            own += _variance(logs[:-1]) / at * (len(logs) - 2)
            df += len(logs) - 2
        elif len(logs) >= 2:
            own += _variance(logs) * (len(logs) - 1)
            df += len(logs) - 1
    prior = max(1, min(PRIOR_DF, noise.cases))
    variance = (prior * noise.sigma ** 2 + own) / (prior + df)
    return math.sqrt(variance), prior + df


POOL_PER_RUNTIME = 8  # cases a runtime needs for a variation of its own (else the run's)


def pooled_by(groups: Mapping[str, Sequence[Sequence[float]]],
              series_per_case: int = 1) -> dict[str, Noise | None]:
    """The pooled variation of the whole run (key "") and of each group (a runtime: Keras'
    tf.function moves more between processes than ONNX Runtime) with POOL_PER_RUNTIME cases of
    rounds of its own, else the run's. `series_per_case`: how many of the series given make one
    case (2 where a comparison gives each matched case's base and new), so that `Noise.cases`
    and POOL_PER_RUNTIME count cases, not series."""
    def counted(noise: Noise | None) -> Noise | None:
        return noise if noise is None else Noise(noise.sigma,
                                                 max(1, noise.cases // series_per_case))

    everything = counted(pooled_noise([case for cases in groups.values() for case in cases]))
    found: dict[str, Noise | None] = {"": everything}
    for name, cases in groups.items():
        own = counted(pooled_noise(cases))
        found[name] = own if own is not None and own.cases >= POOL_PER_RUNTIME else everything
    return found


@dataclass(frozen=True)
class Estimate:
    """One case over its rounds: the median of the round medians, its 95% interval, and the
    spread within a round (IQR / median). `kind` says what low..high is: `interval` (a 95%
    interval, from the variation pooled over the run's cases moderated by the case's own,
    `moderated`), `range` (the lowest and highest
    round, where no variation could be pooled) or `none` (one round)."""

    median_ms: float
    low_ms: float
    high_ms: float
    rounds: int
    spread: float
    kind: str = "none"

    @classmethod
    def from_rounds(cls, rounds: Sequence[Stats], noise: Noise | None = None) -> Estimate:
        if not rounds:
            raise ValueError("no rounds to estimate from")
        medians = [s.p50_ms for s in rounds]
        spread = median([s.iqr_ms / s.p50_ms if s.p50_ms > 0 else 0.0 for s in rounds])
        middle = median(medians)
        if noise is not None and middle > 0:
            sigma, multiplier = moderated(noise, medians)
            half = multiplier * sigma * math.sqrt(order_variance(MEDIAN_VARIANCE, len(medians)))
            return cls(middle, middle * math.exp(-half), middle * math.exp(half), len(medians),
                       spread, "interval")
        if len(medians) == 1:
            return cls(middle, middle, middle, 1, spread)
        return cls(middle, min(medians), max(medians), len(medians), spread, "range")

    @property
    def half_width(self) -> float:
        """Half the interval's width relative to the median (0.05: +/- 5%)."""
        return (self.high_ms - self.low_ms) / 2 / self.median_ms if self.median_ms > 0 else 0.0


@dataclass(frozen=True)
class ShiftTest:
    """new / base for one case, from the round medians of both runs and the pooled noise.

    `ratio` is the ratio of the fastest rounds (a shared machine only ever slows a round down,
    by a slow process or a slow spell: the fastest round is the one it spared), `low`..`high`
    its 95% interval, from the moderated variance (`moderated_df`) and the variance of the
    fastest of k normal values. All three p-values come from that same ratio, standard error
    and Student's t: `p_slower` (`p_faster`) is the one-sided p-value of "no change" against
    slower (faster), so `p_slower < 0.025` is the interval lying above 1; `p_same` is the
    p-value of the equivalence test (TOST: two one-sided tests that the ratio lies within
    1 +/- threshold; small: the same).
    """

    ratio: float
    low: float
    high: float
    p_slower: float
    p_faster: float
    p_same: float
    df: int = 0


def shift_test(base: Sequence[float], new: Sequence[float], noise: Noise,
               threshold: float) -> ShiftTest:
    nb, nn = len(base), len(new)
    d = math.log(min(new)) - math.log(min(base))
    sigma, df = moderated_df(noise, base, new)
    se = sigma * math.sqrt(order_variance(MIN_VARIANCE, nb)
                           + order_variance(MIN_VARIANCE, nn)) or 1e-12  # none: values decide
    multiplier = t975(df)
    below = t_sf((d - math.log(1 - threshold)) / se, df)
    above = t_sf((math.log(1 + threshold) - d) / se, df)
    return ShiftTest(
        ratio=math.exp(d), low=math.exp(d - multiplier * se), high=math.exp(d + multiplier * se),
        p_slower=t_sf(d / se, df), p_faster=t_sf(-d / se, df), p_same=max(below, above),
        df=df)


def round_effects(series: Sequence[Mapping[int, float]]) -> dict[int, float]:
    """How much the machine moved every case in each round, where a round is a span of time in
    which each case ran once (two files measured side by side, rounds alternating): per round,
    the median over the cases of its log deviation from the case's mean over its rounds,
    centred to a mean of 0. Dividing a round's values by exp(effect) takes a drift of the
    machine out of them; a change of one case (or of all of one side) stays in its mean."""
    deviations: dict[int, list[float]] = {}
    for values in series:
        logs = {r: math.log(v) for r, v in values.items() if v > 0}
        if len(logs) < 2:
            continue
        mean = math.fsum(logs.values()) / len(logs)
        for r, x in logs.items():
            deviations.setdefault(r, []).append(x - mean)
    effects = {r: median(found) for r, found in deviations.items()}
    centre = math.fsum(effects.values()) / len(effects) if effects else 0.0
    return {r: e - centre for r, e in effects.items()}


def rounds_needed(noise: Noise, cases: int, change: float = 1.3, alpha: float = 0.05,
                  power: float = 0.95, most: int = 30) -> int | None:
    """The fewest rounds per run at which a case `change` times slower is called slower with
    `power`, among `cases` cases at family-wise `alpha` (two-sided, as `shift_test`'s verdicts
    are read), at this noise (None: more than `most`). A normal approximation of the
    fastest-round test, widened by Student's t over the normal at the degrees of freedom of
    both runs' own rounds and the pool's; the case's own slow rounds, which widen its test, are
    not in it, so it errs towards too few."""
    normal = NormalDist()
    needed = normal.inv_cdf(1 - alpha / 2 / max(cases, 1)) + normal.inv_cdf(power)
    for k in range(2, most + 1):
        widened = t975(min(PRIOR_DF, noise.cases) + 2 * (k - 1)) / Z95
        se = noise.sigma * math.sqrt(2 * order_variance(MIN_VARIANCE, k))
        if math.log(change) >= needed * widened * se:
            return k
    return None


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


Z95_ONE_SIDED = 1.644854


def wilson_bounds(successes: int, n: int, z: float = Z95_ONE_SIDED) -> tuple[float, float]:
    """The Wilson score interval of a proportion (successes of n); with the default z each
    bound is a one-sided 95% bound. (0, 1) for n = 0: nothing is known."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    if successes >= n:  # exact at the ends: the formula leaves a rounding hair below 1
        return wilson_bounds_low(n, z), 1.0
    if successes <= 0:
        return 0.0, 1.0 - wilson_bounds_low(n, z)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def wilson_bounds_low(n: int, z: float = Z95_ONE_SIDED) -> float:
    """The Wilson lower bound of n successes in n: n / (n + z^2)."""
    return n / (n + z * z)


def rows_to_show(share: float, observed: float = 1.0, z: float = Z95_ONE_SIDED,
                 most: int = 10**7) -> int | None:
    """The fewest rows at which a share `observed` of them agreeing has a Wilson lower bound
    of `share` or more (all agreeing, 0.99: 268); None where no number of rows would (the
    observed share is below `share`) or more than `most` would be needed."""
    if observed < share or share >= 1:
        return None
    if share <= 0:
        return 1
    if observed >= 1:
        return math.ceil(z * z * share / (1 - share))
    low, high = 1, 1
    while wilson_bounds(round(observed * high), high, z)[0] < share:
        low, high = high, high * 2
        if high > most:
            return None
    while low < high:  # the bound grows with the rows at a fixed share (near enough)
        middle = (low + high) // 2
        if wilson_bounds(round(observed * middle), middle, z)[0] >= share:
            high = middle
        else:
            low = middle + 1
    return high


def mcnemar_p(lost: int, gained: int) -> float:
    """McNemar's exact one-sided test on paired right/wrong labels: the p-value of "no change"
    against "worse", from the rows only one of the two got right (`lost`: right before, wrong
    after; `gained`: the other way). Rows both got right or both got wrong say nothing."""
    total = lost + gained
    if total == 0:
        return 1.0
    # P(X >= lost) for X ~ Binomial(total, 1/2), in whole numbers (floats overflow past ~1030
    # rows); Python divides big integers exactly, rounding once
    return min(1.0, sum(math.comb(total, k) for k in range(lost, total + 1)) / 2 ** total)
