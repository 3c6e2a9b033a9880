"""Serving under load in the reports: one table per LoadGen scenario, and the pick.

A workload's options under MLPerf LoadGen (its `scenario` records), as one table per scenario
that the terminal, Markdown and HTML reports render, and the pick for sustained load (the
highest rate within the p99 bound).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from toolkit.busy import CORE_SPEED_S, fastest_of, unsteady_text
from toolkit.report.units import duration, significant
from toolkit.results import Record
from toolkit.rounds import OptionPeaks, peaks_over_rounds
from toolkit.scenarios import BATCHING

CAPTIONS = {
    "server": ("Server: Poisson arrivals. Peak: the highest scheduled rate LoadGen called VALID "
               "(p99 within the bound and enough queries for its early-stopping test) in 2 "
               "runs, a rate refused when it fails twice, found by doubling then bisecting; "
               "latencies at that rate, from each query's scheduled time. shared / "
               "per-worker: one ONNX Runtime session for all worker threads, or one each; "
               "threads: PyTorch worker threads with a model each; processes: worker "
               "processes, a model each; +batching: queued queries answered in one call. "
               "Peaks marked cut, lower bound or unconfirmed are never picked; \"failed at\": "
               "a lower rate missed the bound (p99 higher at low load), looked past once."),
    "offline": "Offline: every sample in one query, answered in calls of the batch size.",
    "singlestream": ("SingleStream: one query of one sample after another; MLPerf's figure is "
                     "LoadGen's early-stopping estimate of the 90th percentile."),
    "multistream": ("MultiStream: one query of N samples after another; MLPerf's figure is "
                    "LoadGen's early-stopping estimate of the 99th percentile."),
}


@dataclass(frozen=True)
class Served:
    """One option's LoadGen result in one scenario (one record)."""

    label: str
    record: Record
    trusted: bool = True  # False: the workload's ONNX file failed parity
    price_per_hour: float | None = None  # USD per hour of the machine that served it
    need_qps: float | None = None  # the rate the service must sustain
    host: str = ""  # the machine that served it
    # a search made in rounds: every round's record (`record` is the one nearest the median)
    # and the figure over them, each round's machine effect out (`toolkit.rounds`)
    rounds: tuple[Record, ...] = ()
    over_rounds: OptionPeaks | None = None
    unsettled: tuple[str, ...] = ()  # the options whose order against this one is not settled
    slow_rounds: tuple[int, ...] = ()  # rounds whose cores read slow around this option

    @property
    def info(self) -> dict[str, Any]:
        return dict(self.record.info)

    @property
    def scenario(self) -> str:
        return str(self.info.get("scenario", ""))

    @property
    def peak_qps(self) -> float | None:
        """The sustained peak; over rounds, the median of the rounds' peaks with each round's
        machine effect out."""
        if self.over_rounds is not None:
            return self.over_rounds.median
        return self.info.get("peak_qps")

    @property
    def searched(self) -> bool:
        return "peak_qps" in self.info

    @property
    def peak_kind(self) -> str:
        """What the peak is (`toolkit.scenarios.PeakSearch.kind`); files made before the search
        confirmed its peaks say nothing, and are taken as they were reported."""
        return str(self.info.get("peak_kind", "sustained"))

    @property
    def sustained(self) -> bool:
        """A peak that may be picked: bracketed by a failing rate and confirmed (over rounds:
        in most of them)."""
        if self.over_rounds is not None:
            return (self.over_rounds.median is not None
                    and 2 * self.over_rounds.sustained_rounds > len(self.rounds))
        return self.peak_qps is not None and self.peak_kind == "sustained"

    @property
    def bound(self) -> float | None:
        return self.info.get("p99_bound_ms")

    @property
    def machines_needed(self) -> int | None:
        """Machines like this one that sustain `need_qps`: the need over the sustained peak,
        rounded up (no margin beyond the peak's own bound and confirmation)."""
        if self.need_qps is None or not self.sustained or not self.peak_qps:
            return None
        return math.ceil(self.need_qps / self.peak_qps)

    @property
    def usd_per_million(self) -> float | None:
        """What a million predictions cost at the sustained peak: the machine's hour over the
        predictions it answers in an hour."""
        if self.price_per_hour is None or not self.sustained or not self.peak_qps:
            return None
        return self.price_per_hour / (self.peak_qps * 3600) * 1e6


def served_label(record: Record, host: str = "") -> str:
    """`onnxruntime per-worker+batching cpu (max 8)`, `torch processes`, `... batch 64`."""
    label = record.case.option
    scenario = record.info.get("scenario")
    if record.variant.endswith(BATCHING) and record.batch_size:
        label += f" (max {record.batch_size})"
    elif scenario == "offline" and record.batch_size:
        label += f" batch {record.batch_size}"
    elif scenario == "multistream" and record.batch_size:
        label += f" {record.batch_size}/query"
    return label + (f" @{host}" if host else "")


def combine_rounds(served: Sequence[Served]) -> list[Served]:
    """One Served per option and scenario from its rounds' records, and, for the options of
    one server search table (a bound, a machine), the figures over rounds with each round's
    machine effect out and the orders their intervals do not settle (`toolkit.rounds`)."""
    groups: dict[tuple[str, str, Any, str], list[Served]] = {}
    for s in served:
        groups.setdefault((s.label, s.scenario, s.bound, s.host), []).append(s)
    combined = []
    for found in groups.values():
        if len(found) == 1 and found[0].record.round in (None, 1):
            combined.append(found[0])
            continue
        ok = [s for s in found if s.record.ok] or found
        combined.append(dataclasses.replace(ok[0], rounds=tuple(s.record for s in found)))
    tables: dict[tuple[Any, str], list[int]] = {}
    for index, s in enumerate(combined):
        if s.rounds and s.searched:
            tables.setdefault((s.bound, s.host), []).append(index)
    for indices in tables.values():
        peaks = {combined[i].label: {r.round or 1: _round_peak(r) for r in combined[i].rounds}
                 for i in indices}
        result = peaks_over_rounds(peaks)
        figures = {o.option: o for o in result.options}
        for i in indices:
            s = combined[i]
            figure = figures[s.label]
            middle = _nearest(s.rounds, figure.median)
            combined[i] = dataclasses.replace(
                s, record=middle or s.record, over_rounds=figure,
                unsettled=tuple(o.option for o in result.unsettled_with(figure)),
                slow_rounds=tuple(r.round or 1 for r in s.rounds if _slow(r)))
    return combined


def round_effects_line(served: Sequence[Served]) -> str | None:
    """The machine's speed in each round of a search made in rounds, against the run's mean,
    as read off every option (`toolkit.rounds`)."""
    rounded = [s for s in served if s.over_rounds is not None and s.rounds]
    if not rounded:
        return None
    peaks = {s.label: {r.round or 1: _round_peak(r) for r in s.rounds} for s in rounded}
    effects = peaks_over_rounds(peaks).effects
    rounds = len(effects)
    how = ("the options searched side by side, their LoadGen runs taking turns, the order "
           "flipping each round" if side_by_side(rounded) else
           "the options' order flipping each round")
    return (f"served in {rounds} rounds, {how}; the machine "
            "served at " + ", ".join(f"{e:.2f}x" for _, e in sorted(effects.items()))
            + " of its mean in rounds " + ", ".join(str(r) for r in sorted(effects))
            + " (read off every option, and taken out of each option's figure)")


def side_by_side(served: Sequence[Served]) -> bool:
    """Whether the options' searches took turns within each round (`toolkit.lockstep`)."""
    return any((r.info.get("lockstep") or 0) > 1 for s in served for r in s.rounds or
               (s.record,))


def _round_peak(record: Record) -> float | None:
    info = record.info
    if not record.ok or info.get("peak_kind", "sustained") != "sustained":
        return None
    return info.get("peak_qps")


def _nearest(records: Sequence[Record], figure: float | None) -> Record | None:
    """The round whose sustained peak is nearest the figure (its latencies are shown)."""
    found = [r for r in records if _round_peak(r)]
    if not found or figure is None:
        return None
    return min(found, key=lambda r: abs(math.log((_round_peak(r) or 1.0) / figure)))


def _slow(record: Record) -> bool:
    speed = record.info.get("core_speed") or {}
    return bool(unsteady_text([speed.get("before"), speed.get("after")],
                              speed.get("seconds", CORE_SPEED_S), speed.get("fastest_seen")))


@dataclass(frozen=True)
class LoadGenTable:
    scenario: str
    caption: str
    columns: tuple[str, ...]
    rows: tuple[tuple[tuple[str, ...], bool], ...]  # cells, trusted


def loadgen_tables(served: Sequence[Served]) -> list[LoadGenTable]:
    """One table per scenario and latency bound (runs merged from several files may differ),
    its options in the order they ran."""
    tables = []
    for scenario in CAPTIONS:
        ran = [s for s in served if s.scenario == scenario and s.record.ok]
        for bound in dict.fromkeys(s.bound for s in ran):
            chosen = [s for s in ran if s.bound == bound]
            columns, rows = _SCENARIO_TABLES[scenario](chosen)
            caption = CAPTIONS[scenario]
            if scenario == "server" and any(s.over_rounds is not None for s in chosen):
                caption += (" In rounds: each option searched once a round, "
                            + ("the searches side by side, their LoadGen runs taking turns, "
                               if side_by_side(chosen) else "")
                            + "the order flipping each round; its figure is the median of "
                            "its rounds' "
                            "peaks with the machine's effect in each round taken out, and a "
                            "95% interval; * a round whose cores read slow.")
            if scenario == "server" and not any(s.searched for s in chosen):
                caption = ("Server at the rate --target-qps set: Poisson arrivals; VALID when "
                           "the p99 is within the bound with enough queries for LoadGen's "
                           "early-stopping test; latencies from each query's scheduled time.")
            tables.append(LoadGenTable(scenario, caption, columns,
                                    tuple((cells, s.trusted) for cells, s in zip(
                                        rows, chosen, strict=True))))
    return tables


def _ms(value: float | None) -> str:
    return "-" if value is None else duration(value / 1e3)


def _qps(value: float | None, unit: str = "q/s") -> str:
    if value is None:
        return "-"
    for suffix, factor in (("M", 1e6), ("k", 1e3)):
        if value >= factor:
            return f"{significant(value / factor, 3)}{suffix} {unit}"
    return f"{significant(value, 3)} {unit}"


def _valid(info: dict[str, Any]) -> str:
    points = info.get("points", [])
    good = sum(1 for p in points if p.get("valid"))
    return f"{good}/{len(points)}" if len(points) > 1 else ("VALID" if good else "INVALID")


def _workers(info: dict[str, Any]) -> str:
    return f"{info.get('workers', '?')} × {info.get('threads_per_worker', '?')}"


def _server(chosen: list[Served]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    bound = chosen[0].info.get("p99_bound_ms")
    searched = any(s.searched for s in chosen)
    columns = ("option", f"peak rate, p99 ≤ {bound:g} ms" if searched else "scheduled rate",
               "p50 there", "p99 there", "valid runs", "took", "workers × threads",
               "sessions")
    need = next((s.need_qps for s in chosen if s.need_qps), None)
    priced = any(s.price_per_hour for s in chosen)
    metered = any(s.info.get("joules_per_query") for s in chosen)
    rounded = any(s.over_rounds is not None for s in chosen)
    if rounded:
        columns = (columns[0], f"peak rate, p99 ≤ {bound:g} ms [95% interval]",
                   "each round", *columns[2:])
    columns += ((f"machines for {_qps(need)}",) if need else ()) + (
        ("USD per 1M",) if priced else ()) + (("energy per prediction",) if metered else ())
    rows = []
    for s in chosen:
        info = s.info
        latency = info.get("latency_ms", {})
        rate = _qps(s.peak_qps) if s.searched else _qps(info.get("scheduled_qps"))
        each: tuple[str, ...] = (_each_round(s),) if rounded else ()
        if s.over_rounds is not None:
            rate = _over_rounds(s)
        elif s.searched and s.peak_qps is None:
            rate = "none valid"
        elif s.searched and not s.sustained:
            rate = f"{'>= ' if s.peak_kind == 'lower bound' else ''}{rate} ({s.peak_kind})"
        elif s.searched and info.get("failed_below_qps"):
            rate += f" (failed at {_qps(min(info['failed_below_qps']))})"
        p99 = _ms(latency.get("p99"))
        spread = [v for v in info.get("confirming_p99_ms") or [] if v is not None]
        if len(spread) > 1:
            p99 = f"{_ms(min(spread))}-{_ms(max(spread))} ({len(spread)} runs)"
        extra = ((str(s.machines_needed or "-"),) if need else ()) + (
            (_usd(s.usd_per_million),) if priced else ()) + (
            (_joules(info.get("joules_per_query")),) if metered else ())
        took = sum(r.seconds or 0.0 for r in s.rounds) if s.rounds else s.record.seconds
        rows.append((s.label, rate, *each, _ms(latency.get("p50")), p99,
                     _valid(info), duration(took or 0.0, 2), _workers(info),
                     str(info.get("sessions", "")), *extra))
    return columns, rows


def _over_rounds(s: Served) -> str:
    """`23.6k q/s [21.0k, 26.4k]`, or why the rounds give no figure."""
    figure = s.over_rounds
    assert figure is not None
    if figure.median is None:
        return "none sustained"
    text = _qps(figure.median)
    if figure.kind == "interval":
        text += f" [{_qps(figure.low, '')}, {_qps(figure.high, '')}]".replace(" ]", "]") \
            .replace(" ,", ",")
    elif figure.kind == "range":
        text += f" (range {_qps(figure.low, '')}-{_qps(figure.high, '')})".replace(" -", "-") \
            .replace(" )", ")")
    if not s.sustained:
        text += f" (sustained in {figure.sustained_rounds} of {len(s.rounds)} rounds)"
    return text


def _each_round(s: Served) -> str:
    """Each round's own sustained peak, `*` where the cores read slow around it."""
    if not s.rounds:
        return "-"
    cells = []
    for record in sorted(s.rounds, key=lambda r: r.round or 1):
        peak = _round_peak(record)
        mark = "*" if (record.round or 1) in s.slow_rounds else ""
        cells.append((_qps(peak, "").strip() if peak else "-") + mark)
    return " / ".join(cells)


def _usd(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:,.4f}" if value < 0.01 else f"${value:,.2f}"


def _joules(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1e3:.3g} mJ" if value >= 1e-3 else f"{value * 1e6:.3g} µJ"


def _offline(chosen: list[Served]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    columns = ("option", "samples/s", "valid", "workers × threads", "sessions")
    return columns, [(s.label, _qps(s.info.get("samples_per_s"), "samples/s"),
                      _valid(s.info), _workers(s.info), str(s.info.get("sessions", "")))
                     for s in chosen]


def _stream(chosen: list[Served]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    percentile = chosen[0].info.get("percentile", 90.0)
    bound = chosen[0].bound
    columns = ("option", f"p{percentile:g} (MLPerf estimate)", "p50",
               f"within {bound:g} ms" if bound else "within the bound", "valid", "queries")
    rows = []
    for s in chosen:
        point = (s.info.get("points") or [{}])[-1]
        within = s.info.get("within_bound")
        rows.append((s.label, _ms(s.info.get("metric_ms")),
                     _ms(s.info.get("latency_ms", {}).get("p50")),
                     "-" if within is None else ("yes" if within else "no"), _valid(s.info),
                     f"{point.get('queries') or 0:,}"))
    return columns, rows


_SCENARIO_TABLES = {"server": _server, "offline": _offline, "singlestream": _stream,
                    "multistream": _stream}


@dataclass(frozen=True)
class Pick:
    """For one latency bound, the trusted option with the highest sustained peak under it (None
    where no search found one), and the other sustained ones, best first."""

    goal: str  # "sustained load: highest rate within p99 <= 5 ms"
    pick: Served | None
    others: tuple[Served, ...]

    @property
    def figure(self) -> str:
        if self.pick is not None and self.pick.over_rounds is not None:
            return _over_rounds(self.pick)
        return _qps(self.pick.peak_qps) if self.pick else "-"

    @property
    def line(self) -> str:
        """The pick as one sentence, with the runner-up for scale."""
        if self.pick is None:
            return f"{self.goal}: no option had a VALID LoadGen run"
        text = f"{self.goal}: {self.figure} with {self.pick.label}"
        if self.pick.machines_needed is not None:
            text += (f", {self.pick.machines_needed} machine"
                     f"{'s' if self.pick.machines_needed > 1 else ''} like this for "
                     f"{_qps(self.pick.need_qps)}")
        if self.pick.usd_per_million is not None:
            text += f", {_usd(self.pick.usd_per_million)} per million predictions"
        tied = [o for o in self.others if o.label in self.pick.unsettled]
        if tied:
            text += (f"; not ranked above {', '.join(o.label for o in tied[:3])}"
                     f"{' and more' if len(tied) > 3 else ''}: their intervals meet")
        elif self.others:
            text += f" (next: {_qps(self.others[0].peak_qps)} with {self.others[0].label})"
        return text


def sustained_picks(served: Sequence[Served]) -> list[Pick]:
    """One pick per latency bound of the searched (Server) runs."""
    searched = [s for s in served if s.searched and s.record.ok]
    picks = []
    for bound in dict.fromkeys(s.bound for s in searched):
        found = sorted((s for s in searched if s.bound == bound and s.trusted and s.sustained),
                       key=lambda s: -(s.peak_qps or 0.0))
        picks.append(Pick(f"sustained load: highest rate within p99 <= {bound:g} ms",
                          found[0] if found else None, tuple(found[1:])))
    return picks


def loadgen_lines(served: Sequence[Served]) -> list[str]:
    """The best trusted option of each scenario, one sentence each: the sustained-load pick
    of a Server search; the most samples per second offline; a stream's lowest percentile."""
    lines = [pick.line for pick in sustained_picks(served)]
    ok = [s for s in served if s.record.ok and s.trusted]
    if served and not ok:
        return ["no option was served: see why below"]
    at_rate = [s for s in ok if s.scenario == "server" and not s.searched and s.info.get("points")]
    if at_rate:
        valid = [s for s in at_rate if s.info.get("valid")]
        text = (f"server at {_qps(at_rate[0].info.get('target_qps'))}: {len(valid)} of "
                f"{len(at_rate)} options VALID within p99 <= {at_rate[0].bound:g} ms")
        if valid:
            best = min(valid, key=lambda s: s.info.get("latency_ms", {}).get("p99", 1e9))
            text += f", the lowest p99 {_ms(best.info['latency_ms'].get('p99'))} with {best.label}"
        lines.append(text)
    offline = [s for s in ok if s.scenario == "offline" and s.info.get("samples_per_s")
               and s.info.get("valid")]
    if offline:
        best = max(offline, key=lambda s: s.info["samples_per_s"])
        lines.append(f"offline: {_qps(best.info['samples_per_s'], 'samples/s')} with "
                     f"{best.label}")
    for scenario in ("singlestream", "multistream"):
        streams = [s for s in ok if s.scenario == scenario and s.info.get("metric_ms")]
        if streams:
            best = min(streams, key=lambda s: s.info["metric_ms"])
            lines.append(f"{scenario}: p{best.info.get('percentile', 90):g} "
                         f"{_ms(best.info['metric_ms'])} with {best.label}")
    return lines


def loadgen_notes(served: Sequence[Served]) -> list[str]:
    """The rounds' machine effects, why an option was not served, and each option's warnings
    (of every round), once."""
    effects = round_effects_line(served)
    notes = [effects] if effects else []
    for s in served:
        if not s.record.ok:
            notes.append(f"{s.label} {s.scenario} {s.record.status}: {s.record.reason}")
        elif not s.info.get("valid") and s.info.get("reason"):
            notes.append(f"{s.label} {s.scenario}: INVALID ({s.info['reason']})")
    seen: set[str] = set()
    for s in served:
        for record in s.rounds or (s.record,):
            unmeasured = record.info.get("energy_unmeasured")
            for warning in (*record.warnings, *([unmeasured] if unmeasured else [])):
                if warning not in seen:
                    seen.add(warning)
                    notes.append(f"! {warning}")
    for host in dict.fromkeys(s.host for s in served):
        speeds = [r.info["core_speed"] for s in served if s.host == host
                  for r in s.rounds or (s.record,) if r.info.get("core_speed")]
        unsteady = speeds and unsteady_text(
            [speed.get(when) for speed in speeds for when in ("before", "after")],
            speeds[0].get("seconds", CORE_SPEED_S),
            fastest_of(speed.get("fastest_seen") for speed in speeds))
        if unsteady:
            notes.append(f"! {unsteady}" + (f" (on {host})" if host else ""))
    return notes
