"""The calibrate step a child runs: one pool kind serving a trivial model under LoadGen.

A LoadGen Server run at a rate far above what the pool can answer keeps every serial part of
the serving path (LoadGen's issue callback, the queue, the batcher, the answers, all under one
GIL) busy from its first query to its last; with a model that costs next to nothing, the rate
it completes is what those serial parts let through when they never wait. Served within a p99
bound they do wait (each query wakes the threads it passes), and cost more: so from the flood's
rate the sustained-peak search of `loadgen` finds the highest rate held within
CALIBRATION_P99_MS (or the spec's bound), and `toolkit.calibrate` fits the advisor's two serial
costs to those peaks, unbatched and batching.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit import busy
from toolkit.results import Record
from toolkit.scenarios import (
    BATCHING,
    LONGEST_SERVER_RUN_S,
    SERVER_QUERIES,
    ScenarioSettings,
    search_peak,
)
from toolkit.serving import Job, Pool
from toolkit.steps.scenario import GIL_SWITCH_S, ScenarioSpec, _pool, run_loadgen

FLOOD_QUERIES = 20_000  # each flood's queries: long enough that its start and end are noise
FLOOD_START_QPS = 400_000.0  # far above what a Python pool answers
FLOOD_OVER = 0.7  # a flood that completed more than this share of its target was not one
FLOOD_DOUBLINGS = 3  # so its target is doubled, at most this many times
FLOOD_RUNS = 3  # runs at the target that overwhelmed it: its rate is their median
FLOOD_MAX_BATCH = 16
FLOOD_DELAY_MS = 0.5  # the batcher's delay: short, as a flood's backlog fills batches anyway
CALIBRATION_P99_MS = 5.0  # the bound the trivial model's peaks are held within
PEAK_BISECT_TO = 0.10  # as a round of `loadgen`'s search
# the search's lowest rate, as `loadgen`'s: slower runs of its queries would outlast the child
PEAK_FLOOR_QPS = SERVER_QUERIES / LONGEST_SERVER_RUN_S
DEADLINE_MARGIN_S = 20.0  # the child stops searching this long before its timeout
# the pool kinds the advisor models, as the scenario step's variants that build them
POOL_VARIANTS = {"threads": "per-worker", "processes": "processes"}


@dataclass(frozen=True)
class CalibrateSpec:
    pool: str  # a key of POOL_VARIANTS
    artifact: str  # a trivial ONNX model
    inputs: str  # its inputs (.npz)
    logs: str  # the folder the floods' LoadGen logs go to
    workers: int = 1  # of one thread each
    queries: int = FLOOD_QUERIES
    intake_delay_s: float = 0.0  # a known cost added to each query's intake (`Pool`)
    budget_s: float = 240.0  # the child's timeout: a worker process may take a quarter to load
    p99_ms: float = CALIBRATION_P99_MS  # the bound the peaks are held within


def calibrate(spec: CalibrateSpec) -> Iterator[Record]:
    """One record per flood: unbatched, then batching up to FLOOD_MAX_BATCH."""
    if spec.pool not in POOL_VARIANTS:
        raise ValueError(f"unknown pool kind {spec.pool!r}; known: {', '.join(POOL_VARIANTS)}")
    sys.setswitchinterval(GIL_SWITCH_S)  # as a serving child runs
    started, share = time.monotonic(), (spec.budget_s - DEADLINE_MARGIN_S) / 2
    with np.load(spec.inputs) as archive:
        rows = len(archive[archive.files[0]])
    for index, batch in enumerate((1, FLOOD_MAX_BATCH)):
        deadline = started + share * (index + 1)  # half the time each: one cannot take all
        variant = POOL_VARIANTS[spec.pool] + (BATCHING if batch > 1 else "")
        settings = ScenarioSettings(scenario="server", max_delay_ms=FLOOD_DELAY_MS,
                                    batch_sizes=(batch,))
        scenario = ScenarioSpec(
            workload="calibrate", framework="onnx", runner="onnxruntime",
            artifact=spec.artifact, inputs=spec.inputs, provider="cpu", variant=variant,
            settings=settings.to_dict(), logs=spec.logs, workers=spec.workers, threads=1,
            budget_s=spec.budget_s)
        pool, applied = _pool(scenario, settings, "onnxruntime", spec.workers, 1, batch,
                              batch > 1)
        pool.intake_delay_s = spec.intake_delay_s
        calls = _count_calls(pool)
        try:
            info = _flood(pool, settings, batch, rows, Path(spec.logs) / variant, spec.queries,
                          calls)
            info.update(_peak(pool, batch, rows, Path(spec.logs) / variant / "peak",
                              info["completed_qps"], spec.p99_ms, deadline))
        finally:
            pool.close()
        yield Record(workload="calibrate", framework="onnx", phase="scenario",
                     runtime="onnxruntime", variant=variant, provider="cpu", batch_size=batch,
                     threads=1, settings=applied, throughput_rows_s=info["peak_qps"],
                     info={"pool": spec.pool, "workers": spec.workers, "max_batch": batch,
                           "max_delay_ms": FLOOD_DELAY_MS if batch > 1 else None,
                           "intake_delay_s": spec.intake_delay_s, **info})


def _count_calls(pool: Pool) -> list[int]:
    """A counter of the jobs the pool's batcher hands on (the calls a batching flood made)."""
    calls = [0]
    put = pool.put

    def counted(job: Job | None) -> None:
        calls[0] += 1
        put(job)

    if pool.batching:  # the unbatched path puts from the issue callback: left as it is
        pool.put = counted  # type: ignore[method-assign]
    return calls


def _flood(pool: Pool, settings: ScenarioSettings, batch: int, rows: int, logs: Path,
           queries: int, calls: Sequence[int]) -> dict[str, Any]:
    """A flood at FLOOD_START_QPS, doubled while the pool kept up with the target; its rate the
    median of FLOOD_RUNS runs at the target that overwhelmed the pool."""
    target, runs, overwhelmed = FLOOD_START_QPS, 0, False

    def run() -> dict[str, Any]:
        nonlocal runs
        runs += 1
        before_calls, ticks = calls[0], busy.cpu_ticks()
        result = run_loadgen(pool, settings, target, 1e-5, batch, rows, logs / f"{runs:02d}",
                             queries)
        steal = busy.steal_percent(ticks, busy.cpu_ticks())
        if pool.errors:
            raise RuntimeError(f"the model failed while flooded: {pool.errors[0]}")
        if not result.completed_qps:
            raise RuntimeError(f"LoadGen reported no completed rate (logs: {result.log})")
        made = calls[0] - before_calls
        return {"completed_qps": result.completed_qps, "steal_percent": steal,
                "mean_batch": (result.queries or queries) / made if made else None}

    for doubling in range(FLOOD_DOUBLINGS + 1):
        points = [run()]
        overwhelmed = points[0]["completed_qps"] <= FLOOD_OVER * target
        if overwhelmed or doubling == FLOOD_DOUBLINGS:
            break
        target *= 2
    points += [run() for _ in range(FLOOD_RUNS - 1)]
    stolen = [p["steal_percent"] for p in points if p["steal_percent"] is not None]
    batches = [p["mean_batch"] for p in points if p["mean_batch"] is not None]
    return {"target_qps": target, "overwhelmed": overwhelmed,
            "completed_qps": statistics.median(p["completed_qps"] for p in points),
            "runs_qps": [p["completed_qps"] for p in points], "loadgen_runs": runs,
            "steal_percent": max(stolen) if stolen else None,
            "mean_batch": statistics.median(batches) if batches else None,
            "queries_per_run": queries, "logs": str(logs)}


def _peak(pool: Pool, batch: int, rows: int, logs: Path, flood_qps: float, bound_ms: float,
          deadline: float) -> dict[str, Any]:
    """The highest rate the pool holds within `bound_ms` (the search of `loadgen`), started
    below the flood's rate, no lower than PEAK_FLOOR_QPS and with no run that would end past
    `deadline` (time.monotonic); RuntimeError where none is sustained."""
    settings = ScenarioSettings(scenario="server", p99_ms=bound_ms,
                                max_delay_ms=FLOOD_DELAY_MS, batch_sizes=(batch,))
    runs = [0]

    def run_at(rate: float) -> Any:
        runs[0] += 1
        result = run_loadgen(pool, settings, rate, 1e-5, batch, rows, logs / f"{runs[0]:02d}")
        if pool.errors:
            raise RuntimeError(f"the model failed while served: {pool.errors[0]}")
        return result

    def fits(rate: float) -> bool:
        return time.monotonic() + 1.5 * settings.server_queries(rate) / rate + 2.0 < deadline

    floor = min(PEAK_FLOOR_QPS, 0.5 * flood_qps)
    found = search_peak(run_at, max(0.5 * flood_qps, floor), bound_ms=bound_ms,
                        bisect_to=PEAK_BISECT_TO, floor_qps=floor, fits=fits)
    if found.peak_qps is None:  # one that passed once but ran out of runs still says the rate
        why = ("the machine is too busy to calibrate on" if found.cut_at is None else
               f"out of time before a run at {found.cut_at:,.0f} q/s: the machine is slow now")
        raise RuntimeError(f"the trivial model held no rate from {floor:,.0f} q/s up within "
                           f"p99 <= {bound_ms:g} ms ({found.kind}; {why}); logs: {logs}")
    return {"peak_qps": found.peak_qps, "peak_kind": found.kind, "peak_runs": runs[0],
            "p99_bound_ms": bound_ms}
