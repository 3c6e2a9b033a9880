"""Energy counters where the machine exposes one: NVML's for a GPU, RAPL's for the CPU.

NVML gives a GPU's total energy, RAPL the CPU package's (/sys/class/powercap). Both count the
whole device, every process on it, so a figure per prediction is the device's while the option
served, not the option's alone.

`counter(device)` gives a reader of joules so far and what it reads, or None and why not: a
record says which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")


@dataclass(frozen=True)
class Counter:
    read: Callable[[], float]  # joules consumed so far (monotonic across wraparound)
    source: str  # what it counts, in words


def counter(device: str = "cpu", root: Path = POWERCAP) -> tuple[Counter | None, str]:
    """A reader of the device's energy, or None and why there is none here."""
    if device.startswith("cuda"):
        return _nvml(int(device.split(":")[-1]) if ":" in device else 0)
    return _rapl(root)


def _rapl(root: Path) -> tuple[Counter | None, str]:
    if not root.is_dir():
        return None, f"no RAPL energy counter here ({root} is absent: not exposed on this " \
                     "machine, VM or container)"
    packages = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
    if not packages:
        return None, f"no RAPL package domain under {root}"
    readers = []
    for package in packages:
        try:
            limit = int((package / "max_energy_range_uj").read_text())
            int((package / "energy_uj").read_text())
        except (OSError, ValueError) as exc:
            return None, (f"{package / 'energy_uj'} is not readable ({exc.__class__.__name__}; "
                          "it is root-only on most kernels since 2020)")
        readers.append(_Wrapping(package / "energy_uj", limit))
    return Counter(lambda: sum(r() for r in readers) / 1e6,
                   f"RAPL package energy ({len(readers)} package(s), every process on them)"), ""


class _Wrapping:
    """A RAPL counter in microjoules that wraps at max_energy_range_uj, made monotonic."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path, self.limit = path, limit
        self.last = int(path.read_text())
        self.total = 0

    def __call__(self) -> int:
        now = int(self.path.read_text())
        self.total += now - self.last if now >= self.last else self.limit - self.last + now
        self.last = now
        return self.total


def _nvml(index: int) -> tuple[Counter | None, str]:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception as exc:  # no NVML, no GPU, or a GPU that does not count energy
        return None, f"NVML gives no energy counter for GPU {index} ({type(exc).__name__}: {exc})"
    return Counter(lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1e3,
                   f"NVML total energy of GPU {index} (every process on it)"), ""
