"""The terminal view: per workload its options table (`toolkit.report.table`) and headline,
rendered with rich."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from toolkit.report.summary import WorkloadSummary, unmeasured_lines, warning_lines
from toolkit.report.table import options_table
from toolkit.report.units import duration


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
    """The options table, with untrusted options (parity failed) in red."""
    model = options_table(summary)
    shown = [i for i, column in enumerate(model.columns) if not column.detail]
    table = Table(title=workload_title(summary), title_justify="left",
                  caption=model.caption + " (spread and GFLOP/s: report.md, report.html)",
                  caption_justify="left")
    for index in shown:
        column = model.columns[index]
        table.add_column(column.name, justify="right" if column.numeric else "left",
                         no_wrap=index == 0)
    for row in model.rows:  # Text: exporter and runtime words, verbatim (no markup)
        table.add_row(*(Text(row.cells[i]) for i in shown), style="" if row.trusted else "red")
    return table
