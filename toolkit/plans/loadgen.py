"""`loadgen`'s planner: every option of a workload or a model file under LoadGen's scenarios.

The build first, then one Scenario step per option and serving path; a server search in
rounds, one Lockstep step per round and provider, its options' searches side by side.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from toolkit import environment, workloads
from toolkit.errors import BadInputError
from toolkit.plans.base import Plan
from toolkit.plans.model import ModelRequest, Planned, bench_suite, prepare_model, stored_request
from toolkit.plans.run import scenario_steps, served_as_planned
from toolkit.plans.steps import Build, build_label
from toolkit.results import prepare_out_dir
from toolkit.scenarios import ScenarioSettings, default_timeout, loadgen_missing
from toolkit.suite import Suite

MODEL_SUFFIXES = (".onnx", ".keras", ".pt", ".pt2", ".pth", ".joblib", ".pkl", ".pickle")


def loadgen_suite(settings: ScenarioSettings, *, providers: list[str] | None = None,
                  threads: int | None = None, timeout_s: float | None = None) -> Suite:
    """The settings of one `loadgen`: one scenario, one round, a timeout that fits it;
    `threads` (--threads) is the threads each worker gets (`ScenarioSettings.threads`)."""
    if threads is not None:
        settings = dataclasses.replace(settings, threads=threads)
    suite = bench_suite(providers=providers, rounds=1,
                        timeout_s=timeout_s if timeout_s is not None
                        else default_timeout([settings]))
    return suite.replace(name="loadgen", scenarios=(settings,))


def loadgen_request(target: str, shapes: tuple[str, ...] = (), input_data: Path | None = None,
                    trust_pickle: bool = False) -> ModelRequest | None:
    """A model file's request when `target` names a file, None when it names a built-in
    workload; BadInputError when it is neither."""
    path = Path(target)
    if path.exists():
        return ModelRequest(path, shapes, input_data, trust_pickle)
    if path.suffix.lower() in MODEL_SUFFIXES or "/" in target.strip("/") and not any(
            target in (w.key, w.name) for w in workloads.REGISTRY.values()):
        raise BadInputError(f"{target}: no such model file, and no built-in workload of that "
                            "name; give a model file or one `deploybench list` shows")
    if shapes or input_data:
        raise BadInputError(f"--shape and --input-data apply to a model file; {target} is a "
                            "built-in workload with its own data")
    workloads.select([target], None)  # an unknown name ends here, in one line
    return None


def plan_loadgen(target: str, suite: Suite, out_dir: Path, *, request: ModelRequest | None = None,
                 keep_inputs: bool = False) -> Plan:
    """The steps that put every option of a built-in workload (`target`: torch/digits-mlp, or
    a bare name) or of a model file (`request`) under the suite's LoadGen scenarios."""
    missing = loadgen_missing()
    if missing:
        raise BadInputError(missing)
    if request is not None:
        planned = [prepare_model(request, suite, out_dir, keep_inputs)]
        suite = planned[0].suite
    else:  # a bare name may be several frameworks' workload: each of them
        keys = [w.key for w in workloads.select([target], None)]
        for key in keys:
            missing = environment.missing_framework(key.split("/", 1)[0])
            if missing:
                raise BadInputError(f"{key}: {missing}")
        suite = dataclasses.replace(suite, workloads=tuple(keys))
        planned = [Planned(key, suite, [Build(key)], build_label(key), None, [])
                   for key in keys]
        prepare_out_dir(out_dir)
    steps = [step for model in planned for step in (
        *model.build, *scenario_steps(suite, model.key, model.after, model.sources))]
    run = {"command": "loadgen", "suite": suite.to_dict(), "target": target,
           "request": request.to_dict() if request else None,
           "input_warnings": [w for model in planned for w in model.warnings]}
    return Plan(suite, steps, run)


def replan(stored: Mapping[str, Any], suite: Suite, out_dir: Path, trust_pickle: bool) -> Plan:
    """A loadgen run's plan, made again from its results.json."""
    request = (stored_request(stored, trust_pickle) if stored.get("request") is not None
               else None)
    try:
        plan = plan_loadgen(str(stored.get("target", "")), suite, out_dir, request=request,
                            keep_inputs=True)
    except BadInputError as exc:
        raise BadInputError(f"--resume {out_dir}: the model it serves cannot be used now: "
                            f"{exc}") from None
    return served_as_planned(plan, out_dir)
