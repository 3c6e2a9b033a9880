"""Result records, the results.json schema, and atomic writes.

results.json: {"schema": SCHEMA, "run": {...}, "records": [...]}, rewritten whole (temporary file,
then rename) after every finished step, so a reader never sees half a file and a crash later in
the run loses nothing already measured.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.errors import BadInputError
from toolkit.stats import Stats

SCHEMA = "deploybench.results/1"

PHASES = ("train", "export", "parity", "load", "first_inference", "infer")
STATUSES = ("ok", "skipped", "failed")


@dataclass(frozen=True)
class Parity:
    """Native vs ONNX outputs on the same held-out rows."""

    max_abs: float
    max_rel: float
    label_agreement: float | None
    passed: bool
    rtol: float
    atol: float
    rows: int


@dataclass(frozen=True)
class Record:
    """One measured (or skipped, or failed) step. See DESIGN.md, "Records"."""

    workload: str
    framework: str
    phase: str
    status: str = "ok"
    reason: str = ""
    runtime: str = "native"
    variant: str = ""
    provider: str = ""
    device: str = "cpu"
    batch_size: int | None = None
    seconds: float | None = None
    stats: Stats | None = None
    throughput_rows_s: float | None = None
    parity: Parity | None = None
    peak_rss_mb: float | None = None
    gpu_mb: float | None = None
    threads: int | None = None
    warnings: tuple[str, ...] = ()
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"unknown phase {self.phase!r}; expected one of {PHASES}")
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}; expected one of {STATUSES}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def option(self) -> str:
        """How the model is served, e.g. `keras predict` or `onnxruntime run (cpu)`."""
        name = f"{self.framework if self.runtime == 'native' else self.runtime} {self.variant}"
        return f"{name.strip()} ({self.provider})" if self.runtime != "native" else name.strip()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        values = dict(data)
        if values.get("stats") is not None:
            stats = dict(values["stats"])
            stats["samples_ms"] = tuple(stats.get("samples_ms", ()))
            values["stats"] = Stats(**stats)
        if values.get("parity") is not None:
            values["parity"] = Parity(**values["parity"])
        values["warnings"] = tuple(values.get("warnings", ()))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultsFile:
    """results.json of one run: records are added as each step finishes and the file rewritten."""

    def __init__(self, path: Path, run: Mapping[str, Any]) -> None:
        self.path = path
        self.run: dict[str, Any] = dict(run)
        self.records: list[Record] = []

    @classmethod
    def reopen(cls, path: Path) -> ResultsFile:
        """An existing results.json, to add records to (a resumed run)."""
        run, records = load(path)
        results = cls(path, run)
        results.records = records
        return results

    def append(self, records: Iterable[Record]) -> None:
        self.records.extend(records)
        self.save()

    def update_run(self, **values: Any) -> None:
        self.run.update(values)
        self.save()

    def save(self) -> None:
        payload = {
            "schema": SCHEMA,
            "run": self.run,
            "records": [r.to_dict() for r in self.records],
        }
        _atomic_write_text(self.path, json.dumps(payload, indent=1, default=str) + "\n")


def load(path: Path) -> tuple[dict[str, Any], list[Record]]:
    """Read a results.json: (run info, records). Bad files raise BadInputError naming the file."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such results file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path}: not a readable results.json ({exc})") from None
    if not isinstance(payload, dict) or payload.get("schema") != SCHEMA:
        raise BadInputError(f"{path}: not a deploybench results file (expected schema {SCHEMA})")
    return payload.get("run", {}), [Record.from_dict(r) for r in payload.get("records", [])]
