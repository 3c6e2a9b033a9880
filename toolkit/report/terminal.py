"""The terminal view: one table per workload and its headline, rendered with rich."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from toolkit.report.summary import (
    WorkloadSummary,
    parity_text,
    timing_cell,
    unmeasured_lines,
    warning_lines,
)
from toolkit.report.units import duration, rate


def render(summaries: list[WorkloadSummary], console: Console) -> None:
    for summary in summaries:
        console.print(workload_table(summary))
        plain = {"highlight": False, "markup": False}  # exporter and runtime words, verbatim
        console.print(summary.headline(), style="bold", **plain)
        for line in summary.problems + unmeasured_lines(summary):
            console.print(f"  {line}", style="yellow", **plain)
        for line in warning_lines(summary):
            console.print(f"  ! {line}", style="dim", **plain)
        console.print()


def workload_title(summary: WorkloadSummary) -> str:
    train = summary.train
    if train is None or not train.ok:
        return summary.key
    info = train.info
    return (f"{summary.key}: trained in {duration(train.seconds)} ({info.get('epochs')} "
            f"epoch(s), {info.get('rows')} rows), test {info.get('metric')} "
            f"{info.get('native_quality', float('nan')):.3f}")


def workload_table(summary: WorkloadSummary) -> Table:
    table = Table(title=workload_title(summary), title_justify="left", caption_justify="left",
                  caption="p50 per call, then speed-up over the idiomatic call (*); "
                  "parity: max abs error")
    sizes = summary.batch_sizes
    largest = sizes[-1] if sizes else None
    table.add_column("option", no_wrap=True)
    for batch in sizes:
        table.add_column(f"batch {batch}", justify="right", no_wrap=True)
    table.add_column(f"rows/s @{largest}", justify="right", no_wrap=True)
    table.add_column("parity", no_wrap=True)
    for option in summary.options:
        if not option.p50_ms:
            continue
        label = option.label + (" *" if option.idiomatic else "") + (" !" if option.warnings
                                                                       else "")
        cells = [label, *(timing_cell(option, b) for b in sizes)]
        cells.append(rate(option.throughput.get(largest)).replace(" rows/s", "")
                     if largest else "-")
        cells.append(parity_text(option.parity, option.runtime))
        table.add_row(*cells, style="" if option.trusted else "red")
    return table
