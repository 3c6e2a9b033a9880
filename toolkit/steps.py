"""The two steps a child process runs: build a workload, and measure one case.

Each yields records as it goes, so the worker can write them out before anything later fails.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.data import Task, make_batches, quality
from toolkit.errors import BadInputError, ExportFailedError, ProviderUnavailableError
from toolkit.measure import Budget, measure, time_once
from toolkit.results import Record
from toolkit.stats import throughput_rows_per_s

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


@dataclass(frozen=True)
class BuildSpec:
    workload: str
    out_dir: str
    opset: int = 18
    rtol: float = 1e-4
    atol: float = 1e-5
    threads: int = 1


@dataclass(frozen=True)
class BuildFileSpec:
    path: str
    framework: str
    out_dir: str
    onnx_out: str
    opset: int = 18
    rtol: float = 1e-4
    atol: float = 1e-5
    threads: int = 1
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    input_data: str | None = None


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
    from toolkit import workloads

    workload = workloads.get(spec.workload)
    base = {"workload": workload.name, "framework": workload.framework}
    directory = Path(spec.out_dir) / f"{workload.framework}-{workload.name}"
    directory.mkdir(parents=True, exist_ok=True)

    data = workload.dataset()
    inputs = directory / "inputs.npz"
    np.savez(inputs, input=data.x_test)  # every built-in export names its input "input"
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

    exported, parity, onnx_scores, attempts = export_checked(
        EXPORTERS[workload.framework], trained.model, data.x_test, native_scores, data.task,
        directory / "model.onnx", spec, require_free_batch=True)
    if exported is None or parity is None or onnx_scores is None:
        yield Record(**base, phase="export", status="failed", reason="; ".join(attempts))
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


def build_file(spec: BuildFileSpec) -> Iterator[Record]:
    """A user's native model file: load it, fit the inputs, export to ONNX (timed), check parity.

    The model's inputs are checked against --shape / --input-data first; a mismatch raises
    BadInputError, which the parent turns into one line and exit code 2.
    """
    from exporters import EXPORTERS
    from toolkit import inputs as model_inputs
    from toolkit.runners import NATIVE, RUNNERS
    from toolkit.workloads import SCORES

    path = Path(spec.path)
    base = {"workload": path.stem, "framework": spec.framework}
    runner: Any = RUNNERS[NATIVE[spec.framework]].load(path, provider="cpu", threads=spec.threads)
    model = runner.model
    specs = native_input_specs(spec.framework, model, spec.shapes, spec.input_data)
    warnings: list[str] = []
    if spec.input_data:
        raw = model_inputs.read_data_file(Path(spec.input_data))
        data, warnings = model_inputs.fit_data(Path(spec.input_data), raw, specs)
        source = f"file {spec.input_data}"
    else:
        # A torch spec already holds the --shape row; other frameworks fill named dims from it.
        given = {} if spec.framework == "torch" else dict(spec.shapes)
        data = model_inputs.generate(specs, model_inputs.row_shapes(specs, given))
        source = f"generated, seed {model_inputs.SEED}"
    (x,) = data.values()
    native_scores = SCORES[spec.framework](model, x)
    directory = Path(spec.out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    exported, parity, _, attempts = export_checked(
        EXPORTERS[spec.framework], model, x, native_scores, _task(model, native_scores),
        Path(spec.onnx_out), spec, require_free_batch=False)
    inputs_path = directory / "inputs.npz"
    np.savez(inputs_path, **{(exported.input_name if exported else "input"): x})
    info = {"artifact": str(path), "inputs": str(inputs_path), "input_source": source,
            "input_shapes": {k: list(v.shape) for k, v in data.items()}}
    if exported is None or parity is None:
        yield Record(**base, phase="export", status="failed", reason="; ".join(attempts),
                     info=info, warnings=tuple(warnings))
        yield Record(**base, phase="parity", status="skipped", reason="no ONNX file: export failed")
        return
    yield Record(
        **base, phase="export", runtime="onnxruntime", seconds=exported.seconds,
        warnings=tuple(warnings),
        info={**info, "onnx": str(exported.path), "size_bytes": exported.size_bytes,
              "opset": exported.opset, "exporter": exported.method,
              "exporter_version": exported.exporter_version, "batch_free": exported.batch_free,
              "earlier_attempts": attempts},
    )
    yield Record(**base, phase="parity", runtime="onnxruntime", parity=parity,
                 reason="" if parity.passed else "outputs differ beyond tolerance",
                 info={"rows": len(x)})


def _task(model: Any, scores: np.ndarray) -> Task:
    """How to compare a user's model: labels where it looks like a classifier's scores."""
    if hasattr(model, "predict_proba"):
        return "multiclass"
    return "multiclass" if scores.ndim == 2 and scores.shape[1] > 1 else "regression"


def export_checked(
    exporter: Any, model: Any, x: np.ndarray, native_scores: np.ndarray, task: Task,
    target: Path, spec: BuildSpec | BuildFileSpec, *, require_free_batch: bool,
) -> tuple[Any, Any, np.ndarray | None, list[str]]:
    """Try the exporter's methods in order, each into its own file, until one passes parity;
    keep the first that passes, else the last that exported, as `target`.

    Returns (exported, parity, ONNX scores, what went wrong with the methods tried before).
    """
    from exporters.parity import compare
    from toolkit.runners.onnxruntime import create_session, session_options

    target.parent.mkdir(parents=True, exist_ok=True)
    attempts: list[str] = []
    best: tuple[Any, Any, np.ndarray] | None = None
    for method in exporter.methods:
        candidate = target.with_name(f"{target.stem}.{method.replace(' ', '-')}.onnx")
        try:
            exported = exporter.export(model, x[:4], candidate, spec.opset, method,
                                       require_free_batch=require_free_batch)
        except ExportFailedError as exc:
            attempts.append(str(exc))
            continue
        session = create_session(exported.path, "cpu", session_options(spec.threads, "all"))
        scores = np.asarray(session.run(None, {exported.input_name: x})[exported.score_output])
        best = (exported, compare(native_scores, scores, task, spec.rtol, spec.atol), scores)
        if best[1].passed:
            break
        attempts.append(f"{method}: parity failed (max abs error {best[1].max_abs:.3g})")
    for method in exporter.methods:  # keep one file: the chosen one, under its final name
        candidate = target.with_name(f"{target.stem}.{method.replace(' ', '-')}.onnx")
        if best is not None and candidate == best[0].path:
            os.replace(candidate, target)
        else:
            candidate.unlink(missing_ok=True)
    if best is None:
        return None, None, None, attempts
    exported, parity, scores = best
    return dataclasses.replace(exported, path=target), parity, scores, attempts


def native_input_specs(
    framework: str, model: Any, shapes: dict[str, tuple[int, ...]], input_data: str | None
) -> list[Any]:
    """The one input of a native model, as far as the model says; torch models say nothing, so
    their row shape comes from --shape or --input-data."""
    from toolkit import inputs as model_inputs
    from toolkit.modelfile import TensorSpec

    if framework == "keras":
        tensor = model.inputs[0]
        dims = tuple(None if d is None else int(d) for d in tensor.shape)
        return [TensorSpec(tensor.name, np.dtype(tensor.dtype).name, dims)]
    if framework == "sklearn":
        features = getattr(model, "n_features_in_", None)
        if features is None:
            raise BadInputError("the scikit-learn model is not fitted (no n_features_in_); "
                                "fit it before saving")
        return [TensorSpec("input", "float32", (None, int(features)))]
    if input_data:
        (array,) = model_inputs.read_data_file(Path(input_data)).values()
        dtype = "float32" if array.dtype.kind == "f" else array.dtype.name
        return [TensorSpec("input", dtype, (None, *array.shape[1:]))]
    if not shapes:
        raise BadInputError("a torch model file does not say its input shape: give it with "
                            "--shape input=DIMS (one row, e.g. 3x224x224) or pass --input-data")
    if len(shapes) != 1:
        raise BadInputError(f"--shape names {len(shapes)} inputs; a native torch file is "
                            "measured with one input")
    (row,) = shapes.values()
    return [TensorSpec("input", "float32", (None, *row))]


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
    case_info: dict[str, Any] = {"settings": settings}
    if runner_cls.runtime == "onnxruntime":
        from toolkit.flops import flops_per_row

        case_info["flops_per_row"] = flops_per_row(Path(spec.artifact))
    yield Record(**base, phase="load", seconds=load_seconds, peak_rss_mb=peak_rss_mb(),
                 info={"import_seconds": import_seconds, "settings": settings})

    with np.load(spec.inputs) as archive:
        x = {name: archive[name] for name in archive.files}
    sizes = spec.batch_sizes
    if runner.fixed_batch is not None:
        fixed = f"the model's batch dimension is fixed at {runner.fixed_batch}"
        for batch_size in sizes:
            if batch_size != runner.fixed_batch:
                yield Record(**base, phase="infer", variant=runner_cls.idiomatic,
                             batch_size=batch_size, status="skipped", reason=fixed)
        sizes = (runner.fixed_batch,)
    for variant in runner.variants:
        yield from _measure_variant(runner, variant, x, sizes, budget, base, case_info)
    runner.close()


def _measure_variant(
    runner: Any, variant: str, x: dict[str, np.ndarray], sizes: tuple[int, ...], budget: Budget,
    base: dict[str, Any], case_info: dict[str, Any],
) -> Iterator[Record]:
    """First call, then a timed series per batch size; a failure costs this variant only."""
    idiomatic = (runner.runtime == "native" and variant == runner.idiomatic
                 and runner.device == "cpu")
    try:
        seconds = time_once(runner.prepare(variant, make_batches(x, sizes[0])))
    except Exception as exc:  # one variant failing must not lose the others
        log.exception("first inference failed")
        yield Record(**base, phase="first_inference", variant=variant, status="failed",
                     reason=f"{type(exc).__name__}: {exc}", batch_size=sizes[0])
        return
    yield Record(**base, phase="first_inference", variant=variant, seconds=seconds,
                 batch_size=sizes[0], info=case_info)
    for batch_size in sizes:
        try:
            timing = measure(runner.prepare(variant, make_batches(x, batch_size)), budget)
        except Exception as exc:
            yield Record(**base, phase="infer", variant=variant, batch_size=batch_size,
                         status="failed", reason=f"{type(exc).__name__}: {exc}")
            continue
        yield Record(
            **base, phase="infer", variant=variant, batch_size=batch_size, stats=timing.stats,
            throughput_rows_s=throughput_rows_per_s(batch_size, timing.stats.p50_ms),
            peak_rss_mb=peak_rss_mb(), gpu_mb=gpu_memory_mb(runner), warnings=timing.warnings(),
            info={**case_info, "idiomatic": idiomatic},
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
