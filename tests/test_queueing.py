"""The queueing model `advise` ranks configurations with: checked against queueing theory and
against what the batcher in `toolkit.serving` does. Nothing here is timed."""

from __future__ import annotations

import math
import statistics

from toolkit.queueing import Path, latencies, p99_at, peak, percentile


def test_one_worker_with_a_fixed_service_time_waits_as_md1_says():
    """M/D/1: at load rho, a query waits rho * s / (2 (1 - rho)) on average before service."""
    service = 1e-3
    path = Path({1: [service]})
    for rho in (0.5, 0.8):
        mean = statistics.fmean(latencies(path, rho / service, queries=40_000, seed=1))
        expected = service + rho * service / (2 * (1 - rho))
        assert abs(mean - expected) / expected < 0.06, (rho, mean, expected)


def test_a_lone_query_waits_the_batchers_delay_and_a_full_batch_does_not():
    path = Path({1: [1e-3], 8: [2e-3]}, max_batch=8, max_delay_s=5e-3)
    alone = latencies(path, rate=1.0, queries=50, seed=2)  # one query a second: never a batch
    assert all(abs(t - 6e-3) < 1e-9 for t in alone)  # the delay, then a call of one
    # at 100k q/s eight queries arrive within 0.1 ms: each batch leaves full, long before 5 ms
    busy = latencies(Path({1: [1e-6], 8: [2e-6]}, max_batch=8, max_delay_s=5e-3),
                     rate=100_000.0, queries=800, seed=2)
    assert statistics.median(busy) < 1e-3


def test_a_query_that_waited_longer_than_the_delay_is_sent_at_once():
    """The delay counts from the oldest query's arrival: with one slow worker, queries wait in
    the backlog past the delay, and the batcher sends them as soon as the worker is free."""
    path = Path({1: [4e-3], 2: [4e-3], 4: [4e-3]}, max_batch=4, max_delay_s=3e-3)
    times = latencies(path, rate=300.0, queries=3000, seed=3)
    # had the delay restarted when the worker took the backlog, a query that waited for the
    # worker would wait 3 ms more: p90 9.8 ms in this model, against 7.4 ms
    assert percentile(times, 90) < 8.5e-3


def test_two_workers_serve_about_twice_one_and_more_than_the_cores_do_not():
    service = {1: [1e-4 * (1 + 0.05 * k) for k in range(20)]}
    one, _ = peak(Path(service, workers=1, cores=2), 5e-3)
    two, _ = peak(Path(service, workers=2, cores=2), 5e-3)
    four, _ = peak(Path(service, workers=4, cores=2), 5e-3)
    assert 1.7 < two / one < 2.3
    assert four / two < 1.15  # four workers share two cores: each call takes twice as long


def test_the_peak_keeps_its_p99_within_the_bound_and_a_slow_model_has_none():
    path = Path({1: [2e-4] * 9 + [1e-3]}, workers=2)  # one call in ten is 5x slower
    rate, p99 = peak(path, 2e-3)
    assert rate > 0 and p99 <= 2e-3
    assert p99_at(path, rate * 1.2) > 2e-3 or rate * 1.2 > 2 / 2e-4
    assert peak(Path({1: [5e-3]}), 2e-3) == (0.0, math.inf)


def test_capacity_counts_a_batch_size_not_measured_as_the_next_one_up_and_bad_paths_refuse():
    import pytest

    # only 16 rows measured: a call of at most 4 costs what 16 do, so 4 rows a call at best
    path = Path({16: [1e-3]}, workers=1, max_batch=4)
    assert abs(path.capacity - 4 / 1e-3) < 1e-6
    assert abs(Path({1: [1e-3], 8: [2e-3]}, max_batch=8).capacity - 8 / 2e-3) < 1e-6
    assert Path({1: [1e-3]}, overhead_s=2e-3).capacity == 500.0  # the intake caps it
    for bad in ({}, {1: []}, {0: [1e-3]}):
        with pytest.raises(ValueError):
            Path(bad)
    with pytest.raises(ValueError):
        Path({1: [1e-3]}, workers=0)
    with pytest.raises(ValueError):
        latencies(Path({1: [1e-3]}), rate=100.0, queries=0)



def test_a_call_overhead_caps_unbatched_paths_and_batching_spreads_it():
    """Every call's serial cost (the GIL's share in a Python server) bounds the rate at
    1 / (intake + call overhead / rows a call), whatever the workers: batching raises it."""
    fast = {1: [5e-6], 8: [2e-5]}
    alone = Path(fast, workers=2, overhead_s=26e-6, call_overhead_s=53e-6)
    batched = Path(fast, workers=2, max_batch=8, max_delay_s=5e-4, overhead_s=26e-6,
                   call_overhead_s=53e-6)
    assert abs(alone.capacity - 1 / 79e-6) < 1.0
    assert abs(batched.capacity - 1 / (26e-6 + 53e-6 / 8)) < 1.0
    rate, _ = peak(alone, 5e-3)
    assert rate <= alone.capacity
    # the serial part queues: at 90% of the cap the p99 is above an idle call's
    assert p99_at(alone, 0.9 * alone.capacity) > 5e-6 + 53e-6
