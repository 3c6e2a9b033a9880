"""Keras 3 (TensorFlow backend) workloads, saved as `.keras` files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from exporters.keras import configure_tensorflow
from toolkit import data
from toolkit.data import SEED, Dataset
from toolkit.workloads.base import Workload


class KerasWorkload(Workload):
    framework = "keras"
    artifact_suffix = ".keras"

    def __init__(
        self,
        name: str,
        description: str,
        dataset: Callable[[], Dataset],
        layers: Callable[[Any, Dataset], list[Any]],
        loss: str,
        epochs: int,
        batch_size: int = 32,
    ) -> None:
        super().__init__(name, description, epochs=epochs)
        self._dataset = dataset
        self._layers = layers
        self._loss = loss
        self.batch_size = batch_size

    def dataset(self) -> Dataset:
        return self._dataset()

    def create(self, data: Dataset) -> Any:
        configure_tensorflow()
        import keras

        keras.utils.set_random_seed(SEED)
        model = keras.Sequential([keras.Input(data.input_shape), *self._layers(keras, data)])
        model.compile(optimizer="adam", loss=self._loss, metrics=["accuracy"])
        return model

    def fit(self, model: Any, data: Dataset) -> Any:
        model.fit(data.x_train, data.y_train, epochs=self.epochs, batch_size=self.batch_size,
                  verbose=0)
        return model

    def save(self, model: Any, directory: Path) -> Path:
        path = directory / f"model{self.artifact_suffix}"
        model.save(path)
        return path



def _seed_dense(k: Any, d: Dataset) -> list[Any]:
    return [k.layers.Dense(16, activation="relu"), k.layers.Dense(1, activation="sigmoid")]


def _mlp(k: Any, d: Dataset) -> list[Any]:
    return [
        k.layers.Dense(64, activation="relu"),
        k.layers.Dense(64, activation="relu"),
        k.layers.Dense(10, activation="softmax"),
    ]


def _cnn(k: Any, d: Dataset) -> list[Any]:
    return [
        k.layers.Conv2D(16, 3, padding="same", activation="relu"),
        k.layers.MaxPooling2D(2),
        k.layers.Conv2D(32, 3, padding="same", activation="relu"),
        k.layers.MaxPooling2D(2),
        k.layers.Flatten(),
        k.layers.Dense(10, activation="softmax"),
    ]


WORKLOADS = [
    KerasWorkload("seed-dense", "Dense(16, relu) -> Dense(1, sigmoid) on random features",
                  data.seed_dense, _seed_dense, "binary_crossentropy", epochs=5),
    KerasWorkload("digits-mlp", "MLP 64-64-10 on digits", data.digits, _mlp,
                  "sparse_categorical_crossentropy", epochs=20),
    KerasWorkload("digits-cnn", "2 conv layers + dense on 8x8x1 digits",
                  lambda: data.digits("nhwc"), _cnn, "sparse_categorical_crossentropy",
                  epochs=15),
]
