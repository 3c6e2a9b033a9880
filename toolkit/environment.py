"""The machine and software a run measured on, and which frameworks and providers can run.

Versions come from package metadata (nothing heavy is imported); providers are proven by
creating a session on each and reading back what it runs on.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any

# What each framework's workloads need importable, and the extra that installs it.
FRAMEWORK_MODULES = {
    "sklearn": (("sklearn", "skl2onnx"), "sklearn"),
    "keras": (("tensorflow", "tf2onnx"), "tensorflow"),
    "torch": (("torch", "torchvision"), "torch"),
}
DISTRIBUTIONS = ("numpy", "onnx", "onnxruntime-gpu", "onnxruntime", "scikit-learn", "skl2onnx",
                 "tensorflow", "keras", "tf2onnx", "torch", "torchvision", "onnxscript", "typer")


def missing_framework(framework: str) -> str | None:
    """None when the framework's workloads can run, else why not and how to fix it."""
    modules, extra = FRAMEWORK_MODULES[framework]
    for module in modules:
        try:
            found = find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"{module} is not installed; install with pip install 'deploybench[{extra}]'"
    return None


def versions() -> dict[str, str]:
    found = {}
    for name in DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The CPU features int8 and fp16 speed depends on, as /proc/cpuinfo names them.
NOTABLE_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512vnni", "avx_vnni",
                 "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
                 "asimddp", "i8mm", "sve", "bf16")


def instruction_set() -> list[str]:
    """The CPU's vector and matrix extensions that decide int8 and fp16 speed (AVX2, AVX-512,
    VNNI, AMX; ARM dot product, i8mm, SVE), from /proc/cpuinfo; empty where it cannot say."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    return [f for f in NOTABLE_FLAGS if f in flags]
    except OSError:
        pass
    return []


def no_nvidia_gpu() -> str | None:
    """Why nothing can run on an NVIDIA GPU here, where the machine plainly has none (no
    /dev/nvidia* device and no driver in /proc/driver/nvidia), read without importing any
    framework; None where there may be one (each framework then says for itself). A CUDA case
    is skipped with this reason before a child imports TensorFlow only to find no GPU."""
    if Path("/proc/driver/nvidia").exists() or any(Path("/dev").glob("nvidia[0-9]*")):
        return None
    if platform.system() != "Linux":
        return None  # no such files to read there: the framework decides
    return ("no NVIDIA GPU on this machine (no /dev/nvidia* device, no driver in "
            "/proc/driver/nvidia)")


def usable_cores() -> int:
    """The machine's physical cores (logical ones where that cannot be told), no more than
    this process may run on (a node started under `taskset -c 0` has one)."""
    import psutil

    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        cores = min(cores, len(os.sched_getaffinity(0)) or cores)
    return cores


def gpus() -> list[str]:
    """GPU names from nvidia-smi; empty where there is none (or no driver)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def provider_status(providers: tuple[str, ...] = ("cpu", "cuda", "tensorrt")) -> dict[str, str]:
    """For each provider: "usable", or the reason it is not (from a real session)."""
    from exporters.session import session_options
    from toolkit.errors import DeploybenchError
    from toolkit.runners.onnxruntime import create_session

    if find_spec("onnxruntime") is None:
        return {p: "onnxruntime is not installed; pip install onnxruntime-gpu" for p in providers}
    model = _tiny_model()
    status = {}
    for provider in providers:
        try:
            create_session(model, provider, session_options(1, "all"))
            status[provider] = "usable"
        except DeploybenchError as exc:
            status[provider] = str(exc)
        except Exception as exc:  # ORT refusing the provider outright is a reason too
            status[provider] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return status


def _tiny_model() -> bytes:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model.SerializeToString()


def cache_dir() -> Path:
    """Where deploybench keeps what it measures once per machine (XDG_CACHE_HOME honoured)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deploybench"


def peak_gflops(threads: int, refresh: bool = False) -> float:
    """This machine's float32 matrix-product peak with `threads` threads, measured once per
    thread count and cached."""
    from toolkit.flops import cached_peak

    key = (f"{cpu_model()} | {os.cpu_count()} cpus | numpy {versions().get('numpy', '?')} | "
           f"{threads} threads")
    return cached_peak(cache_dir() / "peak.json", key, threads, refresh=refresh)


def describe(with_providers: bool = True, peak_threads: int | None = None) -> dict[str, Any]:
    """Everything a reader needs to know about where the numbers came from."""
    import psutil

    info: dict[str, Any] = {
        "hostname": platform.node(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "instruction_set": instruction_set(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),  # physical ones this process may run on
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpus": gpus(),
        "versions": versions(),
        "frameworks": {f: missing_framework(f) or "usable" for f in FRAMEWORK_MODULES},
    }
    if with_providers:
        info["providers"] = provider_status()
    if peak_threads is not None:  # the CPU peak at the thread count the run uses
        info["peak_gflops"] = peak_gflops(peak_threads)
        info["peak_threads"] = peak_threads
    return info
