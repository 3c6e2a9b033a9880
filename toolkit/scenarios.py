"""Serving under load, the parts that need no model: scenario settings, the peak search, logs.

The settings of a LoadGen scenario, the serving paths (variants) an option is measured on, the
peak search, and LoadGen's own log read back. The system under test is `toolkit.serving`; the
step that joins them is `toolkit.steps.scenario`. LoadGen decides what the numbers mean (latency
from a query's scheduled time, validity, early stopping); nothing here measures.

    server        Poisson arrivals at a rate; the peak: the highest rate LoadGen calls VALID
                  (its p99 within the bound, enough queries), found by doubling then bisecting
    offline       every sample in one query: samples per second
    singlestream  one query of one sample after another: the 90th percentile latency
    multistream   one query of N samples after another: the 99th percentile latency
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.errors import BadInputError

SCENARIOS = ("server", "offline", "singlestream", "multistream")
LOADGEN_NAMES = {"server": "Server", "offline": "Offline", "singlestream": "SingleStream",
                 "multistream": "MultiStream"}
DEFAULT_P99_MS = 10.0
DEFAULT_DURATION_S = 1.0  # offline and the streams: each run's minimum duration
# A server run is sized by its query count, the same at every rate, so that LoadGen's early
# stopping judges a slow option and a fast one alike (of 2048 queries it lets 10, 0.49%, be
# over the bound at 99% confidence); runs of one duration would give a fast option many more.
SERVER_QUERIES = 2048
# ... but at least this long: at a fast option's rates 2048 queries last milliseconds, too few
# for an overloaded server's queue to grow past the bound, so an overloaded rate would pass.
# Such runs have more queries, so early stopping lets a larger share be over the bound (about
# 0.9% of 50,000 against 0.49% of 2048): the price of a run long enough to show overload.
SHORTEST_SERVER_RUN_S = 0.5
LONGEST_SERVER_RUN_S = 10.0  # the slowest rate a server search tries runs its queries this long
# (a search that fails at every rate, its tail set by the machine rather than the load, would
# otherwise halve down into runs of minutes)
# LoadGen's early stopping needs 459 queries, all within the bound, to call a p99 VALID: the
# fewest a server run may have (--queries), and the fewest an offline or stream run gets.
MIN_QUERIES = 512
# MultiStream's early stopping judges its p99 over queries of several samples and asks for
# 662 at least (LoadGen: "Need to process at least 662 queries").
MIN_QUERIES_BY_SCENARIO = {"multistream": 662, "offline": 1}


def min_queries(scenario: str) -> int:
    """The fewest queries a run of `scenario` is given, so early stopping can accept it."""
    return MIN_QUERIES_BY_SCENARIO.get(scenario, MIN_QUERIES)


# What MLPerf's rules ask of a run (LoadGen's built-in mlperf.conf), applied by --compliant.
MLPERF_MIN_DURATION_S = 600.0
# The percentile each scenario's latency is judged by (MLPerf's metric).
PERCENTILE = {"server": 99.0, "offline": 99.0, "singlestream": 90.0, "multistream": 99.0}
DEFAULT_BATCH = {"server": 8, "offline": 64, "singlestream": 1, "multistream": 8}
# rounds of a server search: three give a median, and the machine's effect in each round can be
# read off all the options
DEFAULT_ROUNDS = 3
# a later round's search starts at the option's last sustained peak and moves by this factor
# (not by 2: the peak is near, and the steps bisected away cost runs)
HINTED_STEP = 1.25
FAR_BELOW = 1 / 8  # a last peak under this share of the probe's capacity: left by doubling
# with rounds, each search bisects to this: the figure is the median over the rounds, whose
# spread the interval shows, so a round's search need not be as fine as a lone one's
ROUNDS_BISECT_TO = 0.10
BISECT_TO = 0.05  # the peak search bisects until the lowest bad rate is within this share of
# the highest good one
MAX_POINTS = 24  # runs one search may make (doubling, bisecting, retries, confirmations),
# besides at most SLOW_RETRIES failed runs set aside in a slow spell of the cores
SLOW_RETRIES = 3
LOOK_PAST = 4.0  # a rate that failed unloaded: how far above it the search looks once more
UNLOADED_P50_SHARE = 0.5  # a failed run whose median is below this share of the bound, and
UNLOADED_COMPLETED = 0.97  # that answered this share of its scheduled rate, was not overloaded


# LoadGen makes every query of a run before the run starts and holds them all (loadgen.cc,
# GenerateQueries), and hands an offline run's samples to Python in one list: the bytes below
# are what a query and a sample took, measured (the dated results under benchmarks/). A stream
# run is given queries for twice its minimum duration at the expected latency, a server run its
# duration at the target rate (a short server run: its --queries), an offline run 1.1 x its
# duration x the expected rate in samples. A run that would take more than this is not made: a
# compliant (600 s) stream run of a 6 us model would make 400M queries.
LOADGEN_BYTES_PER_QUERY = 320
LOADGEN_BYTES_PER_SAMPLE = 8  # each further sample of a multistream query: its index
LOADGEN_BYTES_PER_OFFLINE_SAMPLE = 500
LOADGEN_QUERY_MEMORY = 4 * 2**30
# The latency LoadGen is told to expect of a stream query: half the probe's (an underestimate
# only makes more queries; an overestimate ends the run before its minimum duration).
EXPECTED_SHARE = 0.5


def expected_latency_ns(per_query_s: float) -> int:
    """What a stream run tells LoadGen to expect of one query (at least 1 us)."""
    return max(int(per_query_s * 1e9 * EXPECTED_SHARE), 1000)


def pregenerated_queries(settings: ScenarioSettings, rate: float, per_query_s: float,
                         queries: int | None = None) -> int:
    """How many queries (an offline run: samples) LoadGen would make up front for one run of
    `settings` at `rate` (offline: samples per second) with queries expected to take
    `per_query_s` (what GenerateQueries makes, less the small minimum counts of mlperf.conf)."""
    compliant = settings.compliant
    duration = MLPERF_MIN_DURATION_S if compliant else settings.run_s
    if settings.scenario == "offline":
        return max(queries or 1, math.ceil(1.1 * duration * rate))
    if settings.scenario == "server":
        if not compliant:
            return queries or settings.server_queries(rate)
        return max(queries or 0, math.ceil(duration * rate))
    fewest = queries or min_queries(settings.scenario)
    return max(fewest, math.ceil(2 * duration / (expected_latency_ns(per_query_s) / 1e9)))


def loadgen_bytes(settings: ScenarioSettings, count: int) -> int:
    """What `count` pre-generated queries (offline: samples) of `settings` take."""
    if settings.scenario == "offline":
        return count * LOADGEN_BYTES_PER_OFFLINE_SAMPLE
    extra = max(settings.batch_sizes) - 1 if settings.scenario == "multistream" else 0
    return count * (LOADGEN_BYTES_PER_QUERY + extra * LOADGEN_BYTES_PER_SAMPLE)


def too_many_queries(settings: ScenarioSettings, rate: float, per_query_s: float,
                     queries: int | None = None) -> str | None:
    """Why a run cannot be made here because LoadGen would hold too many queries, or None."""
    count = pregenerated_queries(settings, rate, per_query_s, queries)
    need = loadgen_bytes(settings, count)
    if need <= LOADGEN_QUERY_MEMORY:
        return None
    duration = MLPERF_MIN_DURATION_S if settings.compliant else settings.run_s
    what = "samples" if settings.scenario == "offline" else "queries"
    if settings.scenario == "server" and not settings.compliant:
        how, way_out = "its --queries", "give fewer --queries"
    elif settings.scenario == "server":
        how, way_out = f"{duration:g} s at {rate:,.0f} q/s", "drop --compliant"
    elif settings.scenario == "offline":
        how = f"1.1 x {duration:g} s at {rate:,.0f} samples/s"
        way_out = "drop --compliant" if settings.compliant else "give a shorter --duration"
    else:
        how = (f"2 x {duration:g} s at the {expected_latency_ns(per_query_s) / 1e3:.3g} us a "
               "query LoadGen is told to expect")
        way_out = ("drop --compliant (short runs of --duration seconds)" if settings.compliant
                   else "give a shorter --duration")
    return (f"a LoadGen run here would make {count:,} {what} up front ({how}), about "
            f"{need / 2**30:.0f} GiB, more than the {LOADGEN_QUERY_MEMORY / 2**30:g} GiB "
            f"allowed: not run; {way_out}")

# The serving paths of an option, the pool apart from the runtime. ONNX Runtime releases the
# GIL while it runs: worker threads sharing one session (`shared`) or holding one each
# (`per-worker`), and worker processes, one session each (`processes`). PyTorch releases it
# inside its operators: worker processes, and worker threads with a model each (`threads`).
# Keras and scikit-learn hold it for much of a call: worker processes only. `+batching`
# gathers queued queries into one call (up to the batch size, waiting at most --max-delay-ms),
# as serving systems do; only the Server scenario has queries to gather.
POOLS = {"onnxruntime": ("shared", "per-worker", "processes"),
         "native_torch": ("processes", "threads")}
POOLS_OF_OTHERS = ("processes",)
BATCHING = "+batching"


def loadgen_missing() -> str | None:
    """Why LoadGen cannot run here (with how to install it), or None."""
    import importlib.util

    if importlib.util.find_spec("mlperf_loadgen") is None:
        return ("MLPerf LoadGen is not installed: install it with "
                "pip install 'deploybench[loadgen]'")
    return None


STREAMS = ("singlestream", "multistream")  # one query in flight: one worker, one session


def variants(runner: str, scenario: str) -> tuple[str, ...]:
    """The serving paths of a runner (`onnxruntime`, `native_torch`, ...) in a scenario."""
    plain = POOLS.get(runner, POOLS_OF_OTHERS)
    if scenario in STREAMS:
        return plain[:1]
    if scenario != "server":
        return plain
    return (*plain, *(v + BATCHING for v in plain))


def batches_of(settings: ScenarioSettings, variant: str) -> tuple[int, ...]:
    """The batch sizes a scenario step of `variant` makes a record for."""
    if variant.endswith(BATCHING) or settings.scenario in ("offline", "multistream"):
        return settings.batch_sizes
    return (1,)


def default_timeout(settings: Sequence[ScenarioSettings]) -> float:
    """Seconds an option may take: 600, or room for a compliant search of 600 s runs."""
    if any(s.compliant for s in settings):
        return MLPERF_MIN_DURATION_S * (MAX_POINTS + SLOW_RETRIES + 2)
    return 600.0


@dataclass(frozen=True)
class ScenarioSettings:
    """One scenario as the user asked for it (`loadgen` flags, or a suite's [scenarios.NAME])."""

    scenario: str = "server"
    # the latency bound (DEFAULT_P99_MS when not given): the server's validity, and whether a
    # stream's percentile is within it; offline has none
    p99_ms: float | None = None
    target_qps: float | None = None  # server: this rate instead of a search; offline: sizing
    # offline and streams: each LoadGen run's minimum duration (DEFAULT_DURATION_S when not
    # given); a server run is sized by `queries` instead (SERVER_QUERIES when not given)
    duration_s: float | None = None
    queries: int | None = None
    compliant: bool = False  # MLPerf's own minimum duration and query counts
    # the pool: `workers` workers of `threads` threads each (`layout` fills in what is not
    # given); by default a worker per physical core of one thread each (server and offline on
    # the CPU), or one worker with every core (the streams; on CUDA, one worker per GPU)
    workers: int | None = None
    threads: int | None = None
    batch_sizes: tuple[int, ...] = ()  # server: the batching maximum; offline: per call;
    # multistream: samples per query; default DEFAULT_BATCH
    max_delay_ms: float | None = None  # batching: the longest a query waits (default bound/10)
    # server search: the longest one run may last at the lowest rate it tries (default
    # LONGEST_SERVER_RUN_S); `advise` allows a slow model's confirmations longer
    longest_run_s: float | None = None
    # whether the workers' threads spin while they wait for work (ONNX Runtime's intra-op
    # pool, OpenMP's wait policy): off by default, as workers share the cores; on, a worker of
    # several threads answers sooner and takes cores from its neighbours
    spinning: bool = False
    # server search: every option searched once per round, the options' searches side by side
    # (their runs taking turns) and their order flipping from round to round, so all meet the
    # same spells of the machine (default DEFAULT_ROUNDS;
    # one elsewhere: a figure of another scenario is one run, not a search)
    rounds: int | None = None
    # A setting that does nothing in a scenario is refused rather than ignored.

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise BadInputError(f"--scenario {self.scenario!r}: choose one of "
                                f"{', '.join(SCENARIOS)}")
        for flag, value in (("--p99-ms", self.p99_ms), ("--target-qps", self.target_qps),
                            ("--duration", self.duration_s)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise BadInputError(f"{flag} {value:g}: give a number > 0")
        if self.scenario == "server" and self.duration_s is not None and not self.compliant:
            raise BadInputError(
                "--duration: a server run is sized by its queries (--queries, default "
                f"{SERVER_QUERIES}), the same number at every rate, so that LoadGen's early "
                "stopping judges a slow option and a fast one alike; give --queries (queries = "
                "N in a suite) instead")
        if self.queries is not None and (self.scenario != "server" or self.compliant):
            raise BadInputError(
                "--queries: only a server run (not --compliant) is sized by its queries; "
                + ("leave --queries out" if self.compliant else "give --duration instead"))
        if self.queries is not None and not (isinstance(self.queries, int)
                                             and self.queries >= MIN_QUERIES):
            raise BadInputError(f"--queries {self.queries}: give a whole number >= "
                                f"{MIN_QUERIES} (LoadGen's early stopping needs 459 queries "
                                "to call any p99 VALID)")
        if self.longest_run_s is not None and not (
                self.longest_run_s >= SHORTEST_SERVER_RUN_S
                and math.isfinite(self.longest_run_s)):
            raise BadInputError(f"--longest-run {self.longest_run_s:g}: give seconds >= "
                                f"{SHORTEST_SERVER_RUN_S:g} (the shortest a run lasts), "
                                "e.g. 60")
        if self.longest_run_s is not None and (self.scenario != "server" or self.compliant):
            raise BadInputError("--longest-run: only a server search (not --compliant) has a "
                                "lowest rate to bound; leave --longest-run out")
        if self.workers is not None and self.workers < 1:
            raise BadInputError(f"--workers {self.workers}: give a whole number >= 1")
        if self.rounds is not None and not (isinstance(self.rounds, int) and self.rounds >= 1):
            raise BadInputError(f"--rounds {self.rounds}: give a whole number >= 1")
        if self.rounds not in (None, 1) and not self.searched:
            raise BadInputError("--rounds: only a server search (no --target-qps) is made in "
                                "rounds; leave --rounds out")
        if self.threads is not None and self.threads < 1:
            raise BadInputError(f"--threads {self.threads}: give the threads each worker gets, "
                                "a whole number >= 1")
        if self.max_delay_ms is not None and not (self.max_delay_ms >= 0
                                                  and math.isfinite(self.max_delay_ms)):
            raise BadInputError(f"--max-delay-ms {self.max_delay_ms:g}: give a number >= 0")
        sizes = tuple(self.batch_sizes) or (DEFAULT_BATCH[self.scenario],)
        if any(b < 1 for b in sizes) or len(set(sizes)) != len(sizes):
            raise BadInputError(f"--batch-sizes {','.join(map(str, sizes))}: give whole "
                                "numbers >= 1, each once, e.g. 8")
        if self.scenario == "singlestream" and sizes != (1,):
            raise BadInputError("--batch-sizes: a singlestream query is one sample; leave "
                                "--batch-sizes out")
        if self.scenario == "offline" and self.p99_ms is not None:
            raise BadInputError("--p99-ms: offline has no latency bound (its figure is samples "
                                "per second); leave --p99-ms out")
        if self.scenario in STREAMS and self.target_qps is not None:
            raise BadInputError(f"--target-qps: {self.scenario} sends the next query when the "
                                "last is answered, at no set rate; leave --target-qps out")
        if self.scenario != "server" and self.max_delay_ms is not None:
            raise BadInputError("--max-delay-ms: only the server scenario batches queries; "
                                "leave --max-delay-ms out")
        if self.scenario in STREAMS and self.workers not in (None, 1):
            raise BadInputError(f"--workers {self.workers}: {self.scenario} has one query in "
                                "flight, so one worker (with every core, or --threads of them); "
                                "leave --workers out")
        if self.compliant and self.scenario == "multistream" and sizes != (8,):
            raise BadInputError("--compliant: MLPerf's multistream queries are 8 samples; leave "
                                "--batch-sizes out")
        object.__setattr__(self, "batch_sizes", sizes)

    def check_timeout(self, timeout_s: float) -> None:
        """BadInputError where an option's runs could not end within `timeout_s`."""
        if self.compliant and timeout_s < 2 * MLPERF_MIN_DURATION_S:
            raise BadInputError(
                f"--timeout (timeout_s) {timeout_s:g}: a compliant LoadGen run lasts at least "
                f"{MLPERF_MIN_DURATION_S:g} s and a search makes several; give 9600 (the "
                "default of loadgen --compliant) or more")
        if (self.scenario == "server" and not self.compliant and self.target_qps
                and 1.5 * self.query_count / self.target_qps + 30 > timeout_s):
            needed = 1.5 * self.query_count / self.target_qps + 30
            raise BadInputError(
                f"--target-qps {self.target_qps:g}: a run of {self.query_count} queries at that "
                f"rate lasts {self.query_count / self.target_qps:,.0f} s, more than --timeout "
                f"(timeout_s) {timeout_s:g} s allows; give fewer --queries or a timeout of at "
                f"least {needed:,.0f} s")
        if self.scenario != "server" and 2 * self.run_s + 30 > timeout_s:
            raise BadInputError(
                f"--duration (duration_s) {self.run_s:g} s cannot run within --timeout "
                f"(timeout_s) {timeout_s:g} s: give a timeout of at least "
                f"{2 * self.run_s + 30:g} s, or a shorter duration")

    def layout(self, provider: str, cores: int) -> tuple[int, int]:
        """The pool on a machine of `cores` physical cores: (workers, threads each). What was
        given stands; without `workers`, one worker (the streams: one query in flight; CUDA:
        one per GPU) or as many as `cores` holds at `threads` each (one by default); without
        `threads`, each worker's share of `cores` (at least one)."""
        workers = self.workers
        if workers is None:
            alone = self.scenario in STREAMS or provider != "cpu"
            workers = 1 if alone else max(1, cores // (self.threads or 1))
        return workers, self.threads if self.threads is not None else max(1, cores // workers)

    @property
    def run_s(self) -> float:
        """Offline and streams: each run's minimum duration."""
        return DEFAULT_DURATION_S if self.duration_s is None else self.duration_s

    @property
    def query_count(self) -> int:
        """Server: each run's queries (more at a rate where they would not last
        SHORTEST_SERVER_RUN_S: `server_queries`)."""
        return SERVER_QUERIES if self.queries is None else self.queries

    def server_queries(self, rate: float) -> int:
        """Server (not compliant): a run's queries at `rate`: `query_count`, or as many as
        last SHORTEST_SERVER_RUN_S there, whichever is more."""
        return max(self.query_count, math.ceil(rate * SHORTEST_SERVER_RUN_S))

    @property
    def longest_s(self) -> float:
        """Server: the longest a run may last at the search's lowest rate."""
        return LONGEST_SERVER_RUN_S if self.longest_run_s is None else self.longest_run_s

    @property
    def bound_ms(self) -> float:
        return DEFAULT_P99_MS if self.p99_ms is None else self.p99_ms

    @property
    def delay_ms(self) -> float:
        return self.bound_ms / 10 if self.max_delay_ms is None else self.max_delay_ms

    @property
    def short(self) -> str | None:
        """Why this run is shorter than MLPerf's rules ask, or None when it is compliant."""
        if self.compliant:
            return None
        if self.scenario == "server":
            return (f"each LoadGen run had {self.query_count:,} queries (more where they "
                    f"would last under {SHORTEST_SERVER_RUN_S:g} s), not MLPerf's 270,336 "
                    f"over at least {MLPERF_MIN_DURATION_S:g} s: a short run; its verdict holds "
                    "for that run only (--compliant applies MLPerf's minimum duration and "
                    "query counts)")
        return (f"each LoadGen run lasted {self.run_s:g} s, not MLPerf's "
                f"{MLPERF_MIN_DURATION_S:g} s: a short run; its verdict holds for that run "
                "only (--compliant applies MLPerf's minimum duration and query counts)")

    @property
    def searched(self) -> bool:
        """Whether each option's figure is a server search's peak (not a run at a rate)."""
        return self.scenario == "server" and self.target_qps is None

    @property
    def bisect_to(self) -> float:
        """How close a search's highest good and lowest bad rates must come."""
        return BISECT_TO if self.round_count == 1 else ROUNDS_BISECT_TO

    @property
    def round_count(self) -> int:
        """How many rounds each option is searched in."""
        if self.rounds is not None:
            return self.rounds
        return DEFAULT_ROUNDS if self.searched else 1

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "batch_sizes": list(self.batch_sizes)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ScenarioSettings:
        values = dict(raw)
        values["batch_sizes"] = tuple(values.get("batch_sizes", ()))
        if values.get("scenario", "server") == "server" and "queries" not in values:
            values.pop("duration_s", None)  # recorded before server runs were sized by queries
        return cls(**values)


def parse_duration(text: str, flag: str = "--duration") -> float:
    """Seconds from `30`, `30s`, `500ms`, `2m`; BadInputError naming the flag otherwise."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|min)?\s*", str(text))
    if not found:
        raise BadInputError(f"{flag} {text!r}: give a duration such as 2s, 500ms or 1m")
    value = float(found.group(1)) * {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0,
                                     None: 1.0}[found.group(2)]
    if value <= 0:
        raise BadInputError(f"{flag} {text!r}: give a duration > 0, e.g. 2s")
    return value


@dataclass(frozen=True)
class LoadGenResult:
    """What LoadGen said of one run (from its mlperf_log_detail.txt)."""

    scenario: str
    valid: bool
    reason: str  # why not VALID, in LoadGen's words ("" when valid)
    latency_ms: dict[str, float]  # p50, p90, p95, p97, p99, p99.9, mean, min, max
    scheduled_qps: float | None = None  # server
    completed_qps: float | None = None  # server; samples per second offline; queries/s streams
    queries: int | None = None
    early_stopping: str = ""
    # LoadGen's early-stopping estimate of a percentile (p90, p99): MLPerf's figure for the
    # single- and multi-stream scenarios, a little above the plain percentile of a short run
    estimate_ms: dict[str, float] = field(default_factory=dict)
    more_queries: int | None = None  # early stopping: how many more queries it would need
    perf_met: bool | None = None  # the plain percentile was within the bound (server)
    duration_met: bool | None = None  # it lasted its minimum duration
    target: float | None = None  # the rate (server) or samples/s (offline) it was asked for
    extended: bool = False  # a run made again, sized from what LoadGen measured (offline,
    # streams) after the first ended before its minimum duration
    log: str = ""  # the folder of LoadGen's logs of this run
    joules: float | None = None  # the device's energy over the run, where a counter is readable
    steal_percent: float | None = None  # CPU time the hypervisor gave elsewhere during the run
    core_speed: tuple[float, ...] | None = None  # each core's speed read right after a failure

    @property
    def p99_ms(self) -> float | None:
        return self.latency_ms.get("p99")

    def point(self, target_qps: float | None) -> dict[str, Any]:
        """The record's account of this run."""
        return {"target_qps": target_qps, "scheduled_qps": self.scheduled_qps,
                "completed_qps": self.completed_qps, "valid": self.valid, "reason": self.reason,
                "queries": self.queries, "latency_ms": self.latency_ms,
                "estimate_ms": self.estimate_ms, "extended": self.extended, "log": self.log,
                "joules": self.joules, "steal_percent": self.steal_percent,
                "core_speed": list(self.core_speed) if self.core_speed else None}


def read_detail_log(path: Path, scenario: str) -> LoadGenResult:
    """LoadGen's verdict and figures from its detail log (one `:::MLLOG {json}` per line)."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith(":::MLLOG "):
            continue
        try:
            entry = json.loads(line[len(":::MLLOG "):])
        except json.JSONDecodeError:
            continue
        values[entry.get("key", "")] = entry.get("value")
        if entry.get("key") == "error_invalid_config" or (
                entry.get("metadata", {}).get("is_error") and entry.get("key") != "num_errors"):
            errors.append(str(entry.get("value")))
    if "result_validity" not in values:
        raise ValueError(f"{path}: LoadGen wrote no result ({'; '.join(errors) or 'no log'})")
    latency = {}
    for key, value in values.items():
        found = re.fullmatch(r"result_(\d+\.\d+)_percentile_latency_ns", key)
        if found:
            latency[_percentile_name(float(found.group(1)))] = value / 1e6
    for name in ("mean", "min", "max"):
        if f"result_{name}_latency_ns" in values:
            latency[name] = values[f"result_{name}_latency_ns"] / 1e6
    valid = values["result_validity"] == "VALID"
    reason = "" if valid else _invalid_reason(values, errors)
    completed = values.get("result_completed_samples_per_sec",
                           values.get("result_samples_per_second",
                                      values.get("result_qps_with_loadgen_overhead")))
    early = " ".join(str(values.get("early_stopping_result", "")).split())
    estimates = {_percentile_name(float(p)): int(ns) / 1e6 for p, ns in re.findall(
        r"Early stopping (\d+(?:\.\d+)?)th percentile estimate: (\d+)", early)}
    more = re.search(r"Would need to run at least (\d+) more queries", early)
    return LoadGenResult(scenario, valid, reason, latency,
                         values.get("result_scheduled_samples_per_sec"), completed,
                         values.get("result_query_count"), early, estimates,
                         int(more.group(1)) if more else None,
                         values.get("result_perf_constraints_met"),
                         values.get("result_min_duration_met"))


def _percentile_name(value: float) -> str:
    return f"p{value:g}"


def _invalid_reason(values: Mapping[str, Any], errors: Sequence[str]) -> str:
    reasons = []
    if values.get("result_perf_constraints_met") is False:
        reasons.append("the latency bound was not met")
    if values.get("early_stopping_met") is False:
        reasons.append("early stopping: " + " ".join(
            str(values.get("early_stopping_result", "")).split()).lstrip("* "))
    if values.get("result_min_duration_met") is False:
        reasons.append("the minimum duration was not met")
    if values.get("result_min_queries_met") is False:
        reasons.append("too few queries")
    if values.get("result_invalid_reason"):
        reasons.append(str(values["result_invalid_reason"]).strip())
    return "; ".join(reasons + list(errors)) or "LoadGen called the run INVALID"


CONFIRMATION_RUNS = 2  # runs a peak rate must pass, all of them, to count as sustained


@dataclass
class PeakSearch:
    """The points a peak search tried, and the highest rate that was good.

    `kind` says what `peak_qps` is: `sustained` (a higher rate failed, and the peak passed
    CONFIRMATION_RUNS runs), `unconfirmed` (the search ran out of runs before confirming it),
    `lower bound` (every rate tried was valid: the peak is higher), `cut` (a run would not have
    fit in the time left), or `none` (no rate was valid). Only a sustained peak may be
    picked."""

    points: list[dict[str, Any]] = field(default_factory=list)
    peak_qps: float | None = None  # the scheduled rate of the best good point
    cut_at: float | None = None  # the rate a run of which would not have fit in the time left
    kind: str = "none"
    confirming: list[dict[str, Any]] = field(default_factory=list)  # the peak's runs

    peak_point: dict[str, Any] | None = None  # the run the peak's figures come from
    # rates below the peak that failed more runs than they passed: the path's p99 was higher
    # at a lower load (on an idle machine each hand-over between threads and processes waits
    # for a sleeping core to wake), so a machine serving less than the peak may miss the bound
    failed_below: list[float] = field(default_factory=list)

    @property
    def bracketed(self) -> bool:
        """Whether a run at or above the best valid rate was refused (else the peak is only a
        lower bound; a failed run below it, such as a blip on the first run, does not count)."""
        best = self.best
        return best is not None and any(
            not p["valid"] and (p["target_qps"] or 0.0) >= (best["target_qps"] or 0.0)
            for p in self.points)

    @property
    def best(self) -> dict[str, Any] | None:
        good = [p for p in self.points if p["valid"]]
        return max(good, key=lambda p: p["scheduled_qps"] or 0.0, default=None)


def slow_core(reading: Sequence[float], before: Sequence[Sequence[float]],
              slow: float = 0.15) -> bool:
    """Whether a core in `reading` ran more than `slow` below the same core's fastest in
    `before` (earlier readings of the same cores): each core against itself, so cores of
    unequal speed (performance and efficiency cores) are not slow for being unequal."""
    return any(value < (1 - slow) * max((r[n] for r in before if len(r) > n), default=value)
               for n, value in enumerate(reading))


def again_when_slow(run: Callable[[float], LoadGenResult],
                    read: Callable[[], Sequence[float] | None], speeds: list[Sequence[float]],
                    set_aside: list[dict[str, Any]], retries: int = SLOW_RETRIES, *,
                    slow: float = 0.15, fits: Callable[[float], bool] = lambda rate: True
                    ) -> Callable[[float], LoadGenResult]:
    """`run`, where a failed run is followed by a reading of each core's speed (`read`, as
    `toolkit.busy.core_speed`); where a core read more than `slow` below its own fastest in
    `speeds` (this option's readings so far), the run goes to `set_aside` and is made again
    if it still `fits` the time left, up to `retries` times in all. On a virtual machine a
    core can run at half speed for seconds with no steal to show it: such a spell, not the
    option, failed that run. A pass is never questioned (a slow spell only makes it
    harder)."""

    def steady(rate: float) -> LoadGenResult:
        result = run(rate)
        while not result.valid and len(set_aside) < retries:
            reading = read()
            if not reading:
                break
            result = dataclasses.replace(result, core_speed=tuple(reading))
            slowed = slow_core(reading, speeds, slow)
            speeds.append(tuple(reading))
            if not slowed or not fits(rate):
                break
            set_aside.append(result.point(round(rate, 3)))
            result = run(rate)
        return result

    return steady


def search_peak(run_at: Callable[[float], LoadGenResult], start_qps: float, *,
                bisect_to: float = BISECT_TO, max_points: int = MAX_POINTS,
                floor_qps: float = 1.0, fits: Callable[[float], bool] = lambda rate: True,
                confirmation_runs: int = CONFIRMATION_RUNS, bound_ms: float | None = None,
                step: float = 2.0) -> PeakSearch:
    """The highest rate whose runs `run_at` calls valid: double from `start_qps` until a rate
    fails (or halve, down to `floor_qps`, until one passes; `step` times, where the start is
    known to be near the peak), then bisect between the best good
    and the lowest bad rate until they are within `bisect_to` of each other, as LoadGen's
    FindPeakPerformance does. Guards against one noisy run, which near a limit both passes
    and fails at random: a failed run is run again, and a rate is bad only when it fails two
    of two (or of three, where the second passed), so one blip in the doubling does not cap
    the search; and the peak must pass `confirmation_runs` runs, more than it failed. A peak
    that fails its confirmation becomes the lowest bad rate and the search goes on below it
    (from the next good rate down, else a step of twice `bisect_to` at a time). A rate whose
    run does not `fit` in the time left ends the search.

    p99 need not rise with the rate: a serving path whose hand-overs wait for an idle core to
    wake has its worst tail at low load, and is within the bound once busy. So once per search,
    a rate that failed while not overloaded (with `bound_ms`: every failed run answered its
    scheduled rate and had a median under half the bound) is looked past: the search tries
    LOOK_PAST times that rate (where a run there fits, below any rate already refused), and
    climbs from there if it passes. The failed rates below the
    peak are kept in `failed_below`."""
    search = PeakSearch()
    good: float | None = None
    bad: float | None = None
    rate = start_qps
    passes: dict[float, int] = {}  # rate -> valid runs at it
    fails: dict[float, int] = {}  # rate -> refused runs at it

    def run(target: float) -> bool | None:
        if not fits(target):
            search.cut_at = target
            return None
        result = run_at(target)
        search.points.append(result.point(round(target, 3)))
        tally = passes if result.valid else fails
        tally[target] = tally.get(target, 0) + 1
        return result.valid

    def room() -> bool:
        return len(search.points) < max_points and search.cut_at is None

    def attempt(target: float) -> bool | None:
        """A rate's verdict: one pass, or two fails (a split is settled by a third run)."""
        passed = run(target)
        if passed is False and room():
            passed = run(target)  # a failure is run again
            if passed and room():
                passed = run(target)  # failed once, passed once: a third run decides
        return passed

    def unloaded(target: float) -> bool:
        failed = [p for p in search.points if p["target_qps"] == round(target, 3)
                  and not p["valid"]]
        return bool(failed) and bound_ms is not None and all(
            (p["latency_ms"].get("p50") or bound_ms) < UNLOADED_P50_SHARE * bound_ms
            and (p["completed_qps"] or 0.0) >= UNLOADED_COMPLETED * (p["scheduled_qps"] or 0.0)
            for p in failed)

    looked = False
    while room():
        passed = attempt(rate)
        if passed is None:
            break
        if passed:
            good = rate
            if bad is not None:
                break
            rate *= step
            continue
        if (not looked and unloaded(rate) and room() and fits(rate * LOOK_PAST)
                and (bad is None or rate * LOOK_PAST < bad)):
            looked = True  # once: a real limit is not looked past twice
            past = attempt(rate * LOOK_PAST)
            if past:
                good, rate = rate * LOOK_PAST, rate * LOOK_PAST * 2
                continue
        bad = rate
        if good is not None or rate <= floor_qps:
            break
        rate = max(rate / step, floor_qps)

    def held(target: float) -> bool:
        return passes.get(target, 0) >= confirmation_runs and passes[target] > fails.get(target, 0)

    while good is not None and bad is not None and room():
        if (bad - good) > bisect_to * good:
            middle = (good + bad) / 2
            passed = attempt(middle)
            if passed:
                good = middle
            elif passed is not None:
                bad = middle
            continue
        if held(good):
            break
        if attempt(good) is False:  # its confirmation failed: the peak lies below
            bad = good
            lower = [r for r in passes if r < bad and passes[r] > fails.get(r, 0)]
            good = max(lower) if lower else None
            rate = bad
            while good is None and rate > floor_qps and room():  # step down, a notch a rate
                rate = max(rate * (1 - 2 * bisect_to), floor_qps)
                passed = attempt(rate)
                if passed is None:
                    break
                if passed:
                    good = rate
                else:
                    bad = rate
    best = search.best
    if best is None:
        return search
    mostly = [p for p in search.points if p["valid"]
              and passes.get(p["target_qps"], 0) > fails.get(p["target_qps"], 0)]
    point = max(mostly or [best], key=lambda p: p["scheduled_qps"] or 0.0)
    sustained = [r for r in passes if held(r) and (bad is None or r < bad)]
    if search.cut_at is not None and not search.bracketed:
        search.kind = "cut"
    elif not search.bracketed:
        search.kind = "lower bound"
    elif sustained:
        top = max(sustained)
        search.confirming = [p for p in search.points if p["target_qps"] == round(top, 3)
                             and p["valid"]]
        point = min(search.confirming, key=lambda p: p["scheduled_qps"] or top)
        search.kind = "sustained"
    else:
        search.kind = "unconfirmed"
    search.peak_point = point
    search.peak_qps = point["scheduled_qps"]
    search.failed_below = sorted(round(rate, 3) for rate in fails
                                 if rate < (point["target_qps"] or 0.0)
                                 and fails[rate] > passes.get(rate, 0))
    return search
