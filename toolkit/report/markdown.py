"""report.md: the environment, then per workload its headline and options table, for PRs.

The table is `toolkit.report.table`'s; the page reads well in PRs and wikis.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from toolkit.report.loadgen import loadgen_lines, loadgen_notes, loadgen_tables
from toolkit.report.summary import WorkloadSummary, unmeasured_lines, warning_lines
from toolkit.report.table import options_table
from toolkit.report.units import duration


def render(summaries: list[WorkloadSummary], runs: Sequence[Mapping[str, Any]],
           machines: Sequence[str]) -> str:
    lines = ["# deploybench report", ""]
    for run, machine in zip(runs, machines, strict=True):
        env = run.get("environment", {})
        suite = run.get("suite", {})
        lines += [
            f"- **{machine}**: suite `{suite.get('name', '?')}`, started {run.get('started')}, "
            f"finished {run.get('finished') or 'not finished'}"
            + (" (interrupted)" if run.get("interrupted") else ""),
            f"  - machine: {env.get('cpu', '?')}, {env.get('physical_cores', '?')} physical "
            f"cores, {env.get('memory_gb', '?')} GB, instruction set "
            f"{', '.join(env.get('instruction_set') or []) or 'unknown'}, GPU: "
            f"{', '.join(env.get('gpus') or []) or 'none'}",
            f"  - threads per runtime: {suite.get('threads', '?')}; ONNX Runtime graph "
            f"optimisation: {suite.get('optimization', '?')}",
            "  - versions: " + ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items()),
        ]
    lines += ["", "## Headlines", ""]
    lines += [f"- {s.headline()}" for s in summaries]
    for summary in summaries:
        lines += ["", f"## {summary.key}", ""] + _workload(summary)
    return "\n".join(lines) + "\n"


def _workload(summary: WorkloadSummary) -> list[str]:
    out = []
    train, export, parity = summary.train, summary.export, summary.parity
    if train is not None and train.ok:
        info = train.info
        out.append(f"Trained in {duration(train.seconds)} ({info.get('epochs')} epoch(s), "
                   f"{info.get('rows')} rows); test {info.get('metric')}: native "
                   f"{info.get('native_quality', float('nan')):.4f}"
                   + (f", ONNX {parity.info.get('onnx_quality', float('nan')):.4f}"
                      if parity is not None and parity.ok else "") + ".")
    if export is not None and export.ok:
        info = export.info
        out.append(f"Exported with {info.get('exporter')} {info.get('exporter_version')} in "
                   f"{duration(export.seconds)}: opset {info.get('opset')}, "
                   f"{info.get('size_bytes', 0):,} bytes.")
    if summary.options or not summary.served:
        out += ["", *_options_table(summary)]
    for loadgen in loadgen_tables(summary.served):
        out += ["", f"**MLPerf LoadGen, {loadgen.scenario}**", "",
                _line(loadgen.columns), _line("---" if i == 0 else "---:"
                                           for i in range(len(loadgen.columns)))]
        out += [_line(cells) for cells, _ in loadgen.rows]
        out += ["", f"*{loadgen.caption}*"]
    for line in loadgen_lines(summary.served):
        out += ["", f"**{line}**"]
    notes = list(summary.problems)
    notes += unmeasured_lines(summary)
    notes += warning_lines(summary)
    notes += loadgen_notes(summary.served)
    if notes:
        out += ["", *[f"- {n}" for n in notes]]
    return out


def _options_table(summary: WorkloadSummary) -> list[str]:
    """The options table as a pipe table (figures right-aligned), its caption below."""
    model = options_table(summary)
    out = [_line(c.name for c in model.columns),
           _line("---:" if c.numeric else "---" for c in model.columns)]
    out += [_line(row.cells) for row in model.rows]
    return out + ["", f"*{model.caption}*"]


def _line(cells: Iterable[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
