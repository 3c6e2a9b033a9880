"""Parity: does the ONNX model compute what the native model computes, on the same rows?

Default tolerances are numpy.allclose's rule |onnx - native| <= atol + rtol * |native| with
rtol 1e-4 and atol 1e-5 (float32 arithmetic in a different order); override them per suite.
Relative error is only taken where |native| > atol, so values near zero do not blow it up.
"""

from __future__ import annotations

import numpy as np

from toolkit.data import Task, labels_from_scores
from toolkit.results import Parity

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-5


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
                      passed=False, rtol=rtol, atol=atol, rows=len(ref))
    diff = np.abs(ref - got)
    big = np.abs(ref) > atol
    max_rel = float((diff[big] / np.abs(ref[big])).max()) if big.any() else 0.0
    native_labels = labels_from_scores(ref, task)
    onnx_labels = labels_from_scores(got, task)
    agreement = (
        None if native_labels is None else float(np.mean(native_labels == onnx_labels))
    )
    passed = bool(np.all(np.isfinite(got)) and np.all(diff <= atol + rtol * np.abs(ref)))
    return Parity(
        max_abs=float(diff.max()) if diff.size else 0.0,
        max_rel=max_rel,
        label_agreement=agreement,
        passed=passed,
        rtol=rtol,
        atol=atol,
        rows=len(ref),
    )
