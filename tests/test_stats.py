import math

import pytest

from toolkit.stats import (
    CHI2_AT_QUANTILE,
    MEDIAN_VARIANCE,
    PRIOR_DF,
    T975,
    TRIMMED_AT_QUANTILE,
    TRIMMED_MEAN,
    Z95,
    Estimate,
    Noise,
    Stats,
    holm,
    percentile,
    pooled_noise,
    round_effects,
    rounds_needed,
    samples_needed,
    shift_test,
    t_sf,
    tail,
    throughput_rows_per_s,
)


def test_percentile_interpolates_like_numpy():
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 90) == pytest.approx(3.7)
    assert percentile([5.0], 99) == 5.0


def test_percentile_rejects_bad_input():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_stats_on_known_sample():
    stats = Stats.from_ms([4.0, 1.0, 3.0, 2.0])
    assert stats.n == 4
    assert stats.mean_ms == 2.5
    assert stats.std_ms == pytest.approx(math.sqrt(5 / 3))
    assert (stats.min_ms, stats.max_ms) == (1.0, 4.0)
    assert (stats.p25_ms, stats.p50_ms, stats.p75_ms) == (1.75, 2.5, 3.25)
    assert stats.iqr_ms == 1.5
    assert (stats.p90_ms, stats.p95_ms, stats.p99_ms) == (None, None, None)  # 4 samples
    assert stats.cv == pytest.approx(math.sqrt(5 / 3) / 2.5)
    assert stats.samples_ms == (4.0, 1.0, 3.0, 2.0)  # raw order kept


def test_tail_percentiles_need_a_hundred_samples_beyond_them():
    assert samples_needed(90) == 1000 and samples_needed(99) == 10000
    values = [float(v) for v in range(1, 1001)]
    assert tail(values, 90) == pytest.approx(900.1)
    assert tail(values, 95) is None  # 50 samples above the rank: a guess
    stats = Stats.from_ms(values)
    assert stats.p90_ms == pytest.approx(900.1) and stats.p99_ms is None


def test_stats_from_ns_and_single_sample():
    stats = Stats.from_ns([2_000_000])
    assert stats.p50_ms == 2.0
    assert stats.std_ms == 0.0
    assert stats.cv == 0.0
    with pytest.raises(ValueError):
        Stats.from_ms([])


def test_throughput_is_rows_over_total_time():
    # 3 calls of 64 rows in 1 + 1 + 4 ms: 192 rows in 6 ms, not 64 rows per 1 ms (the median)
    assert throughput_rows_per_s(64, [1.0, 1.0, 4.0]) == pytest.approx(32_000.0)
    with pytest.raises(ValueError):
        throughput_rows_per_s(1, [0.0])


def test_one_round_has_no_interval():
    estimate = Estimate.from_rounds([Stats.from_ms([1.0, 2.0, 3.0])])
    assert (estimate.median_ms, estimate.low_ms, estimate.high_ms) == (2.0, 2.0, 2.0)
    assert estimate.rounds == 1 and estimate.half_width == 0.0
    assert estimate.spread == pytest.approx(1.0 / 2.0)  # IQR 1.0 over median 2.0


def test_without_pooled_noise_rounds_give_their_range_and_say_so():
    rounds = [Stats.from_ms([m, m, m]) for m in (10.0, 11.0, 13.0)]
    estimate = Estimate.from_rounds(rounds)
    assert estimate.median_ms == 11.0 and estimate.rounds == 3
    assert (estimate.low_ms, estimate.high_ms, estimate.kind) == (10.0, 13.0, "range")
    assert Estimate.from_rounds(rounds[:1]).kind == "none"


def test_pooled_noise_reads_a_low_percentile_of_the_cases_log_variances():
    # every case varies by exactly 10% up and down: log variance ln(1.1)^2-ish, the same
    cases = [[v / 1.1, v, v * 1.1] for v in (1.0, 2.0, 5.0, 40.0)]
    noise = pooled_noise(cases)
    variance = math.log(1.1) ** 2  # of (-l, 0, +l) with l = ln 1.1: 2 l^2 / 2
    assert noise is not None and noise.cases == 4
    assert noise.sigma == pytest.approx(math.sqrt(variance / CHI2_AT_QUANTILE[1]))
    # with 4 rounds or more the slowest is left out: (-l, 0, 0, +l) keeps (-l, 0, 0), whose
    # variance is l^2 / 3, over where the 40th percentile of such a variance lies
    four = pooled_noise([[v / 1.1, v, v, v * 1.1] for v in (1.0, 2.0, 5.0)])
    assert four is not None and four.sigma == pytest.approx(
        math.sqrt(math.log(1.1) ** 2 / 3 / TRIMMED_AT_QUANTILE[0]))
    # one case slowed in a round moves a mean of variances, not this percentile
    slowed = pooled_noise([*cases, [1.0, 1.0, 1.7]])
    assert slowed is not None and slowed.sigma == pytest.approx(noise.sigma)
    assert pooled_noise(cases[:2]) is None and pooled_noise([[1.0]] * 9) is None


def test_slow_processes_in_most_cases_of_a_small_run_do_not_inflate_the_pooled_noise():
    """A one-model bench: 6 cases x 2 runs of 4 rounds at 5% noise, and a process slowed 1.5x
    in 8 of the 12 series. Each series' slowest round is left out, so the pool reads about 5%;
    the full variances' 40th percentile would read several times that (the gate then misses a
    1.3x change)."""
    rng = __import__("random").Random(3)
    series = []
    for case in range(12):
        rounds = [math.exp(rng.gauss(0.0, 0.05)) * (case + 1) for _ in range(4)]
        if case < 8:
            rounds[case % 4] *= 1.5
        series.append(rounds)
    noise = pooled_noise(series)
    assert noise is not None and 0.025 < noise.sigma < 0.08, noise
    full = sorted(_log_variance(s) for s in series)
    assert math.sqrt(full[len(full) * 2 // 5]) > 0.15  # what was pooled before


def _log_variance(values: list[float]) -> float:
    logs = [math.log(v) for v in values]
    mean = sum(logs) / len(logs)
    return sum((x - mean) ** 2 for x in logs) / (len(logs) - 1)


def test_an_estimate_with_pooled_noise_is_a_95_interval_on_the_log_scale():
    noise = Noise(0.05, 40)
    values = (10.0, 11.0, 12.0, 30.0)
    estimate = Estimate.from_rounds([Stats.from_ms([m]) for m in values], noise)
    # the pool's variance with PRIOR_DF degrees of freedom, the case's own without its slowest
    # round (rescaled to what 3 of 4 normal values spread by) with 2
    own = _log_variance([10.0, 11.0, 12.0]) / TRIMMED_MEAN[0]
    variance = (PRIOR_DF * 0.05 ** 2 + 2 * own) / (PRIOR_DF + 2)
    half = T975[PRIOR_DF + 2 - 1] * math.sqrt(variance * MEDIAN_VARIANCE[3])
    assert estimate.median_ms == 11.5 and estimate.kind == "interval"
    assert estimate.low_ms == pytest.approx(11.5 * math.exp(-half))
    assert estimate.high_ms == pytest.approx(11.5 * math.exp(half))
    # a case whose rounds spread widely (not one slow round) gets an interval beyond the pool's
    spread = Estimate.from_rounds([Stats.from_ms([m]) for m in (10.0, 13.0, 16.0, 20.0)], noise)
    assert spread.half_width > 2 * Z95 * 0.05 * math.sqrt(MEDIAN_VARIANCE[3])
    steady = Estimate.from_rounds([Stats.from_ms([m]) for m in (10.0, 10.5, 10.2, 10.4)], noise)
    assert steady.half_width < 0.06


def test_student_t_tail_matches_scipy():
    from scipy import stats as scipy_stats  # scikit-learn's dependency, here to check against

    for df in (1, 2, 3, 5, 7, 10, 30, 200):
        for t in (-6.0, -2.0, -0.3, 0.0, 0.5, 1.96, 2.776, 4.0, 12.0):
            assert t_sf(t, df) == pytest.approx(scipy_stats.t.sf(t, df), rel=1e-9, abs=1e-14)
    # the table of 97.5th percentiles agrees with the tail it is read against
    for df, q in enumerate(T975, start=1):
        assert t_sf(q, df) == pytest.approx(0.025, rel=2e-3)


def test_the_shift_tests_p_values_and_interval_share_one_t_and_standard_error():
    noise = Noise(0.05, 40)
    base, new = [1.00, 1.02, 0.99, 1.5], [1.30, 1.32, 1.29, 1.31]
    test = shift_test(base, new, noise, threshold=0.10)
    assert test.ratio == pytest.approx(1.29 / 0.99)  # the fastest rounds
    assert test.df == PRIOR_DF + 4  # each run's own rounds without its slowest: 2 + 2
    d = math.log(test.ratio)
    se = (math.log(test.high) - d) / T975[test.df - 1]
    assert test.p_slower == pytest.approx(t_sf(d / se, test.df))
    assert test.p_faster == pytest.approx(1 - test.p_slower)
    # BASE's slow round is left out of its own spread: 1.3x reads slower
    assert test.p_slower < 1e-3 and test.low > 1.15 and test.p_same > 0.5
    # a slow process in NEW's rounds does not move the fastest round
    lucky = shift_test([1.0, 1.0, 1.01, 0.99], [1.0, 1.6, 1.01, 0.99], noise, 0.10)
    assert lucky.ratio == 1.0 and lucky.p_slower == pytest.approx(0.5)
    same = shift_test([1.0, 1.01, 0.99, 1.0], [1.0, 1.0, 1.01, 0.99], Noise(0.01, 40), 0.10)
    assert same.p_same < 1e-5 and same.low < 1.0 < same.high
    # one-sided p below 2.5% exactly where the 95% interval leaves 1 out
    rng = __import__("random").Random(3)
    for _ in range(300):
        shift = rng.uniform(-0.15, 0.15)
        b = [math.exp(rng.gauss(0, 0.05)) for _ in range(4)]
        n = [math.exp(shift + rng.gauss(0, 0.05)) for _ in range(4)]
        found = shift_test(b, n, Noise(0.05, 12), 0.10)
        if abs(found.p_slower - 0.025) > 1e-3:
            assert (found.p_slower < 0.025) == (found.low > 1), found
        if abs(found.p_faster - 0.025) > 1e-3:
            assert (found.p_faster < 0.025) == (found.high < 1), found


def test_a_pool_of_few_cases_weighs_as_many_degrees_of_freedom():
    """The pool read off two matched cases counts 2 degrees of freedom, not PRIOR_DF: its
    interval is wider than the same spread pooled over many cases."""
    base, new = [1.0, 1.05, 0.97], [1.1, 1.02, 1.06]
    few = shift_test(base, new, Noise(0.05, 2), 0.10)
    many = shift_test(base, new, Noise(0.05, 40), 0.10)
    assert few.df == 2 + 4 and many.df == PRIOR_DF + 4  # 3 rounds: none left out
    assert few.high / few.low > many.high / many.low


def test_a_case_that_varies_where_the_pool_does_not_keeps_an_interval():
    """A pool of exactly zero (identical rounds in most cases) and a case whose own rounds
    spread: its interval comes from its own spread, not a point that calls it the same."""
    test = shift_test([1.0, 1.5, 2.0], [1.0, 1.5, 2.05], Noise(0.0, 40), threshold=0.10)
    assert test.low < 0.8 and test.high > 1.2 and test.p_same > 0.05
    # the equivalence test is read at the interval's width: an interval inside 1 +/- 10%
    # is always `same` (with a normal test at a t interval it could say less than it shows)
    rng = __import__("random").Random(5)
    inside = 0
    for _ in range(200):
        base = [math.exp(rng.gauss(0, 0.03)) for _ in range(4)]
        new = [math.exp(rng.gauss(0, 0.03)) for _ in range(4)]
        test = shift_test(base, new, Noise(0.03, 40), 0.10)
        if 1 - 0.10 < test.low and test.high < 1 + 0.10:
            inside += 1
            assert test.p_same < 0.05, test
    assert inside > 50


def test_round_effects_read_the_machines_move_off_every_case():
    drift = {1: 1.0, 2: 1.5, 3: 0.8}
    series = [{r: scale * d for r, d in drift.items()} for scale in (1.0, 3.0, 10.0)]
    series.append({1: 5.0, 2: 5.0 * 1.5 * 1.6, 3: 5.0 * 0.8})  # one case, one slow process
    series.append({1: 7.0})  # one round: says nothing
    effects = round_effects(series)
    logs = {r: math.log(d) for r, d in drift.items()}
    centre = sum(logs.values()) / 3
    assert effects == pytest.approx({r: x - centre for r, x in logs.items()})
    assert sum(effects.values()) == pytest.approx(0.0, abs=1e-12)
    assert round_effects([]) == {}


def test_rounds_needed_grow_with_the_noise():
    quiet = rounds_needed(Noise(0.03, 40), 40)
    louder = rounds_needed(Noise(0.05, 40), 40)
    assert quiet is not None and louder is not None and 2 <= quiet < louder
    assert rounds_needed(Noise(0.05, 6), 6) <= louder  # fewer cases: a milder correction
    # the fastest round resists slow processes but gains little from more rounds
    assert rounds_needed(Noise(0.10, 40), 40) is None


def test_holm_adjusts_in_order():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]
    assert holm([0.0, 0.0, 0.9]) == [0.0, 0.0, 0.9]
    assert holm([0.4, 0.4, 0.4]) == [1.0, 1.0, 1.0]


def test_wilson_bounds_hold_the_share_with_its_sampling_error():
    from toolkit.stats import rows_to_show, wilson_bounds

    low, high = wilson_bounds(100, 100)
    assert high == pytest.approx(1.0) and 0.97 < low < 0.98  # 100 of 100 cannot show 99%
    assert wilson_bounds(0, 0) == (0.0, 1.0)
    low, high = wilson_bounds(90, 100)
    assert low < 0.9 < high and high < 0.99
    needed = rows_to_show(0.99)
    assert wilson_bounds(needed, needed)[0] >= 0.99 > wilson_bounds(needed - 1, needed - 1)[0]


def test_mcnemar_counts_only_the_rows_that_changed():
    from toolkit.stats import mcnemar_p

    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(1, 0) == pytest.approx(0.5)  # one flip says nothing
    assert mcnemar_p(6, 0) == pytest.approx(1 / 64)
    assert mcnemar_p(10, 10) > 0.5  # as many gained as lost: no drop


def test_mcnemar_holds_on_many_rows_and_rows_to_show_follows_the_share_seen():
    from toolkit.stats import mcnemar_p, rows_to_show, wilson_bounds

    assert 0 < mcnemar_p(600, 500) < 0.01  # floats overflowed here
    assert rows_to_show(0.99, 0.98) is None  # below the share: no number of rows shows it
    needed = rows_to_show(0.99, 0.996)
    assert needed is not None and needed > 268
    assert wilson_bounds(round(0.996 * needed), needed)[0] >= 0.99
