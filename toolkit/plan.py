"""A run as a plan: labelled steps, which the one executor (`toolkit.executor`) runs.

    Skipped    records made without running anything (a framework that is not installed)
    Build      a built-in workload, in a child: train, save, export, parity
    BuildFile  a user's native model file, in a child: load, export, parity
    Derive     an ONNX recipe of a workload (int8, fp16, offline), in a child: file, accuracy
    Measure    one round of one case (artifact x runtime x provider x recipe), in a fresh child
    Scenario   one option served one way (a pool of workers) under MLPerf LoadGen, in a child

A step's label is stamped on every record it makes (`Record.step`); a step with records is done,
which is how --resume knows what is left. Each case is measured in `suite.rounds` rounds, fresh
processes scheduled round-robin across all cases (round 1 of every case, then round 2, ...), so
a slow spell of the machine is spread over all of them rather than landing on one. `run` plans
a suite here (`plan_suite`); `bench` plans
a model file (`toolkit.bench.plan_model`). Either plan can be made again from the run section
of its results.json (`Plan.run`), so either can be resumed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from toolkit import environment, workloads
from toolkit.errors import BadInputError
from toolkit.isolate import run_child
from toolkit.recipes import BY_QUALITY, CPU_ONLY, CUDA_ONLY, ONNX_RECIPES
from toolkit.results import Record
from toolkit.scenarios import ScenarioSettings, batches_of, loadgen_missing, variants
from toolkit.suite import Case, Suite, cases

BUILD_PHASES = ("train", "export", "parity")


@dataclass(frozen=True)
class Context:
    """What a step may use: the run's settings, its folder, and the records of finished steps."""

    suite: Suite
    out_dir: Path
    done: Mapping[str, list[Record]] = field(default_factory=dict)


class Step(Protocol):
    @property
    def label(self) -> str:
        """Unique within a plan; stamped on the step's records."""

    @property
    def what(self) -> str:
        """What the progress bar says while the step runs."""

    def execute(self, context: Context) -> list[Record]:
        """Run the step; a failure inside it is a `failed` record, not an exception."""


@dataclass(frozen=True)
class Plan:
    suite: Suite
    steps: Sequence[Step]
    run: Mapping[str, Any]  # what results.json's run section needs to make this plan again


@dataclass(frozen=True)
class Skipped:
    label: str
    what: str
    records: tuple[Record, ...]

    def execute(self, context: Context) -> list[Record]:
        return list(self.records)


@dataclass(frozen=True)
class Build:
    workload: str  # framework/name

    @property
    def label(self) -> str:
        return build_label(self.workload)

    @property
    def what(self) -> str:
        return f"{self.workload}: training and exporting"

    def execute(self, context: Context) -> list[Record]:
        suite = context.suite
        spec = {"task": "build", "workload": self.workload,
                "out_dir": str(context.out_dir / "artifacts"), "opset": suite.opset,
                "rtol": suite.rtol, "atol": suite.atol, "threads": suite.threads}
        child = run_child(spec, context.out_dir, timeout_s=suite.timeout_s,
                          threads=suite.threads, name=f"build-{self.workload.replace('/', '-')}")
        return _complete(list(child.records), child.failure, _identity(self.workload),
                         BUILD_PHASES)


@dataclass(frozen=True)
class BuildFile:
    """A user's native model file; bad input found in the child is BadInputError here."""

    workload: str  # framework/stem
    path: Path
    onnx_out: Path
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    input_data: Path | None = None
    calibration_data: Path | None = None

    @property
    def label(self) -> str:
        return build_label(self.workload)

    @property
    def what(self) -> str:
        return f"{self.path.name}: loading, exporting, checking parity"

    def execute(self, context: Context) -> list[Record]:
        suite = context.suite
        framework = self.workload.split("/", 1)[0]
        spec = {"task": "build_file", "path": str(self.path.resolve()), "framework": framework,
                "out_dir": str(context.out_dir / "artifacts"), "onnx_out": str(self.onnx_out),
                "opset": suite.opset, "rtol": suite.rtol, "atol": suite.atol,
                "threads": suite.threads, "shapes": dict(self.shapes),
                "input_data": str(self.input_data.resolve()) if self.input_data else None,
                "calibration": (str(self.calibration_data.resolve()) if self.calibration_data
                                else None)}
        child = run_child(spec, context.out_dir, timeout_s=suite.timeout_s,
                          threads=suite.threads, name=f"build-{self.path.name}")
        if child.bad_input:
            raise BadInputError(f"{self.path}: {child.bad_input}")
        return _complete(list(child.records), child.failure, _identity(self.workload),
                         BUILD_PHASES[1:])


@dataclass(frozen=True)
class Sources:
    """What a measure step times: the files and inputs, and the native outputs on those
    inputs that an ONNX session is checked against (absent for an ONNX file run as it is)."""

    native: str | None = None
    onnx: str | None = None
    inputs: str | None = None
    reference: Mapping[str, Any] | None = None  # path, score_output, task
    calibration: str | None = None

    @classmethod
    def from_records(cls, records: Sequence[Record], given: Sources | None = None) -> Sources:
        """What `records` (a build's, then a recipe's: later ones win) say, over `given`."""
        found: dict[str, Any] = {}
        if given is not None:
            found.update({"artifact": given.native, "onnx": given.onnx, "inputs": given.inputs,
                          "calibration": given.calibration})
            found = {k: v for k, v in found.items() if v is not None}
        for record in records:
            if record.status != "skipped":  # a failed export still made the native files
                found.update({k: v for k, v in record.info.items() if k in (
                    "artifact", "onnx", "inputs", "reference", "score_output", "task",
                    "calibration")})
        reference = ({"path": found["reference"], "score_output": found.get("score_output", 0),
                      "task": found.get("task", "regression")}
                     if "reference" in found and "onnx" in found else None)
        return cls(found.get("artifact"), found.get("onnx"), found.get("inputs"), reference,
                   found.get("calibration"))


@dataclass(frozen=True)
class Measure:
    """One round of a case in a fresh child. Its files come from the records of the build step
    `after`, or are given up front (`sources`: an ONNX file measured as it is). A case that
    could not run at all in its first round (a provider not usable here, no file to load) is
    not started again in later ones."""

    case: Case
    after: str | None = None
    sources: Sources | None = None
    round: int = 1
    derived: str | None = None  # the Derive step that made this case's recipe file

    @property
    def label(self) -> str:
        return measure_label(self.case, self.round)

    @property
    def what(self) -> str:
        return (f"{self.case.workload}: {self.case.runner} on {self.case.provider}, "
                f"round {self.round}")

    def execute(self, context: Context) -> list[Record]:
        if self.round > 1:
            first = context.done.get(measure_label(self.case, 1), [])
            if first and not any(r.ok for r in first):
                return []
        sources = Sources.from_records(context.done.get(self.after or "", []), self.sources)
        if self.derived is not None:  # the recipe's file, never the fp32 one under its label
            derived = [r for r in context.done.get(self.derived, [])
                       if r.phase == "export" and r.ok]
            sources = dataclasses.replace(
                sources, onnx=derived[0].info.get("onnx") if derived else None,
                reference=Sources.from_records(derived, sources).reference if derived else None)
        return measure(context, self.case, sources, self.round)


def measure_label(case: Case, round_: int) -> str:
    return f"{case.label} #{round_}"


def measure(context: Context, case: Case, sources: Sources, round_: int = 1) -> list[Record]:
    suite = context.suite
    ident = _identity(case.workload)
    runtime = case.runtime
    artifact = sources.onnx if runtime == "onnxruntime" else sources.native
    why = None
    if artifact is None or sources.inputs is None:
        why = ("no ONNX file: export failed" if runtime == "onnxruntime" else
               "no native model: its build step failed")
        if case.recipe in ONNX_RECIPES:
            why = f"no {case.recipe} file: the recipe failed"
    elif case.recipe in CUDA_ONLY and case.provider == "cpu":
        why = CUDA_ONLY[case.recipe]
    elif case.recipe in CPU_ONLY and case.provider != "cpu":
        why = CPU_ONLY[case.recipe]
    if why is not None:
        return [Record(**ident, phase="infer", runtime=runtime, provider=case.provider,
                       recipe=case.recipe, batch_size=b, status="skipped", reason=why)
                for b in suite.batch_sizes]
    optimization = "disable" if case.recipe == "ort-offline" else suite.optimization
    spec = {"task": "measure", **ident, "runner": case.runner, "artifact": artifact,
            "inputs": sources.inputs, "provider": case.provider,
            "batch_sizes": list(suite.batch_sizes), "budget": dataclasses.asdict(suite.budget),
            "threads": suite.threads, "optimization": optimization, "round": round_,
            "recipe": case.recipe,
            "reference": ({**sources.reference, "rtol": suite.rtol, "atol": suite.atol,
                           "rule": (suite.max_quality_drop if case.recipe in BY_QUALITY
                                    else None)}
                          if sources.reference and (runtime == "onnxruntime"
                                                    or case.recipe != "fp32") else None)}
    name = (f"measure-{case.workload.replace('/', '-')}-{case.runner}-{case.provider}"
            f"-{case.recipe}-{round_}")
    child = run_child(spec, context.out_dir, timeout_s=suite.timeout_s, threads=suite.threads,
                      name=name)
    return _fill_missing(child.records, child.failure, ident, runtime, case, suite, round_)


def _fill_missing(records: list[Record], failure: str | None, ident: dict[str, str],
                  runtime: str, case: Case, suite: Suite, round_: int) -> list[Record]:
    """A `failed` record for every batch size the child left without one (it crashed, or
    ended without saying why), so the report says what is missing."""
    why = failure or "the child ended without measuring it (see its log)"
    measured = {r.batch_size for r in records if r.phase == "infer"}
    return records + [Record(**ident, phase="infer", runtime=runtime, provider=case.provider,
                             recipe=case.recipe, batch_size=b, status="failed", reason=why,
                             round=round_)
                      for b in suite.batch_sizes if b not in measured]


def build_label(workload: str) -> str:
    return f"{workload} build"


def derive_label(workload: str, recipe: str) -> str:
    return f"{workload} {recipe}"


@dataclass(frozen=True)
class Derive:
    """An ONNX recipe of a workload's fp32 file, in a child: the file and its accuracy. Its
    inputs come from the build step `after`, or are given up front (an ONNX file's bench)."""

    workload: str  # framework/name
    recipe: str
    after: str | None = None
    sources: Sources | None = None

    @property
    def label(self) -> str:
        return derive_label(self.workload, self.recipe)

    @property
    def what(self) -> str:
        return f"{self.workload}: making {self.recipe}"

    def execute(self, context: Context) -> list[Record]:
        suite = context.suite
        sources = Sources.from_records(context.done.get(self.after or "", []), self.sources)
        ident = {**_identity(self.workload), "recipe": self.recipe, "runtime": "onnxruntime"}
        if sources.onnx is None or sources.inputs is None:
            return [Record(**ident, phase=phase, status="skipped",
                           reason="no fp32 ONNX file: export failed")
                    for phase in ("export", "parity")]
        reference = sources.reference or {}
        directory = context.out_dir / "artifacts" / self.workload.replace("/", "-")
        spec = {"task": "derive", **_identity(self.workload), "recipe": self.recipe,
                "source": sources.onnx, "out_dir": str(directory), "inputs": sources.inputs,
                "calibration": sources.calibration or sources.inputs,
                "reference": reference.get("path", str(directory / "reference.npz")),
                "score_output": reference.get("score_output", 0),
                "output_task": reference.get("task", ""),
                "max_quality_drop": suite.max_quality_drop,
                "rtol": suite.rtol, "atol": suite.atol, "threads": suite.threads}
        child = run_child(spec, context.out_dir, timeout_s=suite.timeout_s,
                          threads=suite.threads,
                          name=f"derive-{self.workload.replace('/', '-')}-{self.recipe}")
        records = list(child.records)
        if child.failure:
            seen = {r.phase for r in records}
            records += [Record(**ident, phase=phase, status="failed", reason=child.failure)
                        for phase in ("export", "parity") if phase not in seen]
        return records


def with_recipes(workload: str, suite: Suite, planned: list[Case], after: str | None,
                 sources: Sources | None = None) -> tuple[list[Step], list[Measure]]:
    """The Derive steps of the suite's ONNX recipes, and a Measure step for every case, tied to
    the build (and for a recipe's case, to its Derive step)."""
    derives = [Derive(workload, r, after, sources) for r in suite.recipes if r in ONNX_RECIPES]
    measures = [Measure(case, after=after, sources=sources,
                        derived=(derive_label(workload, case.recipe)
                                 if case.recipe in ONNX_RECIPES else None))
                for case in planned]
    return list(derives), measures


@dataclass(frozen=True)
class Scenario:
    """One option under LoadGen in one scenario, served one way (`variant`: shared,
    per-worker, processes; +batching), in a child; its files come as a Measure step's do."""

    case: Case
    variant: str
    settings: ScenarioSettings
    after: str | None = None
    sources: Sources | None = None

    @property
    def label(self) -> str:
        return f"{self.case.label} {self.variant} loadgen {self.settings.scenario}"

    @property
    def what(self) -> str:
        return (f"{self.case.workload}: {self.case.runner} {self.variant} on "
                f"{self.case.provider}, LoadGen {self.settings.scenario}")

    def execute(self, context: Context) -> list[Record]:
        suite, case = context.suite, self.case
        sources = Sources.from_records(context.done.get(self.after or "", []), self.sources)
        runtime = case.runtime
        artifact = sources.onnx if runtime == "onnxruntime" else sources.native
        base = {**_identity(case.workload), "phase": "scenario", "runtime": runtime,
                "provider": case.provider, "variant": self.variant,
                "info": {"scenario": self.settings.scenario}}
        if artifact is None or sources.inputs is None:
            why = ("no ONNX file: export failed" if runtime == "onnxruntime" else
                   "no native model: its build step failed")
            return [Record(**base, status="skipped", reason=why)]
        slug = "-".join((case.workload.replace("/", "-"), case.runner, case.provider,
                         self.variant.replace("+", "-"), self.settings.scenario))
        spec = {"task": "scenario", **_identity(case.workload), "runner": case.runner,
                "artifact": artifact, "inputs": sources.inputs, "provider": case.provider,
                "variant": self.variant, "settings": self.settings.to_dict(),
                "logs": str(context.out_dir / "loadgen" / slug), "threads": suite.threads,
                "optimization": suite.optimization,
                "budget_s": max(suite.timeout_s * 0.9 - 15.0, suite.timeout_s / 2)}
        child = run_child(spec, context.out_dir, timeout_s=suite.timeout_s,
                          threads=suite.threads, name=f"loadgen-{slug}")
        records = list(child.records)
        done = {r.batch_size for r in records}
        why = child.failure or "the child ended without serving it (see its log)"
        return records + [Record(**base, batch_size=b, status="failed", reason=why)
                          for b in batches_of(self.settings, self.variant) if b not in done]


def scenario_steps(suite: Suite, key: str, after: str | None,
                   sources: Sources | None = None) -> list[Step]:
    """Every scenario of the suite for every fp32 option of a workload, each serving path of
    it; skipped records that say how to install LoadGen where it is missing."""
    planned = [c for c in cases(suite, key) if c.recipe == "fp32"]
    steps: list[Step] = []
    missing = loadgen_missing() if suite.scenarios else None
    for settings in suite.scenarios:
        for case in planned:
            runtime = case.runtime
            for variant in variants(runtime, settings.scenario):
                step = Scenario(case, variant, settings, after, sources)
                if missing:
                    steps.append(Skipped(step.label, f"{key}: skipped ({missing})", (Record(
                        **_identity(key), phase="scenario", runtime=runtime,
                        provider=case.provider, variant=variant, status="skipped",
                        reason=missing, info={"scenario": settings.scenario}),)))
                else:
                    steps.append(step)
    return steps


def plan_suite(suite: Suite) -> Plan:
    """Every workload's build, then the rounds of all their cases; a workload whose framework
    is not installed becomes skipped records that say how to install it."""
    steps: list[Step] = []
    measured: list[Measure] = []
    loaded: list[Step] = []
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
        loaded += scenario_steps(suite, key, build_label(key))
    return Plan(suite, [*steps, *in_rounds(measured, suite.rounds), *loaded],
                {"command": "run", "suite": suite.to_dict()})


def in_rounds(steps: Sequence[Measure], rounds: int) -> list[Step]:
    """Every measure step `rounds` times, round-robin: round 1 of each, then round 2, ..."""
    return [dataclasses.replace(step, round=r) for r in range(1, rounds + 1) for step in steps]


def _skipped(suite: Suite, key: str, planned: list[Case], reason: str) -> list[Step]:
    ident = _identity(key)
    steps: list[Step] = [Skipped(build_label(key), f"{key}: skipped ({reason})", tuple(
        Record(**ident, phase=phase, status="skipped", reason=reason) for phase in BUILD_PHASES))]
    for case in planned:
        runtime = case.runtime
        steps.append(Skipped(case.label, f"{key}: skipped", tuple(
            Record(**ident, phase="infer", runtime=runtime, provider=case.provider, batch_size=b,
                   status="skipped", reason=reason) for b in suite.batch_sizes)))
    return steps


def _identity(key: str) -> dict[str, str]:
    framework, name = key.split("/", 1)
    return {"workload": name, "framework": framework}


def _complete(records: list[Record], failure: str | None, ident: dict[str, str],
              phases: Sequence[str]) -> list[Record]:
    """A build child that died: a `failed` record, with why, for each phase it did not reach."""
    if failure:
        seen = {r.phase for r in records}
        records += [Record(**ident, phase=phase, status="failed", reason=failure)
                    for phase in phases if phase not in seen]
    return records
