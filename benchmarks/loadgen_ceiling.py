"""How close does deploybench's serving path come to the simplest server one could write?

A minimal hand-written LoadGen system under test (two threads, one ONNX Runtime session each,
one queue, no batching; it does not import `toolkit.serving`) is searched for its peak rate
under a p99 bound with the same search and confirmation rule as `deploybench loadgen`
(`toolkit.scenarios.search_peak`), then `deploybench loadgen` serves the same model under the
same bound, then the minimal server again: side by side in one run, on one noisy machine.
Prints each peak, what kind of peak it is, and the ratio of deploybench's best unbatched ONNX
Runtime option (`shared`, `per-worker`) to the mean of the minimal server's sustained peaks
(the goal: at least 0.8).

    python benchmarks/loadgen_ceiling.py [MODEL.onnx] [--p99-ms 5] [--queries 2048] [--keep DIR]
                                         [--switch-ms 0.5]

Without a model, a 64-64-10 MLP (about 6 us a call here) is made.
"""

from __future__ import annotations

import argparse
import json
import math
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from toolkit.scenarios import SHORTEST_SERVER_RUN_S, read_detail_log, search_peak  # noqa: E402

WORKERS = 2
LONGEST_RUN_S = 20.0  # the lowest rate searched runs its queries this long (as deploybench)


def mlp(path: Path) -> Path:
    from tests.test_loadgen import mlp as make

    return make(path, features=64, hidden=64)


class MinimalServer:
    """Two threads, one session each, one queue: what a person would write first."""

    def __init__(self, model: Path, rows: int = 64) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.sessions = [ort.InferenceSession(str(model), options,
                                              providers=["CPUExecutionProvider"])
                         for _ in range(WORKERS)]
        first = self.sessions[0].get_inputs()[0]
        self.name = first.name
        self.x = np.random.default_rng(0).standard_normal(
            (rows, first.shape[1])).astype(np.float32)
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.threads = [threading.Thread(target=self._serve, args=(s,), daemon=True)
                        for s in self.sessions]
        for thread in self.threads:
            thread.start()

    def _serve(self, session) -> None:  # noqa: ANN001
        import mlperf_loadgen as lg

        while True:
            sample = self.queue.get()
            if sample is None:
                return
            session.run(None, {self.name: self.x[sample.index:sample.index + 1]})
            lg.QuerySamplesComplete([lg.QuerySampleResponse(sample.id, 0, 0)])

    def issue(self, samples) -> None:  # noqa: ANN001
        for sample in samples:
            self.queue.put(sample)

    def call_seconds(self) -> float:
        for session in self.sessions:  # warm both
            for _ in range(20):
                session.run(None, {self.name: self.x[:1]})
        times = []
        for _ in range(200):
            start = time.perf_counter()
            self.sessions[0].run(None, {self.name: self.x[:1]})
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    def run_at(self, rate: float, p99_ms: float, queries: int, folder: Path):  # noqa: ANN201
        import mlperf_loadgen as lg

        folder.mkdir(parents=True, exist_ok=True)
        test = lg.TestSettings()
        test.scenario = lg.TestScenario.Server
        test.mode = lg.TestMode.PerformanceOnly
        test.server_target_qps = rate
        test.server_target_latency_ns = int(p99_ms * 1e6)
        test.min_duration_ms = 0  # `queries` queries, or half a second's, as deploybench
        test.min_query_count = max(queries, math.ceil(rate * SHORTEST_SERVER_RUN_S))
        log = lg.LogSettings()
        log.log_output.outdir = str(folder)
        log.log_output.copy_summary_to_stdout = False
        sut = lg.ConstructSUT(self.issue, lambda: None)
        qsl = lg.ConstructQSL(len(self.x), len(self.x), lambda i: None, lambda i: None)
        try:
            lg.StartTestWithLogSettings(sut, qsl, test, log, str(folder / "no-audit.config"))
        finally:
            lg.DestroyQSL(qsl)
            lg.DestroySUT(sut)
        return read_detail_log(folder / "mlperf_log_detail.txt", "server")

    def close(self) -> None:
        for _ in self.threads:
            self.queue.put(None)


def minimal_peak(model: Path, p99_ms: float, queries: int, root: Path) -> tuple[float, str]:
    server = MinimalServer(model)
    try:
        capacity = WORKERS / server.call_seconds()
        runs = iter(range(1000))
        search = search_peak(
            lambda rate: server.run_at(rate, p99_ms, queries, root / f"{next(runs):02d}"),
            capacity / 2, floor_qps=queries / LONGEST_RUN_S)
    finally:
        server.close()
    return search.peak_qps or 0.0, search.kind


def deploybench_peaks(model: Path, p99_ms: float, queries: int, out: Path
                      ) -> dict[str, tuple[float | None, str]]:
    done = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "loadgen", str(model), "--scenario", "server",
         "--p99-ms", str(p99_ms), "--queries", str(queries), "--providers", "cpu",
         "--workers", str(WORKERS), "--threads", "1", "--out", str(out),
         "--history", str(out / "h.sqlite")],
        capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"deploybench loadgen failed ({done.returncode}): {done.stderr[-2000:]}")
    records = json.loads((out / "results.json").read_text())["records"]
    return {f"{r['variant']} (max {r['batch_size']})" if r["variant"].endswith("+batching")
            else r["variant"]: (r["info"].get("peak_qps"), r["info"].get("peak_kind", "?"))
            for r in records if r["phase"] == "scenario" and r["status"] == "ok"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path)
    parser.add_argument("--p99-ms", type=float, default=5.0)
    parser.add_argument("--queries", type=int, default=2048)
    parser.add_argument("--keep", type=Path, help="keep every run's results and LoadGen logs "
                        "in this folder (default: a temporary one, removed)")
    parser.add_argument("--switch-ms", type=float, default=0.5,
                        help="the GIL's switch interval the minimal server runs with (0.5: as "
                        "deploybench's serving step sets it; Python's default is 5)")
    args = parser.parse_args()
    sys.setswitchinterval(args.switch_ms / 1e3)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        model = args.model or mlp(root / "mlp.onnx")
        started = time.perf_counter()
        before = minimal_peak(model, args.p99_ms, args.queries, root / "minimal-1")
        ours = deploybench_peaks(model, args.p99_ms, args.queries, root / "deploybench")
        after = minimal_peak(model, args.p99_ms, args.queries, root / "minimal-2")
    print(f"model {model.name}, p99 <= {args.p99_ms:g} ms, runs of {args.queries} queries "
          f"(or {SHORTEST_SERVER_RUN_S:g} s), "
          f"{WORKERS} workers, the minimal server's GIL switch interval {args.switch_ms:g} ms, "
          f"{time.perf_counter() - started:.0f} s in all")
    print(f"minimal server (before): {before[0]:9,.0f} q/s  {before[1]}")
    for label, (peak, kind) in ours.items():
        print(f"deploybench {label:28s} {peak or 0:9,.0f} q/s  {kind}")
    print(f"minimal server (after):  {after[0]:9,.0f} q/s  {after[1]}")
    unbatched = [peak for label, (peak, kind) in ours.items()
                 if label in ("shared", "per-worker") and peak and kind == "sustained"]
    # only the minimal server's sustained peaks (an unconfirmed one passed a single run)
    sustained = [peak for peak, kind in (before, after) if kind == "sustained" and peak]
    ceiling = statistics.mean(sustained) if sustained else 0.0
    if unbatched and ceiling:
        print(f"best unbatched deploybench / minimal server: {max(unbatched) / ceiling:.2f} "
              "(goal >= 0.80)")
    else:
        print("no sustained peak to compare")


if __name__ == "__main__":
    main()
