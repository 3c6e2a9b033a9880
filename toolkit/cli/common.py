"""What every command shares: the app, its consoles, option types, and the run-and-report road."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from exporters.session import parse_session
from toolkit import history
from toolkit.errors import BadInputError, DeploybenchError, storage_error
from toolkit.report import terminal

app = typer.Typer(
    help="How should I serve this model? Measured answers, from one call to a fleet.\n\n"
    "The journey: run a suite or bench your own model file (native against ONNX Runtime), "
    "compare two versions in CI, serve each option under load with loadgen, and ask advise "
    "which configuration to deploy. Each command's --help has examples.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
# Piped output (CI logs, files) gets room for the tables instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True)

# Command panels in `deploybench --help`, and option panels in a command's help.
JOURNEY = "The journey"
TOOLS = "Files, history and the machine"
MEASURE = "What to measure"
LOAD = "How to load the model"
SEARCH = "The search"
LIMITS = "Limits and cost"
WHERE = "Where it runs"
OUTPUT = "Output and resume"


def examples(*lines: str) -> str:
    """A command's epilog: its example invocations, one a line."""
    return "Examples:\n\n" + "\n".join(f"  {line}" for line in lines)


def split_csv(value: str | None, flag: str) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise BadInputError(f"{flag} is empty; give a comma-separated list")
    return items


def parse_ints(value: str | None, flag: str) -> tuple[int, ...] | None:
    items = split_csv(value, flag)
    if items is None:
        return None
    try:
        return tuple(int(v) for v in items)
    except ValueError:
        raise BadInputError(
            f"{flag} {value!r}: give whole numbers separated by commas, e.g. 1,64"
        ) from None


def fail(exc: DeploybenchError) -> typer.Exit:
    """Bad input: one `error:` line, exit code 2."""
    error(str(exc))
    return typer.Exit(2)


def error(message: str) -> None:
    err.print("error: " + message, style="red", highlight=False, markup=False, soft_wrap=True)


def warn(message: str) -> None:
    err.print("warning: " + message, style="yellow", highlight=False, markup=False,
              soft_wrap=True)


def say(line: str) -> None:
    """A line of progress on stderr, as the library words it."""
    err.print(line, highlight=False, markup=False, soft_wrap=True)


class _WarningLines(logging.Handler):
    """The library's warnings (a cache that cannot be written, ...) as `warning:` lines."""

    def emit(self, record: logging.LogRecord) -> None:
        warn(record.getMessage())


logging.getLogger("toolkit").addHandler(_WarningLines(logging.WARNING))


RecipesOption = Annotated[str | None, typer.Option(
    help="fp32 (always), int8-dynamic, int8-static, fp16, ort-offline, torch-compile, xla, "
    "comma-separated", rich_help_panel=MEASURE)]
QualityDropOption = Annotated[str | None, typer.Option(
    "--max-quality-drop", help="the accuracy a recipe that changes the arithmetic (int8, fp16) "
    "may lose against the native model: absolute (0.01) or relative (1%, the default)",
    rich_help_panel=LIMITS)]
ClusterOption = Annotated[str | None, typer.Option(
    help="run the steps on a Ray cluster: local (start one here), auto, HOST:PORT or "
    "ray://HOST:PORT; the nodes need no shared disk (needs pip install 'deploybench\\[cluster]')",
    rich_help_panel=WHERE)]
PlacementOption = Annotated[str, typer.Option(
    help="with --cluster: spread (each case on any free node, all its rounds on that node) or "
    "each-node (every case on every node, to compare machines)", rich_help_panel=WHERE)]
SessionOption = Annotated[list[str] | None, typer.Option(
    "--session", help="an ONNX Runtime session option, NAME=true|false: memory_arena, "
    "memory_pattern (both true by default); repeat for both", rich_help_panel=MEASURE)]
OptimizationOption = Annotated[str | None, typer.Option(
    help="ONNX Runtime graph optimisation: disable, basic, extended, all (default)",
    rich_help_panel=MEASURE)]
RoundsOption = Annotated[int | None, typer.Option(
    help="fresh processes per case (default 4; the full suite 5): the 95% interval of each "
    "figure is over these rounds", rich_help_panel=MEASURE)]
ThreadsOption = Annotated[int | None, typer.Option(
    help="threads every runtime gets (default: physical cores)", rich_help_panel=MEASURE)]
TimeoutOption = Annotated[float | None, typer.Option(
    help="seconds a child step may take before it is killed (default 600)",
    rich_help_panel=WHERE)]
HistoryOption = Annotated[Path | None, typer.Option(
    "--history", help="the history database (default: ~/.local/share/deploybench/"
    "history.sqlite)", rich_help_panel=OUTPUT)]
ProvidersOption = Annotated[str | None, typer.Option(
    "--providers", help="cpu, cuda, tensorrt, comma-separated (default cpu; one not usable "
    "here is skipped, with why)", rich_help_panel=MEASURE)]
SuiteProvidersOption = Annotated[str | None, typer.Option(
    "--providers", help="cpu, cuda, tensorrt, comma-separated (default: the suite's; one not "
    "usable here is skipped, with why)", rich_help_panel=MEASURE)]
ShapeOption = Annotated[list[str] | None, typer.Option(
    "--shape", help="[NAME=]DIMS, one row's shape without the batch dimension, e.g. "
    "3x224x224 or input=3x224x224; repeat for several inputs", rich_help_panel=LOAD)]
InputDataOption = Annotated[Path | None, typer.Option(
    "--input-data", help=".npy, .npz (one array per input name) or .csv; generated otherwise",
    rich_help_panel=LOAD)]
TrustOption = Annotated[bool, typer.Option(
    "--trust-pickle", help="allow loading a scikit-learn pickle (.joblib, .pkl): this runs code "
    "stored in the file", rich_help_panel=LOAD)]
OutOption = Annotated[Path | None, typer.Option(
    "--out", help="output folder (default results/<UTC time>)", rich_help_panel=OUTPUT)]


def backend_for(address: str | None, placement: str, node: str | None = None
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


def given_options(ctx: typer.Context) -> list[str]:
    """The options and arguments typed on the command line (not left at their defaults), as
    the user wrote them, other than those a resumed run takes."""
    names = []
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name) if param.name else None
        if param.name not in RESUME_OPTIONS and getattr(source, "name", "") == "COMMANDLINE":
            names.append(param.opts[0] if param.param_type_name == "option"
                         else f"the {param.name} argument")
    return names


def resume_run(ctx: typer.Context, folder: Path, command: str, trust_pickle: bool,
               progress: Callable[[int, int, str], None], allowed: tuple[str, ...] = ()) -> Any:
    """Finish the run in `folder` on the backend it started on: the plan stored there, so
    every option that would shape another plan is refused (a new option too), but those
    `allowed` (how the finished run is judged)."""
    from toolkit import executor
    from toolkit.backends.cluster import ClusterBackend

    refused = [name for name in given_options(ctx) if name not in allowed]
    if refused:
        raise BadInputError(f"--resume runs the plan stored in {folder}; drop "
                            f"{', '.join(refused)}")
    plan, results = executor.reopen(folder, command, trust_pickle=trust_pickle)
    stored = results.run.get("cluster")
    backend = (ClusterBackend(str(stored.get("address")), str(stored.get("placement", "spread")))
               if isinstance(stored, dict) else None)
    return executor.execute(plan, results, progress, backend)


def execute_and_report(
    execute: Callable[[Callable[[int, int, str], None]], Any], history_path: Path | None,
    shown_on: Console = out,
) -> Any:
    """Run a plan (run and bench alike), then write the reports, show them (on `shown_on`:
    stderr where stdout is kept for another answer), store the run in the history; Ctrl-C
    keeps what finished and exits 130 with the command that resumes."""
    outcome = None
    try:
        with progress_bar() as progress:
            outcome = execute(progress)
        _report_and_remember(outcome.results_path, history_path, shown_on)
    except DeploybenchError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:  # outside the steps: before them, or while writing the reports
        say("interrupted before anything was measured" if outcome is None else
            f"interrupted while writing the reports; the results are in "
            f"{outcome.results_path} (deploybench report writes them again)")
        raise typer.Exit(130) from None
    if outcome.interrupted:
        say(f"interrupted: finished steps are kept; continue with "
            f"deploybench {outcome.command} --resume {outcome.results_path.parent}")
    elif outcome.exit_code:
        error(outcome.why_nothing)
    else:
        failures = outcome.failures
        for line in failures[:FAILURES_SHOWN]:
            warn(f"failed: {line}")
        if len(failures) > FAILURES_SHOWN:
            warn(f"... and {len(failures) - FAILURES_SHOWN} more failed records (see the "
                 "report)")
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)
    return outcome


FAILURES_SHOWN = 10


@contextlib.contextmanager
def progress_bar() -> Iterator[Callable[[int, int, str], None]]:
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


def parse_prices(given: list[str] | None) -> tuple[tuple[str, float], ...] | None:
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


@contextlib.contextmanager
def progress_bars() -> Iterator[Callable[[str], Callable[[int, int, str], None]]]:
    """Progress bars on stderr, one per name asked for (`bars(name)` gives its callback), for
    work that runs in several threads at once."""
    columns = (TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())
    bar = Progress(*columns, console=err, transient=True)
    tasks: dict[str, Any] = {}
    lock = threading.Lock()

    def bars(name: str) -> Callable[[int, int, str], None]:
        def progress(done: int, total: int, label: str) -> None:
            with lock:
                if not tasks:
                    bar.start()
                if name not in tasks:
                    tasks[name] = bar.add_task(label, total=total)
                bar.update(tasks[name], completed=done, total=total,
                           description=f"{name}: {label}")

        return progress

    try:
        yield bars
    finally:
        if tasks:
            bar.stop()


def with_session(suite: Any, given: list[str] | None) -> Any:
    """`suite` with the --session options on top of its own [session] (a name given on both,
    the command line's)."""
    parsed = parse_session(given)
    if parsed is None:
        return suite
    return suite.replace(session=tuple(sorted({**dict(suite.session), **dict(parsed)}.items())))


def _report_and_remember(results_path: Path, history_path: Path | None,
                         shown_on: Console) -> None:
    """Write the report files and show them, then store the run in the history: a history that
    cannot take it (read-only, locked, not a database) costs a warning, not the reports."""
    from toolkit.report import write_reports
    from toolkit.results import read_results

    summaries, written = write_reports(results_path)
    run, _ = read_results(results_path)
    for warning in run.get("input_warnings", []):
        warn(warning)
    terminal.render(summaries, shown_on)
    shown_on.print(f"results: {results_path}")
    for path in written:
        shown_on.print(f"report:  {path}")
    try:
        run_id, database = history.remember(results_path, history_path)
    except DeploybenchError as exc:
        warn(f"the run was not stored in the history: {exc}")
        return
    shown_on.print(f"history: run {run_id} in {database}")


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
    except DeploybenchError as exc:  # one a command let through: a disk that filled mid-run
        error(str(exc))
        code = 2
    except OSError as exc:
        found = storage_error(exc.filename, exc)
        if found is None:
            raise
        error(str(found))
        code = 2
    except sqlite3.OperationalError as exc:  # the history's database on a full disk
        if not any(word in str(exc) for word in ("full", "readonly")):
            raise
        error(f"the history could not be written ({exc}): free space, or give --history "
              f"another file; the run's results.json is kept")
        code = 2
    except Exception as exc:
        # typer's parser errors (its vendored click's UsageError): exit code 2, a message
        ctx = getattr(exc, "ctx", None)
        if getattr(exc, "exit_code", None) != 2 or not hasattr(exc, "format_message"):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            out.print(ctx.get_help(), markup=False, highlight=False)
        else:
            command = f" {ctx.info_name}" if ctx is not None and ctx.parent else ""
            error(f"{exc.format_message()} (see deploybench{command} --help)")
        code = 2
    sys.exit(code if isinstance(code, int) else 0)
