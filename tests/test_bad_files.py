"""Every bad file is one `error:` line and exit 2, or, where the work can go on without it, a
`warning:` line: suite files of the wrong types, corrupt arrays, history databases that cannot
be written, a cache folder that cannot be written, an export ONNX Runtime cannot load."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests import model_files
from toolkit import history
from toolkit.cli import app

CliRunner = pytest.importorskip("typer.testing").CliRunner

runner = CliRunner()


def one_error_line(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert needle in lines[0] and "Traceback" not in result.output, lines[0]


@pytest.mark.parametrize("text, needle", [
    ('batch_sizes = ["x"]', "batch_sizes = ['x'] is not a list of whole numbers"),
    ('threads = "auto"', "threads = 'auto' is not a whole number"),
    ("export = 18", "export = 18 is not a table"),
    ('workloads = "digits-mlp"', "workloads = 'digits-mlp' is not a list of names"),
    ("[timing]\nmin_seconds = \"long\"", "[timing] min_seconds = 'long' is not a number"),
    ("[parity]\nrtol = true", "[parity] rtol = True is not a number"),
    ("[timing]\nwarmpu = 3", "unknown key 'warmpu' in [timing]"),
])
def test_a_suite_with_wrong_types_names_the_key(tmp_path, text, needle):
    suite = tmp_path / "s.toml"
    suite.write_text(f'workloads = ["sklearn/seed-linreg"]\n{text}\n'
                     if not text.startswith("workloads") else text + "\n")
    result = runner.invoke(app, ["run", "--suite", str(suite), "--out", str(tmp_path / "o")],
                           terminal_width=300)
    one_error_line(result, needle)
    assert str(suite) in result.output


@pytest.mark.parametrize("content", [b"PK\x03\x04 not really a zip", b"", b"\x00" * 64])
def test_a_corrupt_npz_is_one_error_line(tmp_path, content):
    data = tmp_path / "data.npz"
    data.write_bytes(content)
    result = runner.invoke(app, ["bench", str(model_files.relu(tmp_path / "r.onnx")),
                                 "--input-data", str(data), "--out", str(tmp_path / "o")],
                           terminal_width=300)
    one_error_line(result, f"--input-data {data}: cannot be read")


def test_a_damaged_samples_file_is_one_error_line(tmp_path):
    from toolkit.results import Record, ResultsFile, read_samples
    from toolkit.stats import Stats

    path = tmp_path / "results.json"
    ResultsFile(path, {}).append([Record("w", "onnx", "infer", batch_size=1,
                                         stats=Stats.from_ms([1.0, 2.0]))])
    assert list(read_samples(path)["0"]) == [1.0, 2.0]
    (tmp_path / "samples.npz").write_bytes(b"damaged")
    with pytest.raises(Exception, match="samples.npz: the raw samples cannot be read"):
        read_samples(path)


@pytest.fixture()
def bench_args(tmp_path) -> list[str]:
    model = model_files.relu(tmp_path / "relu.onnx")
    return ["bench", str(model), "--batch-sizes", "1", "--out", str(tmp_path / "o")]


@contextlib.contextmanager
def immutable(path: Path):
    """The file made read-only for root too (chattr +i), or the test skipped."""
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip("chattr +i is not available here: root writes read-only files anyway")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_a_history_that_is_not_sqlite(tmp_path, bench_args):
    database = tmp_path / "h.sqlite"
    database.write_text("not a database, just text " * 40)
    stored = runner.invoke(app, [*bench_args, "--history", str(database)], terminal_width=300)
    assert stored.exit_code == 0, stored.output  # the run and its reports come first
    assert "results:" in stored.output and "report:" in stored.output
    assert "warning: the run was not stored in the history" in stored.output
    assert "not a deploybench history" in stored.output
    one_error_line(runner.invoke(app, ["history", "--history", str(database)]),
                   "not a deploybench history")


def test_a_locked_history(tmp_path, bench_args, monkeypatch):
    database = tmp_path / "h.sqlite"
    with history.connect(database):
        pass
    monkeypatch.setattr(history, "LOCK_WAIT_S", 0.2)
    holder = sqlite3.connect(database)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        stored = runner.invoke(app, [*bench_args, "--history", str(database)],
                               terminal_width=300)
        assert stored.exit_code == 0, stored.output
        assert "warning: the run was not stored in the history" in stored.output
        assert "locked by another process" in stored.output
        one_error_line(runner.invoke(app, ["history", "--history", str(database)]),
                       "locked by another process")
    finally:
        holder.rollback()
        holder.close()


def test_a_read_only_history(tmp_path, bench_args):
    database = tmp_path / "h.sqlite"
    with history.connect(database):
        pass
    with immutable(database):
        stored = runner.invoke(app, [*bench_args, "--history", str(database)],
                               terminal_width=300)
        assert stored.exit_code == 0, stored.output
        assert "warning: the run was not stored in the history" in stored.output
        assert "read-only" in stored.output
        listing = runner.invoke(app, ["history", "--history", str(database)])
        assert listing.exit_code == 0 and "no runs stored yet" in listing.output  # reads work


def test_a_cache_folder_that_cannot_be_written_costs_a_warning(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))
    # the figure, not its cost
    monkeypatch.setattr("toolkit.flops.measure_peak", lambda threads: 123.0)
    result = runner.invoke(app, ["env", "--peak"], terminal_width=300)
    assert result.exit_code == 0, result.output
    assert "123.0 GFLOP/s" in result.output
    assert "warning: the peak is not cached" in result.output


def test_an_export_onnx_runtime_cannot_load_makes_way_for_the_next_method(tmp_path):
    from onnx import TensorProto, helper

    from exporters.base import timed_export
    from exporters.checked import export_with_parity

    def model(op: str, domain: str = ""):
        graph = helper.make_graph(
            [helper.make_node(op, ["input"], ["y"], domain=domain)], "g",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])
        opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain
                                                  else [])
        return helper.make_model(graph, opset_imports=opsets, ir_version=8)

    class TwoMethods:  # a first method whose file passes onnx.checker but not ONNX Runtime
        methods = ("unknown op", "relu")

        def export(self, native, sample, path, opset, method, require_free_batch=True):
            made = model("Nope", "com.example") if method == "unknown op" else model("Relu")
            return timed_export(lambda: path.write_bytes(made.SerializeToString()), path,
                                method=method, distribution="onnx", score_output=0)

    x = np.array([[-1.0, 0.0, 2.0]] * 4, dtype=np.float32)
    from exporters.checked import ExportSettings

    outcome = export_with_parity(TwoMethods(), None, x, np.maximum(x, 0), "regression",
                                 tmp_path / "m.onnx", ExportSettings(), require_free_batch=True)
    assert outcome.exported is not None and outcome.exported.method == "relu"
    assert outcome.parity is not None and outcome.parity.passed
    assert len(outcome.attempts) == 1
    assert outcome.attempts[0].startswith("unknown op: ONNX Runtime cannot run the export")
    assert "com.example:Nope" in outcome.attempts[0]
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_results_are_small_readable_by_others_and_keep_their_samples(tmp_path):
    """A one-model bench: results.json under 100 KB, mode from the umask (not 0600), and the
    raw samples of every timing in samples.npz beside it."""
    import os

    from toolkit import executor
    from toolkit.plans import model as bench
    from toolkit.results import read_results, read_samples
    from toolkit.timing import Budget

    old = os.umask(0o022)
    try:
        suite = bench.bench_suite(batch_sizes=(1, 8, 64), threads=1, rounds=3).replace(
            budget=Budget(warmup=10, min_iterations=2000, min_seconds=0.05, max_seconds=1))
        out = tmp_path / "o"
        request = bench.ModelRequest(model_files.relu(tmp_path / "relu.onnx"))
        outcome = executor.start(bench.plan_model(request, suite, out), out)
    finally:
        os.umask(old)
    path = outcome.results_path
    assert path.stat().st_size < 100_000, path.stat().st_size
    assert path.stat().st_mode & 0o777 == 0o644
    payload = json.loads(path.read_text())
    timed = [(i, r) for i, r in enumerate(payload["records"]) if r["phase"] == "infer"]
    assert len(timed) == 18 and all("samples_ms" not in r["stats"] for _, r in timed)
    samples = read_samples(path)
    _, records = read_results(path)
    for index, raw in timed:
        assert raw["samples"] == str(index)
        assert len(samples[str(index)]) == raw["stats"]["n"] >= 2000
        assert records[index].stats.p50_ms == pytest.approx(np.median(samples[str(index)]))
