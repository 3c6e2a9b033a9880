"""Reports from a real run: CSV, self-contained HTML (rendered in Chromium where it exists),
and merging runs from two machines."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.browser import inked_share
from toolkit.cli import app
from toolkit.report import write_reports
from toolkit.report.csv import COLUMNS

CliRunner = pytest.importorskip("typer.testing").CliRunner

runner = CliRunner()


@pytest.fixture()
def results(tiny_run) -> Path:
    proc, out = tiny_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out / "results.json"


def test_run_writes_every_format(results):
    for name in ("report.html", "report.md", "report.csv"):
        assert (results.parent / name).exists()


def test_a_run_folder_stands_for_its_results_file(results, tmp_path):
    done = CliRunner().invoke(app, ["report", str(results.parent), "--format", "md",
                                    "--out", str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "report.md").is_file() and not (tmp_path / "report.html").exists()


def test_csv_has_one_row_per_record_with_stable_columns(results, tmp_path):
    _, (path,) = write_reports(results, tmp_path, ["csv"])
    with path.open() as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        rows = list(reader)
    records = json.loads(results.read_text())["records"]
    assert len(rows) == len(records)
    timed = [r for r in rows if r["phase"] == "infer" and r["status"] == "ok"]
    assert timed and all(float(r["p50_ms"]) > 0 and int(r["n"]) >= 3 for r in timed)


def test_html_is_self_contained_with_charts_and_decisions(results, tmp_path):
    _, (path,) = write_reports(results, tmp_path, ["html"])
    page = path.read_text()
    assert page.count("<svg") >= 3
    assert "The gap: training against one prediction" in page
    assert "latency, batch 1" in page and "throughput, batch 4" in page
    assert "Cold start and memory" in page
    for external in ("<script", "<link", "src=\"http", "url(http", "@import"):
        assert external not in page


def test_flops_and_percent_of_peak_for_onnx_cases(results, tmp_path):
    records = json.loads(results.read_text())["records"]
    ort = [r for r in records if r["runtime"] == "onnxruntime" and r["phase"] == "infer"
           and r["status"] == "ok" and r["framework"] in ("torch", "keras")]
    assert ort and all(r["flops_per_row"] > 0 for r in ort)
    run = json.loads(results.read_text())["run"]
    assert run["environment"]["peak_gflops"] > 0
    _, (path,) = write_reports(results, tmp_path, ["html"])
    page = path.read_text()
    assert "FLOPs per row, counted from the ONNX graph" in page
    assert "GFLOP/s, " in page and "%</td>" in page


def test_two_machines_merge_with_the_machine_named(results, tmp_path):
    other = tmp_path / "other.json"
    payload = json.loads(results.read_text())
    payload["run"]["environment"]["hostname"] = "gpu-host"
    other.write_text(json.dumps(payload))
    result = runner.invoke(app, ["report", str(results), str(other), "--format", "md",
                                 "--out", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "merged" / "report.md").read_text()
    assert "@gpu-host" in text and "**gpu-host**" in text


def test_the_html_report_renders_in_a_real_browser(results, tmp_path):
    _, (page,) = write_reports(results, tmp_path, ["html"])
    inked = inked_share(page.as_uri(), tmp_path / "shot.png", tmp_path / "profile")
    assert inked > 0.02, f"the page looks blank ({inked:.1%} of pixels are not white)"
