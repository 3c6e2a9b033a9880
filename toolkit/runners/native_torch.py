"""Native PyTorch: `eval()` and a call under `torch.inference_mode()` (and `no_grad` to compare)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ProviderUnavailableError


class TorchRunner:
    runtime = "native"
    idiomatic = "inference_mode"
    variants = ("inference_mode", "no_grad")

    def __init__(self, model: Any, threads: int) -> None:
        self.model = model
        self.provider = "cpu"
        self.device = "cpu"
        self.settings = {"threads": threads}

    @classmethod
    def import_framework(cls) -> None:
        import torch  # noqa: F401

    @classmethod
    def load(cls, path: Path, *, provider: str, threads: int) -> TorchRunner:
        if provider != "cpu":
            raise ProviderUnavailableError(
                f"native torch on {provider!r} is not measured yet; only cpu is supported"
            )
        import torch

        torch.set_num_threads(threads)
        # A whole pickled module written by this run's build step: trusted.
        model = torch.load(path, weights_only=False, map_location="cpu")
        return cls(model.eval(), threads)

    def prepare(self, variant: str, batch: np.ndarray) -> Callable[[], Any]:
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(batch))
        model = self.model
        context = torch.inference_mode if variant == "inference_mode" else torch.no_grad

        def call() -> Any:
            with context():
                return model(tensor)

        return call

    def close(self) -> None:
        self.model = None
