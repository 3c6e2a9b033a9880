"""The two steps a child process runs: build a workload, and measure one case.

Each yields records as it goes, so the worker can write them out before anything later fails.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.data import make_batch, quality
from toolkit.errors import ExportFailedError, ProviderUnavailableError
from toolkit.measure import Budget, measure, time_once
from toolkit.results import Record
from toolkit.stats import throughput_rows_per_s

log = logging.getLogger(__name__)


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024


@dataclass(frozen=True)
class BuildSpec:
    workload: str
    out_dir: str
    opset: int = 18
    rtol: float = 1e-4
    atol: float = 1e-5
    threads: int = 1


@dataclass(frozen=True)
class MeasureSpec:
    workload: str
    framework: str
    runner: str
    artifact: str
    inputs: str
    provider: str
    batch_sizes: tuple[int, ...]
    budget: dict[str, Any] = field(default_factory=dict)
    threads: int = 1
    optimization: str = "all"


def build(spec: BuildSpec) -> Iterator[Record]:
    """Train natively (timed), save the artifact, export to ONNX (timed), check parity."""
    from exporters import EXPORTERS
    from exporters.parity import compare
    from toolkit import workloads
    from toolkit.runners.onnxruntime import create_session, session_options

    workload = workloads.get(spec.workload)
    base = {"workload": workload.name, "framework": workload.framework}
    directory = Path(spec.out_dir) / f"{workload.framework}-{workload.name}"
    directory.mkdir(parents=True, exist_ok=True)

    data = workload.dataset()
    inputs = directory / "inputs.npy"
    np.save(inputs, data.x_test)
    trained = workload.train(data)
    native_scores = workload.scores(trained.model, data.x_test)
    metric, native_quality = quality(native_scores, data.y_test, data.task)
    artifact = workload.save(trained.model, directory)
    yield Record(
        **base, phase="train", seconds=trained.seconds, peak_rss_mb=peak_rss_mb(),
        info={
            "rows": trained.rows, "epochs": trained.epochs,
            "seconds_per_epoch": trained.seconds / trained.epochs,
            "metric": metric, "native_quality": native_quality, "dataset": data.name,
            "task": data.task, "test_rows": len(data.x_test), "artifact": str(artifact),
            "artifact_bytes": artifact.stat().st_size, "inputs": str(inputs),
        },
    )

    exporter = EXPORTERS[workload.framework]
    attempts: list[str] = []
    for method in exporter.methods:
        try:
            exported = exporter.export(
                trained.model, data.x_test[:4], directory / "model.onnx", spec.opset, method
            )
        except ExportFailedError as exc:
            attempts.append(str(exc))
            continue
        session = create_session(exported.path, "cpu", session_options(spec.threads, "all"))
        outputs = session.run(None, {exported.input_name: data.x_test})
        onnx_scores = np.asarray(outputs[exported.score_output])
        parity = compare(native_scores, onnx_scores, data.task, spec.rtol, spec.atol)
        if parity.passed or method == exporter.methods[-1]:
            break
        attempts.append(f"{method}: parity failed (max abs error {parity.max_abs:.3g})")
    else:
        reason = "; ".join(attempts)
        yield Record(**base, phase="export", status="failed", reason=reason)
        yield Record(**base, phase="parity", status="skipped", reason="no ONNX file: export failed")
        return

    yield Record(
        **base, phase="export", runtime="onnxruntime", seconds=exported.seconds,
        info={
            "onnx": str(exported.path), "size_bytes": exported.size_bytes,
            "opset": exported.opset, "exporter": exported.method,
            "exporter_version": exported.exporter_version, "batch_free": exported.batch_free,
            "earlier_attempts": attempts,
        },
    )
    _, onnx_quality = quality(onnx_scores, data.y_test, data.task)
    yield Record(
        **base, phase="parity", runtime="onnxruntime", parity=parity,
        reason="" if parity.passed else "outputs differ beyond tolerance",
        info={"metric": metric, "native_quality": native_quality, "onnx_quality": onnx_quality},
    )


def measure_case(spec: MeasureSpec) -> Iterator[Record]:
    """Cold start (import, load, first call), then every variant at every batch size."""
    from toolkit.runners import RUNNERS

    runner_cls = RUNNERS[spec.runner]
    budget = Budget(**spec.budget)
    base: dict[str, Any] = {
        "workload": spec.workload, "framework": spec.framework, "runtime": runner_cls.runtime,
        "provider": spec.provider, "threads": spec.threads,
    }
    import_seconds = time_once(runner_cls.import_framework)
    kwargs: dict[str, Any] = {"provider": spec.provider, "threads": spec.threads}
    if runner_cls.runtime == "onnxruntime":
        kwargs["optimization"] = spec.optimization
    try:
        runner: Any = None

        def load() -> None:
            nonlocal runner
            runner = runner_cls.load(Path(spec.artifact), **kwargs)

        load_seconds = time_once(load)
    except ProviderUnavailableError as exc:
        device = "cpu" if spec.provider == "cpu" else "cuda:0"
        yield Record(**base, phase="load", status="skipped", reason=str(exc), device=device)
        for batch_size in spec.batch_sizes:
            yield Record(**base, phase="infer", status="skipped", reason=str(exc), device=device,
                         variant=runner_cls.idiomatic, batch_size=batch_size)
        return
    base.update(provider=runner.provider, device=runner.device)
    settings = dict(runner.settings)
    yield Record(**base, phase="load", seconds=load_seconds, peak_rss_mb=peak_rss_mb(),
                 info={"import_seconds": import_seconds, "settings": settings})

    x = np.load(spec.inputs)
    sizes = spec.batch_sizes
    if runner.fixed_batch is not None:
        fixed = f"the model's batch dimension is fixed at {runner.fixed_batch}"
        for batch_size in sizes:
            if batch_size != runner.fixed_batch:
                yield Record(**base, phase="infer", variant=runner_cls.idiomatic,
                             batch_size=batch_size, status="skipped", reason=fixed)
        sizes = (runner.fixed_batch,)
    for variant in runner.variants:
        yield from _measure_variant(runner, variant, x, sizes, budget, base, settings)
    runner.close()


def _measure_variant(
    runner: Any, variant: str, x: np.ndarray, sizes: tuple[int, ...], budget: Budget,
    base: dict[str, Any], settings: dict[str, Any],
) -> Iterator[Record]:
    """First call, then a timed series per batch size; a failure costs this variant only."""
    idiomatic = (runner.runtime == "native" and variant == runner.idiomatic
                 and runner.device == "cpu")
    try:
        seconds = time_once(runner.prepare(variant, make_batch(x, sizes[0])))
    except Exception as exc:  # one variant failing must not lose the others
        log.exception("first inference failed")
        yield Record(**base, phase="first_inference", variant=variant, status="failed",
                     reason=f"{type(exc).__name__}: {exc}", batch_size=sizes[0])
        return
    yield Record(**base, phase="first_inference", variant=variant, seconds=seconds,
                 batch_size=sizes[0], info={"settings": settings})
    for batch_size in sizes:
        try:
            timing = measure(runner.prepare(variant, make_batch(x, batch_size)), budget)
        except Exception as exc:
            yield Record(**base, phase="infer", variant=variant, batch_size=batch_size,
                         status="failed", reason=f"{type(exc).__name__}: {exc}")
            continue
        yield Record(
            **base, phase="infer", variant=variant, batch_size=batch_size, stats=timing.stats,
            throughput_rows_s=throughput_rows_per_s(batch_size, timing.stats.p50_ms),
            peak_rss_mb=peak_rss_mb(), gpu_mb=gpu_memory_mb(runner), warnings=timing.warnings(),
            info={"settings": settings, "idiomatic": idiomatic},
        )


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
