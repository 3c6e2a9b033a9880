"""The timing protocol: warmup, then timed calls until a minimum count AND a minimum time.

The timed region holds one call of a zero-argument closure and nothing else; whatever the call
needs (inputs converted, bound to a device) is prepared by the runner before it hands the closure
over, and GPU synchronisation is part of that closure. The garbage collector is run before a
series and kept off during it (as timeit does), so a collection does not land in one sample.

Several series in one process (variants x batch sizes) are interleaved in blocks: each series
gets its share of the budget in turn, `blocks` times, so a slow spell of the machine touches them
all rather than whichever happened to run then.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from toolkit.errors import BadInputError
from toolkit.stats import Stats


@dataclass(frozen=True)
class Budget:
    """How long to time one (variant, batch size) in one process: warm up for `warmup` calls
    and `warmup_seconds`, then stop once min_iterations AND min_seconds are reached, or when
    max_seconds runs out; the timed calls are spread over `blocks` interleaved blocks."""

    warmup: int = 3
    min_iterations: int = 10
    min_seconds: float = 0.2
    max_seconds: float = 2.0
    warmup_seconds: float = 0.02
    blocks: int = 3

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.warmup_seconds < 0:
            raise BadInputError("timing.warmup and timing.warmup_seconds must be >= 0, got "
                                f"{self.warmup} and {self.warmup_seconds}")
        if self.min_iterations < 1:
            raise BadInputError(f"timing.min_iterations must be >= 1, got {self.min_iterations}")
        if self.min_seconds < 0 or self.max_seconds <= 0:
            raise BadInputError("timing.min_seconds must be >= 0 and timing.max_seconds > 0")
        if self.max_seconds < self.min_seconds:
            raise BadInputError(
                f"timing.max_seconds ({self.max_seconds}) is below timing.min_seconds "
                f"({self.min_seconds}); raise max_seconds"
            )
        if self.blocks < 1:
            raise BadInputError(f"timing.blocks must be >= 1, got {self.blocks}")

    def share(self) -> Budget:
        """The budget of one of `blocks` blocks."""
        return Budget(warmup=0, warmup_seconds=0.0, blocks=1,
                      min_iterations=math.ceil(self.min_iterations / self.blocks),
                      min_seconds=self.min_seconds / self.blocks,
                      max_seconds=self.max_seconds / self.blocks)


@dataclass(frozen=True)
class Timing:
    stats: Stats
    budget_exhausted: bool  # max_seconds ran out before min_iterations

    def warnings(self) -> tuple[str, ...]:
        if not self.budget_exhausted:
            return ()
        return ("fewer runs than timing.min_iterations before timing.max_seconds ran out: "
                "raise max_seconds for a steadier figure",)


def time_once(call: Callable[[], Any]) -> float:
    """Seconds taken by one call (for one-off phases: load, first inference)."""
    start = time.perf_counter_ns()
    call()
    return (time.perf_counter_ns() - start) / 1e9


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    """Collect garbage now, then keep the collector off until the block ends."""
    gc.collect()
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def warm_up(call: Callable[[], Any], budget: Budget) -> None:
    """At least `warmup` calls and `warmup_seconds` of calls."""
    deadline = time.perf_counter() + budget.warmup_seconds
    done = 0
    while done < budget.warmup or time.perf_counter() < deadline:
        call()
        done += 1


def _series(call: Callable[[], Any], budget: Budget, samples: list[int]) -> bool:
    """Time calls into `samples` until the budget's stopping rule; True if max_seconds ran
    out before min_iterations."""
    clock = time.perf_counter_ns
    min_ns = int(budget.min_seconds * 1e9)
    max_ns = int(budget.max_seconds * 1e9)
    count = 0
    started = clock()
    while True:
        t0 = clock()
        call()
        t1 = clock()
        samples.append(t1 - t0)
        count += 1
        elapsed = t1 - started
        if count >= budget.min_iterations and elapsed >= min_ns:
            return False
        if elapsed >= max_ns:
            return count < budget.min_iterations


def time_series(call: Callable[[], Any], budget: Budget) -> Timing:
    """Warm up, then time `call` until the budget's stopping rule is met (one series)."""
    found = time_interleaved({0: call}, budget)[0]
    if isinstance(found, Exception):
        raise found
    return found


def time_interleaved(calls: Mapping[Hashable, Callable[[], Any]], budget: Budget
                        ) -> dict[Hashable, Timing | Exception]:
    """Time several calls in one process, interleaved in `budget.blocks` blocks: each call is
    warmed up, then each gets one block's share of the budget in turn, `blocks` times over. A
    call that raises gets its exception as its result, and the others go on."""
    samples: dict[Hashable, list[int]] = {key: [] for key in calls}
    exhausted = dict.fromkeys(calls, False)
    failed: dict[Hashable, Exception] = {}
    share = budget.share()
    with collector_off():
        for key, call in calls.items():
            try:
                warm_up(call, budget)
            except Exception as exc:  # one call failing must not lose the others
                failed[key] = exc
        for _ in range(budget.blocks):
            for key, call in calls.items():
                if key in failed:
                    continue
                try:
                    exhausted[key] |= _series(call, share, samples[key])
                except Exception as exc:
                    failed[key] = exc
    return {key: failed.get(key) or Timing(Stats.from_ns(samples[key]), exhausted[key])
            for key in calls}
