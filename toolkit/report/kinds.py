"""`advise --cluster`'s answer: which kind of node serves the model cheapest per million.

How sure that is, and each kind's pick, as the terminal, advice.md and advice.html (with a
chart of cost per million against p99) show it."""

from __future__ import annotations

import html
import json
from pathlib import Path

from toolkit.kinds import Fleet, Ranked, separation
from toolkit.report.advise import _figure, _md_table, _ms, _qps, _tick_text, ticks
from toolkit.results import write_atomic

TITLE = "Which machine should serve it?"


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:.3g}"


def _cost(r: Ranked) -> str:
    if r.cost is None:
        return "no price" if r.per_core is not None else "-"
    if r.cost_low is None or r.cost_high is None:
        return f"{_usd(r.cost)} (held in one round: no interval)"
    if r.cost_low == r.cost_high:
        return _usd(r.cost)
    return f"{_usd(r.cost)} [{r.cost_low:.3g}, {r.cost_high:.3g}]"


def _machines(r: Ranked) -> str:
    if r.machines is None:
        return "-"
    at_peak, fewest, most = r.machines
    return str(at_peak) if fewest == most else f"{at_peak} [{fewest}, {most}]"


def headline(fleet: Fleet) -> str:
    """The answer in one line: the kind to serve on, what it costs, and how sure that is."""
    request, ranking = fleet.request, fleet.ranking
    best = fleet.best
    if best is None:
        why = "; ".join(f"{s.plan.kind}: {s.why or 'no configuration held'}"
                        for s in fleet.studies)
        return (f"no kind of node confirmed a configuration of {request.target} within p99 <= "
                f"{request.p99_ms:g} ms, so none is recommended ({why})")
    held = best.study.pick
    assert held is not None
    need = request.need_qps
    where = (f"serve {request.target} on {best.kind} ({held.config.label()}, {_figure(held)} "
             f"a machine, p99 {_ms(held.p99_ms)})")
    if best.cost is None:
        line = (f"{where}: {_qps(best.per_core)} per core, the most of the kinds; no kind has a "
                "price (--price KIND=USD_PER_HOUR), so they are ranked by peak per core")
        if need and best.machines:
            line += f"; {_machines(best)} machines for {_qps(need)}"
        return line
    at = f" at {_qps(need)}" if need else " (a machine kept at its peak)"
    line = (f"{where}: {_cost(best)} per million queries{at}"
            + (f", {_machines(best)} machines at ${best.study.price:g}/h" if need else ""))
    priced = [r for r in ranking if r.cost is not None]
    if best.ties:
        other = next(r for r in priced if r.kind == best.ties[0])
        line += (f"; a tie with {', '.join(best.ties)} (their cost intervals overlap): "
                 f"{separation(best, other)}")
    elif len(priced) > 1:
        line += (f"; cheaper than {', '.join(r.kind for r in priced[1:])} beyond their "
                 "intervals")
    unpriced = [r.kind for r in ranking if r.cost is None and r.per_core is not None]
    if unpriced:
        line += f" ({', '.join(unpriced)}: no price, ranked after by peak per core)"
    return line


COLUMNS = ("rank", "kind", "advised on", "cores", "USD/h", "pick", "peak a machine [95%]",
           "p99 there", "machines needed [interval]", "USD per million [interval]", "note")


def rows(fleet: Fleet) -> list[tuple[str, ...]]:
    out = []
    for n, r in enumerate(fleet.ranking, 1):
        study, held = r.study, r.study.pick
        note = (f"ties with {', '.join(r.ties)}" if r.ties else
                study.why or ("no configuration held" if held is None else ""))
        if study.plan.gone:
            note = "; ".join(x for x in (note, "its nodes left the cluster") if x)
        if study.plan.gpu_note:
            note = "; ".join(x for x in (note, study.plan.gpu_note) if x)
        out.append((str(n) if r.per_core is not None else "-", r.kind,
                    f"{study.plan.node} ({len(study.plan.nodes)} node"
                    f"{'s' * (len(study.plan.nodes) > 1)})", str(study.plan.cores),
                    "-" if study.price is None else f"{study.price:g}",
                    held.config.label() if held else "-",
                    _figure(held) if held else "-", _ms(held.p99_ms) if held else "-",
                    _machines(r), _cost(r), note))
    return out


def kind_lines(fleet: Fleet) -> list[str]:
    """Each kind's predicted and confirmed peak, and where its whole study is."""
    lines = []
    for study in fleet.studies:
        held = study.pick
        predicted = held.predicted.rate if held and held.predicted else None
        what = (f"predicted {_qps(predicted)}, confirmed {_figure(held)}" if held else
                f"no pick ({study.why or 'no configuration held'})")
        lines.append(f"{study.plan.kind}: {what}; its study: {fleet.folder / study.folder}")
    return lines


def cost_chart_svg(fleet: Fleet, width: int = 640, height: int = 340) -> str:
    """Each priced kind's pick: its cost per million (with its interval) against its p99."""
    points = [(r.kind, r.study.pick.p99_ms, r.cost, r.cost_low, r.cost_high)
              for r in fleet.ranking if r.cost is not None and r.study.pick is not None
              and r.study.pick.p99_ms is not None]
    if not points:
        return "<p>No kind has both a price and a confirmed pick: there is no cost to chart.</p>"
    top_x = max(max(p[1] for p in points), fleet.request.p99_ms) * 1.05
    top_y = max((p[4] or p[2]) for p in points) * 1.1
    left, bottom, right, upper = 70, height - 44, width - 20, 20

    def x(p99: float) -> float:
        return left + (right - left) * p99 / top_x

    def y(cost: float) -> float:
        return bottom - (bottom - upper) * cost / top_y

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="11">',
             f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#333"/>',
             f'<line x1="{left}" y1="{upper}" x2="{left}" y2="{bottom}" stroke="#333"/>',
             f'<text x="{(left + right) / 2}" y="{height - 6}" text-anchor="middle">p99 at the '
             'pick\'s peak (ms)</text>',
             f'<text x="14" y="{(upper + bottom) / 2}" transform="rotate(-90 14 '
             f'{(upper + bottom) / 2})" text-anchor="middle">USD per million queries</text>',
             f'<line x1="{x(fleet.request.p99_ms):.1f}" y1="{upper}" '
             f'x2="{x(fleet.request.p99_ms):.1f}" y2="{bottom}" stroke="#d62728" '
             'stroke-dasharray="4 3"><title>the p99 bound</title></line>']
    for value in ticks(top_x, 5):
        parts.append(f'<text x="{x(value):.1f}" y="{bottom + 16}" text-anchor="middle">'
                     f'{_tick_text(value)}</text>')
    for value in ticks(top_y, 5):
        parts += [f'<line x1="{left}" y1="{y(value):.1f}" x2="{right}" y2="{y(value):.1f}" '
                  'stroke="#eee"/>',
                  f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">'
                  f'{value:.3g}</text>']
    for kind, p99, cost, low, high in points:
        if low is not None and high is not None:
            parts.append(f'<line x1="{x(p99):.1f}" y1="{y(low):.1f}" x2="{x(p99):.1f}" '
                         f'y2="{y(high):.1f}" stroke="#1f77b4" stroke-width="2"/>')
        parts.append(f'<circle cx="{x(p99):.1f}" cy="{y(cost):.1f}" r="5" fill="#1f77b4">'
                     f'<title>{html.escape(kind)}: ${cost:.3g} per million, p99 {p99:.3g} ms'
                     f'</title></circle><text x="{x(p99) + 8:.1f}" y="{y(cost) + 4:.1f}">'
                     f'{html.escape(kind)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _caveat(fleet: Fleet) -> str:
    return (f"Each kind was advised on one of its nodes by a whole `advise` study (trials, "
            f"calibration, search, confirmations under LoadGen in rounds), kinds on different "
            f"hosts side by side; a kind's cost is the machines it needs at its pick's median "
            f"peak times its price, its interval the same at the ends of the peak's interval. "
            f"The whole took {fleet.budget_used_s:,.0f} s.")


def markdown(fleet: Fleet) -> str:
    lines = [f"# {TITLE}", "", headline(fleet), ""]
    lines += _md_table(COLUMNS, rows(fleet)) + [""]
    lines += [f"- {line}" for line in kind_lines(fleet)] + ["", _caveat(fleet)]
    return "\n".join(lines) + "\n"


def html_page(fleet: Fleet) -> str:
    table = ("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS) + "</tr>"
             + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                       for row in rows(fleet)) + "</table>")
    studies = "".join(
        f"<li>{html.escape(line)} (<a href='{html.escape(s.folder)}/advice.html'>its "
        "report</a>)</li>" if s.advice else f"<li>{html.escape(line)}</li>"
        for s, line in zip(fleet.studies, kind_lines(fleet), strict=True))
    style = ("body{font-family:sans-serif;max-width:64em;margin:2em auto}table{border-collapse:"
             "collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>deploybench advise: "
            f"{html.escape(fleet.request.target)} across kinds</title><style>{style}</style>"
            f"</head><body><h1>{TITLE}</h1><p><b>{html.escape(headline(fleet))}</b></p>{table}"
            f"<h2>Cost per million against p99, a point per kind's pick</h2>"
            f"{cost_chart_svg(fleet)}<h2>Each kind's study</h2><ul>{studies}</ul>"
            f"<p>{html.escape(_caveat(fleet))}</p></body></html>\n")


def write(fleet: Fleet) -> list[Path]:
    """The run's advice.json (every kind's study, the ranking, the answer in words),
    advice.md and advice.html; the paths written."""
    answer = json.dumps({"answer": headline(fleet), **fleet.to_dict()}, indent=1,
                        default=str) + "\n"
    written = []
    for name, text in (("advice.json", answer), ("advice.md", markdown(fleet)),
                       ("advice.html", html_page(fleet))):
        path = fleet.folder / name
        write_atomic(path, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
        written.append(path)
    return written

