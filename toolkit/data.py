"""Datasets: the seed examples' synthetic sets and scikit-learn's bundled digits.

The seed examples are the three small models deploybench began from (`seed-linreg`,
`seed-dense`, `seed-cnn`: a line fit, a dense network and a CNN on random data), each just
enough to show the gap between training a model and serving it. Nothing is downloaded: every set
is generated from a fixed seed or ships with scikit-learn. Features are float32, as served; the
layout (flat, NCHW, NHWC) is the consumer's choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Task = Literal["regression", "binary", "multiclass"]
Layout = Literal["flat", "nchw", "nhwc", "rgb32"]
SEED = 0


@dataclass(frozen=True)
class Dataset:
    name: str
    task: Task
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    random_labels: bool = False  # labels drawn at random: a recipe is judged on agreement only

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one row (the batch dimension left out)."""
        return tuple(self.x_train.shape[1:])


def seed_linreg() -> Dataset:
    """1,000 x 1 features X*10, y = 2x + 1 + noise; evaluated on 100 fresh rows."""
    rng = np.random.default_rng(SEED)
    x = (rng.random((1100, 1)) * 10).astype(np.float32)
    y = (2 * x[:, 0] + 1 + rng.normal(size=1100)).astype(np.float32)
    return Dataset("seed-linreg", "regression", x[:1000], y[:1000], x[1000:], y[1000:])


def seed_dense() -> Dataset:
    """1,000 x 10 random features with random binary labels (nothing to learn: a seed example)."""
    rng = np.random.default_rng(SEED)
    x = rng.random((1100, 10)).astype(np.float32)
    y = rng.integers(0, 2, size=1100).astype(np.float32)
    return Dataset("seed-dense", "binary", x[:1000], y[:1000], x[1000:], y[1000:],
                   random_labels=True)


def seed_images() -> Dataset:
    """1,000 random 1 x 28 x 28 images with random labels of 10 classes (seed-cnn's data)."""
    rng = np.random.default_rng(SEED)
    x = rng.random((1100, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, size=1100).astype(np.int64)
    return Dataset("seed-images", "multiclass", x[:1000], y[:1000], x[1000:], y[1000:],
                   random_labels=True)


def digits(layout: Layout = "flat") -> Dataset:
    """scikit-learn's bundled digits (1,797 8x8 images, 10 classes), one fixed stratified split
    (75% train, 25% test), pixel values scaled to 0..1.

    Layouts: flat (64), nchw (1x8x8), nhwc (8x8x1), rgb32 (3x32x32, each pixel repeated 4x4 and
    copied to three channels, for image networks built for larger inputs).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)  # (n, 8, 8)
    y = bunch.target.astype(np.int64)
    if layout == "flat":
        x = x.reshape(len(x), 64)
    elif layout == "nchw":
        x = x[:, None, :, :]
    elif layout == "nhwc":
        x = x[:, :, :, None]
    elif layout == "rgb32":
        x = np.repeat(np.repeat(x, 4, axis=1), 4, axis=2)[:, None, :, :]
        x = np.ascontiguousarray(np.repeat(x, 3, axis=1))
    else:
        raise ValueError(f"unknown digits layout {layout!r}")
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=SEED
    )
    return Dataset(f"digits-{layout}", "multiclass", x_train, y_train, x_test, y_test)


def make_batch(x: np.ndarray, batch_size: int) -> np.ndarray:
    """The first `batch_size` rows of x, cycling through x when it has fewer rows."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    return np.ascontiguousarray(x[np.arange(batch_size) % len(x)])


def make_batches(inputs: dict[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    """`make_batch` on every input of a model."""
    return {name: make_batch(x, batch_size) for name, x in inputs.items()}


def only_input(batch: dict[str, np.ndarray]) -> np.ndarray:
    """The single array of a one-input model (native runners take one input)."""
    if len(batch) != 1:
        raise ValueError(f"this runner takes one input; got {', '.join(batch)}")
    return next(iter(batch.values()))


def labels_from_scores(scores: np.ndarray, task: Task) -> np.ndarray | None:
    """Predicted labels from model scores (None for regression)."""
    if task == "regression":
        return None
    if task == "binary" and (scores.ndim == 1 or scores.shape[-1] == 1):
        return (scores.reshape(len(scores)) > 0.5).astype(np.int64)
    return scores.reshape(len(scores), -1).argmax(axis=1)


def quality(scores: np.ndarray, y_true: np.ndarray, task: Task) -> tuple[str, float]:
    """(metric name, value): accuracy for classifiers, R^2 for regression."""
    if task == "regression":
        pred = scores.reshape(len(y_true)).astype(np.float64)
        truth = y_true.astype(np.float64)
        ss_res = float(np.sum((truth - pred) ** 2))
        ss_tot = float(np.sum((truth - truth.mean()) ** 2))
        return "r2", 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    labels = labels_from_scores(scores, task)
    assert labels is not None
    return "accuracy", float(np.mean(labels == y_true.astype(np.int64)))
