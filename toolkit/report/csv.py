"""report.csv: one row per record, flat columns with stable names (for spreadsheets and pandas)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable

from toolkit.results import Record

COLUMNS = (
    "machine", "workload", "framework", "phase", "status", "reason", "runtime", "variant", "recipe",
    "provider", "device", "batch_size", "round", "seconds", "n", "mean_ms", "std_ms", "min_ms",
    "p25_ms", "p50_ms", "p75_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "cv",
    "throughput_rows_s", "parity_passed", "parity_verdict", "parity_rule", "quality_delta",
    "parity_max_abs", "parity_max_rel",
    "parity_label_agreement", "peak_rss_mb", "gpu_mb", "threads", "step", "warnings", "info",
)


def row(record: Record, machine: str = "") -> dict[str, object]:
    stats, parity = record.stats, record.parity
    values: dict[str, object] = {
        "machine": machine, "workload": record.workload, "framework": record.framework,
        "phase": record.phase, "status": record.status, "reason": record.reason,
        "runtime": record.runtime, "variant": record.variant, "recipe": record.recipe,
        "provider": record.provider,
        "device": record.device, "batch_size": record.batch_size, "seconds": record.seconds,
        "throughput_rows_s": record.throughput_rows_s, "peak_rss_mb": record.peak_rss_mb,
        "gpu_mb": record.gpu_mb, "threads": record.threads, "round": record.round,
        "step": record.step,
        "warnings": " | ".join(record.warnings),
        "info": json.dumps(dict(record.info), sort_keys=True, default=str),
    }
    for name in ("n", "mean_ms", "std_ms", "min_ms", "p25_ms", "p50_ms", "p75_ms", "p90_ms",
                 "p95_ms", "p99_ms", "max_ms", "cv"):
        values[name] = getattr(stats, name) if stats is not None else None
    values["parity_passed"] = parity.passed if parity is not None else None
    values["parity_verdict"] = parity.verdict if parity is not None else None
    values["parity_rule"] = parity.rule if parity is not None else None
    values["quality_delta"] = parity.quality_delta if parity is not None else None
    values["parity_max_abs"] = parity.max_abs if parity is not None else None
    values["parity_max_rel"] = parity.max_rel if parity is not None else None
    values["parity_label_agreement"] = parity.label_agreement if parity is not None else None
    return values


def render(runs: Iterable[tuple[str, list[Record]]]) -> str:
    """CSV text for (machine, records) pairs; empty cells for values a record does not have."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for machine, records in runs:
        for record in records:
            writer.writerow({k: "" if v is None else v for k, v in row(record, machine).items()})
    return out.getvalue()
