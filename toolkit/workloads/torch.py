"""PyTorch workloads: trained with Adam and cross-entropy, saved as weights (`.pth`) that load
without unpickling code (`weights_only=True`), the module rebuilt from `torch_models`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from toolkit import data
from toolkit.data import SEED, Dataset
from toolkit.workloads.base import Workload


class TorchWorkload(Workload):
    framework = "torch"
    artifact_suffix = ".pth"  # {MODULE_KEY: name, "state_dict": weights}; user files: .pt, .pt2

    def __init__(
        self,
        name: str,
        description: str,
        dataset: Callable[[], Dataset],
        epochs: int,
        batch_size: int = 32,
        lr: float = 1e-3,
    ) -> None:
        super().__init__(name, description, epochs=epochs)
        self._dataset = dataset
        self.batch_size = batch_size
        self.lr = lr

    def dataset(self) -> Dataset:
        return self._dataset()

    def create(self, data: Dataset) -> Any:
        import torch

        from toolkit.workloads.torch_models import MODELS

        torch.manual_seed(SEED)
        return MODELS[self.name]()

    def fit(self, model: Any, data: Dataset) -> Any:
        import torch

        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        loss_fn = torch.nn.CrossEntropyLoss()
        x = torch.from_numpy(data.x_train)
        y = torch.from_numpy(data.y_train)
        generator = torch.Generator().manual_seed(SEED)
        model.train()
        for _ in range(self.epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), self.batch_size):
                idx = order[start : start + self.batch_size]
                optimizer.zero_grad()
                loss = loss_fn(model(x[idx]), y[idx])
                loss.backward()
                optimizer.step()
        return model.eval()

    def save(self, model: Any, directory: Path) -> Path:
        import torch

        from toolkit.workloads.torch_models import MODULE_KEY

        path = directory / f"model{self.artifact_suffix}"
        torch.save({MODULE_KEY: self.name, "state_dict": model.state_dict()}, path)
        return path



WORKLOADS = [
    TorchWorkload("seed-cnn", "small CNN on random 1x28x28 images", data.seed_images, epochs=3),
    TorchWorkload("digits-mlp", "MLP 64-64-10 on digits", data.digits, epochs=20),
    TorchWorkload("digits-cnn", "2 conv layers + linear on 1x8x8 digits",
                  lambda: data.digits("nchw"), epochs=15),
    TorchWorkload("digits-resnet18", "torchvision resnet18 (untrained init) on 3x32x32 digits",
                  lambda: data.digits("rgb32"), epochs=2),
]
