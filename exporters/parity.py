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

import numpy as np

from toolkit.data import Task, labels_from_scores, quality
from toolkit.recipes import QualityRule
from toolkit.results import Parity

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
    if parity.verdict == "inconclusive":
        return f"outputs too small to judge (max |native| {parity.scale:.1e} < {TOO_SMALL:g})"
    return "" if parity.passed else "outputs differ beyond tolerance"


def judge_quality(native: np.ndarray, got: np.ndarray, task: Task, labels: np.ndarray | None,
                  rule: QualityRule, rtol: float = DEFAULT_RTOL,
                  atol: float = DEFAULT_ATOL) -> Parity:
    """A recipe that changes the arithmetic (int8, fp16), judged by its test quality: accuracy
    (or r2) on the labels where they are known, else against the native model's own outputs
    (whose quality is then 1 by definition); it passes when it loses at most what `rule`
    allows. The elementwise errors and label agreement are kept beside the verdict."""
    import dataclasses

    elementwise = compare(native, got, task, rtol, atol)
    ref = np.asarray(native).reshape(len(native), -1)
    out = np.asarray(got).reshape(len(got), -1)
    if ref.shape != out.shape or not np.all(np.isfinite(out)):
        return dataclasses.replace(elementwise, rule="quality", verdict="fail", passed=False)
    truth = labels if labels is not None else (
        native_labels if (native_labels := labels_from_scores(ref, task)) is not None
        else ref.reshape(len(ref)) if ref.shape[1] == 1 else None)
    if truth is None:  # multi-output regression without labels: the tolerances judge
        return elementwise
    metric, before = quality(ref, truth, task)
    _, after = quality(out, truth, task)
    allowed = rule.allowed(before)
    passed = before - after <= allowed + 1e-12
    return dataclasses.replace(
        elementwise, rule="quality", verdict="pass" if passed else "fail", passed=passed,
        metric=metric, native_quality=before, quality=after, allowed_drop=allowed)
