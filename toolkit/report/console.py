"""The tables of the commands that read rather than run: compare, history, env, list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from toolkit.report.units import duration


def compare_table(rows: Sequence[Any], metric: str, interval: Any,
                  ratio: str = "new/base") -> Table:
    """compare's rows (`toolkit.compare.Row`): base and new figures (each run's fastest
    round), the ratio (`ratio` names it) with its interval (`interval(row)` writes it), the
    verdict; slower in red, faster in green."""
    table = Table("case", f"base {metric}", f"new {metric}", f"{ratio} [95% interval]",
                  "verdict")
    for row in rows:
        style = "red" if row.verdict == "slower" else "green" if row.verdict == "faster" else ""
        table.add_row(row.case, duration(row.base_ms / 1e3), duration(row.new_ms / 1e3),
                      interval(row), row.verdict, style=style)
    return table


def history_tables(found: Sequence[Any], trends: Mapping[str, Sequence[tuple[int, float]]]
                   ) -> list[Table]:
    """The stored runs, and for a workload how each case moved across them."""
    table = Table("run", "started", "suite", "machine", "timed cases")
    for row in found:
        table.add_row(str(row.id), row.started, row.suite, row.machine, str(row.cases))
    tables = [table]
    if trends:
        trend = Table("case", "p50 by run, oldest first")
        for key, points in trends.items():
            trend.add_row(key, "  ".join(f"#{run_id} {duration(p50 / 1e3)}"
                                         for run_id, p50 in points))
        tables.append(trend)
    return tables


def environment_table(info: Mapping[str, Any], peak: str | None = None) -> Table:
    """The machine, versions, frameworks and providers (`environment.describe()`)."""
    table = Table("what", "value", show_header=False)
    for key in ("python", "platform", "cpu", "physical_cores", "logical_cores", "memory_gb"):
        table.add_row(key, str(info[key]))
    table.add_row("instruction set", ", ".join(info["instruction_set"]) or "unknown")
    table.add_row("gpus", ", ".join(info["gpus"]) or "none (nvidia-smi found no GPU)")
    for name, version in info["versions"].items():
        table.add_row(name, version)
    for framework, status in info["frameworks"].items():
        table.add_row(f"framework {framework}", status)
    for provider, status in info["providers"].items():
        table.add_row(f"provider {provider}", status)
    if peak:
        table.add_row("peak (float32 matmul)", peak)
    return table


def workloads_table(rows: Sequence[tuple[str, str, str]]) -> Table:
    """(workload, description, status) per built-in workload."""
    table = Table("workload", "description", "status")
    for row in rows:
        table.add_row(*row)
    return table
