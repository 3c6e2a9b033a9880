"""Small model files the bring-your-own-model tests build themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def onnx_model(path: Path, nodes, inputs, outputs, initializers=()) -> Path:
    from onnx import helper

    graph = helper.make_graph(nodes, path.stem, inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path.write_bytes(model.SerializeToString())
    return path


def relu(path: Path, batch="N", features=4) -> Path:
    from onnx import TensorProto, helper

    return onnx_model(path, [helper.make_node("Relu", ["x"], ["y"])],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, features])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, features])])


def two_inputs(path: Path) -> Path:
    """x: float32 [N, seq] and ids: int64 [N, seq]; y = x + float(ids)."""
    from onnx import TensorProto, helper

    return onnx_model(
        path,
        [helper.make_node("Cast", ["ids"], ["f"], to=TensorProto.FLOAT),
         helper.make_node("Add", ["f", "x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "seq"]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", "seq"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "seq"])],
    )


def zipmap_classifier(path: Path) -> Path:
    """A scikit-learn classifier exported with skl2onnx's default ZipMap output."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x, y = iris()
    model = to_onnx(LogisticRegression(max_iter=500).fit(x, y), x[:1])
    path.write_bytes(model.SerializeToString())
    return path


def iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return x.astype(np.float32), y


def joblib_classifier(path: Path) -> Path:
    import joblib
    from sklearn.linear_model import LogisticRegression

    x, y = iris()
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), path)
    return path


def matmul_chain(path: Path, layers: int, width: int = 256, seed: int = 0) -> Path:
    """x [N, width] through `layers` MatMul + Relu layers: work grows with the layer count
    (13 layers do 1.3x the work of 10), for compare's detection tests and benchmark."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, weights, current = [], [], "x"
    for index in range(layers):
        weight = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        weights.append(numpy_helper.from_array(weight, f"w{index}"))
        nodes += [helper.make_node("MatMul", [current, f"w{index}"], [f"h{index}"]),
                  helper.make_node("Relu", [f"h{index}"], [f"r{index}"])]
        current = f"r{index}"
    nodes[-1] = helper.make_node("Relu", [f"h{layers - 1}"], ["y"])
    return onnx_model(path, nodes,
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width])],
                      weights)


class Dies:
    """A stand-in for a native model whose call crashes the process serving it (after
    `after` calls that answer)."""

    def __init__(self, after: int = 0) -> None:
        self.after = after
        self.calls = 0

    def predict(self, x):  # noqa: ANN001
        import os

        self.calls += 1
        if self.calls > self.after:
            os._exit(3)
        return np.zeros(len(x))
