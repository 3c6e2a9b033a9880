"""The one executor: steps start once their inputs have records, a plan can grow while it runs,
what a task left unsaid becomes `failed` by the step's own rule, and the exit code says
whether anything was measured."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pytest

from toolkit import executor
from toolkit.backends import Finished
from toolkit.backends.local import LocalBackend
from toolkit.plans import Plan
from toolkit.plans.run import plan_suite
from toolkit.plans.steps import Context, Measure, StepDefaults, fill_missing
from toolkit.results import LOST, Record, ResultsFile, read_results, read_samples
from toolkit.stats import Stats
from toolkit.suite import Case, Suite, parse_suite

SUITE = Suite(name="t", workloads=("sklearn/toy",), batch_sizes=(1, 2), threads=1)


@dataclass(frozen=True)
class Toy(StepDefaults):
    """A step that needs others and says what it saw of them."""

    label: str
    after: tuple[str, ...] = ()
    timed: bool = True
    seen: list = field(default_factory=list, compare=False)
    ms: float = 1.0  # its timing's median

    @property
    def what(self) -> str:
        return self.label

    @property
    def needs(self) -> tuple[str, ...]:
        return self.after

    def expects(self, suite: Suite) -> list[Record]:
        return [Record("toy", "sklearn", "infer", batch_size=b) for b in suite.batch_sizes]

    def execute(self, context: Context) -> list[Record]:
        self.seen.append((self.label, sorted(context.done)))
        stats = Stats.from_ms([self.ms, self.ms * 1.1, self.ms * 0.9]) if self.timed else None
        return [Record("toy", "sklearn", "infer", batch_size=1, stats=stats,
                       status="ok" if self.timed else "skipped", reason="" if self.timed
                       else "not here")]


def test_a_step_starts_after_its_inputs_and_sees_only_their_records(tmp_path):
    seen: list = []
    steps = [Toy("b", ("a",), seen=seen), Toy("a", seen=seen), Toy("c", ("b",), seen=seen)]
    outcome = executor.start(Plan(SUITE, steps, {"command": "run"}), tmp_path / "out")
    assert [label for label, _ in seen] == ["a", "b", "c"]  # plan order, once inputs are in
    assert dict(seen) == {"a": [], "b": ["a"], "c": ["b"]}
    assert {r.step for r in outcome.records} == {"a", "b", "c"}
    assert outcome.exit_code == 0


def test_a_plan_grows_from_the_records_of_finished_steps(tmp_path):
    seen: list = []

    def grow(done):  # a search: one more trial after each, up to three
        trials = [label for label in done if label.startswith("trial")]
        return [Toy(f"trial {len(trials) + 1}", seen=seen)] if len(trials) < 3 else []

    ticks: list[tuple[int, int]] = []
    plan = Plan(SUITE, [Toy("first", seen=seen)], {"command": "run"}, grow=grow)
    outcome = executor.start(plan, tmp_path / "out",
                             progress=lambda done, total, what: ticks.append((done, total)))
    assert [label for label, _ in seen] == ["first", "trial 1", "trial 2", "trial 3"]
    assert ticks[-1] == (4, 4) and ticks[0][1] < 4  # the total grew with the plan
    assert len({r.step for r in outcome.records}) == 4


def test_a_run_that_measured_nothing_exits_1_and_says_why(tmp_path):
    outcome = executor.start(Plan(SUITE, [Toy("a", timed=False)], {"command": "run"}),
                             tmp_path / "out")
    assert outcome.exit_code == 1 and "not here" in outcome.why_nothing
    some = executor.start(Plan(SUITE, [Toy("a", timed=False), Toy("b")], {"command": "run"}),
                          tmp_path / "out2")
    assert some.exit_code == 0


def test_what_a_crashed_task_did_not_make_becomes_failed_by_the_steps_rule(tmp_path):
    class Crashing(LocalBackend):
        def wait(self):
            step, _ = self._started.pop(0)
            return [Finished(step, [], "the Ray task failed: worker died")]

    outcome = executor.start(Plan(SUITE, [Toy("a")], {"command": "run"}), tmp_path / "out",
                             backend=Crashing())
    assert [(r.status, r.batch_size, r.step) for r in outcome.records] == [
        ("failed", 1, "a"), ("failed", 2, "a")]
    assert "worker died" in outcome.records[0].reason and outcome.exit_code == 1


def test_a_step_lost_with_its_machine_runs_again_on_resume_and_samples_stay_with_theirs(
        tmp_path):
    """A task that died with its node (records marked LOST, as the cluster backend marks them)
    is made again by --resume; the steps after it keep their own raw samples."""
    class NodeDiesUnderB(LocalBackend):
        def __init__(self, dies: bool) -> None:
            super().__init__()
            self.dies = dies

        def wait(self):
            step, context = self._started.pop(0)
            if step.label == "b" and self.dies:
                made = fill_missing(step.expects(context.suite), [], "the Ray task failed")
                return [Finished(step, [dataclasses.replace(r, info={LOST: True})
                                        for r in made])]
            return [Finished(step, step.execute(context))]

    plan = Plan(SUITE, [Toy("a", ms=1.0), Toy("b", ms=2.0), Toy("c", ms=3.0)],
                {"command": "run"})
    out = tmp_path / "out"
    first = executor.start(plan, out, backend=NodeDiesUnderB(dies=True))
    assert [r.status for r in first.records if r.step == "b"] == ["failed", "failed"]
    resumed = executor.execute(plan, ResultsFile.reopen(out / "results.json"),
                               backend=NodeDiesUnderB(dies=False))
    assert [(r.step, r.status) for r in resumed.records] == [("a", "ok"), ("c", "ok"),
                                                              ("b", "ok")]
    run, records = read_results(out / "results.json")
    samples = read_samples(out / "results.json")
    medians = {r.step: float(np.median(samples[str(i)])) for i, r in enumerate(records)}
    assert medians == pytest.approx({"a": 1.0, "b": 2.0, "c": 3.0})
    # a lost step not in the plan any more (its node not back) keeps its failed records
    again = ResultsFile.reopen(out / "results.json")
    again.append([dataclasses.replace(r, step="gone", status="failed", info={LOST: True},
                                      stats=None) for r in records[:1]])
    executor.execute(plan, again, backend=NodeDiesUnderB(dies=False))
    assert [r.step for r in read_results(out / "results.json")[1]].count("gone") == 1


def test_fill_missing_keeps_what_was_made_and_fails_only_the_rest():
    expected = Measure(Case("sklearn/toy", "onnxruntime", "cpu"), round=2).expects(SUITE)
    made = [Record("toy", "sklearn", "infer", batch_size=1, variant="run")]
    filled = fill_missing(expected, made, "killed")
    assert [(r.batch_size, r.status, r.round) for r in filled] == [
        (1, "ok", None), (2, "failed", 2)]


def test_a_variant_that_failed_early_does_not_hide_one_never_timed():
    """A child that named two variants in its first calls, failed one at every batch size and
    died while timing the other: the other gets a failed record at each size; a size skipped
    for all variants (a fixed batch) stays as the child said."""
    expected = Measure(Case("sklearn/toy", "onnxruntime", "cpu")).expects(SUITE)
    made = [Record("toy", "sklearn", "first_inference", variant="run"),
            Record("toy", "sklearn", "first_inference", variant="iobinding", status="failed"),
            *(Record("toy", "sklearn", "infer", batch_size=b, variant="iobinding",
                     status="failed", reason="its first call failed") for b in (1, 2))]
    filled = fill_missing(expected, made, "killed")
    added = [(r.variant, r.batch_size, r.reason) for r in filled[len(made):]]
    assert added == [("run", 1, "killed"), ("run", 2, "killed")]
    fixed = [*made[:2], Record("toy", "sklearn", "infer", batch_size=1, variant="run"),
             Record("toy", "sklearn", "infer", batch_size=2, variant="run", status="skipped")]
    assert [(r.variant, r.batch_size) for r in fill_missing(expected, fixed, "killed")[4:]] \
        == [("iobinding", 1)]


def test_later_rounds_need_the_first_and_run_where_it_ran():
    suite = parse_suite({"workloads": ["sklearn/seed-linreg"], "providers": ["cpu"],
                         "rounds": 3, "recipes": ["fp32", "ort-offline"]})
    measures = {s.label: s for s in plan_suite(suite).steps if isinstance(s, Measure)}
    second = measures["sklearn/seed-linreg onnxruntime cpu #2"]
    assert second.needs == ("sklearn/seed-linreg build", "sklearn/seed-linreg onnxruntime cpu #1")
    assert second.pin == "sklearn/seed-linreg onnxruntime cpu #1"
    offline = measures["sklearn/seed-linreg onnxruntime cpu ort-offline #1"]
    assert offline.pin == "sklearn/seed-linreg ort-offline"  # measured where it was made
    assert "sklearn/seed-linreg ort-offline" in offline.needs


def test_a_step_whose_input_no_step_makes_is_a_planners_bug(tmp_path):
    with pytest.raises(RuntimeError, match="inputs no step makes"):
        executor.start(Plan(SUITE, [Toy("a", ("nowhere",))], {"command": "run"}),
                       tmp_path / "out")
