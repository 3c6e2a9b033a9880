"""The one executor: runs any plan's steps, each in its own child where it has work to do.

It reports progress, stamps each record with its step, rewrites results.json (and samples.npz)
after every step, keeps what finished when Ctrl-C arrives (the run is marked interrupted), and
resumes a run by making its plan again from results.json and running only the steps that have
no records. `run` and `bench` only make plans; reports and the history come after, in one
place too (`toolkit.report.write_reports`, `toolkit.history.remember`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit import environment
from toolkit.errors import BadInputError
from toolkit.plan import Context, Plan, plan_suite
from toolkit.results import Record, ResultsFile
from toolkit.suite import Suite

Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what runs now)


@dataclass(frozen=True)
class RunOutcome:
    results_path: Path
    records: list[Record]
    interrupted: bool
    command: str  # "run", "bench" or "loadgen": the command that resumes it


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


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def start(plan: Plan, out_dir: Path, *, argv: Sequence[str] = (),
          progress: Progress | None = None, cluster: ClusterRun | None = None) -> RunOutcome:
    """A new run of `plan` into `out_dir` (on a Ray cluster where `cluster` says)."""
    out_dir = prepare_out_dir(out_dir)
    results = ResultsFile(out_dir / "results.json", {
        **plan.run, "argv": list(argv), "started": now(), "finished": None,
        "interrupted": False,
        "environment": environment.describe(peak_threads=plan.suite.threads)})
    results.save()
    return execute(plan, results, progress, cluster)


def resume(out_dir: Path, command: str, *, trust_pickle: bool = False,
           progress: Progress | None = None) -> RunOutcome:
    """Finish the run in `out_dir` that `command` (run, bench, loadgen) started: its plan, made
    again, less the steps that have records. A pickled model is loaded again only with
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
    stored = results.run.get("cluster")
    cluster = (ClusterRun(str(stored.get("address")), str(stored.get("placement", "spread")))
               if isinstance(stored, dict) else None)
    return execute(plan, results, progress, cluster)


def replan(run: Mapping[str, Any], out_dir: Path, source: Path,
           trust_pickle: bool = False) -> Plan:
    """The plan a results.json's run section was made from."""
    try:
        suite = Suite.from_dict(run["suite"])
    except (KeyError, TypeError, ValueError, AttributeError, BadInputError) as exc:
        raise BadInputError(f"{source}: the suite stored in its run section is not usable "
                            f"({exc})") from None
    command = run.get("command", "run")  # results of schema 1 came from `run` only
    if command == "run":
        return plan_suite(suite)
    if command not in ("bench", "loadgen"):
        raise BadInputError(f"{source}: made by a command deploybench cannot resume "
                            f"({command!r})")
    from toolkit import bench

    request = None
    if command == "bench" or run.get("request") is not None:
        try:
            request = bench.ModelRequest.from_dict(run.get("request") or {})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadInputError(f"{source}: the model request stored in its run section is "
                                f"not usable ({exc})") from None
        request = dataclasses.replace(request, trust_pickle=trust_pickle)
    try:
        if command == "loadgen":
            return bench.plan_loadgen(str(run.get("target", "")), suite, out_dir,
                                      request=request, keep_inputs=True)
        assert request is not None
        return bench.plan_model(request, suite, out_dir, keep_inputs=True)
    except BadInputError as exc:
        raise BadInputError(f"--resume {out_dir}: the model it benchmarks cannot be used now: "
                            f"{exc}") from None


@dataclass(frozen=True)
class ClusterRun:
    """Where a run's steps go when it runs on a Ray cluster (`toolkit.cluster`)."""

    address: str
    placement: str = "spread"  # or each-node: every measuring step on every node


def execute(plan: Plan, results: ResultsFile, progress: Progress | None = None,
            cluster: ClusterRun | None = None) -> RunOutcome:
    """Run the steps of `plan` that have no records in `results` yet."""
    report = progress or (lambda done, total, label: None)
    done: dict[str, list[Record]] = {}
    for record in results.records:
        done.setdefault(record.step, []).append(record)
    context = Context(plan.suite, results.path.parent, done)
    total = len(plan.steps)
    command = str(results.run.get("command", "run"))
    if cluster is not None:
        from toolkit.cluster_executor import execute_on_cluster

        return execute_on_cluster(plan, results, context, report, cluster, command)
    try:
        for index, step in enumerate(plan.steps):
            if step.label in done:
                continue
            report(index, total, step.what)
            made = [dataclasses.replace(r, step=step.label) for r in step.execute(context)]
            results.append(made)
            done[step.label] = made
        report(total, total, "done")
    except KeyboardInterrupt:
        results.update_run(finished=now(), interrupted=True)
        return RunOutcome(results.path, results.records, True, command)
    except BaseException as exc:  # what finished stays, marked as not finished cleanly
        results.update_run(finished=now(), interrupted=True, error=f"{type(exc).__name__}: {exc}")
        raise
    results.update_run(finished=now())
    return RunOutcome(results.path, results.records, False, command)
