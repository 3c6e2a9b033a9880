"""What every exporter returns, and the checks every ONNX file must pass."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from toolkit.data import Task
from toolkit.errors import ExportFailedError
from toolkit.modelfile import TensorSpec


@dataclass(frozen=True)
class Exported:
    """One ONNX file written by one exporter method."""

    path: Path
    method: str  # e.g. "skl2onnx", "tf2onnx.from_function", "torch.onnx dynamo"
    exporter_version: str
    opset: int
    size_bytes: int
    seconds: float
    input_name: str
    score_output: int  # index of the output that parity compares with the native scores
    batch_free: bool


class Exporter(Protocol):
    """A framework's exporter: one or more methods, tried in order until one passes parity, and
    what the framework's model says about itself (its input, the outputs parity compares)."""

    methods: tuple[str, ...]

    def export(
        self, model: Any, sample: Any, path: Path, opset: int, method: str,
        require_free_batch: bool = True,
    ) -> Exported:
        """Write `path` with `method`; ExportFailedError with the exporter's words if it fails."""

    def scores(self, model: Any, x: np.ndarray) -> np.ndarray:
        """The native model's numeric outputs on `x` that its ONNX export must reproduce."""

    def task(self, model: Any, scores: np.ndarray) -> Task:
        """How to compare outputs: labels are compared too where the model is a classifier."""

    def input_spec(self, model: Any) -> TensorSpec | None:
        """The model's one input as the model declares it; None where it does not say (torch)."""


def task_from_scores(scores: np.ndarray) -> Task:
    """A classifier's scores have one column per class; anything else is compared as numbers."""
    return "multiclass" if scores.ndim == 2 and scores.shape[1] > 1 else "regression"


def distribution_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def timed_export(
    write: Callable[[], None], path: Path, *, method: str, distribution: str, score_output: int,
    require_free_batch: bool = True,
) -> Exported:
    """Run `write` (which writes `path`), time it, then check the file (see `check_onnx`)."""
    start = time.perf_counter()
    try:
        write()
    except Exception as exc:  # the exporter's own words are the useful part
        raise ExportFailedError(f"{method} failed: {explain(exc)}") from exc
    seconds = time.perf_counter() - start
    opset, input_name, batch_free = check_onnx(path, require_free_batch)
    return Exported(
        path=path,
        method=method,
        exporter_version=distribution_version(distribution),
        opset=opset,
        size_bytes=path.stat().st_size,
        seconds=seconds,
        input_name=input_name,
        score_output=score_output,
        batch_free=batch_free,
    )


def check_onnx(path: Path, require_free_batch: bool = True) -> tuple[int, str, bool]:
    """onnx.checker on the file; returns (default-domain opset, first input name, batch free).

    With `require_free_batch` (deploybench's own exports, which must serve any batch size) a
    fixed batch dimension is refused; a user's model may have one, and is measured at that size.
    """
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise ExportFailedError(
            f"{path}: onnx.checker rejected the export: {first_line(exc)}"
        ) from exc
    model = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    first = model.graph.input[0]
    dims = first.type.tensor_type.shape.dim
    batch_free = bool(dims) and not dims[0].HasField("dim_value")
    if require_free_batch and not batch_free:
        raise ExportFailedError(
            f"{path}: the export has a fixed batch dimension on input {first.name!r}; "
            "the exporter must be given a dynamic batch axis"
        )
    return opset, first.name, batch_free


def first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def explain(exc: BaseException) -> str:
    """The root cause first (exporters wrap it in long messages), then what it broke."""
    root = exc
    while (root.__cause__ or root.__context__) is not None:
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
    if root is exc:
        return f"{type(exc).__name__}: {first_line(exc)}"
    return f"{type(root).__name__}: {first_line(root)} (in: {first_line(exc, 100)})"
