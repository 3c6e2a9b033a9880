"""What a workload is: a named dataset and a model a framework trains natively."""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from toolkit.data import Dataset


@dataclass(frozen=True)
class Trained:
    """A fitted native model and how its training went."""

    model: Any
    seconds: float
    epochs: int
    rows: int


class Workload(abc.ABC):
    """One model on one dataset in one framework, e.g. `keras/digits-mlp`.

    Framework imports happen inside the methods, so listing workloads imports nothing heavy.
    """

    framework: ClassVar[str]
    artifact_suffix: ClassVar[str]

    def __init__(self, name: str, description: str, epochs: int = 1) -> None:
        self.name = name
        self.description = description
        self.epochs = epochs

    @property
    def key(self) -> str:
        return f"{self.framework}/{self.name}"

    @abc.abstractmethod
    def dataset(self) -> Dataset:
        """The data this workload trains and is evaluated on."""

    @abc.abstractmethod
    def create(self, data: Dataset) -> Any:
        """The untrained model, framework imported (not timed: imports are not training)."""

    @abc.abstractmethod
    def fit(self, model: Any, data: Dataset) -> Any:
        """Train `model` natively and return it (timed by `train`)."""

    def scores(self, model: Any, x: np.ndarray) -> np.ndarray:
        """The native model's numeric outputs that its ONNX export must reproduce (the
        framework's exporter knows which)."""
        from exporters import EXPORTERS

        return EXPORTERS[self.framework].scores(model, x)

    @abc.abstractmethod
    def save(self, model: Any, directory: Path) -> Path:
        """Write the native artifact a serving process would load; return its path."""

    def train(self, data: Dataset) -> Trained:
        model = self.create(data)
        start = time.perf_counter()
        model = self.fit(model, data)
        seconds = time.perf_counter() - start
        return Trained(model=model, seconds=seconds, epochs=self.epochs, rows=len(data.x_train))
