"""Report writers: terminal (rich), Markdown. Each reads records; none measures anything."""

from __future__ import annotations

from pathlib import Path

from toolkit.report import markdown
from toolkit.report.summary import WorkloadSummary, summarise
from toolkit.results import load


def write_reports(results_path: Path) -> tuple[list[WorkloadSummary], list[Path]]:
    """Summarise a results.json and write the report files beside it."""
    run, records = load(results_path)
    sizes = run.get("suite", {}).get("batch_sizes", ())
    summaries = summarise(records, sizes)
    report = results_path.parent / "report.md"
    report.write_text(markdown.render(summaries, run), encoding="utf-8")
    return summaries, [report]
