"""What every report shows, computed once from the records: per workload, the options and the gap.

An option is one way of serving the model: a runtime, a variant (the API path) and a provider.
Each figure is over the case's rounds (fresh processes): the median of the round medians with a
95% interval (`toolkit.stats.Estimate`). Speed-ups are against the idiomatic native call (keras
`predict`, torch `inference_mode`, scikit-learn `predict`) of the same machine at the same batch
size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from toolkit.recipes import BY_QUALITY, FP32
from toolkit.report.loadgen import Served, combine_rounds, loadgen_lines, served_label
from toolkit.report.units import duration, rate, ratio
from toolkit.results import Parity, Record
from toolkit.stats import Estimate, Noise, Stats, median, pooled_by

DISAGREE = 0.10  # rounds that range over more than +/- this share of the median: warn


@dataclass(frozen=True)
class Peak:
    """A machine's float32 matrix-product peak, measured on its CPU at a thread count."""

    gflops: float
    threads: int | None


@dataclass
class Option:
    label: str
    runtime: str
    variant: str
    provider: str
    host: str = ""
    recipe: str = FP32
    size_bytes: int | None = None  # the model file it loads
    device: str = "cpu"
    threads: int | None = None
    idiomatic: bool = False
    estimate: dict[int, Estimate] = field(default_factory=dict)
    throughput: dict[int, float] = field(default_factory=dict)  # sustained, median of rounds
    speedup: dict[int, float] = field(default_factory=dict)
    parity: Parity | None = None  # the worst verdict of its sessions
    warnings: dict[str, list[int]] = field(default_factory=dict)  # warning -> batch sizes
    # "skipped: why" or "failed: why" -> the batch sizes it kept from being measured
    unmeasured: dict[str, list[int]] = field(default_factory=dict)
    first_call_s: list[float] = field(default_factory=list)  # per round, on a fresh session
    compiled: bool = False  # its first call compiles the model (torch-compile, xla)
    load_s: list[float] = field(default_factory=list)  # per round: model load of its child
    import_s: list[float] = field(default_factory=list)  # per round: importing the runtime
    peak_rss_mb: float | None = None
    gpu_mb: float | None = None
    rss_by_batch: dict[int, float] = field(default_factory=dict)  # each batch's own peak
    flops_per_row: int | None = None  # counted from the ONNX graph the workload exports
    peak: Peak | None = None  # of the machine it ran on
    rounds: dict[int, list[Stats]] = field(default_factory=dict)
    rates: dict[int, list[float]] = field(default_factory=dict)

    @property
    def p50_ms(self) -> dict[int, float]:
        """The figure at each batch size: the median over rounds."""
        return {batch: e.median_ms for batch, e in self.estimate.items()}

    def gflops(self, batch: int) -> float | None:
        """Achieved GFLOP/s at the median latency."""
        if self.flops_per_row is None or batch not in self.p50_ms:
            return None
        return self.flops_per_row * batch / (self.p50_ms[batch] / 1e3) / 1e9

    def percent_of_peak(self, batch: int) -> float | None:
        """Against the peak of the device that ran, at the thread count used; None where no
        such peak is known (a GPU, or a CPU peak measured at another thread count)."""
        achieved = self.gflops(batch)
        if achieved is None or self.peak is None or self.device != "cpu":
            return None
        if self.recipe in BY_QUALITY:  # int8 and fp16 arithmetic: no float32 peak applies
            return None
        if self.peak.threads is None or self.peak.threads != self.threads:
            return None
        return 100.0 * achieved / self.peak.gflops

    @property
    def trusted(self) -> bool:
        """Native options, ONNX options whose parity passed, and ONNX files run as they are
        (nothing native to compare them with)."""
        return self.parity is None or self.parity.passed


@dataclass
class WorkloadSummary:
    key: str
    batch_sizes: list[int]
    train: Record | None = None
    export: Record | None = None
    parity: Record | None = None
    options: list[Option] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # failed or skipped steps, with reasons
    flops_per_row: int | None = None
    served: list[Served] = field(default_factory=list)  # under LoadGen (scenario records)

    @property
    def idiomatic(self) -> Option | None:
        return next((o for o in self.options if o.idiomatic), None)

    def fastest(self, batch_size: int, native: bool = False) -> Option | None:
        timed = [o for o in self.options if o.trusted and batch_size in o.p50_ms
                 and (not native or o.runtime == "native")]
        return min(timed, key=lambda o: o.p50_ms[batch_size], default=None)

    def headline_batch(self) -> int:
        """The smallest batch size that was measured (1 in the usual case)."""
        measured = [b for b in self.batch_sizes if any(b in o.p50_ms for o in self.options)]
        return measured[0] if measured else (self.batch_sizes or [1])[0]

    def headline(self) -> str:
        """The gap between training and serving, quantified for this workload: how long
        training took against one prediction, at the smallest batch size that was measured,
        and how much faster the best option is than the idiomatic call and the best native
        call."""
        batch = self.headline_batch()
        best = self.fastest(batch)
        what = "one prediction" if batch == 1 else f"one call of {batch} rows"
        parts = []
        if self.train is not None and self.train.ok and self.train.seconds:
            parts.append(f"training took {duration(self.train.seconds, 2)}")
        loadgen = loadgen_lines(self.served)
        if best is None and loadgen:
            return f"{self.key}: " + "; ".join(parts + loadgen)
        if best is None:
            return f"{self.key}: " + "; ".join(parts + [f"no trusted timing for {what}"])
        p50_s = best.p50_ms[batch] / 1e3
        sentence = f"{what} takes {duration(p50_s, 2)} with {best.label}"
        if self.train is not None and self.train.ok and self.train.seconds:
            sentence += f": {ratio(self.train.seconds / p50_s)} less"
        parts.append(sentence)
        for slow in (self.idiomatic, self.fastest(batch, native=True)):
            if slow is not None and slow is not best and batch in slow.p50_ms and not any(
                    f"than {slow.label}" in part for part in parts):
                parts.append(f"{ratio(slow.p50_ms[batch] / best.p50_ms[batch])} faster than "
                             f"{slow.label}")
        return f"{self.key}: " + "; ".join(parts)


def summarise(
    records: Iterable[Record], batch_sizes: Iterable[int] = (),
    machines: Iterable[str] | None = None, peaks: Mapping[str, Peak | None] | None = None,
    busy: Mapping[str, str] | None = None, prices: Mapping[str, float] | None = None,
    need_qps: float | None = None,
) -> list[WorkloadSummary]:
    """Per workload, the options and the gap. With `machines` (one name per record, from runs
    on several hosts), each option's label names its machine and its speed-ups are against the
    idiomatic call of that machine; `peaks` gives each machine's measured peak, `busy` what
    was busy on it when the run started (`toolkit.busy`); `prices` each machine's USD per hour
    and `need_qps` the rate the service must sustain, for the served options' cost and
    machines needed."""
    records = list(records)
    hosts = list(machines) if machines is not None else [""] * len(records)
    several = len(set(hosts)) > 1
    sizes = sorted(set(batch_sizes) | {r.batch_size for r in records
                                       if r.phase == "infer" and r.batch_size is not None})
    summaries: dict[str, WorkloadSummary] = {}
    loads: dict[tuple[str, str, str, str], list[Record]] = {}
    for record, host in zip(records, hosts, strict=True):
        key = record.workload_key
        summary = summaries.setdefault(key, WorkloadSummary(key, sizes))
        if (record.phase in ("train", "export", "parity") and record.recipe == FP32
                and getattr(summary, record.phase) is None):
            setattr(summary, record.phase, record)
        if record.phase == "scenario":
            summary.served.append(Served(served_label(record, host if several else ""), record,
                                         price_per_hour=(prices or {}).get(host),
                                         need_qps=need_qps, host=host))
            continue
        if record.status != "ok" and record.phase not in ("infer", "load"):
            what = record.phase if record.recipe == FP32 else f"{record.recipe} {record.phase}"
            summary.problems.append(f"{what} {record.status}: {record.reason}")
        if record.phase == "load" and record.ok:
            loads.setdefault((key, record.runtime, record.provider + record.recipe, host),
                             []).append(record)
        if record.phase not in ("infer", "first_inference", "compile"):
            continue
        label = record.case.option + (f" @{host}" if several else "")
        option = next((o for o in summary.options if o.label == label), None)
        if option is None:
            option = Option(label, record.runtime, record.variant, record.provider, host,
                            record.recipe, peak=(peaks or {}).get(host))
            summary.options.append(option)
        _accumulate(option, record)
    for summary in summaries.values():  # a search's rounds, one option with its figure
        summary.served = combine_rounds(summary.served)
    noises = _noises(list(summaries.values()))
    for summary in summaries.values():
        _finish(summary, loads, noises, busy or {})
    return list(summaries.values())


def _engine(summary: WorkloadSummary, option: Option) -> str:
    return summary.key.split("/", 1)[0] if option.runtime == "native" else option.runtime


def _noises(summaries: list[WorkloadSummary]) -> dict[str, Noise | None]:
    """How much rounds vary between processes, pooled over the run's cases per runtime."""
    groups: dict[str, list[list[float]]] = {}
    for summary in summaries:
        for option in summary.options:
            for stats in option.rounds.values():
                groups.setdefault(_engine(summary, option), []).append(
                    [s.p50_ms for s in stats])
    return pooled_by(groups)


def _accumulate(option: Option, record: Record) -> None:
    """Add one first-inference or infer record (of one round) to the option it belongs to."""
    option.parity = _worse(option.parity, record.parity)
    if record.phase in ("first_inference", "compile"):
        if record.ok and record.seconds is not None:
            option.first_call_s.append(record.seconds)
        option.compiled = option.compiled or record.phase == "compile"
        return
    for name in ("peak_rss_mb", "gpu_mb"):
        value = getattr(record, name)
        if value is not None:
            setattr(option, name, max(value, getattr(option, name) or 0.0))
    if (record.peak_rss_mb is not None and record.batch_size is not None
            and record.info.get("memory_of") == "configuration"):
        option.rss_by_batch[record.batch_size] = max(
            record.peak_rss_mb, option.rss_by_batch.get(record.batch_size, 0.0))
    if record.timed and record.stats is not None and record.batch_size is not None:
        option.rounds.setdefault(record.batch_size, []).append(record.stats)
        if record.throughput_rows_s is not None:
            option.rates.setdefault(record.batch_size, []).append(record.throughput_rows_s)
        option.idiomatic = option.idiomatic or record.idiomatic
        option.device, option.threads = record.device, record.threads
        option.flops_per_row = option.flops_per_row or record.flops_per_row
        for warning in record.warnings:
            _note(option.warnings, warning, record.batch_size)
    elif not record.ok:
        _note(option.unmeasured, f"{record.status}: {record.reason}", record.batch_size or 0)


def _note(found: dict[str, list[int]], what: str, batch: int) -> None:
    sizes = found.setdefault(what, [])
    if batch not in sizes:
        sizes.append(batch)


def _worse(held: Parity | None, new: Parity | None) -> Parity | None:
    """The worse of two verdicts (fail, then inconclusive, then pass)."""
    rank = {"fail": 0, "inconclusive": 1, "pass": 2}
    if held is None or (new is not None and rank[new.verdict] < rank[held.verdict]):
        return new
    return held


def _finish(summary: WorkloadSummary,
            loads: Mapping[tuple[str, str, str, str], list[Record]],
            noises: Mapping[str, Noise | None], busy: Mapping[str, str]) -> None:
    """Estimates over rounds, cold start, FLOPs and speed-ups, once every record is in."""
    summary.flops_per_row = next((o.flops_per_row for o in summary.options
                                  if o.flops_per_row), None)
    for option in summary.options:  # the model's FLOPs hold for every option of its workload
        option.flops_per_row = summary.flops_per_row
        for batch, stats in sorted(option.rounds.items()):
            estimate = Estimate.from_rounds(stats, noises.get(_engine(summary, option)))
            option.estimate[batch] = estimate
            if option.rates.get(batch):
                option.throughput[batch] = median(option.rates[batch])
            for warning in _figure_warnings(option, batch, busy.get(option.host)):
                _note(option.warnings, warning, batch)
        for load in loads.get((summary.key, option.runtime, option.provider + option.recipe,
                               option.host), []):
            option.load_s.append(load.seconds or 0.0)
            option.import_s.append(float(load.info.get("import_seconds", 0.0)))
            option.size_bytes = load.info.get("artifact_bytes", option.size_bytes)
    failed = summary.parity is not None and summary.parity.parity is not None and \
        not summary.parity.parity.passed
    if failed:  # the ONNX file the served sessions load did not compute what the native did
        summary.served = [dataclasses.replace(s, trusted=s.record.runtime != "onnxruntime")
                          for s in summary.served]
    for option in summary.options:
        base = next((o for o in summary.options if o.idiomatic and o.host == option.host), None)
        for batch, p50 in option.p50_ms.items():
            if base is not None and batch in base.p50_ms and p50 > 0:
                option.speedup[batch] = base.p50_ms[batch] / p50


def _figure_warnings(option: Option, batch: int, busy: str | None = None) -> list[str]:
    """What a reader must know before trusting an option's figure at `batch`, with the remedy."""
    found = []
    estimate = option.estimate[batch]
    medians = [s.p50_ms for s in option.rounds.get(batch, [])]
    reach = (max(medians) - min(medians)) / 2 / estimate.median_ms if (
        len(medians) > 1 and estimate.median_ms > 0) else 0.0
    if reach > DISAGREE:
        found.append(f"the {estimate.rounds} rounds disagree (they range over "
                     f"+/-{reach:.0%}): a process was slowed"
                     + (f" (when the run started: {busy})" if busy else "")
                     + "; quiet the machine or raise --rounds")
    if estimate.kind == "range":
        found.append(f"+/- is the range of the {estimate.rounds} rounds, not a 95% interval "
                     "(too few cases with rounds to pool their variation)")
    percent = option.percent_of_peak(batch)
    if percent is not None and percent > 100:
        found.append("above the matrix-product peak measured with numpy's BLAS: this "
                     "runtime's kernels beat that measurement, or do fewer operations than the "
                     "graph describes (a faster convolution algorithm); read the % as relative")
    return found


def parity_text(parity: Parity | None, runtime: str) -> str:
    if parity is None:  # the native model is the reference; an ONNX file alone has none
        return "reference" if runtime == "native" else "n/a"
    verdict = {"pass": "pass", "fail": "FAIL", "inconclusive": "inconclusive"}[parity.verdict]
    if parity.rule == "quality" and parity.quality is not None:
        delta = parity.quality_delta or 0.0
        kept = (f", labels kept >= {parity.agreement_low:.1%} (need {parity.agreement_needed:.1%})"
                if parity.agreement_low is not None and parity.agreement_needed is not None
                else "")
        return (f"{verdict} {parity.metric} {delta:+.3f} (max -{parity.allowed_drop or 0:.3f})"
                f"{kept}")
    agree = parity.label_agreement
    labels = "" if agree is None or agree == 1.0 else f", labels agree {agree:.1%}"
    return f"{verdict} {parity.max_abs:.0e}{labels}"


def warning_lines(summary: WorkloadSummary) -> list[str]:
    """One line per option and warning: which batch sizes it touched, and the remedy."""
    return [f"{option.label} ({_where(sizes)}): {warning}"
            for option in summary.options for warning, sizes in option.warnings.items()]


def unmeasured_lines(summary: WorkloadSummary) -> list[str]:
    """One line per option and reason it was not measured (skipped or failed)."""
    return [f"{option.label} ({_where(sizes)}) {why}"
            for option in summary.options for why, sizes in option.unmeasured.items()]


def _where(sizes: list[int]) -> str:
    return ", ".join(f"b={b}" for b in sizes)


def timing_cell(option: Option, batch: int) -> str:
    """p50, its 95% interval (+/- share of the median; the range of the rounds where no
    variation could be pooled),
    and, for options other than the idiomatic one, the speed-up over it."""
    if batch not in option.p50_ms:
        return "-"
    text = duration(option.p50_ms[batch] / 1e3)
    estimate = option.estimate.get(batch)
    if estimate is not None and estimate.kind != "none":
        text += f" ±{_percent(estimate.half_width)}"
    if not option.idiomatic and batch in option.speedup:
        text += f" {ratio(option.speedup[batch])}"
    return text


@dataclass(frozen=True)
class Decision:
    """The option to pick for one goal, and the options that could not be picked, with why."""

    goal: str  # "latency" or "throughput"
    batch_size: int
    pick: Option | None
    figure: str  # the pick's p50, or its rows per second
    speedup: float | None  # over the idiomatic native call at the same batch size
    ruled_out: list[str]


def decisions(summary: WorkloadSummary) -> list[Decision]:
    """For latency (the smallest batch measured) and throughput (the largest), the fastest option
    whose parity passed."""
    measured = [b for b in summary.batch_sizes if any(b in o.p50_ms for o in summary.options)]
    if not measured:
        return []
    ruled_out = [f"{o.label}: parity {o.parity.verdict if o.parity else '?'} "
                 f"({parity_text(o.parity, o.runtime)})"
                 for o in summary.options if not o.trusted]
    ruled_out += unmeasured_lines(summary)
    found = []
    for goal, batch in (("latency", measured[0]), ("throughput", measured[-1])):
        trusted = [o for o in summary.options if o.trusted and batch in o.p50_ms]
        pick = min(trusted, key=lambda o: o.p50_ms[batch], default=None)
        if pick is None:
            found.append(Decision(goal, batch, None, "-", None, ruled_out))
            continue
        figure = (duration(pick.p50_ms[batch] / 1e3) if goal == "latency"
                  else rate(pick.throughput.get(batch)))
        found.append(Decision(goal, batch, pick, figure, pick.speedup.get(batch), ruled_out))
    return found


def compute_text(option: Option, batch: int) -> str:
    """`3.1 GFLOP/s, 1.7%` at `batch`, or "-" where the FLOPs were not counted."""
    achieved = option.gflops(batch)
    if achieved is None:
        return "-"
    percent = option.percent_of_peak(batch)
    return f"{achieved:.3g} GFLOP/s" + (f", {_percent(percent / 100)}" if percent is not None
                                        else "")


def _percent(share: float) -> str:
    """0.034 -> 3.4%, 0.12 -> 12%, 1.55 -> 155%: two significant digits below 100%."""
    percent = share * 100
    return f"{percent:.0f}%" if percent >= 100 else f"{percent:.2g}%"


def cold_text(seconds: list[float]) -> str:
    """A one-off duration over rounds: the median, and the range where there were several."""
    if not seconds:
        return "-"
    text = duration(median(seconds))
    if len(seconds) > 1:
        text += f" ({duration(min(seconds), 2)}–{duration(max(seconds), 2)})"
    return text


def spread_text(option: Option, batch: int) -> str:
    """How much single calls vary inside a round: IQR over median (median over rounds)."""
    estimate = option.estimate.get(batch)
    return "-" if estimate is None else _percent(estimate.spread)
