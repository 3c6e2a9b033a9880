"""`deploybench advise`: what it recommends (only a confirmed sustained peak within the limits),
what it puts forward for confirmation, the configuration it writes out, its bad input, and one
whole run on a small ONNX file (trials, search, LoadGen confirmations, --resume)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from toolkit import advise as adviser
from toolkit.errors import BadInputError
from toolkit.report import advise as advice_report
from toolkit.search import Config, Limits, Outcome, Tried, configurations
from toolkit.suite import Suite, parse_suite

ORT = "onnxruntime fp32"
INT8 = "onnxruntime int8-dynamic"


def config(option: str = ORT, workers: int = 2, threads: int = 1, batch: int = 1,
           delay: float | None = None, session: tuple = ()) -> Config:
    if not session and option.startswith("onnxruntime"):
        session = (("graph_optimization", "all"),)
    return Config(option, threads, workers, batch, delay, session)


def confirmed(cfg: Config, peak: float | None, kind: str, role: str = "searched",
              memory: float | None = None, drop: float = 0.0) -> adviser.Confirmed:
    return adviser.Confirmed(cfg, role, "f", peak, kind, 2.0 if peak else None, (1.9, 2.1),
                             predicted=Outcome(peak or 0.0, 2.0, drop, memory),
                             runs_at_peak=(2, 2))


def test_nothing_unconfirmed_is_recommended():
    """The fastest configuration's peak was unconfirmed, another's cut, a third a lower bound:
    the pick is the slower one whose peak held, and with none held there is no pick."""
    held = confirmed(config(batch=8, delay=0.5), 20_000.0, "sustained", "default")
    options = [confirmed(config(workers=1, batch=16, delay=0.1), 65_000.0, "unconfirmed"),
               confirmed(config(threads=2, workers=1), 40_000.0, "cut"),
               confirmed(config(batch=4, delay=1.0), 30_000.0, "lower bound"), held]
    assert adviser.pick(options, Limits()) is held
    assert adviser.pick(options[:3], Limits()) is None
    assert adviser.best_default(options) is held


def test_threads_of_one_process_share_its_memory_and_processes_do_not():
    trials = adviser.Trials()
    trials.memory_mb = {(ORT, 1): 300.0, ("native torch fp32", 1): 300.0}
    trials.shared_mb = {(ORT, 1): 200.0, ("native torch fp32", 1): 200.0}
    threads = config(workers=2)  # ONNX Runtime: a pool of threads, a session each
    processes = Config("native torch fp32", 1, 2, 1, None)
    assert adviser.memory_of(trials, threads) == 200.0 + 2 * 100.0
    assert adviser.memory_of(trials, processes) == 2 * 300.0
    trials.shared_mb = {}  # trials from before the load's memory was kept: the sum, as before
    assert adviser.memory_of(trials, threads) == 600.0


def test_the_pick_keeps_to_the_memory_limit():
    big = confirmed(config(), 30_000.0, "sustained", memory=900.0)
    small = confirmed(config(workers=1), 18_000.0, "sustained", memory=400.0)
    assert adviser.pick([big, small], Limits(memory_mb=500.0)) is small
    assert adviser.pick([big, small], Limits()) is big


def test_candidates_are_the_fronts_best_and_the_defaults_as_many_as_the_budget_lets_finish():
    front = [Tried(config(batch=b, delay=0.5), Outcome(r, 2.0, 0.0)) for b, r in
             ((16, 30e3), (8, 29e3), (4, 20e3))]
    lost = [Tried(config(INT8), Outcome(40e3, 2.0, 0.02), "gives up accuracy")]
    unbatched, batched = config(), config(batch=8, delay=0.5)
    rates = {unbatched: 12e3, batched: 29e3}

    def rate(c: Config) -> float:
        return rates.get(c, 30e3)

    chosen = adviser.candidates(lost + front, [unbatched, batched], rate, best=2)
    # the front's fastest, the default predicted fastest (also the front's second: once, as a
    # default), then the other default
    assert chosen == [(front[0].config, "searched"), (batched, "default"),
                      (unbatched, "default")]
    # every default is confirmed, whatever the budget: the one the pick is set against is
    # chosen among them by the same rounds
    assert adviser.candidates(lost + front, [unbatched, batched], rate, budget_s=0.0,
                              best=2) == chosen
    # where the front's fastest is a default, it is confirmed as one
    alone = adviser.candidates([Tried(unbatched, Outcome(31.0, 90.0, 0.0))],
                               [unbatched, batched], lambda c: 31.0 if c == unbatched else 3.7,
                               budget_s=0.0)
    assert alone == [(unbatched, "default"), (batched, "default")]
    # a default predicted at no rate is still confirmed, and does not use up the budget
    blocked = adviser.candidates(front, [unbatched, batched],
                                 lambda c: 0.0 if c in (unbatched, batched) else 30e3,
                                 budget_s=1200.0, best=2)
    assert [c for c, _ in blocked] == [front[0].config, unbatched, batched]
    # a front's fastest of several threads a worker is also confirmed with them spinning
    # (after those that must be, as the budget lets), its search sized from its own rate
    wide = Tried(config(threads=2, workers=1, batch=16, delay=0.1), Outcome(30e3, 2.0, 0.0))
    spinning = adviser.spun(wide.config)
    assert dict(spinning.session)["spinning"] is True and adviser.unspun(spinning) == wide.config
    assert adviser.candidates([wide, *front], [unbatched, batched], rate, best=2) == [
        (wide.config, "searched"), (batched, "default"), (unbatched, "default"),
        (spinning, "searched"), (front[0].config, "searched")]
    # the budget is for every round of each: one that fits the spinning one's first round
    # alone, past those that must be, leaves it out
    must = sum(min(adviser.confirm_seconds(rate(c)), adviser.CONFIRM_TIMEOUT_S[1]) * (
        1 + (adviser.CONFIRM_ROUNDS - 1) * adviser.LATER_ROUND_SHARE)
        for c in (wide.config, batched, unbatched))
    assert adviser.candidates([wide, *front], [unbatched, batched], rate, best=2,
                              budget_s=must + adviser.confirm_seconds(30e3) * 1.1) == [
        (wide.config, "searched"), (batched, "default"), (unbatched, "default")]
    # a slow model's runs are shorter (fewer queries) but its search still takes minutes
    assert adviser.confirm_queries(40.0) == 512 and adviser.confirm_queries(30e3) == 2048
    assert 200 < adviser.confirm_seconds(40.0) < 400


def rounds_of(cfg: Config, peaks: list[float | None], role: str = "searched",
              predicted: float | None = None) -> list[adviser.Confirmed]:
    """A configuration confirmed in rounds 1, 2, ... at these peaks (None: none sustained)."""
    return [dataclasses.replace(
        confirmed(cfg, peak, "sustained" if peak else "none", role), round=n,
        predicted=Outcome(predicted or peak or 0.0, 2.0, 0.0)) for n, peak in
        enumerate(peaks, 1)]


def test_the_headline_says_capacity_cost_and_the_gain_over_the_best_default(tmp_path):
    """Three rounds, the second at half speed: the pick's figure is its median with the
    rounds' effects out, and its gain over the best default a paired ratio with its
    interval; where the rounds do not show it faster, the headline says so."""
    request = adviser.Request("m.onnx", 5.0, price=0.10, need_qps=100_000.0)
    pick = rounds_of(config(batch=16, delay=0.1), [45e3, 22e3, 46e3])
    default = rounds_of(config(batch=8, delay=0.5), [30e3, 15.5e3, 30.5e3], "default")
    other = rounds_of(config(), [12e3, 6.2e3, 12.1e3], "default")
    advice = adviser.Advice(request, "onnx/m", 2, "all", adviser.Trials(), [],
                            [*pick, *default, *other], tmp_path)
    line = advice_report.headline(advice)
    assert line.startswith("serve m.onnx as onnxruntime fp32, 2 workers x 1 thread, batching "
                           "up to 16 within 0.1 ms")
    chosen = advice.pick
    assert chosen is not None and chosen.rounds == tuple(pick)
    # the half-speed round is taken out (the figure is at the rounds' mean speed): the rounds
    # agree, so the interval is narrow where the raw peaks spread 2x
    assert chosen.peak_qps is not None and 30e3 < chosen.peak_qps < 40e3
    assert chosen.low_qps is not None and chosen.high_qps is not None
    assert chosen.low_qps < chosen.peak_qps < chosen.high_qps < 1.15 * chosen.low_qps
    assert "per machine over 3 rounds" in line and "6 of 6 runs at its peaks VALID" in line
    assert f"{-(-100_000 // chosen.peak_qps):.0f} machines like this for 100k q/s" in line
    # the cost of those whole machines, over the queries an hour at the rate needed
    cost = -(-100_000 // chosen.peak_qps) * 0.10 / (100_000 * 3600) * 1e6
    assert f"${cost:.4g} per million at $0.1/h" in line
    versus = advice.versus
    assert versus is not None and versus.faster and versus.rounds == 3
    assert 1.4 < versus.ratio < 1.6 and versus.low < versus.ratio < versus.high
    assert f"{versus.text()} the best default over 3 paired rounds" in line
    assert advice.default is not None and advice.default.rounds == tuple(default)
    assert advice.to_dict()["versus_default"]["rounds"] == 3
    # a pick the rounds do not set above the default: not called faster
    close = rounds_of(config(batch=16, delay=0.1), [31e3, 15e3, 31e3])
    near = rounds_of(config(batch=8, delay=0.5), [30e3, 15.5e3, 30.5e3], "default")
    tied = adviser.Advice(request, "onnx/m", 2, "all", adviser.Trials(), [],
                          [*close, *near, *other], tmp_path)
    assert tied.versus is not None and not tied.versus.faster
    assert "not shown faster than the best default" in advice_report.headline(tied)
    none = adviser.Advice(request, "onnx/m", 2, "all", adviser.Trials(), [],
                          [confirmed(config(), 9e3, "unconfirmed")], tmp_path)
    assert "none is recommended" in advice_report.headline(none)
    # a configuration that sustained a peak in only one of its three rounds does not hold
    once = adviser.Advice(request, "onnx/m", 2, "all", adviser.Trials(), [],
                          rounds_of(config(), [30e3, None, None]), tmp_path)
    assert once.pick is None and "1 of its 3 rounds" in advice_report.headline(once)
    assert advice.unsteady is None and "Beware" not in advice_report.markdown(advice)
    # a confirmation whose cores read half speed: the answer says so
    slowed = dataclasses.replace(default[0], core_speed=((7.0, 14.0), (13.8, 14.1)))
    advice.confirmed[3] = slowed
    assert "Beware: the cores were not steady: 1 of 4 readings" in advice_report.markdown(advice)


def test_the_loadgen_line_of_a_slow_pick_serves_it_as_its_confirmation_did(tmp_path):
    """resnet18-like: predicted 30 q/s, so its confirming runs had 512 queries and its search
    went down to rates where a run lasts 60 s; the pasted loadgen line says both."""
    from toolkit.cli import app

    request = adviser.Request("r.onnx", 500.0, shapes=("input=3x224x224",))
    slow = adviser.Confirmed(config(), "default", "f", 32.4, "sustained", 415.0,
                             predicted=Outcome(30.0, 400.0, 0.0), runs_at_peak=(2, 3))
    advice = adviser.Advice(request, "onnx/r", 2, "all", adviser.Trials(), [], [slow],
                            tmp_path)
    line = advice_report.loadgen_command(advice, slow.config)
    assert line.endswith("--queries 512 --longest-run 60 --shape input=3x224x224")
    from typer.testing import CliRunner

    refused = CliRunner().invoke(app, ["loadgen", "torch/digits-mlp", "--scenario", "offline",
                                       "--longest-run", "60"])
    assert refused.exit_code == 2 and "--longest-run" in refused.output


def test_the_configuration_written_out_is_a_suite_run_takes_and_code_that_sets_it():
    request = adviser.Request("torch/digits-mlp", 5.0)
    advice = adviser.Advice(request, "torch/digits-mlp", 2, "all", adviser.Trials(), [], [],
                            Path("."))
    chosen = config(INT8, workers=2, threads=1, batch=8, delay=0.5)
    import tomllib

    suite = parse_suite(tomllib.loads(advice_report.suite_toml(advice, chosen)))
    # `threads` is a runtime's threads everywhere: the timings' at the top, each worker's in
    # the scenario, so 2 workers x 1 thread reads workers = 2, threads = 1
    assert suite.workloads == ("torch/digits-mlp",) and suite.threads == 1
    assert suite.recipes == ("fp32", "int8-dynamic") and suite.optimization == "all"
    (server,) = suite.scenarios
    assert (server.workers, server.threads, server.batch_sizes, server.max_delay_ms,
            server.p99_ms) == (2, 1, (8,), 0.5, 5.0)
    assert server.layout("cpu", 8) == (2, 1)
    # the loadgen line pastes the same pool: --workers 2 --threads 1, as loadgen reads it
    line = advice_report.loadgen_command(advice, chosen)
    assert "--workers 2 --threads 1" in line
    wide = advice_report.loadgen_command(advice, config(workers=1, threads=2))
    assert "--workers 1 --threads 2" in wide
    code = advice_report.session_code(chosen, 1)
    assert "intra_op_num_threads = 1" in code and "ORT_ENABLE_ALL" in code
    namespace: dict = {}
    exec(code.replace('session = ort.InferenceSession("model.onnx", options, '
                      'providers=["CPUExecutionProvider"])', ""), namespace)
    assert namespace["options"].intra_op_num_threads == 1
    # every session option the search chose travels: in the suite's [session] and the code
    chosen = dataclasses.replace(chosen, session=adviser.full_session(
        "basic", (("memory_arena", False),)))
    suite = parse_suite(tomllib.loads(advice_report.suite_toml(advice, chosen)))
    assert suite.optimization == "basic"
    assert suite.session == (("memory_arena", False), ("memory_pattern", True))
    namespace = {}
    exec(advice_report.session_code(chosen, 1).replace(
        'session = ort.InferenceSession("model.onnx", options, '
        'providers=["CPUExecutionProvider"])', ""), namespace)
    assert namespace["options"].enable_cpu_mem_arena is False
    assert namespace["options"].enable_mem_pattern is True
    # and the loadgen line serves it so: its flags parse back to the same session
    line = advice_report.loadgen_command(advice, chosen).split("  #")[0].split()
    from exporters.session import parse_session

    given = [line[n + 1] for n, word in enumerate(line) if word == "--session"]
    assert line[line.index("--optimization") + 1] == "basic"
    assert parse_session(given) == tuple(
        (k, v) for k, v in chosen.session if k not in ("graph_optimization", "memory_pattern"))
    with pytest.raises(BadInputError, match="given twice"):
        parse_session(["memory_arena=false", "memory_arena=true"])
    # a pick confirmed with its threads spinning says so in all three: the scenario's
    # setting (not a [session] name), the code's session entry, loadgen's flag
    chosen = adviser.spun(config(threads=2, workers=1, batch=16, delay=0.1))
    suite = parse_suite(tomllib.loads(advice_report.suite_toml(advice, chosen)))
    assert suite.scenarios[0].spinning is True and "spinning" not in dict(suite.session)
    assert ('add_session_config_entry("session.intra_op.allow_spinning", "1")'
            in advice_report.session_code(chosen, 2))
    line = advice_report.loadgen_command(advice, chosen)
    assert "--spinning" in line.split() and "--session spinning" not in line


def trial_run(folder: Path, verdict: str) -> Path:
    """A trial's results as the executor writes them: ONNX Runtime's fp32 and int8-dynamic
    calls timed at 1 and 8 rows, int8's accuracy judged `verdict`, one case that crashed."""
    from toolkit.results import Parity, Record, ResultsFile
    from toolkit.stats import Stats

    folder.mkdir(parents=True)
    results = ResultsFile(folder / "results.json", {"command": "bench", "suite": {}})

    def timed(recipe: str, batch: int, ms: float) -> Record:
        return Record("m", "onnx", "infer", runtime="onnxruntime", variant="run",
                      provider="cpu", batch_size=batch, recipe=recipe, threads=1,
                      peak_rss_mb=120.0, stats=Stats.from_ms([ms, ms * 1.1, ms * 0.9] * 40))

    judged = Parity(0.1, 0.1, 0.85, verdict == "pass", 1e-4, 1e-5, 200, verdict=verdict,
                    rule="quality", native_quality=0.9, quality=0.8, why="15% of labels moved")
    results.append([timed("fp32", 1, 0.05), timed("fp32", 8, 0.2),
                    timed("int8-dynamic", 1, 0.02), timed("int8-dynamic", 8, 0.05),
                    Record("m", "onnx", "parity", runtime="onnxruntime", recipe="int8-dynamic",
                           parity=judged),
                    Record("m", "onnx", "infer", status="failed", runtime="onnxruntime",
                           recipe="int8-static", reason="the child crashed (signal 11)")])
    return folder


@pytest.mark.parametrize("verdict", ["fail", "pass"])
def test_trials_read_back_keep_a_recipe_that_failed_its_accuracy_check_out(tmp_path, verdict):
    """int8 is timed (and faster), but where its accuracy check fails no configuration of it
    can serve, whatever it was timed at; a crashed case says why it was not tried."""
    from toolkit.runners import NATIVE
    from toolkit.steps.scenario import SERVING_CALL

    trials = adviser.read_trials({1: trial_run(tmp_path / "t1", verdict)}, SERVING_CALL,
                                 NATIVE.get)
    assert trials.workload == "onnx/m" and set(trials.options) == {ORT, INT8}
    assert trials.service_s[(ORT, 1)][8][0] == pytest.approx(0.2e-3, rel=1e-3)
    assert trials.quality_drop[INT8] == pytest.approx(0.1)
    assert "crashed" in trials.refused["onnxruntime int8-static"]
    evaluate = adviser.evaluator(trials, adviser.Request("m.onnx", 5.0), cores=2)
    int8 = evaluate(config(INT8, workers=1, batch=8, delay=0.5))
    fp32 = evaluate(config(ORT, workers=1, batch=8, delay=0.5))
    assert fp32.rate > 0 and fp32.why_not is None and fp32.memory_mb == 120.0
    # calls larger than any timed (a fixed batch dimension) are not predicted from smaller
    beyond = evaluate(config(ORT, workers=1, batch=16, delay=0.5))
    assert beyond.rate == 0 and "more than 8 rows were not timed" in beyond.why_not
    if verdict == "fail":
        assert int8.why_not and "accuracy check says fail" in int8.why_not
        assert adviser.limits_of(adviser.Request("m.onnx", 5.0)).breaks(int8) is not None
        advice = adviser.Advice(adviser.Request("m.onnx", 5.0), "onnx/m", 2, "all", trials,
                                [], [], tmp_path)
        assert any(line.startswith(f"{INT8}: refused in every configuration")
                   and "15% of labels moved" in line
                   for line in advice_report.lost_lines(advice))
    else:
        assert int8.why_not is None and int8.rate >= fp32.rate


def session_bench(folder: Path, times: tuple[tuple[int, float], ...]) -> Path:
    """A session bench's results: ONNX Runtime fp32 at one thread, (rows, ms a call) each."""
    from toolkit.results import Record, ResultsFile
    from toolkit.stats import Stats

    folder.mkdir()
    ResultsFile(folder / "results.json", {"command": "bench", "suite": {}}).append([
        Record("model", "onnx", "infer", runtime="onnxruntime", variant="run",
               provider="cpu", batch_size=b, recipe="fp32", threads=1,
               stats=Stats.from_ms([ms] * 60)) for b, ms in times])
    return folder


def test_the_session_options_faster_alone_are_timed_together(tmp_path):
    """Those faster than the control at most sizes, and only those, are changed together; one
    faster alone is no combination, nor are options with no control beside them."""
    arena, pattern, basic = (("memory_arena", False),), (("memory_pattern", False),), (
        ("graph_optimization", "basic"),)
    folders = {(1, ()): session_bench(tmp_path / "control", ((1, 0.10), (4, 0.20), (16, 0.50))),
               # faster at 2 of 3 sizes: its median ratio is under 1
               (1, arena): session_bench(tmp_path / "arena", ((1, 0.09), (4, 0.19), (16, 0.6))),
               (1, pattern): session_bench(tmp_path / "pattern",
                                           ((1, 0.08), (4, 0.18), (16, 0.45))),
               # slower at 2 of 3
               (1, basic): session_bench(tmp_path / "basic", ((1, 0.2), (4, 0.19), (16, 0.8)))}
    assert adviser.together(folders, 1) == (("memory_arena", False), ("memory_pattern", False))
    assert adviser.together(folders, 2) == ()  # none timed at 2 threads
    assert adviser.together({k: v for k, v in folders.items() if k[1] != arena}, 1) == ()
    assert adviser.together({k: v for k, v in folders.items() if k[1]}, 1) == ()
    both = adviser.together(folders, 1)
    assert adviser.session_slug(both) == "memory_arena-off-memory_pattern-off"
    # the combination is a session of the search like those timed alone
    from toolkit.runners import NATIVE
    from toolkit.steps.scenario import SERVING_CALL

    trials = adviser.read_trials({1: trial_run(tmp_path / "t1", "pass")}, SERVING_CALL,
                                 NATIVE.get)
    adviser.read_session_trials(trials, {
        **folders, (1, both): session_bench(tmp_path / "both", ((1, 0.07), (4, 0.17)))})
    space = adviser.space(trials, adviser.Request("m.onnx", 5.0), 2, "all")
    assert adviser.full_session("all", both) in space.sessions[ORT]
    evaluate = adviser.evaluator(trials, adviser.Request("m.onnx", 5.0), cores=2)
    assert evaluate(config(ORT, workers=1, session=adviser.full_session("all", both))).rate > 0
    untimed = evaluate(config(ORT, workers=1, session=adviser.full_session("all", (
        ("graph_optimization", "basic"), ("memory_arena", False)))))
    assert untimed.rate == 0 and "combination of the options faster alone" in untimed.why_not


def test_session_options_timed_alone_are_searched_where_they_were_timed(tmp_path):
    """A session option timed for fp32 (the memory arena off, here faster) is a choice of the
    search, predicted from its own times; with int8, where it was not timed, it is refused
    with why; the defaults keep the default session."""
    from toolkit.runners import NATIVE
    from toolkit.steps.scenario import SERVING_CALL

    trials = adviser.read_trials({1: trial_run(tmp_path / "t1", "pass")}, SERVING_CALL,
                                 NATIVE.get)
    off = (("memory_arena", False),)

    def bench(name: str, times: tuple[tuple[int, float], ...]) -> Path:
        return session_bench(tmp_path / name, times)

    # the machine ran 2.5x faster when the session options were timed: the default session,
    # timed again beside them (0.08 ms at 8 rows against the trials' 0.2), says so, and the
    # arena's 0.04 ms is read as half the default's, 0.1 ms, not a fifth
    adviser.read_session_trials(trials, {
        (1, ()): bench("t1-default", ((1, 0.02), (8, 0.08))),
        (1, off): bench("t1-memory_arena-off", ((1, 0.01), (8, 0.04)))})
    assert trials.session_drift[(ORT, 1)][8] == pytest.approx(2.5)
    assert trials.sessions_s[(ORT, 1, off)][8][0] == pytest.approx(0.1e-3)
    assert (ORT, 1, ()) not in trials.sessions_s  # the control is no choice of its own
    alone = adviser.read_trials({1: tmp_path / "t1"}, SERVING_CALL, NATIVE.get)
    adviser.read_session_trials(alone, {(1, off): tmp_path / "t1-memory_arena-off"})
    assert alone.sessions_s == {}  # without a control beside it, an option is not compared
    request = adviser.Request("m.onnx", 5.0)
    space = adviser.space(trials, request, 2, "all")
    assert space.sessions == {ORT: (adviser.full_session("all"),
                                    adviser.full_session("all", off))}
    assert {c.session for c in configurations(space) if c.option == ORT} == set(
        space.sessions[ORT])  # int8 was not timed with it: only its default session is tried
    assert {c.session for c in configurations(space) if c.option == INT8} == {
        (("graph_optimization", "all"),)}
    evaluate = adviser.evaluator(trials, request, cores=2)
    arena_off = evaluate(config(ORT, workers=1, batch=8, delay=0.5,
                                session=adviser.full_session("all", off)))
    default = evaluate(config(ORT, workers=1, batch=8, delay=0.5,
                              session=adviser.full_session("all")))
    # batching up to 8, both are capped by the serial costs; the faster calls show in the p99
    assert arena_off.why_not is None and arena_off.rate >= default.rate > 0
    assert arena_off.p99_ms < default.p99_ms
    alone = [evaluate(config(ORT, workers=1, session=adviser.full_session("all", changed)))
             for changed in (off, ())]
    assert alone[0].rate > alone[1].rate > 0  # one query a call: 25 us against 50 us
    untimed = evaluate(config(INT8, workers=1, batch=8, delay=0.5,
                              session=adviser.full_session("all", off)))
    assert untimed.rate == 0 and "not timed with memory_arena=False" in untimed.why_not
    assert all(c.session == adviser.full_session("all")
               for c in adviser.defaults(trials, request, 2, "all"))
    assert trials.digest() != adviser.read_trials(
        {1: tmp_path / "t1"}, SERVING_CALL, NATIVE.get).digest()  # a resumed study sees it


def test_bad_requests_are_refused_in_one_line():
    with pytest.raises(BadInputError, match="--p99-ms"):
        adviser.Request("m.onnx", 0.0)
    with pytest.raises(BadInputError, match="--max-quality-drop"):
        adviser.Request("m.onnx", 5.0, max_quality_drop="lots")
    with pytest.raises(BadInputError, match="--recipes torch-compile"):
        adviser.Request("m.onnx", 5.0, recipes=("fp32", "torch-compile"))
    with pytest.raises(BadInputError, match="names 2 workloads"):
        adviser.resolve(adviser.Request("digits-mlp", 5.0))
    with pytest.raises(BadInputError, match="at most 2 threads"):
        adviser.resolve(adviser.Request("torch/digits-mlp", 5.0, threads=(1, 4), cores=2))
    with pytest.raises(BadInputError, match="no advise-request.json"):
        adviser.load_request(Path("/nonexistent"))
    # a study keeps to one node of a cluster, so it cannot measure on every node
    pytest.importorskip("ray")
    from typer.testing import CliRunner

    from toolkit.cli import app

    refused = CliRunner().invoke(app, ["advise", "torch/digits-mlp", "--p99-ms", "5",
                                       "--cluster", "auto", "--placement", "each-node"])
    assert refused.exit_code == 2 and "takes spread" in refused.output


@pytest.mark.parametrize("stored", [
    {"request": {"target": "m.onnx", "p99_ms": -1.0}, "cluster": None},
    {"request": {"target": "m.onnx", "p99_ms": 5.0}, "cluster": "here"},
    {"cluster": None}])
def test_a_damaged_request_file_is_named_when_resumed(tmp_path, stored):
    (tmp_path / adviser.REQUEST_FILE).write_text(json.dumps(stored))
    with pytest.raises(BadInputError, match=f"{adviser.REQUEST_FILE}: not what advise writes"):
        adviser.load_request(tmp_path)


def ran_its_search(confirmed: dict) -> bool:
    """Whether a confirmation's LoadGen search ran to its end (its record, in its round's
    results, is there and ok)."""
    from toolkit.results import read_results

    logs = Path(confirmed["folder"])  # confirm/round-N/loadgen/<tag>
    path = logs.parents[1] / "results.json"
    return path.is_file() and any(r.phase == "scenario" and r.ok and r.info["tag"] == logs.name
                                  for r in read_results(path)[1])


@pytest.mark.slow
def test_advise_on_an_onnx_file_confirms_its_pick_and_resumes(tmp_path):
    """The whole command on a 64-64-10 MLP: trials at one thread a worker, the search, LoadGen
    confirmations of the front's best and the defaults; the answer's files; then --resume of the
    finished folder measures nothing again and gives the same answer."""
    pytest.importorskip("mlperf_loadgen")
    from typer.testing import CliRunner

    from tests.test_loadgen import mlp
    from toolkit.cli import app

    model = mlp(tmp_path / "mlp.onnx")
    out = tmp_path / "advice"
    args = ["advise", str(model), "--p99-ms", "20", "--threads", "1", "--recipes", "fp32",
            "--budget", "2m", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    # a 64-64-10 MLP holds thousands of queries a second within 20 ms: a pick must be confirmed
    assert result.exit_code == 0, result.output
    advice = json.loads((out / "advice.json").read_text())
    assert advice["trials"]["options"] == [ORT]
    assert {c["role"] for c in advice["confirmed"]} >= {"default"}
    assert len(advice["tried"]) >= 10 and (out / "search.sqlite").is_file()
    # the session options timed alone, each by its own bench with the session ONNX Runtime
    # read back, and searched
    from toolkit.results import read_results

    _, records = read_results(out / "trials" / "t1-memory_arena-off" / "results.json")
    timed = [r for r in records if r.phase == "infer" and r.ok]
    assert timed and all(r.settings["memory_arena"] is False for r in timed)
    assert {json.dumps(t["config"]["session"], sort_keys=True) for t in advice["tried"]
            if t["config"]["option"] == ORT} > {json.dumps(dict(adviser.full_session("all")),
                                                           sort_keys=True)}
    picked = advice["pick"]
    assert picked["sustained"] and picked["peak_qps"] > 0 and "serve " in result.output
    # every configuration confirmed in the same three rounds, the order flipping each round
    assert {h["folder"] for h in advice["held"]} >= {picked["folder"]}
    assert all(sorted(h["rounds"]) == ["1", "2", "3"] for h in advice["held"])
    assert len(advice["round_effects"]) == 3
    order = [json.dumps(c["config"], sort_keys=True) for c in advice["confirmed"]]
    held = len(advice["held"])
    assert order[held:2 * held] == order[:held][::-1]
    # each round one run, every configuration side by side in it, taking turns
    assert sorted(p.name for p in (out / "confirm").iterdir()) == ["round-1", "round-2",
                                                                   "round-3"]
    _, round_two = read_results(out / "confirm" / "round-2" / "results.json")
    searched = [r for r in round_two if r.phase == "scenario" and r.ok]
    assert searched and {r.info["lockstep"] for r in searched} == {held}
    assert {r.info["tag"] for r in round_two} == {Path(c["folder"]).name
                                                  for c in advice["confirmed"]}
    # the pick set against the best default round by round, unless it is that default
    assert (advice["versus_default"] is None) == (picked["folder"] == advice["default"]["folder"])
    if advice["versus_default"] is not None:
        versus = advice["versus_default"]
        assert versus["low"] <= versus["ratio"] <= versus["high"] and versus["rounds"] >= 2
        assert "paired rounds" in result.output
    assert advice["model_error"] is not None and "the queueing model's median error" in \
        result.output
    # the calibration's trivial model confirmed beside them, never picked; where it held, the
    # machine's speed against the calibration's, and the model's predictions at that speed
    controls = [h for h in advice["held"] if h["role"] == "control"]
    assert [h["config"]["max_batch"] for h in controls] == [1]
    assert picked["config"]["option"] != adviser.CONTROL
    if controls[0]["sustained"]:
        again = advice["in_rounds"]
        assert again["speed"] == pytest.approx(again["control_qps"] / again["calibrated_qps"],
                                               rel=1e-3)
        some = next(h for h in advice["held"] if h["role"] != "control" and h["predicted"])
        assert again["predicted"][Config.from_dict(some["config"]).label()] == pytest.approx(
            some["predicted"]["rate"] * again["speed"], rel=1e-3)
        assert again["model_error"] is not None and "the calibration's speed" in result.output
    else:  # no speed is read off a control that held in too few rounds
        assert advice["in_rounds"] is None and "the calibration's speed" not in result.output
    assert "Which configuration should I deploy?" in (out / "advice.md").read_text()
    assert all(len(c["core_speed"]) == 2 for c in advice["confirmed"]  # before and after
               if ran_its_search(c)), advice["confirmed"]
    assert "<svg" in (out / "advice.html").read_text()
    runs = sorted(p.name for p in (out / "confirm").iterdir())
    spent = json.loads((out / adviser.SPENT_FILE).read_text())["spent_s"]
    assert spent >= advice["budget_used_s"] > 0
    again = CliRunner().invoke(app, ["advise", "--resume", str(out)])
    assert again.exit_code == result.exit_code, again.output
    # the budget's clock went on from what the first run spent
    assert json.loads((out / "advice.json").read_text())["budget_used_s"] >= spent
    assert sorted(p.name for p in (out / "confirm").iterdir()) == runs
    assert json.loads((out / "advice.json").read_text())["pick"] == picked
    refused = CliRunner().invoke(app, ["advise", "--resume", str(out), "--p99-ms", "3"])
    assert refused.exit_code == 2 and "drop --p99-ms" in refused.output


def test_the_budget_goes_on_across_resumes_and_a_spent_one_leaves_the_session_trials_out(
        tmp_path, monkeypatch):
    """The budget's clock goes on from what earlier runs in the folder spent; where it is spent
    once the options are timed, the session options are not timed (and it says so), the
    search still runs, and what this run spent is kept."""
    from tests.test_loadgen import mlp
    from toolkit.results import Record, ResultsFile
    from toolkit.stats import Stats

    model = mlp(tmp_path / "mlp.onnx")
    out = tmp_path / "advice"
    out.mkdir()
    (out / adviser.SPENT_FILE).write_text(json.dumps({"spent_s": 1e6}))
    monkeypatch.setattr(adviser, "SEARCH_LEAST_S", 0.3)  # a search cut short by the budget
    started: list[str] = []
    confirmations = []

    def start(plan, folder: Path) -> bool:
        started.append(folder.name)
        if folder.name != "t1":
            confirmations.append(plan)
            folder.mkdir(parents=True, exist_ok=True)  # as the executor makes it
            return False  # a confirmation: interrupted, so advise ends here
        folder.mkdir(parents=True, exist_ok=True)  # the plan made it
        trial = ResultsFile(folder / "results.json", {
            "command": "bench", "suite": Suite("bench", ("bench",)).to_dict(),
            "request": {"path": str(model), "shapes": []}})
        trial.append([Record("mlp", "onnx", "infer", runtime="onnxruntime", variant="run",
                             provider="cpu", batch_size=b, recipe="fp32", threads=1,
                             stats=Stats.from_ms([0.05 * b] * 60)) for b in (1, 8, 16)])
        trial.update_run(finished=True)
        (folder / "inputs.npz").write_bytes(b"")  # named by the trial's sources, not read
        return True

    said: list[str] = []
    request = adviser.Request(str(model), 20.0, threads=(1,), recipes=("fp32",), budget_s=60)
    result = adviser.advise(request, out, adviser.StageRunner(start, lambda f, c: False),
                            say=said.append)
    assert result is None and started == ["t1", "round-1"]
    # a confirmation serves workers of the one thread each that was timed: `threads` is each
    # worker's in its scenario, and a runtime's in its suite; the round holds every one
    (confirming,) = confirmations
    (step,) = confirming.steps
    assert len(step.confirmations) >= 2 and confirming.suite.threads == 1
    for confirmation in step.confirmations:
        assert confirmation.settings.threads == 1 and confirmation.suite.threads == 1
        assert confirmation.settings.layout("cpu", 64) == (confirmation.settings.workers, 1)
        assert confirmation.tag.startswith(("searched-", "default-", "control-"))
    assert any("the budget is spent" in line for line in said)
    planned = json.loads((out / "trials" / "sessions.json").read_text())
    assert planned["timed"] == [] and len(planned["left_out"]) == len(adviser.TRIAL_SESSIONS)
    assert (out / "search.sqlite").is_file()
    # what this run spent is kept beside what came before
    assert json.loads((out / adviser.SPENT_FILE).read_text())["spent_s"] >= 1e6 + 0.2

    # resumed with budget to spare, what was left out stays out, and a search that went on
    # to its confirmations is not searched further: the study is the one they came from
    import optuna

    def evaluated() -> int:
        study = optuna.load_study(study_name="advise",
                                  storage=f"sqlite:///{out / 'search.sqlite'}")
        return len(study.get_trials())

    before, started[:] = evaluated(), []
    assert 0 < before < 26  # of 26 configurations: cut by the budget
    (out / adviser.SPENT_FILE).write_text(json.dumps({"spent_s": 0.0}))
    assert adviser.advise(request, out, adviser.StageRunner(start, lambda f, c: False)) is None
    assert started == ["round-1"]
    assert json.loads((out / "trials" / "sessions.json").read_text()) == planned
    assert evaluated() == before


def test_the_combination_is_timed_after_the_options_alone_and_a_spent_budget_leaves_it_out(
        tmp_path, monkeypatch):
    """advise's own wiring, with every bench written as the executor would: the two options
    faster than the control alone are benched together after them, and that bench is searched;
    where the budget was spent by then, it alone is left out, and a resume keeps it out."""
    import numpy as np

    from tests.test_loadgen import mlp
    from toolkit.results import Record, ResultsFile
    from toolkit.stats import Stats

    model = mlp(tmp_path / "mlp.onnx")
    ms = {"t1": 0.05, "t1-default": 0.05, "t1-graph_optimization-basic": 0.08,
          "t1-memory_arena-off": 0.04, "t1-memory_pattern-off": 0.045,
          "t1-memory_arena-off-memory_pattern-off": 0.03}
    left = [1e6]  # the budget's seconds left, as advise reads them
    monkeypatch.setattr(adviser, "elapsed_budget", lambda started, budget: left[0])
    monkeypatch.setattr(adviser, "SEARCH_LEAST_S", 0.3)
    monkeypatch.setattr(adviser, "TRIALS", 20)

    def runner(started: list[str], spend_after: str) -> adviser.StageRunner:
        def start(plan, folder: Path) -> bool:
            started.append(folder.name)
            folder.mkdir(parents=True, exist_ok=True)
            if folder.name not in ms:
                return False  # a confirmation: interrupted, so advise ends there
            trial = ResultsFile(folder / "results.json", {
                "command": "bench", "suite": Suite("bench", ("bench",)).to_dict(),
                "request": {"path": str(model), "shapes": []}})
            trial.append([Record("mlp", "onnx", "infer", runtime="onnxruntime", variant="run",
                                 provider="cpu", batch_size=b, recipe="fp32", threads=1,
                                 stats=Stats.from_ms([ms[folder.name] * b] * 60))
                          for b in (1, 8, 16)])
            trial.update_run(finished=True)
            np.savez(folder / "inputs.npz", x=np.zeros((16, 64), np.float32))  # the sessions'
            if folder.name == spend_after:
                left[0] = 0.0
            return True
        return adviser.StageRunner(start, lambda f, c: False)

    both = "t1-memory_arena-off-memory_pattern-off"
    request = adviser.Request(str(model), 20.0, threads=(1,), recipes=("fp32",))
    started: list[str] = []
    assert adviser.advise(request, tmp_path / "a", runner(started, "")) is None
    assert started[:6] == ["t1", "t1-default", "t1-graph_optimization-basic",
                           "t1-memory_arena-off", "t1-memory_pattern-off", both]
    assert both in json.loads((tmp_path / "a" / "trials" / "sessions.json").read_text())["timed"]
    import optuna

    study = optuna.load_study(study_name="advise",
                              storage=f"sqlite:///{tmp_path / 'a' / 'search.sqlite'}")
    chosen = next(t for t in study.get_trials() if f"session of {ORT}" in t.params)
    assert any(choice.endswith("memory_arena=False memory_pattern=False")  # a choice of it
               for choice in chosen.distributions[f"session of {ORT}"].choices)

    # spent once the options alone were timed: the combination alone is left out, for good
    left[0], started[:] = 1e6, []
    said: list[str] = []
    assert adviser.advise(request, tmp_path / "b", runner(started, "t1-memory_pattern-off"),
                          say=said.append) is None
    planned = json.loads((tmp_path / "b" / "trials" / "sessions.json").read_text())
    assert planned["left_out"] == [both] and len(planned["timed"]) == 4
    assert both not in started and any("the budget is spent" in line and both in line
                                       for line in said)
    left[0], started[:] = 1e6, []
    assert adviser.advise(request, tmp_path / "b", runner(started, "")) is None
    assert both not in started and json.loads(
        (tmp_path / "b" / "trials" / "sessions.json").read_text()) == planned


def test_a_confirmation_stored_before_threads_were_per_worker_resumes_with_its_pool(tmp_path):
    """A confirmation folder made when the suite's `threads` were the pool's cores (workers x
    threads) and its settings had no `threads`: replanned for --resume, the same pool."""
    from toolkit.plans import replan
    from toolkit.plans.advise import confirm_plan
    from toolkit.plans.steps import Sources
    from toolkit.scenarios import ScenarioSettings
    from toolkit.suite import Case

    settings = ScenarioSettings(p99_ms=5.0, workers=2, threads=3, queries=512)
    plan = confirm_plan(Case("onnx/mlp", "onnxruntime", "cpu"), "per-worker", settings,
                        Sources(onnx="m.onnx", inputs="i.npz"),
                        Suite("bench", ("onnx/mlp",), threads=3, scenarios=(settings,)), "x")
    stored = json.loads(json.dumps(plan.run))
    stored["suite"]["threads"] = 6
    del stored["suite"]["scenarios"][0]["threads"], stored["settings"]["threads"]
    (step,) = replan(stored, tmp_path, tmp_path / "results.json").steps
    assert step.settings.layout("cpu", 64) == (2, 3)
    (step,) = replan(json.loads(json.dumps(plan.run)), tmp_path, tmp_path / "r.json").steps
    assert step.settings == settings  # and one stored today, as it was


def test_a_round_of_confirmations_serves_every_configuration_side_by_side_and_resumes(
        tmp_path, monkeypatch):
    """A round is one step: one lockstep child whose options keep their own pool, threads,
    session options, graph optimisation, start and tag; its plan is made again from its
    results.json as it was; a configuration the child left no record for fails alone."""
    from tests.test_loadgen import mlp
    from toolkit.isolate import ChildResult
    from toolkit.plans import replan, steps
    from toolkit.plans.advise import confirm_round_plan
    from toolkit.plans.steps import Confirmation, Context, Sources
    from toolkit.results import Record
    from toolkit.scenarios import ScenarioSettings
    from toolkit.suite import Case

    model = mlp(tmp_path / "m.onnx")
    sources = Sources(onnx=str(model), inputs=str(tmp_path / "i.npz"))
    case = Case("onnx/mlp", "onnxruntime", "cpu")
    one = ScenarioSettings(p99_ms=5.0, workers=2, threads=1, queries=512, rounds=3)
    two = ScenarioSettings(p99_ms=5.0, workers=1, threads=2, batch_sizes=(16,),
                           max_delay_ms=0.1, queries=512, rounds=3)
    base = Suite("bench", ("onnx/mlp",), threads=1, timeout_s=60)
    confirmations = [
        Confirmation("default-aaa", case, "per-worker", one, sources,
                     dataclasses.replace(base, scenarios=(one,))),
        Confirmation("searched-bbb", case, "per-worker+batching", two, sources,
                     dataclasses.replace(base, threads=2, timeout_s=90, optimization="basic",
                                         session=(("memory_arena", False),),
                                         scenarios=(two,)), (("16", 40_000.0),))]
    plan = confirm_round_plan(confirmations, 2)
    again = replan(json.loads(json.dumps(plan.run)), tmp_path, tmp_path / "results.json")
    assert again.steps == plan.steps and again.suite.timeout_s == 150
    children = []

    def child(spec, workdir, *, timeout_s, threads, name):
        children.append((spec, timeout_s))
        made = spec["options"][1]  # the child made the second one's record only
        return ChildResult([Record("onnx/mlp", "onnx", "scenario", runtime="onnxruntime",
                                   variant=made["variant"], provider="cpu", batch_size=16,
                                   round=2, info={"tag": made["tag"], "peak_qps": 1.0})], None)

    monkeypatch.setattr(steps, "run_child", child)
    monkeypatch.setattr(steps, "available_memory_bytes", lambda: 2**40)
    (step,) = plan.steps
    records = step.execute(Context(plan.suite, tmp_path))
    ((spec, timeout),) = children
    assert spec["task"] == "lockstep" and timeout == 150
    first, second = spec["options"]
    assert (first["workers"], first["threads"], first["tag"]) == (2, 1, "default-aaa")
    assert (second["workers"], second["threads"], second["optimization"], second["session"],
            second["start_qps"]) == (1, 2, "basic", {"memory_arena": False}, {"16": 40_000.0})
    assert second["logs"] == str(tmp_path / "loadgen" / "searched-bbb")
    by_tag = {r.info["tag"]: r for r in records}
    assert by_tag["searched-bbb"].status == "ok" and by_tag["default-aaa"].status == "failed"


def test_the_rate_a_service_must_sustain_is_need_qps_as_in_loadgen_and_old_requests_resume():
    """`target_qps` is loadgen's rate to measure at; what advise's answer must sustain is
    `need_qps` (--need-qps), also in an advise-request.json stored before it was renamed."""
    request = adviser.Request("m.onnx", 5.0, need_qps=50_000.0)
    assert adviser.Request.from_dict(json.loads(json.dumps(request.to_dict()))) == request
    old = {k: v for k, v in request.to_dict().items() if k != "need_qps"}
    assert adviser.Request.from_dict({**old, "target_qps": 50_000.0}) == request
    with pytest.raises(BadInputError, match="--need-qps 0: give a number > 0"):
        adviser.Request("m.onnx", 5.0, need_qps=0.0)


def test_the_search_chart_has_numbered_axes_with_units(tmp_path):
    assert advice_report.ticks(76_573) == [0, 20_000, 40_000, 60_000]
    assert advice_report.ticks(76_573, 10) == [0, 10_000, 20_000, 30_000, 40_000, 50_000,
                                               60_000, 70_000]
    assert advice_report.ticks(5.0, 5) == [0, 1, 2, 3, 4, 5]
    assert advice_report.ticks(0.0) == [0.0]
    request = adviser.Request("m.onnx", 5.0)
    tried = [Tried(config(batch=16, delay=0.1), Outcome(33_000.0, 3.1, 0.0))]
    advice = adviser.Advice(request, "onnx/m", 2, "all", adviser.Trials(), tried,
                            [confirmed(config(batch=16, delay=0.1), 36_000.0, "sustained")],
                            tmp_path)
    svg = advice_report.chart_svg(advice)
    assert "queries per second" in svg and "p99 at that rate (ms)" in svg
    for label in (">0<", ">10k<", ">30k<", ">5<"):  # the axes' numbers (top: 37.8k q/s)
        assert label in svg, label
