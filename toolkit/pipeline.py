"""One run: plan the cases, build each workload in a child, measure each case in a fresh child.

Records go to results.json as each child finishes; a child that crashes or hangs becomes a
`failed` record and the run goes on. Frameworks that are not installed become `skipped` records.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from toolkit import environment, workloads
from toolkit.errors import BadInputError
from toolkit.isolate import run_child
from toolkit.results import Parity, Record, ResultsFile
from toolkit.suite import Case, Suite, cases

Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what runs now)


@dataclass(frozen=True)
class RunOutcome:
    results_path: Path
    records: list[Record]
    interrupted: bool


def default_out_dir() -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("results") / stamp


def prepare_out_dir(out_dir: Path) -> Path:
    """Create the output folder, or say in one line why it cannot be used."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BadInputError(
            f"--out {out_dir}: cannot write there ({exc.strerror}); choose another folder"
        ) from None
    return out_dir.resolve()


def run_suite(
    suite: Suite, out_dir: Path, *, argv: Sequence[str] = (), progress: Progress | None = None
) -> RunOutcome:
    """A new run of `suite` into `out_dir`."""
    out_dir = prepare_out_dir(out_dir)
    results = ResultsFile(
        out_dir / "results.json",
        {"suite": dataclasses.asdict(suite), "argv": list(argv), "started": _now(),
         "finished": None, "interrupted": False,
         "environment": environment.describe(with_peak=True)},
    )
    results.save()
    return _execute(suite, results, out_dir, progress)


def resume_run(out_dir: Path, *, progress: Progress | None = None) -> RunOutcome:
    """Run the steps of an earlier run in `out_dir` that have no records yet."""
    path = out_dir / "results.json"
    if not path.is_file():
        raise BadInputError(f"--resume {out_dir}: no results.json there; give a run's folder")
    results = ResultsFile.reopen(path)
    try:
        suite = Suite.from_dict(results.run["suite"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInputError(f"{path}: no usable suite in its run section ({exc})") from None
    out_dir = prepare_out_dir(out_dir)
    results.update_run(interrupted=False, finished=None,
                       resumed=[*results.run.get("resumed", []), _now()])
    return _execute(suite, results, out_dir, progress)


def _execute(
    suite: Suite, results: ResultsFile, out_dir: Path, progress: Progress | None
) -> RunOutcome:
    report = progress or (lambda done, total, label: None)
    done_steps = {r.info.get("step") for r in results.records}
    total = sum(1 + len(cases(suite, key)) for key in suite.workloads)
    done = 0
    try:
        for key in suite.workloads:
            build_step = f"{key} build"
            missing = environment.missing_framework(workloads.get(key).framework)
            if missing and build_step not in done_steps:
                results.append(_skipped_workload(suite, key, missing))
                done += 1 + len(cases(suite, key))
                report(done, total, f"{key}: skipped ({missing})")
                continue
            if build_step in done_steps:
                built = [r for r in results.records if r.info.get("step") == build_step]
            else:
                report(done, total, f"{key}: training and exporting")
                built = _stamp(_build(suite, key, out_dir), build_step)
                results.append(built)
            done += 1
            for case in cases(suite, key):
                if case.label not in done_steps:
                    report(done, total, f"{key}: {case.runner} on {case.provider}")
                    measured = _measure(suite, case, _identity(key), Sources.from_records(built),
                                        out_dir)
                    results.append(_stamp(measured, case.label))
                done += 1
        report(done, total, "done")
    except KeyboardInterrupt:
        results.update_run(finished=_now(), interrupted=True)
        return RunOutcome(results.path, results.records, interrupted=True)
    results.update_run(finished=_now())
    return RunOutcome(results.path, results.records, interrupted=False)


def _stamp(records: list[Record], step: str) -> list[Record]:
    """Name the step that made each record, so a resumed run knows what is done."""
    return [dataclasses.replace(r, info={**r.info, "step": step}) for r in records]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _identity(key: str) -> dict[str, str]:
    framework, name = key.split("/", 1)
    return {"workload": name, "framework": framework}


def _skipped_workload(suite: Suite, key: str, reason: str) -> list[Record]:
    ident = _identity(key)
    skipped = _stamp([Record(**ident, phase=phase, status="skipped", reason=reason)
                      for phase in ("train", "export", "parity")], f"{key} build")
    for case in cases(suite, key):
        runtime = "onnxruntime" if case.runner == "onnxruntime" else "native"
        skipped += _stamp([Record(**ident, phase="infer", runtime=runtime, provider=case.provider,
                                  batch_size=b, status="skipped", reason=reason)
                           for b in suite.batch_sizes], case.label)
    return skipped


def _build(suite: Suite, key: str, out_dir: Path) -> list[Record]:
    spec = {"task": "build", "workload": key, "out_dir": str(out_dir / "artifacts"),
            "opset": suite.opset, "rtol": suite.rtol, "atol": suite.atol,
            "threads": suite.threads}
    child = run_child(spec, out_dir, timeout_s=suite.timeout_s, threads=suite.threads,
                      name=f"build-{key.replace('/', '-')}")
    records = list(child.records)
    if child.failure:
        seen = {r.phase for r in records}
        records += [Record(**_identity(key), phase=phase, status="failed", reason=child.failure)
                    for phase in ("train", "export", "parity") if phase not in seen]
    return records


@dataclass(frozen=True)
class Sources:
    """What a build step left for the measure steps: files, inputs and the parity verdict."""

    native: str | None = None
    onnx: str | None = None
    inputs: str | None = None
    parity: Parity | None = None

    @classmethod
    def from_records(cls, records: list[Record]) -> Sources:
        found: dict[str, str] = {}
        for record in records:
            found.update({k: record.info[k] for k in ("artifact", "onnx", "inputs")
                          if k in record.info and record.status != "skipped"})
        parity = next((r.parity for r in records if r.phase == "parity" and r.parity), None)
        return cls(found.get("artifact"), found.get("onnx"), found.get("inputs"), parity)


def _measure(
    suite: Suite, case: Case, ident: dict[str, str], sources: Sources, out_dir: Path
) -> list[Record]:
    runtime = "onnxruntime" if case.runner == "onnxruntime" else "native"
    artifact = sources.onnx if runtime == "onnxruntime" else sources.native
    if artifact is None or sources.inputs is None:
        why = ("no ONNX file: export failed" if runtime == "onnxruntime" else
               "no native model: training failed")
        return [Record(**ident, phase="infer", runtime=runtime, provider=case.provider,
                       batch_size=b, status="skipped", reason=why) for b in suite.batch_sizes]
    spec = {"task": "measure", **ident, "runner": case.runner, "artifact": artifact,
            "inputs": sources.inputs, "provider": case.provider,
            "batch_sizes": list(suite.batch_sizes), "budget": dataclasses.asdict(suite.budget),
            "threads": suite.threads, "optimization": suite.optimization}
    name = f"measure-{case.workload.replace('/', '-')}-{case.runner}-{case.provider}"
    child = run_child(spec, out_dir, timeout_s=suite.timeout_s, threads=suite.threads, name=name)
    records = child.records
    if child.failure:
        measured = {r.batch_size for r in records if r.phase == "infer"}
        records += [Record(**ident, phase="infer", runtime=runtime, provider=case.provider,
                           batch_size=b, status="failed", reason=child.failure)
                    for b in suite.batch_sizes if b not in measured]
    if runtime == "onnxruntime" and sources.parity is not None:
        # Every ONNX timing carries the parity verdict of the file it ran.
        records = [dataclasses.replace(r, parity=sources.parity) for r in records]
    return records
