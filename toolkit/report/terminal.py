"""The terminal view: per workload its options table and headline, rendered with rich.

The table is `toolkit.report.table`'s.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from toolkit.report.loadgen import LoadGenTable, loadgen_lines, loadgen_notes, loadgen_tables
from toolkit.report.summary import WorkloadSummary, unmeasured_lines, warning_lines
from toolkit.report.table import options_table
from toolkit.report.units import duration


def render(summaries: list[WorkloadSummary], console: Console) -> None:
    for summary in summaries:
        plain = {"highlight": False, "markup": False}  # exporter and runtime words, verbatim
        table = workload_table(summary)
        if table.row_count or not summary.served:
            console.print(table)
        for loadgen in loadgen_tables(summary.served):
            console.print(loadgen_table(summary, loadgen))
        console.print(summary.headline(), style="bold", **plain)
        for line in loadgen_lines(summary.served) if summary.options else []:
            console.print(line, style="bold", **plain)
        for line in summary.problems + unmeasured_lines(summary):
            console.print(f"  {line}", style="yellow", **plain)
        for line in warning_lines(summary):
            console.print(f"  ! {line}", style="dim", **plain)
        for line in loadgen_notes(summary.served):
            console.print(f"  {line}", style="dim" if line.startswith("!") else "yellow", **plain)
        console.print()


def loadgen_table(summary: WorkloadSummary, loadgen: LoadGenTable) -> Table:
    """One scenario's options under LoadGen; options of an ONNX file that failed parity red."""
    table = Table(title=f"{summary.key}: LoadGen {loadgen.scenario}", title_justify="left",
                  caption=loadgen.caption, caption_justify="left")
    for index, name in enumerate(loadgen.columns):
        table.add_column(name, justify="left" if index == 0 or name == "sessions" else "right",
                         no_wrap=index == 0)
    for cells, trusted in loadgen.rows:
        table.add_row(*(Text(c) for c in cells), style="" if trusted else "red")
    return table


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


def table(console: Console, columns: tuple[str, ...], rows: list[tuple[str, ...]],
          title: str = "") -> None:
    """A plain table of text cells (the first column left, the others right)."""
    shown = Table(title=title or None, title_justify="left")
    for index, name in enumerate(columns):
        shown.add_column(name, justify="left" if index == 0 else "right")
    for cells in rows:
        shown.add_row(*(Text(c) for c in cells))
    console.print(shown)
