"""Result records, the one case identity, the results.json schema, and atomic writes.

results.json: {"schema": SCHEMA, "run": {...}, "records": [...]} holds summaries only. The raw
timing samples of record i go to samples.npz beside it, under the key "i" (the record's
`samples` field names it). Both files are rewritten whole (temporary file, then rename) after
every finished step, so a reader never sees half a file and a crash later in the run loses
nothing already measured.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import BadInputError, storage_error
from toolkit.recipes import FP32
from toolkit.stats import Stats, percentile

SCHEMA_NAME = "deploybench.results"
SCHEMA_VERSION = 2
SCHEMA = f"{SCHEMA_NAME}/{SCHEMA_VERSION}"
SAMPLES_FILE = "samples.npz"

PHASES = ("train", "export", "parity", "load", "first_inference", "compile", "infer", "scenario")
STATUSES = ("ok", "skipped", "failed")


VERDICTS = ("pass", "fail", "inconclusive")


@dataclass(frozen=True)
class Parity:
    """Native vs ONNX outputs on the same held-out rows (see `exporters.parity`).

    `verdict` is `pass`, `fail`, or `inconclusive` where the native outputs are too small to
    judge (`scale` is their largest magnitude); `passed` is `verdict == "pass"`. `rule` says
    what judged it: `tolerance` (the fp32 rule, elementwise) or `quality` (a recipe that changes
    the arithmetic: its test quality against the native model's, within `allowed_drop`).
    """

    max_abs: float
    max_rel: float
    label_agreement: float | None
    passed: bool
    rtol: float
    atol: float
    rows: int
    verdict: str = ""
    scale: float | None = None
    rule: str = "tolerance"
    metric: str = ""  # accuracy or r2, with the quality rule
    native_quality: float | None = None
    quality: float | None = None
    allowed_drop: float | None = None
    # the quality rule's evidence (see exporters.parity.judge_quality): the one-sided 95% bounds
    # on the share of rows whose label the recipe kept, the share it must keep, McNemar's p of
    # an accuracy drop, the largest error over the outputs' range (regressors), and why a
    # verdict is not a pass, in words
    agreement_low: float | None = None
    agreement_high: float | None = None
    agreement_needed: float | None = None
    p_drop: float | None = None
    max_error_share: float | None = None
    judged_on: str = ""
    why: str = ""

    @property
    def quality_delta(self) -> float | None:
        """The recipe's quality minus the native model's (negative: it lost some)."""
        if self.quality is None or self.native_quality is None:
            return None
        return self.quality - self.native_quality

    def __post_init__(self) -> None:
        if not self.verdict:  # schema 1 knew pass and fail only
            object.__setattr__(self, "verdict", "pass" if self.passed else "fail")
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown parity verdict {self.verdict!r}; expected {VERDICTS}")


@dataclass(frozen=True)
class CaseId:
    """What a timing is of: one way of serving one model at one batch size, in one
    configuration.

    `option` names the way of serving (`keras predict`, `onnxruntime iobinding cpu`): the reports'
    rows. `key` adds everything else that tells two configurations apart: the workload, the
    batch size, the threads, the node under `--placement each-node`, ONNX Runtime's session
    options where they are not the defaults, and a LoadGen serving path's workers: what
    compare, the history and the advisor match on, so that they never merge two of them.
    """

    workload: str  # framework/name
    engine: str  # the framework for native timings, else the runtime ("onnxruntime")
    variant: str
    provider: str
    batch_size: int | None
    native: bool
    recipe: str = FP32
    threads: int | None = None
    node: str = ""  # the node's label, where every node measured every case
    config: str = ""  # session options or serving settings that are not the defaults

    @property
    def option(self) -> str:
        if self.native:
            label = f"{self.engine} {self.variant}".strip()
            label = label if self.provider in ("", "cpu") else f"{label} {self.provider}"
        elif self.variant in ("", "run"):
            label = f"{self.engine} {self.provider}"
        else:
            label = f"{self.engine} {self.variant} {self.provider}"
        return label if self.recipe == FP32 else f"{label} {self.recipe}"

    @property
    def key(self) -> str:
        key = f"{self.workload} {self.engine} {self.variant} {self.provider} b={self.batch_size}"
        key = key if self.recipe == FP32 else f"{key} {self.recipe}"
        extra = [f"t={self.threads}" if self.threads is not None else "", self.config,
                 f"@{self.node}" if self.node else ""]
        return " ".join([key, *filter(None, extra)])


def _config(record: Record) -> str:
    """The session options and serving settings of a record that are not the defaults."""
    settings, info = record.settings, record.info
    parts = []
    if settings.get("graph_optimization") not in (None, "all"):
        parts.append(f"opt={settings['graph_optimization']}")
    parts += [f"{name}=off" for name, option in (("arena", "memory_arena"),
                                                 ("pattern", "memory_pattern"))
              if settings.get(option) is False]
    if record.phase == "scenario":
        parts += [f"{k}={info[k]}" for k in ("scenario", "workers", "max_delay_ms")
                  if info.get(k) is not None]
    return " ".join(parts)


@dataclass(frozen=True)
class Record:
    """One measured (or skipped, or failed) step. See DESIGN.md, "Records".

    `round` is which of the case's fresh processes measured it (1, 2, ...); `step` names the
    plan step that made it (how --resume knows what is done); `idiomatic`
    marks the native call a user of the framework writes first, on the CPU (the baseline of every
    speed-up); `settings` is what the runtime applied (threads, graph optimisation, the providers
    the session reports); `flops_per_row` is counted from the ONNX graph where it can be.
    """

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
    recipe: str = FP32
    round: int | None = None
    step: str = ""
    idiomatic: bool = False
    settings: Mapping[str, Any] = field(default_factory=dict)
    flops_per_row: int | None = None
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
    def workload_key(self) -> str:
        return f"{self.framework}/{self.workload}"

    @property
    def case(self) -> CaseId:
        native = self.runtime == "native"
        node = self.info.get("node")
        each = isinstance(node, Mapping) and node.get("placement") == "each-node"
        return CaseId(self.workload_key, self.framework if native else self.runtime,
                      self.variant, self.provider, self.batch_size, native, self.recipe,
                      self.threads, str(node.get("name", "")) if each else "", _config(self))

    @property
    def timed(self) -> bool:
        """A timing that ran to the end: an `infer` record with statistics."""
        return self.phase == "infer" and self.ok and self.stats is not None

    def to_dict(self, samples: bool = True) -> dict[str, Any]:
        """The record as JSON-ready data; `samples=False` leaves the raw samples out.

        Built field by field: dataclasses.asdict would walk every one of the (tens of
        thousands of) samples to deep-copy them, after every step, for every record.
        """
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data.update(settings=dict(self.settings), info=dict(self.info),
                    warnings=list(self.warnings),
                    parity=None if self.parity is None else dataclasses.asdict(self.parity))
        if self.stats is not None:
            data["stats"] = self.stats.summary()
            if samples:
                data["stats"]["samples_ms"] = list(self.stats.samples_ms)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """The inverse of `to_dict`; raises ValueError or TypeError on data that does not fit."""
        values = dict(data)
        if values.get("stats") is not None:
            values["stats"] = _stats_from_dict(values["stats"])
        if values.get("parity") is not None:
            if not isinstance(values["parity"], Mapping):
                raise TypeError(f"parity must be an object, got {values['parity']!r}")
            values["parity"] = Parity(**values["parity"])
        if isinstance(values.get("warnings", ()), list | tuple):
            values["warnings"] = tuple(values.get("warnings", ()))
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        _check_types(values)
        return cls(**values)


_NUMBERS = ("seconds", "throughput_rows_s", "peak_rss_mb", "gpu_mb")
_INTEGERS = ("batch_size", "threads", "flops_per_row", "round")
_TEXTS = ("workload", "framework", "phase", "status", "reason", "runtime", "variant", "provider",
          "device", "step", "recipe")


def _check_types(values: Mapping[str, Any]) -> None:
    """Refuse values a report would trip over later (an edited results.json)."""
    def wrong(name: str, ok: Callable[[Any], bool]) -> bool:
        return name in values and values[name] is not None and not ok(values[name])

    for name in _NUMBERS:
        if wrong(name, lambda v: isinstance(v, int | float) and not isinstance(v, bool)):
            raise TypeError(f"{name} must be a number, got {values[name]!r}")
    for name in _INTEGERS:
        if wrong(name, lambda v: isinstance(v, int) and not isinstance(v, bool)):
            raise TypeError(f"{name} must be a whole number, got {values[name]!r}")
    for name in _TEXTS:
        if wrong(name, lambda v: isinstance(v, str)):
            raise TypeError(f"{name} must be text, got {values[name]!r}")
    for name in ("settings", "info"):
        if wrong(name, lambda v: isinstance(v, Mapping)):
            raise TypeError(f"{name} must be an object, got {values[name]!r}")
    if wrong("idiomatic", lambda v: isinstance(v, bool)):
        raise TypeError(f"idiomatic must be true or false, got {values['idiomatic']!r}")
    if wrong("warnings", lambda v: isinstance(v, tuple) and all(isinstance(w, str) for w in v)):
        raise TypeError(f"warnings must be a list of texts, got {values['warnings']!r}")


def _stats_from_dict(raw: Mapping[str, Any]) -> Stats:
    if not isinstance(raw, Mapping):
        raise TypeError(f"stats must be an object, got {raw!r}")
    values = dict(raw)
    samples = tuple(float(v) for v in values.pop("samples_ms", ()))
    if samples and "p25_ms" not in values:  # schema 1 kept samples inline and no quartiles
        ordered = sorted(samples)
        values["p25_ms"] = percentile(ordered, 25)
        values["p75_ms"] = percentile(ordered, 75)
    names = {f.name for f in dataclasses.fields(Stats)} - {"samples_ms"}
    values = {k: v for k, v in values.items() if k in names}
    missing = sorted(names - set(values))
    if missing:
        raise TypeError(f"stats lacks {', '.join(missing)}")
    for name, value in values.items():
        optional = name in ("p90_ms", "p95_ms", "p99_ms")  # None: too few samples for a tail
        if (value is None and not optional) or isinstance(value, bool) or not (
                value is None or isinstance(value, int | float)):
            raise TypeError(f"stats.{name} must be a number, got {value!r}")
    return Stats(**values, samples_ms=samples)


def _upgrade(record: dict[str, Any], version: int) -> dict[str, Any]:
    """A record of an older schema, in today's shape."""
    if version < 2:  # step, idiomatic, settings and flops_per_row lived in `info`
        info = dict(record.get("info") or {})
        for name in ("step", "idiomatic", "settings", "flops_per_row"):
            if name in info:
                record[name] = info.pop(name)
        record["info"] = info
    return record


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` fills a temporary file beside `path`, which then replaces `path` in one
    step: a full disk, or a kill, leaves the last complete file (StorageError where the disk is
    full or read-only). The file gets the permissions the user's umask gives a new file (not
    mkstemp's 0600: a teammate must be able to read a results folder)."""
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        found = storage_error(path, exc) if isinstance(exc, OSError) else None
        if found is not None:
            raise found from None
        raise


def _umask() -> int:
    """The process's umask: read from /proc where it can be, as setting it to read it back
    would change it, for a moment, for every thread."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# A record's info key: its step's task was lost with the machine it ran on (a cluster node that
# died, a crashed Ray worker), not ended by the case itself: --resume runs that step again.
LOST = "lost"


class ResultsFile:
    """results.json of one run (and samples.npz beside it): records are added as each step
    finishes and the files rewritten."""

    def __init__(self, path: Path, run: Mapping[str, Any]) -> None:
        self.path = path
        self.run: dict[str, Any] = dict(run)
        self.records: list[Record] = []
        self._samples: dict[str, np.ndarray] = {}

    @property
    def samples_path(self) -> Path:
        return self.path.with_name(SAMPLES_FILE)

    @classmethod
    def reopen(cls, path: Path) -> ResultsFile:
        """An existing results.json, to add records to (a resumed run)."""
        run, records = read_results(path)
        results = cls(path, run)
        results.records = records
        # only the samples of records results.json holds: where its write failed after the
        # samples' (a full disk), the arrays of the records it lost would be taken for others'
        results._samples = {key: array for key, array in read_samples(path).items()
                            if key.isdigit() and int(key) < len(records)}
        for index, record in enumerate(records):  # schema 1 kept the samples inline
            if record.stats is not None and record.stats.samples_ms:
                results._samples.setdefault(str(index), _array(record.stats.samples_ms))
        return results

    def append(self, records: Iterable[Record]) -> None:
        """Add `records` and rewrite the files; where they cannot be written (a full disk),
        neither the files nor this object keep them (their step is made again on --resume)."""
        kept, samples = len(self.records), dict(self._samples)
        try:
            self._append(records)
        except BaseException:
            del self.records[kept:]
            self._samples = samples
            raise

    def _append(self, records: Iterable[Record]) -> None:
        added = False
        for record in records:
            if record.stats is not None and record.stats.samples_ms:
                self._samples[str(len(self.records))] = _array(record.stats.samples_ms)
                added = True  # kept once, in the array; the record keeps its summary
                record = dataclasses.replace(
                    record, stats=dataclasses.replace(record.stats, samples_ms=()))
            self.records.append(record)
        self.save(samples=added)

    def drop_steps(self, labels: Iterable[str]) -> int:
        """Take the records of the steps `labels` out (their step runs again), the samples of
        the records kept following them to their new places; how many were dropped."""
        gone = set(labels)
        kept, samples = [], {}
        for index, record in enumerate(self.records):
            if record.step in gone:
                continue
            if str(index) in self._samples:
                samples[str(len(kept))] = self._samples[str(index)]
            kept.append(record)
        dropped = len(self.records) - len(kept)
        if dropped:
            self.records, self._samples = kept, samples
            self.save(samples=True)
        return dropped

    def update_run(self, **values: Any) -> None:
        self.run.update(values)
        self.save(samples=False)

    def save(self, samples: bool = True) -> None:
        rows = []
        for index, record in enumerate(self.records):
            row = record.to_dict(samples=False)
            if str(index) in self._samples:
                row["samples"] = str(index)
            rows.append(row)
        text = json.dumps({"schema": SCHEMA, "run": self.run, "records": rows}, indent=1,
                          default=str) + "\n"
        if samples and self._samples:  # first: results.json never names samples not written
            arrays = dict(self._samples)
            write_atomic(self.samples_path, lambda tmp: save_npz(tmp, arrays))
        elif samples:  # none left (`drop_steps`): an old file's arrays would be others'
            self.samples_path.unlink(missing_ok=True)
        write_atomic(self.path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _array(samples_ms: tuple[float, ...]) -> np.ndarray:
    """float32: a timing's relative precision (1e-7) is far beyond its noise, at half the size."""
    return np.asarray(samples_ms, dtype=np.float32)


def save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    with path.open("wb") as handle:  # a file object: np.savez would add ".npz" to a name
        np.savez(handle, **arrays)


def read_results(path: Path) -> tuple[dict[str, Any], list[Record]]:
    """Read a results.json: (run info, records). Bad files raise BadInputError naming the file."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such results file") from None
    except IsADirectoryError:
        raise BadInputError(f"{path}: a folder; give its results.json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path}: not a readable results.json ({exc})") from None
    schema = payload.get("schema") if isinstance(payload, dict) else None
    found = re.fullmatch(rf"{re.escape(SCHEMA_NAME)}/(\d+)", str(schema))
    if not found:
        raise BadInputError(f"{path}: not a deploybench results file (expected schema {SCHEMA})")
    version = int(found.group(1))
    if version > SCHEMA_VERSION:
        raise BadInputError(
            f"{path}: written by a newer deploybench (schema {schema}; this one reads up to "
            f"{SCHEMA}); upgrade deploybench to read it"
        )
    run, raw = payload.get("run", {}), payload.get("records", [])
    sections_ok = isinstance(run, dict) and isinstance(raw, list) and all(
        isinstance(run.get(key) or {}, dict) for key in ("suite", "environment", "request"))
    if not sections_ok:
        raise BadInputError(f"{path}: its run or records section is not what deploybench "
                            "writes; the file was edited or damaged: run it again")
    records = []
    for index, item in enumerate(raw):
        try:
            if not isinstance(item, dict):
                raise TypeError(f"expected an object, got {type(item).__name__}")
            records.append(Record.from_dict(_upgrade(dict(item), version)))
        except (TypeError, ValueError, KeyError) as exc:
            raise BadInputError(
                f"{path}: record {index} is not a deploybench record ({exc}); the file was "
                "edited or damaged: run it again or restore it"
            ) from None
    return run, records


def read_samples(path: Path) -> dict[str, np.ndarray]:
    """The raw samples beside a results.json, by record index ("0", "1", ...); empty when the
    run kept none. A damaged file is BadInputError naming it."""
    samples = path.with_name(SAMPLES_FILE)
    if not samples.is_file():
        return {}
    try:
        with np.load(samples, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise BadInputError(f"{samples}: the raw samples cannot be read ({exc}); delete it to "
                            "keep the summaries in results.json") from None


def now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def default_out_dir() -> Path:
    """results/<UTC time>: a new folder for each run."""
    import datetime as dt

    return Path("results") / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def prepare_out_dir(out_dir: Path) -> Path:
    """Create a run's results folder, or say in one line why it cannot be used."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BadInputError(
            f"--out {out_dir}: cannot write there ({exc.strerror}); choose another folder"
        ) from None
    return out_dir.resolve()
