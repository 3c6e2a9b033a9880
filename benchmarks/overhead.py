"""The harness's own cost, measured side by side in one process.

deploybench's timing loop (toolkit.timing on an OrtRunner call) against a bare loop of
`session.run` with one perf_counter_ns pair per call, on a tiny ONNX model at batch 1. Rounds
alternate the two so drift on a shared machine hits both; the figure is the median of the
per-round p50 ratios (goal: <= 1.03). With --suite NAME it also times a whole
`deploybench run --suite NAME`.

    python benchmarks/overhead.py [--rounds 7] [--seconds 0.5] [--suite quick]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

from toolkit.runners import RunnerConfig
from toolkit.runners.onnxruntime import OrtRunner
from toolkit.stats import Stats
from toolkit.timing import Budget, time_series


def tiny_model(path: Path) -> Path:
    rng = np.random.default_rng(0)
    weight = helper.make_tensor("w", TensorProto.FLOAT, [16, 16],
                                rng.random((16, 16), dtype=np.float32).ravel().tolist())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])], [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path.write_bytes(model.SerializeToString())
    return path


def bare_loop(session, feed, count: int) -> Stats:
    clock = time.perf_counter_ns
    run = session.run
    samples = []
    for _ in range(count):
        t0 = clock()
        run(None, feed)
        samples.append(clock() - t0)
    return Stats.from_ns(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.5, help="timing per side per round")
    parser.add_argument("--suite", help="also time `deploybench run --suite SUITE`")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        runner = OrtRunner.load(tiny_model(Path(tmp) / "tiny.onnx"), RunnerConfig(threads=1))
        x = np.ones((1, 16), dtype=np.float32)
        call = runner.prepare("run", {"x": x})
        feed = runner.feed({"x": x})
        budget = Budget(warmup=200, min_iterations=1000, min_seconds=args.seconds,
                        max_seconds=args.seconds * 4)
        bare_loop(runner.session, feed, 2000)  # warm both paths once
        ratios = []
        print(f"{'round':>5} {'deploybench p50':>16} {'bare p50':>10} {'ratio':>7}")
        for index in range(args.rounds):
            ours = time_series(call, budget).stats
            bare = bare_loop(runner.session, feed, ours.n)
            ratios.append(ours.p50_ms / bare.p50_ms)
            print(f"{index + 1:>5} {ours.p50_ms * 1e3:>13.2f} µs {bare.p50_ms * 1e3:>7.2f} µs "
                  f"{ratios[-1]:>7.3f}")
        median = statistics.median(ratios)
        verdict = "meets" if median <= 1.03 else "misses"
        print(f"harness overhead: median p50 ratio {median:.3f} over {args.rounds} rounds "
              f"({verdict} the goal of <= 1.03)")

    if args.suite:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "toolkit.cli", "run", "--suite", args.suite, "--out", out],
                capture_output=True, text=True,
            )
            wall = time.perf_counter() - start
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        print(f"suite {args.suite}: wall time {wall:.1f} s ({status})")


if __name__ == "__main__":
    main()
