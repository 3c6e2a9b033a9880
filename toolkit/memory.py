"""Memory of the measuring process: its peak resident set, and its GPU memory where there is one."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

log = logging.getLogger(__name__)


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far.

    On Linux, VmHWM from /proc: getrusage's ru_maxrss survives exec, so a child started by a
    large parent would report the parent's peak as its own.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024


def available_memory_bytes() -> int | None:
    """The memory this process can still be given without swapping: MemAvailable in
    /proc/meminfo, or less where its memory cgroup's limit leaves less (a container); None
    where neither can be read."""
    found: list[int] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                          "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit, encoding="ascii") as cap, open(usage, encoding="ascii") as used:
                text = cap.read().strip()
                if text != "max" and int(text) < 2**60:  # v1 says "no limit" as a huge number
                    found.append(max(0, int(text) - int(used.read().strip())))
            break
        except (OSError, ValueError):
            continue
    return min(found) if found else None


def gpu_memory_mb(runner: Any) -> float | None:
    """This process's GPU memory as the driver sees it (NVML), else what the runtime reports."""
    if runner.device == "cpu":
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(int(runner.device.split(":")[-1]))
        for process in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if process.pid == os.getpid() and process.usedGpuMemory:
                return process.usedGpuMemory / 2**20
    except Exception:  # no NVML, or a sandbox that hides process ids from it
        log.debug("NVML gave no per-process memory", exc_info=True)
    own = getattr(runner, "gpu_memory_mb", None)
    return own() if callable(own) else None


def reset_peak_rss() -> bool:
    """Start the peak resident set afresh from the current one (Linux: clear_refs 5), so a
    later `peak_rss_mb` holds what came after and not the harness's setup; False where the
    system cannot."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
        return True
    except OSError:
        return False
