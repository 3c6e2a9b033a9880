"""The timing protocol: warmup, then timed calls until a minimum count AND a minimum time.

The timed region holds one call of a zero-argument closure and nothing else; whatever the call
needs (inputs converted, bound to a device) is prepared by the runner before it hands the closure
over, and GPU synchronisation is part of that closure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from toolkit.errors import BadInputError
from toolkit.stats import Stats

HIGH_CV = 0.10


@dataclass(frozen=True)
class Budget:
    """How long to time one (variant, batch size): stop once min_iterations AND min_seconds are
    reached, or when max_seconds runs out."""

    warmup: int = 3
    min_iterations: int = 10
    min_seconds: float = 0.2
    max_seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise BadInputError(f"timing.warmup must be >= 0, got {self.warmup}")
        if self.min_iterations < 1:
            raise BadInputError(f"timing.min_iterations must be >= 1, got {self.min_iterations}")
        if self.min_seconds < 0 or self.max_seconds <= 0:
            raise BadInputError("timing.min_seconds must be >= 0 and timing.max_seconds > 0")
        if self.max_seconds < self.min_seconds:
            raise BadInputError(
                f"timing.max_seconds ({self.max_seconds}) is below timing.min_seconds "
                f"({self.min_seconds}); raise max_seconds"
            )


@dataclass(frozen=True)
class Timing:
    stats: Stats
    budget_exhausted: bool  # max_seconds ran out before min_iterations

    def warnings(self) -> tuple[str, ...]:
        found = []
        if self.budget_exhausted:
            found.append(
                "fewer runs than timing.min_iterations before timing.max_seconds ran out: "
                "raise max_seconds for a steadier figure"
            )
        if self.stats.cv > HIGH_CV:
            found.append(
                f"high variation (cv above {HIGH_CV:.0%}): close other programs or raise "
                "timing.min_seconds"
            )
        return tuple(found)


def time_once(call: Callable[[], Any]) -> float:
    """Seconds taken by one call (for one-off phases: load, first inference)."""
    start = time.perf_counter_ns()
    call()
    return (time.perf_counter_ns() - start) / 1e9


def measure(call: Callable[[], Any], budget: Budget) -> Timing:
    """Warm up, then time `call` until the budget's stopping rule is met."""
    for _ in range(budget.warmup):
        call()
    clock = time.perf_counter_ns
    samples: list[int] = []
    min_ns = int(budget.min_seconds * 1e9)
    max_ns = int(budget.max_seconds * 1e9)
    started = clock()
    while True:
        t0 = clock()
        call()
        t1 = clock()
        samples.append(t1 - t0)
        elapsed = t1 - started
        if len(samples) >= budget.min_iterations and elapsed >= min_ns:
            exhausted = False
            break
        if elapsed >= max_ns:
            exhausted = len(samples) < budget.min_iterations
            break
    return Timing(stats=Stats.from_ns(samples), budget_exhausted=exhausted)
