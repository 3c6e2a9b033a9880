"""`history`, `list` and `env`: the stored runs, the built-in workloads, and this machine."""

from __future__ import annotations

from typing import Annotated

import typer

from toolkit import environment, history, workloads
from toolkit.cli.common import TOOLS, HistoryOption, app, examples, fail, out
from toolkit.errors import BadInputError, DeploybenchError
from toolkit.report import console


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
))
def env(
    peak: Annotated[bool, typer.Option(
        "--peak", help="measure this machine's float32 matrix-product peak now on its physical "
        "cores (runs measure and cache it at their own thread count for the %-of-peak)")
    ] = False,
) -> None:
    """Show the machine, versions, and which ONNX Runtime providers really run."""
    info = environment.describe()
    line = None
    if peak:
        from toolkit.suite import default_threads

        threads = default_threads()
        gflops = environment.peak_gflops(threads, refresh=True)
        line = (f"{gflops:,.1f} GFLOP/s on {threads} thread(s), cached in "
                f"{environment.cache_dir() / 'peak.json'}")
    out.print(console.environment_table(info, line))
