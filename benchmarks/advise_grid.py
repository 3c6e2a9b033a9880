"""Record the table `tests/test_search.py` searches: every configuration of a small space with
what it would do, from service times measured here.

The model is a 256-2048-2048-10 MLP (torch, random weights) served as ONNX Runtime fp32, ONNX
Runtime int8-dynamic and native torch. For each runtime, threads per worker and ONNX Runtime
session options (graph optimisation, spinning), the service time of a call is measured at 1, 2,
4, 8 and 16 rows (300 calls each, after 20 warm-up calls, all in this one process, the series
interleaved in 10 blocks by the project's timing protocol). Each configuration (those plus
workers and batching) then gets its rate within the p99 bound from `toolkit.queueing`. The
accuracy given up is int8's disagreement with fp32's labels on 2,000 random rows (native torch
and fp32 give up none). Every query also pays the intake, about 30 us, one query after another
(OVERHEAD_S).

    python benchmarks/advise_grid.py [--out tests/data/advise_grid.json] [--p99-ms 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from toolkit.queueing import Path as ServingPath  # noqa: E402
from toolkit.queueing import peak  # noqa: E402
from toolkit.search import Config, Outcome, Space  # noqa: E402

SIZES = (1, 2, 4, 8, 16)
CALLS = 300
CORES = 2
# What each query costs the one thread that takes it in (LoadGen, the issue callback, the
# queue): the most any deploybench path sustained here for a 64-64-10 MLP, whose calls cost
# little, was 33.7k q/s (shared+batching, mean of three `loadgen` runs on 2026-12-02).
OVERHEAD_S = 1 / 33_700
SPACE = Space(options=("onnxruntime run fp32", "onnxruntime run int8-dynamic",
                       "native_torch inference_mode fp32"),
              threads=(1, 2), workers=(1, 2), max_batch=(1, 2, 4, 8, 16),
              max_delay_ms=(0.1, 0.5, 1.0),
              session={"graph_optimization": ("all", "basic"), "spinning": (False, True)},
              cores=CORES)


def timed(calls: dict[tuple, object]) -> dict[tuple, dict[int, list[float]]]:
    """Each call's service times at each size, measured with the project's timing protocol:
    every (call, size) series interleaved with the others in 10 blocks, so a slow spell of the
    machine touches them all rather than whichever ran then."""
    from toolkit.timing import Budget, time_interleaved

    series = {(key, size): (lambda call=call, size=size: call(size))
              for key, call in calls.items() for size in SIZES}
    budget = Budget(warmup=20, warmup_seconds=0.0, min_iterations=CALLS, min_seconds=0.0,
                    max_seconds=60.0, blocks=10)
    found = time_interleaved(series, budget)
    profiles: dict[tuple, dict[int, list[float]]] = {}
    for (key, size), timing in found.items():
        if isinstance(timing, Exception):
            raise timing
        profiles.setdefault(key, {})[size] = [ms / 1e3 for ms in timing.stats.samples_ms]
    return profiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("tests/data/advise_grid.json"))
    parser.add_argument("--p99-ms", type=float, default=5.0)
    args = parser.parse_args()

    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 2048), torch.nn.ReLU(),
                                torch.nn.Linear(2048, 2048), torch.nn.ReLU(),
                                torch.nn.Linear(2048, 10)).eval()
    x = np.random.default_rng(0).standard_normal((2000, 256)).astype(np.float32)
    folder = Path(tempfile.mkdtemp())
    fp32, int8 = folder / "mlp.onnx", folder / "mlp.int8.onnx"
    torch.onnx.export(model, (torch.from_numpy(x[:1]),), str(fp32), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "n"}})
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)

    def session(path: str, threads: int, level: str, spinning: bool):  # noqa: ANN202
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}[level]
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "1" if spinning else "0")
        return ort.InferenceSession(str(fp32 if path == "fp32" else int8), options,
                                    providers=["CPUExecutionProvider"])

    labels = session("fp32", 1, "all", False).run(None, {"x": x})[0].argmax(1)
    int8_labels = session("int8", 1, "all", False).run(None, {"x": x})[0].argmax(1)
    drop = {"onnxruntime run fp32": 0.0, "native_torch inference_mode fp32": 0.0,
            "onnxruntime run int8-dynamic": float((labels != int8_labels).mean())}

    tensor = torch.from_numpy(x)
    ort_calls = {}
    for option in SPACE.options:
        if not option.startswith("onnxruntime"):
            continue
        for threads in SPACE.threads:
            for level, spinning in itertools.product(*SPACE.session.values()):
                s = session("fp32" if option.endswith("fp32") else "int8", threads, level,
                            spinning)
                key = (option, threads, (("graph_optimization", level), ("spinning", spinning)))
                ort_calls[key] = lambda n, s=s: s.run(None, {"x": x[:n]})
    profiles = timed(ort_calls)
    for threads in SPACE.threads:  # torch's threads are the process's: one count at a time
        torch.set_num_threads(threads)

        def call(n: int) -> None:
            with torch.inference_mode():
                model(tensor[:n])

        profiles.update(timed({("native_torch inference_mode fp32", threads, ()): call}))
    for key, profile in profiles.items():
        print(f"measured {key}: {np.median(profile[1]) * 1e6:.1f} us at 1, "
              f"{np.median(profile[16]) * 1e6:.1f} us at 16", flush=True)

    rows = []
    started = time.monotonic()
    for (option, threads, session_options), profile in profiles.items():
        for workers in SPACE.workers:
            if threads * workers > CORES:
                continue
            for batch in SPACE.max_batch:
                for delay in (SPACE.max_delay_ms if batch > 1 else (None,)):
                    path = ServingPath(profile, workers=workers, max_batch=batch,
                                       max_delay_s=(delay or 0.0) / 1e3,
                                       threads_per_worker=threads, cores=CORES,
                                       overhead_s=OVERHEAD_S)
                    rate, p99 = peak(path, args.p99_ms / 1e3)
                    config = Config(option, threads, workers, batch, delay, session_options)
                    rows.append({"config": config.to_dict(), "outcome": Outcome(
                        round(rate, 1), round(p99 * 1e3, 4) if rate else None,
                        drop[option]).__dict__})
    print(f"{len(rows)} configurations simulated in {time.monotonic() - started:.0f} s")
    best = max(rows, key=lambda r: r["outcome"]["rate"])
    print(f"best: {Config.from_dict(best['config']).label()}: "
          f"{best['outcome']['rate']:,.0f} q/s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "recorded": {"by": "benchmarks/advise_grid.py", "machine": platform.node(),
                     "when": datetime.now(UTC).isoformat(timespec="seconds"),
                     "p99_ms": args.p99_ms,
                     "model": "256-2048-2048-10 MLP, torch, random weights",
                     "int8_label_disagreement": drop["onnxruntime run int8-dynamic"]},
        "space": {"options": list(SPACE.options), "threads": list(SPACE.threads),
                  "workers": list(SPACE.workers), "max_batch": list(SPACE.max_batch),
                  "max_delay_ms": list(SPACE.max_delay_ms),
                  "session": {k: list(v) for k, v in SPACE.session.items()},
                  "cores": CORES},
        "outcomes": rows}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
