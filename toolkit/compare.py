"""Two runs side by side: per case, the ratio new/base of the medians over rounds, its 95%
interval, and a verdict a CI gate can trust.

Each run measured a case in R rounds (fresh processes). The ratio's interval comes from
resampling the rounds of both runs (`toolkit.stats.ratio_test`); with t the threshold:

    slower        the ratio is above 1 + t with confidence
    faster        below 1 - t with confidence
    same          within 1 +/- t with confidence
    inconclusive  none of these (the interval straddles a bound): not a regression

"With confidence" is a bootstrap p-value below ALPHA after the Holm correction over all the
matched cases, so testing forty cases does not make forty chances of a false alarm. A case with
one round in either run (results from before rounds, or --rounds 1) has no spread over
processes: it is judged on the spread inside its one process (half the summed interquartile
ranges), and the comparison says that verdict is weaker. `compare` exits 1 only on `slower`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from toolkit.errors import BadInputError
from toolkit.results import Record
from toolkit.stats import Stats, holm, median, ratio_test

METRICS = ("p50", "mean", "p90", "p99", "min")
ALPHA = 0.05


@dataclass(frozen=True)
class Row:
    case: str
    base_ms: float
    new_ms: float
    ratio: float  # new / base: above 1 is slower
    low: float  # the ratio's 95% interval (equal to ratio with one round)
    high: float
    rounds: tuple[int, int]  # (base, new)
    verdict: str  # "slower", "faster", "same", "inconclusive"

    @property
    def weak(self) -> bool:
        """Judged without rounds on one side or both: on the spread inside one process."""
        return min(self.rounds) < 2


@dataclass(frozen=True)
class Comparison:
    rows: list[Row]
    only_base: list[str]
    only_new: list[str]
    environment_warnings: list[str]
    threshold: float
    metric: str
    missing_metric: list[str]  # matched cases whose runs lack the metric (p99 of few samples)

    @property
    def regressed(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "slower"]

    @property
    def warnings(self) -> list[str]:
        found = [f"the runs differ: {w}" for w in self.environment_warnings]
        weak = [r for r in self.rows if r.weak]
        if weak:
            found.append(f"{len(weak)} of {len(self.rows)} cases have one round in a run: "
                         "their verdict rests on the spread inside one process, which misses "
                         "the larger noise between processes; measure with --rounds 3 or more")
        if self.missing_metric:
            found.append(f"{len(self.missing_metric)} cases have no {self.metric} in a run "
                         "(too few samples to estimate it) and are left out; use --metric p50")
        return found


def parse_threshold(value: str) -> float:
    """`10%` or `0.1` -> 0.1."""
    text = value.strip()
    try:
        number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        number = -1.0
    if not 0 < number < 1:
        raise BadInputError(f"--threshold {value!r}: give a percentage such as 10% (or 0.1)")
    return number


def rounds_by_case(records: list[Record]) -> dict[str, list[Stats]]:
    """Each timed case's series, one per round."""
    found: dict[str, list[Stats]] = {}
    for record in records:
        if record.timed and record.stats is not None:
            found.setdefault(record.case.key, []).append(record.stats)
    return found


def compare(base: tuple[Mapping[str, Any], list[Record]],
            new: tuple[Mapping[str, Any], list[Record]],
            threshold: float = 0.10, metric: str = "p50") -> Comparison:
    if metric not in METRICS:
        raise BadInputError(f"--metric {metric!r}: choose from {', '.join(METRICS)}")
    before, after = rounds_by_case(base[1]), rounds_by_case(new[1])
    field = f"{metric}_ms"
    matched, missing = [], []
    for case in sorted(before.keys() & after.keys()):
        b = [getattr(s, field) for s in before[case]]
        n = [getattr(s, field) for s in after[case]]
        if None in b or None in n:
            missing.append(case)
        else:
            matched.append((case, b, n, before[case], after[case]))
    strong = [(case, ratio_test(b, n, threshold)) for case, b, n, _, _ in matched
              if len(b) > 1 and len(n) > 1]
    verdicts, tests = _strong_verdicts(strong), dict(strong)
    rows = []
    for case, b, n, b_stats, n_stats in matched:
        test = tests.get(case)
        ratio = median(n) / median(b) if median(b) > 0 else float("inf")
        rows.append(Row(
            case, median(b), median(n), ratio,
            test.low if test else ratio, test.high if test else ratio,
            (len(b), len(n)),
            verdicts[case] if case in verdicts else _weak_verdict(b_stats, n_stats, ratio,
                                                                  threshold)))
    return Comparison(rows, sorted(before.keys() - after.keys()),
                      sorted(after.keys() - before.keys()),
                      environment_differences(base[0], new[0]), threshold, metric, missing)


def _strong_verdicts(tests: list[tuple[str, Any]]) -> dict[str, str]:
    """Verdicts from bootstrap p-values, Holm-corrected over all the cases tested."""
    if not tests:
        return {}
    slower = holm([t.p_slower for _, t in tests])
    faster = holm([t.p_faster for _, t in tests])
    same = holm([t.p_same for _, t in tests])
    found = {}
    for index, (case, _) in enumerate(tests):
        found[case] = ("slower" if slower[index] < ALPHA else "faster" if faster[index] < ALPHA
                       else "same" if same[index] < ALPHA else "inconclusive")
    return found


def _weak_verdict(base: list[Stats], new: list[Stats], ratio: float, threshold: float) -> str:
    """One round on a side: beyond the threshold AND beyond the spread inside the process."""
    noise = (median([s.iqr_ms for s in base]) + median([s.iqr_ms for s in new])) / 2
    moved = abs(median([s.p50_ms for s in new]) - median([s.p50_ms for s in base]))
    if moved <= noise:
        return "inconclusive" if abs(ratio - 1) > threshold else "same"
    if ratio > 1 + threshold:
        return "slower"
    if ratio < 1 - threshold:
        return "faster"
    return "same"


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


def interval_text(row: Row) -> str:
    """`1.52 [1.47, 1.58]`, or the ratio alone where there is no interval."""
    if row.weak:
        return f"{row.ratio:.2f} (one round)"
    return f"{row.ratio:.2f} [{row.low:.2f}, {row.high:.2f}]"


def summary_line(result: Comparison) -> str:
    counts = {v: sum(r.verdict == v for r in result.rows)
              for v in ("slower", "faster", "same", "inconclusive")}
    return (f"{counts['slower']} regressed of {len(result.rows)} matched cases ("
            f"{counts['faster']} faster, {counts['same']} same, {counts['inconclusive']} "
            f"inconclusive; threshold {result.threshold:.0%} on {result.metric}, 95% "
            "intervals over rounds, Holm-corrected)")


def render_markdown(result: Comparison) -> str:
    from toolkit.report.units import duration

    lines = [f"### deploybench compare ({result.metric}, threshold {result.threshold:.0%})", ""]
    lines += [f"**Warning:** {w}" for w in result.warnings]
    if result.warnings:
        lines.append("")
    lines += ["| case | base | new | new/base [95% interval] | verdict |", "|---|---|---|---|---|"]
    for row in result.rows:
        mark = " ❗" if row.verdict == "slower" else ""
        lines.append(f"| {row.case} | {duration(row.base_ms / 1e3)} | "
                     f"{duration(row.new_ms / 1e3)} | {interval_text(row)} | "
                     f"{row.verdict}{mark} |")
    for title, cases in (("only in base", result.only_base), ("only in new", result.only_new)):
        if cases:
            lines += ["", f"{title}: " + ", ".join(cases)]
    lines += ["", summary_line(result) + "."]
    return "\n".join(lines) + "\n"
