"""PyTorch -> ONNX through torch.onnx.export: the dynamo exporter, then the legacy one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from exporters.base import Exported, task_from_scores, timed_export
from toolkit.data import Task


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
                inline_weights(path)
            else:
                torch.onnx.export(
                    model, example, str(path), dynamo=False, opset_version=opset,
                    dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, **names,
                )

        return timed_export(write, path, method=method, distribution="torch", score_output=0,
                            require_free_batch=require_free_batch)

    def scores(self, model: Any, x: np.ndarray) -> np.ndarray:
        """The model's (first) output on x, computed without autograd."""
        import torch

        with torch.no_grad():
            out = model(torch.from_numpy(np.ascontiguousarray(x)))
        if isinstance(out, tuple | list):
            out = out[0]
        return out.detach().cpu().numpy()

    def task(self, model: Any, scores: np.ndarray) -> Task:
        return task_from_scores(scores)

    def input_spec(self, model: Any) -> None:
        return None  # a torch module does not declare its input shape


def inline_weights(path: Path) -> None:
    """Keep the weights inside the ONNX file: the dynamo exporter writes them to a `.data` file
    named after this one, which a rename or a copy of the file alone would leave behind."""
    import onnx

    data = path.with_name(path.name + ".data")
    if not data.exists():
        return
    model = onnx.load(str(path))  # reads the external data in
    if model.ByteSize() < 2**31 - 2**20:  # protobuf's limit; larger models keep their .data
        onnx.save_model(model, str(path), save_as_external_data=False)
        data.unlink()
