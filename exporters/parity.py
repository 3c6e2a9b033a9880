"""Parity: does the ONNX model compute what the native model computes, on the same rows?

The rule is numpy.allclose's, made relative to the outputs' scale:
|onnx - native| <= atol * scale + rtol * |native|, where scale = max |native|. With the
defaults (rtol 1e-4, atol 1e-5: float32 arithmetic in another order) a model whose outputs are
probabilities is held to about 1e-5, one whose outputs are in the thousands to about 1e-2.
Outputs whose scale is below TOO_SMALL cannot be judged: a randomly initialised network whose
outputs are about 1e-9 would pass any absolute tolerance, so the verdict is `inconclusive`, never
a silent pass. Relative errors are only taken where |native| > atol * scale.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from toolkit.data import Task, labels_from_scores, quality
from toolkit.recipes import QualityRule
from toolkit.results import Parity
from toolkit.stats import mcnemar_p, rows_to_show, wilson_bounds

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-5
TOO_SMALL = 1e-6  # largest |native| output below which nothing can be judged


def compare(
    native: np.ndarray,
    onnx: np.ndarray,
    task: Task,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
) -> Parity:
    """Compare the native scores with the ONNX scores, elementwise and by predicted label."""
    ref = np.asarray(native, dtype=np.float64).reshape(len(native), -1)
    got = np.asarray(onnx, dtype=np.float64).reshape(len(onnx), -1)
    if ref.shape != got.shape:
        return Parity(max_abs=float("inf"), max_rel=float("inf"), label_agreement=None,
                      passed=False, rtol=rtol, atol=atol, rows=len(ref), verdict="fail")
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    diff = np.abs(ref - got)
    floor = atol * scale
    big = np.abs(ref) > floor
    max_rel = float((diff[big] / np.abs(ref[big])).max()) if big.any() else 0.0
    native_labels = labels_from_scores(ref, task)
    onnx_labels = labels_from_scores(got, task)
    agreement = (
        None if native_labels is None else float(np.mean(native_labels == onnx_labels))
    )
    within = bool(np.all(diff <= floor + rtol * np.abs(ref)))
    finite = bool(np.all(np.isfinite(got)))
    verdict = ("fail" if not finite else "inconclusive" if scale < TOO_SMALL
               else "pass" if within else "fail")
    return Parity(
        max_abs=float(diff.max()) if diff.size else 0.0,
        max_rel=max_rel,
        label_agreement=agreement,
        passed=verdict == "pass",
        rtol=rtol,
        atol=atol,
        rows=len(ref),
        verdict=verdict,
        scale=scale,
    )


def explain(parity: Parity) -> str:
    """Why a verdict is not a pass, in words, for a record's reason."""
    if parity.why:
        return "" if parity.passed else parity.why
    if parity.verdict == "inconclusive":
        return f"outputs too small to judge (max |native| {parity.scale:.1e} < {TOO_SMALL:g})"
    return "" if parity.passed else "outputs differ beyond tolerance"


MIN_REGRESSION_ROWS = 30  # fewer rows than this cannot tell a regressor's r2 apart
SIGNIFICANT = 0.05  # McNemar's p below which an accuracy drop is real


def judge_quality(native: np.ndarray, got: np.ndarray, task: Task, labels: np.ndarray | None,
                  rule: QualityRule, rtol: float = DEFAULT_RTOL,
                  atol: float = DEFAULT_ATOL) -> Parity:
    """A recipe that changes the arithmetic (int8, fp16), judged on the held-out rows with the
    sampling error of so many rows counted.

    Classifiers, two criteria that both decide:
    - the share of rows whose label the recipe kept (agreement with the native model): its
      one-sided 95% Wilson bounds against 1 - the allowed drop. This catches a recipe that flips
      10% of the labels, half of them wrong-to-right, which leaves the accuracy unchanged.
    - where true labels are known (`labels`; a workload with random labels passes none), the
      accuracy change by McNemar's exact test on the rows only one of the two got right: a drop
      beyond the allowed one fails only where it is significant, so one flip in 100 rows does
      not decide.
    `pass` where the agreement's lower bound reaches the share and the accuracy did not fall
    significantly beyond the allowance; `fail` where the upper bound is below the share or the
    accuracy fell; else `inconclusive`, with the rows it would take (never a silent pass).

    Regressors: r2 (on the labels, else on the native outputs, where it starts at 1) may fall by
    the allowed drop, and the largest error may be that share of the native outputs' range (of
    their size, where they are constant); fewer than MIN_REGRESSION_ROWS rows are
    `inconclusive`. No rows at all are `inconclusive` too.
    """
    if len(native) == 0 or len(got) == 0:  # nothing left to judge (e.g. one calibration row)
        return Parity(max_abs=0.0, max_rel=0.0, label_agreement=None, passed=False, rtol=rtol,
                      atol=atol, rows=0, verdict="inconclusive", rule="quality",
                      why="no rows to judge the recipe on: give more with --input-data")
    elementwise = dataclasses.replace(compare(native, got, task, rtol, atol), rule="quality")
    ref = np.asarray(native, dtype=np.float64).reshape(len(native), -1)
    out = np.asarray(got, dtype=np.float64).reshape(len(got), -1)
    if ref.shape != out.shape or not np.all(np.isfinite(out)):
        return dataclasses.replace(elementwise, verdict="fail", passed=False,
                                   why="outputs of another shape or not finite")
    if task == "regression":
        if ref.shape[1] != 1:  # several outputs: the tolerances judge
            return dataclasses.replace(elementwise, rule="tolerance")
        return _judge_regressor(elementwise, ref[:, 0], out[:, 0], labels, rule)
    return _judge_classifier(elementwise, ref, out, task, labels, rule)


def _judge_classifier(parity: Parity, ref: np.ndarray, out: np.ndarray, task: Task,
                      labels: np.ndarray | None, rule: QualityRule) -> Parity:
    before_labels, after_labels = labels_from_scores(ref, task), labels_from_scores(out, task)
    assert before_labels is not None and after_labels is not None
    rows = len(ref)
    kept = int(np.sum(before_labels == after_labels))
    needed = 1.0 - rule.allowed(1.0)
    low, high = wilson_bounds(kept, rows)
    evidence = {"agreement_low": low, "agreement_high": high, "agreement_needed": needed,
                "judged_on": "label agreement"}
    accuracy_fell = False
    if labels is not None:
        truth = np.asarray(labels).reshape(rows).astype(np.int64)
        right_before, right_after = before_labels == truth, after_labels == truth
        lost = int(np.sum(right_before & ~right_after))
        gained = int(np.sum(~right_before & right_after))
        before, after = float(right_before.mean()), float(right_after.mean())
        allowed = rule.allowed(before)
        p_drop = mcnemar_p(lost, gained)
        accuracy_fell = before - after > allowed + 1e-12 and p_drop < SIGNIFICANT
        evidence.update(metric="accuracy", native_quality=before, quality=after,
                        allowed_drop=allowed, p_drop=p_drop,
                        judged_on="label agreement and accuracy (McNemar)")
    else:
        evidence.update(metric="agreement", native_quality=1.0, quality=kept / rows,
                        allowed_drop=1.0 - needed)
    flips = rows - kept
    if accuracy_fell:
        verdict = "fail"
        why = (f"accuracy fell {evidence['native_quality'] - evidence['quality']:.3f}, beyond "
               f"the allowed {evidence['allowed_drop']:.3f}, and McNemar's test finds the drop "
               f"real (p {evidence['p_drop']:.3g})")
    elif needed >= 1:  # no label may change: no sampling argument, the rows seen decide
        verdict = "pass" if flips == 0 else "fail"
        why = "" if flips == 0 else f"{flips} of {rows} labels changed; none may (allowed drop 0)"
    elif high < needed:
        verdict = "fail"
        why = (f"{flips} of {rows} labels changed: at most {high:.1%} kept (95% bound), "
               f"{needed:.1%} needed")
    elif low >= needed:
        verdict, why = "pass", ""
    else:
        verdict = "inconclusive"
        more = rows_to_show(needed, kept / rows)
        advice = (f"about {more:,} rows changing as few would show it (--input-data), or allow "
                  "more (--max-quality-drop)" if more is not None else
                  f"{kept / rows:.1%} kept here is not above it: more rows alike would not "
                  "show it")
        why = (f"{flips} of {rows} labels changed: {rows} rows show at least {low:.1%} kept "
               f"(95% bound), {needed:.1%} needed; {advice}")
    return dataclasses.replace(parity, verdict=verdict, passed=verdict == "pass", why=why,
                               **evidence)


def _judge_regressor(parity: Parity, ref: np.ndarray, out: np.ndarray,
                     labels: np.ndarray | None, rule: QualityRule) -> Parity:
    truth = ref if labels is None else np.asarray(labels, dtype=np.float64).reshape(len(ref))
    _, before = quality(ref, truth, "regression")
    _, after = quality(out, truth, "regression")
    allowed = rule.allowed(before)
    spread = float(np.ptp(ref)) or float(np.abs(ref).max())  # a constant: its size
    error = float(np.abs(out - ref).max())
    worst = error / spread if spread > 0 else (0.0 if error == 0 else float("inf"))
    share = rule.allowed(1.0)
    evidence = {"metric": "r2", "native_quality": before, "quality": after,
                "allowed_drop": allowed, "max_error_share": worst,
                "judged_on": "r2 and the largest error over the outputs' range"}
    if before - after > allowed + 1e-12:
        verdict, why = "fail", f"r2 fell {before - after:.3f}, beyond the allowed {allowed:.3f}"
    elif worst > share:
        verdict = "fail"
        why = f"the largest error is {worst:.2%} of the outputs' range, beyond {share:.2%}"
    elif len(ref) < MIN_REGRESSION_ROWS:
        verdict = "inconclusive"
        why = f"{len(ref)} rows cannot tell r2 apart; give {MIN_REGRESSION_ROWS} or more"
    else:
        verdict, why = "pass", ""
    return dataclasses.replace(parity, verdict=verdict, passed=verdict == "pass", why=why,
                               **evidence)
