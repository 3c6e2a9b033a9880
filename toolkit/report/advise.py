"""`advise`'s answer in words, as the terminal, advice.md and advice.html show it.

The one-line recommendation; the confirmed configurations side by side (each one's median peak
over its rounds with its interval, beside what the model predicted); the search's chart; why
the others lost (folded away in the page); the chosen configuration as code and TOML to paste.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from toolkit.advise import (
    CONFIRM_LONGEST_RUN_S,
    Advice,
    changed_of,
    confirm_queries,
    machines,
    usd_per_million,
)
from toolkit.confirmations import SPINNING, Held, model_error, model_errors
from toolkit.results import write_atomic
from toolkit.scenarios import SERVER_QUERIES
from toolkit.search import Config

SHOWN_LOST = 12  # configurations listed with why they lost (the counts cover them all)


def _qps(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1e3:.3g}k q/s" if value >= 1e3 else f"{value:.3g} q/s"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g} ms"


def _runs(c: Held) -> str:
    passed, made = c.runs_at_peak
    return f"{passed} of {made} runs at its peaks VALID" if made else "VALID"


def _figure(c: Held) -> str:
    """A held configuration's median peak with its interval (or range) over its rounds."""
    if c.peak_qps is None:
        return "none valid"
    if c.low_qps is None or c.high_qps is None:
        return f"{_qps(c.peak_qps)} (one round)"
    return f"{_qps(c.peak_qps)} [{_bare(c.low_qps)}, {_bare(c.high_qps)}]"


def _bare(value: float) -> str:
    """A rate without its unit (an interval's bounds, after the figure that has it)."""
    return _qps(value).removesuffix(" q/s")


def headline(advice: Advice) -> str:
    """The recommendation in one line, or why there is none."""
    chosen, request = advice.pick, advice.request
    if chosen is None:
        why = "; ".join(f"{c.config.label()}: {c.why_not or c.kind}" for c in _candidates(advice))
        return (f"no configuration of {request.target} was confirmed within p99 <= "
                f"{request.p99_ms:g} ms under LoadGen, so none is recommended"
                + (f" ({why})" if why else ""))
    drop = chosen.predicted.quality_drop if chosen.predicted else 0.0
    line = (f"serve {request.target} as {chosen.config.label()}: {_figure(chosen)} per "
            f"machine over {len(chosen.rounds)} rounds, at p99 {_ms(chosen.p99_ms)} "
            f"({_runs(chosen)})" + (f", accuracy -{drop:.3g}" if drop else
                                    ", no accuracy lost against fp32"))
    if chosen.failed_below_qps:
        line += (f"; it missed the bound at {_qps(min(chosen.failed_below_qps))}, below its "
                 "peak: keep each machine busy")
    need = machines(request.need_qps, chosen.peak_qps)
    if need:
        line += f"; {need} machine{'s' * (need > 1)} like this for {_qps(request.need_qps)}"
    cost = usd_per_million(request.price, chosen.peak_qps, request.need_qps)
    if cost is not None:
        line += f"; ${cost:.4g} per million at ${request.price:g}/h"
    default, versus = advice.default, advice.versus
    if default is chosen:
        line += " (a default: the search found nothing faster that held)"
    elif default is not None and versus is not None and versus.faster:
        line += (f"; {versus.text()} the best default {versus.over} (the best default: "
                 f"{default.config.label()}, {_qps(default.peak_qps)})")
    elif default is not None and versus is not None:
        line += (f"; not shown faster than the best default: {versus.text()} {versus.over}, "
                 f"which the rounds cannot tell from 1, so the default serves as well as far "
                 f"as they show (the best default: {default.config.label()}, "
                 f"{_qps(default.peak_qps)})")
    elif default is not None:
        line += f" (best default, {default.config.label()}: {_qps(default.peak_qps)})"
    return line


def confirmation_rows(advice: Advice) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Each confirmed configuration: its rounds' peaks, their median and interval with each
    round's machine effect out, what the model predicted, and its verdict."""
    columns = ("configuration", "put forward as",
               "sustained peak, the machine's speed out: median [95%]", "each round, as measured",
               "predicted (over held)", "p99 there", "verdict")
    rows = []
    chosen = advice.pick
    for c in sorted(_candidates(advice), key=lambda h: (h is not chosen, -(h.peak_qps or 0.0))):
        figure = _figure(c)
        if c.peak_qps is not None and not c.sustained:
            figure += f" ({c.kind}: not picked)"
        if c.failed_below_qps:
            figure += f" (failed at {_qps(min(c.failed_below_qps))})"
        rounds = ", ".join(_qps(r.peak_qps) if r.sustained else
                           ("-" if r.peak_qps is None else f"{_qps(r.peak_qps)} ({r.kind})")
                           for r in c.rounds)
        verdict = ("picked" if c is chosen else
                   c.why_not or ("held" if c.sustained else "not sustained"))
        predicted = _qps(c.predicted.rate if c.predicted else None)
        if c.predicted and c.predicted.rate > 0 and c.sustained and c.peak_qps:
            predicted += f" ({c.predicted.rate / c.peak_qps:.2f}x)"
        again = (advice.in_rounds.get("predicted") or {}).get(c.config.label())
        if again and c.sustained and c.peak_qps:
            predicted += f"; at these rounds' speed {_qps(again)} ({again / c.peak_qps:.2f}x)"
        rows.append((c.config.label(), "the search" if c.role == "searched" else "a default",
                     figure, rounds, predicted, _ms(c.p99_ms), verdict))
    return columns, rows


def rounds_line(advice: Advice) -> str | None:
    """The machine's speed in each confirming round, read off every configuration."""
    effects = advice.over_rounds[1].effects
    if len(effects) < 2:
        return None
    return ("confirmed in " + str(len(effects)) + " rounds, side by side, the order flipping "
            "each round; the "
            "machine's speed against its mean over them: " + ", ".join(
                f"{e:.2f}x" for _, e in sorted(effects.items()))
            + " in rounds " + ", ".join(str(r) for r in sorted(effects))
            + " (read off every configuration; each round's peaks are divided by it before the "
            "median)")


def _candidates(advice: Advice) -> list[Held]:
    """The configurations confirmed as answers: not the calibration's controls."""
    return [h for h in advice.held if h.role != "control"]


def model_line(advice: Advice) -> str | None:
    """The queueing model's error over the held configurations: as it searched, and scaled to
    the machine's speed in these rounds as the control read it."""
    errors = model_errors(advice.held)
    middle = model_error(advice.held)
    if middle is None:
        return None
    over = sum(1 for e in errors.values() if e > 0)
    line = (f"the queueing model's median error over the {len(errors)} held configuration"
            f"{'s' * (len(errors) > 1)}: {middle:.0%}; it predicted more than held for {over} "
            f"of them (each one's predicted over held is in the table)")
    if advice.in_rounds:
        again = model_error(advice.held, advice.in_rounds["predicted"])
        measured = str(advice.serial.get("source", "")).startswith("measured")
        given = ("the calibration gives it" if measured else
                 "the serial costs fitted by hand give it (not measured here)")
        line += (f". The calibration's trivial model, confirmed in the same rounds, held "
                 f"{_qps(advice.in_rounds['control_qps'])} where {given} "
                 f"{_qps(advice.in_rounds['calibrated_qps'])}: the machine ran at "
                 f"{advice.in_rounds['speed']:.2f}x the calibration's speed; at that speed the "
                 f"model's median error is " + (f"{again:.0%}" if again is not None else "-"))
    return line


def lost_lines(advice: Advice) -> list[str]:
    """Why the configurations the search tried lost, counted, and the best few of each kind."""
    kinds: Counter[str] = Counter()
    for t in advice.tried:
        kinds[_kind(t.why_lost)] += 1
    lines = [f"the search tried {len(advice.tried)} configurations (the model's prediction, "
             f"not a measurement): " + ", ".join(f"{n} {k}" for k, n in kinds.most_common())]
    lines += [f"{option}: refused in every configuration, {why}"
              for option, why in advice.trials.inaccurate.items()]
    for t in [t for t in advice.tried if t.why_lost][:SHOWN_LOST]:
        lines.append(f"{t.config.label()}: {_qps(t.outcome.rate)} predicted; {t.why_lost}")
    refused = advice.trials.refused
    lines += [f"{option}: not tried ({why})" for option, why in refused.items()
              if option not in advice.trials.options]
    return lines


def _kind(why: str | None) -> str:
    if why is None:
        return "on the front"
    if why.startswith("dominated"):
        return "dominated"
    if "accuracy" in why:
        return "over the accuracy limit"
    if "MB" in why:
        return "over the memory limit"
    if "bound" in why:
        return "never within the bound"
    return "could not serve"


def session_code(config: Config, threads: int) -> str:
    """The configuration as code: ONNX Runtime's SessionOptions, or the native call."""
    session = dict(config.session)
    if config.option.startswith("onnxruntime"):
        level = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED",
                 "basic": "ORT_ENABLE_BASIC", "disable": "ORT_DISABLE_ALL"}[
            str(session.get("graph_optimization", "all"))]
        spin = "1" if session.get("spinning") else "0"
        return "\n".join((
            "import onnxruntime as ort",
            "",
            "options = ort.SessionOptions()",
            f"options.intra_op_num_threads = {threads}",
            "options.inter_op_num_threads = 1",
            f"options.graph_optimization_level = ort.GraphOptimizationLevel.{level}",
            f'options.add_session_config_entry("session.intra_op.allow_spinning", "{spin}")',
            f"options.enable_cpu_mem_arena = {session.get('memory_arena', True)}",
            f"options.enable_mem_pattern = {session.get('memory_pattern', True)}",
            f"# one session per worker: {config.workers} worker thread"
            f"{'s' * (config.workers > 1)}, each with its own",
            'session = ort.InferenceSession("model.onnx", options, '
            'providers=["CPUExecutionProvider"])'))
    runner = config.option.split()[0]
    if runner == "native_torch":
        return "\n".join((
            "import torch",
            "",
            f"torch.set_num_threads({threads})",
            f"# {config.workers} worker process{'es' * (config.workers > 1)}, each:",
            "with torch.inference_mode():",
            "    out = model(batch)"))
    return (f"# {runner}: {config.workers} worker process{'es' * (config.workers > 1)} of "
            f"{threads} thread{'s' * (threads > 1)} each (OMP_NUM_THREADS={threads})")


def suite_toml(advice: Advice, config: Config) -> str:
    """The configuration as a suite file `deploybench run --suite` takes (a built-in workload;
    for a model file, the loadgen command line says the same)."""
    request = advice.request
    recipe = config.option.split()[-1]
    lines = ["# deploybench run --suite advice.toml",
             'name = "advice"',
             f'workloads = ["{advice.workload}"]',
             'providers = ["cpu"]',
             f"threads = {config.threads}",
             f'optimization = "{dict(config.session).get("graph_optimization", "all")}"',
             f"recipes = {json.dumps(['fp32'] + ([recipe] if recipe != 'fp32' else []))}",
             f'max_quality_drop = "{request.max_quality_drop}"',
             ""]
    others = [(k, v) for k, v in config.session if k not in ("graph_optimization", SPINNING)]
    if others:  # ONNX Runtime's other session options, as the suite's [session] names them
        lines += ["[session]", *(f"{k} = {json.dumps(v)}" for k, v in others), ""]
    lines += ["[scenarios.server]", f"p99_ms = {request.p99_ms:g}",
              f"workers = {config.workers}", f"threads = {config.threads}"]
    if config.max_batch > 1:
        lines += [f"batch_sizes = [{config.max_batch}]",
                  f"max_delay_ms = {config.max_delay_ms:g}"]
    if dict(config.session).get(SPINNING):
        lines.append("spinning = true")
    if recipe != "fp32":
        lines.insert(1, f"# run's LoadGen scenarios serve the fp32 file; the {recipe} file is "
                     "timed and judged beside it")
    return "\n".join(lines) + "\n"


def loadgen_command(advice: Advice, config: Config) -> str:
    """The `loadgen` command line that serves the configuration's pool (every serving path of
    the fp32 file: loadgen takes no recipe)."""
    recipe = config.option.split()[-1]
    note = (f"  # serves the fp32 file; the {recipe} file is in the run's folder"
            if recipe != "fp32" else "")
    request = advice.request
    parts = ["deploybench loadgen", request.target, "--scenario server",
             f"--p99-ms {request.p99_ms:g}", "--providers cpu",
             f"--workers {config.workers}", f"--threads {config.threads}"]
    if config.max_batch > 1:
        parts += [f"--batch-sizes {config.max_batch}", f"--max-delay-ms {config.max_delay_ms:g}"]
    changed = dict(changed_of(config.session, advice.optimization) if config.ort else ())
    if changed.pop(SPINNING, False):
        parts.append("--spinning")
    if "graph_optimization" in changed:
        parts.append(f"--optimization {changed.pop('graph_optimization')}")
    parts += [f"--session {k}={str(v).lower()}" for k, v in changed.items()]
    chosen = next((c for c in advice.confirmed if c.config == config), None)
    queries = confirm_queries(chosen.predicted.rate) if chosen and chosen.predicted else None
    if queries and queries != SERVER_QUERIES:  # a slow model's runs, as advise made them
        parts += [f"--queries {queries}", f"--longest-run {CONFIRM_LONGEST_RUN_S:g}"]
    parts += [f"--shape {shape}" for shape in request.shapes]
    if request.input_data:
        parts.append(f"--input-data {request.input_data}")
    return " ".join(parts) + note


def ticks(top: float, most: int = 6) -> list[float]:
    """Round axis values from 0 to `top`: steps of 1, 2 or 5 times a power of ten, at most
    `most` of them past 0."""
    if top <= 0:
        return [0.0]
    raw = top / most
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [n * step for n in range(int(top / step + 1e-9) + 1)]


def _tick_text(value: float) -> str:
    return f"{value / 1e3:g}k" if value >= 1e3 else f"{value:g}"


def chart_svg(advice: Advice, width: int = 640, height: int = 360) -> str:
    """The Pareto chart: each configuration tried, its predicted rate against its p99, by
    recipe; within the limits filled, beyond them hollow; the confirmed ringed, at their
    LoadGen peak."""
    points = [(t.outcome.rate, t.outcome.p99_ms, t.config.option.split()[-1], t.why_lost)
              for t in advice.tried if t.outcome.rate > 0 and t.outcome.p99_ms is not None]
    if not points:
        return "<p>No configuration had a rate within the bound to chart.</p>"
    top = max(max(p[0] for p in points),
              max((c.peak_qps or 0.0 for c in _candidates(advice)), default=0.0)) * 1.05
    bound = advice.request.p99_ms
    left, bottom, right, upper = 64, height - 44, width - 20, 20
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    recipes = sorted({p[2] for p in points})

    def x(rate: float) -> float:
        return left + (right - left) * rate / top

    def y(p99: float) -> float:
        return bottom - (bottom - upper) * min(p99, bound) / bound

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="11">',
             f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#333"/>',
             f'<line x1="{left}" y1="{upper}" x2="{left}" y2="{bottom}" stroke="#333"/>',
             f'<text x="{(left + right) / 2}" y="{height - 6}" text-anchor="middle">rate within '
             'the bound (queries per second)</text>',
             f'<text x="14" y="{(upper + bottom) / 2}" transform="rotate(-90 14 '
             f'{(upper + bottom) / 2})" text-anchor="middle">p99 at that rate (ms)</text>']
    for value in ticks(top):  # numbered axes, with a light grid
        parts += [f'<line x1="{x(value):.1f}" y1="{upper}" x2="{x(value):.1f}" y2="{bottom}" '
                  'stroke="#eee"/>',
                  f'<text x="{x(value):.1f}" y="{bottom + 16}" text-anchor="middle">'
                  f'{_tick_text(value)}</text>']
    for value in ticks(bound, 5):
        parts += [f'<line x1="{left}" y1="{y(value):.1f}" x2="{right}" y2="{y(value):.1f}" '
                  'stroke="#eee"/>',
                  f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">'
                  f'{_tick_text(value)}</text>']
    for rate, p99, recipe, why in points:
        colour = colours[recipes.index(recipe) % len(colours)]
        fill = colour if why is None or why.startswith("dominated") else "none"
        parts.append(f'<circle cx="{x(rate):.1f}" cy="{y(p99):.1f}" r="3" fill="{fill}" '
                     f'stroke="{colour}"><title>{html.escape(recipe)} {rate:,.0f} q/s, p99 '
                     f'{p99:.3g} ms{"; " + html.escape(why) if why else ""}</title></circle>')
    for c in _candidates(advice):
        if c.peak_qps is None or c.p99_ms is None:
            continue
        parts.append(f'<circle cx="{x(c.peak_qps):.1f}" cy="{y(c.p99_ms):.1f}" r="7" '
                     f'fill="none" stroke="#000" stroke-width="2"><title>confirmed: '
                     f'{html.escape(c.config.label())} {c.peak_qps:,.0f} q/s, the median of '
                     f'its rounds ({c.kind})</title></circle>')
    for n, recipe in enumerate(recipes):
        colour = colours[n % len(colours)]
        parts.append(f'<circle cx="{right - 120}" cy="{upper + 12 + 14 * n}" r="4" '
                     f'fill="{colour}"/><text x="{right - 110}" y="{upper + 16 + 14 * n}">'
                     f'{html.escape(recipe)}</text>')
    parts.append(f'<text x="{right - 120}" y="{upper + 16 + 14 * len(recipes)}">ringed: '
                 'LoadGen peak</text></svg>')
    return "\n".join(parts)


def _short(config: Config, optimization: str) -> str:
    """A configuration in a few words for a chart's row: "int8-dynamic 2x1, batch 16 in 0.1
    ms, memory_pattern off"."""
    text = (f"{config.option.split()[-1]} {config.workers}x{config.threads}, "
            + (f"batch {config.max_batch} in {config.max_delay_ms:g} ms"
               if config.max_batch > 1 else "no batching"))
    if not config.ort:
        text = f"{config.option.split()[0]} " + text
    changed = changed_of(config.session, optimization) if config.ort else ()
    return text + "".join(f", {k} {'on' if v is True else 'off' if v is False else v}"
                          for k, v in changed)


def intervals_svg(advice: Advice, width: int = 640) -> str:
    """The confirmed configurations side by side, one line each: the median of its rounds'
    sustained peaks (a dot) and its 95% interval (a bar), each round's peak (ticks), and
    what the queueing model predicted (a hollow diamond), on one numbered rate axis."""
    chosen = advice.pick
    held = sorted(_candidates(advice), key=lambda h: (h is not chosen, -(h.peak_qps or 0.0)))
    if not held:
        return ""
    top = max([h.high_qps or h.peak_qps or 0.0 for h in held]
              + [r.peak_qps or 0.0 for h in held for r in h.rounds]
              + [h.predicted.rate if h.predicted else 0.0 for h in held]) * 1.05
    if top <= 0:
        return ""
    left, right, row = 300, width - 20, 26
    height = 40 + row * len(held)
    bottom = 14 + row * len(held)

    def x(rate: float) -> float:
        return left + (right - left) * rate / top

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="11">',
             f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#333"/>']
    for value in ticks(top):
        parts += [f'<line x1="{x(value):.1f}" y1="6" x2="{x(value):.1f}" y2="{bottom}" '
                  'stroke="#eee"/>',
                  f'<text x="{x(value):.1f}" y="{bottom + 14}" text-anchor="middle">'
                  f'{_tick_text(value)}</text>']
    parts.append(f'<text x="{(left + right) / 2}" y="{height - 4}" text-anchor="middle">'
                 'sustained peak under LoadGen (q/s): dot, the median; bar, its 95% interval; '
                 'ticks, each round; diamond, predicted</text>')
    for n, h in enumerate(held):
        y = 14 + row * n + row / 2 - 4
        role = "picked" if h is chosen else ("default" if h.role == "default" else "searched")
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{html.escape(f"{role}: {_short(h.config, advice.optimization)}")}'
                     f'<title>{html.escape(h.config.label())}</title></text>')
        colour = "#1f77b4" if h.sustained else "#999"
        if h.low_qps is not None and h.high_qps is not None:
            parts.append(f'<line x1="{x(h.low_qps):.1f}" y1="{y:.1f}" x2="{x(h.high_qps):.1f}" '
                         f'y2="{y:.1f}" stroke="{colour}" stroke-width="4" opacity="0.5"/>')
        for r in h.rounds:
            if r.peak_qps is not None and r.sustained:
                parts.append(f'<line x1="{x(r.peak_qps):.1f}" y1="{y - 6:.1f}" '
                             f'x2="{x(r.peak_qps):.1f}" y2="{y + 6:.1f}" stroke="{colour}">'
                             f'<title>round {r.round}: {r.peak_qps:,.0f} q/s</title></line>')
        if h.peak_qps is not None:
            parts.append(f'<circle cx="{x(h.peak_qps):.1f}" cy="{y:.1f}" r="4" '
                         f'fill="{colour}"><title>median {h.peak_qps:,.0f} q/s</title>'
                         '</circle>')
        if h.predicted and h.predicted.rate > 0:
            px = x(h.predicted.rate)
            parts.append(f'<polygon points="{px:.1f},{y - 5:.1f} {px + 5:.1f},{y:.1f} '
                         f'{px:.1f},{y + 5:.1f} {px - 5:.1f},{y:.1f}" fill="none" '
                         f'stroke="#d62728"><title>predicted {h.predicted.rate:,.0f} q/s'
                         '</title></polygon>')
    parts.append("</svg>")
    return "\n".join(parts)


def notes(advice: Advice) -> list[str]:
    """The lines under the confirmations: the rounds' machine effects and the model's error."""
    return [line for line in (rounds_line(advice), model_line(advice)) if line]


def markdown(advice: Advice) -> str:
    chosen = advice.pick
    lines = ["# Which configuration should I deploy?", "", headline(advice), ""]
    if advice.unsteady:
        lines += [f"Beware: {advice.unsteady}.", ""]
    columns, rows = confirmation_rows(advice)
    lines += _md_table(columns, rows) + [""]
    below = notes(advice)
    if below:
        lines += [f"- {line}" for line in below] + [""]
    lines += ["## What the search tried", ""] + [f"- {line}" for line in lost_lines(advice)]
    if chosen is not None:
        threads = chosen.config.threads
        lines += ["", "## The configuration to paste", "", "```python",
                  session_code(chosen.config, threads), "```", "", "```toml",
                  suite_toml(advice, chosen.config).rstrip(), "```", "", "```sh",
                  loadgen_command(advice, chosen.config), "```"]
    lines += ["", _caveat(advice)]
    return "\n".join(lines) + "\n"


def _caveat(advice: Advice) -> str:
    rounds = max((len(h.rounds) for h in advice.held), default=1)
    return (
        f"Predicted rates come from each option's measured service times (1-16 rows a call) "
        f"fed to a queueing model of the serving path; only the LoadGen peaks are "
        f"measurements, each the highest rate that held p99 <= {advice.request.p99_ms:g} ms "
        f"in 2 runs (of 2,048 queries or 0.5 s, fewer for a slow model to fit the budget). "
        f"Each configuration was confirmed in {rounds} round{'s' * (rounds > 1)}, the "
        f"configurations side by side (their LoadGen runs taking turns), their order "
        f"flipping each round; its figure is the median of its rounds "
        f"with each round's machine effect out, and the pick is set against the best default "
        f"round by round. Everything ran on one machine ({advice.cores} cores), in "
        f"{advice.budget_used_s:,.0f} s.")


def _md_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    return (["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
            + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows])


def html_page(advice: Advice) -> str:
    """The answer first: the headline, the confirmed configurations side by side (chart and
    table), the rounds and the model's error; then the search's chart, the configuration to
    paste, and the configurations that lost, folded away."""
    chosen = advice.pick
    columns, rows = confirmation_rows(advice)
    table = ("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>"
             + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                       for row in rows) + "</table>")
    lost = lost_lines(advice)
    listed = "".join(f"<li>{html.escape(line)}</li>" for line in lost[1:])
    folded = (f"<details><summary>{html.escape(lost[0])}</summary><ul>{listed}</ul></details>"
              if listed else f"<p>{html.escape(lost[0])}</p>")
    below = "".join(f"<p>{html.escape(line)}</p>" for line in notes(advice))
    paste = ""
    if chosen is not None:
        paste = ("<h2>The configuration to paste</h2><pre>"
                 + html.escape(session_code(chosen.config, chosen.config.threads))
                 + "</pre><pre>" + html.escape(suite_toml(advice, chosen.config)) + "</pre><pre>"
                 + html.escape(loadgen_command(advice, chosen.config)) + "</pre>")
    beware = f"<p><b>Beware: {html.escape(advice.unsteady)}.</b></p>" if advice.unsteady else ""
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:"
             "collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
             "pre{background:#f4f4f4;padding:8px}summary{cursor:pointer}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>deploybench advise: "
            f"{html.escape(advice.request.target)}</title><style>{style}</style></head><body>"
            f"<h1>Which configuration should I deploy?</h1><p><b>{html.escape(headline(advice))}"
            f"</b></p>{beware}<h2>The confirmed configurations</h2>{intervals_svg(advice)}{table}"
            f"{below}<h2>The search</h2>{chart_svg(advice)}{folded}{paste}"
            f"<p>{html.escape(_caveat(advice))}</p></body></html>\n")


def write(advice: Advice) -> list[Any]:
    """advice.md and advice.html beside advice.json; the paths written."""
    written = []
    for name, text in (("advice.md", markdown(advice)), ("advice.html", html_page(advice))):
        path = advice.folder / name
        write_atomic(path, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
        written.append(path)
    return written
