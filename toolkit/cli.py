"""The deploybench command line: parse, call one library function, render. No logic here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from toolkit import environment, workloads
from toolkit.errors import BadInputError, DeploybenchError
from toolkit.report import markdown, terminal
from toolkit.report.summary import summarise

app = typer.Typer(
    help="How should I serve this model? Train natively, export to ONNX, check parity, and time "
    "native inference against ONNX Runtime.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
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
    err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


@app.command()
def run(
    suite: Annotated[str, typer.Option(help="quick, full, or the path of a suite .toml")] = "quick",
    frameworks: Annotated[str | None, typer.Option(help="only these, e.g. torch,keras")] = None,
    workloads_: Annotated[str | None, typer.Option(
        "--workloads", help="only these, e.g. digits-mlp or torch/seed-cnn")] = None,
    providers: Annotated[str | None, typer.Option(
        help="ONNX Runtime providers, e.g. cpu,cuda (CUDA without a GPU is skipped)")] = None,
    batch_sizes: Annotated[str | None, typer.Option(help="e.g. 1,64")] = None,
    threads: Annotated[int | None, typer.Option(
        help="threads for every runtime (default: physical cores)")] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds per child step")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="output folder (default results/<UTC time>)")] = None,
) -> None:
    """Run a suite: train, export, check parity, time native vs ONNX Runtime; write reports."""
    from toolkit import pipeline
    from toolkit.suite import load_suite, parse_suite

    try:
        chosen = load_suite(suite)
        if workloads_ or frameworks:
            keys = tuple(w.key for w in workloads.select(
                _csv(workloads_, "--workloads") or list(chosen.workloads),
                _csv(frameworks, "--frameworks")))
            chosen = chosen.replace(workloads=keys) if keys else parse_suite(
                {"workloads": []}, "--frameworks/--workloads")
        providers_list = _csv(providers, "--providers")
        chosen = chosen.replace(
            providers=tuple(providers_list) if providers_list else None,
            batch_sizes=_ints(batch_sizes, "--batch-sizes"),
            threads=threads,
            timeout_s=timeout,
        )
        target = out_dir or pipeline.default_out_dir()
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn(
                "{task.completed}/{task.total}"), TimeElapsedColumn(), console=err,
                transient=True) as bar:
            task = bar.add_task("starting", total=None)

            def progress(done: int, total: int, label: str) -> None:
                bar.update(task, completed=done, total=total, description=label)

            outcome = pipeline.run_suite(chosen, target, argv=sys.argv, progress=progress)
    except DeploybenchError as exc:
        raise _fail(exc) from None
    from toolkit.results import load

    run_info, records = load(outcome.results_path)
    summaries = summarise(records, chosen.batch_sizes)
    terminal.render(summaries, out)
    report_path = outcome.results_path.parent / "report.md"
    report_path.write_text(markdown.render(summaries, run_info), encoding="utf-8")
    out.print(f"results: {outcome.results_path}\nreport:  {report_path}")
    if outcome.interrupted:
        err.print("interrupted: finished cases are kept in the results")
        raise typer.Exit(130)


@app.command("list")
def list_workloads() -> None:
    """List the built-in workloads (framework/name) and whether each framework is installed."""
    table = Table("workload", "description", "status")
    for key, workload in workloads.REGISTRY.items():
        missing = environment.missing_framework(workload.framework)
        table.add_row(key, workload.description, missing or "ready")
    out.print(table)


@app.command()
def env() -> None:
    """The machine, library versions, and which ONNX Runtime providers really run here (and why
    not)."""
    info = environment.describe()
    table = Table("what", "value", show_header=False)
    for key in ("python", "platform", "cpu", "physical_cores", "logical_cores", "memory_gb"):
        table.add_row(key, str(info[key]))
    table.add_row("gpus", ", ".join(info["gpus"]) or "none (nvidia-smi found no GPU)")
    for name, version in info["versions"].items():
        table.add_row(name, version)
    for framework, status in info["frameworks"].items():
        table.add_row(f"framework {framework}", status)
    for provider, status in info["providers"].items():
        table.add_row(f"provider {provider}", status)
    out.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
