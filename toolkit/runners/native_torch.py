"""Native PyTorch: `eval()` and a call under `torch.inference_mode()` (and `no_grad` to compare)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ProviderUnavailableError


class TorchRunner:
    """On CUDA, inputs are moved to the device before the timed call, and the call ends with
    `torch.cuda.synchronize()` so the time is the kernels' and not their launch."""

    runtime = "native"
    idiomatic = "inference_mode"
    providers = ("cpu", "cuda")
    variants = ("inference_mode", "no_grad")
    fixed_batch = None

    def __init__(self, model: Any, threads: int, provider: str) -> None:
        self.model = model
        self.provider = provider
        self.device = "cpu" if provider == "cpu" else "cuda:0"
        self.settings = {"threads": threads}

    @classmethod
    def import_framework(cls) -> None:
        import torch  # noqa: F401

    @classmethod
    def load(cls, path: Path, *, provider: str, threads: int) -> TorchRunner:
        import torch

        if provider not in cls.providers:
            raise ProviderUnavailableError(f"native torch runs on cpu or cuda, not {provider!r}")
        if provider == "cuda" and not torch.cuda.is_available():
            why = ("this torch build has no CUDA" if torch.version.cuda is None else
                   f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device")
            raise ProviderUnavailableError(f"torch.cuda.is_available() is False: {why}")
        torch.set_num_threads(threads)
        # A whole pickled module written by this run's build step: trusted.
        model = torch.load(path, weights_only=False, map_location="cpu").eval()
        if provider == "cuda":
            model = model.to("cuda")
        return cls(model, threads, provider)

    def prepare(self, variant: str, batch: np.ndarray) -> Callable[[], Any]:
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(batch))
        model = self.model
        context = torch.inference_mode if variant == "inference_mode" else torch.no_grad
        if self.device == "cpu":
            def call() -> Any:
                with context():
                    return model(tensor)

            return call
        tensor = tensor.to("cuda")
        synchronize = torch.cuda.synchronize
        synchronize()

        def call_cuda() -> Any:
            with context():
                out = model(tensor)
            synchronize()
            return out

        return call_cuda

    def gpu_memory_mb(self) -> float | None:
        """Peak memory torch's allocator handed out on the device."""
        if self.device == "cpu":
            return None
        import torch

        return torch.cuda.max_memory_allocated() / 2**20

    def close(self) -> None:
        self.model = None
