"""ONNX Runtime session settings in one place: the toolkit's runner, the export check and the
offline-optimised recipe all open their sessions through `session_options` and `open_session`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolkit.errors import BadInputError

OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


def session_options(
    threads: int, optimization: str, spinning: bool = True,
    optimized_model_path: Path | None = None,
) -> Any:
    """Options for a session on `threads` intra-op threads (one inter-op) at a graph optimisation
    level named as in OPTIMIZATION_LEVELS; `optimized_model_path` saves the optimised graph."""
    import onnxruntime as ort

    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if optimization not in levels:
        raise BadInputError(
            f"unknown graph optimisation level {optimization!r}; valid: "
            f"{', '.join(OPTIMIZATION_LEVELS)}"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = levels[optimization]
    options.log_severity_level = 3  # session errors only; provider load failures log anyway
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    return options


def open_session(
    source: Path | bytes, options: Any, providers: Sequence[str] = ("CPUExecutionProvider",),
) -> Any:
    """An InferenceSession on `source` (a file or the model's bytes), asking for `providers` in
    order; which of them it really runs on is `session.get_providers()`."""
    import onnxruntime as ort

    return ort.InferenceSession(
        str(source) if isinstance(source, Path) else source,
        sess_options=options,
        providers=list(providers),
    )
