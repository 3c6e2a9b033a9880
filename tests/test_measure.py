import time

import pytest

from toolkit.errors import BadInputError
from toolkit.measure import Budget, measure, time_once


def test_stops_after_min_iterations_when_min_time_is_zero():
    calls = []
    timing = measure(lambda: calls.append(1), Budget(warmup=2, min_iterations=7, min_seconds=0,
                                                     max_seconds=5))
    assert timing.stats.n == 7
    assert len(calls) == 9  # warmup calls are not timed
    assert not timing.budget_exhausted


def test_keeps_going_until_min_seconds():
    timing = measure(lambda: None, Budget(warmup=0, min_iterations=1, min_seconds=0.05,
                                          max_seconds=1))
    assert timing.stats.n > 1
    assert sum(timing.stats.samples_ms) < 50  # the samples hold only the calls


def test_max_seconds_caps_a_slow_call_and_warns():
    timing = measure(lambda: time.sleep(0.02), Budget(warmup=0, min_iterations=100,
                                                      min_seconds=0, max_seconds=0.05))
    assert timing.budget_exhausted
    assert timing.stats.n < 100
    assert any("max_seconds" in w for w in timing.warnings())
    assert timing.stats.p50_ms >= 19


def test_time_once_measures_the_call():
    assert time_once(lambda: time.sleep(0.01)) >= 0.009


@pytest.mark.parametrize("kwargs", [
    {"warmup": -1}, {"min_iterations": 0}, {"max_seconds": 0}, {"min_seconds": 2, "max_seconds": 1},
])
def test_budget_rejects_bad_values(kwargs):
    with pytest.raises(BadInputError):
        Budget(**kwargs)
