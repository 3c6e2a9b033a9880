"""Native PyTorch: `eval()` and a call under `torch.inference_mode()` (and `no_grad` to compare)."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.data import only_input
from toolkit.errors import BadInputError, ProviderUnavailableError
from toolkit.runners.base import RunnerConfig, openmp_spinning


class TorchRunner:
    """On CUDA, inputs are moved to the device before the timed call, and the call ends with
    `torch.cuda.synchronize()` so the time is the kernels' and not their launch."""

    runtime = "native"
    idiomatic = "inference_mode"
    providers = ("cpu", "cuda")
    variants = ("inference_mode", "no_grad")
    fixed_batch = None

    def __init__(self, model: Any, config: RunnerConfig) -> None:
        import torch

        self.model = model
        self.provider = config.provider
        self.device = config.device
        self.settings = {"threads": torch.get_num_threads(), "recipe": config.recipe,
                         "spinning": openmp_spinning()}
        if config.recipe == "torch-compile":
            # inductor compiles on the first call (the measure step's `compile` phase)
            self.model = torch.compile(model)
            self.variants = ("inference_mode",)
            self.settings["compiler"] = f"torch.compile (inductor), torch {torch.__version__}"

    @classmethod
    def import_framework(cls) -> None:
        import torch  # noqa: F401

    @classmethod
    def load_model(cls, path: Path) -> Any:
        return load_module(Path(path))

    @classmethod
    def load(cls, path: Path, config: RunnerConfig) -> TorchRunner:
        import torch

        if config.provider not in cls.providers:
            raise ProviderUnavailableError(
                f"native torch runs on cpu or cuda, not {config.provider!r}")
        if config.recipe == "torch-compile" and Path(path).suffix.lower() == ".pt":
            raise ProviderUnavailableError(
                "torch.compile cannot compile a TorchScript (.pt) module: give the model as a "
                ".pt2 (torch.export) file to measure torch-compile")
        if config.provider == "cuda" and not torch.cuda.is_available():
            why = ("this torch build has no CUDA" if torch.version.cuda is None else
                   f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device")
            raise ProviderUnavailableError(f"torch.cuda.is_available() is False: {why}")
        torch.set_num_threads(config.threads)
        model = cls.load_model(path)
        if config.device != "cpu":
            model = model.to(config.device)
        return cls(model, config)

    def prepare(self, variant: str, batch: dict[str, np.ndarray]) -> Callable[[], Any]:
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(only_input(batch)))
        model = self.model
        context = torch.inference_mode if variant == "inference_mode" else torch.no_grad
        if self.device == "cpu":
            def call() -> Any:
                with context():
                    return model(tensor)

            return call
        tensor = tensor.to(self.device)
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


def load_module(path: Path) -> Any:
    """A torch model from a file: `.pt2` (torch.export), `.pt` (TorchScript), `.pth` (the
    weights of a built-in module, as deploybench's own build step writes them: loaded with
    `weights_only=True`, so the file can carry no code that runs, and the module is rebuilt
    from `toolkit.workloads.torch_models`)."""
    import torch

    suffix = path.suffix.lower()
    try:
        if suffix == ".pt2":
            model = torch.export.load(str(path)).module()
        elif suffix == ".pt":
            model = torch.jit.load(str(path), map_location="cpu")
        else:
            from toolkit.workloads.torch_models import rebuilt

            model = rebuilt(torch.load(path, weights_only=True, map_location="cpu"), path)
    except (RuntimeError, ValueError, OSError, pickle.UnpicklingError) as exc:
        what = {".pt2": "a torch.export (.pt2) file", ".pt": "a TorchScript (.pt) file"}.get(
            suffix, "a torch model file")
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise BadInputError(
            f"{path}: not {what} ({first}); save with torch.jit.save (.pt) or torch.export.save "
            "(.pt2)"
        ) from None
    try:
        model.eval()
    except (NotImplementedError, RuntimeError):
        pass  # modules from torch.export have no train/eval switch to flip
    return model
