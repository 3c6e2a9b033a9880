"""ONNX exporters, one module per framework, and the parity check.

Each exporter module imports its framework inside `export`, so this registry imports nothing heavy.
"""

from __future__ import annotations

from exporters.base import Exported, Exporter
from exporters.keras import KerasExporter
from exporters.sklearn import SklearnExporter
from exporters.torch import TorchExporter

EXPORTERS: dict[str, Exporter] = {
    "sklearn": SklearnExporter(),
    "keras": KerasExporter(),
    "torch": TorchExporter(),
}

__all__ = ["EXPORTERS", "Exported", "Exporter"]
