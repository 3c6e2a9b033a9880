"""The serving decision as a search over configurations (Optuna), kept in SQLite.

Which option, recipe, threads, workers, batching and ONNX Runtime session options serve a
model at the highest rate within a p99 bound, an accuracy limit and a memory limit. Optuna
proposes configurations; `evaluate` says what one would do (in `advise`, measured service
times fed to `toolkit.queueing`; in the tests, a recorded table); the study lives in SQLite so
a resumed search goes on where it stopped.

Two objectives, as the answer needs them: the rate (higher) and the accuracy given up (lower);
the p99 bound is inside the rate (the highest rate within it), the accuracy and memory limits
are constraints (a configuration beyond them is infeasible, never on the front).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from exporters.session import SESSION_CHOICES
from toolkit.errors import BadInputError

# ONNX Runtime's session options a configuration can set, and the values tried, every
# combination of them (`Space.sessions` gives a list of combinations instead).
SESSION_OPTIONS: dict[str, tuple[Any, ...]] = {
    "graph_optimization": ("all", "extended", "basic"),
    "spinning": (False, True),
}


@dataclass(frozen=True)
class Space:
    """What the search may choose from. `options` name a runtime's call and recipe, such as
    `onnxruntime run fp32`; session options apply to ONNX Runtime's only."""

    options: tuple[str, ...]
    threads: tuple[int, ...] = (1, 2)
    workers: tuple[int, ...] = (1, 2)
    max_batch: tuple[int, ...] = (1, 2, 4, 8, 16)  # 1: no batching
    max_delay_ms: tuple[float, ...] = (0.1, 0.5, 1.0)
    session: Mapping[str, tuple[Any, ...]] = field(default_factory=lambda: SESSION_OPTIONS)
    cores: int = 0  # workers x threads beyond this are not tried (0: no limit)
    # by ONNX Runtime option, the session options' combinations to try (sorted (name, value)
    # pairs) where only these were measured (advise times each alone, for fp32); an ONNX
    # Runtime option not named gets every combination of `session`'s
    sessions: Mapping[str, tuple[tuple[tuple[str, Any], ...], ...]] = field(
        default_factory=dict)

    def session_choices(self, option: str) -> list[tuple[tuple[str, Any], ...]]:
        if not option.startswith("onnxruntime"):
            return [()]
        if option in self.sessions:
            return list(self.sessions[option])
        return [tuple(sorted(zip(self.session, values, strict=True)))
                for values in itertools.product(*self.session.values())]


def session_label(session: Sequence[tuple[str, Any]]) -> str:
    """A session's options as one choice's name: `graph_optimization=all memory_arena=False`."""
    return " ".join(f"{name}={value}" for name, value in session) or "default"


@dataclass(frozen=True)
class Config:
    option: str
    threads: int
    workers: int
    max_batch: int
    max_delay_ms: float | None  # None without batching
    session: tuple[tuple[str, Any], ...] = ()

    @property
    def ort(self) -> bool:
        return self.option.startswith("onnxruntime")

    def to_dict(self) -> dict[str, Any]:
        return {"option": self.option, "threads": self.threads, "workers": self.workers,
                "max_batch": self.max_batch, "max_delay_ms": self.max_delay_ms,
                "session": dict(self.session)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Config:
        return cls(data["option"], int(data["threads"]), int(data["workers"]),
                   int(data["max_batch"]), data.get("max_delay_ms"),
                   tuple(sorted(dict(data.get("session") or {}).items())))

    def label(self) -> str:
        batching = (f"batching up to {self.max_batch} within {self.max_delay_ms:g} ms"
                    if self.max_batch > 1 else "no batching")
        session = ", ".join(f"{k}={v}" for k, v in self.session  # defaults of the others unsaid
                            if SESSION_CHOICES.get(k, (None,))[0] != v)
        return (f"{self.option}, {self.workers} worker{'s' * (self.workers > 1)} x "
                f"{self.threads} thread{'s' * (self.threads > 1)}, {batching}"
                + (f" ({session})" if session else ""))


@dataclass(frozen=True)
class Outcome:
    """What a configuration would do: its rate within the bound (q/s), the p99 there (ms), the
    accuracy it gives up (a share: 0.002 is 0.2 points) and its memory (MB, all workers)."""

    rate: float
    p99_ms: float | None
    quality_drop: float
    memory_mb: float | None = None
    why_not: str | None = None  # why it cannot serve at all (a failed load, a recipe refused)


@dataclass(frozen=True)
class Limits:
    max_quality_drop: float = 0.01
    memory_mb: float | None = None

    def breaks(self, outcome: Outcome) -> str | None:
        """Why `outcome` is outside the limits, or None."""
        if outcome.why_not:
            return outcome.why_not
        if outcome.rate <= 0:
            return "no rate is within the p99 bound"
        if outcome.quality_drop > self.max_quality_drop:
            return (f"gives up {outcome.quality_drop:.2%} accuracy, more than the "
                    f"{self.max_quality_drop:.2%} allowed")
        if self.memory_mb is not None and (outcome.memory_mb or 0) > self.memory_mb:
            return (f"takes {outcome.memory_mb:,.0f} MB, more than the "
                    f"{self.memory_mb:,.0f} MB allowed")
        return None


@dataclass(frozen=True)
class Tried:
    config: Config
    outcome: Outcome
    why_lost: str | None = None  # beyond a limit, or dominated; None on the front


def _layouts(space: Space) -> list[str]:
    """Workers x threads, as one choice (Optuna's categorical choices may not depend on
    another choice), within the cores."""
    return [f"{w}x{t}" for t in space.threads for w in space.workers
            if not space.cores or t * w <= space.cores]


def configurations(space: Space) -> list[Config]:
    """Every configuration of the space, in a fixed order."""
    found = []
    for option in space.options:
        sessions = space.session_choices(option)
        for layout in _layouts(space):
            workers, threads = map(int, layout.split("x"))
            for batch in space.max_batch:
                for delay in (space.max_delay_ms if batch > 1 else (None,)):
                    found.extend(Config(option, threads, workers, batch, delay, session)
                                 for session in sessions)
    return found


def params(config: Config, space: Space) -> dict[str, Any]:
    """The trial parameters `suggest` turns into `config` (to enqueue it)."""
    chosen: dict[str, Any] = {"option": config.option,
                              "layout": f"{config.workers}x{config.threads}",
                              "max_batch": config.max_batch}
    if config.max_batch > 1:
        chosen["max_delay_ms"] = config.max_delay_ms
    if config.option in space.sessions:
        chosen[f"session of {config.option}"] = session_label(config.session)
    else:
        chosen.update(config.session)
    return chosen


def suggest(trial: Any, space: Space) -> Config:
    """One configuration, as Optuna's `trial` picks it (define-by-run: session options only
    for ONNX Runtime, a delay only with batching)."""
    option = trial.suggest_categorical("option", list(space.options))
    workers, threads = map(int, trial.suggest_categorical("layout", _layouts(space)).split("x"))
    max_batch = trial.suggest_categorical("max_batch", list(space.max_batch))
    delay = (trial.suggest_categorical("max_delay_ms", list(space.max_delay_ms))
             if max_batch > 1 else None)
    session: tuple[tuple[str, Any], ...] = ()
    if option in space.sessions:  # one choice of those listed (a name per option: Optuna's
        labels = {session_label(s): s for s in space.sessions[option]}  # choices are fixed)
        session = labels[trial.suggest_categorical(f"session of {option}", list(labels))]
    elif option.startswith("onnxruntime"):
        session = tuple(sorted((name, trial.suggest_categorical(name, list(values)))
                               for name, values in space.session.items()))
    return Config(option, threads, workers, max_batch, delay, session)


def run_search(space: Space, evaluate: Callable[[Config], Outcome], limits: Limits, *,
               trials: int, storage: str | None = None, study_name: str = "advise",
               seed: int = 0, seconds: float | None = None,
               context: Mapping[str, Any] | None = None,
               progress: Callable[[int, Config, Outcome], None] | None = None) -> list[Tried]:
    """Up to `trials` configurations evaluated in all (a resumed study counts those it has),
    stopping once `seconds` have passed after the study was opened; every configuration tried
    with why it lost, the front first. A study resumed from `storage` must have been made
    over the same space and `context`, else BadInputError. A configuration proposed again is
    not evaluated again: the sampler is told what it did, and an unseen configuration drawn at
    random is tried next (in a space of choices a sampler that has settled proposes the same
    few again and again)."""
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    unseen_draw = random.Random(seed)
    every = configurations(space)
    # a quarter of the trials drawn at random before TPE models them, each choice modelled on
    # its own: TPE's defaults (10 random, multivariate) settle early on a lesser corner of the
    # recorded table (tests/test_search.py checks that this comes within 10% of the best)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(10, trials // 4))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler,
                                storage=storage, study_name=study_name, load_if_exists=True)
    # what the study's outcomes hold for: its configurations and `context` (the model, the
    # bound: whatever else the outcomes depend on); a resumed study must match
    identity = json.loads(json.dumps({"configurations": [c.to_dict() for c in every],
                                      "context": dict(context or {})}))
    held = study.user_attrs.get("identity")
    if held is None:
        study.set_user_attr("identity", identity)
    elif held != identity:
        raise BadInputError(
            f"the study {study_name!r} in {storage} was made for another model, bound or set "
            "of configurations, or by a deploybench whose queueing model differs: resume it "
            "with the same ones, or start a new one elsewhere")
    seen: dict[Config, Outcome] = {}
    for done in study.get_trials():
        if done.state == optuna.trial.TrialState.COMPLETE and "config" in done.user_attrs:
            seen[Config.from_dict(done.user_attrs["config"])] = Outcome(
                **done.user_attrs["outcome"])
    limit = min(trials, len(every))
    deadline = None if seconds is None else time.monotonic() + seconds
    for _ in range(20 * trials):  # proposals, repeats included
        if len(seen) >= limit or (deadline is not None and time.monotonic() >= deadline):
            break
        trial = study.ask()
        config = suggest(trial, space)
        outcome = seen.get(config)
        if outcome is None:
            outcome = seen[config] = evaluate(config)
            if progress:
                progress(len(seen), config, outcome)
        else:
            unseen = [c for c in every if c not in seen]
            if unseen:
                study.enqueue_trial(params(unseen_draw.choice(unseen), space))
        broken = limits.breaks(outcome)
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("outcome", outcome.__dict__)
        trial.set_constraint("limits", 0.0 if broken is None else 1.0)
        study.tell(trial, [outcome.rate, outcome.quality_drop])
    return judged(seen, limits)


def judged(seen: Mapping[Config, Outcome], limits: Limits) -> list[Tried]:
    """Every configuration with why it lost: beyond a limit, or dominated (another within the
    limits serves at least as fast giving up no more accuracy, and is better in one); the
    front first, fastest first."""
    within = {c: o for c, o in seen.items() if limits.breaks(o) is None}
    tried = []
    for config, outcome in seen.items():
        broken = limits.breaks(outcome)
        if broken is None:
            better = next((c for c, o in within.items() if c != config
                           and o.rate >= outcome.rate and o.quality_drop <= outcome.quality_drop
                           and (o.rate > outcome.rate or o.quality_drop < outcome.quality_drop)),
                          None)
            if better is not None:
                broken = f"dominated by {better.label()}"
        tried.append(Tried(config, outcome, broken))
    # ties (a rate capped by the same serial cost) go to the lower p99, then the fewer cores
    return sorted(tried, key=lambda t: (t.why_lost is not None, -t.outcome.rate,
                                        t.outcome.p99_ms if t.outcome.p99_ms is not None
                                        else math.inf, t.config.workers * t.config.threads,
                                        t.config.max_batch))


def front(tried: Sequence[Tried]) -> list[Tried]:
    return [t for t in tried if t.why_lost is None]
