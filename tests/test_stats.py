import math

import pytest

from toolkit.stats import (
    Estimate,
    Stats,
    holm,
    percentile,
    ratio_test,
    samples_needed,
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


def test_rounds_give_the_median_of_medians_and_an_interval_within_them():
    rounds = [Stats.from_ms([m, m, m]) for m in (10.0, 11.0, 13.0)]
    estimate = Estimate.from_rounds(rounds)
    assert estimate.median_ms == 11.0 and estimate.rounds == 3
    # with 3 rounds each extreme is the median of a resample a quarter of the time
    assert (estimate.low_ms, estimate.high_ms) == (10.0, 13.0)
    assert estimate.half_width == pytest.approx(1.5 / 11.0)
    same = Estimate.from_rounds([Stats.from_ms([5.0])] * 4)
    assert (same.low_ms, same.high_ms) == (5.0, 5.0)


def test_ratio_test_separated_runs():
    base, new = [1.00, 1.02, 0.99], [1.50, 1.48, 1.53]
    test = ratio_test(base, new, threshold=0.10)
    assert test.ratio == pytest.approx(1.50 / 1.00)
    assert 1.45 < test.low <= test.ratio <= test.high < 1.55
    assert test.p_slower == 0.0  # every resampled ratio is above 1.1
    assert test.p_faster == 1.0 and test.p_same == 1.0
    back = ratio_test(new, base, threshold=0.10)
    assert back.p_faster == 0.0 and back.p_slower == 1.0


def test_ratio_test_overlapping_runs_are_not_slower():
    base, new = [1.00, 1.20, 0.95], [1.10, 0.98, 1.25]
    test = ratio_test(base, new, threshold=0.10)
    assert test.p_slower > 0.05 and test.p_faster > 0.05
    assert test.low < 1.0 < test.high
    tight = ratio_test([1.0, 1.01, 0.99], [1.02, 1.0, 1.01], threshold=0.10)
    assert tight.p_same == 0.0  # every resampled ratio within +/- 10%


def test_holm_adjusts_in_order():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]
    assert holm([0.0, 0.0, 0.9]) == [0.0, 0.0, 0.9]
    assert holm([0.4, 0.4, 0.4]) == [1.0, 1.0, 1.0]
