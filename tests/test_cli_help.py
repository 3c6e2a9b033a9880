"""Every command's help: a one-line summary, options in panels, examples that parse."""

from __future__ import annotations

import shlex

import pytest
import typer.main
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.cli.reference import examples, summary

GROUP = typer.main.get_command(app)
ROOT = GROUP.context_class(GROUP, info_name="deploybench")
COMMANDS = {name: GROUP.commands[name] for name in GROUP.list_commands(ROOT)}
JOURNEY = ("run", "bench", "compare", "loadgen", "advise")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_summary_is_one_line_of_at_most_80_characters(name):
    line = summary(COMMANDS[name])
    assert line and len(line) <= 80, f"{name}: {len(line)} characters: {line!r}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_shows_two_or_three_examples_that_parse(name):
    command = COMMANDS[name]
    shown = examples(command)
    assert 2 <= len(shown) <= 3, f"{name}: {len(shown)} examples"
    for line in shown:
        for part in _invocations(line):
            sub = COMMANDS.get(part[1])
            assert sub is not None, f"{line!r}: no command {part[1]!r}"
            # the parser itself: an unknown option or a value of the wrong type raises here
            sub.make_context(part[1], part[2:], parent=ROOT)


def _options(name: str) -> list:
    return [p for p in COMMANDS[name].params if p.param_type_name == "option"]


@pytest.mark.parametrize("name", sorted(n for n in COMMANDS if len(_options(n)) > 10))
def test_a_command_of_more_than_ten_options_groups_them_in_panels(name):
    options = _options(name)
    loose = [p.opts[0] for p in options if not getattr(p, "rich_help_panel", None)]
    assert not loose, f"{name}: not in a panel: {', '.join(loose)}"


def test_the_top_level_help_names_the_journey_and_each_summary_whole():
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    for name in JOURNEY:
        assert f" {name} " in result.output
    for name, command in COMMANDS.items():
        assert summary(command) in result.output, f"{name}'s summary is wrapped or cut"


def test_loadgens_threads_mean_threads_per_worker_as_in_run_and_bench():
    helps = {name: next(p.help for p in COMMANDS[name].params if p.name == "threads")
             for name in ("run", "bench", "loadgen")}
    assert "each worker" in helps["loadgen"]
    assert all("every runtime" in helps[name] for name in ("run", "bench"))


def _invocations(line: str) -> list[list[str]]:
    """The deploybench calls in an example line (a comment, pipes and && left out)."""
    words = shlex.split(line.split("  #")[0])
    calls, current = [], []
    for word in [*words, "&&"]:
        if word in ("&&", "|", ">", "||"):
            if current and current[0] == "deploybench":
                calls.append(current)
            current = [] if word != ">" else ["(redirect)"]
        else:
            current.append(word)
    return calls
