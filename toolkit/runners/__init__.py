"""Runner registry: one module per runtime, all meeting `toolkit.runners.base.Runner`.

Runner modules import their framework inside methods, so this registry is cheap to import.
"""

from __future__ import annotations

from toolkit.runners.base import NativeRunner, Runner, RunnerConfig
from toolkit.runners.native_keras import KerasRunner
from toolkit.runners.native_sklearn import SklearnRunner
from toolkit.runners.native_torch import TorchRunner
from toolkit.runners.onnxruntime import OrtRunner

_NATIVE: dict[str, type[NativeRunner]] = {
    "sklearn": SklearnRunner,
    "keras": KerasRunner,
    "torch": TorchRunner,
}

RUNNERS: dict[str, type[Runner]] = {
    **{f"native_{framework}": runner for framework, runner in _NATIVE.items()},
    "onnxruntime": OrtRunner,
}

# The name of the native runner for each framework's artifacts.
NATIVE: dict[str, str] = {framework: f"native_{framework}" for framework in _NATIVE}


def native_runner(framework: str) -> type[NativeRunner]:
    """The runner of a framework's own runtime (it also loads the framework's model objects)."""
    return _NATIVE[framework]


__all__ = ["NATIVE", "RUNNERS", "NativeRunner", "Runner", "RunnerConfig", "native_runner"]
