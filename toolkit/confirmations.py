"""advise's confirmations: each configuration's LoadGen searches over rounds, and the pick.

A `Confirmed` is one configuration's sustained-peak search in one round; a `Held` is that
configuration over its rounds, its figure the median with each round's machine effect taken
out (`toolkit.rounds`). Only a held configuration within the limits may be picked; the pick is
set against the best default round by round (`Advice.versus` in `toolkit.advise`). Pure: the
searches themselves run in `toolkit.advise`'s stages.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from toolkit import busy
from toolkit.results import Record
from toolkit.rounds import OptionPeaks, RoundPeaks, peaks_over_rounds
from toolkit.search import Config, Limits, Outcome


@dataclass(frozen=True)
class Confirmed:
    """A configuration under LoadGen: its sustained peak (or why it has none)."""

    config: Config
    role: str  # "searched" (on the front) or "default"
    folder: str
    peak_qps: float | None
    kind: str  # the peak search's kind: only "sustained" may be picked
    p99_ms: float | None
    p99_spread_ms: tuple[float, ...] = ()
    failed_below_qps: tuple[float, ...] = ()
    why_not: str | None = None  # no peak: the run's reason
    predicted: Outcome | None = None
    runs_at_peak: tuple[int, int] = (0, 0)  # LoadGen runs at the peak's rate: passed, made
    core_speed: tuple[tuple[float, ...], ...] = ()  # each core's speed, before and after
    fastest_seen: tuple[float, ...] | None = None  # each core's fastest on this machine
    core_speed_s: float = busy.CORE_SPEED_S  # how long each reading spun
    round: int = 1  # which of the confirmations' rounds

    @property
    def sustained(self) -> bool:
        return self.kind == "sustained" and self.peak_qps is not None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["config"] = self.config.to_dict()
        data["predicted"] = self.predicted.__dict__ if self.predicted else None
        return data

    @classmethod
    def from_record(cls, config: Config, role: str, folder: Path, record: Record | None,
                    predicted: Outcome | None, round_: int = 1) -> Confirmed:
        if record is None:
            return cls(config, role, str(folder), None, "none", None,
                       why_not="the confirmation made no record", predicted=predicted,
                       round=round_)
        info = record.info
        spread = tuple(v for v in info.get("confirming_p99_ms") or () if v is not None)
        reason = None if record.ok else (record.reason or record.status)
        if record.ok and info.get("peak_qps") is None:
            reason = info.get("reason") or "no rate was within the bound"
        at_peak = [p for p in info.get("points") or ()
                   if p.get("target_qps") == info.get("target_qps")]
        speed = info.get("core_speed") or {}
        return cls(config, role, str(folder), info.get("peak_qps"),
                   str(info.get("peak_kind", "none")), (info.get("latency_ms") or {}).get("p99"),
                   spread, tuple(info.get("failed_below_qps") or ()), reason, predicted,
                   (sum(1 for p in at_peak if p.get("valid")), len(at_peak)),
                   tuple(tuple(speed[w]) for w in ("before", "after") if speed.get(w)),
                   tuple(speed["fastest_seen"]) if isinstance(  # older records: a number
                       speed.get("fastest_seen"), list | tuple) else None,
                   speed.get("seconds", busy.CORE_SPEED_S), round_)


@dataclass(frozen=True)
class Held:
    """One confirmed configuration over its rounds: `figure` its rounds' sustained peaks with
    each round's machine effect out (`toolkit.rounds`: the median and its interval). It holds
    (`sustained`) where most of its rounds sustained a peak; `peak_qps` is then the median.
    Read as a Confirmed is (the report and `pick` take either)."""

    config: Config
    role: str
    rounds: tuple[Confirmed, ...]
    figure: OptionPeaks | None = None

    @property
    def sustained(self) -> bool:
        held = sum(1 for c in self.rounds if c.sustained)
        return held * 2 > len(self.rounds) and self.peak_qps is not None

    @property
    def peak_qps(self) -> float | None:
        return self.figure.median if self.figure else None

    @property
    def low_qps(self) -> float | None:
        return self.figure.low if self.figure and self.figure.kind != "one round" else None

    @property
    def high_qps(self) -> float | None:
        return self.figure.high if self.figure and self.figure.kind != "one round" else None

    @property
    def kind(self) -> str:
        if self.sustained:
            return "sustained"
        return next((c.kind for c in self.rounds if not c.sustained), "none")

    @property
    def why_not(self) -> str | None:
        if self.sustained:
            return None
        reasons = list(dict.fromkeys(c.why_not for c in self.rounds if c.why_not))
        held = sum(1 for c in self.rounds if c.sustained)
        return "; ".join(reasons) or (f"sustained a peak in {held} of its {len(self.rounds)} "
                                      "rounds")

    @property
    def predicted(self) -> Outcome | None:
        return self.rounds[0].predicted

    @property
    def folder(self) -> str:
        return self.rounds[0].folder

    @property
    def p99_ms(self) -> float | None:
        """The p99 at the peak of the round nearest the median."""
        nearest = self._nearest()
        return nearest.p99_ms if nearest else None

    @property
    def failed_below_qps(self) -> tuple[float, ...]:
        return tuple(sorted({r for c in self.rounds if c.sustained
                             for r in c.failed_below_qps}))

    @property
    def runs_at_peak(self) -> tuple[int, int]:
        return (sum(c.runs_at_peak[0] for c in self.rounds),
                sum(c.runs_at_peak[1] for c in self.rounds))

    def _nearest(self) -> Confirmed | None:
        held = [c for c in self.rounds if c.sustained]
        middle = self.peak_qps
        if not held or middle is None:
            return None
        return min(held, key=lambda c: abs(math.log((c.peak_qps or 1.0) / middle)))

    def peaks(self) -> dict[int, float | None]:
        """Each round's sustained peak (None where it sustained none)."""
        return {c.round: c.peak_qps if c.sustained else None for c in self.rounds}

    def to_dict(self) -> dict[str, Any]:
        figure = self.figure
        return {"config": self.config.to_dict(), "role": self.role, "folder": self.folder,
                "sustained": self.sustained, "peak_qps": self.peak_qps,
                "low_qps": self.low_qps, "high_qps": self.high_qps,
                "interval": figure.kind if figure else "none",
                "rounds": {str(r): p for r, p in sorted(self.peaks().items())},
                "adjusted": {str(r): round(p, 1) for r, p in sorted(
                    figure.adjusted.items())} if figure else {},
                "p99_ms": self.p99_ms, "why_not": self.why_not,
                "predicted": self.predicted.__dict__ if self.predicted else None}


def held_over_rounds(confirmed: Sequence[Confirmed]) -> tuple[list[Held], RoundPeaks]:
    """The confirmations grouped by configuration (in the order first confirmed), each with its
    figure over the rounds, and the rounds' effects read off them all."""
    groups: dict[tuple[Config, str], list[Confirmed]] = {}
    for c in confirmed:
        groups.setdefault((c.config, c.role), []).append(c)
    keys = {key: confirm_folder(*key) for key in groups}
    result = peaks_over_rounds({keys[key]: {c.round: c.peak_qps if c.sustained else None
                                             for c in found}
                                for key, found in groups.items()})
    figures = {o.option: o for o in result.options}
    return ([Held(config, role, tuple(sorted(found, key=lambda c: c.round)),
                  figures.get(keys[config, role]))
             for (config, role), found in groups.items()], result)


SPINNING = "spinning"  # a confirmation-only session choice: the workers' threads spin


def spun(config: Config) -> Config:
    """`config` with its workers' threads spinning while they wait (ScenarioSettings.spinning).
    Not searched: one call at a time, as the trials time, cannot show what a spinning pool
    costs the other workers under load; LoadGen can, so it is only ever confirmed."""
    return dataclasses.replace(config, session=tuple(sorted(
        {**dict(config.session), SPINNING: True}.items())))


def unspun(config: Config) -> Config:
    """`config` as the search saw it: without spinning."""
    return dataclasses.replace(config, session=tuple(
        (k, v) for k, v in config.session if k != SPINNING))


Confirmation = TypeVar("Confirmation", Confirmed, Held)


def pick(confirmed: Sequence[Confirmation], limits: Limits) -> Confirmation | None:
    """The confirmed configuration with the highest sustained peak within the limits; None when
    no configuration was confirmed (nothing unconfirmed is ever recommended)."""
    allowed = [c for c in confirmed if c.sustained and c.role != "control" and (
        c.predicted is None or limits.breaks(dataclasses.replace(
            c.predicted, rate=c.peak_qps or 0.0)) is None)]
    return max(allowed, key=lambda c: c.peak_qps or 0.0, default=None)


def best_default(confirmed: Sequence[Confirmation]) -> Confirmation | None:
    """The best of the defaults confirmed (a default the search also put forward counts)."""
    held = [c for c in confirmed if c.sustained and c.role == "default"]
    return max(held, key=lambda c: c.peak_qps or 0.0, default=None)


def model_errors(held: Sequence[Held], predicted: Mapping[str, float] | None = None
                 ) -> dict[str, float]:
    """Each held configuration's predicted rate over its confirmed median, minus one (0.25: the
    queueing model said 25% more than LoadGen held), by label; with `predicted` (by label),
    those predictions instead, for the configurations it has."""
    rates = {h.config.label(): h.predicted.rate for h in held if h.predicted}
    if predicted is not None:
        rates = {k: v for k, v in predicted.items() if k in rates}
    return {h.config.label(): rates[h.config.label()] / h.peak_qps - 1.0 for h in held
            if h.sustained and h.peak_qps and rates.get(h.config.label(), 0.0) > 0}


def model_error(held: Sequence[Held], predicted: Mapping[str, float] | None = None
                ) -> float | None:
    """The median of the model's absolute errors over the held configurations."""
    errors = sorted(abs(e) for e in model_errors(held, predicted).values())
    if not errors:
        return None
    middle = len(errors) // 2
    return errors[middle] if len(errors) % 2 else (errors[middle - 1] + errors[middle]) / 2


def confirm_folder(config: Config, role: str, round_: int = 1) -> str:
    """A confirmation's name, from what it serves (its role and a digest of its
    configuration): the tag its records carry in a round side by side and the folder of its
    LoadGen logs there, so a resumed run finds each configuration's own, whatever order the
    candidates come in; `round_` > 1 names a folder of an earlier advise, one per round."""
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()
    return f"{role}-{digest[:10]}" + (f"-r{round_}" if round_ > 1 else "")
