"""Is the machine quiet enough to measure on? Its state when a run starts, kept in the run section.

On a shared machine the largest noise is other work: a round measured beside a busy process is
slower, and the rounds of a case disagree. So before timing, the run records the load average,
the processes that were busy over a short sample (other than this one and its children), the
CPU frequency where it can be read, and the GPU's processes where a CUDA provider is asked for;
`busy_text` says in one line what was busy, for the warning at the start and in the reports
where rounds disagree. Nothing here is guessed: what cannot be read says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

BUSY_CPU_PERCENT = 20.0  # a process using more of one core than this during the sample is busy
LOAD_SHARE = 0.5  # a one-minute load average above this share of the cores: a busy machine
SHOWN = 5  # busy processes kept


def state(sample_s: float = 0.25, gpu: bool = False) -> dict[str, Any]:
    """The machine's state now: {"load": [1, 5, 15 min], "cores", "busy": [{"pid", "name",
    "cpu_percent"}], "cpu_mhz" or "cpu_frequency": why not, "gpu_processes" (with `gpu`)}."""
    import psutil

    own = {os.getpid(), *(p.pid for p in psutil.Process().children(recursive=True))}
    found: dict[str, Any] = {"cores": os.cpu_count() or 1}
    try:
        found["load"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        found["load"] = None
    processes = [p for p in psutil.process_iter(["pid", "name"]) if p.pid not in own]
    for process in processes:
        try:
            process.cpu_percent(None)  # starts each process's sample
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    psutil.cpu_percent(None)
    import time

    time.sleep(sample_s)
    busy = []
    for process in processes:
        try:
            share = process.cpu_percent(None)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if share >= BUSY_CPU_PERCENT:
            busy.append({"pid": process.pid, "name": process.info["name"] or "?",
                         "cpu_percent": round(share)})
    found["busy"] = sorted(busy, key=lambda p: -p["cpu_percent"])[:SHOWN]
    found["cpu_percent"] = round(psutil.cpu_percent(None))
    try:
        frequency = psutil.cpu_freq()
    except (OSError, NotImplementedError, AttributeError):
        frequency = None
    if frequency is not None and frequency.current:
        found["cpu_mhz"] = round(frequency.current)
    else:
        found["cpu_frequency"] = "not readable here"
    if gpu:
        found["gpu_processes"] = _gpu_processes()
    return found


def _gpu_processes() -> list[str] | str:
    if shutil.which("nvidia-smi") is None:
        return "not readable here (no nvidia-smi)"
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"not readable here ({exc})"
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def busy_text(found: Mapping[str, Any] | None) -> str | None:
    """One line naming what was busy, or None for a quiet machine (or no state kept)."""
    if not found:
        return None
    parts = []
    load, cores = found.get("load"), int(found.get("cores") or 1)
    if load and load[0] > LOAD_SHARE * cores:
        parts.append(f"load average {load[0]:g} on {cores} cores")
    busy = list(found.get("busy") or [])
    if busy:
        parts.append("busy: " + ", ".join(f"{p['name']} (pid {p['pid']}, {p['cpu_percent']}% "
                                          "of a core)" for p in busy))
    gpu = found.get("gpu_processes")
    if isinstance(gpu, list) and gpu:
        parts.append("on the GPU: " + "; ".join(gpu))
    return "; ".join(parts) or None


STEAL_NOISY = 5.0  # percent of the CPU time the hypervisor gave elsewhere: a noisy spell


def cpu_ticks() -> tuple[int, int] | None:
    """(steal, total) CPU ticks since boot from /proc/stat: on a virtual machine, steal is the
    time its virtual CPUs were ready but the host ran something else. None where unreadable."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return ticks[7], sum(ticks)


def steal_percent(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of CPU time stolen between two `cpu_ticks` readings, in percent."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round(100.0 * (after[0] - before[0]) / (after[1] - before[1]), 1)
