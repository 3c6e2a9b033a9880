"""The scenario step a child runs: one option, served one way, under MLPerf LoadGen.

The option is a runtime on a provider served by a pool of workers; it runs in one scenario, at
each of the scenario's batch sizes.

The option becomes a system under test (`toolkit.serving`); LoadGen issues the queries, times
them from their scheduled moment and says whether each run is VALID. For Server without a
target rate, `toolkit.scenarios.search_peak` finds the highest valid rate, starting near what a
few single queries through the same pool suggest. Every LoadGen run keeps its logs under the
results folder (`loadgen/...`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit import busy, energy
from toolkit.errors import ProviderUnavailableError
from toolkit.results import Record
from toolkit.scenarios import (
    BATCHING,
    FAR_BELOW,
    HINTED_STEP,
    LOADGEN_NAMES,
    MLPERF_MIN_DURATION_S,
    PERCENTILE,
    SHORTEST_SERVER_RUN_S,
    STREAMS,
    LoadGenResult,
    ScenarioSettings,
    again_when_slow,
    batches_of,
    expected_latency_ns,
    min_queries,
    read_detail_log,
    search_peak,
    too_many_queries,
)
from toolkit.serving import (
    LoadSpec,
    Pool,
    ProcessPool,
    ThreadPool,
    fixed_batch_fits,
    rows_predict,
    serving_settings,
    warm_sizes,
)

# The call each runtime serves with: what a server built on it would make (not keras predict,
# whose per-call overhead no server pays).
SERVING_CALL = {"onnxruntime": "run", "native_torch": "inference_mode",
                "native_keras": "tf.function", "native_sklearn": "predict"}
PROBE_SECONDS = 0.3
RESIZE = 2  # runs made again, sized from what LoadGen measured, when one ended too soon
NO_AUDIT_CONFIG = "no-audit.config"  # the audit config LoadGen is given: never there
# How long a Python thread in a serving child may hold the GIL while another waits for it
# (Python's default is 5 ms). LoadGen's issuing thread, the batcher, the answer reader and
# thread workers all need it for every query: at 5 ms, one waiting behind another puts a floor
# of milliseconds under the p99 at every rate, whatever the load.
GIL_SWITCH_S = 0.0005


@dataclass(frozen=True)
class ScenarioSpec:
    workload: str
    framework: str
    runner: str
    artifact: str
    inputs: str
    provider: str
    variant: str  # shared, per-worker, processes; +batching
    settings: dict[str, Any]  # ScenarioSettings.to_dict()
    logs: str  # the folder this option's LoadGen logs go to
    workers: int = 1  # the pool (`ScenarioSettings.layout`): this many workers ...
    threads: int = 1  # ... of this many threads each
    optimization: str = "all"
    session: dict[str, Any] = field(default_factory=dict)  # ONNX Runtime's other options
    budget_s: float = 540.0  # a search starts no run that would end after this (the timeout)
    round: int = 1  # which round of the option's server search this is
    # each batch size's sustained peak in the round before (str(batch) -> q/s): where this
    # round's search starts, moving by HINTED_STEP
    start_qps: dict[str, float] = field(default_factory=dict)
    tag: str = ""  # what its records say in info["tag"] (advise: which configuration it is)


def scenario_case(spec: ScenarioSpec) -> Iterator[Record]:
    """One record per batch size: LoadGen's verdict and figures, and for a Server search every
    rate it tried."""
    settings = ScenarioSettings.from_dict(spec.settings)
    deadline = time.monotonic() + spec.budget_s
    sys.setswitchinterval(GIL_SWITCH_S)
    base = _base(spec, settings)
    for batch in batches_of(settings, spec.variant):
        started = time.perf_counter()
        speed_before = busy.core_speed()  # how fast the cores were, before and after
        made = _made(spec, settings, base, batch)
        if isinstance(made, Record):
            yield made
            continue
        pool, applied = made
        try:
            info = _run(pool, settings, batch, Path(spec.logs) / f"b{batch}", spec.inputs,
                        deadline, base["device"], speed_before,
                        spec.start_qps.get(str(batch)))
        finally:
            pool.close()
        yield _record(spec, settings, base, batch, pool, applied, info, started,
                      (speed_before, busy.core_speed()))


@dataclass(frozen=True)
class LockstepSpec:
    """A round of several options' server searches, in lockstep (`scenario_lockstep`)."""

    options: list[dict[str, Any]]  # a ScenarioSpec's fields (no "task") for each option
    budget_s: float = 540.0  # no search starts a run that would end after this


@dataclass
class _Searched:
    """One option at one batch size in a lockstep round: its pool, and what its search gave."""

    spec: ScenarioSpec
    settings: ScenarioSettings
    base: dict[str, Any]
    batch: int
    pool: Pool
    applied: dict[str, Any]
    info: dict[str, Any] | None = None
    error: str | None = None
    closed: bool = False  # its pool was closed when its search ended

    @property
    def name(self) -> str:  # unique in the round: two runtimes may serve one variant
        return f"{self.spec.tag or self.spec.runner} {self.spec.variant} b{self.batch}"


def scenario_lockstep(spec: LockstepSpec) -> Iterator[Record]:
    """One round of every option's server search, the searches side by side: each option's
    pool is made and warmed first, then each search runs in a thread of its own and every probe
    and LoadGen run waits its turn (`toolkit.lockstep.Turns`), so step k of every search falls
    in one short span of the machine's time. Records as `scenario_case` makes them, each as
    soon as its search ends (a child that dies later keeps them), with `info["lockstep"]`: how
    many searches shared the round. A search that raises fails its own record only; one whose
    worker process dies, or that hangs, ends the child, as it would end its own."""
    from toolkit.lockstep import Turns

    deadline = time.monotonic() + spec.budget_s
    sys.setswitchinterval(GIL_SWITCH_S)
    started = time.perf_counter()
    speed_before = busy.core_speed()
    searched: list[_Searched] = []
    try:
        for fields in spec.options:
            option = ScenarioSpec(**fields)
            settings = ScenarioSettings.from_dict(option.settings)
            base = _base(option, settings)
            for batch in batches_of(settings, option.variant):
                made = _made(option, settings, base, batch)
                if isinstance(made, Record):
                    yield made
                    continue
                searched.append(_Searched(option, settings, base, batch, *made))
        turns = Turns([s.name for s in searched])
        ended: queue.SimpleQueue[Record] = queue.SimpleQueue()

        def search(entry: _Searched) -> None:
            with turns.member(entry.name):
                try:
                    entry.info = _run(
                        entry.pool, entry.settings, entry.batch,
                        Path(entry.spec.logs) / f"b{entry.batch}", entry.spec.inputs, deadline,
                        entry.base["device"], speed_before,
                        entry.spec.start_qps.get(str(entry.batch)),
                        gate=lambda: turns.turn(entry.name))
                except Exception as exc:  # this option's record fails; the others go on
                    entry.error = f"{type(exc).__name__}: {exc}"
                with turns.turn(entry.name):  # between the others' runs, not under them
                    entry.pool.close()
                    entry.closed = True
                    speed_after = busy.core_speed()
            ended.put(_ended(entry, len(searched), started, turns.held[entry.name],
                             (speed_before, speed_after)))

        threads = [threading.Thread(target=search, args=(entry,), daemon=True,
                                    name=f"search {entry.name}") for entry in searched]
        for thread in threads:
            thread.start()
        for _ in threads:
            yield ended.get()
    finally:
        for entry in searched:
            if not entry.closed:
                entry.pool.close()


def _ended(entry: _Searched, sharing: int, started: float, held: float,
           speeds: tuple[list[float] | None, list[float] | None]) -> Record:
    """A lockstep search's record, once it ended."""
    if entry.info is None:
        return Record(**entry.base, batch_size=entry.batch, status="failed",
                      reason=entry.error or "the search ended without a figure",
                      settings=entry.applied, info=_said(entry.spec, entry.settings))
    # its own figure's cost: the seconds its probe and runs held the turn, not the round's
    entry.info.update(lockstep=sharing, round_s=time.perf_counter() - started)
    return _record(entry.spec, entry.settings, entry.base, entry.batch, entry.pool,
                   entry.applied, entry.info, time.perf_counter() - held, speeds)


def _base(spec: ScenarioSpec, settings: ScenarioSettings) -> dict[str, Any]:
    """The fields every record of the option shares."""
    from toolkit.runners import RUNNERS

    return {"workload": spec.workload, "framework": spec.framework,
            "runtime": RUNNERS[spec.runner].runtime, "provider": spec.provider,
            "device": "cpu" if spec.provider == "cpu" else "cuda:0", "variant": spec.variant,
            "threads": spec.threads, "phase": "scenario", "round": spec.round}


def _made(spec: ScenarioSpec, settings: ScenarioSettings, base: dict[str, Any], batch: int
          ) -> tuple[Pool, dict[str, Any]] | Record:
    """The option's pool at `batch`, warmed, and the runtime's settings; or the record that
    says why it could not be made."""
    try:
        return _pool(spec, settings, base["runtime"], spec.workers, spec.threads, batch,
                     spec.variant.endswith(BATCHING))
    except ProviderUnavailableError as exc:
        return Record(**base, batch_size=batch, status="skipped", reason=str(exc),
                      info=_said(spec, settings))
    except RuntimeError as exc:  # a worker that cannot load or warm the model (the pools
        # say so as RuntimeError, whatever the runtime raised)
        return Record(**base, batch_size=batch, status="failed", reason=str(exc),
                      info=_said(spec, settings))


def _said(spec: ScenarioSpec, settings: ScenarioSettings) -> dict[str, Any]:
    """The info of a record with no figures: its scenario, and its tag where it has one."""
    return {"scenario": settings.scenario, **({"tag": spec.tag} if spec.tag else {})}


def _record(spec: ScenarioSpec, settings: ScenarioSettings, base: dict[str, Any], batch: int,
            pool: Pool, applied: dict[str, Any], info: dict[str, Any], started: float,
            speeds: tuple[list[float] | None, list[float] | None]) -> Record:
    """The option's record at `batch`, from what its search or run gave (`info`) and the
    cores' speeds before and after."""
    speed_before, speed_after = speeds
    if speed_before or speed_after:  # M steps/s of a pure-Python loop on each core
        info["core_speed"] = {
            "before": speed_before, "after": speed_after,
            "seconds": busy.core_speed_seconds(),
            "fastest_seen": busy.fastest_seen(busy.fastest_of([speed_before, speed_after]))}
    batching = spec.variant.endswith(BATCHING)
    info.update(gil_switch_ms=sys.getswitchinterval() * 1e3,
                workers=spec.workers, threads_per_worker=spec.threads,
                call=SERVING_CALL[spec.runner],
                pool="processes" if isinstance(pool, ProcessPool) else "threads",
                sessions=_sessions(spec.variant, base["runtime"], spec.workers),
                max_batch=batch if batching else None,
                max_delay_ms=settings.delay_ms if batching else None)
    if spec.tag:
        info["tag"] = spec.tag
    warnings = [w for w in (settings.short if info.get("loadgen_runs") else None,
                            info.pop("warning", None)) if w]
    return Record(**base, batch_size=batch, seconds=time.perf_counter() - started,
                  settings=applied, throughput_rows_s=info.get("samples_per_s"),
                  warnings=tuple(warnings), info=info)


def _sessions(variant: str, runtime: str, workers: int) -> str:
    if variant.startswith("processes"):
        return f"one per worker process ({workers})"
    if variant.startswith("shared"):
        return "one shared"
    what = "session" if runtime == "onnxruntime" else "model"
    return f"one {what} per worker thread ({workers})"


def _pool(spec: ScenarioSpec, settings: ScenarioSettings, runtime: str, workers: int, threads: int,
          batch: int, batching: bool) -> tuple[Pool, dict[str, Any]]:
    """The option as a pool of workers; and the runtime's settings, read back."""
    from toolkit.runners import RUNNERS, RunnerConfig

    max_batch = batch if batching else 1
    split = batch if settings.scenario in ("offline", "multistream") else 1
    delay = settings.delay_ms / 1e3
    call = SERVING_CALL[spec.runner]
    sizes = warm_sizes(max_batch, split)  # every worker warmed before the first LoadGen run
    if spec.variant.startswith("processes"):
        load = LoadSpec(spec.runner, spec.artifact, spec.inputs, call, spec.provider, threads,
                        sizes, spec.optimization, tuple(sorted(spec.session.items())),
                        settings.spinning)
        pool = ProcessPool(load, workers, max_batch, delay, split,
                           start_timeout_s=spec.budget_s / 4)
        return pool, pool.settings
    config = RunnerConfig(provider=spec.provider, threads=threads,
                          optimization=spec.optimization, spinning=settings.spinning,
                          session=tuple(sorted(spec.session.items())))
    with np.load(spec.inputs) as archive:
        x = {name: archive[name] for name in archive.files}
    count = 1 if spec.variant.startswith("shared") else workers  # else one each
    runners = [RUNNERS[spec.runner].load(Path(spec.artifact), config) for _ in range(count)]
    fixed_batch_fits(runners[0], max(max_batch, split))  # else a skip with why
    predicts = [rows_predict(runners[n % count], call, x) for n in range(workers)]
    rows = len(next(iter(x.values())))
    return (ThreadPool(predicts, max_batch, delay, split, rows=rows),
            serving_settings(runners[0]))


def _run(pool: Pool, settings: ScenarioSettings, batch: int, logs: Path, inputs: str,
         deadline: float, device: str = "cpu", speeds: list[float] | None = None,
         last_peak: float | None = None,
         gate: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext
         ) -> dict[str, Any]:
    """The scenario's LoadGen run(s) on `pool`: a Server search, or one run. `speeds`: each
    core's speed before the pool started (a failed search run after which a core reads
    slower than that is made again); `last_peak`: the sustained peak of the round before,
    where the search starts; `gate`: what each probe and LoadGen run waits in (its turn,
    where options are searched in lockstep: `toolkit.lockstep`)."""
    with np.load(inputs) as archive:
        rows = len(archive[archive.files[0]])
    with gate():
        per_query = probe(pool, batch if settings.scenario in ("offline", "multistream")
                          else 1, rows)
        capacity, full_call = capacity_of(pool, settings.scenario, per_query, rows)
    bound = settings.bound_ms
    runs: list[int] = []
    meter, no_meter = energy.counter(device)

    def run_at(rate: float, queries: int | None = None,
               expected_s: float | None = None) -> LoadGenResult:
        runs.append(len(runs) + 1)
        folder = logs / f"{len(runs):02d}"
        with gate():
            before = meter.read() if meter else 0.0
            ticks = busy.cpu_ticks()
            result = run_loadgen(pool, settings, rate, expected_s or per_query, batch, rows,
                                 folder, queries)
            result = dataclasses.replace(result, steal_percent=busy.steal_percent(
                ticks, busy.cpu_ticks()))
            if meter:
                result = dataclasses.replace(result, joules=meter.read() - before)
        if pool.errors:
            raise RuntimeError(f"the model failed while serving: {pool.errors[0]}")
        return result

    def run_long_enough(rate: float) -> LoadGenResult:
        """A run; offline and the streams, where it ended before its minimum duration, made
        again sized from what LoadGen measured. A server run is never lengthened: every rate's
        runs have the same queries, so early stopping judges every option alike."""
        result = run_at(rate)
        for _ in range(RESIZE):  # LoadGen sized the run from our guess, and it ended too soon
            if result.valid or result.duration_met is not False:
                break
            expected = per_query
            if settings.scenario == "offline" and result.completed_qps:
                rate = result.completed_qps * 1.5  # the rate this option really answered at
            elif settings.scenario in STREAMS and result.latency_ms.get("mean"):
                expected = result.latency_ms["mean"] / 1e3 / 4  # more queries pre-generated
            else:
                break
            too_many = too_many_queries(settings, rate, expected)
            if too_many:  # the longer run LoadGen would need cannot be held
                result = dataclasses.replace(result, reason=f"{result.reason}; {too_many}")
                break
            result = dataclasses.replace(run_at(rate, expected_s=expected), extended=True)
        return result

    set_aside: list[dict[str, Any]] = []  # failed runs made again: a core read slow after them
    held_back: list[str] = []  # why a run was not made: LoadGen would hold too many queries

    def fits(rate: float) -> bool:
        """Whether a server run at `rate` would end before the deadline (with a margin), and
        its queries fit in memory."""
        too_many = too_many_queries(settings, rate, per_query)
        if too_many:
            held_back.append(too_many)
            return False
        if settings.compliant:
            seconds = MLPERF_MIN_DURATION_S
        else:
            seconds = settings.server_queries(rate) / max(rate, 1e-9)
        return time.monotonic() + 1.5 * seconds + 2.0 < deadline

    # a failed run after which a core reads slow is made again; not with spinning threads,
    # which would keep a core busy under the reading, nor in rounds, whose median outvotes a
    # slow spell (and the reading after every failed run would cost each round's search)
    run_steady = run_long_enough if settings.spinning or settings.round_count > 1 \
        else again_when_slow(
        run_long_enough, busy.core_speed, [speeds] if speeds else [], set_aside,
        slow=busy.UNSTEADY, fits=fits)
    info: dict[str, Any] = {"scenario": settings.scenario, "compliant": settings.compliant,
                            "probe_ms": per_query * 1e3, "logs": str(logs)}
    if full_call is not None:
        info["probe_full_batch_ms"] = full_call * 1e3
    if settings.scenario == "server" and not settings.compliant:
        info["queries_per_run"] = settings.query_count  # or more: `shortest_run_s` at a rate
        info["shortest_run_s"] = SHORTEST_SERVER_RUN_S
    elif not settings.compliant:
        info["duration_s"] = settings.run_s
    if settings.scenario != "offline":
        info["p99_bound_ms"] = bound
    if settings.scenario == "server" and settings.target_qps is None:
        if per_query * 1e3 > bound:  # no rate can be within the bound: say so, run nothing
            info.update(points=[], peak_qps=None, valid=False, latency_ms={},
                        reason=(f"one query alone took {per_query * 1e3:.3g} ms through this "
                                f"option, more than the {bound:g} ms bound: raise --p99-ms"),
                        loadgen_runs=0, samples_per_s=None, percentile=99.0)
            return info
        floor = 1.0 if settings.compliant else settings.query_count / settings.longest_s
        # a last peak far below what the probe says the pool can do (a round in a slow spell)
        # is started from, but left by doubling: in steps of HINTED_STEP the search ran out of
        # runs before it reached the pool's peak
        start, step = ((last_peak, HINTED_STEP if last_peak >= capacity * FAR_BELOW else 2.0)
                       if last_peak and last_peak > floor
                       else (max(capacity / 2, floor), 2.0))
        info["search_started_at_qps"] = start
        search = search_peak(run_steady, start, floor_qps=floor, fits=fits,
                             bound_ms=None if settings.compliant else bound, step=step,
                             bisect_to=settings.bisect_to)
        info.update(points=search.points, peak_qps=search.peak_qps, peak_kind=search.kind,
                    confirming_p99_ms=[p["latency_ms"].get("p99")
                                       for p in search.confirming],
                    failed_below_qps=search.failed_below, set_aside=set_aside)
        if search.cut_at is not None and held_back:
            info["warning"] = f"the search stopped before a run at {search.cut_at:,.0f} q/s: " \
                              + held_back[-1]
        elif search.cut_at is not None:
            info["warning"] = (f"the search stopped before a run at {search.cut_at:,.0f} q/s: "
                               "it would not end within --timeout; raise --timeout")
        elif search.peak_qps is not None and not search.bracketed:
            info["warning"] = (f"no rate above {search.peak_qps:,.0f} q/s failed: the peak "
                               "is higher than where the search stopped")
        elif search.peak_qps is None and search.points and not settings.compliant and min(
                p["target_qps"] for p in search.points) <= floor * 1.001:
            info["warning"] = (f"no rate down to {floor:,.0f} q/s was valid, and lower rates "
                               f"were not tried (a run of {settings.query_count} queries there "
                               f"would last over {settings.longest_s:g} s): give fewer "
                               "--queries, or a larger --p99-ms")
        elif search.kind == "unconfirmed":
            info["warning"] = (f"the best rate, {search.peak_qps:,.0f} q/s, passed once but "
                               f"the search ran out of runs before confirming it: not a "
                               "sustained peak")
        elif search.failed_below and search.peak_qps is not None:
            info["warning"] = (
                f"it failed the bound at {', '.join(f'{r:,.0f}' for r in search.failed_below)}"
                f" q/s, below its peak of {search.peak_qps:,.0f}: its p99 is higher at low "
                "load (a hand-over waits for an idle core to wake), so a machine given less "
                "than the peak may miss the bound")
        if set_aside:
            rates = ", ".join(f"{rate:,.0f}" for rate in sorted({p["target_qps"]
                                                                 for p in set_aside}))
            again = (f"{len(set_aside)} failed run(s), at {rates} q/s, made again: a core read "
                     f"over {busy.UNSTEADY:.0%} slow right after (`set_aside` in the record)")
            info["warning"] = f"{info['warning']}; {again}" if info.get("warning") else again
        if not search.points:
            info.update(valid=False, latency_ms={}, reason=info["warning"], loadgen_runs=0,
                        samples_per_s=None, percentile=99.0)
            return info
        best = search.peak_point or search.points[-1]
    else:
        target = settings.target_qps or capacity * batch * 1.5  # offline: samples per second
        too_many = too_many_queries(settings, target, per_query)
        if too_many:
            info.update(points=[], valid=False, latency_ms={}, reason=too_many, loadgen_runs=0,
                        samples_per_s=None, percentile=PERCENTILE[settings.scenario])
            return info
        result = run_long_enough(target)
        best = result.point(round(result.target, 3) if settings.scenario in (
            "server", "offline") and result.target else None)
        info.update(points=[best])
    info.update(target_qps=best["target_qps"], scheduled_qps=best["scheduled_qps"],
                valid=best["valid"], reason=best["reason"], latency_ms=best["latency_ms"],
                percentile=PERCENTILE[settings.scenario])
    if settings.scenario == "offline":
        info["samples_per_s"] = best["completed_qps"]
    elif settings.scenario == "server":
        info["samples_per_s"] = info.get("peak_qps", best["scheduled_qps"])
    else:  # MLPerf's figure: LoadGen's early-stopping estimate of the percentile
        name = f"p{PERCENTILE[settings.scenario]:g}"
        info["metric_ms"] = best["estimate_ms"].get(name, best["latency_ms"].get(name))
        info["within_bound"] = (info["metric_ms"] is not None
                                and info["metric_ms"] <= bound)
    info["loadgen_runs"] = len(runs)
    info["logs"] = str(logs)
    stolen = [p["steal_percent"] for p in info.get("points", [])
              if p.get("steal_percent") is not None]
    if stolen:
        info["steal_percent_max"] = max(stolen)
        if max(stolen) > busy.STEAL_NOISY:
            noisy = (f"the hypervisor gave up to {max(stolen):g}% of this machine's CPU time "
                     "to others during these runs (steal in /proc/stat): a noisy spell; run "
                     "it again on a quiet machine before acting on its figures")
            info["warning"] = f"{info['warning']}; {noisy}" if info.get("warning") else noisy
    if meter is None:
        info["energy_unmeasured"] = f"energy per prediction not measured: {no_meter}"
    elif best.get("joules") is not None and best.get("queries"):
        info["energy"] = meter.source
        info["joules_per_query"] = best["joules"] / best["queries"]
    return info


def capacity_of(pool: Pool, scenario: str, per_query: float, rows: int
                ) -> tuple[float, float | None]:
    """Queries per second the pool holds, roughly (a server search starts at half of it);
    and, for a batching server pool, the seconds one full batch took through it.

    A query alone waits out the batcher's delay, so `per_query` says little of what a batching
    pool holds: a full batch sent at once (one call) does. Started from that, a search begins
    in the busy range instead of climbing through the idle one, where each hand-over waits for
    a sleeping core and the tail is at its worst (a batching pool's peak can then be found an
    order of magnitude low)."""
    capacity = pool.workers / per_query
    if scenario != "server" or not pool.batching:
        return capacity, None
    full_call = probe(pool, pool.max_batch, rows)
    return max(capacity, pool.workers * pool.max_batch / full_call), full_call


def probe(pool: Pool, samples: int, rows: int, seconds: float = PROBE_SECONDS) -> float:
    """The median seconds one query of `samples` samples (one job: the pool's split covers it)
    takes through the pool, one at a time: where the search starts. The pool's workers were
    each warmed at every size they will be sent when it was made (`toolkit.serving.warm`)."""
    answered: list[int] = []
    done = threading.Condition()

    def complete(ids: Sequence[int]) -> None:
        with done:
            answered.extend(ids)
            done.notify_all()

    def ask(count: int) -> float:
        """Send `count` samples at once and wait until every one is answered."""
        with done:
            answered.clear()
        start = time.perf_counter()
        pool.issue([_Sample(i, i % rows) for i in range(count)])
        with done:
            if not done.wait_for(lambda: len(answered) >= count, timeout=60):
                raise RuntimeError("a probe query was not answered within 60 s: the model is "
                                   "stuck or far too slow to serve")
        return time.perf_counter() - start

    pool.bind(complete)
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while (time.perf_counter() < deadline or len(times) < 5) and len(times) < 1000:
        times.append(ask(samples))
    if pool.errors:
        raise RuntimeError(f"the model failed on a probe query: {pool.errors[0]}")
    return max(statistics.median(times), 1e-6)


@dataclass(frozen=True)
class _Sample:
    id: int
    index: int


def loadgen_settings(settings: ScenarioSettings, rate: float, per_query_s: float, batch: int,
                     queries: int | None = None) -> Any:
    """LoadGen's TestSettings for one run: MLPerf's rules (its built-in mlperf.conf) when
    compliant; else a server run of exactly its queries (no minimum duration), and other runs
    of --duration and at least `min_queries` of the scenario (or `queries`)."""
    import mlperf_loadgen as lg

    name = LOADGEN_NAMES[settings.scenario]
    test = lg.TestSettings()
    if settings.compliant:  # MLPerf's minimum duration, query counts and seeds
        if test.FromConfig("", "deploybench", name, 0) != 0:
            raise RuntimeError("LoadGen could not read its built-in mlperf.conf: the run "
                               "would not be compliant")
    elif settings.scenario == "server":  # LoadGen then makes exactly this many queries
        test.min_duration_ms = 0
        test.min_query_count = queries or settings.server_queries(rate)
    else:
        test.min_duration_ms = int(settings.run_s * 1e3)
        test.min_query_count = queries or min_queries(settings.scenario)
    test.scenario = getattr(lg.TestScenario, name)
    test.mode = lg.TestMode.PerformanceOnly
    test.server_target_qps = rate
    test.server_target_latency_ns = int(settings.bound_ms * 1e6)
    test.offline_expected_qps = rate
    # Expected latencies decide how many queries LoadGen generates: an underestimate is safe.
    test.single_stream_expected_latency_ns = expected_latency_ns(per_query_s)
    test.multi_stream_expected_latency_ns = expected_latency_ns(per_query_s)
    test.multi_stream_samples_per_query = batch
    return test


def run_loadgen(pool: Pool, settings: ScenarioSettings, rate: float, per_query_s: float,
                batch: int, rows: int, folder: Path, queries: int | None = None
                ) -> LoadGenResult:
    """One LoadGen run of the scenario on `pool`, its logs in `folder`."""
    import mlperf_loadgen as lg

    folder.mkdir(parents=True, exist_ok=True)
    test = loadgen_settings(settings, rate, per_query_s, batch, queries)
    log = lg.LogSettings()
    log.log_output.outdir = str(folder)
    log.log_output.copy_summary_to_stdout = False
    log.enable_trace = False

    def complete(ids: Sequence[int]) -> None:
        lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in ids])

    pool.bind(complete)
    sut = lg.ConstructSUT(pool.issue, lambda: None)
    qsl = lg.ConstructQSL(rows, rows, lambda indices: None, lambda indices: None)
    try:  # LoadGen would read an audit.config from the working folder, silently changing the
        # settings: it is pointed at a file of its own that does not exist
        lg.StartTestWithLogSettings(sut, qsl, test, log, str(folder / NO_AUDIT_CONFIG))
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    result = read_detail_log(folder / "mlperf_log_detail.txt", settings.scenario)
    return dataclasses.replace(result, log=str(folder), target=rate)
