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
