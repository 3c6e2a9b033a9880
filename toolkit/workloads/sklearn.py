"""scikit-learn workloads: fitted estimators saved with joblib."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from toolkit import data
from toolkit.data import Dataset
from toolkit.workloads.base import Workload


class SklearnWorkload(Workload):
    framework = "sklearn"
    artifact_suffix = ".joblib"

    def __init__(
        self,
        name: str,
        description: str,
        dataset: Callable[[], Dataset],
        estimator: Callable[[], Any],
    ) -> None:
        super().__init__(name, description, epochs=1)
        self._dataset = dataset
        self._estimator = estimator

    def dataset(self) -> Dataset:
        return self._dataset()

    def create(self, data: Dataset) -> Any:
        return self._estimator()

    def fit(self, model: Any, data: Dataset) -> Any:
        return model.fit(data.x_train, data.y_train)

    def save(self, model: Any, directory: Path) -> Path:
        import joblib

        path = directory / f"model{self.artifact_suffix}"
        joblib.dump(model, path)
        return path



def _linreg() -> Any:
    from sklearn.linear_model import LinearRegression

    return LinearRegression()


def _logreg() -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000)


def _forest() -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=100, random_state=data.SEED)


def _hgb() -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=50, random_state=data.SEED)


WORKLOADS = [
    SklearnWorkload("seed-linreg", "LinearRegression on y = 2x + 1 + noise", data.seed_linreg,
                    _linreg),
    SklearnWorkload("digits-logreg", "LogisticRegression on digits", data.digits, _logreg),
    SklearnWorkload("digits-forest", "RandomForest (100 trees) on digits", data.digits, _forest),
    SklearnWorkload("digits-hgb", "HistGradientBoosting (50 iterations) on digits", data.digits,
                    _hgb),
]
