"""Run in a child (torch only): write a small TorchScript .pt and torch.export .pt2 to DIR."""

import sys
from pathlib import Path

import torch

directory = Path(sys.argv[1])
net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                          torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                          torch.nn.Linear(4, 5)).eval()
example = torch.randn(2, 3, 8, 8)
torch.jit.save(torch.jit.trace(net, example), directory / "small.pt")
program = torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
torch.export.save(program, directory / "small.pt2")
