"""The options table of one workload, built once for the terminal, Markdown and HTML reports.

One row per option that was timed, one column per batch size, then the throughput and compute
at the largest batch size and the parity verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

from toolkit.report.summary import (
    Option,
    WorkloadSummary,
    compute_text,
    parity_text,
    spread_text,
    timing_cell,
)
from toolkit.report.units import rate, size_text

IDIOMATIC = " (idiomatic)"  # marks the baseline of every speed-up
FLAGGED = " !"  # marks an option with warnings (listed under the table)
CAPTION = ("p50 per call (median over rounds, ± half its 95% interval), then speed-up over the "
           "idiomatic call; at the largest batch: rows/s (sustained), the spread of single "
           "calls (IQR / median) and GFLOP/s (with % of the machine's peak); parity: max abs "
           f"error (fp32), or accuracy against the native model's (int8, fp16);{FLAGGED}: see the "
           "warnings")


@dataclass(frozen=True)
class Column:
    name: str
    numeric: bool  # right-aligned figures; the others are words (the option, the verdict)
    detail: bool = False  # left out of the terminal's table (the files keep every column)


@dataclass(frozen=True)
class Row:
    """One option: its cells in column order, the first being its label."""

    option: Option
    cells: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.cells[0]

    @property
    def trusted(self) -> bool:
        return self.option.trusted

    @property
    def flagged(self) -> bool:
        return bool(self.option.warnings)


@dataclass(frozen=True)
class OptionsTable:
    caption: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]


def options_table(summary: WorkloadSummary) -> OptionsTable:
    """Every option of `summary` that has a timing, with its figures as text."""
    sizes = tuple(summary.batch_sizes)
    columns = [Column("option", False), *(Column(f"batch {b}", True) for b in sizes)]
    if sizes:
        columns += [Column(f"rows/s, batch {sizes[-1]}", True),
                    Column(f"spread, batch {sizes[-1]}", True, detail=True),
                    Column(f"GFLOP/s, % of peak, batch {sizes[-1]}", True, detail=True)]
    columns += [Column("size", True), Column("parity or accuracy", False)]
    rows = tuple(Row(o, _cells(o, sizes)) for o in summary.options if o.p50_ms)
    return OptionsTable(CAPTION, tuple(columns), rows)


def label(option: Option) -> str:
    """The option's name, marked when it is the idiomatic call or has warnings."""
    return (option.label + (IDIOMATIC if option.idiomatic else "")
            + (FLAGGED if option.warnings else ""))


def _cells(option: Option, sizes: tuple[int, ...]) -> tuple[str, ...]:
    cells = [label(option), *(timing_cell(option, b) for b in sizes)]
    if sizes:
        cells += [rate(option.throughput.get(sizes[-1])).removesuffix(" rows/s"),
                  spread_text(option, sizes[-1]), compute_text(option, sizes[-1])]
    cells += [size_text(option.size_bytes), parity_text(option.parity, option.runtime)]
    return tuple(cells)
