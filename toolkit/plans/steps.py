"""The steps of a plan: what each reads, what it must leave, and how it runs in a child.

    Skipped    records made without running anything (a framework that is not installed)
    Build      a built-in workload, in a child: train, save, export, parity
    BuildFile  a user's native model file, in a child: load, export, parity
    Derive     an ONNX recipe of a workload (int8, fp16, offline), in a child: file, accuracy
    Measure    one round of one case (artifact x runtime x provider x recipe), in a fresh child
    Scenario   one option served one way (a pool of workers) under MLPerf LoadGen, in a child
    OnNode     any measuring step pinned to one cluster node (`--placement each-node`)

Every step says the same few things, so that one executor can run any of them on any backend:
`needs` (the labels of the steps whose records, and the files they name, it reads: it starts
once they have records), `pin` (a step it must run on the same machine as: the rounds of a case
stay on one node), `per_node` (made again on every node under each-node), `gpu`, `reads` (files
outside the run's folder that it reads, which a backend ships to another machine) and `expects`
(the records it must leave: what a crashed child or task did not make becomes `failed` by one
rule, `fill_missing`). A step's label is stamped on its records; a step with records is done.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from toolkit import environment
from toolkit.digests import check, follow, stamp
from toolkit.errors import BadInputError
from toolkit.isolate import run_child
from toolkit.memory import available_memory_bytes
from toolkit.recipes import BY_QUALITY, CPU_ONLY, CUDA_ONLY, FP32, HARDWARE_SPECIFIC, ONNX_RECIPES
from toolkit.results import Record
from toolkit.runners.onnxruntime import PROVIDERS as ORT_PROVIDERS
from toolkit.scenarios import ScenarioSettings, batches_of
from toolkit.suite import Case, Suite, default_threads

BUILD_PHASES = ("train", "export", "parity")
FIRST_CALLS = ("first_inference", "compile")  # a measuring child's first call of each variant


@dataclass(frozen=True)
class Context:
    """What a step may use: the run's settings, the folder it writes to (on a cluster node, a
    folder of that node's own), and the records of the steps it `needs`."""

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

    @property
    def needs(self) -> tuple[str, ...]:
        """The labels of the steps whose records (and files) this one reads."""

    @property
    def pin(self) -> str | None:
        """A step this one must run on the same machine as (None: anywhere)."""

    @property
    def gpu(self) -> bool:
        """Whether it needs the node's GPU."""

    per_node: bool  # made again on every node under each-node (a measurement, a hardware file)

    def reads(self) -> tuple[str, ...]:
        """Files and folders outside the run's folder that it reads (the user's model, ...)."""

    def expects(self, suite: Suite) -> list[Record]:
        """The records it must leave, as templates (see `fill_missing`)."""

    def execute(self, context: Context) -> list[Record]:
        """Run the step; a failure inside it is a `failed` record, not an exception."""


class StepDefaults:
    """What most steps say: they need nothing, run anywhere, once, on the CPU."""

    per_node: ClassVar[bool] = False

    @property
    def needs(self) -> tuple[str, ...]:
        return ()

    @property
    def pin(self) -> str | None:
        return None

    @property
    def gpu(self) -> bool:
        return False

    def reads(self) -> tuple[str, ...]:
        return ()


def fill_missing(expected: Sequence[Record], made: Sequence[Record], why: str) -> list[Record]:
    """`made`, and a `failed` record (with `why`) for each expected one it lacks, so the report
    says what is missing and --resume knows the step did not finish cleanly. A record is
    matched by its phase, its batch size and its variant: the template's where it names one (a
    scenario's pool, with its runtime and its `tag`, as several options of a lockstep round
    share one child); else, for timings, each variant the child named in its first calls (its
    runner's variants: one that failed early must not hide another never timed), unless a
    skipped record settles that batch size for all of them."""
    seen = {(r.phase, r.variant, r.batch_size) for r in made}
    served = {(r.phase, r.runtime, r.variant, r.batch_size, r.info.get("tag")) for r in made}
    named = list(dict.fromkeys(r.variant for r in made if r.variant and r.phase in FIRST_CALLS))
    out = list(made)
    for template in expected:
        if template.variant or template.phase != "infer" or not named:
            if template.variant:
                found = (template.phase, template.runtime, template.variant,
                         template.batch_size, template.info.get("tag")) in served
            else:
                found = any((r.phase, r.batch_size) == (template.phase, template.batch_size)
                            for r in made)
            if not found:
                out.append(dataclasses.replace(template, status="failed", reason=why))
            continue
        if any((r.phase, r.batch_size, r.status) == ("infer", template.batch_size, "skipped")
               for r in made):
            continue
        out += [dataclasses.replace(template, variant=variant, status="failed", reason=why)
                for variant in named
                if ("infer", variant, template.batch_size) not in seen]
    return out


def _child_missing(failure: str | None) -> str:
    return failure or "the child ended without making it (see its log)"


def identity(key: str) -> dict[str, str]:
    framework, name = key.split("/", 1)
    return {"workload": name, "framework": framework}


def slug(*parts: str) -> str:
    return "-".join(p.replace("/", "-").replace("+", "-") for p in parts if p)


@dataclass(frozen=True)
class Skipped(StepDefaults):
    label: str
    what: str
    records: tuple[Record, ...]

    def expects(self, suite: Suite) -> list[Record]:
        return list(self.records)

    def execute(self, context: Context) -> list[Record]:
        return list(self.records)


def build_label(workload: str) -> str:
    return f"{workload} build"


def derive_label(workload: str, recipe: str) -> str:
    return f"{workload} {recipe}"


def measure_label(case: Case, round_: int) -> str:
    return f"{case.label} #{round_}"


@dataclass(frozen=True)
class Build(StepDefaults):
    workload: str  # framework/name

    @property
    def label(self) -> str:
        return build_label(self.workload)

    @property
    def what(self) -> str:
        return f"{self.workload}: training and exporting"

    def expects(self, suite: Suite) -> list[Record]:
        return [Record(**identity(self.workload), phase=p) for p in BUILD_PHASES]

    def execute(self, context: Context) -> list[Record]:
        suite = context.suite
        spec = {"task": "build", "workload": self.workload,
                "out_dir": str(context.out_dir / "artifacts"), "opset": suite.opset,
                "rtol": suite.rtol, "atol": suite.atol, "threads": suite.threads}
        child = run_child(spec, context.out_dir, timeout_s=suite.timeout_s,
                          threads=suite.threads, name=f"build-{slug(self.workload)}")
        return stamp(fill_missing(self.expects(suite), child.records,
                                  _child_missing(child.failure)))


@dataclass(frozen=True)
class BuildFile(StepDefaults):
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

    def reads(self) -> tuple[str, ...]:
        return tuple(str(p) for p in (self.path, self.input_data, self.calibration_data) if p)

    def expects(self, suite: Suite) -> list[Record]:
        return [Record(**identity(self.workload), phase=p) for p in BUILD_PHASES[1:]]

    def execute(self, context: Context) -> list[Record]:
        suite = context.suite
        framework = self.workload.split("/", 1)[0]
        name = self.workload.split("/", 1)[1]
        spec = {"task": "build_file", "path": str(self.path), "framework": framework,
                "name": name, "out_dir": str(context.out_dir / "artifacts" / name),
                "onnx_out": str(self.onnx_out),
                "opset": suite.opset, "rtol": suite.rtol, "atol": suite.atol,
                "threads": suite.threads, "shapes": dict(self.shapes),
                "input_data": str(self.input_data) if self.input_data else None,
                "calibration": str(self.calibration_data) if self.calibration_data else None}
        child = run_child(spec, context.out_dir, timeout_s=suite.timeout_s,
                          threads=suite.threads, name=f"build-{self.path.name}")
        if child.bad_input:
            raise BadInputError(f"{self.path}: {child.bad_input}")
        return stamp(fill_missing(self.expects(suite), child.records,
                                  _child_missing(child.failure)))


@dataclass(frozen=True)
class Sources:
    """What a measuring step reads: the files and inputs, and the native outputs on those
    inputs that an ONNX session is checked against (absent for an ONNX file run as it is); and
    the SHA-256 the run recorded for each file when it was made, by role (`toolkit.digests`)."""

    native: str | None = None
    onnx: str | None = None
    inputs: str | None = None
    reference: Mapping[str, Any] | None = None  # path, score_output, task, judged_from
    calibration: str | None = None
    digests: Mapping[str, str | None] = field(default_factory=dict)

    @classmethod
    def from_records(cls, records: Sequence[Record], given: Sources | None = None) -> Sources:
        """What `records` (a build's, then a recipe's: later ones win) say, over `given`."""
        found: dict[str, Any] = {}
        digests: dict[str, str | None] = dict(given.digests) if given is not None else {}
        if given is not None:
            found.update({"artifact": given.native, "onnx": given.onnx, "inputs": given.inputs,
                          "calibration": given.calibration})
            found = {k: v for k, v in found.items() if v is not None}
        for record in records:
            if record.status != "skipped":  # a failed export still made the native files
                found.update({k: v for k, v in record.info.items() if k in (
                    "artifact", "onnx", "inputs", "reference", "score_output", "task",
                    "calibration", "judged_from")})
                digests = follow(digests, record)
        reference = ({"path": found["reference"], "score_output": found.get("score_output", 0),
                      "task": found.get("task", "regression"),
                      "judged_from": found.get("judged_from", 0)}
                     if "reference" in found and "onnx" in found
                     else given.reference if given is not None else None)
        return cls(found.get("artifact"), found.get("onnx"), found.get("inputs"), reference,
                   found.get("calibration"), digests)

    def files(self) -> tuple[str, ...]:
        return tuple(p for p in (self.native, self.onnx, self.inputs, self.calibration) if p)

    def check(self, folder: Path) -> None:
        """TamperedError where a file is not what the run made (`toolkit.digests.check`);
        `folder`: the run's, which relative paths are read from."""
        check({"artifact": self.native, "onnx": self.onnx, "inputs": self.inputs,
               "calibration": self.calibration,
               "reference": (self.reference or {}).get("path")}, self.digests, folder)


@dataclass(frozen=True)
class Derive(StepDefaults):
    """An ONNX recipe of a workload's fp32 file, in a child: the file and its accuracy. Its
    inputs come from the build step `after`, or are given up front (an ONNX file's bench)."""

    workload: str  # framework/name
    recipe: str
    after: str | None = None
    sources: Sources | None = None

    @property
    def per_node(self) -> bool:  # type: ignore[override]
        return self.recipe in HARDWARE_SPECIFIC

    @property
    def label(self) -> str:
        return derive_label(self.workload, self.recipe)

    @property
    def what(self) -> str:
        return f"{self.workload}: making {self.recipe}"

    @property
    def needs(self) -> tuple[str, ...]:
        return (self.after,) if self.after else ()

    def reads(self) -> tuple[str, ...]:
        return self.sources.files() if self.sources else ()

    def expects(self, suite: Suite) -> list[Record]:
        return [Record(**identity(self.workload), recipe=self.recipe, runtime="onnxruntime",
                       phase=p) for p in ("export", "parity")]

    def execute(self, context: Context) -> list[Record]:
        suite = context.suite
        sources = Sources.from_records(context.done.get(self.after or "", []), self.sources)
        if sources.onnx is None or sources.inputs is None:
            return [dataclasses.replace(r, status="skipped",
                                        reason="no fp32 ONNX file: export failed")
                    for r in self.expects(suite)]
        sources.check(context.out_dir)
        reference = sources.reference or {}
        directory = context.out_dir / "artifacts" / slug(self.workload)
        spec = {"task": "derive", **identity(self.workload), "recipe": self.recipe,
                "source": sources.onnx, "out_dir": str(directory), "inputs": sources.inputs,
                "calibration": sources.calibration or sources.inputs,
                # an ONNX file's own outputs, one file a recipe: two made at once (on two
                # cluster nodes) never write one path
                "reference": reference.get("path",
                                           str(directory / f"reference.{self.recipe}.npz")),
                "score_output": reference.get("score_output", 0),
                "output_task": reference.get("task", ""),
                "max_quality_drop": suite.max_quality_drop,
                "rtol": suite.rtol, "atol": suite.atol, "threads": suite.threads}
        child = run_child(spec, context.out_dir, timeout_s=suite.timeout_s,
                          threads=suite.threads,
                          name=slug("derive", self.workload, self.recipe))
        return stamp(fill_missing(self.expects(suite), child.records,
                                  _child_missing(child.failure)))


def _flops_per_row(path: str | None) -> int | None:
    """Counted once per file in this process: each measuring child would otherwise import onnx
    for it (most of an ONNX Runtime child's start). None where it cannot be."""
    try:
        found = os.stat(path) if path else None
    except OSError:
        return None
    return _flops_of(str(path), found.st_mtime_ns, found.st_size) if found else None


@functools.lru_cache(maxsize=64)
def _flops_of(path: str, mtime_ns: int, size: int) -> int | None:
    from toolkit.flops import flops_per_row

    try:
        return flops_per_row(Path(path))
    except Exception:  # an operator or shape the counter does not know: no figure
        return None


def _artifact(case: Case, sources: Sources) -> str | None:
    return sources.onnx if case.runtime == "onnxruntime" else sources.native


def _no_artifact(case: Case) -> str:
    if case.recipe in ONNX_RECIPES:
        return f"no {case.recipe} file: the recipe failed"
    return ("no ONNX file: export failed" if case.runtime == "onnxruntime" else
            "no native model: its build step failed")


class CaseStep(StepDefaults):
    """A step of one case (Measure, Scenario): on the case's provider, reading its sources."""

    case: Case
    sources: Sources | None

    @property
    def gpu(self) -> bool:
        return self.case.provider != "cpu"

    def reads(self) -> tuple[str, ...]:
        return self.sources.files() if self.sources else ()


@dataclass(frozen=True)
class Measure(CaseStep):
    """One round of a case in a fresh child. Its files come from the records of the build step
    `after`, or are given up front (`sources`: an ONNX file measured as it is), and for a recipe
    from its Derive step. A case that could not run at all in its first round (a provider not
    usable here, no file to load) is not started again in later ones; a case's later rounds
    run where its first did."""

    case: Case
    after: str | None = None
    sources: Sources | None = None
    round: int = 1

    per_node: ClassVar[bool] = True

    @property
    def label(self) -> str:
        return measure_label(self.case, self.round)

    @property
    def what(self) -> str:
        return (f"{self.case.workload}: {self.case.runner} on {self.case.provider}, "
                f"round {self.round}")

    @property
    def derived(self) -> str | None:
        """The Derive step that made this case's recipe file."""
        recipe = self.case.recipe
        return derive_label(self.case.workload, recipe) if recipe in ONNX_RECIPES else None

    @property
    def first(self) -> str | None:
        return measure_label(self.case, 1) if self.round > 1 else None

    @property
    def needs(self) -> tuple[str, ...]:
        return tuple(n for n in (self.after, self.derived, self.first) if n)

    @property
    def pin(self) -> str | None:
        if self.first:
            return self.first
        return self.derived if self.case.recipe in HARDWARE_SPECIFIC else None

    def expects(self, suite: Suite) -> list[Record]:
        case = self.case
        return [Record(**identity(case.workload), phase="infer", runtime=case.runtime,
                       provider=case.provider, recipe=case.recipe, batch_size=b,
                       round=self.round) for b in suite.batch_sizes]

    def execute(self, context: Context) -> list[Record]:
        if self.first:
            first = context.done.get(self.first, [])
            if first and not any(r.ok for r in first):
                return []
        sources = Sources.from_records(context.done.get(self.after or "", []), self.sources)
        if self.derived is not None:  # the recipe's file, never the fp32 one under its label
            derived = [r for r in context.done.get(self.derived, [])
                       if r.phase == "export" and r.ok]
            made = Sources.from_records(derived, sources) if derived else None
            sources = dataclasses.replace(
                sources, onnx=derived[0].info.get("onnx") if derived else None,
                reference=made.reference if made else None,
                digests=made.digests if made else sources.digests)
        return self._measure(context, sources)

    def _skip_reason(self, sources: Sources) -> str | None:
        case = self.case
        if _artifact(case, sources) is None or sources.inputs is None:
            return _no_artifact(case)
        if case.recipe in CUDA_ONLY and case.provider == "cpu":
            return CUDA_ONLY[case.recipe]
        if case.recipe in CPU_ONLY and case.provider != "cpu":
            return CPU_ONLY[case.recipe]
        if case.provider != "cpu":  # read where the step runs: a cluster's node may have one
            absent = environment.no_nvidia_gpu()
            if absent is not None:
                what = (ORT_PROVIDERS.get(case.provider, case.provider)
                        if case.runtime == "onnxruntime" else case.provider)
                return f"{what} cannot be used: {absent}"
        return None

    def _measure(self, context: Context, sources: Sources) -> list[Record]:
        suite, case = context.suite, self.case
        why = self._skip_reason(sources)
        if why is not None:
            return [dataclasses.replace(r, status="skipped", reason=why, round=None)
                    for r in self.expects(suite)]
        sources.check(context.out_dir)
        judged = sources.reference and (case.runtime == "onnxruntime" or case.recipe != FP32)
        spec = {"task": "measure", **identity(case.workload), "runner": case.runner,
                "artifact": _artifact(case, sources), "inputs": sources.inputs,
                "provider": case.provider, "batch_sizes": list(suite.batch_sizes),
                "budget": dataclasses.asdict(suite.budget), "threads": suite.threads,
                "optimization": "disable" if case.recipe == "ort-offline" else suite.optimization,
                "session": dict(suite.session),
                "round": self.round, "recipe": case.recipe,
                "flops_per_row": (_flops_per_row(_artifact(case, sources))
                                  if case.runtime == "onnxruntime" else None),
                "reference": ({**sources.reference, "rtol": suite.rtol, "atol": suite.atol,
                               "rule": (suite.max_quality_drop if case.recipe in BY_QUALITY
                                        else None)}
                              if judged and sources.reference else None)}
        name = slug("measure", case.workload, case.runner, case.provider, case.recipe,
                    str(self.round))
        child = run_child(spec, context.out_dir, timeout_s=suite.timeout_s,
                          threads=suite.threads, name=name)
        return fill_missing(self.expects(suite), child.records, _child_missing(child.failure))


@dataclass(frozen=True)
class Scenario(CaseStep):
    """One option under LoadGen in one scenario, served one way (`variant`: shared,
    per-worker, processes; +batching), in a child; its files come as a Measure step's do. A
    server search is made in rounds (`round`): a later round runs where the first did, after
    the round before it, and starts its search from that round's sustained peak. A round made
    in a plan of its own (advise's confirmations) is given that peak (`start_qps`: batch size,
    q/s) and needs no step before it."""

    case: Case
    variant: str
    settings: ScenarioSettings
    after: str | None = None
    sources: Sources | None = None
    round: int = 1
    start_qps: tuple[tuple[str, float], ...] | None = None

    per_node: ClassVar[bool] = True

    @property
    def label(self) -> str:
        return scenario_label(self.case, self.variant, self.settings, self.round)

    @property
    def what(self) -> str:
        rounds = self.settings.round_count
        return (f"{self.case.workload}: {self.case.runner} {self.variant} on "
                f"{self.case.provider}, LoadGen {self.settings.scenario}"
                + (f", round {self.round} of {rounds}" if rounds > 1 else ""))

    @property
    def previous(self) -> str | None:
        """The same option's round before this one, in this plan."""
        if self.round == 1 or self.start_qps is not None:
            return None
        return scenario_label(self.case, self.variant, self.settings, self.round - 1)

    @property
    def needs(self) -> tuple[str, ...]:  # its first round's too: where it runs is read off it
        return tuple(dict.fromkeys(n for n in (self.after, self.previous, self.pin) if n))

    @property
    def pin(self) -> str | None:
        return scenario_label(self.case, self.variant, self.settings, 1) if self.previous \
            else None

    def expects(self, suite: Suite) -> list[Record]:
        case = self.case
        return [Record(**identity(case.workload), phase="scenario", runtime=case.runtime,
                       provider=case.provider, variant=self.variant, batch_size=b,
                       round=self.round, info={"scenario": self.settings.scenario})
                for b in batches_of(self.settings, self.variant)]

    def execute(self, context: Context) -> list[Record]:
        suite, case = context.suite, self.case
        before = context.done.get(self.previous or "", [])
        if self.previous and not any(r.ok for r in before):
            return []  # the option could not be served at all: not tried again
        sources = Sources.from_records(context.done.get(self.after or "", []), self.sources)
        artifact = _artifact(case, sources)
        if artifact is None or sources.inputs is None:
            return [dataclasses.replace(r, status="skipped", reason=_no_artifact(case),
                                        batch_size=None) for r in self.expects(suite)[:1]]
        sources.check(context.out_dir)
        spec = scenario_spec(case, self.variant, self.settings, self.round, artifact, sources,
                             context, dict(self.start_qps or ()) or last_peaks(before))
        name = Path(spec["logs"]).name
        child = run_child({"task": "scenario", **spec}, context.out_dir,
                          timeout_s=suite.timeout_s, threads=spec["workers"] * spec["threads"],
                          name=f"loadgen-{name}")
        return fill_missing(self.expects(suite), child.records,
                            child.failure or "the child ended without serving it (see its log)")


def scenario_spec(case: Case, variant: str, settings: ScenarioSettings, round_: int,
                  artifact: str, sources: Sources, context: Context,
                  start: dict[str, float]) -> dict[str, Any]:
    """A scenario child's spec (`toolkit.steps.scenario.ScenarioSpec`) for one option."""
    suite = context.suite
    name = slug(case.workload, case.runner, case.provider, variant, settings.scenario,
                f"r{round_}" if round_ > 1 else "")
    # the pool is laid over the physical cores of the machine that serves (a node's own)
    workers, threads = settings.layout(case.provider, default_threads())
    return {**identity(case.workload), "runner": case.runner, "artifact": artifact,
            "inputs": sources.inputs, "provider": case.provider, "variant": variant,
            "settings": settings.to_dict(), "logs": str(context.out_dir / "loadgen" / name),
            "workers": workers, "threads": threads, "optimization": suite.optimization,
            "session": dict(suite.session), "round": round_, "start_qps": start,
            "budget_s": max(suite.timeout_s * 0.9 - 15.0, suite.timeout_s / 2)}


def last_peaks(before: Sequence[Record]) -> dict[str, float]:
    """Each batch size's sustained peak in an option's round before (str(batch) -> q/s): where
    its next round's search starts."""
    return {str(r.batch_size): r.info["peak_qps"] for r in before
            if r.ok and r.info.get("peak_kind") == "sustained" and r.info.get("peak_qps")}


# Several options' pools are made at once in a lockstep round: where their files, copied into
# each session or process (and a runtime's working memory, taken as as much again), would
# take more than this share of the memory available, the options are searched one after another
LOCKSTEP_MEMORY_SHARE = 0.25
UNMADE = "unmade"  # info key: a record filled in for an option its lockstep child never served
# what a worker process holds before its model: its runtime's imports (torch's the largest),
# taken as this much
WORKER_PROCESS_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Lockstep(StepDefaults):
    """One round of several options' server searches (one workload on one provider), side by
    side in one child: every search's LoadGen runs take turns (`toolkit.lockstep`), so a spell
    of the machine meets every option at the same step of its search. A later round runs where
    the first did, after the round before it, and each search starts from its option's peak in
    that round. Where the options' pools would not fit in memory at once, each is searched in
    a child of its own, one after another, as a Scenario step does."""

    options: tuple[tuple[Case, str], ...]  # (case, variant)
    settings: ScenarioSettings
    after: str | None = None
    sources: Sources | None = None
    round: int = 1

    per_node: ClassVar[bool] = True

    @property
    def label(self) -> str:
        return lockstep_label(self.options[0][0], self.settings, self.round)

    @property
    def what(self) -> str:
        case = self.options[0][0]
        return (f"{case.workload}: {len(self.options)} options on {case.provider} searched "
                f"side by side, LoadGen {self.settings.scenario}, round {self.round} of "
                f"{self.settings.round_count}")

    @property
    def gpu(self) -> bool:
        return self.options[0][0].provider != "cpu"

    def reads(self) -> tuple[str, ...]:
        return self.sources.files() if self.sources else ()

    @property
    def previous(self) -> str | None:
        if self.round == 1:
            return None
        return lockstep_label(self.options[0][0], self.settings, self.round - 1)

    @property
    def needs(self) -> tuple[str, ...]:  # its first round's too: where it runs is read off it
        return tuple(dict.fromkeys(n for n in (self.after, self.previous, self.pin) if n))

    @property
    def pin(self) -> str | None:
        return lockstep_label(self.options[0][0], self.settings, 1) if self.previous else None

    def _option(self, case: Case, variant: str) -> Scenario:
        return Scenario(case, variant, self.settings, self.after, self.sources, self.round)

    def expects(self, suite: Suite) -> list[Record]:
        return [r for case, variant in self.options
                for r in self._option(case, variant).expects(suite)]

    def execute(self, context: Context) -> list[Record]:
        suite = context.suite
        before = context.done.get(self.previous or "", [])
        sources = Sources.from_records(context.done.get(self.after or "", []), self.sources)
        records: list[Record] = []
        specs: list[dict[str, Any]] = []
        expected: list[Record] = []
        for case, variant in self.options:
            step = self._option(case, variant)
            mine = [r for r in before if (r.runtime, r.provider, r.variant) == (
                case.runtime, case.provider, variant)]
            if self.previous and not any(r.ok or r.info.get(UNMADE) for r in mine):
                continue  # the option could not be served at all: not tried again
            artifact = _artifact(case, sources)
            if artifact is None or sources.inputs is None:
                records += [dataclasses.replace(r, status="skipped", reason=_no_artifact(case),
                                                batch_size=None)
                            for r in step.expects(suite)[:1]]
                continue
            specs.append(scenario_spec(case, variant, self.settings, self.round, artifact,
                                       sources, context, last_peaks(mine)))
            expected += step.expects(suite)
        if not specs:
            return records
        sources.check(context.out_dir)
        name = slug(self.options[0][0].workload, self.options[0][0].provider,
                    self.settings.scenario, "lockstep", f"r{self.round}")
        return records + serve_side_by_side(specs, [suite.timeout_s] * len(specs), expected,
                                            context.out_dir, name)


def serve_side_by_side(specs: Sequence[dict[str, Any]], timeouts: Sequence[float],
                       expected: Sequence[Record], folder: Path, name: str) -> list[Record]:
    """Scenario children's specs (`scenario_spec`) searched side by side in one lockstep
    child (`toolkit.steps.scenario.scenario_lockstep`), or, where their pools would not fit in
    memory at once or there is one, each in a child of its own, one after another (each
    record that holds says why). `timeouts`: each option's seconds; `expected`: the records
    the options must leave (`fill_missing`)."""
    threads = max(spec["workers"] * spec["threads"] for spec in specs)
    too_big = _too_big_together(specs, folder)
    if too_big or len(specs) == 1:
        made: list[Record] = []
        for spec, timeout in zip(specs, timeouts, strict=True):
            child = run_child({"task": "scenario", **spec}, folder, timeout_s=timeout,
                              threads=spec["workers"] * spec["threads"],
                              name=f"loadgen-{Path(spec['logs']).name}")
            made += [dataclasses.replace(r, warnings=(*r.warnings, too_big))
                     if too_big and r.ok else r for r in child.records]
        return fill_missing(expected, made, "the child ended without serving it (see its log)")
    child = run_child({"task": "lockstep", "options": list(specs),
                       "budget_s": sum(spec["budget_s"] for spec in specs)},
                      folder, timeout_s=sum(timeouts), threads=threads, name=f"loadgen-{name}")
    filled = fill_missing(expected, child.records, child.failure or
                          "the child ended without serving it (see its log)")
    # those the child did not make may have been cut off by another option's hang or death:
    # the next round tries them again (UNMADE)
    made = [*filled[:len(child.records)],
            *(dataclasses.replace(r, info={**r.info, UNMADE: True})
              for r in filled[len(child.records):])]
    # in the options' order (the child wrote each as its search ended), so the reports list
    # them as planned
    planned = {_option_key(r): n for n, r in reversed(list(enumerate(expected)))}
    return sorted(made, key=lambda r: planned.get(_option_key(r), len(planned)))


def _option_key(record: Record) -> tuple[Any, ...]:
    return record.runtime, record.variant, record.batch_size, record.info.get("tag")



@dataclass(frozen=True)
class Confirmation:
    """One configuration in a round of `advise`'s confirmations: an option served one way,
    with the suite that sets its threads, ONNX Runtime session options, graph optimisation
    and timeout. `tag` names it: its records say it in `info["tag"]`, and its LoadGen logs go
    to `loadgen/<tag>`."""

    tag: str
    case: Case
    variant: str
    settings: ScenarioSettings
    sources: Sources
    suite: Suite
    start_qps: tuple[tuple[str, float], ...] = ()  # where its search starts, by batch size

    def scenario(self, round_: int) -> Scenario:
        return Scenario(self.case, self.variant, self.settings, None, self.sources, round_,
                        self.start_qps)

    def expects(self, round_: int) -> list[Record]:
        return [dataclasses.replace(r, info={**r.info, "tag": self.tag})
                for r in self.scenario(round_).expects(self.suite)]


@dataclass(frozen=True)
class ConfirmRound(StepDefaults):
    """One round of `advise`'s confirmations: every configuration's server search side by side
    in one child, their LoadGen runs taking turns (as a Lockstep round of `loadgen`), so the
    pick, the defaults and the control meet the machine's spells at the same steps and their
    ratios in the round hold whatever the machine did."""

    confirmations: tuple[Confirmation, ...]
    round: int = 1

    @property
    def label(self) -> str:
        return f"advise confirmations round {self.round}"

    @property
    def what(self) -> str:
        return (f"{len(self.confirmations)} configurations under LoadGen side by side, "
                f"round {self.round}")

    def reads(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f for c in self.confirmations for f in c.sources.files()))

    def expects(self, suite: Suite) -> list[Record]:
        return [r for c in self.confirmations for r in c.expects(self.round)]

    def execute(self, context: Context) -> list[Record]:
        records: list[Record] = []
        specs: list[dict[str, Any]] = []
        timeouts: list[float] = []
        expected: list[Record] = []
        for confirmation in self.confirmations:
            artifact = _artifact(confirmation.case, confirmation.sources)
            if artifact is None or confirmation.sources.inputs is None:
                records += [dataclasses.replace(r, status="skipped", batch_size=None,
                                                reason=_no_artifact(confirmation.case))
                            for r in confirmation.expects(self.round)[:1]]
                continue
            confirmation.sources.check(context.out_dir)
            own = Context(confirmation.suite, context.out_dir, context.done)
            spec = scenario_spec(confirmation.case, confirmation.variant, confirmation.settings,
                                 self.round, artifact, confirmation.sources, own,
                                 dict(confirmation.start_qps))
            spec.update(tag=confirmation.tag,
                        logs=str(context.out_dir / "loadgen" / confirmation.tag))
            specs.append(spec)
            timeouts.append(confirmation.suite.timeout_s)
            expected += confirmation.expects(self.round)
        if not specs:
            return records
        return records + serve_side_by_side(specs, timeouts, expected, context.out_dir,
                                            f"confirm-r{self.round}")


def lockstep_label(case: Case, settings: ScenarioSettings, round_: int) -> str:
    """A Lockstep step's label: the workload's options on one provider in one round."""
    return (f"{case.workload} {case.provider} loadgen {settings.scenario} side by side "
            f"round {round_}")


def _too_big_together(specs: Sequence[dict[str, Any]], folder: Path) -> str | None:
    """Why the options' pools would not fit in memory at once: each file (with the files
    beside it: ONNX external data) counted once per session or process that loads it and as
    much again for the runtime's working memory, a pool per batch size, each worker process's
    imports; None where they fit or the memory available cannot be read."""
    available = available_memory_bytes()
    if available is None:
        return None
    needed = 0
    for spec in specs:
        path = Path(spec["artifact"])
        path = path if path.is_absolute() else folder / path
        try:
            size = path.stat().st_size if path.is_file() else sum(
                p.stat().st_size for p in path.rglob("*") if p.is_file())
            if path.is_file() and path.suffix == ".onnx":  # its external data, if any
                size += sum(p.stat().st_size for p in path.parent.glob(f"{path.stem}*.data"))
        except OSError:
            continue
        processes = spec["variant"].startswith("processes")
        copies = 1 if spec["variant"].startswith("shared") else spec["workers"]
        pools = len(batches_of(ScenarioSettings.from_dict(spec["settings"]), spec["variant"]))
        needed += pools * (2 * size * copies
                           + (WORKER_PROCESS_BYTES * spec["workers"] if processes else 0))
    if needed <= LOCKSTEP_MEMORY_SHARE * available:
        return None
    return (f"searched one option after another, not side by side: their pools would take "
            f"about {needed / 2**30:.1f} GiB at once, over a quarter of the "
            f"{available / 2**30:.1f} GiB available")


def scenario_label(case: Case, variant: str, settings: ScenarioSettings, round_: int) -> str:
    """A Scenario step's label; the first round's is the label of a search made once."""
    label = f"{case.label} {variant} loadgen {settings.scenario}"
    return label if round_ == 1 else f"{label} round {round_}"


@dataclass(frozen=True)
class OnNode:
    """A step pinned to one cluster node (`--placement each-node`): its label names the node,
    the steps it needs that are themselves made on every node are that node's, and what it
    writes (logs, LoadGen logs, a file made for the node's hardware) goes to the node's own
    folder of the run, `nodes/<node>/`, so two nodes' files never meet."""

    step: Any
    node: str  # the node's label
    node_id: str = ""
    gpus: float = 0.0
    local: frozenset[str] = frozenset()  # the labels of the needed steps made on every node

    per_node: ClassVar[bool] = True

    def _here(self, label: str) -> str:
        return f"{label} @{self.node}" if label in self.local else label

    @property
    def label(self) -> str:
        return f"{self.step.label} @{self.node}"

    @property
    def what(self) -> str:
        return f"{self.step.what} @{self.node}"

    @property
    def needs(self) -> tuple[str, ...]:
        return tuple(self._here(n) for n in self.step.needs)

    @property
    def pin(self) -> str | None:
        return None

    @property
    def gpu(self) -> bool:
        return bool(self.step.gpu) and self.gpus > 0

    def reads(self) -> tuple[str, ...]:
        return self.step.reads()

    def expects(self, suite: Suite) -> list[Record]:
        return self.step.expects(suite)

    def execute(self, context: Context) -> list[Record]:
        done = {n: context.done.get(self._here(n), []) for n in self.step.needs}
        return self.step.execute(dataclasses.replace(
            context, out_dir=context.out_dir / "nodes" / self.node, done=done))


def on_every_node(steps: Sequence[Step], nodes: Sequence[tuple[str, str, float]]) -> list[Step]:
    """Each step made on every node (measurements, files made for a node's hardware) once per
    node `(label, node_id, gpus)`."""
    local = frozenset(s.label for s in steps if s.per_node)
    out: list[Step] = []
    for step in steps:
        out += ([OnNode(step, name, node_id, gpus, local) for name, node_id, gpus in nodes]
                if step.per_node else [step])
    return out
