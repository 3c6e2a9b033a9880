"""What a child process runs: one step of a plan, named by its task.

    build       a built-in workload: train, save, export, parity   (toolkit.steps.build)
    build_file  a user's native model file: load, export, parity    (toolkit.steps.build)
    calibrate   a pool kind flooded under LoadGen: its serial costs  (toolkit.steps.calibrate)
    derive      an ONNX recipe (int8, fp16, offline) and its accuracy (toolkit.steps.derive)
    measure     one artifact in one runtime on one provider         (toolkit.steps.measure)
    scenario    one option served by a pool of workers under LoadGen (toolkit.steps.scenario)
    lockstep    a round of several options' server searches, taking turns (the same module)

Each task is a spec (a dataclass, sent as JSON) and a function that yields records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from toolkit.results import Record
from toolkit.steps.build import BuildFileSpec, BuildSpec, build, build_file
from toolkit.steps.calibrate import CalibrateSpec, calibrate
from toolkit.steps.derive import DeriveSpec, derive
from toolkit.steps.measure import MeasureSpec, measure_case
from toolkit.steps.scenario import LockstepSpec, ScenarioSpec, scenario_case, scenario_lockstep

TASKS: dict[str, tuple[type[Any], Callable[[Any], Iterator[Record]]]] = {
    "build": (BuildSpec, build),
    "build_file": (BuildFileSpec, build_file),
    "calibrate": (CalibrateSpec, calibrate),
    "derive": (DeriveSpec, derive),
    "measure": (MeasureSpec, measure_case),
    "scenario": (ScenarioSpec, scenario_case),
    "lockstep": (LockstepSpec, scenario_lockstep),
}


def run_task(spec: dict[str, Any]) -> Iterator[Record]:
    """The records of the task a spec names (`{"task": "measure", ...}`)."""
    values = dict(spec)
    task = values.pop("task")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    spec_type, function = TASKS[task]
    return function(spec_type(**values))


__all__ = ["TASKS", "BuildFileSpec", "BuildSpec", "CalibrateSpec", "DeriveSpec", "LockstepSpec",
           "MeasureSpec", "ScenarioSpec", "run_task"]
