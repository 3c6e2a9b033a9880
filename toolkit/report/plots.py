"""The HTML report's charts, drawn with matplotlib to inline SVG.

Text is kept as text, no fonts are fetched, nothing is external.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

from toolkit.report.loadgen import Served
from toolkit.report.summary import WorkloadSummary
from toolkit.report.units import duration

WIDTH_IN = 7.5


def _svg(figure) -> str:  # type: ignore[no-untyped-def]
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    text = buffer.getvalue()
    text = re.sub(r"^<\?xml[^>]*>\s*(<!DOCTYPE[^>]*>\s*)?", "", text)  # inline, not a document
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"
    import matplotlib.pyplot as plt

    return plt


def gap_chart(summary: WorkloadSummary) -> str | None:
    """Log-scale bars: training time, then one prediction (smallest batch) with each option."""
    batch = summary.headline_batch()
    bars: list[tuple[str, float, str]] = []
    if summary.train is not None and summary.train.ok and summary.train.seconds:
        bars.append(("training", summary.train.seconds, "#888888"))
    for option in summary.options:
        if batch in option.p50_ms:
            colour = "#d62728" if not option.trusted else (
                "#1f77b4" if option.runtime == "native" else "#2ca02c")
            bars.append((option.label, option.p50_ms[batch] / 1e3, colour))
    if len(bars) < 2:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(WIDTH_IN, 0.45 * len(bars) + 1.0))
    labels = [b[0] for b in bars]
    values = [b[1] for b in bars]
    axes.barh(range(len(bars)), values, color=[b[2] for b in bars])
    axes.set_yticks(range(len(bars)), labels)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel(f"seconds (log scale); predictions at batch {batch}")
    for index, value in enumerate(values):
        axes.text(value, index, f" {duration(value)}", va="center", fontsize=8)
    axes.set_xlim(min(values) / 3, max(values) * 20)
    axes.grid(axis="x", which="major", alpha=0.3)
    return _svg(figure)


def batch_chart(summary: WorkloadSummary, throughput: bool) -> str | None:
    """One line per option: p50 latency (or rows per second) against batch size, log-log."""
    series = [(o, o.throughput if throughput else {b: v / 1e3 for b, v in o.p50_ms.items()})
              for o in summary.options]
    series = [(o, values) for o, values in series if len(values) >= 2]
    if not series:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(WIDTH_IN, 3.6))
    for option, values in series:
        sizes = sorted(values)
        style = "-" if option.trusted else ":"
        axes.plot(sizes, [values[b] for b in sizes], style, marker="o", label=option.label)
    axes.set_xscale("log", base=2)
    sizes_all = sorted({b for _, values in series for b in values})
    axes.set_xticks(sizes_all, [str(b) for b in sizes_all])
    axes.minorticks_off()
    axes.set_yscale("log")
    axes.set_xlabel("batch size (rows per call)")
    axes.set_ylabel("rows per second" if throughput else "p50 latency per call (s)")
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8, loc="best")
    return _svg(figure)


def _last_per_rate(points: list[dict]) -> list[dict]:
    """Each rate's last run (a search runs a rate again to confirm or retry it)."""
    last = {p.get("target_qps"): p for p in points
            if p.get("scheduled_qps") and p.get("latency_ms", {}).get("p99")}
    return list(last.values())


def load_chart(served: Sequence[Served]) -> str | None:
    """Server runs: the p99 latency against the scheduled rate, one line per option (a filled
    marker where LoadGen called the run VALID, hollow where not), the bound as a dashed line."""
    series = [(s, sorted(_last_per_rate(s.info.get("points", [])),
                         key=lambda p: p["scheduled_qps"]))
              for s in served if s.scenario == "server" and s.record.ok]
    series = [(s, points) for s, points in series if points]
    if not series:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(WIDTH_IN, 4.0))
    for option, points in series:
        rates = [p["scheduled_qps"] for p in points]
        p99s = [p["latency_ms"]["p99"] for p in points]
        style = "-" if option.trusted else ":"
        (line,) = axes.plot(rates, p99s, style, label=option.label)
        colour = line.get_color()
        for rate, p99, point in zip(rates, p99s, points, strict=True):
            axes.plot([rate], [p99], "o", color=colour,
                      markerfacecolor=colour if point.get("valid") else "white")
    for bound in dict.fromkeys(s.bound for s, _ in series):
        if bound:
            axes.axhline(bound, color="#b00020", linestyle="--", linewidth=1,
                         label=f"bound: p99 {bound:g} ms")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("scheduled rate (queries per second, Poisson arrivals)")
    axes.set_ylabel("p99 latency (ms)")
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=7, loc="best")
    return _svg(figure)
