"""Does `deploybench compare` cry wolf, and does it catch a real slowdown? Measured side by side.

For each of N pairs: `deploybench bench` the same model twice (nothing changed) and once a
model doing 1.3x the work (13 layers of 256 x 256 instead of 10), then `compare` base against
the twin and base against the heavier model. The model is an ONNX file (ONNX Runtime's timings
only) or, with --framework torch, a torch.export file (timed natively in PyTorch, whose
timings move more between processes, and on ONNX Runtime after export). Done twice, with one
round per case (which compare never calls slower: nothing says how much processes vary) and
with R rounds (the variation between processes pooled over the cases, Holm-corrected). Prints,
for each: the false alarms (identical pairs whose compare exits 1, and the cases called
slower) and the detections (heavier pairs whose compare exits 1).

With --side-by-side, each pair is measured in one run instead (`deploybench compare BASE NEW`
of two model files: rounds alternating, the machine's drift in each round taken out), which
is how a small regression can be caught on a machine whose separate runs drift apart.

With --suite quick, each pair is two separate runs of a whole suite (`deploybench run --suite
quick`: all three frameworks, the suite's own rounds), nothing changed between them: the false
alarms a CI gate comparing two runs of the default suite would raise, and every verdict checked
against the interval printed beside it. --keep DIR keeps the runs, and a run already whole in
DIR is reused, so the verdicts of kept runs can be computed again by later code.

    python benchmarks/compare_noise.py [--framework onnx|torch] [--pairs 5] [--rounds 4]
                                       [--batch-sizes 1,64] [--side-by-side]
    python benchmarks/compare_noise.py --suite quick [--pairs 20] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.model_files

from tests.model_files import matmul_chain  # noqa: E402
from toolkit.compare import compare  # noqa: E402
from toolkit.plans import pair  # noqa: E402
from toolkit.results import read_results  # noqa: E402


def torch_chain(path: Path, layers: int, width: int = 256) -> Path:
    """The torch twin of `matmul_chain`: Linear + ReLU layers, saved with torch.export with a
    free batch dimension."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(*[module for _ in range(layers) for module in (
        torch.nn.Linear(width, width, bias=False), torch.nn.ReLU())]).eval()
    example = (torch.ones(4, width),)
    program = torch.export.export(model, example,
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(path))
    return path


def bench(model: Path, out: Path, rounds: int, sizes: str) -> Path:
    cli = [sys.executable, "-m", "toolkit.cli", "bench", str(model), "--rounds", str(rounds),
           "--batch-sizes", sizes, "--threads", "1", "--out", str(out),
           "--history", str(out.parent / "history.sqlite")]
    if model.suffix == ".pt2":
        cli += ["--shape", "256"]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"bench failed ({done.returncode}): {done.stderr[-2000:]}")
    return out / "results.json"


def side_by_side(base: Path, new: Path, out: Path, rounds: int, sizes: str
                 ) -> tuple[int, list[str], list[float]]:
    """`deploybench compare BASE NEW` of two model files, measured side by side in one run:
    (its exit code, the cases called slower, every case's ratio)."""
    cli = [sys.executable, "-m", "toolkit.cli", "compare", str(base), str(new), "--rounds",
           str(rounds), "--batch-sizes", sizes, "--threads", "1", "--out", str(out),
           "--history", str(out.parent / "history.sqlite")]
    if base.suffix == ".pt2":
        cli += ["--shape", "256"]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=1800)
    if done.returncode not in (0, 1):
        raise SystemExit(f"compare failed ({done.returncode}): {done.stderr[-2000:]}")
    run, records = read_results(out / "results.json")
    result = compare(*((run, side) for side in pair.split(run, records)), paired=True)
    if (1 if result.fails() else 0) != done.returncode:
        raise SystemExit(f"compare exited {done.returncode}, its comparison says otherwise")
    return done.returncode, [r.case for r in result.regressed], [r.ratio for r in result.rows]


def verdicts(base: Path, new: Path) -> tuple[int, list[str], list[float]]:
    """(compare's exit code, the cases called slower, every case's ratio)."""
    result = compare(read_results(base), read_results(new))
    return (1 if result.fails() else 0, [r.case for r in result.regressed],
            [r.ratio for r in result.rows])


def suite_run(suite: str, out: Path) -> Path:
    """`deploybench run --suite SUITE` into `out` (reused where a whole run is there)."""
    results, done_mark = out / "results.json", out / "benchmark-done"
    if done_mark.exists():
        return results
    shutil.rmtree(out, ignore_errors=True)
    cli = [sys.executable, "-m", "toolkit.cli", "run", "--suite", suite, "--out", str(out),
           "--history", str(out.parent / "history.sqlite")]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}): {done.stderr[-2000:]}")
    done_mark.write_text("exit 0\n")
    return results


def contradicted(row) -> bool:
    """A verdict its own printed interval contradicts: `slower` whose interval holds 1 (or
    reaches below it), `faster` likewise."""
    return ((row.verdict == "slower" and row.low <= 1)
            or (row.verdict == "faster" and row.high >= 1))


def main_suite(args: argparse.Namespace) -> None:
    keep = Path(args.keep) if args.keep else None
    with tempfile.TemporaryDirectory(prefix="deploybench-noise-") as tmp:
        root = keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        alarms, slow_cases, fast_cases, cases, against = 0, 0, 0, 0, 0
        for pair_index in range(args.pairs):
            base = suite_run(args.suite, root / f"p{pair_index}-base")
            twin = suite_run(args.suite, root / f"p{pair_index}-twin")
            result = compare(read_results(base), read_results(twin))
            code = 1 if result.fails() else 0
            slower = [r for r in result.rows if r.verdict == "slower"]
            faster = [r for r in result.rows if r.verdict == "faster"]
            wrong = [r for r in result.rows if contradicted(r)]
            alarms += code
            slow_cases += len(slower)
            fast_cases += len(faster)
            cases += len(result.rows)
            against += len(wrong)
            ratios = [r.ratio for r in result.rows]
            print(f"pair {pair_index + 1}: exit {code}; {len(slower)} slower, {len(faster)} "
                  f"faster of {len(result.rows)} cases; ratios {min(ratios):.2f}-"
                  f"{max(ratios):.2f}; noise {result.noise.sigma if result.noise else 0:.1%}"
                  + "".join(f"\n  slower: {r.case} {r.ratio:.2f} [{r.low:.2f}, {r.high:.2f}]"
                            for r in slower)
                  + "".join(f"\n  AGAINST ITS INTERVAL: {r.case} {r.verdict} "
                            f"[{r.low:.2f}, {r.high:.2f}]" for r in wrong), flush=True)
        print(f"identical {args.suite}-suite pairs, separate runs: gate failed {alarms} of "
              f"{args.pairs} pairs; {slow_cases} of {cases} cases slower, {fast_cases} faster; "
              f"{against} verdicts against their interval")
        print(f"wall time {time.perf_counter() - start:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=("onnx", "torch"), default="onnx")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch-sizes", default="1,64")
    parser.add_argument("--side-by-side", action="store_true",
                        help="measure each pair side by side in one run (compare A B of two "
                             "model files) instead of as separate benches")
    parser.add_argument("--suite", help="pairs of identical separate runs of this suite "
                                        "(quick, full or a .toml) instead of one model")
    parser.add_argument("--keep", help="with --suite: keep the runs in this folder (and reuse "
                                       "the whole runs already there)")
    args = parser.parse_args()
    if args.suite:
        return main_suite(args)
    if args.side_by_side:
        return main_side_by_side(args)

    with tempfile.TemporaryDirectory(prefix="deploybench-noise-") as tmp:
        root = Path(tmp)
        (root / "base").mkdir()  # one file name, so both are the workload "model"
        (root / "heavy").mkdir()
        make, suffix = (torch_chain, "pt2") if args.framework == "torch" else (matmul_chain,
                                                                               "onnx")
        base_model = make(root / "base" / f"model.{suffix}", layers=10)
        heavy_model = make(root / "heavy" / f"model.{suffix}", layers=13)
        start = time.perf_counter()
        for rounds in (1, args.rounds):
            alarms, alarm_cases, cases, detected, heavy_ratios = 0, 0, 0, 0, []
            for pair in range(args.pairs):
                where = root / f"r{rounds}-p{pair}"
                base = bench(base_model, where / "base", rounds, args.batch_sizes)
                twin = bench(base_model, where / "twin", rounds, args.batch_sizes)
                heavy = bench(heavy_model, where / "heavy", rounds, args.batch_sizes)
                code, slow, ratios = verdicts(base, twin)
                alarms += code
                alarm_cases += len(slow)
                cases += len(ratios)
                found, _, ratios_heavy = verdicts(base, heavy)
                detected += found
                heavy_ratios += ratios_heavy
                print(f"rounds {rounds}, pair {pair + 1}: identical -> exit {code} "
                      f"({len(slow)} slower; ratios {', '.join(f'{r:.2f}' for r in ratios)}); "
                      f"1.3x work -> exit {found} (ratios "
                      f"{', '.join(f'{r:.2f}' for r in ratios_heavy)})", flush=True)
            label = "one round (no verdict: never slower)" if rounds == 1 else (
                f"{rounds} rounds (fastest rounds tested, noise pooled over cases, Holm)")
            print(f"{label}: false alarms {alarms} of {args.pairs} identical pairs "
                  f"({alarm_cases} of {cases} cases slower); detected the 1.3x model in "
                  f"{detected} of {args.pairs} pairs")
        print(f"wall time {time.perf_counter() - start:.0f} s")


def main_side_by_side(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="deploybench-noise-") as tmp:
        root = Path(tmp)
        make, suffix = (torch_chain, "pt2") if args.framework == "torch" else (matmul_chain,
                                                                               "onnx")
        base_model = make(root / f"base.{suffix}", layers=10)
        twin_model = root / f"twin.{suffix}"
        shutil.copy(base_model, twin_model)
        heavy_model = make(root / f"heavy.{suffix}", layers=13)
        start = time.perf_counter()
        alarms, alarm_cases, cases, detected, caught_cases, heavy_cases = 0, 0, 0, 0, 0, 0
        for pair_index in range(args.pairs):
            where = root / f"p{pair_index}"
            code, slow, ratios = side_by_side(base_model, twin_model, where / "twin",
                                              args.rounds, args.batch_sizes)
            found, caught, heavy = side_by_side(base_model, heavy_model, where / "heavy",
                                                args.rounds, args.batch_sizes)
            alarms += code
            alarm_cases += len(slow)
            cases += len(ratios)
            detected += found
            caught_cases += len(caught)
            heavy_cases += len(heavy)
            print(f"pair {pair_index + 1}: identical -> exit {code} ({len(slow)} slower; ratios "
                  f"{', '.join(f'{r:.2f}' for r in ratios)}); 1.3x work -> exit {found} "
                  f"({len(caught)} slower; ratios {', '.join(f'{r:.2f}' for r in heavy)})",
                  flush=True)
        print(f"side by side, {args.rounds} rounds each, alternating: false alarms {alarms} of "
              f"{args.pairs} identical pairs ({alarm_cases} of {cases} cases slower); detected "
              f"the 1.3x model in {detected} of {args.pairs} pairs ({caught_cases} of "
              f"{heavy_cases} cases slower)")
        print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
