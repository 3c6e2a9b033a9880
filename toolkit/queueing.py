"""A queueing model of a serving path under Poisson arrivals, from measured service times.

The cheap trial of `deploybench advise`. Nothing here measures or sleeps.

A path is `workers` workers behind one dynamic batcher that behaves as `toolkit.serving`'s: when
a worker is free it takes the oldest waiting query and what else arrives until `max_delay_s`
after that query arrived (never past it), up to `max_batch` samples, and sends them as one call.
Without batching (`max_batch` 1) a free worker takes the next query at once. A call of b samples
takes a service time drawn from what was measured at b (the nearest measured size above, else
scaled from the largest), so the measured tail is kept. Workers that want more cores than the
machine has share them: each call then takes longer by that ratio. A Python server's serial
parts are two costs: the intake every query passes (`overhead_s`) and what every call costs
outside the runtime (`call_overhead_s`: the GIL's share of the hand-over and the answer), so
batching spreads the second over the calls' rows.

Closed-loop latency is not the p99 under load: queueing is what this adds. It is still a model
(the serial costs are two constants, not the GIL itself): `advise` confirms what it picks with
LoadGen.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

QUERIES = 2048  # as a LoadGen server run of deploybench (toolkit.scenarios.SERVER_QUERIES)
MODEL_BISECT_TO = 0.02  # `peak` bisects until good and bad rates are within this share


@dataclass(frozen=True)
class Path:
    """One way to serve: service times in seconds by batch size, and the pool in front."""

    service_s: Mapping[int, Sequence[float]]  # batch size -> measured seconds a call
    workers: int = 1
    max_batch: int = 1
    max_delay_s: float = 0.0
    threads_per_worker: int = 1
    cores: int = 0  # the machine's cores (0: as many as the workers want)
    overhead_s: float = 0.0  # what each query costs the one thread that takes it in (LoadGen,
    # the issue callback, the queue), one query after another, before the batcher sees it
    call_overhead_s: float = 0.0  # what each call costs outside the runtime, one call after
    # another (in a Python server, the GIL: the hand-over, the answer to LoadGen)

    def __post_init__(self) -> None:
        if not self.service_s or any(not times or min(times) < 0
                                     for times in self.service_s.values()):
            raise ValueError("service_s: give measured seconds (>= 0) for at least one size")
        if min(self.service_s) < 1 or self.workers < 1 or self.max_batch < 1:
            raise ValueError("batch sizes, workers and max_batch must be at least 1")

    @property
    def capacity(self) -> float:
        """The most queries a second the path can answer for long: at the call size that serves
        most, the lesser of what the workers answer (mean service times, as `_service` draws
        them: a size not measured costs what the next measured size up does) and what the
        serial parts let through (the intake for every query, the call overhead for every
        call)."""
        sizes = {b for b in self.service_s if b <= self.max_batch} | {self.max_batch}

        def at(size: int) -> float:
            calls = self.workers * size / (_mean_service(self, size) * self.slowdown)
            serial = self.overhead_s + self.call_overhead_s / size
            return min(calls, 1 / serial) if serial else calls

        return max(at(b) for b in sizes)

    @property
    def slowdown(self) -> float:
        """How much longer a call takes when the workers want more cores than there are."""
        wanted = self.workers * self.threads_per_worker
        return max(1.0, wanted / self.cores) if self.cores else 1.0


def _measured(path: Path, size: int) -> tuple[Sequence[float], float]:
    """The measured times a call of `size` samples is drawn from, and the factor applied: the
    next measured size up, else the largest scaled by the rows."""
    above = [s for s in sorted(path.service_s) if s >= size]
    if above:
        return path.service_s[above[0]], 1.0
    largest = max(path.service_s)
    return path.service_s[largest], size / largest


def _mean_service(path: Path, size: int) -> float:
    times, factor = _measured(path, size)
    return sum(times) / len(times) * factor


def _service(path: Path, size: int, rng: random.Random) -> float:
    """A service time for a call of `size` samples."""
    times, factor = _measured(path, size)
    return rng.choice(times) * factor * path.slowdown


def latencies(path: Path, rate: float, queries: int = QUERIES, seed: int = 0) -> list[float]:
    """Each query's seconds from its scheduled arrival to its answer (as LoadGen counts), for
    `queries` Poisson arrivals at `rate`. Arrivals and service times are drawn apart, so the
    same seed gives the same arrivals (scaled) at every rate."""
    if rate <= 0 or queries < 1:
        raise ValueError(f"rate {rate} and queries {queries} must be > 0")
    arrivals_rng, rng = random.Random(2 * seed), random.Random(2 * seed + 1)
    scheduled, t = [], 0.0
    for _ in range(queries):
        t += arrivals_rng.expovariate(rate)
        scheduled.append(t)
    arrivals, ready = [], 0.0  # when the batcher sees each: taken in one after another
    for t in scheduled:
        ready = max(t, ready) + path.overhead_s
        arrivals.append(ready)
    free = [0.0] * path.workers  # when each worker is next free
    done: list[float] = []
    batcher_free = 0.0  # one batcher: it forms one call at a time
    serial_free = 0.0  # when the serial part of a call is next free
    i = 0
    while i < queries:
        worker_free = heapq.heappop(free)
        start = max(worker_free, batcher_free, arrivals[i])
        if path.max_batch > 1:
            deadline = max(arrivals[i] + path.max_delay_s, start)
            last = i + path.max_batch - 1  # the query that would fill the batch
            full = arrivals[last] if last < queries else math.inf
            send = min(deadline, max(full, start))  # full, or the delay is up
            end = i
            while end < queries and end - i < path.max_batch and arrivals[end] <= send:
                end += 1
        else:
            send, end = start, i + 1
        finish = send + _service(path, end - i, rng)
        if path.call_overhead_s:  # the answer's serial part: one call's after another's
            finish = serial_free = max(finish, serial_free) + path.call_overhead_s
        done.extend(finish - scheduled[k] for k in range(i, end))
        heapq.heappush(free, finish)
        batcher_free = send
        i = end
    return done


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def p99_at(path: Path, rate: float, queries: int = QUERIES, seed: int = 0) -> float:
    return percentile(latencies(path, rate, queries, seed), 99.0)


def peak(path: Path, bound_s: float, queries: int = QUERIES, seed: int = 0) -> tuple[float, float]:
    """The highest Poisson rate whose p99 stays within `bound_s` and that the path can answer
    for long (at most its `capacity`: a run of a few thousand queries can stay within the bound
    past it while its queue grows), and the p99 there; (0, inf) when none is. The same
    arrivals at every rate (one seed), so the p99 grows with the rate: halving from the
    capacity finds a good rate, bisection the edge."""
    capacity = path.capacity

    def within(rate: float) -> tuple[bool, float]:
        tail = p99_at(path, rate, queries, seed)
        return tail <= bound_s and rate <= capacity, tail

    good, good_p99 = 0.0, math.inf
    rate = capacity
    while True:  # down until a rate is good, then up until one is bad
        passed, tail = within(rate)
        if passed:
            good, good_p99 = rate, tail
            break
        if rate < capacity / 1024:
            return 0.0, math.inf  # the tail alone breaks the bound
        rate /= 2
    bad = rate * 2
    while bad - good > MODEL_BISECT_TO * good:
        middle = (good + bad) / 2
        passed, tail = within(middle)
        if passed:
            good, good_p99 = middle, tail
        else:
            bad = middle
    return good, good_p99
