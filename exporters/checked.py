"""Export with parity: a framework's exporter methods in order, the first that passes kept.

A method passes when ONNX Runtime loads its file and its outputs match the native model's.

Each method writes its own file; the kept one is renamed to the target, the others removed. A
method whose file ONNX Runtime cannot load, or whose parity fails, is recorded with why, and the
next method is tried. Like every exporter module it uses none of the toolkit's runners or plans:
its session comes from `exporters.session`, as the runner's does.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from exporters.base import Exported, Exporter, first_line
from exporters.parity import DEFAULT_ATOL, DEFAULT_RTOL, compare
from exporters.session import open_session, session_options
from toolkit.data import Task
from toolkit.errors import ExportFailedError
from toolkit.results import Parity


@dataclass(frozen=True)
class CheckedExport:
    """What came of exporting one model: the kept file (None when no method exported), its
    parity, its ONNX outputs on the parity rows, and what went wrong with the methods before."""

    exported: Exported | None
    parity: Parity | None
    onnx_scores: np.ndarray | None
    attempts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExportSettings:
    """The opset to export to, the parity tolerances, and the threads of the checking session."""

    opset: int = 18
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    threads: int = 1


def export_with_parity(
    exporter: Exporter, model: Any, x: np.ndarray, native_scores: np.ndarray, task: Task,
    target: Path, settings: ExportSettings, *, require_free_batch: bool,
) -> CheckedExport:
    """Export `model` to `target`: the first method that passes parity on `x`, else the last
    that exported and loaded (its failed parity is the verdict)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    attempts: list[str] = []
    best: CheckedExport | None = None
    candidates = {m: target.with_name(f"{target.stem}.{m.replace(' ', '-')}.onnx")
                  for m in exporter.methods}
    for method, candidate in candidates.items():
        try:
            exported = exporter.export(model, x[:4], candidate, settings.opset, method,
                                       require_free_batch=require_free_batch)
        except ExportFailedError as exc:
            attempts.append(str(exc))
            continue
        try:
            scores = onnx_scores(exported, x, settings.threads)
        except Exception as exc:  # ORT refuses the file: an exporter gap like any other
            attempts.append(f"{method}: ONNX Runtime cannot run the export "
                            f"({type(exc).__name__}: {first_line(exc, 200)})")
            continue
        parity = compare(native_scores, scores, task, settings.rtol, settings.atol)
        best = CheckedExport(exported, parity, scores)
        if parity.passed:
            break
        attempts.append(f"{method}: parity {parity.verdict} (max abs error "
                        f"{parity.max_abs:.3g})")
    for candidate in candidates.values():  # keep one file: the chosen one, under its final name
        if best is not None and best.exported is not None and candidate == best.exported.path:
            os.replace(candidate, target)
        else:
            candidate.unlink(missing_ok=True)
    if best is None or best.exported is None:
        return CheckedExport(None, None, None, attempts)
    return dataclasses.replace(best, exported=dataclasses.replace(best.exported, path=target),
                               attempts=attempts)


def onnx_scores(exported: Exported, x: np.ndarray, threads: int) -> np.ndarray:
    """The exported file's parity output on `x`, from a CPU session of ONNX Runtime."""
    session = open_session(exported.path, session_options(threads, "all"))
    outputs = session.run(None, {exported.input_name: x})
    return np.asarray(outputs[exported.score_output])
