"""The build steps a child runs: a built-in workload's, or a user's native model file's.

A built-in workload is trained, saved, exported and checked for parity; a user's native model
file is loaded, its inputs fitted, then exported and checked.

Each yields records as it goes, so the worker can write them out before anything later fails.
What a framework knows about its own models (their outputs, their input) comes from that
framework's exporter; loading a user's file, from that framework's native runner.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.data import quality
from toolkit.errors import BadInputError
from toolkit.memory import peak_rss_mb
from toolkit.modelfile import TensorSpec
from toolkit.results import Record

CALIBRATION_ROWS = 200


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """What both build steps export with: the opset, parity tolerances, the threads."""

    opset: int = 18
    rtol: float = 1e-4
    atol: float = 1e-5
    threads: int = 1


@dataclass(frozen=True, kw_only=True)
class BuildSpec(ExportOptions):
    workload: str
    out_dir: str


@dataclass(frozen=True, kw_only=True)
class BuildFileSpec(ExportOptions):
    path: str
    framework: str
    out_dir: str
    onnx_out: str
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    input_data: str | None = None
    calibration: str | None = None  # rows for int8-static; the inputs where not given
    name: str | None = None  # the workload's name on its records (default: the file's stem)

    def __post_init__(self) -> None:  # JSON brings the shapes back as lists
        object.__setattr__(self, "shapes", {k: tuple(v) for k, v in self.shapes.items()})


def _tolerances(spec: ExportOptions) -> Any:
    from exporters.checked import ExportSettings

    return ExportSettings(opset=spec.opset, rtol=spec.rtol, atol=spec.atol, threads=spec.threads)


def build(spec: BuildSpec) -> Iterator[Record]:
    """Train natively (timed), save the artifact, export to ONNX (timed), check parity."""
    from exporters import EXPORTERS
    from exporters.checked import export_with_parity
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
    outcome = export_with_parity(
        EXPORTERS[workload.framework], trained.model, data.x_test, native_scores, data.task,
        directory / "model.onnx", _tolerances(spec), require_free_batch=True)
    calibration = directory / "calibration.npz"  # training rows, for int8-static
    np.savez(calibration, input=data.x_train[:CALIBRATION_ROWS])
    yield from _export_records(base, outcome, {
        **_reference(directory, native_scores, data.task,
                     None if data.random_labels else data.y_test),
        "calibration": str(calibration)})
    if outcome.parity is not None and outcome.onnx_scores is not None:
        _, onnx_quality = quality(outcome.onnx_scores, data.y_test, data.task)
        yield _parity_record(base, outcome.parity, {
            "metric": metric, "native_quality": native_quality, "onnx_quality": onnx_quality})


def build_file(spec: BuildFileSpec) -> Iterator[Record]:
    """A user's native model file: load it, fit the inputs, export to ONNX (timed), check parity.

    The model's inputs are checked against --shape / --input-data first; a mismatch raises
    BadInputError, which the parent turns into one line and exit code 2.
    """
    from exporters import EXPORTERS
    from exporters.checked import export_with_parity
    from toolkit import inputs as model_inputs
    from toolkit.runners import native_runner

    path = Path(spec.path)
    base = {"workload": spec.name or path.stem, "framework": spec.framework}
    exporter = EXPORTERS[spec.framework]
    model = native_runner(spec.framework).load_model(path)
    declared = exporter.input_spec(model)
    raw = model_inputs.read_data_file(Path(spec.input_data)) if spec.input_data else None
    specs = [declared if declared is not None else _spec_from_user(spec.shapes, raw)]
    warnings: list[str] = []
    if raw is not None:
        assert spec.input_data is not None
        data, warnings = model_inputs.fit_data(Path(spec.input_data), raw, specs)
        source = f"file {spec.input_data}"
    else:
        # A spec made from --shape already holds the row; a declared one fills named dims.
        given = dict(spec.shapes) if declared is not None else {}
        data = model_inputs.generate(specs, model_inputs.row_shapes(specs, given))
        source = f"generated, seed {model_inputs.SEED}"
    (x,) = data.values()
    calibration = None
    if spec.calibration:  # --calibration-data: checked against the same input as --input-data
        rows = model_inputs.read_data_file(Path(spec.calibration), "--calibration-data")
        fitted, _ = model_inputs.fit_data(Path(spec.calibration), rows, specs,
                                          "--calibration-data")
        calibration = Path(spec.out_dir) / "calibration.npz"
        calibration.parent.mkdir(parents=True, exist_ok=True)
        np.savez(calibration, **fitted)
    native_scores = exporter.scores(model, x)
    directory = Path(spec.out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    task = exporter.task(model, native_scores)
    outcome = export_with_parity(exporter, model, x, native_scores, task, Path(spec.onnx_out),
                                 _tolerances(spec), require_free_batch=False)
    inputs_path = directory / "inputs.npz"
    name = outcome.exported.input_name if outcome.exported else "input"
    np.savez(inputs_path, **{name: x})
    info = {"artifact": str(path), "inputs": str(inputs_path), "input_source": source,
            "input_shapes": {k: list(v.shape) for k, v in data.items()},
            "calibration": str(calibration or inputs_path),
            **_reference(directory, native_scores, task)}
    yield from _export_records(base, outcome, info, tuple(warnings))
    if outcome.parity is not None:
        yield _parity_record(base, outcome.parity, {"rows": len(x)})


def _spec_from_user(shapes: dict[str, tuple[int, ...]], raw: dict[str, np.ndarray] | None
                    ) -> TensorSpec:
    """The one input of a model that does not declare it, from --input-data or --shape."""
    if raw is not None:
        (array,) = raw.values()
        dtype = "float32" if array.dtype.kind == "f" else array.dtype.name
        return TensorSpec("input", dtype, (None, *array.shape[1:]))
    if not shapes:
        raise BadInputError("the model file does not say its input shape: give it with "
                            "--shape input=DIMS (one row, e.g. 3x224x224) or pass --input-data")
    if len(shapes) != 1:
        raise BadInputError(f"--shape names {len(shapes)} inputs; a native model file is "
                            "measured with one input")
    (row,) = shapes.values()
    return TensorSpec("input", "float32", (None, *row))


def _reference(directory: Path, native_scores: np.ndarray, task: str,
               labels: np.ndarray | None = None) -> dict[str, Any]:
    """Save the native outputs on the inputs' rows (and the true labels where known): each ONNX
    measuring child checks its own session against them, and each recipe its accuracy."""
    path = directory / "reference.npz"
    np.savez(path, scores=native_scores, **({} if labels is None else {"labels": labels}))
    return {"reference": str(path), "task": task}


def _export_records(base: dict[str, str], outcome: Any, info: dict[str, Any],
                    warnings: tuple[str, ...] = ()) -> Iterator[Record]:
    exported = outcome.exported
    if exported is None or outcome.parity is None:
        yield Record(**base, phase="export", status="failed", reason="; ".join(outcome.attempts),
                     info=info, warnings=warnings)
        yield Record(**base, phase="parity", status="skipped", reason="no ONNX file: export failed")
        return
    yield Record(
        **base, phase="export", runtime="onnxruntime", seconds=exported.seconds,
        warnings=warnings,
        info={**info, "onnx": str(exported.path), "size_bytes": exported.size_bytes,
              "opset": exported.opset, "exporter": exported.method,
              "exporter_version": exported.exporter_version, "batch_free": exported.batch_free,
              "score_output": exported.score_output, "earlier_attempts": outcome.attempts},
    )


def _parity_record(base: dict[str, str], parity: Any, info: dict[str, Any]) -> Record:
    from exporters.parity import explain

    return Record(**base, phase="parity", runtime="onnxruntime", parity=parity,
                  reason=explain(parity), info=info)
