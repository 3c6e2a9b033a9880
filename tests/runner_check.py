"""Run by tests/test_runners.py in a child (one framework per process, as DESIGN.md asks):
make a tiny model of RUNNER's framework, load it through the runner with THREADS threads, call
every variant on a batch, and print one JSON line per variant with the largest difference from
what the framework itself computes, and the settings the runner read back."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.runners import RUNNERS, RunnerConfig

X = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)


def sklearn_model(directory: Path) -> tuple[Path, dict[str, np.ndarray]]:
    import joblib
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(X, [0, 1, 2, 0, 1])
    joblib.dump(model, directory / "m.joblib")
    return directory / "m.joblib", {"predict": model.predict(X),
                                    "predict_proba": model.predict_proba(X)}


def torch_model(directory: Path) -> tuple[Path, dict[str, np.ndarray]]:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    torch.jit.save(torch.jit.script(model), directory / "m.pt")  # a .pth holds weights only
    with torch.no_grad():
        expected = model(torch.from_numpy(X)).numpy()
    return directory / "m.pt", {"inference_mode": expected, "no_grad": expected}


def keras_model(directory: Path) -> tuple[Path, dict[str, np.ndarray]]:
    from exporters.keras import configure_tensorflow

    configure_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.save(directory / "m.keras")
    expected = np.asarray(model(X))
    return directory / "m.keras", {"predict": expected, "tf.function": expected}


def onnx_model(directory: Path) -> tuple[Path, dict[str, np.ndarray]]:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    (directory / "m.onnx").write_bytes(model.SerializeToString())
    return directory / "m.onnx", {"run": np.maximum(X, 0), "iobinding": np.maximum(X, 0)}


MAKERS = {"native_sklearn": sklearn_model, "native_torch": torch_model,
          "native_keras": keras_model, "onnxruntime": onnx_model}


def as_array(out: Any) -> np.ndarray:
    """The first output of a call, whatever the runtime hands back."""
    if hasattr(out, "copy_outputs_to_cpu"):  # an ONNX Runtime IO binding
        return np.asarray(out.copy_outputs_to_cpu()[0])
    if isinstance(out, list | tuple):
        out = out[0]
    return np.asarray(out.numpy() if hasattr(out, "numpy") else out)


def make(name: str, directory: Path) -> None:
    """Write the model file and the framework's own outputs (expected.npz) into `directory`."""
    path, expected = MAKERS[name](directory)
    np.savez(directory / "expected.npz", **expected)
    (directory / "model").write_text(path.name)


def main(name: str, threads: int) -> None:
    cls = RUNNERS[name]
    with tempfile.TemporaryDirectory() as tmp:
        # The model is made in another process: this one loads it first thing, as a measuring
        # child does (TensorFlow, for one, takes thread settings only before it starts).
        subprocess.run([sys.executable, __file__, "--make", name, tmp], check=True)
        with np.load(Path(tmp) / "expected.npz") as archive:
            expected = {k: archive[k] for k in archive.files}
        runner = cls.load(Path(tmp) / (Path(tmp) / "model").read_text(),
                          RunnerConfig(threads=threads))
        for variant in runner.variants:
            got = as_array(runner.prepare(variant, {"input": X})())
            want = expected[variant]
            error = float(np.max(np.abs(got.astype(np.float64) - want))) if (
                got.shape == want.shape) else None
            print(json.dumps({"variant": variant, "max_abs": error, "shape": list(got.shape),
                              "provider": runner.provider, "device": runner.device,
                              "settings": runner.settings}))
        runner.close()


if __name__ == "__main__":
    if sys.argv[1] == "--make":
        make(sys.argv[2], Path(sys.argv[3]))
    else:
        main(sys.argv[1], int(sys.argv[2]))
