"""PyTorch model definitions. Imported only where torch is wanted (it imports torch)."""

from __future__ import annotations

import torch
from torch import nn


class SeedCNN(nn.Module):
    """seed-cnn's small CNN for 1 x 28 x 28 images (a seed example: `toolkit.data`)."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Linear(32 * 7 * 7, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


class DigitsMLP(nn.Module):
    """64-64-10 MLP, the same shape as the Keras digits-mlp."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DigitsCNN(nn.Module):
    """Two conv layers and a dense head on 1 x 8 x 8 digits, as the Keras digits-cnn."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Linear(32 * 2 * 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


def resnet18() -> nn.Module:
    """torchvision's resnet18, untrained weights (nothing is downloaded), 10 classes."""
    from torchvision.models import resnet18 as build

    return build(weights=None, num_classes=10)


MODULE_KEY = "deploybench_module"  # a built-in's saved weights name the module they fit

MODELS = {"seed-cnn": SeedCNN, "digits-mlp": DigitsMLP, "digits-cnn": DigitsCNN,
          "digits-resnet18": resnet18}


def rebuilt(saved: object, path: object) -> nn.Module:
    """The built-in module a `.pth` of weights names, with those weights; ValueError for a file
    that is not one."""
    if not (isinstance(saved, dict) and saved.get(MODULE_KEY) in MODELS
            and isinstance(saved.get("state_dict"), dict)):
        raise ValueError(f"{path} holds no deploybench module's weights")
    model = MODELS[saved[MODULE_KEY]]()
    model.load_state_dict(saved["state_dict"])
    return model.eval()
