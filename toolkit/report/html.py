"""report.html: one self-contained page (inline CSS and SVG charts; nothing fetched).

For the people who choose how a model is served.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from toolkit.report import plots
from toolkit.report.loadgen import loadgen_notes, loadgen_tables, sustained_picks
from toolkit.report.summary import (
    Option,
    WorkloadSummary,
    cold_text,
    decisions,
    unmeasured_lines,
    warning_lines,
)
from toolkit.report.table import options_table
from toolkit.report.units import ratio

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; color: #222;
       padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05rem; margin-bottom: .3rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .55rem; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th { background: #f4f4f4; } .bad { color: #b00020; } .note { color: #666; font-size: .85rem; }
.headline { font-weight: 600; font-size: 1.05rem; } .chart svg { max-width: 100%; height: auto; }
.decision td:first-child { font-weight: 600; } caption { caption-side: bottom; text-align: left; }
"""


def render(summaries: Sequence[WorkloadSummary], runs: Sequence[Mapping[str, Any]],
           machines: Sequence[str]) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>deploybench report</title>", f"<style>{STYLE}</style></head><body>",
             "<h1>deploybench report</h1>"]
    parts += _environment(runs, machines)
    parts += ["<h2>Headlines</h2><ul>"]
    parts += [f'<li class="headline">{escape(s.headline())}</li>' for s in summaries]
    parts += ["</ul>"]
    for summary in summaries:
        parts += _workload(summary)
    parts += ["</body></html>"]
    return "\n".join(parts) + "\n"


def _environment(runs: Sequence[Mapping[str, Any]], machines: Sequence[str]) -> list[str]:
    out = ["<h2>Where these numbers come from</h2>"]
    for run, machine in zip(runs, machines, strict=True):
        env = run.get("environment", {})
        suite = run.get("suite", {})
        state = "interrupted" if run.get("interrupted") else (
            "finished" if run.get("finished") else "not finished")
        out.append(f"<h3>{escape(machine)}</h3><table>")
        rows = [
            ("run", f"suite {suite.get('name', '?')}, started {run.get('started')}, {state}"),
            ("CPU", f"{env.get('cpu', '?')}, {env.get('physical_cores', '?')} physical cores, "
                    f"{env.get('memory_gb', '?')} GB"),
            ("instruction set", ", ".join(env.get("instruction_set") or []) or "unknown"),
            ("GPU", ", ".join(env.get("gpus") or []) or "none"),
            ("threads per runtime", str(suite.get("threads", "?"))),
            ("ONNX Runtime graph optimisation", str(suite.get("optimization", "?"))),
            ("versions", ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())),
        ]
        rows += [(f"provider {p}", why) for p, why in env.get("providers", {}).items()]
        out += [f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows]
        out.append("</table>")
    return out


def _workload(summary: WorkloadSummary) -> list[str]:
    out = [f"<h2>{escape(summary.key)}</h2>",
           f'<p class="headline">{escape(summary.headline())}</p>']
    out += _decision_table(summary)
    out += _load_section(summary)
    for title, svg in (("The gap: training against one prediction", plots.gap_chart(summary)),
                       ("Latency against batch size", plots.batch_chart(summary, False)),
                       ("Throughput against batch size", plots.batch_chart(summary, True))):
        if svg:
            out += [f"<h3>{title}</h3>", f'<div class="chart">{svg}</div>']
    if summary.flops_per_row:
        out.append(f'<p class="note">{summary.flops_per_row:,} FLOPs per row, counted from the '
                   "ONNX graph (Conv, Gemm, MatMul, element-wise); % of peak is against this "
                   "machine's float32 matrix-product peak measured at the same thread count "
                   "(deploybench env --peak); GPU timings get no % where no GPU peak is "
                   "known.</p>")
    if summary.options or not summary.served:
        out += _options_table(summary)
        out += _cold_and_memory_table(summary)
    out += _parity_table(summary)
    notes = summary.problems + unmeasured_lines(summary) + [f"! {w}" for w in
                                                            warning_lines(summary)]
    notes += loadgen_notes(summary.served)
    if notes:
        out += ["<h3>Notes</h3><ul>"] + [f'<li class="note">{escape(n)}</li>' for n in notes]
        out.append("</ul>")
    return out


def _load_section(summary: WorkloadSummary) -> list[str]:
    """MLPerf LoadGen: the latency-against-rate chart and a table per scenario."""
    tables = loadgen_tables(summary.served)
    if not tables:
        return []
    out = ["<h3>Serving under load (MLPerf LoadGen)</h3>"]
    svg = plots.load_chart(summary.served)
    if svg:
        out.append(f'<div class="chart">{svg}</div>')
    for table in tables:
        out.append(f'<table><caption class="note">{escape(table.caption)}</caption><tr>'
                   + "".join(f"<th>{escape(c)}</th>" for c in table.columns) + "</tr>")
        numeric = [0 < i and name != "sessions" for i, name in enumerate(table.columns)]
        for cells, trusted in table.rows:
            out.append("<tr>" + "".join(_cell(text, numeric[index], trusted)
                                        for index, text in enumerate(cells)) + "</tr>")
        out.append("</table>")
    return out


def _decision_table(summary: WorkloadSummary) -> list[str]:
    found = decisions(summary)
    picks = sustained_picks(summary.served)
    if not found and not picks:
        return ['<p class="bad">Nothing was measured.</p>']
    out = ['<table class="decision"><tr><th>goal</th><th>pick</th><th>figure</th>'
           "<th>speed-up over the idiomatic call</th><th>ruled out</th></tr>"]
    for decision in found:
        what = (f"latency, batch {decision.batch_size}" if decision.goal == "latency"
                else f"throughput, batch {decision.batch_size}")
        pick = escape(decision.pick.label) if decision.pick else "no option passed parity"
        ruled = "<br>".join(escape(r) for r in decision.ruled_out) or "none"
        out.append(f"<tr><td>{what}</td><td>{pick}</td><td class='num'>"
                   f"{escape(decision.figure)}</td><td class='num'>{ratio(decision.speedup)}"
                   f"</td><td class='note'>{ruled}</td></tr>")
    ruled = "<br>".join(escape(f"{s.label}: its ONNX file failed parity")
                        for s in summary.served if not s.trusted) or "none"
    for pick in picks:
        name = escape(pick.pick.label) if pick.pick else "no option had a VALID run"
        out.append(f"<tr><td>{escape(pick.goal)}</td><td>{name}</td><td class='num'>"
                   f"{escape(pick.figure)}</td><td class='num'>-</td><td class='note'>{ruled}"
                   "</td></tr>")
    out.append("</table>")
    return out


def _timed(summary: WorkloadSummary) -> list[Option]:
    return [o for o in summary.options if o.p50_ms]


def _options_table(summary: WorkloadSummary) -> list[str]:
    """The options table; an untrusted option's words (its label, its verdict) in red."""
    model = options_table(summary)
    out = [f'<h3>Every option</h3><table><caption class="note">{escape(model.caption)}'
           "</caption><tr>" + "".join(f"<th>{escape(c.name)}</th>" for c in model.columns)
           + "</tr>"]
    for row in model.rows:
        cells = (_cell(text, column.numeric, row.trusted)
                 for text, column in zip(row.cells, model.columns, strict=True))
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return out


def _cell(text: str, numeric: bool, trusted: bool) -> str:
    if numeric:
        return f"<td class='num'>{escape(text)}</td>"
    return f"<td>{escape(text)}</td>" if trusted else f'<td class="bad">{escape(text)}</td>'


def _cold_and_memory_table(summary: WorkloadSummary) -> list[str]:
    out = ["<h3>Cold start and memory</h3><p class=\"note\">The median over rounds (each a fresh "
           "process), and the range where there were several; each variant's first call is "
           "on a session of its own. Peak RSS is the measuring process's while each batch "
           "size ran on its own, smallest first: what a process serving it holds (b=size: "
           "MB); one figure is the process's peak over every size.</p>"
           "<table><tr><th>option</th><th>import</th>"
           "<th>load</th><th>first call</th><th>peak RSS</th><th>GPU memory</th></tr>"]
    for option in _timed(summary):
        cells = [escape(option.label), cold_text(option.import_s), cold_text(option.load_s),
                 cold_text(option.first_call_s) + (" (compiles)" if option.compiled else ""),
                 _rss_text(option),
                 f"{option.gpu_mb:,.0f} MB" if option.gpu_mb else "-"]
        out.append("<tr><td>" + "</td><td class='num'>".join(cells) + "</td></tr>")
    out.append("</table>")
    return out


def _rss_text(option: Option) -> str:
    if option.rss_by_batch:
        return ", ".join(f"b={b}: {mb:,.0f} MB" for b, mb in sorted(option.rss_by_batch.items()))
    return f"{option.peak_rss_mb:,.0f} MB" if option.peak_rss_mb else "-"


def _parity_table(summary: WorkloadSummary) -> list[str]:
    parity = summary.parity
    if parity is None or parity.parity is None:
        return []
    p = parity.parity
    agree = "-" if p.label_agreement is None else f"{p.label_agreement:.2%}"
    info = parity.info
    quality = ""
    if "native_quality" in info and "onnx_quality" in info:
        quality = (f"; test {info.get('metric')}: native {info['native_quality']:.4f}, ONNX "
                   f"{info['onnx_quality']:.4f}")
    verdict = "passed" if p.passed else '<span class="bad">FAILED</span>'
    return [f"<h3>Parity</h3><p>{verdict} on {p.rows} held-out rows: max abs error "
            f"{p.max_abs:.2e}, max rel error {p.max_rel:.2e}, labels agree {agree} (rtol "
            f"{p.rtol:g}, atol {p.atol:g}){escape(quality)}</p>"]
