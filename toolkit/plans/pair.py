"""`compare BASE.onnx NEW.onnx`'s planner: two model files measured side by side in one run.

Two runs made minutes apart drift apart on a shared machine, by more than the changes a
comparison looks for, which the rounds inside each run cannot see. Measured in one run, each
round of a case on BASE sits next to the same round on NEW, and the order flips every round
(base, new; new, base; ...), so a slow spell or a drift of the machine falls on both alike and a
comparison of the pairs of rounds (`toolkit.compare`, `paired`) cancels it.

Both files are fed the same rows: the same --input-data, or data generated from the same seed
for the inputs each declares. Their workloads are called `base-<stem>` and `new-<stem>`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from toolkit.errors import BadInputError
from toolkit.modelfile import open_model
from toolkit.plans.base import Plan
from toolkit.plans.model import ModelRequest, Planned, prepare_model, stored_request
from toolkit.plans.run import with_recipes
from toolkit.plans.steps import Measure, Step
from toolkit.results import Record
from toolkit.suite import Suite, cases

ROLES = ("base", "new")


def role_name(role: str, request: ModelRequest) -> str:
    return f"{role}-{request.path.stem}"


def plan_pair(base: ModelRequest, new: ModelRequest, suite: Suite, out_dir: Path, *,
              keep_inputs: bool = False) -> Plan:
    """Both files' builds, then their cases in alternating rounds (see the module's text)."""
    if base.path.resolve() == new.path.resolve():
        raise BadInputError(f"{new.path}: BASE and NEW are the same file; to see how identical "
                            "builds compare, copy it and give the copy as NEW")
    kinds = [open_model(r.path, trust_pickle=r.trust_pickle).framework for r in (base, new)]
    if kinds[0] != kinds[1]:  # their cases would not match: nothing would be judged
        raise BadInputError(f"{new.path}: a {kinds[1]} model, and {base.path} a {kinds[0]} one; "
                            "compare two files of one framework (export both to ONNX to "
                            "compare across frameworks)")
    planned: list[Planned] = []
    for role, request in zip(ROLES, (base, new), strict=True):
        planned.append(prepare_model(request, suite, out_dir / role, keep_inputs,
                                     name=role_name(role, request)))
    suite = dataclasses.replace(planned[0].suite,
                                workloads=tuple(model.key for model in planned))
    steps: list[Step] = []
    measures: list[list[Measure]] = []
    for model in planned:
        derives, measured = with_recipes(model.key, suite, cases(suite, model.key), model.after,
                                         model.sources)
        steps += [*model.build, *derives]
        measures.append(measured)
    run = {"command": "compare", "suite": suite.to_dict(), "request": base.to_dict(),
           "new_request": new.to_dict(),
           "workloads": {role: model.key for role, model in zip(ROLES, planned, strict=True)},
           "input_warnings": [w for model in planned for w in model.warnings]}
    return Plan(suite, [*steps, *alternating(measures[0], measures[1], suite.rounds)], run)


def alternating(base: Sequence[Measure], new: Sequence[Measure], rounds: int) -> list[Step]:
    """Round r of every case of BASE next to round r of the same case of NEW: base first in odd
    rounds, new first in even ones, so a trend over the run weighs on both alike."""
    steps: list[Step] = []
    for r in range(1, rounds + 1):
        for index in range(max(len(base), len(new))):
            pair = [side[index] for side in (base, new) if index < len(side)]
            if r % 2 == 0:
                pair.reverse()
            steps += [dataclasses.replace(step, round=r) for step in pair]
    return steps


def split(run: Mapping[str, Any], records: Sequence[Record]
          ) -> tuple[list[Record], list[Record]]:
    """BASE's and NEW's records of a side-by-side run, each under one common workload name, so
    that `toolkit.compare` matches their cases."""
    names = run.get("workloads")
    if not isinstance(names, Mapping) or set(names) != set(ROLES):
        raise BadInputError("this results.json does not come from `deploybench compare` of two "
                            "model files")
    found: dict[str, list[Record]] = {role: [] for role in ROLES}
    for record in records:
        for role, key in names.items():
            if f"{record.framework}/{record.workload}" == key:
                found[role].append(dataclasses.replace(record, workload="model"))
    return found["base"], found["new"]


def replan(stored: Mapping[str, Any], suite: Suite, out_dir: Path, trust_pickle: bool) -> Plan:
    """A side-by-side comparison's plan, made again from its results.json."""
    base = stored_request(stored, trust_pickle)
    new = stored_request({"request": stored.get("new_request")}, trust_pickle)
    try:
        return plan_pair(base, new, suite, out_dir, keep_inputs=True)
    except BadInputError as exc:
        raise BadInputError(f"--resume {out_dir}: the models it compares cannot be used now: "
                            f"{exc}") from None
