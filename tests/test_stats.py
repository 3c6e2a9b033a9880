import math

import pytest

from toolkit.stats import Stats, percentile, throughput_rows_per_s


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
    assert stats.p50_ms == 2.5
    assert stats.p95_ms == pytest.approx(3.85)
    assert stats.p99_ms == pytest.approx(3.97)
    assert stats.cv == pytest.approx(math.sqrt(5 / 3) / 2.5)
    assert stats.samples_ms == (4.0, 1.0, 3.0, 2.0)  # raw order kept


def test_stats_from_ns_and_single_sample():
    stats = Stats.from_ns([2_000_000])
    assert stats.p50_ms == 2.0
    assert stats.std_ms == 0.0
    assert stats.cv == 0.0
    with pytest.raises(ValueError):
        Stats.from_ms([])


def test_throughput_is_rows_over_p50():
    assert throughput_rows_per_s(64, 2.0) == 32_000.0
    with pytest.raises(ValueError):
        throughput_rows_per_s(1, 0.0)
