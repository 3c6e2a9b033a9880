"""`history`, `list` and `env`: the stored runs, the built-in workloads, and this machine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from toolkit import environment, history, workloads
from toolkit.cli.common import TOOLS, HistoryOption, app, err, examples, fail, out
from toolkit.errors import BadInputError, DeploybenchError
from toolkit.report import console

if TYPE_CHECKING:
    from toolkit.calibrate import SerialCosts


@app.command("history", rich_help_panel=TOOLS, epilog=examples(
    "deploybench history",
    "deploybench history --workload digits-mlp --limit 5",
))
def history_command(
    workload: Annotated[str | None, typer.Option(
        help="only runs with this workload, and the trend of each of its cases")] = None,
    limit: Annotated[int, typer.Option(help="how many runs, newest first")] = 20,
    history_path: HistoryOption = None,
) -> None:
    """List stored runs and, for a workload, how each case moved across them."""
    try:
        if limit < 1:
            raise BadInputError(f"--limit must be >= 1, got {limit}")
        with history.connect(history_path) as connection:
            found = history.runs(connection, workload, limit)
            trends = history.trend(connection, workload, limit) if workload else {}
    except DeploybenchError as exc:
        raise fail(exc) from None
    if not found:
        out.print("no runs stored yet" + (f" with workload {workload}" if workload else ""))
        return
    for table in console.history_tables(found, trends):
        out.print(table)


@app.command("list", rich_help_panel=TOOLS, epilog=examples(
    "deploybench list",
    "deploybench run --workloads torch/digits-mlp     # then run one of them",
))
def list_workloads() -> None:
    """List the built-in workloads and whether each framework is installed."""
    out.print(console.workloads_table([
        (key, w.description, environment.missing_framework(w.framework) or "ready")
        for key, w in workloads.REGISTRY.items()]))


@app.command(rich_help_panel=TOOLS, epilog=examples(
    "deploybench env",
    "deploybench env --peak          # measure the float32 matrix-product peak again",
    "deploybench env --calibrate     # measure advise's serial costs of serving again",
))
def env(
    peak: Annotated[bool, typer.Option(
        "--peak", help="measure this machine's float32 matrix-product peak now on its physical "
        "cores (runs measure and cache it at their own thread count for the %-of-peak)")
    ] = False,
    calibrate: Annotated[bool, typer.Option(
        "--calibrate", help="measure the serial costs of serving (each query's intake, each "
        "call's hand-over) now, from a trivial model's sustained peaks under LoadGen in pools "
        "of threads and of processes on the physical cores, for advise's queueing model")
    ] = False,
) -> None:
    """Show the machine, versions, and which ONNX Runtime providers really run."""
    from toolkit.suite import default_threads

    info = environment.describe()
    line = None
    if peak:
        threads = default_threads()
        gflops = environment.peak_gflops(threads, refresh=True)
        line = (f"{gflops:,.1f} GFLOP/s on {threads} thread(s), cached in "
                f"{environment.cache_dir() / 'peak.json'}")
    costs = None
    if calibrate:
        from toolkit.calibrate import serial_costs

        try:
            costs = serial_costs(default_threads(), refresh=True,
                                 say=lambda text: err.print(text, highlight=False, soft_wrap=True))
        except RuntimeError as exc:  # LoadGen missing, or a flood that failed: its log says why
            raise fail(DeploybenchError(str(exc))) from None
    out.print(console.environment_table(info, line))
    if costs is not None:
        _print_serial_costs(costs)


def _print_serial_costs(costs: SerialCosts) -> None:
    from toolkit.calibrate import cache_path

    out.print(f"serial costs of serving, {costs.machine}:", highlight=False)
    for kind, (query_s, call_s) in costs.by_kind().items():
        peaks = ", ".join(f"{qps:,.0f} q/s " + ("unbatched" if batch == "1"
                                                else f"batching up to {batch}")
                          for batch, qps in costs.peaks[kind].items())
        out.print(f"  {kind:<9}  query {query_s * 1e6:6.1f} µs   call {call_s * 1e6:6.1f} µs   "
                  f"(a trivial model's sustained peaks: {peaks})", highlight=False)
    out.print(f"cached in {cache_path()}", highlight=False)
