"""`bench`'s planner: a user's ONNX or native model file, checked, then built and measured.

ONNX files are measured as they are, on each provider. Native files (.keras, .pt, .pt2,
scikit-learn pickles) are exported to ONNX and checked for parity in a child (a `BuildFile`
step), then measured natively and on ONNX Runtime like a built-in workload. Everything that can
be checked before a child starts is checked here, so bad input ends in one line. `export` runs
the build step alone.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit import environment
from toolkit import inputs as model_inputs
from toolkit.errors import BadInputError
from toolkit.modelfile import ModelFile, open_model
from toolkit.plans.base import Plan
from toolkit.plans.run import in_rounds, with_recipes
from toolkit.plans.steps import BuildFile, Context, Sources, Step, build_label
from toolkit.recipes import NATIVE_RECIPES
from toolkit.results import Record, prepare_out_dir, save_npz, write_atomic
from toolkit.suite import Suite, cases


@dataclass(frozen=True)
class ModelRequest:
    """A model file and how to feed it, as the user gave them."""

    path: Path
    shapes: tuple[str, ...] = ()
    input_data: Path | None = None
    trust_pickle: bool = False
    calibration_data: Path | None = None  # rows int8-static calibrates on

    def to_dict(self) -> dict[str, Any]:
        """What results.json keeps to make the plan again (not the trust: that is asked anew)."""
        return {"path": str(self.path.resolve()), "shapes": list(self.shapes),
                "input_data": str(self.input_data.resolve()) if self.input_data else None,
                "calibration_data": (str(self.calibration_data.resolve())
                                     if self.calibration_data else None)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ModelRequest:
        if not isinstance(raw.get("path"), str) or not isinstance(raw.get("shapes", []), list):
            raise TypeError("expected a model path and a list of shapes")
        data, calibration = raw.get("input_data"), raw.get("calibration_data")
        return cls(Path(raw["path"]), tuple(str(s) for s in raw.get("shapes", ())),
                   Path(data) if data else None,
                   calibration_data=Path(calibration) if calibration else None)


@dataclass(frozen=True)
class Checked:
    model: ModelFile
    shapes: dict[str, tuple[int, ...]]
    data: dict[str, np.ndarray] | None  # ONNX files: the inputs, ready; native: made in a child
    warnings: list[str]
    calibration: dict[str, np.ndarray] | None = None  # ONNX files, from --calibration-data


def check(request: ModelRequest) -> Checked:
    """Open the file and fit its inputs, or raise BadInputError naming what to fix."""
    model = open_model(request.path, trust_pickle=request.trust_pickle)
    shapes = model_inputs.parse_shapes(request.shapes)
    raw = model_inputs.read_data_file(request.input_data) if request.input_data else None
    rows = (model_inputs.read_data_file(request.calibration_data, CALIBRATION_FLAG)
            if request.calibration_data else None)
    missing = environment.missing_framework(model.framework) if model.framework != "onnx" else None
    if missing:
        raise BadInputError(f"{request.path}: {missing}")
    if model.kind != "onnx":
        if model.framework == "torch" and not shapes and raw is None:
            raise BadInputError(
                f"{request.path}: a torch model file does not say its input shape: give it with "
                "--shape input=DIMS (one row, e.g. 3x224x224) or pass --input-data"
            )
        return Checked(model, shapes, None, [])
    from toolkit.modelfile import inspect_onnx

    specs = inspect_onnx(request.path).inputs
    if raw is not None:
        assert request.input_data is not None
        data, warnings = model_inputs.fit_data(request.input_data, raw, specs)
    else:
        data = model_inputs.generate(specs, model_inputs.row_shapes(specs, shapes))
        warnings = []
    calibration = None
    if rows is not None:
        assert request.calibration_data is not None
        calibration, _ = model_inputs.fit_data(request.calibration_data, rows, specs,
                                               CALIBRATION_FLAG)
    return Checked(model, shapes, data, warnings, calibration)


def bench_suite(
    *, providers: list[str] | None = None, batch_sizes: tuple[int, ...] | None = None,
    threads: int | None = None, optimization: str | None = None, timeout_s: float | None = None,
    opset: int | None = None, rounds: int | None = None, recipes: list[str] | None = None,
    max_quality_drop: str | None = None,
) -> Suite:
    """The settings of one `bench`: the defaults, with the command line's choices on top."""
    from toolkit.suite import DEFAULT_ROUNDS, default_threads

    base = Suite(name="bench", workloads=("bench",), batch_sizes=(1, 8, 64), providers=("cpu",),
                 threads=default_threads(), rounds=DEFAULT_ROUNDS)
    return base.replace(providers=tuple(providers) if providers else None,
                        batch_sizes=batch_sizes, threads=threads, optimization=optimization,
                        timeout_s=timeout_s, opset=opset, rounds=rounds,
                        recipes=tuple(recipes) if recipes else None,
                        max_quality_drop=max_quality_drop)


CALIBRATION_FLAG = "--calibration-data"


def plan_model(request: ModelRequest, suite: Suite, out_dir: Path, *,
               keep_inputs: bool = False) -> Plan:
    """The steps that benchmark one model file: for a native file, its export and parity check,
    then its cases; for an ONNX file, ONNX Runtime on each provider (its inputs are written to
    `out_dir` now, unless `keep_inputs` and they are there already: a resumed run times the
    data its finished steps timed)."""
    model = prepare_model(request, suite, out_dir, keep_inputs)
    suite = model.suite
    steps, measures = with_recipes(model.key, suite, cases(suite, model.key), model.after,
                                   model.sources)
    steps = [*model.build, *steps, *in_rounds(measures, suite.rounds)]
    run = {"command": "bench", "suite": suite.to_dict(), "request": request.to_dict(),
           "input_warnings": model.warnings}
    return Plan(suite, steps, run)


@dataclass(frozen=True)
class Planned:
    """A model file made ready for a plan: its key, the step that builds its files (none for an
    ONNX file) and what its measuring steps read them from."""

    key: str
    suite: Suite
    build: list[Step]
    after: str | None
    sources: Sources | None
    warnings: list[str]


def prepare_model(request: ModelRequest, suite: Suite, out_dir: Path,
                  keep_inputs: bool, name: str | None = None) -> Planned:
    """The model file checked, its inputs written to `out_dir`, and how its steps find them;
    its workload is called `name` (default: the file's stem)."""
    checked = check(request)
    model = checked.model
    for recipe in suite.recipes:
        wanted = NATIVE_RECIPES.get(recipe)
        if wanted and wanted != model.framework:
            raise BadInputError(f"--recipes {recipe}: applies to {wanted} models; "
                                f"{request.path} is a {model.framework} model")
    key = f"{model.framework}/{name or model.name}"
    suite = dataclasses.replace(suite, workloads=(key,))
    out_dir = prepare_out_dir(out_dir)
    if model.kind != "onnx":
        build: list[Step] = [_build_step(checked, request, out_dir / "model.onnx", key)]
        return Planned(key, suite, build, build_label(key), None, checked.warnings)
    assert checked.data is not None
    inputs = out_dir / "inputs.npz"
    if not (keep_inputs and inputs.is_file()):  # whole or not at all: a resume reuses it
        write_atomic(inputs, lambda tmp: save_npz(tmp, checked.data))
    calibration = None
    if checked.calibration is not None:
        calibration = out_dir / "calibration.npz"
        write_atomic(calibration, lambda tmp: save_npz(tmp, checked.calibration))
    sources = Sources(onnx=str(request.path.resolve()), inputs=str(inputs),
                      calibration=str(calibration) if calibration else None)
    return Planned(key, suite, [], None, sources, checked.warnings)


def export(
    request: ModelRequest, onnx_out: Path, *, opset: int = 18, threads: int = 1,
    timeout_s: float = 600.0,
) -> list[Record]:
    """Export a native file to `onnx_out` and check parity; returns the export and parity
    records (the export record says `failed` with the exporter's words when it fails)."""
    checked = check(request)
    if checked.model.kind == "onnx":
        raise BadInputError(f"{request.path} is already ONNX; export takes a native model file")
    if onnx_out.suffix.lower() != ".onnx":
        raise BadInputError(f"--out {onnx_out}: name the ONNX file to write, e.g. model.onnx")
    prepare_out_dir(onnx_out.parent)
    suite = Suite(name="export", workloads=("export",), opset=opset, threads=threads,
                  timeout_s=timeout_s)
    step = _build_step(checked, request, onnx_out.resolve())
    with tempfile.TemporaryDirectory(prefix="deploybench-export-") as tmp:
        return step.execute(Context(suite, Path(tmp)))


def _build_step(checked: Checked, request: ModelRequest, onnx_out: Path,
                key: str | None = None) -> BuildFile:
    model = checked.model
    def resolved(path: Path | None) -> Path | None:
        return path.resolve() if path is not None else None

    return BuildFile(key or f"{model.framework}/{model.name}", model.path.resolve(), onnx_out,
                     checked.shapes, resolved(request.input_data),
                     resolved(request.calibration_data))


def stored_request(stored: Mapping[str, Any], trust_pickle: bool) -> ModelRequest:
    """The model request a results.json's run section keeps, with the trust given now."""
    try:
        request = ModelRequest.from_dict(stored.get("request") or {})
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadInputError(f"the model request stored in its run section is not usable "
                            f"({exc})") from None
    return dataclasses.replace(request, trust_pickle=trust_pickle)


def replan(stored: Mapping[str, Any], suite: Suite, out_dir: Path, trust_pickle: bool) -> Plan:
    """A bench's plan, made again from its results.json (the inputs it timed kept)."""
    request = stored_request(stored, trust_pickle)
    try:
        return plan_model(request, suite, out_dir, keep_inputs=True)
    except BadInputError as exc:
        raise BadInputError(f"--resume {out_dir}: the model it benchmarks cannot be used now: "
                            f"{exc}") from None
