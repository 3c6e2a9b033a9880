"""FLOPs per inference counted from an ONNX graph, and the machine's measured peak.

Counted: Conv, ConvTranspose, Gemm and MatMul (2 FLOPs per multiply-add, plus a bias add), and
element-wise operators (one FLOP per output element), and scikit-learn's linear models
(ai.onnx.ml LinearRegressor, LinearClassifier, Normalizer). Other default-domain operators
(reshapes, pooling, reductions) count 0, so the figure is a floor; a graph with any other
operator of another domain (tree ensembles) gets no figure rather than a wrong one. Shapes come
from ONNX shape inference with the batch dimension set to the batch size.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ELEMENTWISE = {
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Neg", "Abs", "Reciprocal", "Relu",
    "LeakyRelu", "PRelu", "Elu", "Selu", "Sigmoid", "HardSigmoid", "Tanh", "Erf", "Gelu",
    "Softplus", "HardSwish", "Clip", "Max", "Min", "Sum", "Mean", "Where", "Softmax",
    "LogSoftmax", "BatchNormalization",
}


def count(path: Path, batch_size: int) -> int | None:
    """FLOPs of one call on `batch_size` rows; None when shapes cannot be inferred."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    initializers = {i.name for i in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers or not value.type.HasField("tensor_type"):
            continue
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch_size
    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # a graph ONNX cannot infer: no figure rather than a wrong one
        return None
    shapes = _shapes(inferred)
    total = 0
    for node in inferred.graph.node:
        flops = _node_flops(node, shapes)
        if flops is None:
            return None
        total += flops
    return total


def _shapes(model: Any) -> dict[str, tuple[int, ...] | None]:
    found: dict[str, tuple[int, ...] | None] = {}
    values = [*model.graph.input, *model.graph.output, *model.graph.value_info]
    for value in values:
        if not value.type.HasField("tensor_type"):
            continue
        dims = value.type.tensor_type.shape.dim
        fixed = tuple(d.dim_value for d in dims if d.HasField("dim_value"))
        found[value.name] = fixed if len(fixed) == len(dims) else None
    for init in model.graph.initializer:
        found[init.name] = tuple(init.dims)
    return found


def _node_flops(node: Any, shapes: dict[str, tuple[int, ...] | None]) -> int | None:
    op = node.op_type
    if node.domain == "ai.onnx.ml":
        return _ml_node_flops(node, shapes)
    if node.domain not in ("", "ai.onnx"):
        return None  # an operator of unknown cost: no figure rather than a wrong one
    out = shapes.get(node.output[0]) if node.output else None
    if op in ("MatMul", "Gemm", "Conv", "ConvTranspose") or op in ELEMENTWISE:
        if out is None:
            return None
    else:
        return 0
    assert out is not None
    if op in ELEMENTWISE:
        return math.prod(out)
    first = shapes.get(node.input[0])
    second = shapes.get(node.input[1])
    if first is None or second is None:
        return None
    bias = math.prod(out) if len(node.input) > 2 and node.input[2] else 0
    if op == "MatMul":
        return 2 * math.prod(out) * first[-1]
    if op == "Gemm":
        trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
        inner = first[0] if trans_a else first[-1]
        return 2 * math.prod(out) * inner + bias
    kernel = math.prod(second[2:])
    if op == "Conv":  # weight [Cout, Cin/group, k...]: each output element sums Cin/g * k terms
        return 2 * math.prod(out) * second[1] * kernel + bias
    # ConvTranspose, weight [Cin, Cout/group, k...]: each input element scatters Cout/g * k
    return 2 * math.prod(first) * second[1] * kernel + bias


def _ml_node_flops(node: Any, shapes: dict[str, tuple[int, ...] | None]) -> int | None:
    """scikit-learn's linear models as exported by skl2onnx; tree ensembles compare rather than
    compute, so they (and any other ai.onnx.ml operator) get no figure."""
    if node.op_type in ("ZipMap", "Cast"):
        return 0
    first = shapes.get(node.input[0])
    if first is None:
        return None
    rows = first[0] if len(first) > 1 else 1
    if node.op_type in ("LinearRegressor", "LinearClassifier"):
        attrs = {a.name: a for a in node.attribute}
        coefficients = len(attrs["coefficients"].floats) if "coefficients" in attrs else 0
        intercepts = len(attrs["intercepts"].floats) if "intercepts" in attrs else 0
        return rows * (2 * coefficients + intercepts)
    if node.op_type == "Normalizer":
        return 2 * math.prod(first)  # a sum (or max) and a division per element
    return None


def flops_per_row(path: Path) -> int | None:
    """FLOPs per row, where the count is linear in the batch size (checked at 1 and 2 rows)."""
    one, two = count(path, 1), count(path, 2)
    return one if one is not None and two == 2 * one and one > 0 else None


def measure_peak(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of the best of `repeats` float32 `size` x `size` matrix products (numpy's BLAS)
    on `threads` threads."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        return _matmul_gflops(size, repeats)


def _matmul_gflops(size: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    a @ b  # warm the BLAS threads
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def cached_peak(cache: Path, machine_key: str, threads: int, refresh: bool = False) -> float:
    """The peak for this machine, measured once and kept in `cache` (a small JSON file)."""
    known: dict[str, float] = {}
    if cache.is_file():
        try:
            known = json.loads(cache.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            known = {}
    if refresh or machine_key not in known:
        known[machine_key] = measure_peak(threads)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(known, indent=1), encoding="utf-8")
        except OSError as exc:  # a read-only home: the figure stands, it is measured again later
            log.warning("the peak is not cached: %s cannot be written (%s); set XDG_CACHE_HOME "
                        "to a writable folder", cache, exc.strerror or exc)
    return float(known[machine_key])
