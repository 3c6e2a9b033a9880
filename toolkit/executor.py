"""The one executor: runs any plan's steps on a backend, here or on a Ray cluster.

It starts each step once the steps it `needs` have records (in plan order; a backend runs one at
a time or as many as it can), reports progress, stamps each record with its step, rewrites
results.json (and samples.npz) after every step, keeps what finished when Ctrl-C arrives (the
run is marked interrupted), takes steps a plan adds while it runs (`Plan.grow`), and resumes a
run by making its plan again from results.json (`toolkit.plans.replan`) and running only the
steps that have no records. What a step's task left unsaid becomes `failed` records by the
step's own rule (`fill_missing`). The run's exit code is decided here too (`RunOutcome`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit import busy, environment
from toolkit.backends import Backend, Finished
from toolkit.backends.local import LocalBackend
from toolkit.errors import BadInputError, StorageError
from toolkit.plans import Plan, replan
from toolkit.plans.steps import Context, Skipped, Step, fill_missing
from toolkit.results import LOST, Record, ResultsFile, now, prepare_out_dir

log = logging.getLogger(__name__)
Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what runs now)


@dataclass(frozen=True)
class RunOutcome:
    results_path: Path
    records: list[Record]
    interrupted: bool
    command: str  # "run", "bench" or "loadgen": the command that resumes it

    @property
    def measured(self) -> bool:
        """Whether any option was timed to the end, or served at a valid rate."""
        return any(r.timed or (r.phase == "scenario" and r.ok and r.info.get("valid"))
                   for r in self.records)

    @property
    def failures(self) -> list[str]:
        """One line per failed record: its step and why."""
        return [f"{r.step or r.workload_key} ({r.phase}"
                + (f", batch {r.batch_size}" if r.batch_size is not None else "")
                + f"): {r.reason.splitlines()[0] if r.reason else 'failed'}"
                for r in self.records if r.status == "failed"]

    @property
    def exit_code(self) -> int:
        """130 interrupted; 1 when nothing was measured (every timed case failed or was
        skipped, or no option was served at a valid rate); 0 otherwise, failures or not."""
        if self.interrupted:
            return 130
        return 0 if self.measured else 1

    @property
    def why_nothing(self) -> str:
        """Why a run that measured nothing measured nothing (its first few reasons)."""
        reasons = [r.reason.splitlines()[0] for r in self.records
                   if r.phase in ("infer", "scenario") and r.reason]
        shown = "; ".join(dict.fromkeys(reasons)) or "no case was planned"
        return f"nothing was measured: every timed case failed or was skipped ({shown})"


def start(plan: Plan, out_dir: Path, *, argv: Sequence[str] = (),
          progress: Progress | None = None, backend: Backend | None = None,
          where: Mapping[str, Any] | None = None) -> RunOutcome:
    """A new run of `plan` into `out_dir`, on `backend` (here by default); `where` is what the
    run section keeps of the backend (a cluster's address and placement) for --resume."""
    backend = backend or LocalBackend()
    machine = busy.state(gpu=any(p != "cpu" for p in plan.suite.providers))
    said = busy.busy_text(machine)
    if said:
        log.warning("the machine is busy (%s): figures will vary more between rounds; quiet "
                    "it, or raise --rounds", said)
    here = environment.describe(peak_threads=plan.suite.threads)
    backend.open(plan.suite.threads, here)  # a cluster that cannot be used: no results file
    out_dir = prepare_out_dir(out_dir)
    results = ResultsFile(out_dir / "results.json", {
        **plan.run, **({"cluster": dict(where)} if where else {}), "argv": list(argv),
        "started": now(), "finished": None, "interrupted": False, "environment": here,
        "machine_state": machine})
    results.save()
    return execute(plan, results, progress, backend)


def reopen(out_dir: Path, command: str, *, trust_pickle: bool = False
           ) -> tuple[Plan, ResultsFile]:
    """The plan of the run in `out_dir` that `command` (run, bench, loadgen) started, made
    again, and its results file, ready to finish. A pickled model is loaded again only with
    `trust_pickle` given now: results.json is data, not a grant of trust."""
    path = out_dir / "results.json"
    if not path.is_file():
        raise BadInputError(f"--resume {out_dir}: no results.json there; give a run's folder")
    path = prepare_out_dir(out_dir) / "results.json"
    results = ResultsFile.reopen(path)
    made_by = results.run.get("command", "run")
    if made_by != command:
        raise BadInputError(f"--resume {out_dir}: that run was made by `deploybench {made_by}`; "
                            f"resume it with deploybench {made_by} --resume {out_dir}")
    plan = replan(results.run, path.parent, path, trust_pickle)
    results.update_run(interrupted=False, finished=None,
                       resumed=[*results.run.get("resumed", []), now()])
    return plan, results


def execute(plan: Plan, results: ResultsFile, progress: Progress | None = None,
            backend: Backend | None = None) -> RunOutcome:
    """Run the steps of `plan` that have no records in `results` yet."""
    report = progress or (lambda done, total, what: None)
    backend = backend or LocalBackend()
    command = str(results.run.get("command", "run"))
    running: dict[str, Step] = {}
    try:
        steps = backend.prepare(plan.steps, results)
        _again_if_lost(results, {s.label for s in steps})
        done: dict[str, list[Record]] = {}
        for record in results.records:
            done.setdefault(record.step, []).append(record)
        waiting = _Queue(steps, done)
        waiting.grow(plan, done)
        while waiting or running:
            chosen = waiting.ready(done, running, backend.slots)
            for step in chosen:
                if isinstance(step, Skipped):  # nothing to run: its records are known
                    _keep(results, done, step, step.execute(Context(plan.suite, Path("."))))
                    waiting.grow(plan, done)
                    continue
                context = Context(plan.suite, results.path.parent,
                                  {label: done[label] for label in step.needs})
                report(waiting.finished(done), waiting.total, step.what)
                backend.submit(step, context)
                running[step.label] = step
            if not running:
                if waiting and not chosen:  # a planner's bug: inputs no step makes
                    raise RuntimeError("steps wait for inputs no step makes: "
                                       + ", ".join(s.label for s in list(waiting)[:3]))
                continue
            report(waiting.finished(done), waiting.total,
                   next(iter(running.values())).what)
            for finished in backend.wait():
                running.pop(finished.step.label, None)
                _keep(results, done, finished.step, _records(finished, plan))
                waiting.grow(plan, done)
        report(waiting.total, waiting.total, "done")
    except KeyboardInterrupt:
        backend.cancel()
        results.update_run(finished=now(), interrupted=True)
        return RunOutcome(results.path, results.records, True, command)
    except BaseException as exc:  # what finished stays, marked as not finished cleanly
        backend.cancel()
        with contextlib.suppress(OSError, StorageError):  # a full disk: the last file stands
            results.update_run(finished=now(), interrupted=True,
                               error=f"{type(exc).__name__}: {exc}")
        raise
    results.update_run(finished=now())
    try:
        backend.finish()
    except Exception as exc:  # the results are whole: what is left elsewhere is only a copy
        log.warning("could not clean up after the run: %s", exc)
    return RunOutcome(results.path, results.records, False, command)


def _again_if_lost(results: ResultsFile, planned: set[str]) -> None:
    """The records of planned steps whose task died with its machine (`LOST`), not of the
    case, taken out so the steps run again (a node not back keeps its failed records)."""
    lost = {r.step for r in results.records if r.info.get(LOST) and r.step in planned}
    if lost:
        dropped = results.drop_steps(lost)
        log.info("%d step(s) lost with a node or worker run again (%d records replaced)",
                 len(lost), dropped)


def _records(finished: Finished, plan: Plan) -> list[Record]:
    if finished.failure is None:
        return finished.records
    return fill_missing(finished.step.expects(plan.suite), finished.records, finished.failure)


def _keep(results: ResultsFile, done: dict[str, list[Record]], step: Step,
          records: list[Record]) -> None:
    made = [dataclasses.replace(r, step=step.label) for r in records]
    results.append(made)
    done[step.label] = made


class _Queue:
    """The steps not started yet, in plan order, and how many the run has in all."""

    def __init__(self, steps: Sequence[Step], done: Mapping[str, list[Record]]) -> None:
        self._known = {s.label for s in steps} | set(done)
        self._steps = [s for s in steps if s.label not in done]
        self.total = len(self._known)

    def __bool__(self) -> bool:
        return bool(self._steps)

    def __iter__(self) -> Any:
        return iter(self._steps)

    def finished(self, done: Mapping[str, list[Record]]) -> int:
        return sum(1 for label in done if label in self._known)

    def grow(self, plan: Plan, done: Mapping[str, list[Record]]) -> None:
        """The steps the plan adds now, from the records so far (none for a fixed plan)."""
        if plan.grow is None:
            return
        for step in plan.grow(done):
            if step.label not in self._known:
                self._known.add(step.label)
                self._steps.append(step)
                self.total += 1

    def ready(self, done: Mapping[str, list[Record]], running: Mapping[str, Step],
              slots: int | None) -> list[Step]:
        """The next steps whose inputs have records, as many as there are free slots."""
        free = None if slots is None else slots - len(running)
        chosen: list[Step] = []
        for step in list(self._steps):
            if free is not None and len(chosen) >= free:
                break
            if all(label in done for label in step.needs):
                self._steps.remove(step)
                chosen.append(step)
        return chosen
