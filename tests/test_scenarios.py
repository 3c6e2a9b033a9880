"""The LoadGen parts that need no model: settings, durations, the peak search, and the pool of
workers that stands in front of a model (fed here by plain Python functions)."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from toolkit.errors import BadInputError
from toolkit.scenarios import (
    MAX_POINTS,
    SLOW_RETRIES,
    LoadGenResult,
    ScenarioSettings,
    again_when_slow,
    parse_duration,
    search_peak,
    slow_core,
    variants,
)
from toolkit.serving import Job, ThreadPool


def fake_loadgen(limit_qps: float, calls: list[float]):
    """A system whose runs are valid at or below `limit_qps`, and scheduled at the rate asked."""
    def run_at(rate: float) -> LoadGenResult:
        calls.append(rate)
        valid = rate <= limit_qps
        return LoadGenResult("server", valid, "" if valid else "the latency bound was not met",
                             {"p99": 1.0 if valid else 50.0}, scheduled_qps=rate,
                             completed_qps=rate, queries=1000)
    return run_at


@pytest.mark.parametrize("start", [100.0, 7000.0, 3000.0])
def test_the_peak_search_finds_the_limit_within_its_precision(start):
    calls: list[float] = []
    search = search_peak(fake_loadgen(3000.0, calls), start, bisect_to=0.05)
    assert search.peak_qps is not None
    assert 3000.0 / 1.05 <= search.peak_qps <= 3000.0
    assert len(search.points) == len(calls) <= MAX_POINTS
    assert any(not p["valid"] for p in search.points)  # it found where the system gives way
    if start < 3000.0:  # doubling first: each rate twice the one before, until one fails
        first_bad = next(i for i, p in enumerate(search.points) if not p["valid"])
        assert calls[:first_bad + 1] == [start * 2**i for i in range(first_bad + 1)]


def test_the_peak_search_halves_until_a_rate_is_valid_and_says_when_none_is():
    calls: list[float] = []
    search = search_peak(fake_loadgen(10.0, calls), 1000.0, bisect_to=0.05)
    assert calls[:4] == [1000.0, 1000.0, 500.0, 500.0]  # a rate is bad when it fails twice
    assert search.peak_qps is not None and search.peak_qps <= 10.0
    assert search.kind == "sustained"
    none = search_peak(fake_loadgen(0.0, []), 8.0, floor_qps=1.0)
    assert none.peak_qps is None and none.best is None and none.kind == "none"
    assert [p["target_qps"] for p in none.points] == [8.0, 8.0, 4.0, 4.0, 2.0, 2.0, 1.0, 1.0]
    at_floor = search_peak(fake_loadgen(1.5, []), 100.0, floor_qps=1.0)  # 0.78 < floor: try 1
    tried = [p["target_qps"] for p in at_floor.points]
    assert 1.0 in tried and 0.781 not in tried  # the floor itself, never below it
    assert at_floor.peak_qps is not None and 1.0 <= at_floor.peak_qps <= 1.5


def test_the_peak_search_stops_before_a_run_that_would_not_fit_and_says_so():
    calls: list[float] = []
    search = search_peak(fake_loadgen(3000.0, calls), 1000.0, fits=lambda rate: rate < 3500)
    assert calls == [1000.0, 2000.0] and search.cut_at == 4000.0
    assert search.peak_qps == 2000.0 and not search.bracketed and search.kind == "cut"
    unbounded = search_peak(fake_loadgen(1e12, []), 1000.0, max_points=4)
    assert not unbounded.bracketed and unbounded.peak_qps == 8000.0
    assert unbounded.kind == "lower bound"


def test_a_failed_first_run_does_not_cap_the_search():
    """One INVALID run at the start (a cold pool, a noisy second) is run again, so the search
    still climbs to the real limit instead of halving away from it."""
    calls: list[float] = []
    steady = fake_loadgen(3000.0, calls)

    def blip_first(rate: float) -> LoadGenResult:
        result = steady(rate)
        if len(calls) == 1:
            return LoadGenResult("server", False, "the latency bound was not met",
                                 {"p99": 50.0}, scheduled_qps=rate, completed_qps=rate)
        return result

    search = search_peak(blip_first, 1000.0, bisect_to=0.05)
    assert calls[:2] == [1000.0, 1000.0]
    assert search.kind == "sustained" and 3000.0 / 1.05 <= search.peak_qps <= 3000.0
    # a blip and then nothing but valid runs: the peak is a lower bound, not unconfirmed
    endless: list[float] = []
    fast = fake_loadgen(1e12, endless)

    def blip_then_valid(rate: float) -> LoadGenResult:
        result = fast(rate)
        return dataclasses.replace(result, valid=False) if len(endless) == 1 else result

    unbounded = search_peak(blip_then_valid, 1000.0, max_points=4)
    assert endless == [1000.0, 1000.0, 1000.0, 2000.0]  # one fail, one pass: a third decides
    assert unbounded.kind == "lower bound" and unbounded.peak_qps == 2000.0


def test_one_failed_run_in_the_doubling_does_not_cap_the_search():
    """A rate fails only by failing twice: a single noisy failure at 2000 (a real search here
    had one at a quarter of its limit and stopped there) is run again and passes."""
    calls: list[float] = []
    steady = fake_loadgen(3000.0, calls)

    def blip_at_2000(rate: float) -> LoadGenResult:
        result = steady(rate)
        if rate == 2000.0 and calls.count(2000.0) == 1:
            return dataclasses.replace(result, valid=False)
        return result

    search = search_peak(blip_at_2000, 1000.0, bisect_to=0.05)
    assert calls[:5] == [1000.0, 2000.0, 2000.0, 2000.0, 4000.0]  # split 1-1: a third decides
    assert search.kind == "sustained" and 3000.0 / 1.05 <= search.peak_qps <= 3000.0


def test_runs_failed_in_a_slow_spell_of_the_cores_are_made_again_and_no_more():
    """A machine whose cores ran at half speed for its first runs (its readings say 7 against
    14): the failures then are set aside and made again, and the search finds the limit of
    the steady machine; without the readings the spell caps it at half. A failure while the
    cores read steady is kept, and at most SLOW_RETRIES runs a search are set aside."""
    def spell(runs_slow: int):
        calls: list[float] = []
        steady = fake_loadgen(3000.0, calls)

        def run_at(rate: float) -> LoadGenResult:
            result = steady(rate)
            return dataclasses.replace(result, valid=False) if (
                len(calls) <= runs_slow and rate > 1500.0) else result

        def read() -> list[float]:
            return [7.0, 14.0] if len(calls) <= runs_slow else [14.0, 13.9]
        return calls, run_at, read

    calls, run_at, _ = spell(3)
    capped = search_peak(run_at, 1000.0, bisect_to=0.05)
    assert capped.peak_qps is not None and capped.peak_qps < 2000.0  # the spell decided it

    calls, run_at, read = spell(3)
    set_aside: list[dict] = []
    search = search_peak(again_when_slow(run_at, read, [[14.1, 14.0]], set_aside), 1000.0,
                         bisect_to=0.05)
    assert search.kind == "sustained" and 3000.0 / 1.05 <= search.peak_qps <= 3000.0
    assert [p["target_qps"] for p in set_aside] == [2000.0, 2000.0]
    assert all(p["core_speed"] == [7.0, 14.0] and not p["valid"] for p in set_aside)
    # the failures above the limit were read steady, kept, and carry their reading
    assert any(p["core_speed"] == [14.0, 13.9] and not p["valid"] for p in search.points)

    calls, run_at, read = spell(100)  # slow for good: the retries run out, the failure stays
    set_aside = []
    search = search_peak(again_when_slow(run_at, read, [[14.0, 14.0]], set_aside), 1000.0)
    assert len(set_aside) == SLOW_RETRIES and search.peak_qps < 2000.0
    # a run made again must fit the time left, as every run of the search must
    calls, run_at, read = spell(3)
    set_aside = []
    search_peak(again_when_slow(run_at, read, [[14.0, 14.0]], set_aside,
                                fits=lambda rate: rate < 2000.0), 1000.0)
    assert set_aside == [] and calls.count(2000.0) == 2  # failed twice, each kept
    # each core against its own fastest: a core slower than the other throughout is not slow
    assert not slow_core([14.0, 7.0], [[14.1, 7.1]]) and slow_core([14.0, 5.0], [[14.1, 7.1]])


def test_a_lucky_pass_is_not_a_peak_until_it_is_confirmed():
    """A rate above the limit that passed once fails its confirming run: it becomes the lowest
    bad rate, and the peak reported passed every run made at it."""
    calls: list[float] = []
    steady = fake_loadgen(3000.0, calls)
    lucky: set[float] = set()

    def lucky_once(rate: float) -> LoadGenResult:
        result = steady(rate)
        if 3000.0 < rate < 3200.0 and rate not in lucky:
            lucky.add(rate)
            return LoadGenResult("server", True, "", {"p99": 1.0}, scheduled_qps=rate,
                                 completed_qps=rate, queries=1000)
        return result

    search = search_peak(lucky_once, 1000.0, bisect_to=0.05)
    assert lucky  # the search did meet a lucky rate
    assert search.kind == "sustained" and search.peak_qps <= 3000.0
    assert len(search.confirming) >= 2 and all(p["valid"] for p in search.confirming)
    assert len({p["target_qps"] for p in search.confirming}) == 1
    # the figures reported with the peak come from one of its own passing runs
    assert search.peak_point in search.confirming
    assert search.peak_qps == search.peak_point["scheduled_qps"]


@pytest.mark.parametrize(("text", "seconds"), [("2", 2.0), ("2s", 2.0), ("500ms", 0.5),
                                               ("1m", 60.0), ("0.25s", 0.25)])
def test_durations_parse(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["abc", "0", "-1s", "2h", ""])
def test_a_duration_that_does_not_parse_names_the_flag(text):
    with pytest.raises(BadInputError, match="--duration"):
        parse_duration(text)


@pytest.mark.parametrize(("values", "flag"), [
    ({"scenario": "burst"}, "--scenario 'burst'"), ({"p99_ms": 0}, "--p99-ms"),
    ({"target_qps": -5}, "--target-qps"), ({"workers": 0}, "--workers"),
    ({"threads": 0}, "--threads 0: give the threads each worker gets"),
    ({"scenario": "multistream", "workers": 2}, "--workers 2: multistream has one query"),
    ({"p99_ms": float("inf")}, "--p99-ms inf"), ({"target_qps": float("nan")}, "--target-qps"),
    ({"max_delay_ms": float("nan")}, "--max-delay-ms"),
    ({"scenario": "singlestream", "batch_sizes": (4,)}, "--batch-sizes"),
    ({"batch_sizes": (8, 8)}, "--batch-sizes")])
def test_bad_settings_are_refused_with_the_flag(values, flag):
    with pytest.raises(BadInputError, match=flag):
        ScenarioSettings(**values)


@pytest.mark.parametrize(("values", "provider", "cores", "pool"), [
    # the defaults: a worker per physical core of one thread each (server, offline), one
    # worker with every core (the streams), one worker per GPU with every core (CUDA)
    ({}, "cpu", 4, (4, 1)),
    ({"scenario": "offline"}, "cpu", 4, (4, 1)),
    ({"scenario": "singlestream"}, "cpu", 4, (1, 4)),
    ({"scenario": "multistream"}, "cpu", 4, (1, 4)),
    ({}, "cuda", 4, (1, 4)),
    # --threads is each worker's, as in run and bench: --workers 2 --threads 1 is 2 x 1
    ({"workers": 2, "threads": 1}, "cpu", 4, (2, 1)),
    ({"workers": 1, "threads": 2}, "cpu", 4, (1, 2)),
    ({"workers": 3, "threads": 2}, "cpu", 2, (3, 2)),  # as given, even past the cores
    # only --workers W: each worker gets cores // W threads (at least one)
    ({"workers": 2}, "cpu", 5, (2, 2)),
    ({"workers": 3}, "cpu", 2, (3, 1)),
    ({"workers": 2}, "cuda", 4, (2, 2)),
    # only --threads T: cores // T workers (at least one); a stream keeps its one worker
    ({"threads": 2}, "cpu", 5, (2, 2)),
    ({"threads": 3}, "cpu", 2, (1, 3)),
    ({"threads": 1}, "cpu", 4, (4, 1)),
    ({"scenario": "singlestream", "threads": 2}, "cpu", 4, (1, 2)),
    ({"threads": 2}, "cuda", 4, (1, 2)),
])
def test_a_pool_is_workers_of_threads_each(values, provider, cores, pool):
    assert ScenarioSettings(**values).layout(provider, cores) == pool


def test_a_server_run_at_a_low_target_rate_must_fit_the_timeout():
    slow = ScenarioSettings(target_qps=3)  # 2048 queries at 3 q/s: 683 s
    with pytest.raises(BadInputError, match="--target-qps 3: a run of 2048 queries"):
        slow.check_timeout(600)
    slow.check_timeout(1100)
    ScenarioSettings(target_qps=3, queries=512).check_timeout(600)  # 171 s


def test_settings_survive_the_results_file_and_default_per_scenario():
    settings = ScenarioSettings(scenario="offline", duration_s=0.5)
    assert settings.batch_sizes == (64,)
    assert ScenarioSettings.from_dict(settings.to_dict()) == settings
    assert ScenarioSettings().delay_ms == pytest.approx(1.0)  # a tenth of the 10 ms bound
    assert "600 s" in (settings.short or "")
    assert ScenarioSettings(compliant=True).short is None
    server = ScenarioSettings(queries=1024, spinning=True, workers=2, threads=1)
    assert ScenarioSettings.from_dict(server.to_dict()) == server
    # a scenario recorded before spinning was a setting did not spin
    before = {k: v for k, v in server.to_dict().items() if k != "spinning"}
    assert ScenarioSettings.from_dict(before).spinning is False
    assert "1,024 queries" in (server.short or "") and server.query_count == 1024
    # a server scenario recorded before runs were sized by queries resumes with the default
    legacy = {k: v for k, v in ScenarioSettings().to_dict().items() if k != "queries"}
    assert ScenarioSettings.from_dict({**legacy, "duration_s": 1.0}).query_count == 2048


def test_batching_variants_exist_for_the_server_scenario_only():
    assert variants("onnxruntime", "server") == (
        "shared", "per-worker", "processes", "shared+batching", "per-worker+batching",
        "processes+batching")
    assert variants("onnxruntime", "offline") == ("shared", "per-worker", "processes")
    assert variants("onnxruntime", "singlestream") == ("shared",)  # one query in flight


def test_the_pool_is_chosen_apart_from_the_runtime():
    """ONNX Runtime from threads and from processes; PyTorch, which releases the GIL inside
    its operators, from processes and from threads; the GIL-bound runtimes from processes."""
    assert "processes" in variants("onnxruntime", "offline")
    assert variants("native_torch", "offline") == ("processes", "threads")
    assert variants("native_keras", "offline") == ("processes",)
    assert variants("native_sklearn", "server") == ("processes", "processes+batching")


@pytest.mark.parametrize(("values", "flag"), [
    ({"scenario": "offline", "p99_ms": 5}, "--p99-ms: offline has no latency bound"),
    ({"scenario": "singlestream", "target_qps": 50}, "--target-qps: singlestream"),
    ({"scenario": "offline", "max_delay_ms": 1}, "--max-delay-ms: only the server"),
    ({"scenario": "multistream", "compliant": True, "batch_sizes": (4,)}, "--compliant"),
    ({"duration_s": 1.0}, "--duration: a server run is sized by its queries"),
    ({"scenario": "offline", "queries": 1024}, "--queries: only a server run"),
    ({"compliant": True, "queries": 1024}, "--queries: only a server run"),
    ({"queries": 100}, "--queries 100: give a whole number >= 512")])
def test_a_setting_that_does_nothing_in_a_scenario_is_refused(values, flag):
    with pytest.raises(BadInputError, match=flag):
        ScenarioSettings(**values)


def test_the_batcher_gathers_queued_queries_while_the_workers_are_busy():
    """One worker, busy with a first call, while 20 queries arrive: they are answered in
    batches of at most 8, and every query is answered once."""
    release, busy = threading.Event(), threading.Event()
    batches: list[int] = []

    def predict(indices):
        batches.append(len(indices))
        busy.set()
        release.wait(timeout=5)

    answered: list[int] = []
    pool = ThreadPool([predict], max_batch=8, max_delay_s=0.001)
    pool.bind(answered.extend)
    pool.issue([Sample(0, 0)])
    assert busy.wait(timeout=5)  # the worker now holds query 0
    pool.issue([Sample(i, i) for i in range(1, 21)])
    release.set()
    deadline = time.monotonic() + 5
    while len(answered) < 21 and time.monotonic() < deadline:
        time.sleep(0.01)
    pool.close()
    assert sorted(answered) == list(range(21))
    assert batches[0] == 1 and max(batches) == 8 and sum(batches) == 21


def test_without_batching_each_query_is_one_call_and_an_error_still_answers_it():
    seen: list[int] = []

    def predict(indices):
        seen.append(len(indices))
        if indices[0] == 3:
            raise ValueError("bad row")

    answered: list[int] = []
    pool = ThreadPool([predict, predict], max_batch=1, max_delay_s=0.0)
    pool.bind(answered.extend)
    pool.issue([Sample(i, i) for i in range(6)])
    deadline = time.monotonic() + 5
    while len(answered) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    pool.close()
    assert sorted(answered) == list(range(6)) and set(seen) == {1}
    assert pool.errors == ["ValueError: bad row"]


def test_offline_queries_are_split_into_jobs_of_the_batch_size():
    jobs: list[Job] = []

    class Recording(ThreadPool):
        def put(self, job):
            if job is not None:
                jobs.append(job)
            super().put(job)

    pool = Recording([lambda indices: None], max_batch=1, max_delay_s=0.0, split=4)
    pool.issue([Sample(i, i) for i in range(10)])
    pool.close()
    assert [len(j.ids) for j in jobs] == [4, 4, 2]


class Sample:
    def __init__(self, id_: int, index: int) -> None:
        self.id, self.index = id_, index


def test_compliant_runs_take_mlperfs_rules_and_short_runs_their_queries_or_duration():
    pytest.importorskip("mlperf_loadgen", reason="MLPerf LoadGen is not installed")
    from toolkit.steps.scenario import loadgen_settings

    compliant = loadgen_settings(ScenarioSettings(compliant=True, p99_ms=5), 100.0, 0.001, 1)
    assert compliant.min_duration_ms == 600_000  # MLPerf's rule, from LoadGen's mlperf.conf
    assert compliant.server_target_latency_ns == 5_000_000
    # a server run: its queries and no minimum duration, so every rate gets the same count...
    server = loadgen_settings(ScenarioSettings(), 100.0, 0.001, 1)
    assert server.min_duration_ms == 0 and server.min_query_count == 2048
    assert loadgen_settings(ScenarioSettings(queries=1024), 1000.0, 0.001,
                            1).min_query_count == 1024
    # ... where they last at least half a second: at a fast option's rates 2048 queries last
    # milliseconds, too short for an overloaded server's queue to grow past the bound
    assert loadgen_settings(ScenarioSettings(queries=1024), 5000.0, 0.001,
                            1).min_query_count == 2500
    assert loadgen_settings(ScenarioSettings(), 116_800.0, 0.001, 1).min_query_count == 58_400
    short = loadgen_settings(ScenarioSettings(scenario="offline", duration_s=0.5), 100.0,
                             0.001, 64)
    assert short.min_duration_ms == 500 and short.min_query_count == 1
    assert loadgen_settings(ScenarioSettings(scenario="offline", duration_s=0.5), 100.0, 0.001,
                            64, queries=2000).min_query_count == 2000
    stream = loadgen_settings(ScenarioSettings(scenario="multistream", batch_sizes=(4,)), 0,
                              0.002, 4)
    assert stream.multi_stream_samples_per_query == 4
    assert stream.multi_stream_expected_latency_ns == 1_000_000  # half the probe: more queries


def test_runs_whose_pregenerated_queries_cannot_be_held_are_not_made():
    """LoadGen makes a run's queries before it starts: a compliant stream run of a 6 us model
    would make 400M (about 120 GiB); a 10 ms model's compliant run, or a short one, fits."""
    from toolkit.scenarios import pregenerated_queries, too_many_queries

    stream = ScenarioSettings(scenario="singlestream", compliant=True)
    assert pregenerated_queries(stream, 0, 6e-6) == 400_000_000  # 2 x 600 s / 3 us
    why = too_many_queries(stream, 0, 6e-6)
    assert why and "400,000,000 queries" in why and "drop --compliant" in why
    assert too_many_queries(stream, 0, 0.010) is None  # 240,000 queries
    short = ScenarioSettings(scenario="singlestream")  # 1 s runs: 666,667 queries
    assert too_many_queries(short, 0, 6e-6) is None
    assert "shorter --duration" in too_many_queries(
        ScenarioSettings(scenario="multistream", duration_s=600), 0, 6e-6)
    server = ScenarioSettings(compliant=True)
    assert pregenerated_queries(server, 1000.0, 1e-3) == 600_000
    assert too_many_queries(server, 1000.0, 1e-3) is None
    assert "30,000 q/s" in too_many_queries(server, 30_000.0, 1e-5)  # 18M queries
    assert pregenerated_queries(ScenarioSettings(), 300.0, 1e-5) == 2048  # sized by count
    assert pregenerated_queries(ScenarioSettings(), 30_000.0, 1e-5) == 15_000  # or 0.5 s
    assert "give fewer --queries" in too_many_queries(ScenarioSettings(queries=20_000_000),
                                                     50_000.0, 1e-5)
    # offline: one query of every sample, 1.1 x the duration x the expected rate
    offline = ScenarioSettings(scenario="offline", compliant=True)
    assert pregenerated_queries(offline, 5e6, 1e-5) == 3_300_000_000
    assert "samples up front" in too_many_queries(offline, 5e6, 1e-5)
    assert too_many_queries(ScenarioSettings(scenario="offline"), 1e5, 1e-5) is None


def test_a_compliant_stream_run_of_a_fast_model_is_refused_before_loadgen_starts(
        tmp_path, monkeypatch):
    pytest.importorskip("mlperf_loadgen", reason="MLPerf LoadGen is not installed")
    import numpy as np

    from toolkit.steps import scenario
    from toolkit.steps.scenario import _run

    # the probe says 6 us a query, whatever a busy machine makes of a call that does nothing
    monkeypatch.setattr(scenario, "probe", lambda *args, **kwargs: 6e-6)

    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=np.zeros((16, 4), np.float32))
    pool = ThreadPool([lambda indices: None], max_batch=1, max_delay_s=0.0, split=1)
    try:
        started = time.monotonic()
        info = _run(pool, ScenarioSettings(scenario="singlestream", compliant=True), 1,
                    tmp_path / "logs", str(inputs), time.monotonic() + 9600)
    finally:
        pool.close()
    assert time.monotonic() - started < 30  # no 600 s run was started
    assert info["loadgen_runs"] == 0 and info["valid"] is False
    assert "queries up front" in info["reason"] and "drop --compliant" in info["reason"]


def test_cut_unbracketed_or_unconfirmed_peaks_are_shown_but_never_picked():
    from toolkit.report.loadgen import Served, loadgen_tables, sustained_picks
    from toolkit.results import Record

    def served(label: str, peak: float, kind: str) -> Served:
        info = {"scenario": "server", "peak_qps": peak, "peak_kind": kind, "p99_bound_ms": 5.0,
                "latency_ms": {"p50": 1.0, "p99": 4.0}, "points": []}
        return Served(label, Record("m", "onnx", "scenario", runtime="onnxruntime",
                                    provider="cpu", variant=label, batch_size=1, info=info))

    options = [served("cut", 90_000.0, "cut"), served("above", 50_000.0, "lower bound"),
               served("once", 40_000.0, "unconfirmed"), served("held", 9_000.0, "sustained")]
    (pick,) = sustained_picks(options)
    assert pick.pick is not None and pick.pick.label == "held" and not pick.others
    (table,) = loadgen_tables(options)
    rates = {cells[0]: cells[1] for cells, _ in table.rows}
    assert "(cut)" in rates["cut"] and rates["above"].startswith(">= ")
    assert "(unconfirmed)" in rates["once"] and "(" not in rates["held"]
    none = sustained_picks(options[:3])[0]
    assert none.pick is None  # nothing sustained: no pick, never the cut search's figure
    # a sustained peak above a rate that failed says so beside its rate
    options[3].record.info["failed_below_qps"] = [1000.0]
    (table,) = loadgen_tables(options)
    assert {c[0]: c[1] for c, _ in table.rows}["held"].endswith("(failed at 1.00k q/s)")


def test_capacity_and_cost_follow_the_sustained_peak_only():
    """Machines for the rate the service needs, ceil(need / peak), and USD per million
    predictions, price / (peak x 3600) x 1e6: for sustained peaks, in the table and the pick;
    a peak that is not sustained gets neither."""
    from toolkit.report.loadgen import Served, loadgen_tables, sustained_picks
    from toolkit.results import Record

    def served(label: str, peak: float, kind: str) -> Served:
        info = {"scenario": "server", "peak_qps": peak, "peak_kind": kind, "p99_bound_ms": 5.0,
                "latency_ms": {"p50": 1.0, "p99": 4.0}, "points": []}
        return Served(label, Record("m", "onnx", "scenario", runtime="onnxruntime",
                                    provider="cpu", variant=label, batch_size=1, info=info),
                      price_per_hour=3.6, need_qps=50_000.0)

    held, cut = served("held", 20_000.0, "sustained"), served("cut", 90_000.0, "cut")
    assert held.machines_needed == 3  # 50k over 20k, rounded up
    assert held.usd_per_million == pytest.approx(0.05)  # $3.6 / 72M predictions an hour
    assert cut.machines_needed is None and cut.usd_per_million is None
    (table,) = loadgen_tables([cut, held])
    assert table.columns[-2:] == ("machines for 50.0k q/s", "USD per 1M")
    rows = {cells[0]: cells for cells, _ in table.rows}
    assert rows["held"][-2:] == ("3", "$0.05") and rows["cut"][-2:] == ("-", "-")
    line = sustained_picks([cut, held])[0].line
    assert "3 machines like this for 50.0k q/s" in line and "$0.05 per million" in line


def test_prices_and_the_needed_rate_come_from_a_suite_file():
    from toolkit.suite import Suite, parse_suite

    suite = parse_suite({"workloads": ["digits-mlp"], "prices": {"default": 3.5, "gpu-1": 12.0},
                         "need_qps": 50000})
    assert dict(suite.prices) == {"": 3.5, "gpu-1": 12.0} and suite.need_qps == 50000
    assert Suite.from_dict(suite.to_dict()).prices == suite.prices
    with pytest.raises(BadInputError, match="prices"):
        parse_suite({"workloads": ["digits-mlp"], "prices": {"default": "cheap"}})


def test_rapl_energy_is_read_across_its_wraparound_or_said_to_be_missing(tmp_path):
    from toolkit.energy import counter

    meter, why = counter("cpu", tmp_path / "absent")
    assert meter is None and "no RAPL energy counter here" in why
    package = tmp_path / "intel-rapl:0"
    package.mkdir()
    (package / "max_energy_range_uj").write_text("1000000\n")
    (package / "energy_uj").write_text("999000\n")
    (tmp_path / "intel-rapl:0:0").mkdir()  # a sub-domain (core): not counted twice
    meter, why = counter("cpu", tmp_path)
    assert meter is not None and why == "" and "1 package" in meter.source
    (package / "energy_uj").write_text("3000\n")  # wrapped: 1,000 + 3,000 uJ later
    assert meter.read() == pytest.approx(0.004)
    (package / "energy_uj").write_text("5000\n")
    assert meter.read() == pytest.approx(0.006)


def test_a_rate_that_failed_unloaded_is_looked_past_once_and_kept():
    """A path whose tail is worst at low load (its hand-overs wait for idle cores to wake)
    fails at 1000 q/s with every query answered on time and a low median, and passes from 4000
    to its limit of 20000: the search looks past the low failure once, finds the real limit,
    and keeps the rate that failed below it. An overloaded failure is never looked past."""
    calls: list[float] = []

    def idle_tail(rate: float) -> LoadGenResult:
        calls.append(rate)
        valid = 3000.0 <= rate <= 20000.0
        return LoadGenResult("server", valid, "" if valid else "early stopping",
                             {"p50": 1.2, "p99": 4.0 if valid else 5.5}, scheduled_qps=rate,
                             completed_qps=rate if rate <= 20000.0 else 0.7 * rate,
                             queries=2048)

    search = search_peak(idle_tail, 1000.0, bisect_to=0.05, bound_ms=5.0)
    assert calls[:3] == [1000.0, 1000.0, 4000.0]  # failed twice unloaded: 4x looked at once
    assert search.kind == "sustained" and 20000.0 / 1.05 <= search.peak_qps <= 20000.0
    assert search.failed_below == [1000.0]
    # a look-past run that would not fit is not made, and does not end the search as cut
    calls.clear()
    short = search_peak(idle_tail, 1000.0, bisect_to=0.05, bound_ms=5.0,
                        fits=lambda rate: rate < 3500.0)
    assert 4000.0 not in calls and short.cut_at is None
    # without the bound the search cannot tell an idle tail from a limit: it halves, as before
    blind = search_peak(idle_tail, 1000.0, bisect_to=0.05)
    assert blind.peak_qps is None or blind.peak_qps < 1000.0
    # a failure that is overload (answers fell behind the schedule) is a limit: not looked past
    overload: list[float] = []
    steady = fake_loadgen(3000.0, overload)

    def behind(rate: float) -> LoadGenResult:
        result = steady(rate)
        return result if result.valid else dataclasses.replace(
            result, latency_ms={"p50": 1.0, "p99": 50.0}, completed_qps=0.8 * rate)

    limited = search_peak(behind, 2000.0, bisect_to=0.05, bound_ms=5.0)
    assert 16000.0 not in overload and 3000.0 / 1.05 <= limited.peak_qps <= 3000.0
    assert limited.failed_below == []


def test_steal_is_the_share_of_cpu_time_the_hypervisor_took_between_two_readings():
    from toolkit.busy import cpu_ticks, steal_percent

    assert steal_percent((100, 10_000), (160, 11_000)) == 6.0
    assert steal_percent(None, (1, 2)) is None and steal_percent((5, 10), (5, 10)) is None
    now = cpu_ticks()
    if now is not None:  # Linux: steal <= total, both counting up
        assert 0 <= now[0] <= now[1]


def test_the_longest_run_bounds_a_server_search_only():
    assert ScenarioSettings().longest_s == 10.0
    assert ScenarioSettings(longest_run_s=60.0).longest_s == 60.0
    assert ScenarioSettings.from_dict(ScenarioSettings(longest_run_s=60.0).to_dict()
                                      ).longest_run_s == 60.0
    for bad in ({"longest_run_s": 0.0}, {"longest_run_s": 0.2},  # under a run's shortest
                {"scenario": "offline", "longest_run_s": 60.0},
                {"compliant": True, "longest_run_s": 60.0}):
        with pytest.raises(BadInputError, match="--longest-run"):
            ScenarioSettings(**bad)
