"""`compare`: the CI gate, over two runs or two model files measured side by side."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from toolkit import history
from toolkit.cli.common import (
    JOURNEY,
    OUTPUT,
    HistoryOption,
    InputDataOption,
    ShapeOption,
    TimeoutOption,
    TrustOption,
    app,
    err,
    examples,
    execute_and_report,
    fail,
    given_options,
    out,
    parse_ints,
    resume_run,
    split_csv,
    warn,
)
from toolkit.errors import BadInputError, DeploybenchError
from toolkit.report import console

VERDICT = "The verdict"
SIDE_BY_SIDE = "Two model files, measured side by side"
# How the verdict is judged: a resumed side-by-side run may change these, nothing else.
JUDGING = ("--threshold", "--metric", "--format", "--fail-on")


@app.command(rich_help_panel=JOURNEY, epilog=examples(
    "deploybench compare old.onnx new.onnx        # both measured side by side",
    "deploybench compare base/results.json new/results.json --threshold 5%",
    "deploybench compare old.onnx new.onnx --format md > comment.md",
))
def compare(
    ctx: typer.Context,
    base: Annotated[str | None, typer.Argument(
        help="the reference: a results.json, a history run id, or a model file",
        show_default=False)] = None,
    new: Annotated[str | None, typer.Argument(
        help="the one to judge: a results.json, a run id, or a model file", show_default=False)
    ] = None,
    threshold: Annotated[str, typer.Option(
        help="how much slower counts as a regression, e.g. 10%", rich_help_panel=VERDICT)
    ] = "10%",
    metric: Annotated[str, typer.Option(
        help="p50, mean, p90, p99 or min", rich_help_panel=VERDICT)] = "p50",
    fmt: Annotated[str, typer.Option(
        "--format", help="text, or md for a pull-request comment", rich_help_panel=VERDICT)
    ] = "text",
    fail_on: Annotated[str, typer.Option(
        "--fail-on", help="slower (default: exit 1 on a confident regression or a case that "
        "failed in NEW), or inconclusive (also on a case that could not be judged)",
        rich_help_panel=VERDICT)] = "slower",
    providers: Annotated[str | None, typer.Option(
        "--providers", help="cpu, cuda, tensorrt, comma-separated (default cpu)",
        rich_help_panel=SIDE_BY_SIDE)] = None,
    batch_sizes: Annotated[str | None, typer.Option(
        help="e.g. 1,8,64 (the default)", rich_help_panel=SIDE_BY_SIDE)] = None,
    threads: Annotated[int | None, typer.Option(
        help="threads every runtime gets (default: physical cores)",
        rich_help_panel=SIDE_BY_SIDE)] = None,
    rounds: Annotated[int | None, typer.Option(
        help="rounds of each file, alternating (default 4)", rich_help_panel=SIDE_BY_SIDE)
    ] = None,
    input_data: InputDataOption = None,
    shape: ShapeOption = None,
    trust_pickle: TrustOption = False,
    timeout: TimeoutOption = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="two model files: the run's folder (default results/<UTC time>)",
        rich_help_panel=OUTPUT)] = None,
    resume: Annotated[Path | None, typer.Option(
        help="finish an interrupted side-by-side run in this folder, then compare",
        rich_help_panel=OUTPUT)] = None,
    history_path: HistoryOption = None,
) -> None:
    """Gate a change: compare two runs, or two model files measured side by side.

    Each case gets the ratio new/base of its fastest rounds with its 95% interval and a verdict:
    slower, faster, same or inconclusive. Two separate runs are also judged as a whole (every
    case together, against the machine's drift), and each case against that common move. Exit
    code 1 when a case, or every case together, is slower beyond the threshold with confidence,
    or a case failed or lost its parity in NEW (with --fail-on inconclusive, also a case it
    could not judge); 0 otherwise. Two model files are measured in one run, their rounds
    alternating, so the machine's drift drops out: the way to catch a small regression on a
    shared machine.
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
            given = [name for name in given_options(ctx) if name.startswith("--")
                     and name not in (*JUDGING, "--history")]
            if given:
                raise BadInputError(f"{', '.join(given)} apply to two model files measured "
                                    "side by side; BASE and NEW here are runs already made")
    except DeploybenchError as exc:
        raise fail(exc) from None
    if measured:
        from toolkit import executor
        from toolkit.plans.model import ModelRequest, bench_suite
        from toolkit.results import default_out_dir, read_results

        def execute(progress: Callable[[int, int, str], None]) -> executor.RunOutcome:
            if resume is not None:
                return resume_run(ctx, resume, "compare", trust_pickle, progress,
                                  allowed=JUDGING)
            requests = [ModelRequest(p, tuple(shape or ()), input_data, trust_pickle)
                        for p in files]
            suite = bench_suite(providers=split_csv(providers, "--providers"),
                                batch_sizes=parse_ints(batch_sizes, "--batch-sizes"),
                                threads=threads, timeout_s=timeout, rounds=rounds)
            folder = out_dir or default_out_dir()
            return executor.start(pair.plan_pair(*requests, suite, folder), folder,
                                  argv=sys.argv, progress=progress)

        # with --format md, stdout is the comment alone: the run's own tables go to stderr
        outcome = execute_and_report(execute, history_path, err if fmt == "md" else out)
        try:
            run, records = read_results(outcome.results_path)
            before, after = pair.split(run, records)
            result = comparing.compare((run, before), (run, after), limit, metric, fail_on,
                                       paired=True)
        except DeploybenchError as exc:
            raise fail(exc) from None
    else:
        try:
            assert base is not None and new is not None
            result = comparing.compare(history.resolve(base, history_path),
                                       history.resolve(new, history_path),
                                       limit, metric, fail_on)
        except DeploybenchError as exc:
            raise fail(exc) from None
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
        out.print(comparing.render_markdown(result), markup=False, highlight=False,
                  soft_wrap=True)  # Markdown lines are never wrapped: a table row stays whole
        return
    for warning in result.warnings:
        warn(warning)
    if result.common is not None:
        style = "red" if result.common.verdict == "slower" else ""
        out.print("every case together " + result.common.text(), style=style, markup=False,
                  highlight=False)
    out.print(console.compare_table(result.rows, metric, comparing.interval_text,
                                    "new/base ÷ common move" if result.common else "new/base"))
    for title, cases in (("only in base", result.only_base), ("only in new", result.only_new)):
        if cases:
            out.print(f"{title}: {', '.join(cases)}", markup=False, highlight=False)
    for line in result.failed:
        out.print(f"failed in new: {line}", style="red", markup=False, highlight=False)
    out.print(comparing.summary_line(result), markup=False, highlight=False,
              soft_wrap=True)  # one line, for a CI log's grep
