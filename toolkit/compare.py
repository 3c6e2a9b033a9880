"""Two runs compared case by case: a ratio with its interval and a verdict a CI gate can trust.

Each run measured a case in R rounds (fresh processes). How much rounds vary is pooled over all
the matched cases of both runs, per runtime where it has 8 matched cases or more (`toolkit.
stats.pooled_by`), and moderated by the case's own rounds (`toolkit.stats.moderated_df`). A case
is read off its fastest round in each run (a shared machine only ever slows a round down). From
that one standard error of the ratio of the fastest rounds, and one Student's t, come the 95%
interval printed beside the verdict and the test the verdict is decided on; with t the
threshold (`toolkit.stats.shift_test`):

    slower        the ratio of NEW's fastest round to BASE's is above 1 with significance (Holm
                  over all matched cases, family-wise 5% two-sided, so each test is at least as
                  strict as the 95% interval: that interval lies above 1), and beyond 1 + t
                  (significance and size judged apart)
    faster        the mirror image
    same          the ratio is within 1 +/- t by an equivalence test (TOST at 5%
                  per case: `same` is a claim about that case, and never fails a gate)
    inconclusive  none of these: not a regression, unless --fail-on inconclusive

Two separate runs drift apart as a whole on a shared machine (10-20% a minute apart here), which
the rounds inside each run cannot see and which would move every case's test alike. So, with
MIN_PAIRED_CASES matched cases or more, they are judged on two levels (`CommonMove`): every case
together, the median over the cases of their log ratios (the runs' common move), against how much
the machine's state moved from round to round inside the runs (`toolkit.stats.round_effects`
of each run, a round being a span of time in which each case ran once), taken as shared by a
whole run; and each case against that common move. A change of a few cases shows in them; a
change of every case, in the common move, and fails the gate where the machine's drift cannot
explain it.

Two model files measured side by side in one run (`compare BASE.onnx NEW.onnx`, planned by
`toolkit.plans.pair`, `paired`): round r of every case on BASE and on NEW ran in one span of
time, so how much the machine moved every case in round r can be read off all of them
(`toolkit.stats.round_effects`, a median over the cases) and taken out before the test above.
A drift of the machine during the run then neither hides a change nor fakes one.

A case that failed or crashed in NEW (it has no timing, and a failed record where BASE timed it)
or whose ONNX parity fails in NEW fails the gate too, named. Where no variation could be pooled
(every case has one round: results from before rounds, or --rounds 1), no case is called slower
or faster: a one-round run cannot tell a process's luck from a change, so its verdicts are
`inconclusive` (or `same` where even the spread inside the process allows it), with a warning.
`compare` exits 1 on `slower`, on a failed case, and with --fail-on inconclusive on those too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exporters.session import SESSION_CHOICES
from toolkit.errors import BadInputError
from toolkit.recipes import FP32
from toolkit.results import Record
from toolkit.stats import (
    Noise,
    Stats,
    holm,
    median,
    pooled_by,
    round_effects,
    rounds_needed,
    shift_test,
    t975,
    t_sf,
)

METRICS = ("p50", "mean", "p90", "p99", "min")
FAIL_ON = ("slower", "inconclusive")
ALPHA = 0.05


@dataclass(frozen=True)
class Row:
    case: str
    base_ms: float  # each run's fastest round (of the metric)
    new_ms: float
    ratio: float  # new / base of the fastest rounds (in separate runs, over the common move):
    # above 1 is slower
    low: float  # the ratio's 95% interval (equal to ratio where no noise could be pooled)
    high: float
    rounds: tuple[int, int]  # (base, new)
    verdict: str  # "slower", "faster", "same", "inconclusive"
    judged: bool = True  # False: no pooled variation, so no interval and no slower/faster

    @property
    def weak(self) -> bool:
        """Judged without a variation between processes (one round everywhere)."""
        return not self.judged


@dataclass(frozen=True)
class CommonMove:
    """Every case of two separate runs together: the median over the matched cases of new/base,
    with its 95% interval from the machine's round-to-round drift inside the runs (taken as
    shared by a whole run: twice one round's state variance) and the spread of the cases about
    it, and a verdict by the same rule as a case's; each case's row is then new/base divided by
    `ratio`."""

    ratio: float
    low: float
    high: float
    verdict: str
    drift: float  # the machine's state from round to round inside the runs (log sd)
    rounds: int  # the rounds whose effects were read, both runs together

    def text(self) -> str:
        """What follows "every case together": the move, its interval, the verdict, and why."""
        return (f"moved {self.ratio:.2f}x [{self.low:.2f}, {self.high:.2f}]: {self.verdict} "
                f"(the machine moved {self.drift:.0%} from round to round inside the runs, and "
                f"separate runs drift apart by as much); each case below is judged against "
                f"that common move")


@dataclass(frozen=True)
class Comparison:
    rows: list[Row]
    only_base: list[str]
    only_new: list[str]
    environment_warnings: list[str]
    threshold: float
    metric: str
    missing_metric: list[str]  # matched cases whose runs lack the metric (p99 of few samples)
    failed: list[str] = ()  # type: ignore[assignment]  # cases that failed or lost parity in NEW
    noise: Noise | None = None
    advice: str = ""  # how many rounds would catch a 1.3x change at this noise
    drift: str = ""  # every case moved together: the machine, or the change, cannot be told
    paired: bool = False  # measured side by side: the machine's move in each round taken out
    common: CommonMove | None = None  # separate runs: every case together, judged on its own

    @property
    def regressed(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "slower"]

    def fails(self, fail_on: str = "slower") -> bool:
        """Whether the gate fails: a case (or every case together) slower, failed or wrong in
        NEW (or, with fail_on="inconclusive", a case that could not be judged)."""
        inconclusive = fail_on == "inconclusive" and any(r.verdict == "inconclusive"
                                                         for r in self.rows)
        together = self.common is not None and self.common.verdict == "slower"
        return bool(self.regressed or self.failed or inconclusive or together)

    @property
    def warnings(self) -> list[str]:
        found = [f"the runs differ: {w}" for w in self.environment_warnings]
        weak = [r for r in self.rows if r.weak]
        if weak:
            found.append(f"{len(weak)} of {len(self.rows)} cases could not be judged: the runs "
                         "have one round per case, so nothing says how much processes vary; "
                         "no case is called slower or faster. Measure with --rounds 4 or more")
        if self.advice:
            found.append(self.advice)
        if self.drift:
            found.append(self.drift)
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


def rounds_by_case(records: list[Record]) -> dict[str, dict[int, Stats]]:
    """Each timed case's series, by round (records of no round count as rounds 1, 2, ...)."""
    found: dict[str, dict[int, Stats]] = {}
    for record in records:
        if record.timed and record.stats is not None:
            rounds = found.setdefault(record.case.key, {})
            number = record.round
            if number is None or number in rounds:
                number = max(rounds, default=0) + 1
            rounds[number] = record.stats
    return found


def compare(base: tuple[Mapping[str, Any], list[Record]],
            new: tuple[Mapping[str, Any], list[Record]],
            threshold: float = 0.10, metric: str = "p50", fail_on: str = "slower",
            paired: bool = False) -> Comparison:
    """`paired`: BASE and NEW were measured side by side in one run, round r of every case of
    both in one span of time (`toolkit.plans.pair`): only the rounds both sides have are
    used, and what the machine did in each round is taken out first (see the module's text)."""
    if metric not in METRICS:
        raise BadInputError(f"--metric {metric!r}: choose from {', '.join(METRICS)}")
    if fail_on not in FAIL_ON:
        raise BadInputError(f"--fail-on {fail_on!r}: choose {' or '.join(FAIL_ON)}")
    before, after = rounds_by_case(base[1]), rounds_by_case(new[1])
    field = f"{metric}_ms"
    matched, missing = [], []
    for case in sorted(before.keys() & after.keys()):
        b_stats, n_stats = before[case], after[case]
        if paired:  # the rounds both have
            rounds = sorted(set(b_stats) & set(n_stats))
            b_stats = before[case] = {r: b_stats[r] for r in rounds}
            n_stats = after[case] = {r: n_stats[r] for r in rounds}
        b = [getattr(s, field) for s in b_stats.values()]
        n = [getattr(s, field) for s in n_stats.values()]
        if not b or not n or None in b or None in n or min(b) <= 0 or min(n) <= 0:
            missing.append(case)
        else:
            matched.append((case, b, n, list(b_stats.values()), list(n_stats.values())))
    corrected = paired and len(matched) >= MIN_PAIRED_CASES
    if corrected:
        matched = _without_round_effects(matched, before, after, field)
    common = None if paired else _common_move(matched, before, after, field, threshold)
    if common is not None:  # each case judged against every case's move together
        matched = [(case, b, [x / common.ratio for x in n], b_stats, n_stats)
                   for case, b, n, b_stats, n_stats in matched]
    engines = {r.case.key: r.case.engine for r in (*base[1], *new[1]) if r.timed}
    noises = _noises([(engines.get(case, ""), b, n) for case, b, n, _, _ in matched])
    if corrected:  # each round's effect took a share of every series' own noise with it
        series = 2 * len(matched)
        noises = {k: Noise(v.sigma * math.sqrt(series / (series - 1)), v.cases)
                  if v is not None else None for k, v in noises.items()}
    tests = {case: shift_test(b, n, noises[engines.get(case, "")], threshold)
             for case, b, n, _, _ in matched if noises.get(engines.get(case, ""))}
    verdicts = _verdicts(list(tests.items()), threshold)
    rows = []
    for case, b, n, b_stats, n_stats in matched:
        test = tests.get(case)
        fastest = tuple(min(getattr(s, field) for s in side) for side in (b_stats, n_stats))
        if test is not None:
            rows.append(Row(case, *fastest, test.ratio, test.low, test.high,
                            (len(b), len(n)), verdicts[case]))
        else:
            ratio = min(n) / min(b)
            rows.append(Row(case, *fastest, ratio, ratio, ratio, (len(b), len(n)),
                            _unjudged(b_stats, n_stats, ratio, threshold), judged=False))
    noise = noises.get("")
    return Comparison(rows, sorted(before.keys() - after.keys()),
                      sorted(after.keys() - before.keys()),
                      environment_differences(base[0], new[0]), threshold, metric, missing,
                      failed_in_new(base[1], new[1]), noise,
                      _advice(noise, len(matched), [r.rounds for r in rows], paired),
                      "" if corrected or common else _few_to_pair(paired, len(matched)) or
                      _drift([r.ratio for r in rows], threshold), corrected, common)


def _common_move(matched: list[Matched], before: dict[str, dict[int, Stats]],
                 after: dict[str, dict[int, Stats]], field: str, threshold: float
                 ) -> CommonMove | None:
    """Every case of two separate runs together (see `CommonMove`); None where the runs have
    too few cases, or rounds, to read the machine's drift off them."""
    if len(matched) < MIN_PAIRED_CASES:
        return None
    effects = []
    for side in (before, after):
        series = [{r: getattr(s, field) for r, s in side[case].items()} for case, *_ in matched]
        if sum(len(found) >= 2 for found in series) < MIN_PAIRED_CASES:
            return None
        found = round_effects(series)
        if len(found) < 2:
            return None
        effects.append(list(found.values()))
    df = sum(len(found) - 1 for found in effects)
    state = math.fsum(x * x for found in effects for x in found) / df  # centred in each run
    logs = [math.log(min(n) / min(b)) for _, b, n, _, _ in matched]
    middle = median(logs)
    spread = (1.4826 * median([abs(x - middle) for x in logs])) ** 2  # robust to the cases
    # that did change
    # a run's state taken as shared by all its rounds (separate runs minutes apart), and the
    # median of the cases' ratios, whose variance is pi/2 that of their mean
    se = math.sqrt(2 * state + math.pi / 2 * spread / len(logs)) or 1e-12
    multiplier = t975(df)
    low, high = math.exp(middle - multiplier * se), math.exp(middle + multiplier * se)
    p_slower, p_faster = t_sf(middle / se, df), t_sf(-middle / se, df)
    p_same = max(t_sf((middle - math.log(1 - threshold)) / se, df),
                 t_sf((math.log(1 + threshold) - middle) / se, df))
    ratio = math.exp(middle)
    verdict = ("slower" if p_slower < ALPHA / 2 and low > 1 and ratio > 1 + threshold else
               "faster" if p_faster < ALPHA / 2 and high < 1 and ratio < 1 - threshold else
               "same" if p_same < ALPHA else "inconclusive")
    return CommonMove(ratio, low, high, verdict, math.sqrt(state), df + len(effects))


def _few_to_pair(paired: bool, cases: int) -> str:
    if not paired or not cases or cases >= MIN_PAIRED_CASES:
        return ""
    return (f"measured side by side, but with {cases} matched case(s) the machine's move in "
            f"each round cannot be read off them (it takes {MIN_PAIRED_CASES}): judged as two "
            "runs; give more --batch-sizes to have it taken out")


Matched = tuple[str, list[float], list[float], list[Stats], list[Stats]]
# cases a side-by-side run needs before a round's effect is read off them: with fewer, each
# case's own noise weighs too much in the median and the pooled noise comes out too small
MIN_PAIRED_CASES = 4


def _without_round_effects(matched: list[Matched], before: dict[str, dict[int, Stats]],
                           after: dict[str, dict[int, Stats]], field: str) -> list[Matched]:
    """Each case's rounds with the machine's move in that round taken out (`toolkit.stats.
    round_effects`, over both sides' cases: a round is one span of time for both)."""
    series = [{r: getattr(s, field) for r, s in side[case].items()}
              for case, *_ in matched for side in (before, after)]
    effects = round_effects(series)
    found = []
    for case, _, _, b_stats, n_stats in matched:
        b, n = ([getattr(s, field) / math.exp(effects.get(r, 0.0)) for r, s in side[case].items()]
                for side in (before, after))
        found.append((case, b, n, b_stats, n_stats))
    return found


def _noises(cases: list[tuple[str, list[float], list[float]]]) -> dict[str, Noise | None]:
    groups: dict[str, list[list[float]]] = {}
    for engine, b, n in cases:
        groups.setdefault(engine, []).extend([b, n])
    return pooled_by(groups, series_per_case=2)  # counted by matched cases


def _verdicts(tests: list[tuple[str, Any]], threshold: float) -> dict[str, str]:
    """Verdicts from the tests' p-values, Holm-corrected over all the cases tested, each
    direction at ALPHA / 2: the same t and standard error as the interval printed beside it,
    at least as strict, so a verdict never disagrees with its interval (the interval's own
    bound is checked too: its table of t's quantiles is rounded)."""
    if not tests:
        return {}
    slower = holm([t.p_slower for _, t in tests])
    faster = holm([t.p_faster for _, t in tests])
    found = {}
    for index, (case, test) in enumerate(tests):
        found[case] = ("slower" if slower[index] < ALPHA / 2 and test.low > 1
                       and test.ratio > 1 + threshold else
                       "faster" if faster[index] < ALPHA / 2 and test.high < 1
                       and test.ratio < 1 - threshold else
                       "same" if test.p_same < ALPHA else "inconclusive")
    return found


def _unjudged(base: list[Stats], new: list[Stats], ratio: float, threshold: float) -> str:
    """No variation between processes to judge by: never slower or faster; `same` where the
    ratio is within the threshold and the medians moved less than the spread in a process."""
    noise = (median([s.iqr_ms for s in base]) + median([s.iqr_ms for s in new])) / 2
    moved = abs(median([s.p50_ms for s in new]) - median([s.p50_ms for s in base]))
    return "same" if abs(ratio - 1) <= threshold and moved <= noise else "inconclusive"


def _advice(noise: Noise | None, cases: int, rounds: list[tuple[int, int]],
            paired: bool = False) -> str:
    """How many rounds would catch a 1.3x change at the noise these runs saw, where they had
    fewer."""
    if noise is None or not rounds:
        return ""
    needed = rounds_needed(noise, cases)
    have = min(min(pair) for pair in rounds)
    if needed is not None and needed <= have:
        return ""
    wanted = f"{needed} rounds per run" if needed else "more than 30 rounds per run"
    varied = "the rounds, the machine's drift taken out," if paired else "the rounds"
    return (f"{varied} varied by about {noise.sigma:.0%} between processes: catching a 1.3x "
            f"slowdown 19 times in 20 over {cases} cases needs {wanted} (these had {have}); "
            "quiet the machine or raise --rounds")


DRIFT_SHARE = 0.8  # cases moving the same way that make a common move worth a warning


def _drift(ratios: list[float], threshold: float) -> str:
    """A warning where (nearly) every case moved the same way by a similar amount: on a shared
    machine runs made minutes apart drift together, which the rounds inside one run cannot
    see, so such a move may be the machine."""
    if len(ratios) < 2:  # one case: nothing to move along with
        return ""
    middle = median(ratios)
    same_way = sum((r > 1) == (middle > 1) for r in ratios) / len(ratios)
    if same_way < DRIFT_SHARE or abs(middle - 1) < threshold / 2:
        return ""
    return (f"{same_way:.0%} of the cases moved the same way, by {middle - 1:+.0%} in the "
            "median: a change that touches every case, or the machine drifting between the "
            "runs, which the rounds inside each run cannot see; to tell them apart, measure "
            "base and new side by side in one run (`deploybench compare OLD.onnx NEW.onnx` for "
            "two model files, or both as workloads of one suite) or repeat the comparison")


def _loose(record: Record) -> tuple[str, str, str, int | None, str]:
    case = record.case
    return (case.workload, case.engine, case.provider, case.batch_size, case.recipe)


def failed_in_new(base: list[Record], new: list[Record]) -> list[str]:
    """The cases BASE timed that NEW failed, crashed on, or timed with a failing parity: each
    with why."""
    timed_before = {_loose(r) for r in base if r.timed}
    timed_after = {_loose(r) for r in new if r.timed}
    found: dict[str, str] = {}
    for record in new:
        key = _loose(record)
        if key not in timed_before:
            continue
        workload, engine, provider, batch, recipe = key
        name = f"{workload} {engine} {provider} b={batch}" + (
            f" {recipe}" if recipe != FP32 else "")
        why = record.reason.splitlines()[0] if record.reason else "no reason given"
        if record.phase == "infer" and record.status == "failed" and key not in timed_after:
            found.setdefault(name, f"{name}: failed in new ({why})")
        elif record.timed and record.parity is not None and record.parity.verdict == "fail":
            found.setdefault(name, f"{name}: its parity fails in new (max abs error "
                                   f"{record.parity.max_abs:.2g})")
    return list(found.values())


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
    for key in ("threads", "optimization", "session"):
        was, now = b_suite.get(key), n_suite.get(key)
        if key == "session":  # a default said or left out (or a run from before [session])
            was, now = (sorted([k, v] for k, v in side or ()
                               if SESSION_CHOICES.get(k, (None,))[0] != v)
                        for side in (was, now))
        if was != now:
            found.append(f"{key}: {was} -> {now}")
    return found


def interval_text(row: Row) -> str:
    """`1.52 [1.47, 1.58]`, or the ratio alone where there is no interval."""
    if row.weak:
        return f"{row.ratio:.2f} (not judged)"
    return f"{row.ratio:.2f} [{row.low:.2f}, {row.high:.2f}]"


def summary_line(result: Comparison) -> str:
    counts = {v: sum(r.verdict == v for r in result.rows)
              for v in ("slower", "faster", "same", "inconclusive")}
    failed = f"; {len(result.failed)} failed in new" if result.failed else ""
    varied = "rounds vary, drift taken out," if result.paired else "rounds vary"
    noise = (f", {varied} by {result.noise.sigma:.1%}" if result.noise is not None else "")
    together, against = "", ""
    if result.common is not None:
        together = (f"every case together {result.common.verdict} "
                    f"({result.common.ratio:.2f}x); ")
        against = ", each case against that common move"
    return (f"{together}{counts['slower']} regressed of {len(result.rows)} matched cases ("
            f"{counts['faster']} faster, {counts['same']} same, {counts['inconclusive']} "
            f"inconclusive{failed}; threshold {result.threshold:.0%} on {result.metric}, "
            f"fastest rounds, 95% intervals{noise}{against}, Holm-corrected)")


def render_markdown(result: Comparison) -> str:
    from toolkit.report.units import duration

    lines = [f"### deploybench compare ({result.metric}, threshold {result.threshold:.0%})", ""]
    lines += [f"**Warning:** {w}" for w in result.warnings]
    if result.warnings:
        lines.append("")
    if result.common is not None:
        mark = " ❗" if result.common.verdict == "slower" else ""
        lines += [f"**Every case together** {result.common.text()}{mark}.", ""]
    header = "new/base ÷ common move" if result.common is not None else "new/base"
    lines += [f"| case | base (fastest round) | new (fastest round) | {header} [95% interval] "
              "| verdict |", "|---|---|---|---|---|"]
    for row in result.rows:
        mark = " ❗" if row.verdict == "slower" else ""
        lines.append(f"| {row.case} | {duration(row.base_ms / 1e3)} | "
                     f"{duration(row.new_ms / 1e3)} | {interval_text(row)} | "
                     f"{row.verdict}{mark} |")
    if result.failed:
        lines += ["", "**Failed in new:** " + "; ".join(result.failed)]
    for title, cases in (("only in base", result.only_base), ("only in new", result.only_new)):
        if cases:
            lines += ["", f"{title}: " + ", ".join(cases)]
    lines += ["", summary_line(result) + "."]
    return "\n".join(lines) + "\n"
