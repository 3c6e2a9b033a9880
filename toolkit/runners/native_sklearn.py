"""Native scikit-learn: `predict`, and `predict_proba` where the estimator has it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.data import only_input
from toolkit.errors import ProviderUnavailableError


class SklearnRunner:
    runtime = "native"
    idiomatic = "predict"
    providers = ("cpu",)
    fixed_batch = None

    def __init__(self, model: Any, threads: int, limiter: Any) -> None:
        self.model = model
        self._limiter = limiter
        self.variants = ("predict", "predict_proba") if hasattr(model, "predict_proba") else (
            "predict",
        )
        self.provider = "cpu"
        self.device = "cpu"
        self.settings = {"threads": threads, "n_jobs": getattr(model, "n_jobs", None)}

    @classmethod
    def import_framework(cls) -> None:
        import joblib  # noqa: F401
        import sklearn  # noqa: F401

    @classmethod
    def load(cls, path: Path, *, provider: str, threads: int) -> SklearnRunner:
        if provider != "cpu":
            raise ProviderUnavailableError(f"scikit-learn runs on the CPU only, not {provider!r}")
        import joblib
        from threadpoolctl import threadpool_limits

        # Our own artifact, written by the build step of this run: trusted.
        model = joblib.load(path)
        return cls(model, threads, threadpool_limits(limits=threads))

    def prepare(self, variant: str, batch: dict[str, np.ndarray]) -> Callable[[], Any]:
        method = getattr(self.model, variant)
        x = only_input(batch)
        return lambda: method(x)

    def close(self) -> None:
        self._limiter.restore_original_limits()
        self.model = None
