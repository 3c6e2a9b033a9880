"""Which machine should serve it, on two kinds of node: `deploybench advise --cluster` end to end.

Starts a two-node Ray cluster on this machine: the head, of kind `big` (every core), and
node-b, of kind `small`, limited to one core by its CPU affinity (`taskset -c 0`), with its own
hostname and an empty tmpfs over the driver's folder (no shared disk, as `tests/ray_nodes.py`
makes it). Then runs, as a user would:

    deploybench advise MODEL --p99-ms 5 --target-qps 100000 --cluster ADDRESS \\
        --price big=0.20 --price small=0.05

and prints the answer, the time it took, and each kind's predicted and confirmed peak, with a
Markdown table for benchmarks/results/advise.md. Needs root (unshare) and Ray.

    python benchmarks/advise_kinds.py [MODEL.onnx] [--p99-ms 5] [--target-qps 100000]
                                      [--budget 20m] [--keep DIR]

Without a model, the 64-64-10 MLP of `benchmarks/loadgen_spread.py` is made. On one 2-core VM
the two kinds share core 0, so the figures show the mechanism, not two machines' speeds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?", type=Path)
    parser.add_argument("--p99-ms", type=float, default=5.0)
    parser.add_argument("--target-qps", type=float, default=100_000)
    parser.add_argument("--budget", default="20m")
    parser.add_argument("--keep", type=Path, help="a folder to keep the run in")
    args = parser.parse_args()
    from tests import ray_nodes

    why = ray_nodes.why_not()
    if why:
        print(f"cannot start two nodes here: {why}", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="deploybench-kinds-"))
    driver = root / "driver"
    driver.mkdir()
    model = args.model
    if model is None:
        from tests.test_loadgen import mlp

        model = mlp(driver / "mlp64.onnx", features=64, hidden=64)
    out = driver / "advice"
    checkout = Path(__file__).resolve().parent.parent
    address, head = ray_nodes.start_head(
        root / "logs", resources='{"deploybench": 1, "deploybench-kind-big": 1}')
    node = None
    try:
        node = ray_nodes.start_hidden_node(
            address, [driver, checkout / "toolkit", checkout / "exporters"], root / "logs",
            resources='{"deploybench": 1, "deploybench-kind-small": 1}', cpus="0")
        command = [sys.executable, "-m", "toolkit.cli", "advise", str(model), "--p99-ms",
                   f"{args.p99_ms:g}", "--target-qps", f"{args.target_qps:g}", "--budget",
                   args.budget, "--cluster", address, "--price", "big=0.20", "--price",
                   "small=0.05", "--out", str(out)]
        print("$ deploybench " + " ".join(command[3:]), flush=True)
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True,
                              env=ray_nodes.environment())
        took = time.monotonic() - started
    finally:
        if node is not None:
            ray_nodes.stop(node)
        ray_nodes.stop(head)
    print(done.stdout)
    if done.returncode not in (0, 1) or not (out / "advice.json").is_file():
        print(done.stderr[-3000:], file=sys.stderr)
        return 1
    answer = json.loads((out / "advice.json").read_text())
    print(f"exit {done.returncode}, {took:.0f} s (budget {args.budget})\n")
    print("| kind | cores | USD/h | pick | predicted | confirmed [95%] | p99 ms | machines "
          "| USD per million [interval] | rank |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n, ranked in enumerate(answer["ranking"], 1):
        kind = answer["kinds"][ranked["kind"]]
        pick = ranked["pick"] or {}
        config = pick.get("config") or {}
        ties = f" (ties: {', '.join(ranked['ties'])})" if ranked["ties"] else ""
        print(f"| {ranked['kind']} | {kind['cores']} | {ranked['price_usd_per_hour']} | "
              f"{config.get('workers')}x{config.get('threads')}, batch "
              f"{config.get('max_batch')} | {rate((pick.get('predicted') or {}).get('rate'))} | "
              f"{rate(pick.get('peak_qps'))} [{rate(pick.get('low_qps'))}, "
              f"{rate(pick.get('high_qps'))}] | {pick.get('p99_ms') and round(pick['p99_ms'], 2)} "
              f"| {ranked['machines']} {ranked['machines_range']} | "
              f"{ranked['usd_per_million']} [{ranked['usd_per_million_low']}, "
              f"{ranked['usd_per_million_high']}] | {n}{ties} |")
    if args.keep:
        shutil.copytree(out, args.keep, dirs_exist_ok=True)
        print(f"\nkept in {args.keep}")
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
