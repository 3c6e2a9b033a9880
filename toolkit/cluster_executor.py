"""The executor's second way to run a plan's steps: as Ray tasks over a cluster's nodes.

A step is submitted once the steps it reads from (its build, its recipe) have records; with
`--placement each-node` a measuring step (Measure, Scenario) is submitted once per node, its
label naming the node, so every case is measured on every machine. Records come back as tasks
finish and results.json is rewritten after each, as locally; Ctrl-C cancels the tasks still
running and keeps what finished.

Work in progress: artifacts are read from the paths the build step wrote, so a multi-machine
cluster needs the results folder on a filesystem every node shares (a local cluster has it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from toolkit import cluster
from toolkit.plan import Context, Derive, Measure, Plan, Scenario, Skipped, Step
from toolkit.recipes import HARDWARE_SPECIFIC
from toolkit.results import Record, ResultsFile


@dataclass(frozen=True)
class OnNode:
    """A measuring step pinned to one node (`--placement each-node`)."""

    step: Any
    node: cluster.Node

    @property
    def label(self) -> str:
        return f"{self.step.label} @{self.node.name}"

    @property
    def what(self) -> str:
        return f"{self.step.what} @{self.node.name}"

    def execute(self, context: Context) -> list[Record]:
        return self.step.execute(context)


def _needs(step: Any) -> list[str]:
    """The labels of the steps whose records `step` reads."""
    inner = step.step if isinstance(step, OnNode) else step
    return [label for label in (getattr(inner, "after", None), getattr(inner, "derived", None))
            if label]


def _derived(step: Any) -> str | None:
    inner = step.step if isinstance(step, OnNode) else step
    return getattr(inner, "derived", None)


def _gpu(step: Any) -> bool:
    inner = step.step if isinstance(step, OnNode) else step
    case = getattr(inner, "case", None)
    return case is not None and case.provider != "cpu"


def expand(plan: Plan, placement: str, nodes: list[cluster.Node]) -> list[Step]:
    """The plan's steps, each measuring step once per node where every node measures."""
    if placement != "each-node":
        return list(plan.steps)
    out: list[Step] = []
    for step in plan.steps:
        if isinstance(step, Measure | Scenario):
            out += [OnNode(step, node) for node in nodes]
        else:
            out.append(step)
    return out


def _run_step(step: Any, context: Context, remake: Any, *shipped: dict[str, bytes]
              ) -> cluster.Shipment:
    """On a node: the files of the steps this one reads (where this node lacks them), then
    the step; its records, with the files they name when it builds. `remake`: the Derive step
    of a hardware-specific recipe, made again here (in a folder of this node's own) so the
    case measures the file made for this machine."""
    for files in shipped:
        cluster.unpack(files)
    if remake is not None:
        import ray

        here = context.out_dir / "nodes" / ray.get_runtime_context().get_node_id()[:12]
        made = remake.execute(Context(context.suite, here, context.done))
        context = Context(context.suite, context.out_dir, {**context.done, remake.label: made})
    records = step.execute(context)
    builds = not isinstance(step, OnNode | Measure | Scenario)
    return cluster.Shipment(records, cluster.pack(records) if builds else {})


def execute_on_cluster(plan: Plan, results: ResultsFile, context: Context,
                       report: Callable[[int, int, str], None], run: Any,
                       command: str) -> Any:
    from toolkit.executor import RunOutcome, now

    nodes = cluster.connect(run.address)
    names = {node.node_id: node.name for node in nodes}
    envs = {**dict(results.run.get("nodes") or {}),
            **cluster.environments(nodes, plan.suite.threads)}
    results.update_run(cluster={"address": run.address, "placement": run.placement},
                       nodes=envs, node_versions=cluster.version_differences(envs))
    done = dict(context.done)
    steps = [s for s in expand(plan, run.placement, nodes) if s.label not in done]
    total = len(steps) + len({r.step for r in results.records})
    finished = total - len(steps)
    pending: dict[Any, Any] = {}
    shipped: dict[str, Any] = {}  # a build's label -> the reference of the files it made
    derives = {s.label: s for s in plan.steps
               if isinstance(s, Derive) and s.recipe in HARDWARE_SPECIFIC}
    waiting = list(steps)
    gpus = any(node.gpus for node in nodes)  # none: a CUDA case runs, and says why it cannot
    try:
        while waiting or pending:
            for step in [s for s in waiting if all(n in done for n in _needs(s))]:
                waiting.remove(step)
                if isinstance(step, Skipped):
                    made = [dataclasses.replace(r, step=step.label) for r in step.records]
                    results.append(made)
                    done[step.label] = made
                    finished += 1
                    continue
                needed = {label: done[label] for label in _needs(step)}
                task_context = Context(context.suite, context.out_dir, needed)
                node = step.node if isinstance(step, OnNode) else None
                files = [shipped[label] for label in _needs(step) if label in shipped]
                # A GPU is asked for only where one can be had: else the task would wait forever
                gpu = _gpu(step) and (node.gpus > 0 if node is not None else gpus)
                main, made_files = cluster.submit(_run_step, step, task_context,
                                                  derives.get(_derived(step)), *files,
                                                  node=node, gpu=gpu, ships=True)
                pending[main] = step
                shipped[step.label] = made_files
            if not pending:
                if waiting:  # a step whose input never came: nothing more can start
                    raise RuntimeError(f"steps wait for inputs no step makes: "
                                       f"{', '.join(s.label for s in waiting[:3])}")
                break
            report(finished, total, next(iter(pending.values())).what)
            ready, _ = cluster.wait(list(pending))
            for reference in ready:
                step = pending.pop(reference)
                where, made = cluster.result(reference)
                if isinstance(made, BaseException):
                    shipped.pop(step.label, None)  # its readers see no files, as after a failure
                    made = _failed(step, f"the Ray task failed: {type(made).__name__}: "
                                         f"{str(made).splitlines()[0] if str(made) else ''}")
                if where:
                    where = {**where, "name": names.get(where.get("node_id"), where["hostname"])}
                made = [dataclasses.replace(r, step=step.label)
                        for r in cluster.stamp(made, where)]
                results.append(made)
                done[step.label] = made
                finished += 1
        report(total, total, "done")
    except KeyboardInterrupt:
        cluster.cancel(list(pending))
        results.update_run(finished=now(), interrupted=True)
        return RunOutcome(results.path, results.records, True, command)
    except BaseException as exc:  # what finished stays, marked as not finished cleanly
        cluster.cancel(list(pending))
        results.update_run(finished=now(), interrupted=True, error=f"{type(exc).__name__}: {exc}")
        raise
    results.update_run(finished=now())
    return RunOutcome(results.path, results.records, False, command)


def _failed(step: Any, why: str) -> list[Record]:
    """A `failed` record for a step whose task crashed (its records never came back)."""
    inner = step.step if isinstance(step, OnNode) else step
    case = getattr(inner, "case", None)
    workload = getattr(inner, "workload", None) or (case.workload if case else "?/?")
    framework, name = workload.split("/", 1)
    phase = "scenario" if isinstance(inner, Scenario) else (
        "infer" if isinstance(inner, Measure) else
        "export" if isinstance(inner, Derive) else "train")
    return [Record(workload=name, framework=framework, phase=phase, status="failed",
                   reason=why, provider=case.provider if case else "",
                   runtime=case.runtime if case else "native",
                   recipe=getattr(inner, "recipe", None) or (case.recipe if case else "fp32"),
                   variant=getattr(inner, "variant", ""))]
