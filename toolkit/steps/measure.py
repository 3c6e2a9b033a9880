"""The measure step a child runs: one artifact in one runtime on one provider.

Cold start (import, load, first call), then every variant at every batch size, each record
written as soon as it exists. The timing protocol itself is `toolkit.measure`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.data import make_batches
from toolkit.errors import ProviderUnavailableError
from toolkit.measure import Budget, measure, time_once
from toolkit.memory import gpu_memory_mb, peak_rss_mb
from toolkit.results import Record
from toolkit.runners.base import Runner, RunnerConfig
from toolkit.stats import throughput_rows_per_s

log = logging.getLogger(__name__)


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

    def __post_init__(self) -> None:  # JSON brings the batch sizes back as a list
        object.__setattr__(self, "batch_sizes", tuple(self.batch_sizes))

    @property
    def config(self) -> RunnerConfig:
        return RunnerConfig(provider=self.provider, threads=self.threads,
                            optimization=self.optimization)


def measure_case(spec: MeasureSpec) -> Iterator[Record]:
    """Cold start (import, load, first call), then every variant at every batch size."""
    from toolkit.runners import RUNNERS

    runner_cls = RUNNERS[spec.runner]
    config = spec.config
    budget = Budget(**spec.budget)
    base: dict[str, Any] = {
        "workload": spec.workload, "framework": spec.framework, "runtime": runner_cls.runtime,
        "provider": spec.provider, "device": config.device, "threads": spec.threads,
    }
    import_seconds = time_once(runner_cls.import_framework)
    loaded: list[Runner] = []
    try:
        load_seconds = time_once(lambda: loaded.append(runner_cls.load(Path(spec.artifact),
                                                                       config)))
    except ProviderUnavailableError as exc:
        yield Record(**base, phase="load", status="skipped", reason=str(exc))
        for batch_size in spec.batch_sizes:
            yield Record(**base, phase="infer", status="skipped", reason=str(exc),
                         variant=runner_cls.idiomatic, batch_size=batch_size)
        return
    runner = loaded[0]
    base.update(provider=runner.provider, device=runner.device, settings=dict(runner.settings))
    yield Record(**base, phase="load", seconds=load_seconds, peak_rss_mb=peak_rss_mb(),
                 info={"import_seconds": import_seconds})
    if runner.runtime == "onnxruntime":
        from toolkit.flops import flops_per_row

        base["flops_per_row"] = flops_per_row(Path(spec.artifact))

    with np.load(spec.inputs) as archive:
        x = {name: archive[name] for name in archive.files}
    sizes = spec.batch_sizes
    if runner.fixed_batch is not None:
        fixed = f"the model's batch dimension is fixed at {runner.fixed_batch}"
        for batch_size in sizes:
            if batch_size != runner.fixed_batch:
                yield Record(**base, phase="infer", variant=runner_cls.idiomatic,
                             batch_size=batch_size, status="skipped", reason=fixed)
        sizes = (runner.fixed_batch,)
    for variant in runner.variants:
        yield from measure_variant(runner, variant, x, sizes, budget, base)
    runner.close()


def measure_variant(
    runner: Runner, variant: str, x: dict[str, np.ndarray], sizes: tuple[int, ...],
    budget: Budget, base: dict[str, Any],
) -> Iterator[Record]:
    """First call, then a timed series per batch size; a failure costs this variant only.

    Each batch is made and handed to `runner.prepare` before its series starts, so neither is
    inside the timed region.
    """
    idiomatic = (runner.runtime == "native" and variant == runner.idiomatic
                 and runner.device == "cpu")
    try:
        seconds = time_once(runner.prepare(variant, make_batches(x, sizes[0])))
    except Exception as exc:  # one variant failing must not lose the others
        log.exception("first inference failed")
        yield Record(**base, phase="first_inference", variant=variant, status="failed",
                     reason=f"{type(exc).__name__}: {exc}", batch_size=sizes[0])
        return
    yield Record(**base, phase="first_inference", variant=variant, seconds=seconds,
                 batch_size=sizes[0])
    for batch_size in sizes:
        try:
            timing = measure(runner.prepare(variant, make_batches(x, batch_size)), budget)
        except Exception as exc:
            yield Record(**base, phase="infer", variant=variant, batch_size=batch_size,
                         status="failed", reason=f"{type(exc).__name__}: {exc}")
            continue
        yield Record(
            **base, phase="infer", variant=variant, batch_size=batch_size, stats=timing.stats,
            throughput_rows_s=throughput_rows_per_s(batch_size, timing.stats.p50_ms),
            peak_rss_mb=peak_rss_mb(), gpu_mb=gpu_memory_mb(runner), warnings=timing.warnings(),
            idiomatic=idiomatic,
        )
