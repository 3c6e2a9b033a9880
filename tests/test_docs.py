"""The docs: the README as a front door, the site built with --strict, and no diary in code."""

from __future__ import annotations

import ast
import html
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest
import typer.main

from tests.browser import chromium, inked_share
from toolkit.cli import app
from toolkit.cli.reference import examples

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_the_readme_is_short_and_starts_with_the_install_and_the_two_commands():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines (at most 250)"
    first = "\n".join(lines[:40])
    assert "make run" in first and "make test" in first and "pip install" in first


def test_the_readmes_links_lead_to_files_that_exist():
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert local, "the README links into the docs"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


# a date, or a figure seen on some machine on some day: the dated results' business
DIARY = re.compile(r"\b20\d\d-\d\d-\d\d\b|\bseen here\b|\bmeasured here\b|\bhere on\b|"
                   r"\bthis project's\b|\bquieter spell\b|\b(this|that) (morning|afternoon)\b",
                   re.IGNORECASE)


def _comments_and_docstrings(path: Path) -> list[tuple[int, str]]:
    source = path.read_text(encoding="utf-8")
    found = [(tok.start[0], tok.string) for tok in
             tokenize.generate_tokens(io.StringIO(source).readline)
             if tok.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                found.append((node.body[0].lineno, doc))
    return found


def test_no_comment_or_docstring_in_the_code_holds_a_dated_measurement():
    hits = [f"{path.relative_to(ROOT)}:{line}: {DIARY.search(text).group(0)!r}"
            for folder in ("toolkit", "exporters") for path in sorted((ROOT / folder).rglob("*.py"))
            for line, text in _comments_and_docstrings(path) if DIARY.search(text)]
    assert not hits, "move these figures to benchmarks/results/:\n" + "\n".join(hits)


def test_every_module_docstring_opens_with_one_line_under_100_characters():
    bad = []
    for folder in ("toolkit", "exporters"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False)
            first = (doc or "").split("\n")[0]
            if not first.strip() or len(first) >= 100:
                bad.append(f"{path.relative_to(ROOT)}: {first!r}")
    assert not bad, "\n".join(bad)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    pytest.importorskip("material", reason="mkdocs-material is not installed")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def test_the_site_builds_strictly_with_every_command_in_the_cli_reference(site):
    page = (site / "cli.html").read_text(encoding="utf-8")
    text = html.unescape(re.sub(r"<[^>]+>", "", page))  # code blocks are split by highlighting
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        assert f'id="{name}"' in page, f"{name} is missing from the CLI reference"
        for example in examples(command):
            assert example.split("  #")[0].strip() in text, example
    for name in ("--p99-ms", "--workers", "--threads", "--fail-on"):
        assert name in text


def test_the_measured_results_are_part_of_the_site(site):
    for topic in ("serving", "advise", "compare", "harness"):
        source = (ROOT / "benchmarks" / "results" / f"{topic}.md").read_text(encoding="utf-8")
        first_entry = re.search(r"^## (.+)$", source, re.MULTILINE)
        assert first_entry, f"benchmarks/results/{topic}.md has no entry"
        page = (site / "results" / f"{topic}.html").read_text(encoding="utf-8")
        assert "**Commit" in source or "Commit:" in source
        assert "<h2" in page and "Command" in page


def test_the_home_page_renders_in_a_real_browser(site, tmp_path):
    home = (site / "index.html").as_uri()
    dom = subprocess.run([*chromium(tmp_path / "profile"), "--dump-dom", home],
                         capture_output=True, text=True, timeout=120, check=False).stdout
    for text in ("deploybench", "Getting started", "Gating CI with compare", "Command line"):
        assert text in dom, f"the rendered home page lacks {text!r}"
    inked = inked_share(home, tmp_path / "home.png", tmp_path / "profile2", "1200,900")
    assert inked > 0.02, f"the page looks blank ({inked:.1%} of pixels are not white)"
