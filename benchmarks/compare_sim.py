"""How often does `deploybench compare` cry wolf, how often does it catch a real 1.3x, and do
the reported intervals cover what they claim? Simulated with this machine's noise, through the
real `toolkit.compare.compare` and `toolkit.stats.Estimate`.

Each simulated run has CASES cases (a quick suite has about 40; a one-model bench about 6),
measured in R rounds. A round's median is the case's true time times lognormal noise of the
given variation, and one process in ten is slowed 1.2-1.8x (as seen here). For each setting it
prints: the family-wise false-alarm rate (identical pairs whose gate fails, target <= 5%), the
detection rate (a quarter of the cases, at least one, made 1.3x slower: the share of them
called `slower`, target >= 95%), how often the gate fails where every case is 1.3x slower (in
separate runs, judged as every case together), how often an identical case is called `same`,
and the coverage of each case's 95% interval (how often it holds the true time; also without
slow processes, where the noise model is exact).

Then the same for two model files measured side by side (`compare BASE.onnx NEW.onnx`): rounds
alternate in one run and the machine's state in each round, which drifts (--drift), moves both
sides alike; judged on the pairs of rounds.

    python benchmarks/compare_sim.py [--trials 300] [--rounds 3,4,5] [--noise 0.02,0.05,0.10]
                                     [--drift 0.15]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from toolkit.compare import compare  # noqa: E402
from toolkit.results import Record  # noqa: E402
from toolkit.stats import Estimate, Stats, pooled_noise  # noqa: E402

SLOW_SHARE, SLOW_LOW, SLOW_HIGH = 0.1, 1.2, 1.8


def draw(rng: np.random.Generator, truth: np.ndarray, rounds: int, sigma: float,
         slow: float = SLOW_SHARE) -> np.ndarray:
    """Round medians, cases x rounds."""
    values = truth[:, None] * np.exp(rng.normal(0.0, sigma, (len(truth), rounds)))
    slowed = rng.random(values.shape) < slow
    return values * np.where(slowed, rng.uniform(SLOW_LOW, SLOW_HIGH, values.shape), 1.0)


def records(values: np.ndarray) -> list[Record]:
    out = []
    for case, rounds in enumerate(values):
        for index, p50 in enumerate(rounds):
            stats = Stats.from_ms([p50 * 0.98, p50, p50 * 1.02])
            out.append(Record(f"case{case}", "sim", "infer", runtime="onnxruntime",
                              variant="run", provider="cpu", batch_size=1, threads=1,
                              stats=stats, round=index + 1))
    return out


def changed(cases: int) -> np.ndarray:
    """Which cases a change makes 1.3x slower: a quarter of them (at least one), as a change
    to one model or one runtime does."""
    return np.arange(cases) < max(1, cases // 4)


def hit(row, some: np.ndarray) -> bool:
    """Whether a compared case (`sim/case<i> ...`) is one the change slowed."""
    return bool(some[int(row.case.split()[0].removeprefix("sim/case"))])


def trial(rng: np.random.Generator, cases: int, rounds: int, sigma: float
          ) -> tuple[bool, float, float, float, float, float]:
    truth = rng.uniform(0.005, 50.0, cases)
    base = draw(rng, truth, rounds, sigma)
    twin = draw(rng, truth, rounds, sigma)
    some = changed(cases)
    heavy = draw(rng, truth * np.where(some, 1.3, 1.0), rounds, sigma)
    run = ({}, records(base))
    same = compare(run, ({}, records(twin)))
    alarm = same.fails()
    caught = compare(run, ({}, records(heavy)))
    detected = sum(r.verdict == "slower" for r in caught.rows if hit(r, some)) / some.sum()
    called_same = sum(r.verdict == "same" for r in same.rows) / cases
    everything = compare(run, ({}, records(draw(rng, truth * 1.3, rounds, sigma)))).fails()
    covered = _coverage(base, truth)
    clean = _coverage(draw(rng, truth, rounds, sigma, slow=0.0), truth)
    return alarm, detected, everything, called_same, covered, clean


def paired_trial(rng: np.random.Generator, cases: int, rounds: int, sigma: float,
                 drift: float) -> tuple[bool, float, bool, float, float]:
    """One side-by-side run (`compare BASE.onnx NEW.onnx`): the machine's state in each round,
    lognormal with variation `drift`, moves both sides of the round alike; each process has its
    own noise on top. Returns the identical pair's gate, the share of 1.3x cases caught, the
    share of identical cases called same, and how often a 1.3x case's interval holds 1.3."""
    truth = rng.uniform(0.005, 50.0, cases)
    state = np.exp(rng.normal(0.0, drift, rounds))[None, :]
    base = draw(rng, truth, rounds, sigma) * state
    twin = draw(rng, truth, rounds, sigma) * state
    some = changed(cases)
    heavy = draw(rng, truth * np.where(some, 1.3, 1.0), rounds, sigma) * state
    identical = compare(({}, records(base)), ({}, records(twin)), paired=True)
    caught = compare(({}, records(base)), ({}, records(heavy)), paired=True)
    everything = compare(({}, records(base)), ({}, records(
        draw(rng, truth * 1.3, rounds, sigma) * state)), paired=True)
    hits = [r for r in caught.rows if hit(r, some)]
    return (identical.fails(), sum(r.verdict == "slower" for r in hits) / len(hits),
            everything.fails(), sum(r.verdict == "same" for r in identical.rows) / cases,
            sum(r.low <= 1.3 <= r.high for r in hits) / len(hits))


def _coverage(values: np.ndarray, truth: np.ndarray) -> float:
    noise = pooled_noise([list(v) for v in values])
    hits = 0
    for rounds, true in zip(values, truth, strict=True):
        estimate = Estimate.from_rounds([Stats.from_ms([v]) for v in rounds], noise)
        hits += estimate.low_ms <= true <= estimate.high_ms
    return hits / len(truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--rounds", default="3,4,5")
    parser.add_argument("--noise", default="0.02,0.05,0.10")
    parser.add_argument("--cases", default="40,6")
    parser.add_argument("--drift", type=float, default=0.15,
                        help="side by side: the machine's variation from round to round")
    args = parser.parse_args()
    rng = np.random.default_rng(20261201)
    print(f"{args.trials} simulated pairs per row; noise: lognormal variation, and one process "
          f"in ten slowed {SLOW_LOW}-{SLOW_HIGH}x; gate threshold 10%")
    print("1.3x caught: a quarter of the cases (at least one) 1.3x slower, the share of them "
          "called slower; all 1.3x: every case 1.3x slower, how often the gate fails")
    print(f"{'cases':>5} {'rounds':>6} {'noise':>5} {'false alarm':>11} {'1.3x caught':>11} "
          f"{'all 1.3x':>8} {'same':>6} {'coverage':>8} {'(no slow)':>9}")
    for cases in (int(c) for c in args.cases.split(",")):
        for rounds in (int(r) for r in args.rounds.split(",")):
            for sigma in (float(s) for s in args.noise.split(",")):
                results = [trial(rng, cases, rounds, sigma) for _ in range(args.trials)]
                alarm, caught, every, same, covered, clean = (
                    np.mean(c) for c in zip(*results, strict=True))
                print(f"{cases:>5} {rounds:>6} {sigma:>5.0%} {alarm:>11.1%} {caught:>11.1%} "
                      f"{every:>8.1%} {same:>6.1%} {covered:>8.1%} {clean:>9.1%}")
    print(f"\nside by side (compare BASE.onnx NEW.onnx, paired rounds): the machine's state "
          f"moves both sides of a round alike, lognormal {args.drift:.0%} from round to round; "
          "coverage: a 1.3x case's interval holds 1.3")
    print(f"{'cases':>5} {'rounds':>6} {'noise':>5} {'false alarm':>11} {'1.3x caught':>11} "
          f"{'all 1.3x':>8} {'same':>6} {'coverage':>8}")
    for cases in (int(c) for c in args.cases.split(",")):
        for rounds in (int(r) for r in args.rounds.split(",")):
            for sigma in (float(s) for s in args.noise.split(",")):
                results = [paired_trial(rng, cases, rounds, sigma, args.drift)
                           for _ in range(args.trials)]
                alarm, caught, every, same, covered = (np.mean(c)
                                                       for c in zip(*results, strict=True))
                print(f"{cases:>5} {rounds:>6} {sigma:>5.0%} {alarm:>11.1%} {caught:>11.1%} "
                      f"{every:>8.1%} {same:>6.1%} {covered:>8.1%}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
