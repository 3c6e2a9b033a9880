"""compare on two separately measured runs: quiet when nothing changed, loud when a case got
slower, and a clean error for files it cannot trust."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from toolkit import history
from toolkit.cli import app
from toolkit.compare import compare, render_markdown, summary_line
from toolkit.results import Record, ResultsFile, read_results
from toolkit.stats import Stats

CliRunner = pytest.importorskip("typer.testing").CliRunner

runner = CliRunner()
RUN = {"suite": {"name": "synthetic", "threads": 1}, "environment": {"cpu": "test cpu"}}
CASES = [("digits-mlp", "torch", "native", "inference_mode"),
         ("digits-mlp", "torch", "onnxruntime", "run"),
         ("seed-linreg", "sklearn", "onnxruntime", "iobinding")]


def write_run(path: Path, seed: int, slower: dict[tuple[str, str], float] | None = None,
              rounds: int = 3, between: float = 0.03, state: float = 0.0,
              machine: float = 1.0) -> Path:
    """A results.json of `rounds` rounds per case: each round's samples are fresh draws (10%
    noise, heavy right tail) around a median that itself moves by `between` from round to
    round, as process placement moves it; `slower` multiplies a (workload, variant) case.
    `state`: the machine's speed in each round, moving every case of that round alike (log sd);
    `machine`: the whole run's."""
    rng = np.random.default_rng(seed)
    results = ResultsFile(path, RUN)
    for round_ in range(1, rounds + 1):
        speed = machine * rng.lognormal(0, state) if state else machine
        for index, (workload, framework, runtime, variant) in enumerate(CASES):
            for batch in (1, 64):
                factor = (slower or {}).get((workload, variant), 1.0) * speed
                centre = 0.05 * (index + 1) * batch ** 0.5 * factor * rng.lognormal(0, between)
                samples = centre * rng.lognormal(0.0, 0.1, size=200)
                results.append([Record(workload, framework, "infer", runtime=runtime,
                                       variant=variant, provider="cpu", batch_size=batch,
                                       round=round_, stats=Stats.from_ms(samples.tolist()))])
    return path


@pytest.mark.parametrize("pair", range(3))
def test_two_runs_of_the_same_thing_never_fail_the_gate(tmp_path, pair):
    base = write_run(tmp_path / "a.json", seed=10 * pair + 1)
    new = write_run(tmp_path / "b.json", seed=10 * pair + 2)
    result = compare(read_results(base), read_results(new))
    assert len(result.rows) == 6 and not result.regressed
    assert {r.verdict for r in result.rows} <= {"same", "inconclusive"}
    assert all(r.low <= r.ratio <= r.high and r.rounds == (3, 3) for r in result.rows)
    cli = runner.invoke(app, ["compare", str(base), str(new)], terminal_width=250)
    assert cli.exit_code == 0, cli.output
    assert "0 regressed of 6" in cli.output and "one round" not in cli.output


def test_a_case_twice_as_slow_is_named_and_fails_the_gate(tmp_path):
    base = write_run(tmp_path / "a.json", seed=1)
    new = write_run(tmp_path / "b.json", seed=2, slower={("digits-mlp", "run"): 2.0})
    result = compare(read_results(base), read_results(new))
    slow = {r.case for r in result.regressed}
    assert slow == {"torch/digits-mlp onnxruntime run cpu b=1",
                    "torch/digits-mlp onnxruntime run cpu b=64"}
    assert all(1.7 < r.low <= r.ratio <= r.high < 2.3 for r in result.regressed)
    cli = runner.invoke(app, ["compare", str(base), str(new), "--format", "md"])
    assert cli.exit_code == 1, cli.output
    assert "2 regressed of 6" in cli.output and "❗" in cli.output
    back = runner.invoke(app, ["compare", str(new), str(base)], terminal_width=250)
    assert back.exit_code == 0 and "0 regressed of 6 matched cases (2 faster" in back.output


def test_a_case_whose_rounds_disagree_is_inconclusive_not_slower(tmp_path):
    base = write_run(tmp_path / "a.json", seed=1, between=0.3)
    new = write_run(tmp_path / "b.json", seed=2, between=0.3,
                    slower={("seed-linreg", "iobinding"): 1.15})
    result = compare(read_results(base), read_results(new))
    assert not result.regressed
    assert any(r.verdict == "inconclusive" and r.low < 1.1 < r.high for r in result.rows)


def test_one_round_runs_cannot_raise_an_alarm_and_say_why(tmp_path):
    base = write_run(tmp_path / "a.json", seed=1, rounds=1)
    new = write_run(tmp_path / "b.json", seed=2, rounds=1, slower={("digits-mlp", "run"): 2.0})
    result = compare(read_results(base), read_results(new))
    assert all(r.weak for r in result.rows) and not result.regressed
    assert {r.verdict for r in result.rows if r.ratio > 1.5} == {"inconclusive"}
    cli = runner.invoke(app, ["compare", str(base), str(new)], terminal_width=250)
    assert cli.exit_code == 0 and "warning: 6 of 6 cases could not be judged" in cli.output
    strict = runner.invoke(app, ["compare", str(base), str(new), "--fail-on", "inconclusive"])
    assert strict.exit_code == 1


def _failing(path: Path, seed: int, how: str) -> Path:
    """A run in which torch/digits-mlp onnxruntime run crashed, or lost its parity."""
    from toolkit.results import Parity

    write_run(path, seed)
    run, records = read_results(path)
    results = ResultsFile(path, run)
    kept = []
    for record in records:
        if record.workload == "digits-mlp" and record.variant == "run":
            if how == "crashed":
                record = Record(record.workload, record.framework, "infer", status="failed",
                                runtime="onnxruntime", provider="cpu",
                                batch_size=record.batch_size, round=record.round,
                                reason="child process killed by SIGSEGV")
            else:
                record = Record(**{**record.to_dict(), "stats": record.stats,
                                   "parity": Parity(0.5, 0.5, None, False, 1e-4, 1e-5, 40,
                                                    verdict="fail")})
        kept.append(record)
    results.append(kept)
    return path


@pytest.mark.parametrize("how", ["crashed", "parity"])
def test_a_case_that_crashed_or_lost_its_parity_in_new_fails_the_gate(tmp_path, how):
    base = write_run(tmp_path / "a.json", seed=1)
    new = _failing(tmp_path / "b.json", seed=2, how=how)
    result = compare(read_results(base), read_results(new))
    assert [line.split(":")[0] for line in result.failed] == [
        "torch/digits-mlp onnxruntime cpu b=1", "torch/digits-mlp onnxruntime cpu b=64"]
    assert ("SIGSEGV" if how == "crashed" else "parity fails") in result.failed[0]
    cli = runner.invoke(app, ["compare", str(base), str(new)], terminal_width=250)
    assert cli.exit_code == 1 and "failed in new: torch/digits-mlp" in cli.output


def test_compare_takes_history_run_ids(tmp_path):
    database = tmp_path / "h.sqlite"
    a, _ = history.remember(write_run(tmp_path / "a.json", seed=1), database)
    b, _ = history.remember(write_run(tmp_path / "b.json", seed=3,
                                      slower={("seed-linreg", "iobinding"): 3.0}), database)
    result = runner.invoke(app, ["compare", str(a), str(b), "--history", str(database)],
                           terminal_width=250)
    assert result.exit_code == 1, result.output
    assert "sklearn/seed-linreg onnxruntime iobinding cpu b=1" in result.output
    missing = runner.invoke(app, ["compare", "999", str(b), "--history", str(database)])
    assert missing.exit_code == 2 and "run 999 is not in the history" in missing.output


def test_compare_rejects_bad_values(tmp_path):
    base = write_run(tmp_path / "a.json", seed=1)
    bad = runner.invoke(app, ["compare", str(base), str(base), "--threshold", "lots"])
    assert bad.exit_code == 2 and "--threshold 'lots'" in bad.output
    bad = runner.invoke(app, ["compare", str(base), str(base), "--metric", "median"])
    assert bad.exit_code == 2 and "--metric 'median'" in bad.output


def edited(path: Path, change) -> Path:
    payload = json.loads(path.read_text())
    change(payload)
    target = path.with_name(f"edited-{path.name}")
    target.write_text(json.dumps(payload))
    return target


@pytest.mark.parametrize("change, needle", [
    (lambda p: p.update(schema="deploybench.results/99"), "written by a newer deploybench"),
    (lambda p: p.update(schema="something/else"), "not a deploybench results file"),
    (lambda p: p["records"][0].update(batch_size="one"), "record 0 is not a deploybench record"),
    (lambda p: p["records"][1].update(stats={"p50_ms": "fast"}), "record 1 is not a deploybench"),
    (lambda p: p["records"][2].update(phase="serve"), "unknown phase 'serve'"),
    (lambda p: p.update(records={"a": 1}), "run or records section"),
])
def test_an_edited_or_newer_results_file_is_one_error_line(tmp_path, change, needle):
    good = write_run(tmp_path / "a.json", seed=1)
    bad = edited(good, change)
    for args in (["compare", str(good), str(bad)], ["report", str(bad), "--out",
                                                      str(tmp_path / "r")]):
        result = runner.invoke(app, args, terminal_width=300)
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
        assert str(bad) in lines[0]


def test_separate_runs_judge_every_case_together_against_the_machines_drift(tmp_path):
    """Two separate runs on a machine whose speed moves 10% from round to round inside a run,
    and as much from one run to the next: the gate stays quiet (each case is judged against
    the common move, which the drift explains); every case 1.5x slower on a steady machine
    fails the gate as one finding, every case together; one case 2x slower among the rest is
    that case."""
    rng = np.random.default_rng(11)
    alarms = 0
    for pair in range(20):
        base, drifted = (write_run(tmp_path / f"{pair}{side}.json", seed=100 * pair + side,
                                   state=0.10, rounds=4, machine=rng.lognormal(0, 0.10))
                         for side in (1, 2))
        result = compare(read_results(base), read_results(drifted))
        assert result.common is not None and not result.regressed
        alarms += result.fails()
    assert alarms <= 2
    cli = runner.invoke(app, ["compare", str(base), str(drifted)], terminal_width=250)
    assert "every case together moved" in cli.output
    assert "÷ common move" in cli.output

    steady = write_run(tmp_path / "c.json", seed=3, state=0.01, rounds=4)
    slower = write_run(tmp_path / "d.json", seed=4, state=0.01, rounds=4, machine=1.5)
    everything = compare(read_results(steady), read_results(slower))
    assert everything.common.verdict == "slower" and everything.common.low > 1
    assert everything.fails() and not everything.regressed
    assert "every case together slower" in summary_line(everything)
    assert "**Every case together** moved 1.5" in render_markdown(everything)

    one = write_run(tmp_path / "e.json", seed=5, state=0.01, rounds=4,
                    slower={("digits-mlp", "run"): 2.0})
    alone = compare(read_results(steady), read_results(one))
    assert {r.case for r in alone.regressed} == {
        c for c in (r.case for r in alone.rows) if "digits-mlp onnxruntime run" in c}
    assert alone.common.verdict in ("same", "inconclusive")
    # too few cases to read the machine's drift off: judged as before, with the warning
    few = [r for r in read_results(steady)[1] if r.batch_size == 1][:9]
    moved = [r for r in read_results(write_run(tmp_path / "f.json", seed=6, rounds=4,
                                                machine=1.2))[1] if r.batch_size == 1][:9]
    judged = compare(({}, few), ({}, moved))
    assert judged.common is None and any("moved the same way" in w for w in judged.warnings)


def test_a_suites_session_options_are_a_difference_a_comparison_names():
    """A run with the memory arena off is not compared as if set alike; a run from before
    suites had a [session] is the defaults."""
    from toolkit.compare import environment_differences

    old, default = {"suite": {"threads": 2}}, {"suite": {"threads": 2, "session": []}}
    arena_off = {"suite": {"threads": 2, "session": [["memory_arena", False]]}}
    said = {"suite": {"threads": 2, "session": [["memory_arena", True]]}}  # the default, said
    assert environment_differences(old, default) == environment_differences(old, said) == []
    assert environment_differences(default, arena_off) == [
        "session: [] -> [['memory_arena', False]]"]


def test_a_verdict_never_disagrees_with_the_interval_printed_beside_it():
    """The test reads the fastest rounds and the interval the medians: on noisy runs with slow
    processes the two can part, and then the verdict must step back, not the interval."""
    rng = np.random.default_rng(7)
    judged = 0
    for trial in range(60):
        sides: tuple[list[Record], list[Record]] = ([], [])
        factor = (1.0, 1.15, 1.3, 1.6)[trial % 4]
        for round_ in range(1, 5):
            for case in range(6):
                for side, times in zip(sides, (1.0, factor), strict=True):
                    slowed = rng.uniform(1.2, 2.0) if rng.random() < 0.25 else 1.0
                    centre = (case + 1) * times * slowed * rng.lognormal(0, 0.15)
                    side.append(Record("m", "onnx", "infer", runtime="onnxruntime",
                                       variant="run", provider="cpu", batch_size=2 ** case,
                                       round=round_, stats=Stats.from_ms(
                                           [centre * 0.99, centre, centre * 1.01])))
        result = compare(({}, sides[0]), ({}, sides[1]))
        for row in [*result.rows, result.common]:
            judged += row.verdict in ("slower", "faster")
            assert row.verdict != "slower" or row.low > 1, (trial, row)
            assert row.verdict != "faster" or row.high < 1, (trial, row)
    assert judged, "some cases are called slower or faster: the check above had work to do"
