"""Does a LoadGen figure hold from run to run? The same `deploybench loadgen` command, run
several times in a row, and each option's figure set beside its others.

`loadgen` searches every option in rounds and gives each a median over them with the machine's
effect per round taken out. Across runs, the machine's overall speed still moves every option
alike, so each run's medians are divided by their geometric mean over the options: what stays
is where each option stands against the others, which is what a serving decision rests on. The
goal: each option's normalised median within +/-15% of its mean over the runs, and no two
options whose medians differ by 1.3x or more in a different order in any run. Each run also
says how steady the cores were (their `core_speed` readings against this machine's fastest)
and the most steal LoadGen's runs saw: the goal holds on a noisy machine or it does not hold.

    python benchmarks/loadgen_spread.py [MODEL.onnx] [--runs 3] [--p99-ms 5] [--pause-s 0]
                                        [--keep DIR] [--loadgen-args "--rounds 3 ..."]
    python benchmarks/loadgen_spread.py --advise torch/digits-mlp [--runs 3] [--p99-ms 5]

Without a model, the 64-64-10 MLP of `benchmarks/loadgen_ceiling.py` is made. With `--advise`,
`deploybench advise` runs instead, and each run's pick, its median and interval, its paired
ratio to the best default with that ratio's interval, and the queueing model's error (with the
cached serial costs, and scaled to the machine's speed in its own rounds as its control read
it) are set side by side. The goal:
the ratios' intervals overlap, and the picks share a pool kind and batching choice or lie
within each other's intervals.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from toolkit import busy  # noqa: E402
from toolkit.rounds import OptionPeaks, normalised, peaks_over_rounds  # noqa: E402

SPREAD = 0.15  # each option's normalised median within +/-15% of its mean over the runs
ORDERED = 1.3  # options whose medians differ by this much must keep their order


def mlp(path: Path) -> Path:
    from tests.test_loadgen import mlp as make

    return make(path, features=64, hidden=64)


def one_run(model: Path, p99_ms: float, extra: list[str], out: Path) -> dict:
    """A run's results; a run kept whole in `out` before (`--keep`, marked done with the same
    model and flags) is read again instead of made, so a series can be judged later or made by
    another driver."""
    done_mark = out / "benchmark-done"
    asked = json.dumps({"model": str(model), "p99_ms": p99_ms, "args": extra})
    if done_mark.exists() and done_mark.read_text().splitlines()[-1:] == [asked]:
        return json.loads((out / "results.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    done = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "loadgen", str(model), "--scenario", "server",
         "--p99-ms", str(p99_ms), "--providers", "cpu", *extra, "--out", str(out),
         "--history", str(out.parent / "history.sqlite")],
        capture_output=True, text=True, timeout=3600)
    if done.returncode not in (0, 1) or not (out / "results.json").is_file():
        raise SystemExit(f"deploybench loadgen failed ({done.returncode}): {done.stderr[-2000:]}")
    done_mark.write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n{asked}\n")
    return json.loads((out / "results.json").read_text())


def option_of(record: dict) -> str:
    variant = record["variant"]
    return f"{variant} (max {record['batch_size']})" if variant.endswith("+batching") else variant


def figures_of(results: dict) -> dict[str, OptionPeaks]:
    """Each option's figure over the run's rounds (`toolkit.rounds`), as the reports give it."""
    peaks: dict[str, dict[int, float | None]] = {}
    for r in results["records"]:
        if r["phase"] != "scenario":
            continue
        info = r.get("info") or {}
        sustained = r["status"] == "ok" and info.get("peak_kind", "none") == "sustained"
        peaks.setdefault(option_of(r), {})[r.get("round") or 1] = (
            info.get("peak_qps") if sustained else None)
    return {o.option: o for o in peaks_over_rounds(peaks).options}


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


def broken_order(runs: list[dict[str, float]]) -> list[str]:
    """Pairs of options whose medians, on the mean over the runs, differ by ORDERED or more,
    and whose order some run reversed."""
    means = {option: statistics.geometric_mean([run[option] for run in runs])
             for option in runs[0] if all(run.get(option) for run in runs)}
    broken = []
    names = sorted(means, key=means.get)
    for low_index, low in enumerate(names):
        for high in names[low_index + 1:]:
            if means[high] >= means[low] * ORDERED and any(run[low] >= run[high]
                                                            for run in runs):
                broken.append(f"{low} < {high}")
    return broken


def advise_run(target: str, p99_ms: float, out: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "advise", target, "--p99-ms", str(p99_ms),
         "--out", str(out)], capture_output=True, text=True, timeout=7200)
    if done.returncode not in (0, 1) or not (out / "advice.json").is_file():
        raise SystemExit(f"deploybench advise failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads((out / "advice.json").read_text())


def advise_machine(advice: dict) -> str:
    """How slow the cores read in a run's confirmations, against the fastest seen in it."""
    taken = [r for c in advice["confirmed"] for r in c.get("core_speed") or ()]
    if not taken:
        return "the cores were not read"
    cores = len(taken[0])
    top = [max(r[n] for r in taken if len(r) > n) for n in range(cores)]
    slow = sum(v < (1 - busy.UNSTEADY) * top[n] for r in taken for n, v in enumerate(r))
    return (f"{slow} of {sum(map(len, taken))} core readings over {busy.UNSTEADY:.0%} below "
            "the fastest of the run")


def pick_kind(pick: dict) -> str:
    """The choice the runs must agree on: the pool kind and whether it batches."""
    config = pick["config"]
    pool = "threads" if config["option"].startswith("onnxruntime") else "processes"
    return f"{pool}, {'batching' if config['max_batch'] > 1 else 'no batching'}"


def spread_of_advice(target: str, p99_ms: float, runs: int, root: Path, pause_s: float
                     ) -> None:
    found = []
    for n in range(1, runs + 1):
        time.sleep(pause_s)
        started = time.perf_counter()
        advice = advise_run(target, p99_ms, root / f"advise{n}")
        found.append(advice)
        print(f"advise run {n}: {time.perf_counter() - started:.0f} s; "
              f"{advise_machine(advice)}", flush=True)
    print(f"\nadvise {target}, p99 <= {p99_ms:g} ms, {runs} runs: the pick, its median [95%] "
          "over its rounds, its ratio to the best default [95%] over the paired rounds, the "
          "model's median error over the held configurations")
    ratios, picks = [], []
    for n, advice in enumerate(found, 1):
        pick, versus = advice["pick"], advice["versus_default"]
        if pick is None:
            print(f"  run {n}: no pick")
            continue
        picks.append(pick)
        label = pick_kind(pick)
        low, high = pick["low_qps"] or pick["peak_qps"], pick["high_qps"] or pick["peak_qps"]
        ratio = ("the pick is the best default" if versus is None else
                 f"{versus['ratio']:.2f}x [{versus['low']:.2f}, {versus['high']:.2f}]")
        if versus is not None:
            ratios.append((versus["low"], versus["high"]))
        error = advice.get("model_error")
        again = (advice.get("in_rounds") or {}).get("model_error")
        print(f"  run {n}: {label}: {pick['peak_qps'] / 1e3:.1f}k [{low / 1e3:.1f}, "
              f"{high / 1e3:.1f}]; {ratio}; model error "
              + (f"{error:.0%}" if error is not None else "-")
              + (f" ({again:.0%} at the speed of the run's own rounds)"
                 if again is not None else ""))
    overlap = not ratios or max(lo for lo, _ in ratios) <= min(hi for _, hi in ratios)
    kinds = {pick_kind(p) for p in picks}
    within = all(max(p["low_qps"] or 0 for p in picks) <= (q["high_qps"] or 0)
                 for q in picks) if picks else False
    errors = sorted(a["model_error"] for a in found if a.get("model_error") is not None)
    again = sorted(a["in_rounds"]["model_error"] for a in found
                   if (a.get("in_rounds") or {}).get("model_error") is not None)
    print(f"ratios' intervals {'overlap' if overlap else 'DO NOT overlap'}; picks "
          + ("of one kind" if len(kinds) == 1 else f"of {len(kinds)} kinds") + ", "
          + ("within each other's intervals" if within else "NOT within each other's intervals")
          + (f"; model error over the runs {', '.join(f'{e:.0%}' for e in errors)}"
             if errors else "")
          + (f" ({', '.join(f'{e:.0%}' for e in again)} at each run's own rounds' speed)"
             if again else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--p99-ms", type=float, default=5.0)
    parser.add_argument("--pause-s", type=float, default=0.0,
                        help="seconds to wait idle before each run")
    parser.add_argument("--keep", type=Path, help="keep every run's results and LoadGen logs "
                        "in this folder (default: a temporary one, removed); runs kept there "
                        "whole before are read again, not made")
    parser.add_argument("--loadgen-args", default="",
                        help="more `deploybench loadgen` flags, as one string")
    parser.add_argument("--advise", metavar="TARGET",
                        help="run `deploybench advise TARGET` instead, and compare its answers")
    args = parser.parse_args()
    if args.runs < 2:
        parser.error(f"--runs {args.runs}: a spread needs at least 2 runs")
    if args.advise:
        with tempfile.TemporaryDirectory() as tmp:
            root = args.keep or Path(tmp)
            root.mkdir(parents=True, exist_ok=True)
            spread_of_advice(args.advise, args.p99_ms, args.runs, root, args.pause_s)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        model = args.model or mlp(root / "mlp.onnx")
        runs: list[dict[str, OptionPeaks]] = []
        machines = []
        for n in range(1, args.runs + 1):
            time.sleep(args.pause_s)
            started = time.perf_counter()
            results = one_run(model, args.p99_ms, shlex.split(args.loadgen_args),
                              root / f"run{n}")
            runs.append(figures_of(results))
            said, steady = machine_of(results)
            machines.append(steady)
            print(f"run {n}: {time.perf_counter() - started:.0f} s; {said}"
                  f"{'' if steady else ' (not steady)'}", flush=True)
    medians = [{o: f.median for o, f in run.items() if f.median} for run in runs]
    scaled = [normalised(run) for run in medians]
    print(f"\nmodel {model.name}, p99 <= {args.p99_ms:g} ms, {args.runs} runs; each option's "
          "median over its rounds [95% interval], q/s; then the median over the run's "
          "geometric mean over options (the goal: within "
          f"+/-{SPREAD:.0%} of its mean over the runs)")
    within = []
    for option in runs[0]:
        cells = "  ".join(_cell(run.get(option)) for run in runs)
        seen = [run.get(option) for run in scaled]
        if all(seen):
            mean = statistics.mean(seen)
            spread = max(abs(v / mean - 1) for v in seen)
            within.append(spread <= SPREAD)
            shares = " ".join(f"{v:.2f}" for v in seen)
            verdict = f"{shares}  +/-{spread:.0%} {'within' if spread <= SPREAD else 'OUTSIDE'}"
        else:
            within.append(False)
            verdict = "no figure in every run"
        print(f"  {option:28s} {cells}   {verdict}")
    broken = broken_order(medians)
    print(f"{sum(within)} of {len(within)} options within +/-{SPREAD:.0%}; "
          + ("no two options 1.3x apart swapped" if not broken else
             f"swapped: {'; '.join(broken)}"))
    if not all(machines):
        print("the machine was not steady in every run (see above)")


def _cell(figure: OptionPeaks | None) -> str:
    if figure is None or figure.median is None:
        return f"{'(none)':>22s}"
    if figure.kind == "interval":
        return f"{figure.median / 1e3:6.2f}k [{figure.low / 1e3:.1f}, {figure.high / 1e3:.1f}]"
    return f"{figure.median / 1e3:6.2f}k ({figure.kind})"


if __name__ == "__main__":
    main()
