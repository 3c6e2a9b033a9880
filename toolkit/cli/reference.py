"""The CLI reference as Markdown, read from the Typer app (the docs' cli.md is made from it)."""

from __future__ import annotations

import html
from typing import Any

import typer.main

from toolkit.cli.common import app

OPTIONS = "Options"


def reference() -> str:
    """Every command: its summary, what it does, usage, options by panel, examples."""
    group: Any = typer.main.get_command(app)  # typer's own (vendored) click objects
    root = group.context_class(group, info_name="deploybench")
    lines = ["| command | what it does |", "| --- | --- |"]
    commands = [group.commands[name] for name in group.list_commands(root)]
    for command in commands:
        lines.append(f"| [`{command.name}`](#{command.name}) | {_text(summary(command))} |")
    lines.append("")
    for command in commands:
        lines += _command(command, command.context_class(command, info_name=command.name,
                                                       parent=root))
    return "\n".join(lines)


def summary(command: Any) -> str:
    """The line `deploybench --help` shows for a command: its help's first paragraph."""
    return (command.help or "").strip().split("\n\n")[0].replace("\n", " ")


def examples(command: Any) -> list[str]:
    """The example invocations of a command's epilog."""
    return [line.strip() for line in (command.epilog or "").splitlines()
            if line.strip().startswith("deploybench ")]


def _command(command: Any, ctx: Any) -> list[str]:
    paragraphs = (command.help or "").strip().split("\n\n")
    lines = [f"## {command.name}", "", f"**{_text(paragraphs[0])}**", ""]
    lines += [_text(" ".join(p.split())) + "\n" for p in paragraphs[1:]]
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines += ["```text", f"deploybench {command.name} {usage}", "```", ""]
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    if arguments:
        lines += ["| argument | what |", "| --- | --- |"]
        lines += [f"| `{p.name.upper()}` | {_text(getattr(p, 'help', '') or '')} |"
                  for p in arguments]
        lines.append("")
    panels: dict[str, list[Any]] = {}
    for param in command.params:
        if param.param_type_name == "option" and not param.hidden:
            panels.setdefault(getattr(param, "rich_help_panel", None) or OPTIONS, []).append(param)
    for panel, options in panels.items():
        lines += [f"**{panel}**", "", "| option | type | what |", "| --- | --- | --- |"]
        lines += [_option(option, ctx) for option in options]
        lines.append("")
    if examples(command):
        lines += ["Examples:", "", "```sh", *examples(command), "```", ""]
    return lines


def _option(option: Any, ctx: Any) -> str:
    names = ", ".join(f"`{name}`" for name in option.opts)
    shown_as = option.get_help_record(ctx)[0]  # "--threads <int>", as --help shows it
    kind = "flag" if option.is_flag else shown_as.split()[-1].strip("<>")
    default = option.default
    shown = "" if default in (None, False, ()) or callable(default) else f" (default `{default}`)"
    return f"| {names} | {kind} | {_text(option.help or '')}{shown} |"


def _text(text: str) -> str:
    """Help text as Markdown: rich's escapes undone, HTML and table pipes escaped."""
    return html.escape(text.replace("\\[", "["), quote=False).replace("|", "\\|")
