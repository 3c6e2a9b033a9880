"""MkDocs hook: the CLI reference page is generated from the Typer app, so it cannot drift."""

from __future__ import annotations

MARKER = "<!-- cli-reference -->"


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001 (MkDocs' API)
    if MARKER not in markdown:
        return markdown
    from toolkit.cli.reference import reference

    return markdown.replace(MARKER, reference())
