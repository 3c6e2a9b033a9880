"""Keras 3 -> ONNX through tf2onnx.convert.from_function (from_keras fails on Keras 3)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from exporters.base import Exported, task_from_scores, timed_export
from toolkit.data import Task
from toolkit.modelfile import TensorSpec


def configure_tensorflow() -> None:
    """Quiet TensorFlow's C++ logging and pin Keras to TensorFlow, before the first import."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


class KerasExporter:
    methods = ("tf2onnx.from_function",)

    def export(
        self, model: Any, sample: np.ndarray, path: Path, opset: int, method: str,
        require_free_batch: bool = True,
    ) -> Exported:
        configure_tensorflow()
        import tensorflow as tf
        import tf2onnx

        # The batch dimension is None in the signature, so the ONNX input keeps it free.
        spec = tf.TensorSpec([None, *sample.shape[1:]], tf.as_dtype(sample.dtype), name="input")
        function = tf.function(lambda x: model(x, training=False))

        def write() -> None:
            tf2onnx.convert.from_function(
                function, input_signature=[spec], opset=opset, output_path=str(path)
            )

        return timed_export(write, path, method=method, distribution="tf2onnx", score_output=0,
                            require_free_batch=require_free_batch)

    def scores(self, model: Any, x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(x, batch_size=len(x), verbose=0))

    def task(self, model: Any, scores: np.ndarray) -> Task:
        return task_from_scores(scores)

    def input_spec(self, model: Any) -> TensorSpec:
        tensor = model.inputs[0]
        dims = tuple(None if d is None else int(d) for d in tensor.shape)
        return TensorSpec(tensor.name, np.dtype(tensor.dtype).name, dims)
