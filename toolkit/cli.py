"""The deploybench command line: parse, call one library function, render. No logic here."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from exporters.session import parse_session
from toolkit import environment, history, workloads
from toolkit.errors import BadInputError, DeploybenchError
from toolkit.report import console, terminal

app = typer.Typer(
    help="How should I serve this model? Train natively, export to ONNX, check parity, and time "
    "native inference against ONNX Runtime.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output (CI logs, files) gets room for the tables instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True)


def _csv(value: str | None, flag: str) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise BadInputError(f"{flag} is empty; give a comma-separated list")
    return items


def _ints(value: str | None, flag: str) -> tuple[int, ...] | None:
    items = _csv(value, flag)
    if items is None:
        return None
    try:
        return tuple(int(v) for v in items)
    except ValueError:
        raise BadInputError(
            f"{flag} {value!r}: give whole numbers separated by commas, e.g. 1,64"
        ) from None


def _fail(exc: DeploybenchError) -> typer.Exit:
    _error(str(exc))
    return typer.Exit(2)


def _error(message: str) -> None:
    err.print("error: " + message, style="red", highlight=False, markup=False, soft_wrap=True)


def _warn(message: str) -> None:
    err.print("warning: " + message, style="yellow", highlight=False, markup=False,
              soft_wrap=True)


class _WarningLines(logging.Handler):
    """The library's warnings (a cache that cannot be written, ...) as `warning:` lines."""

    def emit(self, record: logging.LogRecord) -> None:
        _warn(record.getMessage())


logging.getLogger("toolkit").addHandler(_WarningLines(logging.WARNING))


RecipesOption = Annotated[str | None, typer.Option(
    help="fp32 (always), int8-dynamic, int8-static, fp16, ort-offline, torch-compile, xla, "
    "comma-separated")]
QualityDropOption = Annotated[str | None, typer.Option(
    "--max-quality-drop", help="the accuracy a recipe that changes the arithmetic (int8, fp16) "
    "may lose against the native model: absolute (0.01) or relative (1%, the default)")]
ClusterOption = Annotated[str | None, typer.Option(
    help="run the steps on a Ray cluster: local (start one here), auto, HOST:PORT or "
    "ray://HOST:PORT; the nodes need no shared disk (needs pip install 'deploybench\\[cluster]')")]
PlacementOption = Annotated[str, typer.Option(
    help="with --cluster: spread (each case on any free node, all its rounds on that node) or "
    "each-node (every case on every node, to compare machines)")]
SessionOption = Annotated[list[str] | None, typer.Option(
    "--session", help="an ONNX Runtime session option, NAME=true|false: memory_arena, "
    "memory_pattern (both true by default); repeat for both")]
OptimizationOption = Annotated[str | None, typer.Option(
    help="ONNX Runtime graph optimisation: disable, basic, extended, all (default)")]
RoundsOption = Annotated[int | None, typer.Option(
    help="fresh processes per case (default 4; the full suite 5): the 95% interval of each "
    "figure is over these rounds")]


@app.command()
def run(
    ctx: typer.Context,
    suite: Annotated[str | None, typer.Option(
        help="quick (default), full, or the path of a suite .toml")] = None,
    frameworks: Annotated[str | None, typer.Option(help="only these, e.g. torch,keras")] = None,
    workloads_: Annotated[str | None, typer.Option(
        "--workloads", help="only these, e.g. digits-mlp or torch/seed-cnn")] = None,
    providers: Annotated[str | None, typer.Option(
        help="cpu, cuda, tensorrt, comma-separated (one not usable here is skipped, with why)")
    ] = None,
    batch_sizes: Annotated[str | None, typer.Option(help="e.g. 1,8,64,512")] = None,
    threads: Annotated[int | None, typer.Option(
        help="threads for every runtime (default: physical cores)")] = None,
    optimization: OptimizationOption = None,
    session: SessionOption = None,
    timeout: Annotated[float | None, typer.Option(
        help="seconds a child step may take before it is killed (default 600)")] = None,
    rounds: RoundsOption = None,
    recipes: RecipesOption = None,
    max_quality_drop: QualityDropOption = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="output folder (default results/<UTC time>)")] = None,
    resume: Annotated[Path | None, typer.Option(
        help="finish an interrupted run in this folder: only its missing steps run")] = None,
    shard: Annotated[str | None, typer.Option(
        help="i/n: run the i-th of n shares of the suite's workloads (split across hosts; "
        "merge with deploybench report a.json b.json)")] = None,
    history_path: HistoryOption = None,
    cluster: ClusterOption = None,
    placement: PlacementOption = "spread",
) -> None:
    """Run a suite: train, export, check parity, time native vs ONNX Runtime; write reports."""
    from toolkit import executor
    from toolkit.plans.run import plan_suite
    from toolkit.results import default_out_dir
    from toolkit.suite import build_suite

    def execute(progress: Callable[[int, int, str], None]) -> executor.RunOutcome:
        if resume is not None:
            return _resume(ctx, resume, "run", False, progress)
        chosen = build_suite(
            suite or "quick",
            workloads=_csv(workloads_, "--workloads"),
            frameworks=_csv(frameworks, "--frameworks"),
            providers=_csv(providers, "--providers"),
            batch_sizes=_ints(batch_sizes, "--batch-sizes"),
            threads=threads, optimization=optimization, timeout_s=timeout, shard=shard,
            rounds=rounds, recipes=_csv(recipes, "--recipes"), max_quality_drop=max_quality_drop,
        )
        chosen = _with_session(chosen, session)
        backend, where = _backend(cluster, placement)
        return executor.start(plan_suite(chosen), out_dir or default_out_dir(), argv=sys.argv,
                              progress=progress, backend=backend, where=where)

    _execute_and_report(execute, history_path)

def _backend(address: str | None, placement: str, node: str | None = None
             ) -> tuple[Any, dict[str, str] | None]:
    """Where --cluster sends the steps (None: here), and what the run section keeps of it;
    `node`: every step on that node (ONE_NODE: on one, chosen when the cluster opens)."""
    import importlib.util

    from toolkit.backends.cluster import MISSING, ClusterBackend, check_placement

    check_placement(placement)
    if address is None:
        if placement != "spread":
            raise BadInputError("--placement applies to a run on a cluster; add --cluster")
        return None, None
    if importlib.util.find_spec("ray") is None:
        raise BadInputError(MISSING)
    return (ClusterBackend(address, placement, node),
            {"address": address, "placement": placement})


# What a resumed run may be given: everything else shapes its plan, which is stored.
RESUME_OPTIONS = frozenset({"resume", "history_path", "trust_pickle"})


def _given(ctx: typer.Context) -> list[str]:
    """The options and arguments typed on the command line (not left at their defaults), as
    the user wrote them, other than those a resumed run takes."""
    names = []
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name) if param.name else None
        if param.name not in RESUME_OPTIONS and getattr(source, "name", "") == "COMMANDLINE":
            names.append(param.opts[0] if param.param_type_name == "option"
                         else f"the {param.name} argument")
    return names


def _resume(ctx: typer.Context, folder: Path, command: str, trust_pickle: bool,
            progress: Callable[[int, int, str], None], allowed: tuple[str, ...] = ()) -> Any:
    """Finish the run in `folder` on the backend it started on: the plan stored there, so
    every option that would shape another plan is refused (a new option too), but those
    `allowed` (how the finished run is judged)."""
    from toolkit import executor
    from toolkit.backends.cluster import ClusterBackend

    refused = [name for name in _given(ctx) if name not in allowed]
    if refused:
        raise BadInputError(f"--resume runs the plan stored in {folder}; drop "
                            f"{', '.join(refused)}")
    plan, results = executor.reopen(folder, command, trust_pickle=trust_pickle)
    stored = results.run.get("cluster")
    backend = (ClusterBackend(str(stored.get("address")), str(stored.get("placement", "spread")))
               if isinstance(stored, dict) else None)
    return executor.execute(plan, results, progress, backend)

def _execute_and_report(
    execute: Callable[[Callable[[int, int, str], None]], Any], history_path: Path | None
) -> Any:
    """Run a plan (run and bench alike), then write the reports, show them, store the run in
    the history; Ctrl-C keeps what finished and exits 130 with the command that resumes."""
    outcome = None
    try:
        with _progress_bar() as progress:
            outcome = execute(progress)
        _report_and_remember(outcome.results_path, history_path)
    except DeploybenchError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:  # outside the steps: before them, or while writing the reports
        err.print("interrupted before anything was measured" if outcome is None else
                  f"interrupted while writing the reports; the results are in "
                  f"{outcome.results_path} (deploybench report writes them again)",
                  highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(130) from None
    if outcome.interrupted:
        err.print(f"interrupted: finished steps are kept; continue with "
                  f"deploybench {outcome.command} --resume {outcome.results_path.parent}",
                  highlight=False, markup=False, soft_wrap=True)
    elif outcome.exit_code:
        _error(outcome.why_nothing)
    else:
        failures = outcome.failures
        for line in failures[:FAILURES_SHOWN]:
            _warn(f"failed: {line}")
        if len(failures) > FAILURES_SHOWN:
            _warn(f"... and {len(failures) - FAILURES_SHOWN} more failed records (see the "
                  "report)")
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)
    return outcome


FAILURES_SHOWN = 10


@contextlib.contextmanager
def _progress_bar() -> Iterator[Callable[[int, int, str], None]]:
    """A progress bar on stderr, drawn from the first update on (errors before it stay clean)."""
    columns = (TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())
    bar = Progress(*columns, console=err, transient=True)
    task = None

    def progress(done: int, total: int, label: str) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task(label, total=total)
        bar.update(task, completed=done, total=total, description=label)

    try:
        yield progress
    finally:
        if task is not None:
            bar.stop()


HistoryOption = Annotated[Path | None, typer.Option(
    "--history", help="the history database (default: ~/.local/share/deploybench/"
    "history.sqlite)")]
ProvidersOption = Annotated[str | None, typer.Option(
    "--providers", help="cpu, cuda, tensorrt, comma-separated (default cpu)")]
ShapeOption = Annotated[list[str] | None, typer.Option(
    "--shape", help="NAME=DIMS, one row's shape without the batch dimension, e.g. "
    "input=3x224x224; repeat for several inputs")]
InputDataOption = Annotated[Path | None, typer.Option(
    "--input-data", help=".npy, .npz (one array per input name) or .csv; generated otherwise")]
TrustOption = Annotated[bool, typer.Option(
    "--trust-pickle", help="allow loading a scikit-learn pickle (.joblib, .pkl): this runs code "
    "stored in the file")]


@app.command()
def bench(
    ctx: typer.Context,
    path: Annotated[Path | None, typer.Argument(
        help="model file: .onnx, .keras, .pt (TorchScript), .pt2 (torch.export), .joblib/.pkl",
        show_default=False)] = None,
    providers: ProvidersOption = None,
    batch_sizes: Annotated[str | None, typer.Option(help="e.g. 1,8,64 (the default)")] = None,
    input_data: InputDataOption = None,
    shape: ShapeOption = None,
    threads: Annotated[int | None, typer.Option(
        help="threads for every runtime (default: physical cores)")] = None,
    optimization: OptimizationOption = None,
    session: SessionOption = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset for native files (18)")] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds per child step (600)")] = None,
    rounds: RoundsOption = None,
    recipes: RecipesOption = None,
    max_quality_drop: QualityDropOption = None,
    calibration_data: Annotated[Path | None, typer.Option(
        "--calibration-data", help="rows int8-static calibrates on (.npy, .npz, .csv; default: "
        "the --input-data or generated inputs)")] = None,
    trust_pickle: TrustOption = False,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="output folder (default results/<UTC time>)")] = None,
    resume: Annotated[Path | None, typer.Option(
        help="finish an interrupted bench in this folder: only its missing steps run")] = None,
    history_path: HistoryOption = None,
    cluster: ClusterOption = None,
    placement: PlacementOption = "spread",
) -> None:
    """Benchmark your own model file (ONNX or native) on each provider and batch size.

    Native files are also exported to ONNX, checked for parity and measured natively.
    """
    from toolkit import executor
    from toolkit.plans.model import ModelRequest, bench_suite, plan_model
    from toolkit.results import default_out_dir

    def execute(progress: Callable[[int, int, str], None]) -> executor.RunOutcome:
        if resume is not None:
            return _resume(ctx, resume, "bench", trust_pickle, progress)
        if path is None:
            raise BadInputError("give a model file (deploybench bench MODEL), or --resume DIR")
        request = ModelRequest(path, tuple(shape or ()), input_data, trust_pickle,
                               calibration_data)
        suite = bench_suite(
            providers=_csv(providers, "--providers"),
            batch_sizes=_ints(batch_sizes, "--batch-sizes"), threads=threads,
            optimization=optimization, timeout_s=timeout, opset=opset, rounds=rounds,
            recipes=_csv(recipes, "--recipes"), max_quality_drop=max_quality_drop)
        suite = _with_session(suite, session)
        out = out_dir or default_out_dir()
        backend, where = _backend(cluster, placement)
        return executor.start(plan_model(request, suite, out), out, argv=sys.argv,
                              progress=progress, backend=backend, where=where)

    _execute_and_report(execute, history_path)


@app.command()
def loadgen(
    ctx: typer.Context,
    target: Annotated[str | None, typer.Argument(
        help="a model file (as bench takes) or a built-in workload (torch/digits-mlp)",
        show_default=False)] = None,
    scenario: Annotated[str | None, typer.Option(
        help="server (default; Poisson arrivals: the peak rate within the bound), offline "
        "(samples/s), singlestream, multistream (a latency percentile)")] = None,
    p99_ms: Annotated[float | None, typer.Option(
        "--p99-ms", help="the latency bound in ms (default 10; not for offline)")] = None,
    target_qps: Annotated[float | None, typer.Option(
        "--target-qps", help="server: measure at this rate instead of searching for the peak; "
        "offline: the rate LoadGen sizes its query for")] = None,
    queries: Annotated[int | None, typer.Option(
        help="server: each LoadGen run's queries, the same at every rate so early stopping "
        "judges every option alike (default 2048: 10 may be over the bound), or more where "
        "they would last under 0.5 s")] = None,
    duration: Annotated[str | None, typer.Option(
        help="offline and streams: each LoadGen run's minimum duration, e.g. 2s, 500ms, 1m "
        "(default 1s; a run also has at least 512 queries)")] = None,
    compliant: Annotated[bool, typer.Option(
        "--compliant", help="MLPerf's own minimum duration (600 s per run), query counts and "
        "seeds; the default --timeout grows to fit")] = False,
    providers: ProvidersOption = None,
    batch_sizes: Annotated[str | None, typer.Option(
        help="comma-separated; server: the most queries +batching answers in one call (8); "
        "offline: samples per call (64); multistream: samples per query (8)")] = None,
    workers: Annotated[int | None, typer.Option(
        help="worker threads or processes per option (default: --threads, so one thread "
        "each; 1 for the streams and per GPU on CUDA)")] = None,
    max_delay_ms: Annotated[float | None, typer.Option(
        "--max-delay-ms", help="+batching: the longest a query waits for others (default: "
        "the bound / 10)")] = None,
    longest_run: Annotated[float | None, typer.Option(
        "--longest-run", help="server search: the longest one run may last at the lowest rate "
        "it tries, in seconds (default 10; a slow model needs more)")] = None,
    threads: Annotated[int | None, typer.Option(
        help="cores each option may use, split among its workers (default: physical cores)")
    ] = None,
    spinning: Annotated[bool, typer.Option(
        "--spinning", help="the workers' threads spin while waiting for work (ONNX Runtime's "
        "intra-op pool, OpenMP's wait policy); off by default, as workers share the cores")
    ] = False,
    optimization: OptimizationOption = None,
    session: SessionOption = None,
    input_data: InputDataOption = None,
    shape: ShapeOption = None,
    trust_pickle: TrustOption = False,
    timeout: Annotated[float | None, typer.Option(
        help="seconds one option (all its LoadGen runs) may take (600; with --compliant "
        "9600)")] = None,
    price: Annotated[list[str] | None, typer.Option(
        "--price", help="USD per hour of the machine that ran (3.5), or of a cluster node "
        "(NODE=2.1; repeat): each option's cost per million predictions at its sustained peak",
        show_default=False)] = None,
    need_qps: Annotated[float | None, typer.Option(
        "--need-qps", help="the rate the service must sustain: how many machines like this "
        "one each option needs at its sustained peak")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="output folder (default results/<UTC time>); LoadGen's logs go to "
        "its loadgen/ folder")] = None,
    resume: Annotated[Path | None, typer.Option(
        help="finish an interrupted loadgen run in this folder")] = None,
    history_path: HistoryOption = None,
    cluster: ClusterOption = None,
    placement: PlacementOption = "spread",
) -> None:
    """Serve each option under MLPerf LoadGen: the highest rate within a p99 bound (server),
    samples per second (offline), or the latency percentile of a stream."""
    from toolkit import executor
    from toolkit.plans.loadgen import loadgen_request, loadgen_suite, plan_loadgen
    from toolkit.results import default_out_dir
    from toolkit.scenarios import ScenarioSettings, parse_duration

    def execute(progress: Callable[[int, int, str], None]) -> executor.RunOutcome:
        if resume is not None:
            return _resume(ctx, resume, "loadgen", trust_pickle, progress)
        if target is None:
            raise BadInputError("give a model file or a workload (deploybench loadgen "
                                "torch/digits-mlp), or --resume DIR")
        settings = ScenarioSettings(
            scenario=scenario if scenario is not None else "server", p99_ms=p99_ms,
            target_qps=target_qps, compliant=compliant, workers=workers,
            duration_s=parse_duration(duration) if duration is not None else None,
            queries=queries,
            batch_sizes=_ints(batch_sizes, "--batch-sizes") or (), max_delay_ms=max_delay_ms,
            longest_run_s=longest_run, spinning=spinning)
        suite = loadgen_suite(settings, providers=_csv(providers, "--providers"),
                              threads=threads, timeout_s=timeout).replace(
            prices=_prices(price), need_qps=need_qps, optimization=optimization)
        suite = _with_session(suite, session)
        request = loadgen_request(target, tuple(shape or ()), input_data, trust_pickle)
        out = out_dir or default_out_dir()
        backend, where = _backend(cluster, placement)
        return executor.start(plan_loadgen(target, suite, out, request=request), out,
                              argv=sys.argv, progress=progress, backend=backend, where=where)

    _execute_and_report(execute, history_path)


@app.command()
def advise(
    ctx: typer.Context,
    target: Annotated[str | None, typer.Argument(
        help="a model file (as bench takes) or one built-in workload (torch/digits-mlp)",
        show_default=False)] = None,
    p99_ms: Annotated[float | None, typer.Option(
        "--p99-ms", help="the latency bound in ms every configuration is judged by")] = None,
    target_qps: Annotated[float | None, typer.Option(
        "--target-qps", help="the rate the service must sustain: how many machines like this "
        "one the pick needs")] = None,
    max_quality_drop: QualityDropOption = None,
    memory_mb: Annotated[float | None, typer.Option(
        "--memory-mb", help="the most memory a configuration may take, summed over its "
        "workers")] = None,
    price: Annotated[float | None, typer.Option(
        "--price", help="USD per hour of a machine like this one: the pick's cost per "
        "million predictions")] = None,
    budget: Annotated[str, typer.Option(
        help="the wall time to plan for, e.g. 20m: the confirmations share what the trials "
        "and the search leave, each 60-600 s (so a short budget is overrun, not cut)")] = "20m",
    threads: Annotated[str | None, typer.Option(
        help="threads per worker to try, comma-separated (default: 1 and every core)")] = None,
    recipes: Annotated[str | None, typer.Option(
        help="recipes to try: fp32 (always), int8-dynamic, int8-static, fp16, ort-offline "
        "(default fp32,int8-dynamic,int8-static)")] = None,
    input_data: InputDataOption = None,
    shape: ShapeOption = None,
    trust_pickle: TrustOption = False,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="output folder (default results/<UTC time>)")] = None,
    resume: Annotated[Path | None, typer.Option(
        help="finish an interrupted advise in this folder: finished trials and confirmations "
        "are kept, the search's study goes on")] = None,
    cluster: ClusterOption = None,
    placement: PlacementOption = "spread",
) -> None:
    """Which configuration should I deploy? Search runtimes, recipes, threads, workers and
    batching for the highest sustained rate within a p99 bound and an accuracy limit, confirm
    the best under LoadGen beside the best default, and say what it costs."""
    from toolkit import advise as adviser
    from toolkit import executor
    from toolkit.backends.cluster import ONE_NODE
    from toolkit.report import advise as advice_report
    from toolkit.results import default_out_dir, prepare_out_dir
    from toolkit.scenarios import parse_duration

    try:
        if resume is not None:
            refused = [name for name in _given(ctx) if name not in ("--resume", "--trust-pickle")]
            if refused:
                raise BadInputError(f"--resume continues the advise stored in {resume}; drop "
                                    f"{', '.join(refused)}")
            request, where = adviser.load_request(resume)
            folder = prepare_out_dir(resume)
        else:
            if target is None or p99_ms is None:
                raise BadInputError("give a model file or a workload and --p99-ms, e.g. "
                                    "deploybench advise torch/digits-mlp --p99-ms 5")
            request = adviser.Request(
                target, p99_ms, max_quality_drop or "1%", memory_mb, price, target_qps,
                parse_duration(budget, "--budget"), _ints(threads, "--threads") or (),
                tuple(dict.fromkeys(["fp32", *(_csv(recipes, "--recipes") or [])]))
                if recipes else adviser.DEFAULT_RECIPES,
                tuple(shape or ()), str(input_data) if input_data else None)
            adviser.resolve(request, trust_pickle)  # a bad target ends here, nothing written
            where = {"address": cluster, "placement": placement} if cluster else None
        # one study's trials and confirmations on one node: a machine of one kind, the one
        # whose figures the answer gives (the node chosen is kept for --resume)
        backend, _ = _backend(where["address"] if where else None,
                              where["placement"] if where else "spread",
                              (where.get("node") or ONE_NODE) if where else None)
        if resume is None:
            folder = prepare_out_dir(out_dir or default_out_dir())
            adviser.save_request(folder, request, where)
    except DeploybenchError as exc:
        raise _fail(exc) from None

    def say(line: str) -> None:
        err.print(line, highlight=False, markup=False, soft_wrap=True)

    advice = None
    try:
        with _progress_bar() as progress:
            def start(plan: Any, into: Path) -> bool:
                return not executor.start(plan, into, argv=sys.argv, progress=progress,
                                          backend=backend, where=where).interrupted

            def again(into: Path, command: str) -> bool:
                plan, results = executor.reopen(into, command, trust_pickle=trust_pickle)
                return not executor.execute(plan, results, progress, backend).interrupted

            advice = adviser.advise(request, folder, adviser.Runner(start, again),
                                    trust_pickle=trust_pickle, say=say)
    except DeploybenchError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        advice = None
    finally:
        chosen = getattr(backend, "node", None)
        if where and chosen not in (None, ONE_NODE) and where.get("node") != chosen:
            adviser.save_request(folder, request, {**where, "node": chosen})
    if advice is None:
        err.print(f"interrupted: finished trials and confirmations are kept; continue with "
                  f"deploybench advise --resume {folder}", highlight=False, markup=False,
                  soft_wrap=True)
        raise typer.Exit(130)
    written = [adviser.write_advice(advice), *advice_report.write(advice)]
    out.print(advice_report.headline(advice), highlight=False, markup=False, soft_wrap=True)
    if advice.unsteady:
        err.print(f"! {advice.unsteady}", highlight=False, markup=False, soft_wrap=True)
    columns, rows = advice_report.confirmation_rows(advice)
    terminal.table(out, columns, rows)
    for line in advice_report.lost_lines(advice)[:6]:
        out.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    if advice.pick is not None:
        out.print(advice_report.loadgen_command(advice, advice.pick.config), highlight=False,
                  markup=False, soft_wrap=True)
    for path in written:
        out.print(f"report:  {path}")
    if advice.pick is None:
        raise typer.Exit(1)


def _with_session(suite: Any, given: list[str] | None) -> Any:
    """`suite` with the --session options on top of its own [session] (a name given on both,
    the command line's)."""
    parsed = parse_session(given)
    if parsed is None:
        return suite
    return suite.replace(session=tuple(sorted({**dict(suite.session), **dict(parsed)}.items())))


def _prices(given: list[str] | None) -> tuple[tuple[str, float], ...] | None:
    """--price 3.5 (the machine that ran) or --price NODE=2.1, as (name, USD per hour)."""
    if not given:
        return None
    prices = []
    for text in given:
        name, _, value = text.rpartition("=")
        try:
            prices.append((name.strip(), float(value)))
        except ValueError:
            raise BadInputError(f"--price {text!r}: give USD per hour, e.g. --price 3.5, or a "
                                "node's as --price node-b=2.1") from None
    return tuple(prices)


def _report_and_remember(results_path: Path, history_path: Path | None) -> None:
    """Write the report files and show them, then store the run in the history: a history that
    cannot take it (read-only, locked, not a database) costs a warning, not the reports."""
    from toolkit.report import write_reports

    summaries, written = write_reports(results_path)
    for warning in _input_warnings(results_path):
        _warn(warning)
    terminal.render(summaries, out)
    out.print(f"results: {results_path}")
    for path in written:
        out.print(f"report:  {path}")
    try:
        run_id, database = history.remember(results_path, history_path)
    except DeploybenchError as exc:
        _warn(f"the run was not stored in the history: {exc}")
        return
    out.print(f"history: run {run_id} in {database}")


def _input_warnings(results_path: Path) -> list[str]:
    from toolkit.results import read_results

    run, _ = read_results(results_path)
    return list(run.get("input_warnings", []))


@app.command()
def export(
    path: Annotated[Path, typer.Argument(
        help="native model file: .keras, .pt (TorchScript), .pt2 (torch.export), .joblib/.pkl")],
    out_file: Annotated[Path, typer.Option("--out", help="the ONNX file to write")],
    opset: Annotated[int, typer.Option(help="ONNX opset")] = 18,
    input_data: InputDataOption = None,
    shape: ShapeOption = None,
    trust_pickle: TrustOption = False,
) -> None:
    """Export a native model file to ONNX and print the parity check against the native model."""
    from toolkit.plans.model import ModelRequest
    from toolkit.plans.model import export as export_model
    from toolkit.report.summary import parity_text
    from toolkit.report.units import duration

    request = ModelRequest(path, tuple(shape or ()), input_data, trust_pickle)
    try:
        records = export_model(request, out_file, opset=opset)
    except DeploybenchError as exc:
        raise _fail(exc) from None
    by_phase = {r.phase: r for r in records}
    exported, parity = by_phase.get("export"), by_phase.get("parity")
    if exported is None or not exported.ok:
        reason = exported.reason if exported else "no export record"
        _error(f"export failed: {reason}")
        raise typer.Exit(1)
    info = exported.info
    out.print(f"wrote {info['onnx']} ({info['size_bytes']:,} bytes, opset {info['opset']}) with "
              f"{info['exporter']} {info['exporter_version']} in {duration(exported.seconds)}; "
              f"batch dimension {'free' if info['batch_free'] else 'fixed'}", highlight=False,
              markup=False)
    for warning in exported.warnings:
        _warn(warning)
    if parity is not None and parity.parity is not None:
        verdict = parity_text(parity.parity, "onnxruntime")
        out.print(f"parity on {parity.parity.rows} rows ({info['input_source']}): {verdict}, "
                  f"max rel {parity.parity.max_rel:.1e} (rtol {parity.parity.rtol:g}, atol "
                  f"{parity.parity.atol:g})", highlight=False, markup=False)
        if not parity.parity.passed:
            raise typer.Exit(1)


@app.command()
def inspect(path: Annotated[Path, typer.Argument(help="an .onnx file")]) -> None:
    """Inputs, outputs, opset, size, operator counts, and whether the batch dimension is free."""
    from toolkit.modelfile import inspect_onnx, open_model

    try:
        model = open_model(path, trust_pickle=True)  # nothing is unpickled here
        if model.kind != "onnx":
            raise BadInputError(f"{path}: inspect reads ONNX files; export it first with "
                                f"deploybench export {path} --out model.onnx")
        summary = inspect_onnx(path)
    except DeploybenchError as exc:
        raise _fail(exc) from None
    out.print(f"{path}: {summary.size_bytes:,} bytes, IR {summary.ir_version}, opsets "
              + ", ".join(f"{d} {v}" for d, v in summary.opsets.items())
              + (f", made by {summary.producer}" if summary.producer else ""), highlight=False,
              markup=False)
    for title, specs in (("inputs", summary.inputs), ("outputs", summary.outputs)):
        out.print(f"{title}:")
        for spec in specs:
            out.print(f"  {spec.describe()}", highlight=False, markup=False)
    batch = "free" if summary.batch_free else "fixed (measured at that size only)"
    out.print(f"batch dimension: {batch}")
    out.print("operators: " + ", ".join(f"{op} {n}" for op, n in summary.operators.items()),
              highlight=False, markup=False)


@app.command()
def report(
    results: Annotated[list[Path], typer.Argument(
        help="results.json files; several (e.g. a CPU host and a GPU host) merge into one "
        "report with the machine named on each option")],
    formats: Annotated[str | None, typer.Option(
        "--format", help="html, md, csv, comma-separated (default: all)")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="folder for report.* (default: beside the first results file)")] = None,
) -> None:
    """Write the HTML, Markdown and CSV reports of one or more results files."""
    from toolkit.report import parse_formats, write_reports

    try:
        _, written = write_reports(results, out_dir, parse_formats(formats))
    except DeploybenchError as exc:
        raise _fail(exc) from None
    for path in written:
        out.print(f"report:  {path}")


@app.command()
def compare(
    ctx: typer.Context,
    base: Annotated[str | None, typer.Argument(
        help="the reference: a results.json, a history run id, or a model file",
        show_default=False)] = None,
    new: Annotated[str | None, typer.Argument(
        help="the one to judge: a results.json, a run id, or a model file", show_default=False)
    ] = None,
    threshold: Annotated[str, typer.Option(
        help="how much slower counts as a regression, e.g. 10%")] = "10%",
    metric: Annotated[str, typer.Option(help="p50, mean, p90, p99 or min")] = "p50",
    fmt: Annotated[str, typer.Option(
        "--format", help="text, or md for a pull-request comment")] = "text",
    fail_on: Annotated[str, typer.Option(
        "--fail-on", help="slower (default: exit 1 on a confident regression or a case that "
        "failed in NEW), or inconclusive (also on a case that could not be judged)")] = "slower",
    providers: ProvidersOption = None,
    batch_sizes: Annotated[str | None, typer.Option(
        help="two model files: e.g. 1,8,64 (the default)")] = None,
    input_data: InputDataOption = None,
    shape: ShapeOption = None,
    threads: Annotated[int | None, typer.Option(
        help="two model files: threads for every runtime (default: physical cores)")] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds per child step (600)")] = None,
    rounds: Annotated[int | None, typer.Option(
        help="two model files: rounds of each, alternating (default 4)")] = None,
    trust_pickle: TrustOption = False,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="two model files: the run's folder (default results/<UTC time>)")] = None,
    resume: Annotated[Path | None, typer.Option(
        help="finish an interrupted side-by-side run in this folder, then compare")] = None,
    history_path: HistoryOption = None,
) -> None:
    """Compare two runs case by case, or measure two model files side by side and compare them:
    the ratio of medians with its 95% interval; exit code 1 when a case is slower beyond the
    threshold with confidence, or failed or lost its parity in NEW.

    Two model files (deploybench compare old.onnx new.onnx) are measured in one run, their
    rounds alternating, and judged on the pairs of rounds: the way to catch a small
    regression on a shared machine, where runs made minutes apart drift apart.
    """
    from toolkit import compare as comparing
    from toolkit.plans import pair

    try:
        if fmt not in ("text", "md"):
            raise BadInputError(f"--format {fmt!r}: choose text or md")
        limit = comparing.parse_threshold(threshold)
        if metric not in comparing.METRICS:  # before minutes of measuring, not after
            raise BadInputError(f"--metric {metric!r}: choose from {', '.join(comparing.METRICS)}")
        if fail_on not in comparing.FAIL_ON:
            raise BadInputError(f"--fail-on {fail_on!r}: choose {' or '.join(comparing.FAIL_ON)}")
        files = [Path(x) for x in (base, new) if x is not None and _model_file(x)]
        if resume is None and (base is None or new is None):
            raise BadInputError("give BASE and NEW: two results.json files, two history run "
                                "ids, or two model files")
        if resume is None and len(files) == 1:
            raise BadInputError(f"{files[0]}: a model file is compared with another model "
                                "file (measured side by side); give two, or two results")
        measured = resume is not None or len(files) == 2
        if not measured:
            given = [name for name in _given(ctx) if name.startswith("--") and name not in (
                "--threshold", "--metric", "--format", "--fail-on", "--history")]
            if given:
                raise BadInputError(f"{', '.join(given)} apply to two model files measured "
                                    "side by side; BASE and NEW here are runs already made")
    except DeploybenchError as exc:
        raise _fail(exc) from None
    if measured:
        from toolkit import executor
        from toolkit.plans.model import ModelRequest, bench_suite
        from toolkit.results import default_out_dir, read_results

        def execute(progress: Callable[[int, int, str], None]) -> executor.RunOutcome:
            if resume is not None:
                return _resume(ctx, resume, "compare", trust_pickle, progress,
                               allowed=("--threshold", "--metric", "--format", "--fail-on"))
            requests = [ModelRequest(p, tuple(shape or ()), input_data, trust_pickle)
                        for p in files]
            suite = bench_suite(providers=_csv(providers, "--providers"),
                                batch_sizes=_ints(batch_sizes, "--batch-sizes"),
                                threads=threads, timeout_s=timeout, rounds=rounds)
            folder = out_dir or default_out_dir()
            return executor.start(pair.plan_pair(*requests, suite, folder), folder,
                                  argv=sys.argv, progress=progress)

        outcome = _execute_and_report(execute, history_path)
        try:
            run, records = read_results(outcome.results_path)
            before, after = pair.split(run, records)
            result = comparing.compare((run, before), (run, after), limit, metric, fail_on,
                                       paired=True)
        except DeploybenchError as exc:
            raise _fail(exc) from None
    else:
        try:
            assert base is not None and new is not None
            result = comparing.compare(history.resolve(base, history_path),
                                       history.resolve(new, history_path),
                                       limit, metric, fail_on)
        except DeploybenchError as exc:
            raise _fail(exc) from None
    _show_comparison(result, fmt, metric)
    if result.fails(fail_on):
        raise typer.Exit(1)


def _model_file(reference: str) -> bool:
    """A model file (compared side by side), not a results.json or a run id."""
    from toolkit.plans.loadgen import MODEL_SUFFIXES

    return Path(reference).suffix.lower() in MODEL_SUFFIXES


def _show_comparison(result: Any, fmt: str, metric: str) -> None:
    from toolkit import compare as comparing

    if fmt == "md":
        out.print(comparing.render_markdown(result), markup=False, highlight=False)
        return
    for warning in result.warnings:
        _warn(warning)
    out.print(console.compare_table(result.rows, metric, comparing.interval_text))
    for title, cases in (("only in base", result.only_base), ("only in new", result.only_new)):
        if cases:
            out.print(f"{title}: {', '.join(cases)}", markup=False, highlight=False)
    for line in result.failed:
        out.print(f"failed in new: {line}", style="red", markup=False, highlight=False)
    out.print(comparing.summary_line(result), markup=False, highlight=False)


@app.command("history")
def history_command(
    workload: Annotated[str | None, typer.Option(
        help="only runs with this workload, and the trend of each of its cases")] = None,
    limit: Annotated[int, typer.Option(help="how many runs, newest first")] = 20,
    history_path: HistoryOption = None,
) -> None:
    """List the stored runs and, for a workload, how each case moved across them."""

    try:
        if limit < 1:
            raise BadInputError(f"--limit must be >= 1, got {limit}")
        with history.connect(history_path) as connection:
            found = history.runs(connection, workload, limit)
            trends = history.trend(connection, workload, limit) if workload else {}
    except DeploybenchError as exc:
        raise _fail(exc) from None
    if not found:
        out.print("no runs stored yet" + (f" with workload {workload}" if workload else ""))
        return
    for table in console.history_tables(found, trends):
        out.print(table)


@app.command("list")
def list_workloads() -> None:
    """List the built-in workloads (framework/name) and whether each framework is installed."""
    out.print(console.workloads_table([
        (key, w.description, environment.missing_framework(w.framework) or "ready")
        for key, w in workloads.REGISTRY.items()]))


@app.command()
def env(
    peak: Annotated[bool, typer.Option(
        "--peak", help="measure this machine's float32 matrix-product peak now on its physical "
        "cores (runs measure and cache it at their own thread count for the %-of-peak)")
    ] = False,
) -> None:
    """The machine, versions, and which ONNX Runtime providers really run here, or why not."""
    info = environment.describe()
    line = None
    if peak:
        from toolkit.suite import default_threads

        threads = default_threads()
        gflops = environment.peak_gflops(threads, refresh=True)
        line = (f"{gflops:,.1f} GFLOP/s on {threads} thread(s), cached in "
                f"{environment.cache_dir() / 'peak.json'}")
    out.print(console.environment_table(info, line))


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM (a CI job cancelled, `timeout`, `kill`) stops a run as Ctrl-C does: the running
    child and its workers are killed, finished steps are kept, the run can be resumed."""
    raise KeyboardInterrupt


def main() -> None:
    """The console script: typer's own usage errors (a flag's value of the wrong type, an
    unknown option) as one `error:` line and exit 2, like every other bad input."""
    import signal

    signal.signal(signal.SIGTERM, _terminated)
    try:
        code = app(standalone_mode=False)
    except typer.Abort:  # Ctrl-C where no step was running
        code = 130
    except Exception as exc:
        # typer's parser errors (its vendored click's UsageError): exit code 2, a message
        ctx = getattr(exc, "ctx", None)
        if getattr(exc, "exit_code", None) != 2 or not hasattr(exc, "format_message"):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            out.print(ctx.get_help(), markup=False, highlight=False)
        else:
            command = f" {ctx.info_name}" if ctx is not None and ctx.parent else ""
            _error(f"{exc.format_message()} (see deploybench{command} --help)")
        code = 2
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
