"""Serving peaks over interleaved rounds: each round's machine effect out, a median per option.

`loadgen` searches every option once per round, the searches side by side with their LoadGen
runs taking turns (`toolkit.lockstep`) and the options' order flipping from round to round, so
every option meets the same spells of the machine. A round is one span of time, so
how much the machine moved every option in it can be read off all of them (the median over
the options of each one's log deviation from its own mean, `toolkit.stats.round_effects`, as
`compare` does for side-by-side rounds) and divided out. Each option's figure is then the
median of its rounds with a 95% interval from the variation pooled over the options and
moderated by its own (`toolkit.stats.moderated`). Two options are ranked only where their
intervals do not meet; elsewhere their order is not settled, and the reports say so. Two
options met in the same rounds are also set against each other round by round
(`paired_ratio`): the ratio of their peaks in each round, where the machine's effect cancels.

The work is done on seconds per query (1 / peak), where a slow spell makes a value larger, as
it makes a round's time larger in a timing: the statistics in `toolkit.stats` assume that.
Pure functions: no clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from toolkit.stats import (
    MEDIAN_VARIANCE,
    PRIOR_DF,
    Noise,
    median,
    moderated,
    order_variance,
    pooled_noise,
    round_effects,
    t975,
)

# options met in two rounds or more that the machine's effect in a round is read off: one
# option alone would have all its own variation read as the machine's
EFFECT_FROM_OPTIONS = 2


@dataclass(frozen=True)
class OptionPeaks:
    """One option over its rounds. `peaks`: each round's sustained peak in q/s (None where
    the round's search sustained none); `adjusted`: those peaks with their round's machine
    effect divided out; `median` and `low`..`high`: the adjusted peaks' median and its 95%
    interval (`kind` "interval"), their range where no variation could be pooled ("range"),
    or the one peak ("one round"); None where no round sustained a peak."""

    option: str
    peaks: dict[int, float | None]
    adjusted: dict[int, float]
    median: float | None
    low: float | None
    high: float | None
    kind: str

    @property
    def sustained_rounds(self) -> int:
        return len(self.adjusted)


@dataclass(frozen=True)
class RoundPeaks:
    """Every option over the rounds of one run; `effects`: each round's machine speed against
    the run's mean (1.25: the options served 25% more in that round)."""

    options: tuple[OptionPeaks, ...]
    effects: dict[int, float]
    noise: Noise | None = None  # the variation of one round's peak, pooled over the options

    def ranked(self) -> list[OptionPeaks]:
        """The options with a figure, highest median first."""
        return sorted((o for o in self.options if o.median is not None),
                      key=lambda o: -(o.median or 0.0))

    def settled(self, first: OptionPeaks, second: OptionPeaks) -> bool:
        """Whether the rounds set `first` above `second`: both have intervals (or a range) and
        they do not meet."""
        if first.median is None or second.median is None or "one round" in (first.kind,
                                                                              second.kind):
            return False
        assert first.low is not None and second.high is not None
        return first.low > second.high

    def unsettled_with(self, option: OptionPeaks) -> list[OptionPeaks]:
        """The options whose order against `option` the rounds do not settle."""
        return [o for o in self.ranked() if o is not option and o.median is not None
                and not self.settled(*sorted((option, o), key=lambda x: -(x.median or 0.0)))]


def peaks_over_rounds(peaks: Mapping[str, Mapping[int, float | None]]) -> RoundPeaks:
    """Each option's sustained peak per round (`{option: {round: q/s or None}}`) as figures
    with the rounds' machine effects taken out."""
    per_query = {option: {r: 1.0 / p for r, p in rounds.items() if p and p > 0}
                 for option, rounds in peaks.items()}
    rounds = sorted({r for found in peaks.values() for r in found})
    # the machine's move in a round, read off the options with two rounds or more: an option
    # with one says nothing of how it moves
    repeated = [found for found in per_query.values() if len(found) >= 2]
    effects = round_effects(repeated) if len(repeated) >= EFFECT_FROM_OPTIONS else {}
    adjusted = {option: {r: t / math.exp(effects.get(r, 0.0)) for r, t in found.items()}
                for option, found in per_query.items()}
    noise = pooled_noise(list(found.values()) for found in adjusted.values())
    if noise is not None and effects:  # the effects were read off these same peaks, which
        # leaves them varying less than a round does: by (k - 1) / k over k options
        noise = Noise(noise.sigma * math.sqrt(len(repeated) / (len(repeated) - 1)), noise.cases)
    options = []
    for option, found in adjusted.items():
        times = list(found.values())
        figure = kind = None
        low = high = None
        if times:
            middle = median(times)
            if noise is not None and len(times) >= 2:
                sigma, multiplier = moderated(noise, times)
                half = multiplier * sigma * math.sqrt(order_variance(MEDIAN_VARIANCE,
                                                                     len(times)))
                figure, low, high, kind = (1 / middle, 1 / (middle * math.exp(half)),
                                           1 / (middle * math.exp(-half)), "interval")
            elif len(times) >= 2:
                figure, low, high, kind = 1 / middle, 1 / max(times), 1 / min(times), "range"
            else:
                figure = low = high = 1 / middle
                kind = "one round"
        options.append(OptionPeaks(option, dict(peaks[option]),
                                   {r: 1 / t for r, t in found.items()}, figure, low, high,
                                   kind or "none"))
    return RoundPeaks(tuple(options), {r: 1 / math.exp(effects.get(r, 0.0)) for r in rounds},
                      noise)


@dataclass(frozen=True)
class PairedRatio:
    """One option's peak over another's, round by round: `ratio` the geometric mean of the
    rounds' ratios, `low`..`high` its 95% interval (`kind` "interval"), or the one round's
    ratio ("one round"); `rounds` the rounds both sustained a peak in."""

    ratio: float
    low: float
    high: float
    rounds: int
    kind: str

    @property
    def faster(self) -> bool:
        """Whether the rounds show the first option faster: its interval lies above 1."""
        return self.kind == "interval" and self.low > 1.0

    def text(self) -> str:
        """"1.62x [1.26, 2.08]", or "1.10x (one round)"."""
        if self.kind != "interval":
            return f"{self.ratio:.2f}x (one round)"
        return f"{self.ratio:.2f}x [{self.low:.2f}, {self.high:.2f}]"

    @property
    def over(self) -> str:
        """"over 3 paired rounds"."""
        return f"over {self.rounds} paired round{'s' * (self.rounds > 1)}"


def paired_ratio(first: Mapping[int, float | None], second: Mapping[int, float | None],
                 noise: Noise | None = None) -> PairedRatio | None:
    """`first`'s peak over `second`'s from the rounds both sustained one in (`{round: q/s}`):
    in a round both met the same spell of the machine, so its ratio holds whatever the
    machine did. The interval is Student's t on the rounds' log ratios, their variation
    moderated by `noise` (one round's variation, pooled over a run's options: a difference of
    two rounds varies twice as much) as `toolkit.stats.moderated` does. None where no round
    has both."""
    both = [(peak, second.get(r)) for r, peak in sorted(first.items())]
    logs = [math.log(a / b) for a, b in both if a and b and a > 0 and b > 0]
    if not logs:
        return None
    mean = math.fsum(logs) / len(logs)
    if len(logs) == 1:
        return PairedRatio(math.exp(mean), math.exp(mean), math.exp(mean), 1, "one round")
    df = len(logs) - 1
    own = math.fsum((x - mean) ** 2 for x in logs) / df
    if noise is not None:
        variance = (PRIOR_DF * 2 * noise.sigma ** 2 + own * df) / (PRIOR_DF + df)
        multiplier = t975(PRIOR_DF + df)
    else:
        variance, multiplier = own, t975(df)
    half = multiplier * math.sqrt(variance / len(logs))
    return PairedRatio(math.exp(mean), math.exp(mean - half), math.exp(mean + half), len(logs),
                       "interval")


def normalised(figures: Mapping[str, float]) -> dict[str, float]:
    """Each figure over the geometric mean of them all: a run on a machine slow throughout
    reads as one on a fast one (`benchmarks/loadgen_spread.py` sets runs side by side so)."""
    positive = {k: v for k, v in figures.items() if v > 0}
    if not positive:
        return {}
    centre = math.exp(math.fsum(math.log(v) for v in positive.values()) / len(positive))
    return {k: v / centre for k, v in positive.items()}


def order_of(options: Sequence[OptionPeaks]) -> list[tuple[str, str, bool]]:
    """Neighbours in the ranking: (higher, lower, settled by the intervals)."""
    ranked = sorted((o for o in options if o.median is not None), key=lambda o: -(o.median or 0))
    result = RoundPeaks(tuple(options), {})
    return [(a.option, b.option, result.settled(a, b))
            for a, b in zip(ranked, ranked[1:], strict=False)]
