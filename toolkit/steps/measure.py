"""The measure step a child runs: one round of one artifact in one runtime on one provider.

Cold start (import, load, and each variant's first call on a session of its own), the parity of
this very session against the native reference outputs (untimed), then every variant at every
batch size, interleaved in blocks. The timing protocol itself is `toolkit.timing`'s.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.data import make_batches
from toolkit.errors import ProviderUnavailableError
from toolkit.memory import gpu_memory_mb, peak_rss_mb, reset_peak_rss
from toolkit.preloaded import preloaded_import_seconds
from toolkit.recipes import FP32, NATIVE_RECIPES
from toolkit.results import Parity, Record
from toolkit.runners.base import Runner, RunnerConfig
from toolkit.stats import throughput_rows_per_s
from toolkit.timing import Budget, Timing, time_interleaved, time_once

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reference:
    """The native model's outputs on the inputs' rows, saved by the build step, and how an ONNX
    session's outputs are held against them."""

    path: str  # reference.npz: array "scores", and "labels" where the true labels are known
    score_output: int = 0
    task: str = "regression"
    rtol: float = 1e-4
    atol: float = 1e-5
    rule: str | None = None  # a recipe judged by the accuracy criterion: the allowed drop
    judged_from: int = 0  # the rows before it calibrated the recipe: not judged


@dataclass(frozen=True)
class MeasureSpec:
    workload: str
    framework: str
    runner: str
    artifact: str
    inputs: str
    provider: str
    batch_sizes: tuple[int, ...]
    budget: dict[str, Any] = field(default_factory=dict)
    threads: int = 1
    optimization: str = "all"
    session: dict[str, Any] = field(default_factory=dict)  # ONNX Runtime's other options
    round: int = 1
    recipe: str = FP32
    reference: dict[str, Any] | None = None
    flops_per_row: int | None = None  # counted once by the parent (toolkit.flops), not here

    def __post_init__(self) -> None:  # JSON brings the batch sizes back as a list
        object.__setattr__(self, "batch_sizes", tuple(self.batch_sizes))

    @property
    def config(self) -> RunnerConfig:
        return RunnerConfig(provider=self.provider, threads=self.threads,
                            optimization=self.optimization, recipe=self.recipe,
                            session=tuple(sorted(self.session.items())))


def measure_case(spec: MeasureSpec) -> Iterator[Record]:
    """Cold start, this session's parity, then every variant at every batch size."""
    from toolkit.runners import RUNNERS

    runner_cls = RUNNERS[spec.runner]
    config = spec.config
    base: dict[str, Any] = {
        "workload": spec.workload, "framework": spec.framework, "runtime": runner_cls.runtime,
        "provider": spec.provider, "device": config.device, "threads": spec.threads,
        "round": spec.round, "recipe": spec.recipe,
    }
    import_seconds = time_once(runner_cls.import_framework)
    preloaded = preloaded_import_seconds(spec.runner)
    imported = {"import_seconds": import_seconds}
    if preloaded is not None:  # forked from a server that imported it: its figure, once a run
        imported = {"import_seconds": preloaded, "import_measured": "once, by the fork server"}
    loaded: list[Runner] = []
    path = Path(spec.artifact)
    before_load = peak_rss_mb()  # the process without the model: what workers in it share
    try:
        load_seconds = time_once(lambda: loaded.append(runner_cls.load(path, config)))
    except ProviderUnavailableError as exc:
        yield Record(**base, phase="load", status="skipped", reason=str(exc))
        for batch_size in spec.batch_sizes:
            yield Record(**base, phase="infer", status="skipped", reason=str(exc),
                         variant=runner_cls.idiomatic, batch_size=batch_size)
        return
    runner = loaded[0]
    load_rss = peak_rss_mb()
    base.update(provider=runner.provider, device=runner.device, settings=dict(runner.settings))
    with np.load(spec.inputs) as archive:
        x = {name: archive[name] for name in archive.files}
    sizes = spec.batch_sizes if runner.fixed_batch is None else (runner.fixed_batch,)
    # Each variant's first call on a session that has made no call yet, at the smallest batch
    # (a larger one would leave its buffers resident under every smaller batch's memory
    # figure); then the parity call.
    firsts = [first_inference(runner if index == 0 else runner_cls.load(path, config),
                              variant, x, min(sizes), base, close=index > 0,
                              phase="compile" if spec.recipe in NATIVE_RECIPES else
                              "first_inference")
              for index, variant in enumerate(runner.variants)]
    if spec.reference is not None:
        base["parity"] = session_parity(runner, x, Reference(**spec.reference))
    yield Record(**base, phase="load", seconds=load_seconds, peak_rss_mb=load_rss,
                 info={**imported, "artifact_bytes": _size(path),
                       "rss_before_load_mb": before_load})
    working = []
    for record in firsts:
        yield dataclasses.replace(record, parity=base.get("parity"))
        if record.ok:
            working.append(record.variant)
        else:  # the variant is not timed: say so at every batch size
            yield from (Record(**base, phase="infer", variant=record.variant, batch_size=b,
                               status="failed", reason=record.reason) for b in sizes)
    for batch_size in spec.batch_sizes:
        if batch_size not in sizes:
            yield Record(**base, phase="infer", variant=runner_cls.idiomatic,
                         batch_size=batch_size, status="skipped",
                         reason=f"the model's batch dimension is fixed at {runner.fixed_batch}")
    if spec.flops_per_row is not None:
        base["flops_per_row"] = spec.flops_per_row
    yield from timed(runner, working, x, sizes, Budget(**spec.budget), base)
    runner.close()


def session_parity(runner: Runner, x: dict[str, np.ndarray], reference: Reference
                   ) -> Parity | None:
    """This session's outputs on the reference rows against the native model's (one untimed
    call): the verdict every timing of this child carries."""
    from exporters.parity import compare, judge_quality
    from toolkit.recipes import QualityRule

    with np.load(reference.path) as archive:
        expected = archive["scores"]
        labels = archive["labels"] if "labels" in archive.files else None
    outputs = getattr(runner, "outputs", None)
    if outputs is not None:
        got = np.asarray(outputs(x)[reference.score_output])
    else:  # a native recipe (a compiled model): its idiomatic call's output
        got = _as_array(runner.prepare(runner.variants[0], x)())
    task: Any = reference.task
    if reference.rule is not None:
        start = reference.judged_from
        return judge_quality(expected[start:], got[start:], task,
                             None if labels is None else labels[start:],
                             QualityRule.parse(reference.rule), reference.rtol, reference.atol)
    return compare(expected, got, task, reference.rtol, reference.atol)


def _size(path: Path) -> int:
    """Bytes of a model file, or of a folder's files (a SavedModel)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _as_array(out: Any) -> np.ndarray:
    """The first output of a native call as numpy (a torch tensor, a TF tensor, a list)."""
    if isinstance(out, list | tuple):
        out = out[0]
    if hasattr(out, "detach"):
        out = out.detach().cpu()
    return np.asarray(out.numpy() if hasattr(out, "numpy") else out)


def first_inference(runner: Runner, variant: str, x: dict[str, np.ndarray], batch_size: int,
                    base: dict[str, Any], close: bool = False,
                    phase: str = "first_inference") -> Record:
    """The first call of `variant` on `runner` (a session that has made no call), timed once;
    `close` the runner after (a session loaded for this call alone). For a compiled model the
    first call compiles it: its phase is `compile`."""
    try:
        seconds = time_once(runner.prepare(variant, make_batches(x, batch_size)))
    except Exception as exc:  # one variant failing must not lose the others
        log.exception("first inference failed")
        return Record(**base, phase=phase, variant=variant, status="failed",
                      reason=f"{type(exc).__name__}: {exc}", batch_size=batch_size)
    finally:
        if close:
            runner.close()
    return Record(**base, phase=phase, variant=variant, seconds=seconds,
                  batch_size=batch_size, info={"session": "fresh"})


def timed(
    runner: Runner, variants: list[str], x: dict[str, np.ndarray], sizes: tuple[int, ...],
    budget: Budget, base: dict[str, Any],
) -> Iterator[Record]:
    """Every (variant, batch size) timed in interleaved blocks, in this one process.

    Every batch is made and handed to `runner.prepare` before the timing starts, so neither is
    inside the timed region. The memory of each (variant, batch size) is read before, by
    `memory_by_configuration`.
    """
    memory, memory_warnings = memory_by_configuration(runner, variants, x, sizes)
    calls: dict[tuple[str, int], Any] = {}
    failed: dict[tuple[str, int], str] = {}
    for variant in variants:
        for batch_size in sizes:
            try:
                calls[(variant, batch_size)] = runner.prepare(variant,
                                                              make_batches(x, batch_size))
            except Exception as exc:
                failed[(variant, batch_size)] = f"{type(exc).__name__}: {exc}"
    reset_peak_rss()
    timings = time_interleaved(calls, budget)
    process_peak, process_gpu = peak_rss_mb(), gpu_memory_mb(runner)
    for variant in variants:
        idiomatic = (runner.runtime == "native" and variant == runner.idiomatic
                     and runner.device == "cpu" and base.get("recipe", FP32) == FP32)
        for batch_size in sizes:
            key = (variant, batch_size)
            found = timings.get(key)
            if not isinstance(found, Timing):
                why = failed.get(key) or f"{type(found).__name__}: {found}"
                yield Record(**base, phase="infer", variant=variant, batch_size=batch_size,
                             status="failed", reason=why)
                continue
            peak, gpu = memory.get(key, (process_peak, process_gpu))
            yield Record(
                **base, phase="infer", variant=variant, batch_size=batch_size,
                stats=found.stats, peak_rss_mb=peak, gpu_mb=gpu,
                warnings=found.warnings() + memory_warnings,
                throughput_rows_s=throughput_rows_per_s(batch_size, found.stats.samples_ms),
                idiomatic=idiomatic,
                info={"memory_of": "configuration" if key in memory else "process"},
            )


MEMORY_CALLS = 2  # calls of each configuration whose peak memory is read


def memory_by_configuration(runner: Runner, variants: list[str], x: dict[str, np.ndarray],
                            sizes: tuple[int, ...]
                            ) -> tuple[dict[tuple[str, int], tuple[float | None, float | None]],
                                       tuple[str, ...]]:
    """The peak resident memory (and GPU memory) of each (variant, batch size) run on its own:
    smallest batch first, since a process's resident set seldom shrinks after a larger batch,
    with only that batch's rows made, and the peak started afresh from the current resident set
    before its MEMORY_CALLS calls. So a figure is what a process serving that configuration
    holds (model, runtime, its rows, its working memory), up to what smaller ones left behind.
    Where the peak cannot be reset (no /proc/self/clear_refs) nothing is returned, with a
    warning: the records then carry the process's peak over all configurations."""
    found: dict[tuple[str, int], tuple[float | None, float | None]] = {}
    for batch_size in sorted(sizes):
        batch = make_batches(x, batch_size)
        for variant in variants:
            try:
                call = runner.prepare(variant, batch)
                if not reset_peak_rss():
                    return {}, ("the peak memory could not be reset (no /proc/self/clear_refs): "
                                "peak_rss_mb is the process's peak over every configuration",)
                for _ in range(MEMORY_CALLS):
                    call()
            except Exception:  # the timing says why it fails
                log.debug("no memory figure for %s at batch %d", variant, batch_size,
                          exc_info=True)
                continue
            found[(variant, batch_size)] = (peak_rss_mb(), gpu_memory_mb(runner))
            del call
    return found, ()
