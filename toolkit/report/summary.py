"""What every report shows, computed once from the records: per workload, the options and the gap.

An option is one way of serving the model: a runtime, a variant (the API path) and a provider.
Speed-ups are against the idiomatic native call (keras `predict`, torch `inference_mode`,
scikit-learn `predict`) at the same batch size.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from toolkit.report.units import duration, ratio
from toolkit.results import Parity, Record


@dataclass
class Option:
    label: str
    runtime: str
    variant: str
    provider: str
    idiomatic: bool = False
    p50_ms: dict[int, float] = field(default_factory=dict)
    throughput: dict[int, float] = field(default_factory=dict)
    speedup: dict[int, float] = field(default_factory=dict)
    parity: Parity | None = None
    warnings: dict[str, list[int]] = field(default_factory=dict)  # warning -> batch sizes
    # "skipped: why" or "failed: why" -> the batch sizes it kept from being measured
    unmeasured: dict[str, list[int]] = field(default_factory=dict)

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

    @property
    def idiomatic(self) -> Option | None:
        return next((o for o in self.options if o.idiomatic), None)

    def fastest(self, batch_size: int) -> Option | None:
        timed = [o for o in self.options if o.trusted and batch_size in o.p50_ms]
        return min(timed, key=lambda o: o.p50_ms[batch_size], default=None)

    def headline(self) -> str:
        """The seed article's point, quantified for this workload, at the smallest batch size
        that was measured."""
        measured = [b for b in self.batch_sizes if any(b in o.p50_ms for o in self.options)]
        batch = measured[0] if measured else (self.batch_sizes or [1])[0]
        best = self.fastest(batch)
        what = "one prediction" if batch == 1 else f"one call of {batch} rows"
        parts = []
        if self.train is not None and self.train.ok and self.train.seconds:
            parts.append(f"training took {duration(self.train.seconds, 2)}")
        if best is None:
            return f"{self.key}: " + "; ".join(parts + [f"no trusted timing for {what}"])
        p50_s = best.p50_ms[batch] / 1e3
        sentence = f"{what} takes {duration(p50_s, 2)} with {best.label}"
        if self.train is not None and self.train.ok and self.train.seconds:
            sentence += f": {ratio(self.train.seconds / p50_s)} less"
        parts.append(sentence)
        slow = self.idiomatic
        if slow is not None and slow is not best and batch in slow.p50_ms:
            parts.append(f"{ratio(slow.p50_ms[batch] / best.p50_ms[batch])} faster than "
                         f"{slow.label}")
        return f"{self.key}: " + "; ".join(parts)


def option_label(record: Record) -> str:
    if record.runtime == "native":
        label = f"{record.framework} {record.variant}".strip()
        return label if record.provider in ("", "cpu") else f"{label} {record.provider}"
    return f"onnxruntime {record.provider}" if record.variant in ("", "run") else (
        f"onnxruntime {record.variant} {record.provider}")


def summarise(records: Iterable[Record], batch_sizes: Iterable[int] = ()) -> list[WorkloadSummary]:
    records = list(records)
    sizes = sorted(set(batch_sizes) | {r.batch_size for r in records
                                       if r.phase == "infer" and r.batch_size is not None})
    summaries: dict[str, WorkloadSummary] = {}
    for record in records:
        key = f"{record.framework}/{record.workload}"
        summary = summaries.setdefault(key, WorkloadSummary(key, sizes))
        if record.phase in ("train", "export", "parity"):
            setattr(summary, record.phase, record)
        if record.status != "ok" and record.phase not in ("infer", "load"):
            summary.problems.append(f"{record.phase} {record.status}: {record.reason}")
        if record.phase != "infer":
            continue
        label = option_label(record)
        option = next((o for o in summary.options if o.label == label), None)
        if option is None:
            option = Option(label, record.runtime, record.variant, record.provider)
            summary.options.append(option)
        option.parity = option.parity or record.parity
        if record.ok and record.stats is not None and record.batch_size is not None:
            option.p50_ms[record.batch_size] = record.stats.p50_ms
            if record.throughput_rows_s is not None:
                option.throughput[record.batch_size] = record.throughput_rows_s
            option.idiomatic = option.idiomatic or bool(record.info.get("idiomatic"))
            for warning in record.warnings:
                option.warnings.setdefault(warning, []).append(record.batch_size)
        elif not record.ok:
            why = f"{record.status}: {record.reason}"
            option.unmeasured.setdefault(why, []).append(record.batch_size or 0)
    for summary in summaries.values():
        base = summary.idiomatic
        for option in summary.options:
            for batch, p50 in option.p50_ms.items():
                if base is not None and batch in base.p50_ms and p50 > 0:
                    option.speedup[batch] = base.p50_ms[batch] / p50
    return list(summaries.values())


def parity_text(parity: Parity | None, runtime: str) -> str:
    if runtime == "native":
        return "reference"
    if parity is None:
        return "n/a"
    verdict = "pass" if parity.passed else "FAIL"
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
    """p50 and, for options other than the idiomatic one, the speed-up over it."""
    if batch not in option.p50_ms:
        return "-"
    text = duration(option.p50_ms[batch] / 1e3)
    if not option.idiomatic and batch in option.speedup:
        text += f" {ratio(option.speedup[batch])}"
    return text
