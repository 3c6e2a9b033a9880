"""scikit-learn -> ONNX through skl2onnx, tensor outputs (no ZipMap)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from exporters.base import Exported, timed_export


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
