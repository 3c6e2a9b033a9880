"""`loadgen`: serve each option under MLPerf LoadGen and find its sustained peak."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from toolkit.cli.common import (
    JOURNEY,
    LIMITS,
    MEASURE,
    OUTPUT,
    SEARCH,
    ClusterOption,
    HistoryOption,
    InputDataOption,
    OptimizationOption,
    PlacementOption,
    ProvidersOption,
    SessionOption,
    ShapeOption,
    TrustOption,
    app,
    backend_for,
    examples,
    execute_and_report,
    parse_ints,
    parse_prices,
    resume_run,
    split_csv,
    with_session,
)
from toolkit.errors import BadInputError


@app.command(rich_help_panel=JOURNEY, epilog=examples(
    "deploybench loadgen model.onnx --p99-ms 5          # each option's sustained peak",
    "deploybench loadgen torch/digits-mlp --workers 2 --threads 1 --batch-sizes 16",
    "deploybench loadgen model.onnx --scenario offline --batch-sizes 64",
))
def loadgen(
    ctx: typer.Context,
    target: Annotated[str | None, typer.Argument(
        help="a model file (as bench takes) or a built-in workload (torch/digits-mlp)",
        show_default=False)] = None,
    scenario: Annotated[str | None, typer.Option(
        help="server (default; Poisson arrivals: the peak rate within the bound), offline "
        "(samples/s), singlestream, multistream (a latency percentile)",
        rich_help_panel=MEASURE)] = None,
    providers: ProvidersOption = None,
    workers: Annotated[int | None, typer.Option(
        help="worker threads or processes per option (default: a worker per physical core, "
        "or cores // --threads; 1 for the streams and per GPU on CUDA)",
        rich_help_panel=MEASURE)] = None,
    threads: Annotated[int | None, typer.Option(
        help="threads each worker gets (default: each worker's share of the physical cores: "
        "one with the default workers; every core for the streams)",
        rich_help_panel=MEASURE)] = None,
    batch_sizes: Annotated[str | None, typer.Option(
        help="comma-separated; server: the most queries +batching answers in one call (8); "
        "offline: samples per call (64); multistream: samples per query (8)",
        rich_help_panel=MEASURE)] = None,
    max_delay_ms: Annotated[float | None, typer.Option(
        "--max-delay-ms", help="+batching: the longest a query waits for others (default: "
        "the bound / 10)", rich_help_panel=MEASURE)] = None,
    spinning: Annotated[bool, typer.Option(
        "--spinning", help="the workers' threads spin while waiting for work (ONNX Runtime's "
        "intra-op pool, OpenMP's wait policy); off by default, as workers share the cores",
        rich_help_panel=MEASURE)] = False,
    optimization: OptimizationOption = None,
    session: SessionOption = None,
    p99_ms: Annotated[float | None, typer.Option(
        "--p99-ms", help="the latency bound in ms (default 10; not for offline)",
        rich_help_panel=SEARCH)] = None,
    target_qps: Annotated[float | None, typer.Option(
        "--target-qps", help="server: measure at this rate instead of searching for the peak; "
        "offline: the rate LoadGen sizes its query for", rich_help_panel=SEARCH)] = None,
    queries: Annotated[int | None, typer.Option(
        help="server: each LoadGen run's queries, the same at every rate so early stopping "
        "judges every option alike (default 2048: 10 may be over the bound), or more where "
        "they would last under 0.5 s", rich_help_panel=SEARCH)] = None,
    duration: Annotated[str | None, typer.Option(
        help="offline and streams: each LoadGen run's minimum duration, e.g. 2s, 500ms, 1m "
        "(default 1s; a run also has at least 512 queries)", rich_help_panel=SEARCH)] = None,
    longest_run: Annotated[float | None, typer.Option(
        "--longest-run", help="server search: the longest one run may last at the lowest rate "
        "it tries, in seconds (default 10; a slow model needs more)", rich_help_panel=SEARCH)
    ] = None,
    rounds: Annotated[int | None, typer.Option(
        help="server search: each option searched once a round, the searches side by side "
        "taking turns, the order flipping, the machine's effect per round taken out "
        "(default 3; 1: one search per option, one after another)",
        rich_help_panel=SEARCH)] = None,
    compliant: Annotated[bool, typer.Option(
        "--compliant", help="MLPerf's own minimum duration (600 s per run), query counts and "
        "seeds; the default --timeout grows to fit", rich_help_panel=SEARCH)] = False,
    timeout: Annotated[float | None, typer.Option(
        help="seconds one option (all its LoadGen runs) may take (600; with --compliant "
        "9600); a round searched side by side has its options' seconds together",
        rich_help_panel=SEARCH)] = None,
    need_qps: Annotated[float | None, typer.Option(
        "--need-qps", help="the rate the service must sustain: how many machines like this "
        "one each option needs at its sustained peak", rich_help_panel=LIMITS)] = None,
    price: Annotated[list[str] | None, typer.Option(
        "--price", help="USD per hour of the machine that ran (3.5), or of a cluster node "
        "(NODE=2.1; repeat): each option's cost per million predictions at its sustained peak",
        show_default=False, rich_help_panel=LIMITS)] = None,
    input_data: InputDataOption = None,
    shape: ShapeOption = None,
    trust_pickle: TrustOption = False,
    cluster: ClusterOption = None,
    placement: PlacementOption = "spread",
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="output folder (default results/<UTC time>); LoadGen's logs go to "
        "its loadgen/ folder", rich_help_panel=OUTPUT)] = None,
    resume: Annotated[Path | None, typer.Option(
        help="finish an interrupted loadgen run in this folder", rich_help_panel=OUTPUT)
    ] = None,
    history_path: HistoryOption = None,
) -> None:
    """Serve each option under MLPerf LoadGen: the peak rate within a p99 bound.

    Server (default): the highest Poisson arrival rate whose p99 holds the bound, confirmed
    by repeated runs, searched in rounds (the options side by side, taking turns) and given
    as a median with its interval. Offline: samples per second. Single- and multistream: a
    latency percentile. Each option is a pool of workers x threads, with and without a
    batcher.
    """
    from toolkit import executor
    from toolkit.plans.loadgen import loadgen_request, loadgen_suite, plan_loadgen
    from toolkit.results import default_out_dir
    from toolkit.scenarios import ScenarioSettings, parse_duration

    def execute(progress: Callable[[int, int, str], None]) -> executor.RunOutcome:
        if resume is not None:
            return resume_run(ctx, resume, "loadgen", trust_pickle, progress)
        if target is None:
            raise BadInputError("give a model file or a workload (deploybench loadgen "
                                "torch/digits-mlp), or --resume DIR")
        settings = ScenarioSettings(
            scenario=scenario if scenario is not None else "server", p99_ms=p99_ms,
            target_qps=target_qps, compliant=compliant, workers=workers,
            duration_s=parse_duration(duration) if duration is not None else None,
            queries=queries,
            batch_sizes=parse_ints(batch_sizes, "--batch-sizes") or (),
            max_delay_ms=max_delay_ms, longest_run_s=longest_run, spinning=spinning,
            rounds=rounds)
        suite = loadgen_suite(settings, providers=split_csv(providers, "--providers"),
                              threads=threads, timeout_s=timeout).replace(
            prices=parse_prices(price), need_qps=need_qps, optimization=optimization)
        suite = with_session(suite, session)
        request = loadgen_request(target, tuple(shape or ()), input_data, trust_pickle)
        out = out_dir or default_out_dir()
        backend, where = backend_for(cluster, placement)
        return executor.start(plan_loadgen(target, suite, out, request=request), out,
                              argv=sys.argv, progress=progress, backend=backend, where=where)

    execute_and_report(execute, history_path)
