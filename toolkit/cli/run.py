"""`run` (a suite) and `bench` (your model file): build, export, check parity, time."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from toolkit.cli.common import (
    JOURNEY,
    LOAD,
    MEASURE,
    OUTPUT,
    ClusterOption,
    HistoryOption,
    InputDataOption,
    OptimizationOption,
    OutOption,
    PlacementOption,
    ProvidersOption,
    QualityDropOption,
    RecipesOption,
    RoundsOption,
    SessionOption,
    ShapeOption,
    SuiteProvidersOption,
    ThreadsOption,
    TimeoutOption,
    TrustOption,
    app,
    backend_for,
    examples,
    execute_and_report,
    parse_ints,
    resume_run,
    split_csv,
    with_session,
)
from toolkit.errors import BadInputError


@app.command(rich_help_panel=JOURNEY, epilog=examples(
    "deploybench run                                    # the quick suite",
    "deploybench run --workloads digits-mlp --recipes fp32,int8-dynamic",
    "deploybench run --resume results/20261207T160000Z  # finish an interrupted run",
))
def run(
    ctx: typer.Context,
    suite: Annotated[str | None, typer.Option(
        help="quick (default), full, or the path of a suite .toml", rich_help_panel=MEASURE)
    ] = None,
    frameworks: Annotated[str | None, typer.Option(
        help="only these, e.g. torch,keras", rich_help_panel=MEASURE)] = None,
    workloads_: Annotated[str | None, typer.Option(
        "--workloads", help="only these, e.g. digits-mlp or torch/seed-cnn",
        rich_help_panel=MEASURE)] = None,
    providers: SuiteProvidersOption = None,
    batch_sizes: Annotated[str | None, typer.Option(
        help="e.g. 1,8,64,512", rich_help_panel=MEASURE)] = None,
    threads: ThreadsOption = None,
    optimization: OptimizationOption = None,
    session: SessionOption = None,
    rounds: RoundsOption = None,
    recipes: RecipesOption = None,
    max_quality_drop: QualityDropOption = None,
    timeout: TimeoutOption = None,
    shard: Annotated[str | None, typer.Option(
        help="i/n: run the i-th of n shares of the suite's workloads (split across hosts; "
        "merge with deploybench report a.json b.json)", rich_help_panel=MEASURE)] = None,
    cluster: ClusterOption = None,
    placement: PlacementOption = "spread",
    out_dir: OutOption = None,
    resume: Annotated[Path | None, typer.Option(
        help="finish an interrupted run in this folder: only its missing steps run",
        rich_help_panel=OUTPUT)] = None,
    history_path: HistoryOption = None,
) -> None:
    """Run a suite: train, export to ONNX, check parity, time every runtime.

    Each case is timed in fresh processes (rounds); figures are medians with a 95% interval.
    Writes results.json, samples.npz and the HTML, Markdown and CSV reports.
    """
    from toolkit import executor
    from toolkit.plans.run import plan_suite
    from toolkit.results import default_out_dir
    from toolkit.suite import build_suite

    def execute(progress: Callable[[int, int, str], None]) -> executor.RunOutcome:
        if resume is not None:
            return resume_run(ctx, resume, "run", False, progress)
        chosen = build_suite(
            suite or "quick",
            workloads=split_csv(workloads_, "--workloads"),
            frameworks=split_csv(frameworks, "--frameworks"),
            providers=split_csv(providers, "--providers"),
            batch_sizes=parse_ints(batch_sizes, "--batch-sizes"),
            threads=threads, optimization=optimization, timeout_s=timeout, shard=shard,
            rounds=rounds, recipes=split_csv(recipes, "--recipes"),
            max_quality_drop=max_quality_drop,
        )
        chosen = with_session(chosen, session)
        backend, where = backend_for(cluster, placement)
        return executor.start(plan_suite(chosen), out_dir or default_out_dir(), argv=sys.argv,
                              progress=progress, backend=backend, where=where)

    execute_and_report(execute, history_path)


@app.command(rich_help_panel=JOURNEY, epilog=examples(
    "deploybench bench model.onnx",
    "deploybench bench model.onnx --batch-sizes 1,32 --providers cpu,cuda",
    "deploybench bench resnet.pt --shape 3x224x224 --recipes fp32,int8-static",
))
def bench(
    ctx: typer.Context,
    path: Annotated[Path | None, typer.Argument(
        help="model file: .onnx, .keras, .pt (TorchScript), .pt2 (torch.export), .joblib/.pkl",
        show_default=False)] = None,
    providers: ProvidersOption = None,
    batch_sizes: Annotated[str | None, typer.Option(
        help="e.g. 1,8,64 (the default)", rich_help_panel=MEASURE)] = None,
    threads: ThreadsOption = None,
    optimization: OptimizationOption = None,
    session: SessionOption = None,
    rounds: RoundsOption = None,
    recipes: RecipesOption = None,
    max_quality_drop: QualityDropOption = None,
    input_data: InputDataOption = None,
    shape: ShapeOption = None,
    calibration_data: Annotated[Path | None, typer.Option(
        "--calibration-data", help="rows int8-static calibrates on (.npy, .npz, .csv; default: "
        "the --input-data or generated inputs)", rich_help_panel=LOAD)] = None,
    opset: Annotated[int | None, typer.Option(
        help="ONNX opset for native files (18)", rich_help_panel=LOAD)] = None,
    trust_pickle: TrustOption = False,
    timeout: TimeoutOption = None,
    cluster: ClusterOption = None,
    placement: PlacementOption = "spread",
    out_dir: OutOption = None,
    resume: Annotated[Path | None, typer.Option(
        help="finish an interrupted bench in this folder: only its missing steps run",
        rich_help_panel=OUTPUT)] = None,
    history_path: HistoryOption = None,
) -> None:
    """Benchmark your own model file (ONNX or native) on each runtime and provider.

    Native files are also exported to ONNX, checked for parity and measured natively.
    """
    from toolkit import executor
    from toolkit.plans.model import ModelRequest, bench_suite, plan_model
    from toolkit.results import default_out_dir

    def execute(progress: Callable[[int, int, str], None]) -> executor.RunOutcome:
        if resume is not None:
            return resume_run(ctx, resume, "bench", trust_pickle, progress)
        if path is None:
            raise BadInputError("give a model file (deploybench bench MODEL), or --resume DIR")
        request = ModelRequest(path, tuple(shape or ()), input_data, trust_pickle,
                               calibration_data)
        suite = bench_suite(
            providers=split_csv(providers, "--providers"),
            batch_sizes=parse_ints(batch_sizes, "--batch-sizes"), threads=threads,
            optimization=optimization, timeout_s=timeout, opset=opset, rounds=rounds,
            recipes=split_csv(recipes, "--recipes"), max_quality_drop=max_quality_drop)
        suite = with_session(suite, session)
        out = out_dir or default_out_dir()
        backend, where = backend_for(cluster, placement)
        return executor.start(plan_model(request, suite, out), out, argv=sys.argv,
                              progress=progress, backend=backend, where=where)

    execute_and_report(execute, history_path)
