"""Bring your own model: benchmark a user's ONNX or native model file, or export it to ONNX.

ONNX files are measured as they are, on each provider. Native files (.keras, .pt, .pt2,
scikit-learn pickles) are exported to ONNX and checked for parity in a child, then measured
natively and on ONNX Runtime like a built-in workload. Everything that can be checked before a
child starts is checked here, so bad input ends in one line.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit import environment
from toolkit import inputs as model_inputs
from toolkit.errors import BadInputError
from toolkit.isolate import run_child
from toolkit.modelfile import ModelFile, open_model
from toolkit.pipeline import Progress, RunOutcome, Sources, _measure, _now, _stamp, prepare_out_dir
from toolkit.results import Record, ResultsFile
from toolkit.suite import Case, Suite, cases


@dataclass(frozen=True)
class ModelRequest:
    """A model file and how to feed it, as the user gave them."""

    path: Path
    shapes: tuple[str, ...] = ()
    input_data: Path | None = None
    trust_pickle: bool = False


@dataclass(frozen=True)
class Checked:
    model: ModelFile
    shapes: dict[str, tuple[int, ...]]
    data: dict[str, np.ndarray] | None  # ONNX files: the inputs, ready; native: made in a child
    warnings: list[str]


def check(request: ModelRequest) -> Checked:
    """Open the file and fit its inputs, or raise BadInputError naming what to fix."""
    model = open_model(request.path, trust_pickle=request.trust_pickle)
    shapes = model_inputs.parse_shapes(request.shapes)
    raw = model_inputs.read_data_file(request.input_data) if request.input_data else None
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
    return Checked(model, shapes, data, warnings)


def bench_suite(
    *, providers: list[str] | None = None, batch_sizes: tuple[int, ...] | None = None,
    threads: int | None = None, optimization: str | None = None, timeout_s: float | None = None,
    opset: int | None = None,
) -> Suite:
    """The settings of one `bench`: the defaults, with the command line's choices on top."""
    from toolkit.suite import default_threads

    base = Suite(name="bench", workloads=("bench",), batch_sizes=(1, 8, 64), providers=("cpu",),
                 threads=default_threads())
    return base.replace(providers=tuple(providers) if providers else None,
                        batch_sizes=batch_sizes, threads=threads, optimization=optimization,
                        timeout_s=timeout_s, opset=opset)


def bench(
    request: ModelRequest, suite: Suite, out_dir: Path, *, argv: Sequence[str] = (),
    progress: Progress | None = None,
) -> RunOutcome:
    checked = check(request)
    out_dir = prepare_out_dir(out_dir)
    model = checked.model
    key = f"{model.framework}/{model.name}"
    suite = dataclasses.replace(suite, workloads=(key,))
    report = progress or (lambda done, total, label: None)
    results = ResultsFile(
        out_dir / "results.json",
        {"suite": dataclasses.asdict(suite), "model": str(request.path.resolve()),
         "model_kind": model.kind, "argv": list(argv), "started": _now(), "finished": None,
         "interrupted": False, "input_warnings": checked.warnings,
         "environment": environment.describe(with_peak=True)},
    )
    results.save()
    ident = {"workload": model.name, "framework": model.framework}
    if model.kind == "onnx":
        assert checked.data is not None
        inputs = out_dir / "inputs.npz"
        np.savez(inputs, **checked.data)
        sources = Sources(onnx=str(request.path.resolve()), inputs=str(inputs))
        plan = [Case(key, "onnxruntime", p) for p in suite.providers]
        total, done = len(plan), 0
    else:
        plan = cases(suite, key)
        total, done = 1 + len(plan), 1
        report(0, total, f"{model.path.name}: loading, exporting, checking parity")
        built = _build_file(checked, request, suite, out_dir, out_dir / "model.onnx")
        results.append(_stamp(built, f"{key} build"))
        sources = Sources.from_records(built)
    try:
        for case in plan:
            report(done, total, f"{model.path.name}: {case.runner} on {case.provider}")
            results.append(_stamp(_measure(suite, case, ident, sources, out_dir), case.label))
            done += 1
    except KeyboardInterrupt:
        results.update_run(finished=_now(), interrupted=True)
        return RunOutcome(results.path, results.records, interrupted=True)
    results.update_run(finished=_now())
    return RunOutcome(results.path, results.records, interrupted=False)


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
    with tempfile.TemporaryDirectory(prefix="deploybench-export-") as tmp:
        return _build_file(checked, request, suite, Path(tmp), onnx_out.resolve())


def _build_file(
    checked: Checked, request: ModelRequest, suite: Suite, out_dir: Path, onnx_out: Path
) -> list[Record]:
    model = checked.model
    spec = {"task": "build_file", "path": str(model.path.resolve()), "framework": model.framework,
            "out_dir": str(out_dir / "artifacts"), "onnx_out": str(onnx_out),
            "opset": suite.opset, "rtol": suite.rtol, "atol": suite.atol,
            "threads": suite.threads, "shapes": checked.shapes,
            "input_data": str(request.input_data.resolve()) if request.input_data else None}
    child = run_child(spec, out_dir, timeout_s=suite.timeout_s, threads=suite.threads,
                      name=f"build-{model.path.name}")
    if child.bad_input:
        raise BadInputError(f"{request.path}: {child.bad_input}")
    records = list(child.records)
    if child.failure:
        seen = {r.phase for r in records}
        records += [Record(model.name, model.framework, phase, status="failed",
                           reason=child.failure) for phase in ("export", "parity")
                    if phase not in seen]
    return records
