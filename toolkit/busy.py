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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
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


# A virtual machine's cores can run slower than they did a minute ago, for seconds at a
# stretch, with no steal in /proc/stat to show it, and a LoadGen run in such a spell fails
# rates the option holds. So the serving steps time a short loop on every core before and
# after each option: the figures say how fast the cores were, and the reports say when they
# were not steady.
CORE_SPEED_S = 0.25  # each reading: this long on every core at once
UNSTEADY = 0.15  # a reading more than this share below the fastest is slow
SLOW_SHARE = 0.1  # more slow readings than this share: the cores were not steady
_SPIN = """
import os, sys, time
core = int(sys.argv[1])
if core >= 0 and hasattr(os, "sched_setaffinity"):
    try:
        os.sched_setaffinity(0, {core})
    except OSError:
        pass
start, seconds = float(sys.argv[2]), float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))  # waiting, not spinning: the core is someone's
n, t0 = 0, time.perf_counter()
end = t0 + seconds
while True:
    for _ in range(1000):
        n += 1
    t = time.perf_counter()
    if t >= end:
        break
print(n / (t - t0) / 1e6)
"""


def core_speed_seconds() -> float:
    """How long a core-speed reading spins (DEPLOYBENCH_CORE_SPEED_S overrides; 0: none)."""
    try:
        return max(0.0, float(os.environ.get("DEPLOYBENCH_CORE_SPEED_S", CORE_SPEED_S)))
    except ValueError:
        return CORE_SPEED_S


def usable_cores() -> list[int]:
    """The cores this process may run on (-1 each where the OS does not say which), no more
    than a CPU quota (cgroup v2's cpu.max, as a container's --cpus sets) lets it use at once."""
    import math

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [
        -1] * (os.cpu_count() or 1)
    try:  # this process's own cgroup (v2), else the root one a container sees as its own
        with open("/proc/self/cgroup", encoding="ascii") as groups:
            own = next((line.split("::", 1)[1].strip() for line in groups
                        if line.startswith("0::")), "/")
    except OSError:
        own = "/"
    for folder in dict.fromkeys([own, "/"]):
        try:
            with open(f"/sys/fs/cgroup{folder.rstrip('/')}/cpu.max", encoding="ascii") as limit:
                quota, period = limit.read().split()[:2]
        except (OSError, ValueError):
            continue
        if quota != "max":
            cores = cores[:max(1, math.floor(int(quota) / int(period)))]
        break
    return cores


def core_speed(seconds: float | None = None) -> list[float] | None:
    """Millions of loop steps per second that a pure-Python loop made on each core, all cores
    at once, each process pinned to its core where the OS allows; None where it was turned off
    or could not run."""
    import sys
    import time

    seconds = core_speed_seconds() if seconds is None else seconds
    if seconds <= 0:
        return None
    start = time.time() + 0.15  # every loop starts together, after the interpreters are up
    spinners: list[subprocess.Popen[str]] = []
    try:
        for core in usable_cores():
            spinners.append(subprocess.Popen([sys.executable, "-c", _SPIN, str(core),
                                              repr(start), repr(seconds)],
                                             stdout=subprocess.PIPE, text=True))
        said = [spinner.communicate(timeout=30 + seconds)[0] for spinner in spinners]
        return [round(float(text), 2) for text in said]
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    finally:
        for spinner in spinners:
            if spinner.poll() is None:
                spinner.kill()
                spinner.wait()


def fastest_seen(reading: Sequence[float] | None, seconds: float | None = None,
                 cache: Path | None = None) -> list[float] | None:
    """Each core's fastest reading on this machine (its name, CPU, cores and Python), `reading`
    included, kept in deploybench's cache (core_speed.json); None where there is neither a
    reading nor a kept one. Only readings of the default length are kept (a shorter one is
    noisier, and not comparable). A whole run on slow cores reads steady against itself:
    against this, it says how slow."""
    import json
    import platform

    from toolkit.environment import cache_dir, cpu_model

    seconds = core_speed_seconds() if seconds is None else seconds
    if seconds != CORE_SPEED_S:
        return None
    path = cache or cache_dir() / "core_speed.json"
    cores = ",".join(map(str, usable_cores()))
    key = f"{platform.node()} | {cpu_model()} | cores {cores} | python {platform.python_version()}"
    known: dict[str, Any] = {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
        known = loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        pass
    kept = known.get(key)
    best = ([float(v) for v in kept] if isinstance(kept, list) and all(
        isinstance(v, int | float) for v in kept) else None)
    if reading and (best is None or len(best) != len(reading)):
        best = list(reading)
    elif reading and best is not None:
        best = [max(a, b) for a, b in zip(best, reading, strict=True)]
    else:
        return best
    if best != kept:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            written = path.with_name(f"{path.name}.{os.getpid()}")
            written.write_text(json.dumps({**known, key: best}, indent=1), encoding="utf-8")
            os.replace(written, path)
        except OSError:
            pass  # a read-only cache: this run's readings still stand against each other
    return best


def fastest_of(readings: Iterable[Sequence[float] | None]) -> list[float] | None:
    """Each core's fastest in `readings` (those of as many cores as the first; anything not a
    list of numbers left out), or None."""
    taken = [list(r) for r in readings if isinstance(r, list | tuple) and r]
    same = [r for r in taken if taken and len(r) == len(taken[0])]
    return [max(values) for values in zip(*same, strict=True)] if same else None


def unsteady_text(readings: Iterable[Sequence[float] | None], seconds: float = CORE_SPEED_S,
                  best: Sequence[float] | None = None) -> str | None:
    """One line where more than SLOW_SHARE of the cores' `core_speed` readings ran more than
    UNSTEADY below the same core's fastest (in `readings`, or in `best`, this machine's
    `fastest_seen`), else None."""
    taken = [list(reading) for reading in readings if reading]
    cores = max((len(r) for r in taken), default=0)
    fastest = [max([r[n] for r in taken if len(r) > n]
                   + ([best[n]] if best and len(best) == cores else [])) for n in range(cores)]
    speeds = [(v, fastest[n]) for r in taken for n, v in enumerate(r)]
    if not speeds or (len(speeds) < 2 and not best):
        return None
    slow = [(v, top) for v, top in speeds if v < (1 - UNSTEADY) * top]
    if len(slow) <= SLOW_SHARE * len(speeds):
        return None
    slowest = min(slow, key=lambda pair: pair[0] / pair[1])
    than = ("its fastest on this machine" if best and len(best) == cores and any(
        best[n] > max(r[n] for r in taken if len(r) > n) for n in range(cores))
        else "its fastest")
    return (f"the cores were not steady: {len(slow)} of {len(speeds)} readings (a {seconds:g} s "
            f"loop on each core, before and after each option) ran over {UNSTEADY:.0%} below "
            f"{than} (at worst {slowest[0]:.3g} against {slowest[1]:.3g} M steps/s); a peak "
            "measured in such a spell reads low, and steal need not show it: run it again "
            "where the readings are steady")
