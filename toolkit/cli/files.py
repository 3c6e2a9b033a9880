"""`export`, `inspect` and `report`: a model file to ONNX, an ONNX file read, reports rewritten."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from toolkit.cli.common import (
    TOOLS,
    InputDataOption,
    ShapeOption,
    TrustOption,
    app,
    error,
    examples,
    fail,
    out,
    warn,
)
from toolkit.errors import BadInputError, DeploybenchError


@app.command(rich_help_panel=TOOLS, epilog=examples(
    "deploybench export model.keras --out model.onnx",
    "deploybench export resnet.pt --shape 3x224x224 --out resnet.onnx --opset 17",
    "deploybench export forest.joblib --trust-pickle --input-data rows.npy --out forest.onnx",
))
def export(
    path: Annotated[Path, typer.Argument(
        help="native model file: .keras, .pt (TorchScript), .pt2 (torch.export), .joblib/.pkl")],
    out_file: Annotated[Path, typer.Option("--out", help="the ONNX file to write")],
    opset: Annotated[int, typer.Option(help="ONNX opset")] = 18,
    input_data: InputDataOption = None,
    shape: ShapeOption = None,
    trust_pickle: TrustOption = False,
) -> None:
    """Export a native model file to ONNX and check its parity with the native model.

    Exit code 1 when the export or the parity check fails.
    """
    from toolkit.plans.model import ModelRequest
    from toolkit.plans.model import export as export_model
    from toolkit.report.summary import parity_text
    from toolkit.report.units import duration

    request = ModelRequest(path, tuple(shape or ()), input_data, trust_pickle)
    try:
        records = export_model(request, out_file, opset=opset)
    except DeploybenchError as exc:
        raise fail(exc) from None
    by_phase = {r.phase: r for r in records}
    exported, parity = by_phase.get("export"), by_phase.get("parity")
    if exported is None or not exported.ok:
        reason = exported.reason if exported else "no export record"
        error(f"export failed: {reason}")
        raise typer.Exit(1)
    info = exported.info
    out.print(f"wrote {info['onnx']} ({info['size_bytes']:,} bytes, opset {info['opset']}) with "
              f"{info['exporter']} {info['exporter_version']} in {duration(exported.seconds)}; "
              f"batch dimension {'free' if info['batch_free'] else 'fixed'}", highlight=False,
              markup=False)
    for warning in exported.warnings:
        warn(warning)
    if parity is not None and parity.parity is not None:
        verdict = parity_text(parity.parity, "onnxruntime")
        out.print(f"parity on {parity.parity.rows} rows ({info['input_source']}): {verdict}, "
                  f"max rel {parity.parity.max_rel:.1e} (rtol {parity.parity.rtol:g}, atol "
                  f"{parity.parity.atol:g})", highlight=False, markup=False)
        if not parity.parity.passed:
            raise typer.Exit(1)


@app.command(rich_help_panel=TOOLS, epilog=examples(
    "deploybench inspect model.onnx",
    "deploybench export m.pt2 --shape 3x224x224 --out m.onnx && deploybench inspect m.onnx",
))
def inspect(path: Annotated[Path, typer.Argument(help="an .onnx file")]) -> None:
    """Show an ONNX file's inputs, outputs, opsets, operators and batch dimension."""
    from toolkit.modelfile import inspect_onnx, open_model

    try:
        model = open_model(path, trust_pickle=True)  # nothing is unpickled here
        if model.kind != "onnx":
            raise BadInputError(f"{path}: inspect reads ONNX files; export it first with "
                                f"deploybench export {path} --out model.onnx")
        summary = inspect_onnx(path)
    except DeploybenchError as exc:
        raise fail(exc) from None
    out.print(f"{path}: {summary.size_bytes:,} bytes, IR {summary.ir_version}, opsets "
              + ", ".join(f"{d} {v}" for d, v in summary.opsets.items())
              + (f", made by {summary.producer}" if summary.producer else ""), highlight=False,
              markup=False)
    for title, specs in (("inputs", summary.inputs), ("outputs", summary.outputs)):
        out.print(f"{title}:")
        for spec in specs:
            out.print(f"  {spec.describe()}", highlight=False, markup=False)
    batch = "free" if summary.batch_free else "fixed (measured at that size only)"
    out.print(f"batch dimension: {batch}")
    out.print("operators: " + ", ".join(f"{op} {n}" for op, n in summary.operators.items()),
              highlight=False, markup=False)


@app.command(rich_help_panel=TOOLS, epilog=examples(
    "deploybench report results/20261207T160000Z/results.json",
    "deploybench report cpu-host/results.json gpu-host/results.json --out merged",
    "deploybench report results.json --format md",
))
def report(
    results: Annotated[list[Path], typer.Argument(
        help="results.json files (or the run folders holding them); several (e.g. a CPU host "
        "and a GPU host) merge into one report with the machine named on each option")],
    formats: Annotated[str | None, typer.Option(
        "--format", help="html, md, csv, comma-separated (default: all)")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="folder for report.* (default: beside the first results file)")] = None,
) -> None:
    """Write the HTML, Markdown and CSV reports of one or more results files."""
    from toolkit.report import parse_formats, write_reports

    # a run's folder stands for its results.json
    results = [path / "results.json" if (path / "results.json").is_file() else path
               for path in results]
    try:
        _, written = write_reports(results, out_dir, parse_formats(formats))
    except DeploybenchError as exc:
        raise fail(exc) from None
    for path in written:
        out.print(f"report:  {path}")
