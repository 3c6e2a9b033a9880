"""This machine's serial costs of serving, measured once and cached, for the advisor's model.

The queueing model (`toolkit.queueing`) gives each pool kind two serial costs: each query's
intake (LoadGen's issue callback, the queue, the batcher) and each call's cost outside the
runtime (the hand-over and the answer, under the GIL). A pool serving a trivial model holds
about 1 / (query + call) queries a second unbatched, and 1 / (query + call / b) batching up to
b. So each kind serves it both ways under LoadGen (the `calibrate` step, in a child of its
own: a flood finds what the serial parts let through when they never wait, then the
sustained-peak search the highest rate held within a p99 bound, where they do) and the two
costs are solved from the two peaks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from toolkit import busy, environment
from toolkit.isolate import run_child
from toolkit.scenarios import loadgen_missing
from toolkit.steps.calibrate import (
    CALIBRATION_P99_MS,
    FLOOD_MAX_BATCH,
    FLOOD_QUERIES,
    POOL_VARIANTS,
    CalibrateSpec,
)

log = logging.getLogger(__name__)

KINDS = tuple(POOL_VARIANTS)  # ("threads", "processes"): the pool kinds advise models
CACHE_FILE = "serial_costs.json"
INPUT_ROWS = 64
CHILD_TIMEOUT_S = 300.0
ESTIMATE_S = 60  # what a measurement takes, about (a child per kind: a flood and a search)


@dataclass(frozen=True)
class SerialCosts:
    """Each pool kind's (query_s, call_s), None for a kind not measured; the sustained peaks
    within the bound they were fitted to and the floods' rates (kind -> {"1": q/s unbatched,
    "16": q/s batching up to 16}); the machine key they were measured under, and when (ISO
    8601, UTC)."""

    threads: tuple[float, float] | None
    processes: tuple[float, float] | None
    peaks: dict[str, dict[str, float]]
    floods: dict[str, dict[str, float]]
    machine: str
    measured_at: str

    def by_kind(self) -> dict[str, tuple[float, float]]:
        """{"threads": (query_s, call_s), "processes": ...}: the shape of advise's SERIAL_S."""
        found = {"threads": self.threads, "processes": self.processes}
        return {kind: costs for kind, costs in found.items() if costs is not None}

    def to_dict(self) -> dict[str, Any]:
        return {"threads": _listed(self.threads), "processes": _listed(self.processes),
                "peaks": self.peaks, "floods": self.floods, "machine": self.machine,
                "measured_at": self.measured_at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SerialCosts:
        """The inverse of `to_dict`; ValueError on data that does not fit (a damaged cache)."""
        try:
            peaks, floods = ({str(kind): {str(b): float(qps) for b, qps in rates.items()}
                              for kind, rates in data[name].items()}
                             for name in ("peaks", "floods"))
            return cls(_pair(data["threads"]), _pair(data["processes"]), peaks, floods,
                       str(data["machine"]), str(data["measured_at"]))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a SerialCosts record: {exc!r}") from None


def _listed(costs: tuple[float, float] | None) -> list[float] | None:
    return None if costs is None else list(costs)


def _pair(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    query, call = (float(v) for v in value)
    if not (query >= 0 and call >= 0):
        raise ValueError(f"serial costs must be >= 0, got {value!r}")
    return query, call


def fit(unbatched_qps: float, batched_qps: float, batch: int = FLOOD_MAX_BATCH
        ) -> tuple[float, float]:
    """(query_s, call_s) from 1/unbatched = query + call and 1/batched = query + call/batch,
    neither below zero (a batched rate no higher than the unbatched one: all query; one over
    `batch` times higher: all call)."""
    if not (unbatched_qps > 0 and batched_qps > 0 and batch > 1):
        raise ValueError(f"rates must be > 0 and the batch > 1, got {unbatched_qps!r}, "
                         f"{batched_qps!r}, {batch!r}")
    one, many = 1 / unbatched_qps, 1 / batched_qps
    call = (one - many) / (1 - 1 / batch)
    query = one - call
    if call < 0:
        return one, 0.0
    if query < 0:
        return 0.0, one
    return query, call


def machine_key(cores: int, p99_ms: float = CALIBRATION_P99_MS) -> str:
    """What the costs depend on: the CPU, the pool's size, the software in the path, and the
    bound the peaks were held within."""
    versions = environment.versions()
    runtime = versions.get("onnxruntime") or versions.get("onnxruntime-gpu") or "none"
    return (f"{environment.cpu_model()} | {os.cpu_count()} cpus | {cores} cores used | "
            f"python {platform.python_version()} | onnxruntime {runtime} | "
            f"loadgen {'missing' if loadgen_missing() else 'present'} | peaks within p99 "
            f"{p99_ms:g} ms")


def measure(cores: int, *, intake_delay_s: float = 0.0, kinds: Sequence[str] = KINDS,
            queries: int = FLOOD_QUERIES, workdir: Path | None = None,
            p99_ms: float = CALIBRATION_P99_MS) -> SerialCosts:
    """Each pool kind of `cores` workers (one thread each) flooded unbatched and batching, in a
    child per kind, and its costs fitted to its peaks within `p99_ms`; `intake_delay_s` adds a
    known cost to each query's intake (the test's yardstick). The children's logs go under
    `workdir` (else a temporary folder, kept only where a flood fails); RuntimeError where one
    fails."""
    missing = loadgen_missing()
    if missing:
        raise RuntimeError(f"the serial costs cannot be measured: {missing}")
    unknown = [kind for kind in kinds if kind not in POOL_VARIANTS]
    if unknown or cores < 1:
        raise ValueError(f"kinds {unknown} (known: {', '.join(KINDS)}), cores {cores}")
    folder = Path(tempfile.mkdtemp(prefix="deploybench-calibrate-"))
    model, inputs = trivial_model(folder)
    served = {kind: _served(kind, cores, model, inputs, workdir or folder, queries,
                            intake_delay_s, p99_ms)
              for kind in kinds}
    shutil.rmtree(folder, ignore_errors=True)  # kept where a flood failed: its log says why
    peaks = {kind: found["peak_qps"] for kind, found in served.items()}
    fitted = {kind: fit(rates["1"], rates[str(FLOOD_MAX_BATCH)]) for kind, rates in
              peaks.items()}
    return SerialCosts(fitted.get("threads"), fitted.get("processes"), peaks,
                       {kind: found["completed_qps"] for kind, found in served.items()},
                       machine_key(cores, p99_ms), datetime.now(UTC).isoformat(timespec="seconds"))


def trivial_model(folder: Path) -> tuple[Path, Path]:
    """One Relu on float [N, 4] (next to nothing to compute), and rows for it."""
    model, inputs = folder / "relu.onnx", folder / "inputs.npz"
    model.write_bytes(environment._tiny_model())
    rows = np.random.default_rng(0).standard_normal((INPUT_ROWS, 4)).astype(np.float32)
    np.savez(inputs, x=rows)
    return model, inputs


def _served(kind: str, cores: int, model: Path, inputs: Path, workdir: Path, queries: int,
            intake_delay_s: float, p99_ms: float) -> dict[str, dict[str, float]]:
    """{"peak_qps": {"1": q/s, "16": q/s}, "completed_qps": {...}}: the kind's sustained
    peaks within the bound and its floods' rates, unbatched and batching, from one child."""
    spec = CalibrateSpec(pool=kind, artifact=str(model), inputs=str(inputs),
                         logs=str(workdir / "loadgen" / kind), workers=cores, queries=queries,
                         intake_delay_s=intake_delay_s, budget_s=CHILD_TIMEOUT_S, p99_ms=p99_ms)
    child = run_child({"task": "calibrate", **dataclasses.asdict(spec)}, workdir,
                      timeout_s=CHILD_TIMEOUT_S, threads=1, name=f"calibrate-{kind}")
    if child.failure:
        raise RuntimeError(f"calibrating the {kind} pool failed: {child.failure}")
    wanted = ("1", str(FLOOD_MAX_BATCH))
    found = {name: {str(r.info.get("max_batch")): r.info.get(name) for r in child.records
                    if r.ok} for name in ("peak_qps", "completed_qps")}
    if any(not found[name].get(b) for name in found for b in wanted):
        raise RuntimeError(f"calibrating the {kind} pool: a run gave no rate (got {found}; "
                           f"logs under {workdir})")
    for record in child.records:
        info = record.info
        if info.get("overwhelmed") is False:
            log.warning("the %s pool kept up with a flood of %s q/s: its serial costs are "
                        "overestimated", kind, f"{info.get('target_qps'):,.0f}")
        if (info.get("steal_percent") or 0.0) > busy.STEAL_NOISY:
            log.warning("the hypervisor took %s%% of the CPU time while the %s pool was "
                        "flooded: its serial costs read high; run `deploybench env "
                        "--calibrate` again on a quiet machine", info["steal_percent"], kind)
    return {name: {b: float(rates[b]) for b in wanted} for name, rates in found.items()}


def cache_path() -> Path:
    return environment.cache_dir() / CACHE_FILE


def serial_costs(cores: int, refresh: bool = False,
                 say: Callable[[str], None] = lambda line: None,
                 kinds: Sequence[str] = KINDS) -> SerialCosts:
    """This machine's serial costs with pools of `cores` workers, for the pool `kinds` asked
    (at least): measured once (`measure`, only the kinds the cache lacks) and kept in the cache
    folder, keyed by `machine_key`; `refresh` measures them again. `say` hears one line before
    a measurement."""
    cache = cache_path()
    with _measuring_alone(cache, say):  # two at once: the second waits, reads the first's
        return _serial_costs(cache, machine_key(cores), cores, refresh, say, kinds)


def quiet_serial_costs(cores: int, kinds: Sequence[str] = KINDS) -> SerialCosts:
    """`serial_costs` as a task on a cluster node runs it: nothing said (no one hears a node)."""
    return serial_costs(cores, kinds=kinds)


@contextlib.contextmanager
def _measuring_alone(cache: Path, say: Callable[[str], None]) -> Iterator[None]:
    """One measurement at a time on this machine (two would slow each other down); where the
    lock cannot be had (a cache folder not writable, a filesystem without locks), none, and
    the measurement goes on."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        handle = open(cache.with_name(f"{cache.name}.lock"), "a")  # noqa: SIM115
    except OSError:
        yield
        return
    with handle:
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                say("waiting for another run's calibration of the serial costs to finish")
                fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as exc:  # ENOLCK on some network filesystems
            log.debug("no lock on %s: %s", handle.name, exc)
        yield


def _serial_costs(cache: Path, key: str, cores: int, refresh: bool,
                  say: Callable[[str], None], kinds: Sequence[str]) -> SerialCosts:
    known = _read(cache)
    cached = None
    if not refresh and key in known:
        try:
            cached = SerialCosts.from_dict(known[key])
        except ValueError as exc:
            log.warning("the cached serial costs in %s are damaged (%s): measuring again",
                        cache, exc)
    missing = [k for k in kinds if cached is None or k not in cached.by_kind()]
    if cached is not None and not missing:
        return cached
    seconds = ESTIMATE_S * len(missing) // len(KINDS)
    say(f"calibrating the serving model's serial costs on this machine ({', '.join(missing)} "
        f"pool; about {seconds} s, once; cached in {cache})")
    costs = _merged(cached, measure(cores, kinds=missing))
    known[key] = costs.to_dict()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        written = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")  # whole or not at all: two
        written.write_text(json.dumps(known, indent=1), encoding="utf-8")  # runs may race
        os.replace(written, cache)
    except OSError as exc:  # a read-only home: the figures stand, they are measured again later
        log.warning("the serial costs are not cached: %s cannot be written (%s); set "
                    "XDG_CACHE_HOME to a writable folder", cache, exc.strerror or exc)
    return costs


def _merged(cached: SerialCosts | None, measured: SerialCosts) -> SerialCosts:
    """The kinds just `measured`, and the others as `cached` had them."""
    if cached is None:
        return measured
    fresh = measured.by_kind()
    return dataclasses.replace(
        measured, threads=fresh.get("threads", cached.threads),
        processes=fresh.get("processes", cached.processes),
        peaks={**cached.peaks, **measured.peaks}, floods={**cached.floods, **measured.floods})


def _read(cache: Path) -> dict[str, Any]:
    """The cache's entries by machine key; empty where it is missing or damaged."""
    try:
        found = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}
