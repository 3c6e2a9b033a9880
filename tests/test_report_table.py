"""The one options table: built once from a summary, and the same rows in the terminal, Markdown
and HTML reports."""

from __future__ import annotations

import re

import pytest
from rich.console import Console

from toolkit.report import html, markdown, terminal
from toolkit.report.summary import WorkloadSummary, summarise
from toolkit.report.table import options_table
from toolkit.results import Parity, Record
from toolkit.stats import Stats, throughput_rows_per_s

SIZES = (1, 4)
PASSED = Parity(1e-7, 1e-6, 1.0, True, 1e-4, 1e-5, 10)
FAILED = Parity(0.5, 0.9, 0.8, False, 1e-4, 1e-5, 10)


def timed(variant: str, runtime: str, p50_ms: float, **extra) -> list[Record]:
    """Infer records of one option at batch 1 and 4 (batch 4 twice as slow)."""
    records = []
    for batch in SIZES:
        p50 = p50_ms * (2 if batch == 4 else 1)
        records.append(Record(
            workload="seed-dense", framework="keras", phase="infer", runtime=runtime,
            variant=variant, provider="cpu", batch_size=batch,
            stats=Stats.from_ms([p50 * 0.9, p50, p50 * 1.1]),
            throughput_rows_s=throughput_rows_per_s(batch, [p50]), flops_per_row=1_000_000,
            **extra))
    return records


@pytest.fixture()
def summary() -> WorkloadSummary:
    records = [
        *timed("predict", "native", 10.0, idiomatic=True),
        *timed("run", "onnxruntime", 1.0, parity=PASSED, warnings=("noisy: close other apps",)),
        *timed("iobinding", "onnxruntime", 0.5, parity=FAILED),
        Record(workload="seed-dense", framework="keras", phase="first_inference",
               variant="jit", provider="cpu", seconds=0.1, batch_size=1),
        Record(workload="seed-dense", framework="keras", phase="infer", variant="jit",
               provider="cpu", batch_size=1, status="failed", reason="RuntimeError: no XLA"),
    ]
    (found,) = summarise(records, SIZES)
    return found


LABELS = ("keras predict (idiomatic)", "onnxruntime cpu !", "onnxruntime iobinding cpu")


def test_the_table_has_one_row_per_timed_option(summary):
    table = options_table(summary)
    assert [r.label for r in table.rows] == list(LABELS)
    assert [c.name for c in table.columns] == [
        "option", "batch 1", "batch 4", "rows/s, batch 4", "spread, batch 4",
        "GFLOP/s, % of peak, batch 4", "size", "parity or accuracy"]
    assert all(len(r.cells) == len(table.columns) for r in table.rows)
    assert "keras jit" in [o.label for o in summary.options]  # an option, but never timed
    assert not any("jit" in r.label for r in table.rows)


def test_cells_carry_the_speedup_throughput_and_verdicts(summary):
    native, ort, failed = options_table(summary).rows
    assert native.cells[1:3] == ("10.0 ms", "20.0 ms")  # the baseline has no speed-up
    assert ort.cells[1:3] == ("1.00 ms 10×", "2.00 ms 10×")
    assert failed.cells[1] == "500 µs 20×"
    assert ort.cells[3] == "2.00k"  # 4 rows in 2 ms
    assert ort.cells[4] == "10%"  # IQR 0.2 ms over the median 2 ms
    assert ort.cells[5].startswith("2 GFLOP/s")  # 1 MFLOP per row, 2k rows/s
    assert native.cells[-1] == "reference" and ort.cells[-1].startswith("pass")
    assert failed.cells[-1].startswith("FAIL")
    assert [r.trusted for r in (native, ort, failed)] == [True, True, False]
    assert [r.flagged for r in (native, ort, failed)] == [False, True, False]


def test_terminal_renders_the_rows_and_marks_the_failed_one_red(summary):
    console = Console(record=True, width=200, color_system="truecolor")
    terminal.render([summary], console)
    styled = console.export_text(styles=True, clear=False)
    text = console.export_text()
    for label in LABELS:
        assert label in text
    assert "1.00 ms 10×" in text and "keras jit (b=1) failed" in text
    red = [line for line in styled.splitlines() if "\x1b[31m" in line]
    assert len(red) == 1 and "onnxruntime iobinding cpu" in red[0] and "FAIL" in red[0]
    assert "keras jit" not in _table_lines(text)


def _table_lines(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if line.startswith(("│", "┃")))


def test_markdown_renders_the_same_rows(summary):
    text = markdown.render([summary], [], [])
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[1] == "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    assert [r.split(" | ")[0].removeprefix("| ") for r in rows[2:]] == list(LABELS)
    assert "| 1.00 ms 10× |" in rows[3] and "| FAIL " in rows[4]
    assert not any("jit" in r for r in rows)


def test_html_renders_the_same_rows_escaped_and_marks_the_failed_one(summary):
    page = html.render([summary], [], [])
    table = page[page.index("<h3>Every option</h3>"):]
    table = table[:table.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", table)
    labels = [re.sub(r"<[^>]+>", "", r.split("</td>")[0]) for r in rows[1:]]
    assert labels == list(LABELS)
    assert "<td class='num'>1.00 ms 10×</td>" in rows[2]
    assert rows[3].count('class="bad"') == 2 and re.search(r'class="bad">FAIL', rows[3])
    assert 'class="bad"' not in rows[1] + rows[2]
    assert "jit" not in table


def test_html_escapes_option_labels(summary):
    summary.options[0].label = "keras <predict> & co"
    page = html.render([summary], [], [])
    assert "keras &lt;predict&gt; &amp; co (idiomatic)" in page
    assert "<predict>" not in page
