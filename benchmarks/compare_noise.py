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

    python benchmarks/compare_noise.py [--framework onnx|torch] [--pairs 5] [--rounds 4]
                                       [--batch-sizes 1,64] [--side-by-side]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=("onnx", "torch"), default="onnx")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch-sizes", default="1,64")
    parser.add_argument("--side-by-side", action="store_true",
                        help="measure each pair side by side in one run (compare A B of two "
                             "model files) instead of as separate benches")
    args = parser.parse_args()
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
