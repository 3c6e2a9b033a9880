"""The one small contract every runtime meets: load a file with a config, prepare a call, close."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from toolkit.recipes import FP32


@dataclass(frozen=True)
class RunnerConfig:
    """How a runner is asked to run; the same object goes to every runner's `load`.

    A runner applies what concerns it (native runners have no graph optimisation level) and
    records what it really applied in its `settings`.
    """

    provider: str = "cpu"
    threads: int = 1
    optimization: str = "all"  # ONNX Runtime's graph optimisation level
    recipe: str = FP32  # torch-compile and xla are applied by their runner at load
    # ONNX Runtime's intra-op threads spin while waiting for work: off where several sessions
    # or workers share the cores (serving), since spinning threads steal them from each other.
    # OpenMP's (PyTorch, scikit-learn) are set when the process starts (`openmp_spinning`);
    # TensorFlow's have no switch.
    spinning: bool = True
    # ONNX Runtime's other session options (exporters.session.SESSION_CHOICES), as sorted
    # (name, value) pairs; those not given are at their defaults
    session: tuple[tuple[str, Any], ...] = ()

    @property
    def device(self) -> str:
        """The device a provider runs on: the one place this is decided."""
        return "cpu" if self.provider == "cpu" else "cuda:0"


class Runner(Protocol):
    """A loaded model in one runtime on one provider.

    `prepare` does everything a call needs that is not the call (converting inputs, binding them
    to a device) and returns the zero-argument call that `toolkit.timing` times.
    """

    runtime: ClassVar[str]  # "native" or "onnxruntime"
    idiomatic: ClassVar[str]  # the variant a user of the framework writes first
    providers: ClassVar[tuple[str, ...]]  # where it can run at all: cpu, cuda, tensorrt
    variants: tuple[str, ...]
    fixed_batch: int | None  # the only batch size the model accepts, None when free
    provider: str  # what actually runs, read back from the runtime
    device: str
    settings: dict[str, Any]  # what was applied (threads, optimisation, ...): read back

    @classmethod
    def import_framework(cls) -> None:
        """Import the runtime's modules (timed apart from loading the model)."""

    @classmethod
    def load(cls, path: Path, config: RunnerConfig) -> Runner:
        """Load the artifact at `path`; raise ProviderUnavailableError if the provider cannot
        run."""

    def prepare(self, variant: str, batch: dict[str, np.ndarray]) -> Callable[[], Any]:
        """The call to time for `variant` on `batch` (one array per input name)."""

    def close(self) -> None:
        """Release the model."""


class NativeRunner(Runner, Protocol):
    """A framework's own runtime. `load_model` gives the framework's model object (on the CPU),
    which the export step hands to the framework's exporter."""

    @classmethod
    def load_model(cls, path: Path) -> Any:
        """The model in `path` as the framework's own object; BadInputError if it is not one."""


def openmp_spinning() -> bool:
    """Whether OpenMP's idle threads spin in this process: GNU OpenMP reads OMP_WAIT_POLICY
    once, when it loads, so what counts is the environment the process started with
    (`toolkit.isolate` sets PASSIVE for serving steps and their worker processes)."""
    import os

    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() != "PASSIVE"
