"""ONNX Runtime session settings in one place, for the runner, the export check and a recipe.

The toolkit's runner, the export check and the offline-optimised recipe all open their sessions
through `session_options` and `open_session`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolkit.errors import BadInputError

OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
# ONNX Runtime's session options beyond the threads, the graph optimisation level and
# spinning, with their defaults first: the CPU memory arena (memory kept between calls) and
# the memory pattern (a call's allocations planned from the first). Not the execution mode:
# onnxruntime 1.31 reads a session made with ORT_PARALLEL back as sequential (its maintainers
# call the parallel mode deprecated, onnxruntime#11435), so it would change nothing.
SESSION_CHOICES: dict[str, tuple[Any, ...]] = {
    "memory_arena": (True, False),
    "memory_pattern": (True, False),
}


def check_session(session: Any, where: str = "session") -> dict[str, Any]:
    """`session` (a mapping of SESSION_CHOICES' names) checked: BadInputError naming `where`,
    the name or value and the choices."""
    checked = dict(session or {})
    for name, value in checked.items():
        if name not in SESSION_CHOICES:
            raise BadInputError(f"{where}: unknown ONNX Runtime session option {name!r}; valid: "
                                f"{', '.join(SESSION_CHOICES)}")
        if value not in SESSION_CHOICES[name] or type(value) is not type(
                SESSION_CHOICES[name][0]):
            raise BadInputError(f"{where}: {name} = {value!r}; give one of "
                                f"{', '.join(map(_toml, SESSION_CHOICES[name]))}")
    return checked


def parse_session(given: Sequence[str] | None, flag: str = "--session"
                  ) -> tuple[tuple[str, Any], ...] | None:
    """`--session memory_arena=false` (repeatable) as sorted (name, value) pairs; None where
    none was given; BadInputError naming the text and the choices."""
    if not given:
        return None
    chosen: dict[str, Any] = {}
    for text in given:
        name, _, value = text.partition("=")
        truth = {"true": True, "on": True, "false": False, "off": False}.get(
            value.strip().lower())
        if name.strip() not in SESSION_CHOICES or truth is None:
            raise BadInputError(f"{flag} {text}: give NAME=true or NAME=false, NAME one of "
                                f"{', '.join(SESSION_CHOICES)}")
        if name.strip() in chosen:
            raise BadInputError(f"{flag} {text}: {name.strip()} is given twice; give it once")
        chosen[name.strip()] = truth
    return tuple(sorted(chosen.items()))


def _toml(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else f'"{value}"'


def session_options(
    threads: int, optimization: str, spinning: bool = True,
    optimized_model_path: Path | None = None, session: Any = (),
) -> Any:
    """Options for a session on `threads` intra-op threads (one inter-op) at a graph optimisation
    level named as in OPTIMIZATION_LEVELS, with `session`'s choices of SESSION_CHOICES (pairs
    or a mapping; the rest at their defaults); `optimized_model_path` saves the optimised
    graph."""
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
    chosen = check_session(dict(session))
    options.enable_cpu_mem_arena = chosen.get("memory_arena", True)
    options.enable_mem_pattern = chosen.get("memory_pattern", True)
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
