"""Plans: builds first, then the rounds of every case round-robin; later rounds of a case that
could not run at all are not started again."""

from __future__ import annotations

from toolkit.plans.run import plan_suite
from toolkit.plans.steps import Build, Context, Measure
from toolkit.results import Record
from toolkit.suite import Case, parse_suite


def test_rounds_are_scheduled_round_robin_across_cases():
    suite = parse_suite({"workloads": ["sklearn/seed-linreg", "sklearn/digits-logreg"],
                         "providers": ["cpu"], "rounds": 3})
    labels = [step.label for step in plan_suite(suite).steps]
    assert labels[:2] == ["sklearn/seed-linreg build", "sklearn/digits-logreg build"]
    cases = ["sklearn/seed-linreg native_sklearn cpu", "sklearn/seed-linreg onnxruntime cpu",
             "sklearn/digits-logreg native_sklearn cpu", "sklearn/digits-logreg onnxruntime cpu"]
    assert labels[2:] == [f"{case} #{r}" for r in (1, 2, 3) for case in cases]
    assert len(set(labels)) == len(labels)  # each step's label names it alone
    measures = [s for s in plan_suite(suite).steps if isinstance(s, Measure)]
    assert all(s.after == f"{s.case.workload} build" for s in measures)
    assert sum(isinstance(s, Build) for s in plan_suite(suite).steps) == 2


def test_a_case_skipped_in_round_one_is_not_started_again(tmp_path):
    suite = parse_suite({"workloads": ["sklearn/seed-linreg"], "providers": ["cuda"],
                         "rounds": 2})
    case = Case("sklearn/seed-linreg", "onnxruntime", "cuda")
    skipped = [Record("seed-linreg", "sklearn", "infer", status="skipped", runtime="onnxruntime",
                      provider="cuda", batch_size=1, reason="CUDAExecutionProvider not usable")]
    context = Context(suite, tmp_path, {f"{case.label} #1": skipped})
    assert Measure(case, after="sklearn/seed-linreg build", round=2).execute(context) == []
    assert not (tmp_path / "logs").exists()  # no child was started


def test_a_failed_export_still_hands_the_native_files_to_the_native_cases():
    from toolkit.plans.steps import Sources

    failed = Record("noexp", "torch", "export", status="failed", reason="dynamo failed",
                    info={"artifact": "model.pt", "inputs": "inputs.npz"})
    sources = Sources.from_records([failed])
    assert (sources.native, sources.inputs, sources.onnx) == ("model.pt", "inputs.npz", None)
