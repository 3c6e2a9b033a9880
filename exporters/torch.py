"""PyTorch -> ONNX through torch.onnx.export: the dynamo exporter, then the legacy one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from exporters.base import Exported, timed_export


class TorchExporter:
    methods = ("torch.onnx dynamo", "torch.onnx legacy")

    def export(
        self, model: Any, sample: np.ndarray, path: Path, opset: int, method: str,
        require_free_batch: bool = True,
    ) -> Exported:
        import torch

        try:
            model.eval()
        except (NotImplementedError, RuntimeError):
            pass  # a module from torch.export has no train/eval switch
        example = (torch.from_numpy(np.ascontiguousarray(sample)),)
        names = {"input_names": ["input"], "output_names": ["output"]}

        def write() -> None:
            if method == "torch.onnx dynamo":
                torch.onnx.export(
                    model, example, str(path), dynamo=True, opset_version=opset, verbose=False,
                    dynamic_shapes=({0: torch.export.Dim("batch")},), **names,
                )
            else:
                torch.onnx.export(
                    model, example, str(path), dynamo=False, opset_version=opset,
                    dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, **names,
                )

        return timed_export(write, path, method=method, distribution="torch", score_output=0,
                            require_free_batch=require_free_batch)
