"""Report writers: terminal (rich), Markdown, CSV, HTML. Each reads records; none measures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.busy import busy_text
from toolkit.errors import BadInputError
from toolkit.report.summary import Peak, WorkloadSummary, summarise
from toolkit.results import Record, read_results, write_atomic

FORMATS = ("html", "md", "csv")


@dataclass(frozen=True)
class Run:
    path: Path
    info: dict[str, Any]
    records: list[Record]
    machine: str


def load_runs(paths: Sequence[Path]) -> list[Run]:
    """Results files, each named by the machine it ran on (hostname; `#2` where two share one)."""
    runs: list[Run] = []
    for path in paths:
        info, records = read_results(path)
        env = info.get("environment", {})
        name = env.get("hostname") or env.get("cpu") or path.parent.name
        taken = sum(1 for r in runs if r.machine.split(" #")[0] == name)
        runs.append(Run(path, info, records, name if not taken else f"{name} #{taken + 1}"))
    return runs


def parse_formats(value: str | None) -> tuple[str, ...]:
    if value is None:
        return FORMATS
    chosen = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise BadInputError(f"--format {value!r}: choose from {', '.join(FORMATS)}")
    return chosen


def write_reports(
    paths: Path | Sequence[Path], out_dir: Path | None = None,
    formats: Sequence[str] = FORMATS,
) -> tuple[list[WorkloadSummary], list[Path]]:
    """Summarise one or more results files (several machines merge, each option naming its
    machine) and write report.<format> files into `out_dir` (default: beside the first)."""
    from toolkit.report import csv, html, markdown

    runs = load_runs([paths] if isinstance(paths, Path) else list(paths))
    records = [r for run in runs for r in run.records]
    # A cluster run's records each name their node: options are labelled by it, as by file
    machines = [_node(r) or run.machine for run in runs for r in run.records]
    sizes = sorted({b for run in runs for b in run.info.get("suite", {}).get("batch_sizes", ())})
    peaks = {run.machine: _peak(run.info.get("environment", {})) for run in runs}
    busy = {run.machine: busy_text(run.info.get("machine_state")) for run in runs}
    for run in runs:
        for name, env in dict(run.info.get("nodes") or {}).items():
            peaks.setdefault(str(name), _peak(env))
            busy.setdefault(str(name), busy_text(env.get("machine_state")))
    prices: dict[str, float] = {}
    for run in runs:  # a node's own price, else the run's default ("")
        given = {str(n): float(v) for n, v in run.info.get("suite", {}).get("prices") or ()}
        for record in run.records:
            machine = _node(record) or run.machine
            if machine not in prices and (machine in given or "" in given):
                prices[machine] = given.get(machine, given.get("", 0.0))
    need = next((run.info["suite"]["need_qps"] for run in runs
                 if run.info.get("suite", {}).get("need_qps")), None)
    summaries = summarise(records, sizes, machines, peaks,
                          {k: v for k, v in busy.items() if v}, prices, need)
    target = out_dir or runs[0].path.parent
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(f"--out {target}: cannot write there ({exc.strerror})") from None
    infos = [run.info for run in runs]
    names = [run.machine for run in runs]
    writers = {
        "md": lambda: markdown.render(summaries, infos, names),
        "csv": lambda: csv.render((run.machine, run.records) for run in runs),
        "html": lambda: html.render(summaries, infos, names),
    }
    written = []
    for fmt in formats:
        path = target / f"report.{fmt}"
        text = writers[fmt]()
        write_atomic(path, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
        written.append(path)
    return summaries, written


def _node(record: Record) -> str | None:
    """The label of the cluster node a record was measured on (its host, numbered where hosts
    repeat), None for a local run."""
    node = record.info.get("node")
    if not isinstance(node, dict):
        return None
    name = node.get("name") or node.get("hostname")
    return str(name) if name else None


def _peak(environment: dict[str, Any]) -> Peak | None:
    gflops = environment.get("peak_gflops")
    return Peak(float(gflops), environment.get("peak_threads")) if gflops else None
