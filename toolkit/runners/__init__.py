"""Runner registry: one module per runtime, all meeting `toolkit.runners.base.Runner`.

Runner modules import their framework inside methods, so this registry is cheap to import.
"""

from __future__ import annotations

from toolkit.runners.base import Runner
from toolkit.runners.native_keras import KerasRunner
from toolkit.runners.native_sklearn import SklearnRunner
from toolkit.runners.native_torch import TorchRunner
from toolkit.runners.onnxruntime import OrtRunner

RUNNERS: dict[str, type[Runner]] = {
    "native_sklearn": SklearnRunner,
    "native_keras": KerasRunner,
    "native_torch": TorchRunner,
    "onnxruntime": OrtRunner,
}

# The native runner for each framework's artifacts.
NATIVE: dict[str, str] = {
    "sklearn": "native_sklearn",
    "keras": "native_keras",
    "torch": "native_torch",
}

__all__ = ["NATIVE", "RUNNERS", "Runner"]
