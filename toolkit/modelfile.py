"""A user's model file: what kind it is, whether it can be read, and (for ONNX) its signature.

Everything here runs in the parent before any child starts, so bad files end in one line that
names the file and the fix. Only `onnx` is imported; native files are opened by their runner.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.errors import BadInputError

KINDS = {
    ".onnx": "onnx",
    ".keras": "keras",
    ".pt": "torchscript",
    ".pt2": "torch_export",
    ".joblib": "sklearn",
    ".pkl": "sklearn",
    ".pickle": "sklearn",
}
FRAMEWORKS = {"onnx": "onnx", "keras": "keras", "torchscript": "torch", "torch_export": "torch",
              "sklearn": "sklearn"}
READABLE = (".onnx, .keras, .pt (TorchScript), .pt2 (torch.export), "
            ".joblib/.pkl (scikit-learn, with --trust-pickle)")


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: dims are ints (fixed), strings (named) or None (unknown)."""

    name: str
    dtype: str  # numpy dtype name, or the ONNX type text for non-tensors ("seq(map(...))")
    shape: tuple[int | str | None, ...]
    is_tensor: bool = True

    @property
    def batch_free(self) -> bool:
        return bool(self.shape) and not isinstance(self.shape[0], int)

    def describe(self) -> str:
        if not self.is_tensor:
            return f"{self.name}: {self.dtype}"
        dims = " x ".join("?" if d is None else str(d) for d in self.shape) or "scalar"
        return f"{self.name}: {self.dtype} [{dims}]"


@dataclass(frozen=True)
class ModelFile:
    path: Path
    kind: str

    @property
    def framework(self) -> str:
        return FRAMEWORKS[self.kind]

    @property
    def name(self) -> str:
        return self.path.stem


def open_model(path: Path, *, trust_pickle: bool = False) -> ModelFile:
    """Check that `path` is a model file deploybench can read; BadInputError otherwise."""
    if not path.exists():
        raise BadInputError(f"{path}: no such file; check the path")
    if not path.is_file():
        raise BadInputError(f"{path}: not a file; give a model file ({READABLE})")
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        raise BadInputError(
            f"{path}: unsupported extension {path.suffix or '(none)'!r}; deploybench reads "
            f"{READABLE}"
        )
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BadInputError(f"{path}: cannot be read ({exc.strerror})") from None
    if size == 0:
        raise BadInputError(f"{path}: the file is empty; re-export or re-copy the model")
    if kind == "sklearn" and not trust_pickle:
        raise BadInputError(
            f"{path}: loading a pickle runs code stored in the file; if you trust where it "
            "came from, pass --trust-pickle"
        )
    model = ModelFile(path, kind)
    if kind == "onnx":
        load_onnx(path)  # refuses text and truncated files now, not in a child later
    return model


def load_onnx(path: Path) -> Any:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise BadInputError(
            f"{path}: not a readable ONNX model ({type(exc).__name__}: {str(exc)[:120]}); the "
            "file may be truncated or not ONNX at all: export it again"
        ) from None
    if not model.graph.node or not model.graph.output:
        raise BadInputError(
            f"{path}: holds no ONNX graph (no nodes or outputs); the file may be truncated or "
            "not ONNX at all: export it again"
        )
    return model


def _spec(value: Any) -> TensorSpec:
    from onnx import helper

    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        return TensorSpec(value.name, _type_text(value.type), (), is_tensor=False)
    tensor = value.type.tensor_type
    dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
    dims: list[int | str | None] = []
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return TensorSpec(value.name, dtype, tuple(dims))


def _type_text(proto: Any) -> str:
    kind = proto.WhichOneof("value")
    if kind == "sequence_type":
        return f"seq({_type_text(proto.sequence_type.elem_type)})"
    if kind == "map_type":
        return f"map({_type_text(proto.map_type.value_type)})"
    if kind == "tensor_type":
        return "tensor"
    return kind or "unknown"


@dataclass(frozen=True)
class OnnxSummary:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opsets: dict[str, int]
    size_bytes: int
    operators: dict[str, int]
    ir_version: int
    producer: str

    @property
    def batch_free(self) -> bool:
        return all(spec.batch_free for spec in self.inputs)


def inspect_onnx(path: Path) -> OnnxSummary:
    model = load_onnx(path)
    initializers = {init.name for init in model.graph.initializer}
    operators: Counter[str] = Counter()
    stack = [model.graph]
    while stack:  # count operators in subgraphs (If, Loop, Scan) too
        graph = stack.pop()
        for node in graph.node:
            operators[f"{node.domain}::{node.op_type}" if node.domain else node.op_type] += 1
            for attr in node.attribute:
                stack += [attr.g] if attr.HasField("g") else []
                stack += list(attr.graphs)
    return OnnxSummary(
        inputs=tuple(_spec(v) for v in model.graph.input if v.name not in initializers),
        outputs=tuple(_spec(v) for v in model.graph.output),
        opsets={o.domain or "ai.onnx": o.version for o in model.opset_import},
        size_bytes=path.stat().st_size,
        operators=dict(operators.most_common()),
        ir_version=model.ir_version,
        producer=f"{model.producer_name} {model.producer_version}".strip(),
    )
