"""`deploybench advise`: the search for how to serve a model best, confirmed under LoadGen.

Which runtime, recipe, threads, workers and batching serve a model at the highest sustained
rate within a p99 bound, an accuracy limit and a memory limit.

Three stages, each on the one executor, in one folder:
1. **Trials** (`trials/t<threads>/`): the model's options (native runtime, ONNX Runtime) and
   recipes timed call by call at the batch sizes a batcher sends (1-16 rows), in fresh children,
   at each thread count per worker; each recipe's accuracy judged by the statistics rule
   (`--max-quality-drop`); each option's memory. Then ONNX Runtime's fp32 file again with each
   of TRIAL_SESSIONS' session options (`trials/t<threads>-<option>/`), and with those that
   were faster alone together (`together`).
2. **Search** (`search.sqlite`): Optuna over every configuration of those options (workers,
   threads, batching and its delay, ONNX Runtime's session options); a configuration's rate
   within the bound comes from its measured service times fed to `toolkit.queueing` (Poisson
   arrivals, the batcher, the workers), which is a model, not a measurement.
3. **Confirmation** (`confirm/round-<N>/`, a candidate's logs in `loadgen/<role>-<hash>/`
   there): the front's best few and the
   default options under LoadGen Server, each with the sustained-peak search of `loadgen`, in
   CONFIRM_ROUNDS interleaved rounds, each round's configurations side by side in one child
   (their LoadGen runs taking turns) and their order flipping each round (pick, default;
   default, pick; ...). Each configuration's figure is the median of its rounds with the machine's
   effect per round taken out (`toolkit.rounds`); the pick is set against the best default
   round by round, as a ratio with its interval. Only a configuration that sustained a peak
   in most of its rounds may be picked.

`advice.json` keeps what each stage found; `--resume` finishes what an interrupted run left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import busy
from toolkit.confirmations import (
    SPINNING,
    Confirmed,
    Held,
    best_default,
    confirm_folder,
    held_over_rounds,
    model_error,
    model_errors,
    pick,
    spun,
    unspun,
)
from toolkit.errors import BadInputError
from toolkit.recipes import FP32, ONNX_RECIPES, QualityRule
from toolkit.results import Record, read_results, read_samples, write_atomic
from toolkit.rounds import PairedRatio, RoundPeaks, paired_ratio
from toolkit.scenarios import SHORTEST_SERVER_RUN_S
from toolkit.search import (
    Config,
    Limits,
    Outcome,
    Space,
    Tried,
    configurations,
    run_search,
    session_label,
)
from toolkit.timing import Budget

if TYPE_CHECKING:
    from toolkit.plans.steps import Sources

SIZES = (1, 2, 4, 8, 16)  # the call sizes timed: what a batcher of up to 16 sends
# Each trial series: enough calls for a tail (the queueing model draws from them), kept short
TRIAL_BUDGET = Budget(warmup=5, min_iterations=100, min_seconds=0.2, max_seconds=2.0, blocks=3)
DEFAULT_RECIPES = (FP32, "int8-dynamic", "int8-static")
DELAYS_MS = (0.1, 0.5, 1.0)  # batching delays tried (those under half the bound)
TRIALS = 150  # configurations the search evaluates at most
CONFIRM_BEST = 2  # the front's best configurations confirmed under LoadGen
# rounds each confirmed configuration is searched in, interleaved: three give a median, an
# interval, and a ratio to the best default from the rounds both met the same machine in
CONFIRM_ROUNDS = 3
LATER_ROUND_SHARE = 0.5  # a later round's search costs about this share of the first's (it
# starts from the last sustained peak and bisects coarser)
# A Python server's serial costs (`toolkit.queueing`), seconds a query and a call, by how the
# option is served: the unbatched peak is 1 / (query + call), a peak batching up to b about
# 1 / (query + call / b). Measured on the machine that serves (`toolkit.calibrate`); these,
# fitted by hand to LoadGen peaks on one machine (benchmarks/results/advise.md), stand in only
# where that measurement fails.
SERIAL_S = {"threads": (11.6e-6, 33.8e-6), "processes": (23e-6, 41e-6)}
SERIAL_FILE = "serial-costs.json"  # the costs a run's search used: a resume uses them again
# the calibration's trivial model, confirmed beside the candidates in every round (unbatched, in
# a pool of threads): the machine's speed in these rounds against the calibration's
CONTROL = "onnxruntime control"
CONTROL_WORKLOAD = "onnx/serial-control"
CONFIRM_TIMEOUT_S = (60.0, 600.0)  # each confirmation's timeout: its share of the budget, within
RUNS_PER_SEARCH = 14  # LoadGen runs a sustained-peak search takes, about
CONFIRM_RUN_S = 10.0  # a confirming run of a slow model lasts about this long
CONFIRM_LONGEST_RUN_S = 60.0  # and its search may go down to a rate where one lasts this long
# ONNX Runtime's session options timed beyond the trials' own (its defaults), each alone, for
# the fp32 option: the graph optimised at the basic level only; the CPU memory arena off; the
# memory pattern off. Spinning is not timed (one call at a time cannot show what spinning
# threads cost their neighbours under load): served sessions do not spin. The execution mode
# is not either: onnxruntime 1.31 reads a session made with ORT_PARALLEL back as
# sequential (its maintainers call the mode deprecated), so it would time the default again.
TRIAL_SESSIONS: tuple[tuple[tuple[str, Any], ...], ...] = (
    (), (("graph_optimization", "basic"),), (("memory_arena", False),),
    (("memory_pattern", False),))  # (): the default again, first: the others' control
MIN_CONFIRM_QUERIES = 512  # a run's least queries (LoadGen's early stopping needs 459 to pass)


@dataclass(frozen=True)
class Request:
    """What `advise` was asked, kept in advice.json (so --resume asks nothing again)."""

    target: str
    p99_ms: float
    max_quality_drop: str = "1%"
    memory_mb: float | None = None
    price: float | None = None  # USD per hour of a machine like this one
    need_qps: float | None = None  # the rate the service must sustain (as loadgen's)
    budget_s: float = 1200.0
    threads: tuple[int, ...] = ()  # per worker (default: 1 and every core)
    recipes: tuple[str, ...] = DEFAULT_RECIPES
    shapes: tuple[str, ...] = ()
    input_data: str | None = None
    cores: int = 0  # the cores a configuration may use (default: the physical cores)
    seed: int = 0
    controls: bool = True  # the calibration's trivial model confirmed in every round too
    # USD per hour by kind of node (`toolkit.kinds`): advise across a cluster's kinds
    prices: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if not (self.p99_ms > 0 and math.isfinite(self.p99_ms)):
            raise BadInputError(f"--p99-ms {self.p99_ms:g}: give a bound in ms > 0, e.g. 5")
        for flag, value in (("--memory-mb", self.memory_mb), ("--price", self.price),
                            ("--need-qps", self.need_qps)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise BadInputError(f"{flag} {value:g}: give a number > 0")
        for kind, usd in self.prices:
            if not (usd > 0 and math.isfinite(usd)):
                raise BadInputError(f"--price {kind}={usd:g}: give USD per hour > 0")
        if not self.budget_s > 0:
            raise BadInputError(f"--budget {self.budget_s:g} s: give a duration such as 20m")
        QualityRule.parse(self.max_quality_drop)  # a bad rule ends here, in one line
        unknown = [r for r in self.recipes if r != FP32 and r not in ONNX_RECIPES]
        if unknown:
            raise BadInputError(f"--recipes {','.join(unknown)}: advise tries fp32 and the "
                                f"ONNX recipes ({', '.join(ONNX_RECIPES)})")
        if any(t < 1 for t in self.threads):
            raise BadInputError("--threads: give whole numbers >= 1, e.g. 1,2")

    @property
    def rule(self) -> QualityRule:
        return QualityRule.parse(self.max_quality_drop)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "threads": list(self.threads),
                "recipes": list(self.recipes), "shapes": list(self.shapes),
                "prices": [list(p) for p in self.prices]}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Request:
        values = dict(raw)
        for name in ("threads", "recipes", "shapes"):
            values[name] = tuple(values.get(name) or ())
        values["prices"] = tuple((str(k), float(v)) for k, v in values.get("prices") or ())
        if "target_qps" in values:  # stored before advise's --target-qps became --need-qps
            values["need_qps"] = values.pop("target_qps")
        return cls(**values)


@dataclass
class Trials:
    """What the trials measured, by option (`onnxruntime fp32`, `native_torch fp32`, ...)."""

    workload: str = ""
    service_s: dict[tuple[str, int], dict[int, list[float]]] = field(default_factory=dict)
    # ONNX Runtime fp32 with other session options (TRIAL_SESSIONS): by option, threads and
    # the options that differ from the defaults
    sessions_s: dict[tuple[str, int, tuple[tuple[str, Any], ...]], dict[int, list[float]]] = \
        field(default_factory=dict)
    # by option and threads, size by size: the trials' median over the default session's timed
    # again beside the other session options (their times are scaled by it)
    session_drift: dict[tuple[str, int], dict[int, float]] = field(default_factory=dict)
    memory_mb: dict[tuple[str, int], float] = field(default_factory=dict)
    # by option and threads: the process's memory before the model was loaded (what the
    # workers of one process share)
    shared_mb: dict[tuple[str, int], float] = field(default_factory=dict)
    quality_drop: dict[str, float] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # option -> why it was not timed
    inaccurate: dict[str, str] = field(default_factory=dict)  # option -> its accuracy verdict
    cases: dict[str, tuple[str, str]] = field(default_factory=dict)  # option -> runner, recipe

    @property
    def options(self) -> tuple[str, ...]:
        timed = {option for option, _ in self.service_s}
        return tuple(sorted(timed, key=lambda o: (not o.startswith("onnxruntime fp32"), o)))

    def digest(self) -> str:
        """What the search's outcomes rest on, in a few characters: a resumed study must rest
        on the same measurements."""
        medians = {f"{o}@{t}": {b: sorted(v)[len(v) // 2] for b, v in sizes.items()}
                   for (o, t), sizes in sorted(self.service_s.items())}
        medians.update({f"{o}@{t} {session_label(s)}": {b: sorted(v)[len(v) // 2]
                                                       for b, v in sizes.items()}
                        for (o, t, s), sizes in sorted(self.sessions_s.items(), key=str)})
        text = json.dumps([medians, self.quality_drop, self.refused, self.inaccurate],
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def option_name(runner: str, recipe: str) -> str:
    return f"{runner} {recipe}"


def read_trials(folders: Mapping[int, Path], serving_call: Mapping[str, str],
                native_of: Callable[[str], str | None]) -> Trials:
    """The trials' records, as service times (seconds a call, by size) per option and threads
    per worker; each recipe's accuracy verdict; why an option could not be timed."""
    found = Trials()
    for threads, folder in sorted(folders.items()):
        path = folder / "results.json"
        _, records = read_results(path)
        samples = read_samples(path)
        for index, record in enumerate(records):
            runner = ("onnxruntime" if record.runtime == "onnxruntime"
                      else native_of(record.framework))
            if runner is None:
                continue
            found.workload = found.workload or record.workload_key
            option = option_name(runner, record.recipe)
            if record.phase == "parity" and record.recipe != FP32 and record.parity:
                _judge(found, option, record)
            before = record.info.get("rss_before_load_mb")
            if record.phase == "load" and isinstance(before, int | float) and before > 0:
                found.shared_mb[(option, threads)] = float(before)
            if record.phase != "infer" or record.variant not in ("", serving_call.get(runner)):
                continue  # "": a skipped or crashed case's records name no call
            found.cases[option] = (runner, record.recipe)
            if not record.ok or record.stats is None:
                found.refused.setdefault(option, record.reason or f"not timed ({record.status})")
                continue
            seconds = _seconds(record, samples.get(str(index)))
            found.service_s.setdefault((option, threads), {})[record.batch_size or 1] = seconds
            if record.peak_rss_mb:
                key = (option, threads)
                found.memory_mb[key] = max(found.memory_mb.get(key, 0.0), record.peak_rss_mb)
    for option in found.options:
        found.refused.pop(option, None)  # timed at one thread count at least
    return found


def _seconds(record: Record, times: Sequence[float] | None) -> list[float]:
    """A timed record's calls in seconds (its median alone where no samples were kept)."""
    assert record.stats is not None
    return [float(v) / 1e3 for v in times] if times is not None else [record.stats.p50_ms / 1e3]


Sessions = Mapping[tuple[int, tuple[tuple[str, Any], ...]], Path]  # (threads, changed): bench


def read_session_trials(found: Trials, folders: Sessions) -> None:
    """ONNX Runtime fp32's service times with other session options (by threads and the
    options changed), into `found.sessions_s`; a series that failed is left out (the search
    then says it was not timed).

    The options' series are timed minutes after the trials they are set against, and the
    machine's speed drifts in between (a gap between them need not be the option's). So the
    default session is timed again first among them (`()`, the control), and each option's
    times are scaled by the trials' median over the control's, size by size
    (`found.session_drift`): what is compared is the option against the default timed beside
    it. Where the control was not timed, the options are left out."""
    option = option_name("onnxruntime", FP32)
    timed = session_series(folders)
    for (threads, changed), sizes in timed.items():
        control = timed.get((threads, ()), {})
        base = found.service_s.get((option, threads), {})
        drift = {b: _median(base[b]) / _median(control[b]) for b in control
                 if b in base and _median(control[b]) > 0}
        if not changed or not drift:  # no control beside them: not compared at all
            continue
        found.session_drift[option, threads] = drift
        overall = _median(list(drift.values()))  # a size the control missed
        found.sessions_s[option, threads, changed] = {
            b: [t * drift.get(b, overall) for t in seconds] for b, seconds in sizes.items()}


def session_series(folders: Sessions) -> dict[tuple[int, tuple[tuple[str, Any], ...]],
                                              dict[int, list[float]]]:
    """ONNX Runtime's seconds a call, size by size, in each session bench of `folders` that
    timed any (by threads and the options changed)."""
    timed: dict[tuple[int, tuple[tuple[str, Any], ...]], dict[int, list[float]]] = {}
    for (threads, changed), folder in sorted(folders.items(), key=str):
        path = folder / "results.json"
        if not path.is_file():
            continue
        _, records = read_results(path)
        samples = read_samples(path)
        for index, record in enumerate(records):
            if (record.runtime == "onnxruntime" and record.phase == "infer"
                    and record.variant == "run" and record.ok and record.stats is not None):
                timed.setdefault((threads, changed), {})[record.batch_size or 1] = _seconds(
                    record, samples.get(str(index)))
    return timed


def together(folders: Sessions, threads: int) -> tuple[tuple[str, Any], ...]:
    """The session options that, changed alone at `threads` threads a worker, were faster than
    the control beside them (the median over the sizes of their medians' ratios below 1),
    changed together: the one combination advise times (a greedy step, not every one of the
    2^3). () where fewer than two were faster, or the control was not timed."""
    timed = session_series({k: v for k, v in folders.items() if k[0] == threads})
    control = timed.get((threads, ()), {})
    faster = []
    for (_, changed), sizes in sorted(timed.items()):
        ratios = [_median(sizes[b]) / _median(control[b]) for b in sizes
                  if b in control and _median(control[b]) > 0]
        if len(changed) == 1 and ratios and _median(ratios) < 1.0:
            faster.extend(changed)
    return tuple(sorted(faster)) if len(faster) > 1 else ()


def _median(values: Sequence[float]) -> float:
    return sorted(values)[len(values) // 2]


def session_slug(changed: Sequence[tuple[str, Any]]) -> str:
    """A folder's name for session options: `memory_arena-off`, `graph_optimization-basic`."""
    return "-".join(f"{k}-{'on' if v is True else 'off' if v is False else v}"
                    for k, v in changed) or "default"


def full_session(optimization: str, changed: Sequence[tuple[str, Any]] = ()
                 ) -> tuple[tuple[str, Any], ...]:
    """An ONNX Runtime configuration's session options: the defaults (the graph at
    `optimization`, the memory arena and pattern on), with `changed`."""
    chosen: dict[str, Any] = {"graph_optimization": optimization, "memory_arena": True,
                              "memory_pattern": True}
    chosen.update(dict(changed))
    return tuple(sorted(chosen.items()))


def changed_of(session: Sequence[tuple[str, Any]], optimization: str
               ) -> tuple[tuple[str, Any], ...]:
    """The session options that differ from the defaults."""
    default = dict(full_session(optimization))
    return tuple((k, v) for k, v in sorted(session) if default.get(k) != v)


def _judge(found: Trials, option: str, record: Record) -> None:
    parity = record.parity
    assert parity is not None
    if parity.native_quality is not None and parity.quality is not None:
        drop = max(0.0, parity.native_quality - parity.quality)
    elif parity.label_agreement is not None:
        drop = 1.0 - parity.label_agreement
    else:
        drop = 0.0
    # each thread count's trials made the recipe again: the worst of its verdicts holds
    found.quality_drop[option] = max(drop, found.quality_drop.get(option, 0.0))
    if parity.verdict != "pass":
        why = f": {parity.why}" if parity.why else ""
        found.inaccurate[option] = (f"{record.recipe}'s accuracy check says {parity.verdict} "
                                    f"under --max-quality-drop{why}")


def space(trials: Trials, request: Request, cores: int, optimization: str) -> Space:
    """Every configuration of the options the trials timed, within the machine's cores."""
    threads = tuple(sorted({t for _, t in trials.service_s}))
    timed: dict[str, list[tuple[tuple[str, Any], ...]]] = {}  # the sessions each was timed
    for option, _, changed in sorted(trials.sessions_s, key=str):  # with, beyond the default
        timed.setdefault(option, []).append(full_session(optimization, changed))
    return Space(options=trials.options, threads=threads,
                 workers=tuple(range(1, cores + 1)),
                 max_batch=(1, *(b for b in SIZES if b > 1)),
                 max_delay_ms=tuple(d for d in DELAYS_MS if d < request.p99_ms / 2) or (0.0,),
                 session={"graph_optimization": (optimization,)}, cores=cores,
                 sessions={option: tuple(dict.fromkeys([full_session(optimization), *chosen]))
                           for option, chosen in timed.items()})


def memory_of(trials: Trials, config: Config) -> float | None:
    """A configuration's memory (MB): a pool of processes holds a whole process per worker; the
    workers of ONNX Runtime's pool are threads of one process, each with a session of its own,
    so they share what the process held before the model was loaded."""
    memory = trials.memory_mb.get((config.option, config.threads))
    if not memory:
        return None
    shared = trials.shared_mb.get((config.option, config.threads)) if config.ort else None
    if shared is None or shared >= memory:
        return memory * config.workers
    return shared + (memory - shared) * config.workers


def evaluator(trials: Trials, request: Request, cores: int, optimization: str = "all",
              serial_s: Mapping[str, Sequence[float]] = SERIAL_S
              ) -> Callable[[Config], Outcome]:
    """A configuration's rate within the bound, from its measured service times fed to the
    queueing model; its accuracy given up; its memory (`memory_of`: that of the default
    session options, more than the memory arena off takes)."""
    from toolkit.queueing import Path as ServingPath
    from toolkit.queueing import peak

    def evaluate(config: Config) -> Outcome:
        drop = trials.quality_drop.get(config.option, 0.0)
        refused = trials.inaccurate.get(config.option) or trials.refused.get(config.option)
        changed = changed_of(config.session, optimization) if config.ort else ()
        service = (trials.sessions_s.get((config.option, config.threads, changed)) if changed
                   else trials.service_s.get((config.option, config.threads)))
        if refused or not service:
            return Outcome(0.0, None, drop, None, refused or (
                f"not timed at {config.threads} threads a worker" if not changed else
                f"not timed with {session_label(changed)} at {config.threads} threads a "
                "worker " + (f"(advise times other session options for {FP32} only)"
                             if config.option != option_name("onnxruntime", FP32) else
                             "(each thread count's combination of the options faster alone "
                             "is its own, and the budget may have left some out)")))
        if config.max_batch > max(service):
            return Outcome(0.0, None, drop, None,
                           f"calls of more than {max(service)} rows were not timed (a fixed "
                           "batch dimension, or they failed)")
        query_s, call_s = serial_s["threads" if config.ort else "processes"]
        path = ServingPath(service_s=service, workers=config.workers,
                           max_batch=config.max_batch,
                           max_delay_s=(config.max_delay_ms or 0.0) / 1e3,
                           threads_per_worker=config.threads, cores=cores,
                           overhead_s=query_s, call_overhead_s=call_s)
        rate, p99 = peak(path, request.p99_ms / 1e3, seed=request.seed)
        return Outcome(round(rate, 1), p99 * 1e3 if math.isfinite(p99) else None, drop,
                       memory_of(trials, config))

    return evaluate


def defaults(trials: Trials, request: Request, cores: int, optimization: str) -> list[Config]:
    """What `loadgen` serves with no flags, of the fp32 ONNX Runtime option (else the native
    one): a worker per core of one thread each, without batching and with batching up to 8
    within a tenth of the bound."""
    option = next((o for o in trials.options if o == "onnxruntime fp32"),
                  next((o for o in trials.options if o.endswith(" fp32")), None))
    timed = sorted(t for o, t in trials.service_s if o == option)
    if option is None or not timed:
        return []
    threads = 1 if 1 in timed else timed[0]  # loadgen's one thread a worker, where timed
    workers = max(1, cores // threads)
    session = full_session(optimization) if option.startswith("onnxruntime") else ()
    return [Config(option, threads, workers, 1, None, session),
            Config(option, threads, workers, 8, request.p99_ms / 10, session)]


def candidates(tried: Sequence[Tried], default: Sequence[Config],
               rate: Callable[[Config], float], budget_s: float | None = None,
               best: int = CONFIRM_BEST, rounds: int = CONFIRM_ROUNDS
               ) -> list[tuple[Config, str]]:
    """What is confirmed, in order: the front's fastest and every default (the pick, and what
    it must beat, chosen among the defaults by the same rounds: always), then the front's
    fastest with its threads spinning (where it is ONNX Runtime with several threads a
    worker) and the front's next (up to `best` in all), as many as `budget_s` seconds let
    finish in `rounds` rounds (each search estimated from its predicted `rate`). A
    configuration that is a default is confirmed as one."""
    front = [t.config for t in tried if t.why_lost is None][:best]
    defaults = sorted(default, key=lambda c: -rate(c))
    spinning = [spun(c) for c in front[:1] if c.ort and c.threads > 1]
    chosen: list[tuple[Config, str]] = []
    spent = 0.0
    for n, config in enumerate([*front[:1], *defaults, *spinning, *front[1:]]):
        if any(config == c for c, _ in chosen):
            continue
        first = min(confirm_seconds(rate(unspun(config))), CONFIRM_TIMEOUT_S[1])  # its cap
        need = first * (1 + (rounds - 1) * LATER_ROUND_SHARE)
        must = n < len(front[:1]) + len(defaults)
        if not must and budget_s is not None and spent + need > budget_s:
            continue
        chosen.append((config, "default" if config in defaults else "searched"))
        spent += need
    return chosen


def confirm_seconds(rate: float) -> float:
    """About how long a confirming search at a predicted `rate` takes: RUNS_PER_SEARCH runs
    of its queries, a second of LoadGen's own each, and the pool's start."""
    if rate <= 0:  # no rate predicted within the bound: its search fails fast, or is cut
        return CONFIRM_TIMEOUT_S[0]
    queries = max(confirm_queries(rate), math.ceil(rate * SHORTEST_SERVER_RUN_S))
    return RUNS_PER_SEARCH * (1.5 * queries / rate + 1.0) + 15.0


def search(trials: Trials, request: Request, limits: Limits, cores: int, optimization: str,
           storage: Path, seconds: float | None,
           progress: Callable[[int, Config, Outcome], None] | None = None,
           serial_s: Mapping[str, Sequence[float]] = SERIAL_S) -> list[Tried]:
    """The search over the trials (its study in `storage`, so a resumed run continues it)."""
    chosen = space(trials, request, cores, optimization)
    every = configurations(chosen)
    context = {"target": request.target, "p99_ms": request.p99_ms, "cores": cores,
               "trials": trials.digest(),  # and the serial costs the model uses
               "serial_s": {k: list(v) for k, v in sorted(serial_s.items())}}
    return run_search(chosen, evaluator(trials, request, cores, optimization, serial_s), limits,
                      trials=min(TRIALS, len(every)), storage=f"sqlite:///{storage}",
                      seed=request.seed, seconds=seconds, context=context, progress=progress)


def machines(need_qps: float | None, peak_qps: float | None) -> int | None:
    if not need_qps or not peak_qps:
        return None
    return math.ceil(need_qps / peak_qps)


def usd_per_million(price: float | None, peak_qps: float | None,
                    need_qps: float | None = None) -> float | None:
    """USD per million queries: at `need_qps`, the machines it takes at `peak_qps` each
    (whole machines) times `price` an hour, over the queries an hour brings; without a rate
    needed, one machine kept at its peak."""
    if not price or not peak_qps or peak_qps <= 0:
        return None
    if need_qps:
        return math.ceil(need_qps / peak_qps) * price / (need_qps * 3600) * 1e6
    return price / (peak_qps * 3600) * 1e6


def confirm_queries(rate: float) -> int:
    """Each confirming LoadGen run's queries: 2,048 (as `loadgen`), fewer for a slow model so
    that a run near its predicted rate lasts about CONFIRM_RUN_S, never under
    MIN_CONFIRM_QUERIES."""
    from toolkit.scenarios import SERVER_QUERIES

    if rate <= 0:
        return SERVER_QUERIES
    return max(MIN_CONFIRM_QUERIES, min(SERVER_QUERIES, int(rate * CONFIRM_RUN_S)))


def elapsed_budget(started: float, budget_s: float) -> float:
    """Seconds of the budget left (never below zero)."""
    return max(0.0, budget_s - (time.monotonic() - started))


@dataclass
class Advice:
    """What one `advise` run found (advice.json)."""

    request: Request
    workload: str
    cores: int
    optimization: str
    trials: Trials
    tried: list[Tried]
    confirmed: list[Confirmed]
    folder: Path
    budget_used_s: float = 0.0
    serial: dict[str, Any] = field(default_factory=dict)  # the model's serial costs, and whence
    in_rounds: dict[str, Any] = field(default_factory=dict)  # the same at the control's speed

    @property
    def limits(self) -> Limits:
        return limits_of(self.request)

    @functools.cached_property
    def over_rounds(self) -> tuple[list[Held], RoundPeaks]:
        return held_over_rounds(self.confirmed)

    @property
    def held(self) -> list[Held]:
        """Each confirmed configuration over its rounds, in the order first confirmed."""
        return self.over_rounds[0]

    @property
    def pick(self) -> Held | None:
        return pick(self.held, self.limits)

    @property
    def versus(self) -> PairedRatio | None:
        """The pick's peak over the best default's, round by round (None where the pick is
        that default, or they sustained no round together)."""
        chosen, default = self.pick, self.default
        if chosen is None or default is None or chosen is default:
            return None
        return paired_ratio(chosen.peaks(), default.peaks(), self.over_rounds[1].noise)

    @property
    def unsteady(self) -> str | None:
        """A line where the cores' speed moved between the confirmations (busy.unsteady_text)."""
        return busy.unsteady_text(
            (r for c in self.confirmed for r in c.core_speed),
            self.confirmed[0].core_speed_s if self.confirmed else busy.CORE_SPEED_S,
            busy.fastest_of(c.fastest_seen for c in self.confirmed))

    @property
    def default(self) -> Held | None:
        return best_default(self.held)

    def to_dict(self) -> dict[str, Any]:
        chosen, default, versus = self.pick, self.default, self.versus
        return {
            "request": self.request.to_dict(), "workload": self.workload, "cores": self.cores,
            "optimization": self.optimization, "budget_used_s": round(self.budget_used_s, 1),
            "trials": {"options": list(self.trials.options),
                       "refused": self.trials.refused,
                       "inaccurate": self.trials.inaccurate,
                       "quality_drop": self.trials.quality_drop,
                       "service_p50_ms": {
                           f"{o} x{t}": {str(b): round(sorted(v)[len(v) // 2] * 1e3, 4)
                                         for b, v in sorted(sizes.items())}
                           for (o, t), sizes in sorted(self.trials.service_s.items())},
                       "session_drift": {
                           f"{o} x{t}": {str(b): round(r, 4) for b, r in sorted(d.items())}
                           for (o, t), d in sorted(self.trials.session_drift.items())},
                       "session_p50_ms": {
                           f"{o} x{t} {session_label(s)}": {
                               str(b): round(sorted(v)[len(v) // 2] * 1e3, 4)
                               for b, v in sorted(sizes.items())}
                           for (o, t, s), sizes in sorted(self.trials.sessions_s.items(),
                                                          key=str)}},
            "tried": [{"config": t.config.to_dict(), "outcome": t.outcome.__dict__,
                       "why_lost": t.why_lost} for t in self.tried],
            "confirmed": [c.to_dict() for c in self.confirmed],
            "held": [h.to_dict() for h in self.held],
            "round_effects": {str(r): round(e, 4) for r, e in sorted(
                self.over_rounds[1].effects.items())},
            "pick": chosen.to_dict() if chosen else None,
            "default": default.to_dict() if default else None,
            "versus_default": dataclasses.asdict(versus) if versus else None,
            "model_errors": {k: round(v, 4) for k, v in model_errors(self.held).items()},
            "model_error": model_error(self.held),
            "in_rounds": self._in_rounds_dict(),
            "serial_costs": {**self.serial, "costs": {
                k: [round(v * 1e6, 2) for v in costs] for k, costs in
                self.serial.get("costs", {}).items()}, "unit": "us"} if self.serial else None,
            "machines": machines(self.request.need_qps, chosen.peak_qps if chosen else None),
            "usd_per_million": usd_per_million(self.request.price,
                                               chosen.peak_qps if chosen else None,
                                               self.request.need_qps),
        }


    def _in_rounds_dict(self) -> dict[str, Any] | None:
        """The machine's speed in these rounds as the control read it, and the model at it."""
        if not self.in_rounds:
            return None
        predicted = self.in_rounds["predicted"]
        return {"speed": self.in_rounds["speed"],
                "control_qps": round(self.in_rounds["control_qps"], 1),
                "calibrated_qps": round(self.in_rounds["calibrated_qps"], 1),
                "predicted": {k: round(v, 1) for k, v in predicted.items()},
                "model_errors": {k: round(v, 4) for k, v in
                                 model_errors(self.held, predicted).items()},
                "model_error": model_error(self.held, predicted)}


REQUEST_FILE = "advise-request.json"  # what was asked, and where it ran: what --resume reads


def save_request(folder: Path, request: Request, cluster: Mapping[str, Any] | None) -> None:
    text = json.dumps({"request": request.to_dict(),
                       "cluster": dict(cluster) if cluster else None}, indent=1) + "\n"
    write_atomic(folder / REQUEST_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def load_request(folder: Path) -> tuple[Request, dict[str, Any] | None]:
    """What an advise run in `folder` was asked, and its cluster; BadInputError naming the file
    where there is none or it is damaged."""
    path = folder / REQUEST_FILE
    if not path.is_file():
        raise BadInputError(f"--resume {folder}: no {REQUEST_FILE} there; give the folder of "
                            "an advise run")
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        cluster = stored.get("cluster")
        if cluster is not None and not (isinstance(cluster, dict) and "address" in cluster):
            raise TypeError("its cluster is not an address and a placement")
        return Request.from_dict(stored["request"]), cluster
    except (OSError, ValueError, KeyError, TypeError, BadInputError) as exc:
        raise BadInputError(f"{path}: not what advise writes ({exc}); start a new advise "
                            "run") from None


def limits_of(request: Request) -> Limits:
    """The accuracy limit is each recipe's verdict under the rule (a recipe that fails it is
    refused with why); the memory limit, over all of a configuration's workers (`memory_of`)."""
    return Limits(max_quality_drop=1.0, memory_mb=request.memory_mb)


Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class StageRunner:
    """How `advise` runs a stage's plan into a folder, or finishes one cut short there: the
    CLI's executor with its progress bar and backend. `start(plan, folder)` and
    `resume(folder, command)` return whether the plan finished (False: interrupted)."""

    start: Callable[[Any, Path], bool]
    resume: Callable[[Path, str], bool]
    # the serving machine's serial costs (cores, pool kinds): None for `toolkit.calibrate` in
    # this process; on a cluster, a task on the node the stages run on
    serial_costs: Callable[[int, Sequence[str]], Any] | None = None


def _finished(folder: Path) -> bool | None:
    """None: never started there; True: finished; False: started and cut short."""
    path = folder / "results.json"
    if not path.is_file():
        return None
    run, _ = read_results(path)
    return bool(run.get("finished")) and not run.get("interrupted")


def _stage(runner: StageRunner, folder: Path, command: str, plan: Callable[[], Any]) -> bool:
    state = _finished(folder)
    if state is True:
        return True
    if state is False:
        return runner.resume(folder, command)
    return runner.start(plan(), folder)


def resolve(request: Request, trust_pickle: bool = False) -> Any:
    """The model file's request (a ModelRequest), or None for a built-in workload; a target
    that is neither, or names several workloads, ends in BadInputError."""
    from toolkit import workloads
    from toolkit.plans.loadgen import loadgen_request
    from toolkit.suite import default_threads

    cores = request.cores or default_threads()
    if request.threads and max(request.threads) > cores:
        raise BadInputError(f"--threads {','.join(map(str, request.threads))}: this machine "
                            f"has {cores} cores, so a worker may have at most {cores} threads")
    model = loadgen_request(request.target, request.shapes,
                            Path(request.input_data) if request.input_data else None,
                            trust_pickle)
    if model is None:
        chosen = workloads.select([request.target], None)
        if len(chosen) != 1:
            raise BadInputError(f"{request.target}: names {len(chosen)} workloads; advise one: "
                                f"{', '.join(w.key for w in chosen)}")
    return model


def serial_costs_of(out_dir: Path, cores: int, say: Callable[[str], None],
                    kinds: Sequence[str] = ("threads", "processes"),
                    measure: Callable[[int, Sequence[str]], Any] | None = None
                    ) -> dict[str, Any]:
    """The serial costs the search models each pool kind with: those a run in `out_dir` used
    before (a resumed study rests on the same), else the serving machine's for the pool `kinds`
    its options are served by (`measure`, by default `toolkit.calibrate` here: measured once
    and cached), else SERIAL_S where they cannot be measured (said). Kept in `out_dir` as
    {"costs": {kind: [query_s, call_s]}, "source": ..., "peaks": ...}."""
    from toolkit.calibrate import serial_costs

    path = out_dir / SERIAL_FILE
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        stored = json.loads(path.read_text(encoding="utf-8"))
        return {**stored, "costs": {str(k): (float(q), float(c))
                                    for k, (q, c) in stored["costs"].items()}}
    try:
        measured = (measure(cores, tuple(kinds)) if measure is not None else
                    serial_costs(cores, say=say, kinds=kinds))
        found: dict[str, Any] = {"costs": {**SERIAL_S, **measured.by_kind()},
                                 "source": f"measured on the serving machine "
                                           f"{measured.measured_at}"
                                 + ("" if set(measured.by_kind()) >= set(SERIAL_S) else
                                    f" ({', '.join(sorted(measured.by_kind()))} pool; the "
                                    f"other fitted by hand, unused here)"),
                                 "peaks": measured.peaks, "machine": measured.machine}
    except RuntimeError as exc:
        say(f"search: the serial costs could not be measured here ({exc}); the model uses "
            "those fitted by hand on another machine")
        found = {"costs": dict(SERIAL_S), "source": f"fitted by hand (not measured: {exc})"}
    text = json.dumps({**found, "costs": {k: list(v) for k, v in found["costs"].items()}},
                      indent=1) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return found


def controls(cores: int) -> list[Config]:
    """The calibration's trivial model as `toolkit.calibrate` serves it unbatched: a pool of
    threads, a worker per core (whose peak there is 1 / (query + call))."""
    return [Config(CONTROL, 1, cores, 1, None, full_session("all"))]


def control_sources(out_dir: Path) -> Sources:
    """The trivial model and its rows, written once into the run's folder."""
    from toolkit.calibrate import trivial_model
    from toolkit.plans.steps import Sources

    folder = out_dir / "control"
    model, inputs = folder / "relu.onnx", folder / "inputs.npz"
    if not (model.is_file() and inputs.is_file()):
        folder.mkdir(parents=True, exist_ok=True)
        trivial_model(folder)
    return Sources(onnx=str(model), inputs=str(inputs))


def in_rounds(advice: Advice) -> dict[str, Any]:
    """The machine's speed in these rounds against the calibration's: the control's median
    peak over the one the threads pool's serial costs give it (1 / (query + call)); and each
    held configuration's prediction scaled by it. {} where the control did not hold."""
    control = next((h for h in advice.held if h.role == "control" and h.sustained
                    and h.peak_qps), None)
    if control is None or control.peak_qps is None:
        return {}
    query, call = advice.serial.get("costs", SERIAL_S)["threads"]
    speed = control.peak_qps * (query + call)
    return {"speed": speed, "control_qps": control.peak_qps, "calibrated_qps": 1 / (query + call),
            "predicted": {h.config.label(): h.predicted.rate * speed for h in advice.held
                          if h.role != "control" and h.predicted and h.predicted.rate > 0}}


SPENT_FILE = "advise-spent.json"  # the budget's seconds the runs in a folder have spent
SEARCH_LEAST_S = 10.0  # the search's time when the budget is spent: the trials are paid for


def spent_before(folder: Path) -> float:
    """Seconds of the budget earlier runs in `folder` spent (0 where none ran)."""
    try:
        return max(0.0, float(json.loads((folder / SPENT_FILE).read_text())["spent_s"]))
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def advise(request: Request, out_dir: Path, runner: StageRunner, *, trust_pickle: bool = False,
           say: Callable[[str], None] = lambda line: None) -> Advice | None:
    """The three stages into `out_dir` (each skipped where it finished before: --resume); None
    when one was interrupted (what finished is kept). The budget's clock goes on from what
    earlier runs in `out_dir` spent, and what this one spends is kept, however it ends."""
    started = time.monotonic() - spent_before(out_dir)
    try:
        return _advise(request, out_dir, runner, started, trust_pickle, say)
    finally:
        keep_spent(out_dir, started)


def keep_spent(folder: Path, started: float) -> None:
    """What the budget has spent in `folder` (since `started`, time.monotonic()), written
    whole or not at all (a kill mid-write leaves the last figure)."""
    if not folder.is_dir():
        return
    with contextlib.suppress(OSError):  # never in the way of what ended the run
        temporary = folder / f"{SPENT_FILE}.tmp"
        temporary.write_text(json.dumps({"spent_s": round(time.monotonic() - started, 1)})
                             + "\n", encoding="utf-8")
        os.replace(temporary, folder / SPENT_FILE)


def _advise(request: Request, out_dir: Path, runner: StageRunner, started: float,
            trust_pickle: bool, say: Callable[[str], None]) -> Advice | None:
    from toolkit.plans.advise import (
        confirm_round_plan,
        serving_variant,
        trial_plan,
        trial_sources,
    )
    from toolkit.plans.model import ModelRequest, bench_suite
    from toolkit.plans.steps import Confirmation
    from toolkit.runners import NATIVE
    from toolkit.scenarios import ScenarioSettings, loadgen_missing
    from toolkit.steps.calibrate import CALIBRATION_P99_MS
    from toolkit.steps.scenario import SERVING_CALL
    from toolkit.suite import Case, Suite, build_suite, default_threads

    missing = loadgen_missing()
    if missing:
        raise BadInputError(missing)
    cores = request.cores or default_threads()
    thread_counts = request.threads or tuple(sorted({1, cores}))
    model = resolve(request, trust_pickle)
    folders = {t: out_dir / "trials" / f"t{t}" for t in thread_counts}

    def trial_suite(threads: int) -> Suite:
        if model is not None:
            suite = bench_suite(providers=["cpu"], batch_sizes=SIZES, threads=threads,
                                rounds=1, recipes=list(request.recipes),
                                max_quality_drop=request.max_quality_drop)
        else:
            suite = build_suite("quick", workloads=[request.target], providers=["cpu"],
                                batch_sizes=SIZES, threads=threads, rounds=1,
                                recipes=list(request.recipes),
                                max_quality_drop=request.max_quality_drop)
        return dataclasses.replace(suite, scenarios=(), budget=TRIAL_BUDGET)

    def session_suite(threads: int, changed: tuple[tuple[str, Any], ...]) -> Suite:
        chosen = dict(changed)
        suite = bench_suite(providers=["cpu"], batch_sizes=SIZES, threads=threads, rounds=1,
                            optimization=chosen.pop("graph_optimization", None))
        return dataclasses.replace(suite, scenarios=(), budget=TRIAL_BUDGET,
                                   session=tuple(sorted(chosen.items())))

    def time_session(threads: int, made: Any, changed: tuple[tuple[str, Any], ...],
                     into: Path, what: str) -> bool:
        """ONNX Runtime's fp32 file (`made`) benched with the session options `changed`."""
        sessions[threads, changed] = into
        say(f"trials: onnxruntime fp32 with {what}, {threads} "
            f"thread{'s' * (threads > 1)} a worker ({into})")
        return _stage(runner, into, "bench", lambda: trial_plan(
            str(made.onnx), ModelRequest(Path(str(made.onnx)), input_data=Path(str(made.inputs))),
            session_suite(threads, changed), into))

    command = "bench" if model is not None else "run"
    for threads, folder in folders.items():
        say(f"trials: every option and recipe timed at {', '.join(map(str, SIZES))} rows, "
            f"{threads} thread{'s' * (threads > 1)} a worker ({folder})")
        if not _stage(runner, folder, command,
                      lambda t=threads, f=folder: trial_plan(request.target, model,
                                                             trial_suite(t), f)):
            return None
    trials = read_trials(folders, SERVING_CALL,
                         lambda framework: NATIVE.get(framework))
    optimization = trial_suite(thread_counts[0]).optimization
    # ONNX Runtime fp32 again, with each of TRIAL_SESSIONS, on its ONNX file
    sessions: dict[tuple[int, tuple[tuple[str, Any], ...]], Path] = {}
    planned = out_dir / "trials" / "sessions.json"  # those timed, and those the budget left out
    if (out_dir / "search.sqlite").is_file() and not planned.is_file():
        raise BadInputError(f"--resume {out_dir}: made by an earlier deploybench advise, "
                            "which did not search ONNX Runtime's session options; start a "
                            "new run (--out elsewhere)")
    # once decided (the file written), what was left out stays out, whatever the clock says
    # on a resume: the search's study rests on the session options that were timed
    decided = json.loads(planned.read_text()) if planned.is_file() else None
    left_out: list[str] = decided["left_out"] if decided else []
    keep_spent(out_dir, started)
    for threads, folder in folders.items():
        if (option_name("onnxruntime", FP32), threads) not in trials.service_s:
            continue
        run, records = read_results(folder / "results.json")
        made = trial_sources(run, records, folder, trials.workload, FP32)
        if made.onnx is None or made.inputs is None:
            continue
        group = {changed: out_dir / "trials" / f"t{threads}-{session_slug(changed)}"
                 for changed in TRIAL_SESSIONS}
        if not decided and elapsed_budget(started, request.budget_s) <= 0 and all(
                _finished(into) is None for into in group.values()):
            left_out += [into.name for into in group.values()]  # a thread count's all or none
        for changed, into in group.items():
            if into.name not in left_out and not time_session(
                    threads, made, changed, into, session_label(changed) if changed else
                    "the default session options again (the others' control)"):
                return None
        both = together(sessions, threads)  # those faster alone, together
        into = out_dir / "trials" / f"t{threads}-{session_slug(both)}"
        if decided and into.name not in decided["timed"]:
            both = ()  # left out, or decided before advise timed combinations: not timed now
        if both and not decided and elapsed_budget(
                started, request.budget_s) <= 0 and _finished(into) is None:
            left_out.append(into.name)  # the options alone were timed: the only one left out
        if both and into.name not in left_out and not time_session(
                threads, made, both, into, f"{session_label(both)} (each faster alone)"):
            return None
    if left_out:
        say(f"trials: the budget is spent; ONNX Runtime's session options not timed "
            f"({', '.join(left_out)}): raise --budget to search them")
    if not planned.is_file():
        text = json.dumps({"timed": sorted(p.name for p in sessions.values()),
                           "left_out": left_out}, indent=1) + "\n"
        write_atomic(planned, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    keep_spent(out_dir, started)
    read_session_trials(trials, sessions)
    if not trials.options:
        why = "; ".join(f"{o}: {w}" for o, w in trials.refused.items()) or "no option was timed"
        raise BadInputError(f"{request.target}: no option could be timed ({why})")
    # ONNX Runtime's options are served by a pool of threads, the native ones by processes
    kinds = [kind for kind, wanted in (
        ("threads", any(o.startswith("onnxruntime") for o in trials.options)),
        ("processes", any(not o.startswith("onnxruntime") for o in trials.options))) if wanted]
    serial = serial_costs_of(out_dir, cores, say, kinds, runner.serial_costs)
    keep_spent(out_dir, started)
    say(f"search: {len(trials.options)} options, the rate within p99 <= {request.p99_ms:g} ms "
        "of each configuration from its service times (a queueing model)")
    limits = limits_of(request)
    # a search that went on to its confirmations is not searched further on a resume (it
    # would change what they were chosen from)
    searched = (out_dir / "confirm").is_dir()
    tried = search(trials, request, limits, cores, optimization, out_dir / "search.sqlite",
                   0.0 if searched else max(elapsed_budget(started, request.budget_s),
                                            SEARCH_LEAST_S), serial_s=serial["costs"])
    keep_spent(out_dir, started)
    predicted = {t.config: t.outcome for t in tried}
    evaluate = evaluator(trials, request, cores, optimization, serial["costs"])

    def rate(config: Config) -> float:
        return (predicted.get(config) or evaluate(config)).rate

    chosen = candidates(tried, defaults(trials, request, cores, optimization), rate,
                        elapsed_budget(started, request.budget_s))
    control = control_sources(out_dir) if request.controls else None
    chosen += [(config, "control") for config in controls(cores) if request.controls]
    confirmed: list[Confirmed] = []
    # every configuration once a round, side by side (their LoadGen runs taking turns), the
    # order flipping from round to round (pick, default; default, pick; ...), so each meets
    # the machine's spells at the same steps as the others
    stages = [(round_, config, role) for round_ in range(1, CONFIRM_ROUNDS + 1)
              for config, role in (chosen if round_ % 2 else chosen[::-1])]
    last: dict[Config, Confirmed] = {}
    for round_ in range(1, CONFIRM_ROUNDS + 1 if chosen else 1):  # nothing chosen: no round
        order = chosen if round_ % 2 else chosen[::-1]
        first = stages.index((round_, *order[0]))
        left = sum(1 if r == 1 else LATER_ROUND_SHARE for r, _, _ in stages[first:])
        share = elapsed_budget(started, request.budget_s) / left
        made: list[Confirmation] = []
        guesses: dict[Config, Outcome | None] = {}
        for config, role in order:
            # room for its search within 60-600 s (a short budget is overrun), or its share
            # of what is left where that is more
            timeout = max(share, min(max(2 * confirm_seconds(rate(unspun(config))),
                                         CONFIRM_TIMEOUT_S[0]), CONFIRM_TIMEOUT_S[1]))
            batching = config.max_batch > 1
            if role == "control":
                assert control is not None
                runner_name, recipe = "onnxruntime", FP32
                run, _ = read_results(next(iter(folders.values())) / "results.json")
                sources, guess = control, None
            else:
                runner_name, recipe = trials.cases[config.option]
                run, records = read_results(folders[config.threads] / "results.json")
                sources = trial_sources(run, records, folders[config.threads],
                                        trials.workload, recipe)
                guess = predicted.get(unspun(config)) or evaluate(unspun(config))
            guesses[config] = guess
            settings = ScenarioSettings(
                scenario="server",
                p99_ms=CALIBRATION_P99_MS if role == "control" else request.p99_ms,
                workers=config.workers, threads=config.threads,
                batch_sizes=(config.max_batch,) if batching else (),
                max_delay_ms=config.max_delay_ms if batching else None,
                queries=confirm_queries(guess.rate if guess else 0.0),
                longest_run_s=CONFIRM_LONGEST_RUN_S,
                spinning=bool(dict(config.session).get(SPINNING)), rounds=CONFIRM_ROUNDS)
            session = dict(unspun(config).session)  # ONNX Runtime's (a native option has none)
            suite = dataclasses.replace(
                Suite.from_dict(run["suite"]), threads=config.threads,
                timeout_s=timeout, scenarios=(settings,), rounds=1,
                optimization=session.pop("graph_optimization", optimization),
                session=tuple(sorted(session.items())))
            case = Case(CONTROL_WORKLOAD if role == "control" else trials.workload,
                        runner_name, "cpu", recipe)
            before = last.get(config)  # a later round starts its search from the last peak
            start = ((str(config.max_batch if batching else 1), before.peak_qps),) \
                if before is not None and before.sustained and before.peak_qps else ()
            made.append(Confirmation(confirm_folder(config, role), case,
                                     serving_variant(runner_name, config.max_batch),
                                     settings, sources, suite, start))
        folder = out_dir / "confirm" / f"round-{round_}"
        say(f"confirming under LoadGen, round {round_} of {CONFIRM_ROUNDS}, side by side "
            f"({folder}): " + "; ".join(f"{role} {config.label()}" for config, role in order))
        if not _stage(runner, folder, "advise-confirm-round",
                      lambda m=made, r=round_: confirm_round_plan(m, r)):
            return None
        _, records = read_results(folder / "results.json")
        tagged = {r.info.get("tag"): r for r in records if r.phase == "scenario"}
        for (config, role), confirmation in zip(order, made, strict=True):
            last[config] = Confirmed.from_record(
                config, role, folder / "loadgen" / confirmation.tag,
                tagged.get(confirmation.tag), guesses[config], round_)
            confirmed.append(last[config])
    advice = Advice(request, trials.workload, cores, optimization, trials, tried, confirmed,
                    out_dir, time.monotonic() - started, serial)
    advice.in_rounds = in_rounds(advice)
    return advice


def write_advice(advice: Advice) -> Path:
    path = advice.folder / "advice.json"
    text = json.dumps(advice.to_dict(), indent=1, default=str) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path
