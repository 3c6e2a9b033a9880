"""`advise`: which configuration to deploy, searched and then confirmed under LoadGen."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from toolkit.cli.common import (
    JOURNEY,
    LIMITS,
    OUTPUT,
    SEARCH,
    WHERE,
    ClusterOption,
    InputDataOption,
    QualityDropOption,
    ShapeOption,
    TrustOption,
    app,
    backend_for,
    err,
    examples,
    fail,
    given_options,
    out,
    parse_ints,
    parse_prices,
    progress_bar,
    progress_bars,
    say,
    split_csv,
)
from toolkit.errors import BadInputError, DeploybenchError
from toolkit.report import terminal


@app.command(rich_help_panel=JOURNEY, epilog=examples(
    "deploybench advise torch/digits-mlp --p99-ms 5",
    "deploybench advise model.onnx --p99-ms 5 --need-qps 100000 --cluster auto --price "
    "big=0.20 --price small=0.05",
    "deploybench advise --resume results/20261207T160000Z",
))
def advise(
    ctx: typer.Context,
    target: Annotated[str | None, typer.Argument(
        help="a model file (as bench takes) or one built-in workload (torch/digits-mlp)",
        show_default=False)] = None,
    p99_ms: Annotated[float | None, typer.Option(
        "--p99-ms", help="the latency bound in ms every configuration is judged by (required "
        "unless --resume)",
        rich_help_panel=SEARCH)] = None,
    threads: Annotated[str | None, typer.Option(
        help="threads per worker to try, comma-separated (default: 1 and every core)",
        rich_help_panel=SEARCH)] = None,
    recipes: Annotated[str | None, typer.Option(
        help="recipes to try: fp32 (always), int8-dynamic, int8-static, fp16, ort-offline "
        "(default fp32,int8-dynamic,int8-static)", rich_help_panel=SEARCH)] = None,
    budget: Annotated[str, typer.Option(
        help="the wall time to plan for, e.g. 20m: the confirmations share what the trials "
        "and the search leave, each 60-600 s (so a short budget is overrun, not cut)",
        rich_help_panel=SEARCH)] = "20m",
    controls: Annotated[bool, typer.Option(
        "--controls/--no-controls", help="confirm the calibration's trivial model in every "
        "round too, so the model's error is also given at these rounds' speed (a search a "
        "round)",
        rich_help_panel=SEARCH)] = True,
    max_quality_drop: QualityDropOption = None,
    memory_mb: Annotated[float | None, typer.Option(
        "--memory-mb", help="the most memory a configuration may take, all its workers "
        "together (threads of one process share what it held before the model loaded)",
        rich_help_panel=LIMITS)] = None,
    need_qps: Annotated[float | None, typer.Option(
        "--need-qps", "--target-qps", help="the rate the service must sustain: how many "
        "machines the pick needs (with --cluster: each kind's, and its cost per million "
        "there)", rich_help_panel=LIMITS)] = None,
    price: Annotated[list[str] | None, typer.Option(
        "--price", help="USD per hour of a machine like this one (0.10): the pick's cost per "
        "million predictions; with --cluster, of a kind of node (KIND=0.10; repeat): the "
        "kinds ranked by it", show_default=False, rich_help_panel=LIMITS)] = None,
    input_data: InputDataOption = None,
    shape: ShapeOption = None,
    trust_pickle: TrustOption = False,
    cluster: ClusterOption = None,
    placement: Annotated[str, typer.Option(
        help="with --cluster: spread only (each-node is refused: each kind of node is advised "
        "on one of its nodes, whose figures the answer gives)", rich_help_panel=WHERE
    )] = "spread",
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="output folder (default results/<UTC time>)", rich_help_panel=OUTPUT)
    ] = None,
    resume: Annotated[Path | None, typer.Option(
        help="finish an interrupted advise in this folder: finished trials and confirmations "
        "are kept, the search's study goes on", rich_help_panel=OUTPUT)] = None,
) -> None:
    """Which configuration to deploy, and on which machine: searched, then confirmed.

    Times each runtime and recipe call by call, searches workers, threads, batching and
    session options for the highest rate within the p99 bound and the accuracy limit, then
    confirms the best under LoadGen beside the best default and says what it costs. With
    --cluster, every kind of node (its deploybench-kind-NAME resource, else its CPU, cores,
    memory and GPUs) is advised on one of its nodes, and the kinds are ranked by cost per
    million queries at --need-qps. Exit code 1 when no configuration held.
    """
    from toolkit import advise as adviser
    from toolkit.backends.cluster import ONE_NODE
    from toolkit.report import advise as advice_report
    from toolkit.results import default_out_dir, prepare_out_dir
    from toolkit.scenarios import parse_duration

    try:
        if resume is not None:
            refused = [name for name in given_options(ctx)
                       if name not in ("--resume", "--trust-pickle")]
            if refused:
                raise BadInputError(f"--resume continues the advise stored in {resume}; drop "
                                    f"{', '.join(refused)}")
            request, where = adviser.load_request(resume)
            folder = prepare_out_dir(resume)
            if where and "kinds" in where:
                across_kinds(request, where, folder, trust_pickle, resumed=True)
                return
        else:
            if target is None or p99_ms is None:
                raise BadInputError("give a model file or a workload and --p99-ms, e.g. "
                                    "deploybench advise torch/digits-mlp --p99-ms 5")
            prices = parse_prices(price) or ()
            named = [f"{k}={v:g}" for k, v in prices if k]
            if named and cluster is None:
                raise BadInputError(f"--price {named[0]}: a price by kind of node needs "
                                    "--cluster; for this machine give --price USD_PER_HOUR")
            if len(prices) > 1 and cluster is None:
                raise BadInputError("--price: give one price for this machine, or prices by "
                                    "kind with --cluster")
            request = adviser.Request(
                target, p99_ms, max_quality_drop or "1%", memory_mb,
                prices[0][1] if prices and cluster is None else None, need_qps,
                parse_duration(budget, "--budget"), parse_ints(threads, "--threads") or (),
                tuple(dict.fromkeys(["fp32", *(split_csv(recipes, "--recipes") or [])]))
                if recipes else adviser.DEFAULT_RECIPES,
                tuple(shape or ()), str(input_data) if input_data else None,
                controls=controls, prices=prices if cluster else ())
            # a bad target ends here, nothing written (the threads are checked against each
            # kind's cores, and brought down to them, on a cluster)
            adviser.resolve(dataclasses.replace(request, cores=max(request.threads or (1,)))
                            if cluster else request, trust_pickle)
            where = {"address": cluster, "placement": placement} if cluster else None
            if where is not None:
                backend_for(cluster, placement, ONE_NODE)  # each-node, or no Ray: refused
                across_kinds(request, where, out_dir or default_out_dir(), trust_pickle,
                             resumed=False)
                return
        # one study's trials and confirmations on one node: a machine of one kind, the one
        # whose figures the answer gives (the node chosen is kept for --resume)
        backend, _ = backend_for(where["address"] if where else None,
                                 where["placement"] if where else "spread",
                                 (where.get("node") or ONE_NODE) if where else None)
        if resume is None:
            folder = prepare_out_dir(out_dir or default_out_dir())
            adviser.save_request(folder, request, where)
    except DeploybenchError as exc:
        raise fail(exc) from None

    advice = None
    try:
        with progress_bar() as progress:
            advice = adviser.advise(request, folder,
                                    stage_runner(backend, where, progress, trust_pickle),
                                    trust_pickle=trust_pickle, say=say)
    except DeploybenchError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        advice = None
    finally:
        chosen = getattr(backend, "node", None)
        if where and chosen not in (None, ONE_NODE) and where.get("node") != chosen:
            adviser.save_request(folder, request, {**where, "node": chosen})
    if advice is None:
        say(f"interrupted: finished trials and confirmations are kept; continue with "
            f"deploybench advise --resume {folder}")
        raise typer.Exit(130)
    written = [adviser.write_advice(advice), *advice_report.write(advice)]
    out.print(advice_report.headline(advice), highlight=False, markup=False, soft_wrap=True)
    if advice.unsteady:
        err.print(f"! {advice.unsteady}", highlight=False, markup=False, soft_wrap=True)
    columns, rows = advice_report.confirmation_rows(advice)
    terminal.table(out, columns, rows)
    for line in advice_report.notes(advice):
        out.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    for line in advice_report.lost_lines(advice)[:6]:
        out.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    if advice.pick is not None:
        out.print(advice_report.loadgen_command(advice, advice.pick.config), highlight=False,
                  markup=False, soft_wrap=True)
    for path in written:
        out.print(f"report:  {path}")
    if advice.pick is None:
        raise typer.Exit(1)


def stage_runner(backend: Any, where: dict[str, Any] | None, progress: Any, trust_pickle: bool,
                 serial_costs: Any = None) -> Any:
    """How advise runs its stages: the executor, on `backend`, with the progress bar."""
    from toolkit import executor
    from toolkit.advise import StageRunner

    def start(plan: Any, into: Path) -> bool:
        return not executor.start(plan, into, argv=sys.argv, progress=progress,
                                  backend=backend, where=where).interrupted

    def again(into: Path, command: str) -> bool:
        plan, results = executor.reopen(into, command, trust_pickle=trust_pickle)
        return not executor.execute(plan, results, progress, backend).interrupted

    return StageRunner(start, again, serial_costs)


def across_kinds(request: Any, where: dict[str, Any], folder: Path, trust_pickle: bool,
                 resumed: bool) -> None:
    """`advise --cluster`: every kind of node advised on one of its nodes (`toolkit.kinds`),
    and the kinds ranked by cost per million."""
    import time

    from toolkit import advise as adviser
    from toolkit import environment, kinds
    from toolkit.backends.cluster import ClusterBackend
    from toolkit.report import kinds as kinds_report

    address = str(where["address"])
    cluster = ClusterBackend(address, "spread")
    say(f"cluster {address}: joining it, and describing each node on it")
    cluster.open(1, environment.describe(with_providers=False))
    request, plans, folder = kinds.plan_run(request, folder, address, cluster,
                                    where["kinds"] if resumed else None, say)
    started = time.monotonic() - adviser.spent_before(folder)
    try:
        with progress_bars() as bars:
            def runner_for(backend: Any, kept: dict[str, Any], kind: str) -> Any:
                return stage_runner(backend, kept, bars(kind), trust_pickle)

            studies, interrupted = kinds.advise_kinds(
                request, folder, address, cluster, plans, runner_for,
                trust_pickle=trust_pickle, say=say)
    finally:
        adviser.keep_spent(folder, started)
    if interrupted:  # no ranking of studies cut short
        say(f"interrupted: each kind's finished trials and confirmations are kept; continue "
            f"with deploybench advise --resume {folder}")
        raise typer.Exit(130)
    fleet = kinds.Fleet(request, folder, address, studies, time.monotonic() - started)
    written = kinds_report.write(fleet)
    out.print(kinds_report.headline(fleet), highlight=False, markup=False, soft_wrap=True)
    terminal.table(out, kinds_report.COLUMNS, kinds_report.rows(fleet))
    for line in kinds_report.kind_lines(fleet):
        out.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    for path in written:
        out.print(f"report:  {path}")
    if fleet.best is None:
        raise typer.Exit(1)
