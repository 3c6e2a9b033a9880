"""compare of two model files measured side by side: rounds alternating in one run, judged on
the pairs of rounds, so a machine that drifts during the run moves both sides alike."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests import model_files
from toolkit.cli import app
from toolkit.compare import compare
from toolkit.plans import pair
from toolkit.plans.model import ModelRequest, bench_suite
from toolkit.plans.steps import Measure
from toolkit.results import Record, read_results
from toolkit.stats import Stats
from toolkit.timing import Budget

CliRunner = pytest.importorskip("typer.testing").CliRunner

runner = CliRunner()


def drifting(seed: int, factor: float = 1.0, rounds: int = 4, cases: int = 6,
             drift: tuple[float, ...] = (1.0, 1.25, 1.5, 1.2)) -> tuple[list[Record], list[Record]]:
    """BASE's and NEW's records of one side-by-side run whose machine slowed by up to 1.5x
    between rounds (both sides of a round alike), 3% noise per process; NEW `factor` slower."""
    rng = np.random.default_rng(seed)
    sides: tuple[list[Record], list[Record]] = ([], [])
    for round_ in range(1, rounds + 1):
        for case in range(cases):
            for side, times in zip(sides, (1.0, factor), strict=True):
                centre = (case + 1) * times * drift[round_ - 1] * rng.lognormal(0, 0.03)
                side.append(Record("model", "onnx", "infer", runtime="onnxruntime",
                                   variant="run", provider="cpu", batch_size=2 ** case,
                                   round=round_, stats=Stats.from_ms([centre * 0.99, centre,
                                                                      centre * 1.01])))
    return sides


def test_a_drifting_machine_neither_hides_a_regression_nor_raises_a_false_alarm():
    for seed in range(5):
        base, twin = drifting(seed)
        quiet = compare(({}, base), ({}, twin), paired=True)
        assert quiet.paired and not quiet.fails(), [(r.ratio, r.verdict) for r in quiet.rows]
        base, heavier = drifting(seed, factor=1.3)
        caught = compare(({}, base), ({}, heavier), paired=True)
        assert [r.verdict for r in caught.rows] == ["slower"] * 6, [
            (r.ratio, r.low, r.high) for r in caught.rows]
        assert all(1.2 < r.ratio < 1.4 for r in caught.rows)
    # the same rounds judged as two separate runs: the drift swamps the change
    unpaired = compare(({}, base), ({}, heavier))
    assert sum(r.verdict == "slower" for r in unpaired.rows) < 6


def test_with_too_few_cases_the_drift_is_not_read_off_them_and_it_says_so():
    base, new = drifting(2, cases=2)
    result = compare(({}, base), ({}, new), paired=True)
    assert not result.paired and not result.fails()
    assert any("cannot be read off them" in w for w in result.warnings), result.warnings


def test_only_rounds_both_sides_have_are_paired():
    base, new = drifting(1, factor=1.3)
    new = [r for r in new if r.round != 4]  # NEW's last round crashed
    result = compare(({}, base), ({}, new), paired=True)
    assert {r.rounds for r in result.rows} == {(3, 3)}


def test_rounds_alternate_which_side_goes_first(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = model_files.matmul_chain(tmp_path / "a" / "model.onnx", layers=1, width=8)
    b = model_files.matmul_chain(tmp_path / "b" / "model.onnx", layers=2, width=8)
    suite = bench_suite(batch_sizes=(1,), threads=1, rounds=4)
    plan = pair.plan_pair(ModelRequest(a), ModelRequest(b), suite, tmp_path / "out")
    measured = [s for s in plan.steps if isinstance(s, Measure)]
    order = [(s.case.workload.split("/")[1].split("-")[0], s.round) for s in measured]
    assert order == [("base", 1), ("new", 1), ("new", 2), ("base", 2),
                     ("base", 3), ("new", 3), ("new", 4), ("base", 4)]
    assert plan.suite.workloads == ("onnx/base-model", "onnx/new-model")
    assert plan.run["command"] == "compare"


def test_bad_side_by_side_input_is_one_line(tmp_path):
    a = model_files.matmul_chain(tmp_path / "a.onnx", layers=1, width=8)
    b = model_files.matmul_chain(tmp_path / "b.onnx", layers=2, width=8)
    torch = pytest.importorskip("torch")
    scripted = tmp_path / "c.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(8, 8)), str(scripted))
    results = tmp_path / "results.json"
    results.write_text("{}", encoding="utf-8")
    cases = [
        (["compare", str(a), str(a)], "same file"),
        (["compare", str(a), str(results)], "a model file is compared with another"),
        (["compare", str(results), str(results), "--rounds", "3"], "--rounds apply to two model"),
        (["compare", str(a)], "give BASE and NEW"),
        (["compare", str(a), str(tmp_path / "missing.onnx")], "missing.onnx"),
        (["compare", str(a), str(b), "--metric", "p95"], "--metric 'p95'"),  # before measuring
        (["compare", str(a), str(b), "--fail-on", "slow"], "--fail-on 'slow'"),
        (["compare", str(a), str(scripted)], "compare two files of one framework"),
    ]
    for argv, needle in cases:
        result = runner.invoke(app, argv, terminal_width=250)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2, (argv, result.output)
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines


SHORT = Budget(warmup=5, warmup_seconds=0.02, min_iterations=30, min_seconds=0.06,
               max_seconds=0.5, blocks=3)


@pytest.fixture()
def short_budget(monkeypatch):
    """The bench suite's timing budget cut short, for the children this test starts."""
    from toolkit.plans import model

    made = model.bench_suite
    monkeypatch.setattr(model, "bench_suite", lambda **kw: made(**kw).replace(budget=SHORT))


def test_two_files_measured_side_by_side_gate_a_heavier_model(tmp_path, short_budget):
    base = model_files.matmul_chain(tmp_path / "base.onnx", layers=10)
    twin = tmp_path / "twin.onnx"
    shutil.copy(base, twin)
    heavy = model_files.matmul_chain(tmp_path / "heavy.onnx", layers=20)
    common = ["--batch-sizes", "16,64", "--threads", "1", "--rounds", "3",
              "--history", str(tmp_path / "history.sqlite")]
    for attempt in range(2):  # the gate's false-alarm rate is up to 5% by design (Holm at
        # 5% family-wise), more beside the other test worker: a second false alarm in a row
        # (at most 1 in 400 where the noise model holds) fails
        same = runner.invoke(app, ["compare", str(base), str(twin), *common,
                                   "--out", str(tmp_path / f"same{attempt}")],
                             terminal_width=250)
        if same.exit_code != 1:
            break
    assert same.exit_code == 0, same.output
    assert "0 regressed of 4" in same.output and "drift taken out" in same.output
    slower = runner.invoke(app, ["compare", str(base), str(heavy), *common, "--format", "md",
                                 "--out", str(tmp_path / "slower")], terminal_width=250)
    assert slower.exit_code == 1, slower.output
    # stdout is the pull-request comment alone; the run's own tables went to stderr
    assert slower.stdout.startswith("### deploybench compare"), slower.stdout[:500]
    assert "4 regressed of 4" in slower.stdout and "results:" not in slower.stdout
    assert "results:" in slower.stderr
    run, records = read_results(tmp_path / "slower" / "results.json")
    assert run["workloads"] == {"base": "onnx/base-base", "new": "onnx/new-heavy"}
    before, after = pair.split(run, records)
    assert {r.round for r in before if r.timed} == {1, 2, 3} == {r.round for r in after
                                                                 if r.timed}
    # the run's own report was written too, with both models in it
    assert (tmp_path / "slower" / "report.md").is_file()
