"""Recipes beyond fp32: int8 (dynamic, static), fp16, offline-optimised ONNX, torch.compile and
XLA, each measured with its accuracy against the native model and judged by the criterion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from exporters.parity import judge_quality
from tests import model_files
from toolkit.cli import app
from toolkit.environment import missing_framework
from toolkit.errors import BadInputError
from toolkit.recipes import QualityRule, parse_recipes
from toolkit.results import Parity, Record
from toolkit.stats import Stats
from toolkit.timing import Budget

CliRunner = pytest.importorskip("typer.testing").CliRunner

TINY = Budget(warmup=1, warmup_seconds=0, min_iterations=3, min_seconds=0, max_seconds=0.3)
HERE = Path(__file__).parent


def test_recipe_names_and_the_criterion_parse():
    assert parse_recipes(["int8-dynamic", "fp32", "xla"]) == ("fp32", "int8-dynamic", "xla")
    with pytest.raises(BadInputError, match="unknown recipe"):
        parse_recipes(["int4"])
    assert QualityRule.parse("1%").allowed(0.9) == pytest.approx(0.009)
    assert QualityRule.parse("0.02").allowed(0.9) == pytest.approx(0.02)
    for bad in ("lots", "150%", "-1", "1"):
        with pytest.raises(BadInputError, match="--max-quality-drop"):
            QualityRule.parse(bad)


def _classifier(rows: int, accurate: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Native scores of 3 classes on `rows` rows, and true labels it gets `accurate` right."""
    rng = np.random.default_rng(0)
    native = rng.random((rows, 3))
    labels = native.argmax(axis=1)
    wrong = int(rows * (1 - accurate))
    labels[:wrong] = (labels[:wrong] + 1) % 3
    return native, labels


def _flip(scores: np.ndarray, rows: slice) -> np.ndarray:
    got = scores.copy()
    got[rows] = got[rows][:, ::-1]  # the argmax moves to another class
    return got


def test_a_recipe_flipping_a_tenth_of_labels_fails_though_its_accuracy_holds():
    native, labels = _classifier(1000, accurate=0.5)
    wrong = native.argmax(axis=1) != labels
    got = native.copy()
    # 100 flips: 50 right-to-wrong and 50 wrong-to-right, so the accuracy is unchanged
    right_rows, wrong_rows = np.flatnonzero(~wrong)[:50], np.flatnonzero(wrong)[:50]
    got[right_rows] = np.roll(got[right_rows], 1, axis=1)
    for row in wrong_rows:
        got[row] = 0.0
        got[row, labels[row]] = 1.0
    verdict = judge_quality(native, got, "multiclass", labels, QualityRule.parse("1%"))
    assert verdict.quality_delta == pytest.approx(0.0, abs=1e-9)
    assert verdict.label_agreement == pytest.approx(0.9)
    assert verdict.verdict == "fail" and verdict.agreement_high < 0.99
    assert "100 of 1000 labels changed" in verdict.why


def test_one_flip_in_a_hundred_rows_does_not_decide():
    native, labels = _classifier(100)
    got = _flip(native, slice(10, 11))  # one more row wrong: 1 point, beyond 1% of 0.90
    verdict = judge_quality(native, got, "multiclass", labels, QualityRule.parse("1%"))
    assert verdict.quality_delta == pytest.approx(-0.01)
    assert verdict.p_drop == pytest.approx(0.5)  # McNemar: one discordant row says nothing
    assert verdict.verdict == "inconclusive" and not verdict.passed
    assert "more rows alike would not show it" in verdict.why  # 99% kept, 99% needed
    few = judge_quality(native, native, "multiclass", labels, QualityRule.parse("1%"))
    assert few.verdict == "inconclusive" and "about 268 rows" in few.why  # none changed
    native, labels = _classifier(500)
    some = judge_quality(native, _flip(native, slice(10, 12)), "multiclass", labels,
                         QualityRule.parse("1%"))  # 99.6% kept: more rows would show it
    assert some.verdict == "inconclusive" and "rows changing as few" in some.why
    # the same recipe on 3,000 rows with the same one flip passes: the bound is tight there
    native, labels = _classifier(3000)
    many = judge_quality(native, _flip(native, slice(300, 301)), "multiclass", labels,
                         QualityRule.parse("1%"))
    assert many.verdict == "pass" and many.agreement_low >= 0.99


def test_a_significant_accuracy_drop_fails_even_where_agreement_is_unsure():
    native, labels = _classifier(1000, accurate=0.5)
    right = np.flatnonzero(native.argmax(axis=1) == labels)
    got = native.copy()
    got[right[:8]] = np.roll(got[right[:8]], 1, axis=1)  # 8 right rows made wrong, none back
    verdict = judge_quality(native, got, "multiclass", labels, QualityRule.parse("1%"))
    assert verdict.p_drop == pytest.approx(1 / 256)
    assert verdict.verdict == "fail" and "McNemar" in verdict.why
    # allowed 2 points, the same 8 rows are within it and 992 of 1000 kept shows 98%
    loose = judge_quality(native, got, "multiclass", labels, QualityRule.parse("0.02"))
    assert loose.verdict == "pass"


def test_without_labels_a_classifier_is_judged_on_agreement_only():
    native, _ = _classifier(2000)
    verdict = judge_quality(native, _flip(native, slice(0, 2)), "multiclass", None,
                            QualityRule.parse("1%"))
    assert verdict.metric == "agreement" and verdict.p_drop is None
    assert verdict.judged_on == "label agreement" and verdict.verdict == "pass"


def test_the_edges_of_the_quality_rule():
    native, labels = _classifier(50)
    exact = judge_quality(native, native, "multiclass", labels, QualityRule.parse("0"))
    assert exact.verdict == "pass"  # no label may change, and none did
    assert judge_quality(native, _flip(native, slice(0, 1)), "multiclass", labels,
                         QualityRule.parse("0")).verdict == "fail"
    empty = judge_quality(native[:0], native[:0], "multiclass", labels[:0],
                          QualityRule.parse("1%"))
    assert empty.verdict == "inconclusive" and empty.rows == 0
    constant = np.full((40, 1), 2.0)
    assert judge_quality(constant, constant, "regression", None,
                         QualityRule.parse("1%")).verdict == "pass"


def test_a_regressor_is_judged_on_r2_and_its_largest_error():
    rng = np.random.default_rng(0)
    native = rng.normal(size=(200, 1))
    truth = native[:, 0] + rng.normal(scale=0.1, size=200)
    close = native + rng.normal(scale=1e-4, size=native.shape)
    assert judge_quality(native, close, "regression", truth,
                         QualityRule.parse("1%")).verdict == "pass"
    spike = close.copy()
    spike[7, 0] += 0.5  # one row off by about 8% of the outputs' range: r2 barely moves
    verdict = judge_quality(native, spike, "regression", truth, QualityRule.parse("1%"))
    assert verdict.native_quality - verdict.quality < 0.01
    assert verdict.verdict == "fail" and verdict.max_error_share > 0.05
    assert "largest error" in verdict.why
    few = judge_quality(native[:20], close[:20], "regression", truth[:20], QualityRule.parse("1%"))
    assert few.verdict == "inconclusive" and "20 rows" in few.why


def timed(variant: str, runtime: str, p50: float, recipe: str = "fp32", **extra) -> Record:
    return Record("digits-mlp", "torch", "infer", runtime=runtime, variant=variant,
                  provider="cpu", batch_size=1, recipe=recipe, round=1,
                  stats=Stats.from_ms([p50] * 5), **extra)


def test_a_recipe_that_breaks_the_criterion_is_ruled_out_of_the_picks():
    from toolkit.report.summary import decisions, summarise

    broke = Parity(0.1, 0.5, 0.9, False, 1e-4, 1e-5, 100, verdict="fail", rule="quality",
                   metric="accuracy", native_quality=0.96, quality=0.90, allowed_drop=0.0096)
    kept = Parity(1e-7, 1e-6, 1.0, True, 1e-4, 1e-5, 100)
    records = [timed("inference_mode", "native", 20.0, idiomatic=True),
               timed("run", "onnxruntime", 5.0, parity=kept),
               timed("run", "onnxruntime", 2.0, recipe="int8-dynamic", parity=broke)]
    (summary,) = summarise(records)
    latency = decisions(summary)[0]
    assert latency.pick is not None and latency.pick.label == "onnxruntime cpu"
    ruled = [line for line in latency.ruled_out if "int8-dynamic" in line]
    assert ruled and "accuracy -0.060 (max -0.010)" in ruled[0]
    int8 = next(o for o in summary.options if o.recipe == "int8-dynamic")
    assert int8.p50_ms[1] == 2.0  # shown, not hidden, though it is ruled out


@pytest.fixture(scope="module")
def recipes_bench(tmp_path_factory):
    """bench of a weight-heavy ONNX model with the ONNX recipes, one round, tiny budgets."""
    from toolkit import executor
    from toolkit.plans import model as bench

    root = tmp_path_factory.mktemp("recipes")
    model = model_files.matmul_chain(root / "chain.onnx", layers=4)
    suite = bench.bench_suite(batch_sizes=(1, 8), threads=1, rounds=1,
                              recipes=["int8-dynamic", "int8-static", "fp16", "ort-offline"],
                              max_quality_drop="0.5").replace(budget=TINY)
    out = root / "out"
    outcome = executor.start(bench.plan_model(bench.ModelRequest(model), suite, out), out)
    return model, json.loads(outcome.results_path.read_text())["records"]


def test_int8_recipes_make_small_files_measured_under_their_own_label(recipes_bench):
    model, records = recipes_bench
    made = {r["recipe"]: r for r in records if r["phase"] == "export"}
    fp32 = model.stat().st_size
    for recipe in ("int8-dynamic", "int8-static"):
        assert made[recipe]["status"] == "ok", made[recipe]["reason"]
        assert made[recipe]["info"]["size_bytes"] < fp32 / 2  # weights in 8 bits, not 32
        timed = [r for r in records if r["recipe"] == recipe and r["phase"] == "infer"]
        assert timed and all(r["status"] == "ok" for r in timed)
        assert all(r["parity"]["rule"] == "quality" for r in timed)
        judged = next(r for r in records if r["recipe"] == recipe and r["phase"] == "parity")
        assert judged["parity"]["judged_on"].startswith("label agreement") or \
            judged["parity"]["metric"] == "r2"
        loads = [r for r in records if r["recipe"] == recipe and r["phase"] == "load"]
        assert loads[0]["info"]["artifact_bytes"] == made[recipe]["info"]["size_bytes"]


def test_int8_static_without_calibration_rows_is_judged_on_rows_it_did_not_see(recipes_bench):
    _, records = recipes_bench
    made = next(r for r in records if r["recipe"] == "int8-static" and r["phase"] == "export")
    assert made["info"]["judged_from"] == 32  # 64 generated rows: 32 calibrate, 32 judge
    assert any("calibrated on the first 32 of the 64 input rows" in w for w in made["warnings"])
    judged = next(r for r in records if r["recipe"] == "int8-static" and r["phase"] == "parity")
    assert judged["parity"]["rows"] == 32 and judged["info"]["rows"] == 32
    timed = [r for r in records if r["recipe"] == "int8-static" and r["phase"] == "infer"]
    assert all(r["parity"]["rows"] == 32 for r in timed)  # the measuring child skips them too
    dynamic = next(r for r in records if r["recipe"] == "int8-dynamic" and r["phase"] == "parity")
    assert dynamic["parity"]["rows"] == 64


def test_ort_offline_loads_the_optimised_file_without_optimising_again(recipes_bench):
    _, records = recipes_bench
    offline = [r for r in records if r["recipe"] == "ort-offline" and r["phase"] == "infer"]
    assert offline and all(r["status"] == "ok" for r in offline)
    assert all(r["settings"]["graph_optimization"] == "disable" for r in offline)
    assert all(r["parity"]["rule"] == "tolerance" and r["parity"]["passed"] for r in offline)
    assert any(r["recipe"] == "ort-offline" and r["phase"] == "load" for r in records)


def test_fp16_on_the_cpu_is_skipped_with_the_reason(recipes_bench):
    _, records = recipes_bench
    fp16 = [r for r in records if r["recipe"] == "fp16" and r["phase"] == "infer"]
    assert fp16 and all(r["status"] == "skipped" for r in fp16)
    assert all("fp16 is measured on CUDA" in r["reason"] for r in fp16)
    made = next(r for r in records if r["recipe"] == "fp16" and r["phase"] == "export")
    assert made["status"] == "ok"  # the file is made (and its accuracy known) all the same


def test_a_recipe_that_fails_is_never_timed_as_fp32(tmp_path):
    from toolkit.plans.steps import Context, Measure, derive_label
    from toolkit.suite import Case, parse_suite

    suite = parse_suite({"workloads": ["sklearn/digits-logreg"], "batch_sizes": [1]})
    case = Case("sklearn/digits-logreg", "onnxruntime", "cpu", "int8-static")
    built = [Record("digits-logreg", "sklearn", "export", runtime="onnxruntime",
                    info={"onnx": str(tmp_path / "model.onnx"), "inputs": "x.npz"})]
    failed = [Record("digits-logreg", "sklearn", "export", status="failed", recipe="int8-static",
                     reason="int8-static: ValueError: Failed to find proper ai.onnx domain")]
    context = Context(suite, tmp_path, {"b": built, derive_label(case.workload, case.recipe):
                                        failed})
    records = Measure(case, after="b").execute(context)
    assert [(r.status, r.recipe) for r in records] == [("skipped", "int8-static")]
    assert "no int8-static file: the recipe failed" in records[0].reason


def test_bad_recipe_flags_are_one_error_line(tmp_path):
    runner = CliRunner()
    model = str(model_files.relu(tmp_path / "r.onnx"))
    wide = tmp_path / "wide.npy"
    np.save(wide, np.ones((4, 9), np.float32))
    for args, needle in (
        (["--recipes", "int4"], "unknown recipe(s) int4"),
        (["--recipes", "int8-dynamic", "--max-quality-drop", "lots"], "--max-quality-drop"),
        (["--recipes", "int8-static", "--calibration-data", str(wide)],
         f"--calibration-data {wide}: array 'x' has shape (4, 9)"),
        (["--recipes", "xla"], "--recipes xla: applies to keras models"),
    ):
        result = runner.invoke(app, ["bench", model, *args, "--out", str(tmp_path / "o")],
                               terminal_width=300)
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines


def test_xla_and_torch_compile_record_their_compile_phase(tmp_path):
    """The native recipes: the first call compiles (its own phase), then timed like any
    variant, with the compiled model's outputs checked against the native ones."""
    wanted = [r for r, fw in (("xla", "keras"), ("torch-compile", "torch"))
              if missing_framework(fw) is None]
    if not wanted:
        pytest.skip("neither TensorFlow nor torch is installed")
    suite_file = tmp_path / "s.toml"
    workloads = [w for w, fw in (("keras/seed-dense", "keras"), ("torch/digits-mlp", "torch"))
                 if missing_framework(fw) is None]
    suite_file.write_text(
        f'workloads = {workloads!r}\nbatch_sizes = [1]\nproviders = ["cpu"]\nthreads = 1\n'
        f'rounds = 1\nrecipes = {wanted!r}\n[timing]\nwarmup = 1\nmin_iterations = 3\n'
        "min_seconds = 0.0\nmax_seconds = 0.2\n")
    out = tmp_path / "out"
    from typer.testing import CliRunner

    from toolkit.cli import app

    # in this process, so its children share the session's fork servers (TensorFlow and torch
    # imported once): the console script itself is run end to end in test_cli and test_resume
    result = CliRunner().invoke(app, ["run", "--suite", str(suite_file), "--out", str(out),
                                      "--history", str(tmp_path / "h.sqlite")])
    assert result.exit_code == 0, result.output[-3000:]
    records = json.loads((out / "results.json").read_text())["records"]
    for recipe in wanted:
        mine = [r for r in records if r["recipe"] == recipe]
        compiled = [r for r in mine if r["phase"] == "compile"]
        assert compiled and all(r["status"] == "ok" and r["seconds"] > 0 for r in compiled)
        timed = [r for r in mine if r["phase"] == "infer"]
        assert timed and all(r["status"] == "ok" for r in timed), timed
        assert all(r["parity"]["passed"] for r in timed)
        assert not any(r["idiomatic"] for r in timed)  # fp32's idiomatic call stays the baseline
    assert recipe in (out / "report.md").read_text()


def test_every_recipe_of_an_onnx_file_is_judged_by_the_same_rule(tmp_path):
    """A regression model benched as an ONNX file: each int8 recipe is judged by r2 against
    the file's own outputs, whichever recipe runs first (the reference is made once)."""
    from onnx import TensorProto, helper, numpy_helper

    from toolkit import executor
    from toolkit.plans import model as bench

    weight = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((16, 1)).astype(np.float32), "w")
    model = model_files.onnx_model(
        tmp_path / "reg.onnx", [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])], [weight])
    for order in (["int8-dynamic", "int8-static"], ["int8-static", "int8-dynamic"]):
        suite = bench.bench_suite(batch_sizes=(1,), threads=1, rounds=1,
                                  recipes=order).replace(budget=TINY)
        out = tmp_path / "-".join(order)
        outcome = executor.start(bench.plan_model(bench.ModelRequest(model), suite, out), out)
        judged = [r for r in outcome.records if r.phase == "parity" and r.parity is not None]
        assert {r.recipe for r in judged} == set(order)
        assert all(r.parity.rule == "quality" and r.parity.metric == "r2" for r in judged)
