"""scikit-learn -> ONNX through skl2onnx, tensor outputs (no ZipMap)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from exporters.base import Exported, timed_export
from toolkit.data import Task
from toolkit.errors import BadInputError
from toolkit.modelfile import TensorSpec


class SklearnExporter:
    methods = ("skl2onnx",)

    def export(
        self, model: Any, sample: np.ndarray, path: Path, opset: int, method: str,
        require_free_batch: bool = True,
    ) -> Exported:
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType
        from sklearn.base import is_classifier

        classifier = is_classifier(model)
        # zipmap=False: probabilities as a plain float tensor, not a sequence of maps.
        options = {id(model): {"zipmap": False}} if classifier else None

        def write() -> None:
            onx = convert_sklearn(
                model,
                initial_types=[("input", FloatTensorType([None, sample.shape[1]]))],
                options=options,
                target_opset=opset,
            )
            path.write_bytes(onx.SerializeToString())

        # Classifiers output (label, probabilities): parity compares the probabilities.
        return timed_export(write, path, method=method, distribution="skl2onnx",
                            score_output=1 if classifier else 0,
                            require_free_batch=require_free_batch)

    def scores(self, model: Any, x: np.ndarray) -> np.ndarray:
        """Class probabilities for a classifier (what its ONNX `probabilities` output holds),
        else the prediction."""
        if hasattr(model, "predict_proba"):
            return np.asarray(model.predict_proba(x))
        return np.asarray(model.predict(x))

    def task(self, model: Any, scores: np.ndarray) -> Task:
        return "multiclass" if hasattr(model, "predict_proba") else "regression"

    def input_spec(self, model: Any) -> TensorSpec:
        features = getattr(model, "n_features_in_", None)
        if features is None:
            raise BadInputError("the scikit-learn model is not fitted (no n_features_in_); "
                                "fit it before saving")
        return TensorSpec("input", "float32", (None, int(features)))
