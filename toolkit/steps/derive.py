"""The derive step a child runs: an ONNX recipe (int8, fp16, offline-optimised) and its accuracy.

The recipe is made from the exported fp32 file, then judged against the native model on the
held-out rows.

The recipes are in `toolkit.recipes`; making them is ONNX Runtime's own quantization tools,
onnxconverter-common's float16 conversion and ORT's optimized_model_filepath.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exporters.base import first_line, task_from_scores
from exporters.parity import compare, explain, judge_quality
from exporters.session import open_session, session_options
from toolkit.recipes import BY_QUALITY, QualityRule
from toolkit.results import Record


@dataclass(frozen=True)
class DeriveSpec:
    workload: str
    framework: str
    recipe: str
    source: str  # the fp32 ONNX file
    out_dir: str
    inputs: str  # the held-out rows (inputs.npz)
    calibration: str  # rows to calibrate int8-static on (npz, one array per input)
    reference: str  # reference.npz: the native scores on `inputs` (and labels where known)
    score_output: int = 0
    output_task: str = ""  # how to compare outputs; "" where no reference exists yet
    max_quality_drop: str = "1%"
    rtol: float = 1e-4
    atol: float = 1e-5
    threads: int = 1
    judged_from: int = 0  # rows before this calibrated the recipe (the inputs' first half)


def derive(spec: DeriveSpec) -> Iterator[Record]:
    """Make the recipe's file (timed), then judge its outputs against the native ones."""
    base = {"workload": spec.workload, "framework": spec.framework, "recipe": spec.recipe,
            "runtime": "onnxruntime"}
    source = Path(spec.source)
    target = Path(spec.out_dir) / f"{source.stem}.{spec.recipe}.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not Path(spec.reference).is_file():  # an ONNX file run as it is: it is its own reference
        np.savez(spec.reference, scores=_scores(source, spec))
    if not spec.output_task:  # read from the reference, so every recipe is judged alike
        with np.load(spec.reference) as archive:
            spec = dataclasses.replace(spec, output_task=task_from_scores(archive["scores"]))
    warnings: tuple[str, ...] = ()
    if spec.recipe == "int8-static" and spec.calibration == spec.inputs:
        with np.load(spec.inputs) as archive:  # calibrated on one half, judged on the other
            rows = min(len(archive[n]) for n in archive.files)
        if rows >= 2:
            spec = dataclasses.replace(spec, judged_from=rows // 2)
            warnings = (f"int8-static calibrated on the first {spec.judged_from} of the {rows} "
                        f"input rows (no --calibration-data) and judged on the other "
                        f"{rows - spec.judged_from}",)
        else:
            warnings = ("int8-static calibrated on the one input row it is judged on (no "
                        "--calibration-data): give more rows with --input-data",)
    recorded = {"reference": spec.reference, "task": spec.output_task,
                "score_output": spec.score_output, "judged_from": spec.judged_from}
    started = time.perf_counter()
    try:
        method = MAKERS[spec.recipe](source, target, spec)
    except Exception as exc:  # a quantizer or converter gap is a result like any other
        yield Record(**base, phase="export", status="failed",
                     reason=f"{spec.recipe}: {type(exc).__name__}: {first_line(exc)}")
        yield Record(**base, phase="parity", status="skipped", reason="no file: the recipe failed")
        return
    seconds = time.perf_counter() - started
    yield Record(**base, phase="export", seconds=seconds, warnings=warnings, info={
        "onnx": str(target), "size_bytes": target.stat().st_size,
        "fp32_bytes": source.stat().st_size, "exporter": method, **recorded})
    try:
        got = _scores(target, spec)
    except Exception as exc:  # e.g. float16 kernels ONNX Runtime's CPU provider lacks
        yield Record(**base, phase="parity", status="skipped",
                     reason=f"its accuracy could not be computed on the CPU provider "
                            f"({type(exc).__name__}: {first_line(exc)})")
        return
    parity = judge(spec, got[spec.judged_from:])
    yield Record(**base, phase="parity", parity=parity, reason=explain(parity),
                 info={"rows": len(got) - spec.judged_from})


def judge(spec: DeriveSpec, got: np.ndarray) -> Any:
    """The recipe's outputs against the native model's: by the accuracy criterion where the
    recipe changes the arithmetic, else by the fp32 tolerances."""
    with np.load(spec.reference) as archive:
        expected = archive["scores"][spec.judged_from:]
        labels = archive["labels"][spec.judged_from:] if "labels" in archive.files else None
    if spec.recipe in BY_QUALITY:
        return judge_quality(expected, got, spec.output_task, labels,  # type: ignore[arg-type]
                             QualityRule.parse(spec.max_quality_drop), spec.rtol, spec.atol)
    return compare(expected, got, spec.output_task, spec.rtol, spec.atol)  # type: ignore[arg-type]


def _scores(path: Path, spec: DeriveSpec) -> np.ndarray:
    """The file's parity output on the held-out rows, from a CPU session."""
    from toolkit.runners import RunnerConfig
    from toolkit.runners.onnxruntime import OrtRunner

    runner = OrtRunner.load(path, RunnerConfig(threads=spec.threads))
    with np.load(spec.inputs) as archive:
        return np.asarray(runner.outputs({n: archive[n] for n in archive.files})[
            spec.score_output])


def _without_shapes(source: Path, directory: Path) -> Path:
    """A copy of the model without its recorded intermediate shapes, which the quantizer's own
    shape inference would contradict (exporters record them for their example batch)."""
    import onnx

    model = onnx.load(str(source))
    del model.graph.value_info[:]
    copy = directory / source.name
    onnx.save_model(model, str(copy))
    return copy


def _int8_dynamic(source: Path, target: Path, spec: DeriveSpec) -> str:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        quantize_dynamic(_without_shapes(source, Path(tmp)), target,
                         weight_type=QuantType.QInt8)
    return "onnxruntime.quantization.quantize_dynamic (QInt8 weights)"


def _int8_static(source: Path, target: Path, spec: DeriveSpec) -> str:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from toolkit.runners import RunnerConfig
    from toolkit.runners.onnxruntime import OrtRunner

    with np.load(spec.calibration) as archive:  # by the model's input names, as it is fed
        rows = OrtRunner.load(source, RunnerConfig()).feed(
            {name: archive[name][:spec.judged_from or None] for name in archive.files})
    names = list(rows)
    count = min(len(v) for v in rows.values())

    class Rows(CalibrationDataReader):  # one row at a time, as a served request would come
        def __init__(self) -> None:
            self.index = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.index >= count:
                return None
            self.index += 1
            return {n: rows[n][self.index - 1:self.index] for n in names}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(_without_shapes(source, Path(tmp))), str(prepared),
                          skip_symbolic_shape=True)
        quantize_static(prepared, target, Rows(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8)
    return f"onnxruntime.quantization.quantize_static (QDQ, per channel, {count} rows)"


def _fp16(source: Path, target: Path, spec: DeriveSpec) -> str:
    import onnx
    from onnxconverter_common import float16

    model = float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))
    return "onnxconverter_common.float16 (float32 inputs and outputs kept)"


def _ort_offline(source: Path, target: Path, spec: DeriveSpec) -> str:
    open_session(source, session_options(spec.threads, "all", optimized_model_path=target))
    return (f"onnxruntime optimized_model_filepath (ORT_ENABLE_ALL, CPU provider, "
            f"{spec.threads} threads)")


MAKERS = {"int8-dynamic": _int8_dynamic, "int8-static": _int8_static, "fp16": _fp16,
          "ort-offline": _ort_offline}

