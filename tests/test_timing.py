import time

import pytest

from toolkit.errors import BadInputError
from toolkit.timing import Budget, time_once, time_series


def test_stops_after_min_iterations_when_min_time_is_zero():
    calls = []
    timing = time_series(lambda: calls.append(1), Budget(warmup=2, min_iterations=7, min_seconds=0,
                                                     max_seconds=5, warmup_seconds=0, blocks=1))
    assert timing.stats.n == 7
    assert len(calls) == 9  # warmup calls are not timed
    assert not timing.budget_exhausted


def test_keeps_going_until_min_seconds():
    timing = time_series(lambda: None, Budget(warmup=0, min_iterations=1, min_seconds=0.05,
                                          max_seconds=1))
    assert timing.stats.n > 1
    assert sum(timing.stats.samples_ms) < 50  # the samples hold only the calls


def test_max_seconds_caps_a_slow_call_and_warns():
    timing = time_series(lambda: time.sleep(0.02), Budget(warmup=0, min_iterations=100,
                                                      min_seconds=0, max_seconds=0.05))
    assert timing.budget_exhausted
    assert timing.stats.n < 100
    assert any("max_seconds" in w for w in timing.warnings())
    assert timing.stats.p50_ms >= 19


def test_time_once_measures_the_call():
    assert time_once(lambda: time.sleep(0.01)) >= 0.009


@pytest.mark.parametrize("kwargs", [
    {"warmup": -1}, {"min_iterations": 0}, {"max_seconds": 0}, {"min_seconds": 2, "max_seconds": 1},
    {"blocks": 0}, {"warmup_seconds": -1},
])
def test_budget_rejects_bad_values(kwargs):
    with pytest.raises(BadInputError):
        Budget(**kwargs)


def test_warmup_is_by_count_and_by_time():
    calls = []
    budget = Budget(warmup=2, warmup_seconds=0.05, min_iterations=1, min_seconds=0, blocks=1)
    started = time.perf_counter()
    time_series(lambda: calls.append(time.perf_counter()), budget)
    assert len(calls) > 3  # the 2 counted calls were not enough to fill 50 ms
    assert calls[-2] - started >= 0.05  # the last warmup call came after 50 ms


def test_the_collector_is_off_while_timing_and_back_on_after():
    import gc

    seen = []
    assert gc.isenabled()
    time_series(lambda: seen.append(gc.isenabled()), Budget(warmup=1, min_iterations=5,
                                                        min_seconds=0, warmup_seconds=0))
    assert seen and not any(seen)
    assert gc.isenabled()


def test_blocks_share_the_budget():
    budget = Budget(min_iterations=10, min_seconds=0.3, max_seconds=3.0, blocks=3)
    share = budget.share()
    assert (share.min_iterations, share.blocks, share.warmup) == (4, 1, 0)
    assert share.min_seconds == pytest.approx(0.1) and share.max_seconds == pytest.approx(1.0)
