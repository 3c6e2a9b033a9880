"""`run`'s planner: a suite's workloads built, recipes made, cases measured in rounds and served.

The cases are served under the suite's LoadGen scenarios after their timings.

Each case is measured in `suite.rounds` rounds, fresh processes scheduled round-robin across all
cases (round 1 of every case, then round 2, ...), so a slow spell of the machine is spread over
all of them rather than landing on one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from toolkit import environment, workloads
from toolkit.errors import BadInputError
from toolkit.plans.base import Plan
from toolkit.plans.steps import (
    BUILD_PHASES,
    Build,
    Derive,
    Lockstep,
    Measure,
    Scenario,
    Skipped,
    Sources,
    Step,
    build_label,
    identity,
)
from toolkit.recipes import FP32, ONNX_RECIPES
from toolkit.results import Record, read_results
from toolkit.scenarios import ScenarioSettings, loadgen_missing, variants
from toolkit.suite import Case, Suite, cases


def plan_suite(suite: Suite) -> Plan:
    """Every workload's build, then the rounds of all their cases, then their LoadGen scenarios;
    a workload whose framework is not installed becomes skipped records that say how to install
    it."""
    steps: list[Step] = []
    measured: list[Measure] = []
    served: list[Step] = []
    for key in suite.workloads:
        missing = environment.missing_framework(workloads.get(key).framework)
        planned = cases(suite, key)
        if missing:
            steps += _skipped(suite, key, planned, missing)
            continue
        steps.append(Build(key))
        derives, measures = with_recipes(key, suite, planned, build_label(key))
        steps += derives
        measured += measures
        served += scenario_steps(suite, key, build_label(key))
    return Plan(suite, [*steps, *in_rounds(measured, suite.rounds), *served],
                {"command": "run", "suite": suite.to_dict()})


def with_recipes(workload: str, suite: Suite, planned: list[Case], after: str | None,
                 sources: Sources | None = None) -> tuple[list[Step], list[Measure]]:
    """The Derive steps of the suite's ONNX recipes, and a Measure step for every case, tied to
    the build (and, for a recipe's case, to its Derive step)."""
    derives: list[Step] = [Derive(workload, r, after, sources) for r in suite.recipes
                           if r in ONNX_RECIPES]
    return derives, [Measure(case, after=after, sources=sources) for case in planned]


def in_rounds(steps: Sequence[Measure], rounds: int) -> list[Step]:
    """Every measure step `rounds` times, round-robin: round 1 of each, then round 2, ..."""
    return [dataclasses.replace(step, round=r) for r in range(1, rounds + 1) for step in steps]


def scenario_steps(suite: Suite, key: str, after: str | None,
                   sources: Sources | None = None) -> list[Step]:
    """Every scenario of the suite for every fp32 option of a workload, each serving path of
    it, in each of the scenario's rounds; skipped records that say how to install LoadGen
    where it is missing."""
    planned = [c for c in cases(suite, key) if c.recipe == FP32]
    steps: list[Step] = []
    missing = loadgen_missing() if suite.scenarios else None
    for settings in suite.scenarios:
        options = [(case, variant) for case in planned
                   for variant in variants(case.runner, settings.scenario)]
        if missing:
            for case, variant in options:
                step = Scenario(case, variant, settings, after, sources)
                records = tuple(dataclasses.replace(r, status="skipped", reason=missing,
                                                    batch_size=None, round=None)
                                for r in step.expects(suite)[:1])
                steps.append(Skipped(step.label, f"{key}: skipped ({missing})", records))
            continue
        # every option once a round, the order flipping from round to round (as compare's
        # side-by-side rounds), so each meets the machine's spells early and late alike; a
        # searched server's options on one provider take turns within the round (Lockstep)
        for round_ in range(1, settings.round_count + 1):
            order = options if round_ % 2 else options[::-1]
            for provider in dict.fromkeys(case.provider for case, _ in order):
                mine = tuple((c, v) for c, v in order if c.provider == provider)
                if side_by_side(settings, mine):
                    steps.append(Lockstep(mine, settings, after, sources, round_))
                else:
                    steps += [Scenario(case, variant, settings, after, sources, round_)
                              for case, variant in mine]
    return steps


def side_by_side(settings: ScenarioSettings, options: Sequence[tuple[Case, str]]) -> bool:
    """Whether the options' searches take turns within each round (`Lockstep`): a server search
    in rounds, of two options or more, on the CPU. One round alone keeps the searches one
    after another, each with its own retries after a run the cores read slow under; a GPU's
    options too, each pool holding device memory of its own."""
    return (settings.searched and settings.round_count > 1 and len(options) > 1
            and all(case.provider == "cpu" for case, _ in options))


def _skipped(suite: Suite, key: str, planned: list[Case], reason: str) -> list[Step]:
    ident = identity(key)
    steps: list[Step] = [Skipped(build_label(key), f"{key}: skipped ({reason})", tuple(
        Record(**ident, phase=phase, status="skipped", reason=reason) for phase in BUILD_PHASES))]
    for case in planned:
        steps.append(Skipped(case.label, f"{key}: skipped", tuple(
            Record(**ident, phase="infer", runtime=case.runtime, provider=case.provider,
                   batch_size=b, recipe=case.recipe, status="skipped", reason=reason)
            for b in suite.batch_sizes)))
    return steps


def served_as_planned(plan: Plan, out_dir: Path) -> Plan:
    """`plan`, made again for --resume; BadInputError where the run's serving records came
    from steps it does not have (an earlier deploybench searched a round's options one step
    each): resumed, its rounds would be served twice."""
    path = out_dir / "results.json"
    if not path.is_file():
        return plan
    labels = {step.label for step in plan.steps}
    served = {r.step.split(" @", 1)[0] for r in read_results(path)[1]
              if r.phase == "scenario" and r.step}
    unknown = sorted(served - labels)
    if unknown:
        raise BadInputError(
            f"--resume {out_dir}: its serving was planned by an earlier deploybench, one step "
            f"per option ({unknown[0]!r}); finish it with that version, or start a new run "
            "(--out elsewhere)")
    return plan
