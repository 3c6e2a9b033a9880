"""Two runs side by side: matching timings, their ratio, and a verdict that respects the noise.

A case is `slower` only when its p50 moved beyond the threshold AND beyond the spread both runs
recorded (half the sum of their interquartile ranges), so a noisy figure is `same (noise)`, not a
regression. `compare` exits 1 when any case is slower, so it can gate CI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from toolkit.errors import BadInputError
from toolkit.results import Record
from toolkit.stats import Stats

METRICS = ("p50", "mean", "p90", "p99", "min")


@dataclass(frozen=True)
class Row:
    case: str
    base_ms: float
    new_ms: float
    ratio: float  # new / base: above 1 is slower
    verdict: str  # "slower", "faster", "same (noise)", "same (threshold)"


@dataclass(frozen=True)
class Comparison:
    rows: list[Row]
    only_base: list[str]
    only_new: list[str]
    environment_warnings: list[str]
    threshold: float
    metric: str

    @property
    def regressed(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "slower"]


def parse_threshold(value: str) -> float:
    """`10%` or `0.1` -> 0.1."""
    text = value.strip()
    try:
        number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        number = -1.0
    if not 0 < number < 10:
        raise BadInputError(f"--threshold {value!r}: give a percentage such as 10% (or 0.1)")
    return number


def _timings(records: list[Record]) -> dict[str, Stats]:
    return {r.case.key: r.stats for r in records if r.timed and r.stats is not None}


def compare(base: tuple[Mapping[str, Any], list[Record]],
            new: tuple[Mapping[str, Any], list[Record]],
            threshold: float = 0.10, metric: str = "p50") -> Comparison:
    if metric not in METRICS:
        raise BadInputError(f"--metric {metric!r}: choose from {', '.join(METRICS)}")
    base_t, new_t = _timings(base[1]), _timings(new[1])
    field = f"{metric}_ms"
    rows = []
    for case in sorted(base_t.keys() & new_t.keys()):
        before, after = getattr(base_t[case], field), getattr(new_t[case], field)
        ratio = after / before if before > 0 else float("inf")
        noise = (base_t[case].iqr_ms + new_t[case].iqr_ms) / 2
        if abs(after - before) <= noise:
            verdict = "same (noise)"
        elif ratio > 1 + threshold:
            verdict = "slower"
        elif ratio < 1 / (1 + threshold):
            verdict = "faster"
        else:
            verdict = "same (threshold)"
        rows.append(Row(case, before, after, ratio, verdict))
    return Comparison(rows, sorted(base_t.keys() - new_t.keys()),
                      sorted(new_t.keys() - base_t.keys()),
                      environment_differences(base[0], new[0]), threshold, metric)


def environment_differences(base: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between the two machines and settings: CPU, cores, GPU, versions, threads."""
    b_env, n_env = base.get("environment", {}), new.get("environment", {})
    found = []
    for key in ("cpu", "physical_cores", "gpus", "python"):
        if b_env.get(key) != n_env.get(key):
            found.append(f"{key}: {b_env.get(key)} -> {n_env.get(key)}")
    b_ver, n_ver = b_env.get("versions", {}), n_env.get("versions", {})
    for name in sorted(set(b_ver) | set(n_ver)):
        if b_ver.get(name) != n_ver.get(name):
            found.append(f"{name}: {b_ver.get(name, 'absent')} -> {n_ver.get(name, 'absent')}")
    b_suite, n_suite = base.get("suite", {}), new.get("suite", {})
    for key in ("threads", "optimization"):
        if b_suite.get(key) != n_suite.get(key):
            found.append(f"{key}: {b_suite.get(key)} -> {n_suite.get(key)}")
    return found


def render_markdown(result: Comparison) -> str:
    from toolkit.report.units import duration

    lines = [f"### deploybench compare ({result.metric}, threshold {result.threshold:.0%})", ""]
    if result.environment_warnings:
        lines += ["**The two runs differ in environment:** "
                  + "; ".join(result.environment_warnings), ""]
    lines += ["| case | base | new | new/base | verdict |", "|---|---|---|---|---|"]
    for row in result.rows:
        mark = " ❗" if row.verdict == "slower" else ""
        lines.append(f"| {row.case} | {duration(row.base_ms / 1e3)} | "
                     f"{duration(row.new_ms / 1e3)} | {row.ratio:.2f} | {row.verdict}{mark} |")
    for title, cases in (("only in base", result.only_base), ("only in new", result.only_new)):
        if cases:
            lines += ["", f"{title}: " + ", ".join(cases)]
    lines += ["", f"{len(result.regressed)} regressed of {len(result.rows)} matched cases."]
    return "\n".join(lines) + "\n"
