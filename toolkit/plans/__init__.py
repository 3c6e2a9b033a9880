"""The planner room: one planner per job, registered in one table that --resume reads.

    run      a suite (`toolkit.plans.run.plan_suite`)
    bench    a user's model file (`toolkit.plans.model.plan_model`)
    loadgen  a workload or model file under LoadGen scenarios (`toolkit.plans.loadgen`)
    compare  two model files measured side by side, rounds alternating (`toolkit.plans.pair`)
    advise-confirm-round  a round of the configurations `advise` chose, side by side under
                          LoadGen (`toolkit.plans.advise`)
    advise-confirm  one configuration under LoadGen (folders of an earlier advise)

A plan is labelled steps (`toolkit.plans.steps`) with explicit inputs; the one executor
(`toolkit.executor`) runs any plan, on any backend. Each plan's `run` section names its command;
`replan` makes the plan again from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from toolkit.errors import BadInputError
from toolkit.plans import advise, loadgen, model, pair, run
from toolkit.plans.base import Plan
from toolkit.suite import Suite

# command -> the plan its results.json's run section was made from (run, its folder, and
# whether a pickled model may be loaded again: results.json is data, not a grant of trust)
Replanner = Callable[[Mapping[str, Any], Suite, Path, bool], Plan]

PLANNERS: dict[str, Replanner] = {
    "run": lambda stored, suite, out_dir, trust: run.served_as_planned(run.plan_suite(suite),
                                                                       out_dir),
    "bench": model.replan,
    "loadgen": loadgen.replan,
    "compare": pair.replan,
    "advise-confirm": advise.replan_confirm,
    "advise-confirm-round": advise.replan_confirm_round,
}


def replan(stored: Mapping[str, Any], out_dir: Path, source: Path,
           trust_pickle: bool = False) -> Plan:
    """The plan a results.json's run section was made from."""
    try:
        suite = Suite.from_dict(stored["suite"])
    except (KeyError, TypeError, ValueError, AttributeError, BadInputError) as exc:
        raise BadInputError(f"{source}: the suite stored in its run section is not usable "
                            f"({exc})") from None
    command = stored.get("command", "run")  # results of schema 1 came from `run` only
    planner = PLANNERS.get(str(command))
    if planner is None:
        raise BadInputError(f"{source}: made by a command deploybench cannot resume "
                            f"({command!r})")
    return planner(stored, suite, out_dir, trust_pickle)


__all__ = ["PLANNERS", "Plan", "replan"]
