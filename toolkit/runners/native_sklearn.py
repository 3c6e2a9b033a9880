"""Native scikit-learn: `predict`, and `predict_proba` where the estimator has it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.data import only_input
from toolkit.errors import BadInputError, ProviderUnavailableError
from toolkit.runners.base import RunnerConfig, openmp_spinning


class SklearnRunner:
    runtime = "native"
    idiomatic = "predict"
    providers = ("cpu",)
    fixed_batch = None

    def __init__(self, model: Any, config: RunnerConfig, limiter: Any) -> None:
        self.model = model
        self._limiter = limiter
        self.variants = ("predict", "predict_proba") if hasattr(model, "predict_proba") else (
            "predict",
        )
        self.provider = config.provider
        self.device = config.device
        from threadpoolctl import threadpool_info

        # What the BLAS and OpenMP pools really run with, read back after the limit.
        applied: dict[str, int] = {}
        for pool in threadpool_info():
            applied[pool["user_api"]] = max(pool["num_threads"], applied.get(pool["user_api"], 0))
        self.settings = {"threads": max(applied.values(), default=config.threads),
                         "thread_pools": applied, "n_jobs": getattr(model, "n_jobs", None),
                         "spinning": openmp_spinning()}

    @classmethod
    def import_framework(cls) -> None:
        import joblib  # noqa: F401
        import sklearn  # noqa: F401

    @classmethod
    def load_model(cls, path: Path) -> Any:
        """Only ever called on a pickle the user trusted (--trust-pickle) or that this run's
        own build step wrote."""
        import joblib

        try:
            return joblib.load(path)
        except Exception as exc:  # unpickling can raise anything the file's code raises
            raise BadInputError(
                f"{path}: not a readable scikit-learn pickle ({type(exc).__name__}: {exc}); "
                "save it with joblib.dump") from None

    @classmethod
    def load(cls, path: Path, config: RunnerConfig) -> SklearnRunner:
        if config.provider != "cpu":
            raise ProviderUnavailableError(
                f"scikit-learn runs on the CPU only, not {config.provider!r}")
        from threadpoolctl import threadpool_limits

        model = cls.load_model(path)
        if "n_jobs" in getattr(model, "get_params", dict)():
            model.set_params(n_jobs=config.threads)  # its own workers, e.g. a forest's trees
        # After the load: unpickling imports scikit-learn and SciPy, whose BLAS and OpenMP
        # pools a limit set before would not reach.
        return cls(model, config, threadpool_limits(limits=config.threads))

    def prepare(self, variant: str, batch: dict[str, np.ndarray]) -> Callable[[], Any]:
        method = getattr(self.model, variant)
        x = only_input(batch)
        return lambda: method(x)

    def close(self) -> None:
        self._limiter.restore_original_limits()
        self.model = None
