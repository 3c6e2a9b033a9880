"""The one small contract every runtime meets: load a file, prepare a call, close."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np


class Runner(Protocol):
    """A loaded model in one runtime on one provider.

    `prepare` does everything a call needs that is not the call (converting inputs, binding them
    to a device) and returns the zero-argument call that `toolkit.measure` times.
    """

    runtime: ClassVar[str]  # "native" or "onnxruntime"
    idiomatic: ClassVar[str]  # the variant a user of the framework writes first
    providers: ClassVar[tuple[str, ...]]  # where it can run at all: cpu, cuda, tensorrt
    variants: tuple[str, ...]
    fixed_batch: int | None  # the only batch size the model accepts, None when free
    provider: str  # what actually runs, read back from the runtime
    device: str
    settings: dict[str, Any]  # thread counts, optimisation level, ...: recorded with every timing

    @classmethod
    def import_framework(cls) -> None:
        """Import the runtime's modules (timed apart from loading the model)."""

    @classmethod
    def load(cls, path: Path, *, provider: str, threads: int) -> Runner:
        """Load the artifact at `path`; raise ProviderUnavailableError if `provider` cannot run."""

    def prepare(self, variant: str, batch: dict[str, np.ndarray]) -> Callable[[], Any]:
        """The call to time for `variant` on `batch` (one array per input name)."""

    def close(self) -> None:
        """Release the model."""
