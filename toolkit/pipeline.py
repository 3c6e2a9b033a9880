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
from toolkit.results import Record, ResultsFile
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
    out_dir = prepare_out_dir(out_dir)
    report = progress or (lambda done, total, label: None)
    now = _now()
    results = ResultsFile(
        out_dir / "results.json",
        {"suite": dataclasses.asdict(suite), "argv": list(argv), "started": now,
         "finished": None, "interrupted": False,
         "environment": environment.describe(with_providers=False)},
    )
    results.save()
    total = sum(1 + len(cases(suite, key)) for key in suite.workloads)
    done = 0
    try:
        for key in suite.workloads:
            workload = workloads.get(key)
            missing = environment.missing_framework(workload.framework)
            if missing:
                results.append(_skipped_workload(suite, key, missing))
                done += 1 + len(cases(suite, key))
                report(done, total, f"{key}: skipped ({missing})")
                continue
            report(done, total, f"{key}: training and exporting")
            built = _build(suite, key, out_dir)
            results.append(built)
            done += 1
            for case in cases(suite, key):
                report(done, total, f"{key}: {case.runner} on {case.provider}")
                results.append(_measure(suite, case, built, out_dir))
                done += 1
        report(done, total, "done")
    except KeyboardInterrupt:
        results.update_run(finished=_now(), interrupted=True)
        return RunOutcome(results.path, results.records, interrupted=True)
    results.update_run(finished=_now())
    return RunOutcome(results.path, results.records, interrupted=False)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _identity(key: str) -> dict[str, str]:
    framework, name = key.split("/", 1)
    return {"workload": name, "framework": framework}


def _skipped_workload(suite: Suite, key: str, reason: str) -> list[Record]:
    ident = _identity(key)
    skipped = [Record(**ident, phase=phase, status="skipped", reason=reason)
               for phase in ("train", "export", "parity")]
    for case in cases(suite, key):
        runtime = "onnxruntime" if case.runner == "onnxruntime" else "native"
        skipped += [Record(**ident, phase="infer", runtime=runtime, provider=case.provider,
                           batch_size=b, status="skipped", reason=reason)
                    for b in suite.batch_sizes]
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


def _find(records: list[Record], phase: str) -> Record | None:
    return next((r for r in records if r.phase == phase and r.ok), None)


def _measure(suite: Suite, case: Case, built: list[Record], out_dir: Path) -> list[Record]:
    ident = _identity(case.workload)
    runtime = "onnxruntime" if case.runner == "onnxruntime" else "native"
    train, export, parity = (_find(built, p) for p in ("train", "export", "parity"))
    why = ("no native model: training failed" if train is None else
           "no ONNX file: export failed" if runtime == "onnxruntime" and export is None else None)
    if why or train is None:
        return [Record(**ident, phase="infer", runtime=runtime, provider=case.provider,
                       batch_size=b, status="skipped", reason=why or "") for b in suite.batch_sizes]
    onnx_file = export.info["onnx"] if export else None
    artifact = onnx_file if runtime == "onnxruntime" else train.info["artifact"]
    spec = {"task": "measure", **ident, "runner": case.runner, "artifact": artifact,
            "inputs": train.info["inputs"], "provider": case.provider,
            "batch_sizes": list(suite.batch_sizes), "budget": dataclasses.asdict(suite.budget),
            "threads": suite.threads, "optimization": suite.optimization}
    name = f"measure-{case.workload.replace('/', '-')}-{case.runner}-{case.provider}"
    child = run_child(spec, out_dir, timeout_s=suite.timeout_s, threads=suite.threads, name=name)
    records = child.records
    if child.failure:
        measured = {(r.variant, r.batch_size) for r in records if r.phase == "infer"}
        records += [Record(**ident, phase="infer", runtime=runtime, provider=case.provider,
                           batch_size=b, status="failed", reason=child.failure)
                    for b in suite.batch_sizes if not any(m[1] == b for m in measured)]
    if runtime == "onnxruntime" and parity is not None and parity.parity is not None:
        # Every ONNX timing carries the parity verdict of the file it ran.
        records = [dataclasses.replace(r, parity=parity.parity) for r in records]
    return records
