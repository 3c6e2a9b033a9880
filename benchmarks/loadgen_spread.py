"""Does a LoadGen peak hold from run to run? The same `deploybench loadgen` command, run
several times in a row, and each option's sustained peak set beside its others.

The serving goal: on a quiet machine, each option's peak within +/-15% of its mean over 3
runs, and options whose peaks differ by more than that (mean peaks over 30% apart: their
+/-15% bands do not meet) in the same order in every run. The
goal only means something on a quiet machine, so each run also says how steady the cores were
(their `core_speed` readings around each option, against this machine's fastest) and the most
steal LoadGen's runs saw.

    python benchmarks/loadgen_spread.py [MODEL.onnx] [--runs 3] [--p99-ms 5] [--pause-s 0]
                                        [--keep DIR] [--loadgen-args "--workers 2 ..."]

Without a model, the 64-64-10 MLP of `benchmarks/loadgen_ceiling.py` is made.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from toolkit import busy  # noqa: E402

SPREAD = 0.15  # each option's peaks within +/-15% of their mean


def mlp(path: Path) -> Path:
    from tests.test_loadgen import mlp as make

    return make(path, features=64, hidden=64)


def one_run(model: Path, p99_ms: float, extra: list[str], out: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "loadgen", str(model), "--scenario", "server",
         "--p99-ms", str(p99_ms), "--providers", "cpu", *extra, "--out", str(out),
         "--history", str(out.parent / "history.sqlite")],
        capture_output=True, text=True, timeout=3600)
    if done.returncode not in (0, 1) or not (out / "results.json").is_file():
        raise SystemExit(f"deploybench loadgen failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads((out / "results.json").read_text())


def peaks_of(results: dict) -> dict[str, tuple[float | None, str]]:
    """Each option's peak and its kind (only a `sustained` one counts)."""
    return {(f"{r['variant']} (max {r['batch_size']})" if r["variant"].endswith("+batching")
             else r["variant"]): (r["info"].get("peak_qps"), r["info"].get("peak_kind", "none"))
            for r in results["records"] if r["phase"] == "scenario" and r["status"] == "ok"}


def machine_of(results: dict) -> tuple[str, bool]:
    """How steady the machine was in one run (its cores' readings against this machine's
    fastest, and the most steal LoadGen's runs saw), and whether it was steady."""
    taken, steal, seconds = [], [], busy.CORE_SPEED_S
    for record in results["records"]:
        info = record.get("info") or {}
        speed = info.get("core_speed") or {}
        taken += [r for r in (speed.get("before"), speed.get("after")) if r]
        seconds = speed.get("seconds", seconds)
        if info.get("steal_percent_max") is not None:
            steal.append(info["steal_percent_max"])
    stolen = f"; steal at most {max(steal):g}%" if steal else ""
    if not taken:
        return f"the cores were not read{stolen}", False
    kept = busy.fastest_seen(None, seconds) or []
    cores = len(taken[0])
    top = [max([r[n] for r in taken if len(r) > n] + ([kept[n]] if len(kept) == cores else []))
           for n in range(cores)]
    slow = sum(v < (1 - busy.UNSTEADY) * top[n] for r in taken for n, v in enumerate(r))
    steady = busy.unsteady_text(taken, seconds, kept or None) is None and not (
        steal and max(steal) > busy.STEAL_NOISY)
    return (f"{slow} of {sum(map(len, taken))} core readings over {busy.UNSTEADY:.0%} below "
            f"the core's fastest{stolen}"), steady


def kept_order(runs: list[dict[str, tuple[float | None, str]]]) -> list[str]:
    """Pairs of options whose mean peaks are over 2 x SPREAD apart (their bands do not meet),
    and whose order some run reversed."""
    means = {}
    for option in runs[0]:
        seen = [run.get(option, (None, ""))[0] for run in runs]
        if all(seen):
            means[option] = statistics.mean(seen)
    broken = []
    names = sorted(means, key=means.get)
    for low_index, low in enumerate(names):
        for high in names[low_index + 1:]:
            if means[high] > means[low] * (1 + 2 * SPREAD) and any(
                    run[low][0] >= run[high][0] for run in runs):
                broken.append(f"{low} < {high}")
    return broken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--p99-ms", type=float, default=5.0)
    parser.add_argument("--pause-s", type=float, default=0.0,
                        help="seconds to wait idle before each run")
    parser.add_argument("--keep", type=Path, help="keep every run's results and LoadGen logs "
                        "in this folder (default: a temporary one, removed)")
    parser.add_argument("--loadgen-args", default="",
                        help="more `deploybench loadgen` flags, as one string")
    args = parser.parse_args()
    if args.runs < 2:
        parser.error(f"--runs {args.runs}: a spread needs at least 2 runs")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        model = args.model or mlp(root / "mlp.onnx")
        runs, machines = [], []
        for n in range(1, args.runs + 1):
            time.sleep(args.pause_s)
            started = time.perf_counter()
            results = one_run(model, args.p99_ms, shlex.split(args.loadgen_args),
                              root / f"run{n}")
            runs.append(peaks_of(results))
            said, steady = machine_of(results)
            machines.append(steady)
            print(f"run {n}: {time.perf_counter() - started:.0f} s; {said}"
                  f"{'' if steady else ' (not steady)'}", flush=True)
    print(f"\nmodel {model.name}, p99 <= {args.p99_ms:g} ms, {args.runs} runs; sustained peaks, "
          f"q/s (the goal: each within +/-{SPREAD:.0%} of its mean)")
    within = []
    for option in runs[0]:
        seen = [run.get(option, (None, "none")) for run in runs]
        peaks = [peak for peak, kind in seen if peak and kind == "sustained"]
        cells = "  ".join(f"{peak / 1e3:6.2f}k" if peak and kind == "sustained" else
                          f"{'(' + kind + ')':>7s}" for peak, kind in seen)
        if len(peaks) == len(seen):
            mean = statistics.mean(peaks)
            spread = max(abs(p / mean - 1) for p in peaks)
            within.append(spread <= SPREAD)
            verdict = f"+/-{spread:.0%} {'within' if spread <= SPREAD else 'OUTSIDE'}"
        else:
            within.append(False)
            verdict = "not sustained in every run"
        print(f"  {option:32s} {cells}   {verdict}")
    broken = kept_order(runs)
    print(f"{sum(within)} of {len(within)} options within +/-{SPREAD:.0%}; "
          + ("the order kept" if not broken else f"the order broken: {'; '.join(broken)}"))
    if not all(machines):
        print("the machine was not steady in every run (see above): the goal is for a quiet one")


if __name__ == "__main__":
    main()
