"""Bring your own model: bench, export and inspect on files the tests make, and every bad input
ending in one line with exit code 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import model_files
from tests.children import Children
from toolkit.cli import app
from toolkit.environment import missing_framework
from toolkit.timing import Budget

CliRunner = pytest.importorskip("typer.testing").CliRunner

runner = CliRunner()
HERE = Path(__file__).parent
TINY = Budget(warmup=1, min_iterations=3, min_seconds=0.0, max_seconds=0.2)


def cli(*args: str):
    return runner.invoke(app, list(args), terminal_width=300)


def bench_records(path: Path, out: Path, **request) -> list[dict]:
    """`bench` through the library with a tiny timing budget (the CLI's is sized for people)."""
    from toolkit import executor
    from toolkit.plans import model as bench

    suite = bench.bench_suite(batch_sizes=(1, 4), threads=1, rounds=1).replace(budget=TINY)
    outcome = executor.start(bench.plan_model(bench.ModelRequest(path, **request), suite, out),
                             out)
    assert not outcome.interrupted
    return json.loads(outcome.results_path.read_text())["records"]


def timed(records: list[dict]) -> set[tuple[str, str, int]]:
    return {(r["runtime"], r["variant"], r["batch_size"]) for r in records
            if r["phase"] == "infer" and r["status"] == "ok"}


# --- ONNX files the project did not export itself ---------------------------------------------

def test_inspect_shows_inputs_outputs_operators_and_batch(tmp_path):
    result = cli("inspect", str(model_files.two_inputs(tmp_path / "two.onnx")))
    assert result.exit_code == 0, result.output
    assert "x: float32 [N x seq]" in result.output and "ids: int64 [N x seq]" in result.output
    assert "operators: Cast 1, Add 1" in result.output
    assert "batch dimension: free" in result.output
    fixed = cli("inspect", str(model_files.relu(tmp_path / "fixed.onnx", batch=4)))
    assert "batch dimension: fixed" in fixed.output


def test_bench_cli_on_an_onnx_file_prints_latency_per_batch(tmp_path):
    result = cli("bench", str(model_files.relu(tmp_path / "relu.onnx")), "--batch-sizes", "1,4",
                 "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "onnx/relu" in result.output and "batch 4" in result.output
    assert "one prediction takes" in result.output
    assert (tmp_path / "out" / "results.json").exists()
    assert (tmp_path / "out" / "report.md").exists()


def test_two_inputs_of_different_types_with_shape(tmp_path):
    records = bench_records(model_files.two_inputs(tmp_path / "two.onnx"), tmp_path / "o",
                            shapes=("x=5", "ids=5"))
    assert timed(records) == {("onnxruntime", v, b) for v in ("run", "iobinding") for b in (1, 4)}
    with np.load(tmp_path / "o" / "inputs.npz") as inputs:
        assert inputs["x"].dtype == np.float32 and inputs["ids"].dtype == np.int64
        assert inputs["x"].shape[1:] == (5,)


def test_two_inputs_from_an_npz(tmp_path):
    data = tmp_path / "data.npz"
    np.savez(data, x=np.ones((3, 7), np.float32), ids=np.arange(21).reshape(3, 7))
    records = bench_records(model_files.two_inputs(tmp_path / "two.onnx"), tmp_path / "o",
                            input_data=data)
    assert ("onnxruntime", "run", 4) in timed(records)


def test_fixed_batch_is_measured_at_that_size_with_a_notice(tmp_path):
    records = bench_records(model_files.relu(tmp_path / "fixed.onnx", batch=3), tmp_path / "o")
    assert {b for _, _, b in timed(records)} == {3}
    skipped = [r for r in records if r["status"] == "skipped"]
    assert {r["batch_size"] for r in skipped} == {1, 4}
    assert all("fixed at 3" in r["reason"] for r in skipped)


def test_zipmap_output_does_not_break_timing(tmp_path):
    pytest.importorskip("skl2onnx")
    records = bench_records(model_files.zipmap_classifier(tmp_path / "zip.onnx"), tmp_path / "o")
    # plain run is timed; IO binding cannot bind a sequence of maps and is left out
    assert timed(records) == {("onnxruntime", "run", 1), ("onnxruntime", "run", 4)}


def test_nan_in_input_data_is_a_warning_not_an_error(tmp_path):
    data = tmp_path / "nan.npy"
    x = np.ones((2, 4), np.float32)
    x[0, 0] = np.inf
    np.save(data, x)
    result = cli("bench", str(model_files.relu(tmp_path / "r.onnx")), "--input-data", str(data),
                 "--batch-sizes", "1", "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    assert "warning: --input-data" in result.output and "NaN or infinite" in result.output


# --- native files: exported, checked for parity, measured natively and on ONNX Runtime -------

@pytest.fixture(scope="module")
def native_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("native")
    made = {}
    scripts = {name: [sys.executable, str(HERE / script), str(directory)]
               for name, script in (("torch", "torch_files.py"), ("keras", "keras_file.py"))
               if missing_framework(name) is None}
    children = Children(scripts)  # both at once: their imports overlap on the cores
    try:
        for name in scripts:
            proc = children.result(name)
            assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        children.close()
    if "torch" in scripts:
        made.update(pt=directory / "small.pt", pt2=directory / "small.pt2")
    if "keras" in scripts:
        made["keras"] = directory / "small.keras"
    if missing_framework("sklearn") is None:
        made["joblib"] = model_files.joblib_classifier(directory / "iris.joblib")
    return made


@pytest.mark.parametrize("kind, request_args, native_variant", [
    ("pt", {"shapes": ("3x8x8",)}, "inference_mode"),
    ("pt2", {"shapes": ("input=3x8x8",)}, "inference_mode"),
    ("keras", {}, "tf.function"),
    ("joblib", {"trust_pickle": True}, "predict"),
])
def test_bench_native_file_exports_checks_parity_and_measures_both(
        native_files, tmp_path, kind, request_args, native_variant):
    if kind not in native_files:
        pytest.skip(f"the framework for .{kind} files is not installed")
    records = bench_records(native_files[kind], tmp_path / "o", **request_args)
    parity = [r for r in records if r["phase"] == "parity"]
    assert parity and parity[0]["parity"]["passed"], parity
    got = timed(records)
    assert ("native", native_variant, 1) in got and ("native", native_variant, 4) in got
    assert ("onnxruntime", "run", 1) in got and ("onnxruntime", "run", 4) in got
    export = next(r for r in records if r["phase"] == "export")
    assert export["info"]["batch_free"] is True
    # one ONNX file is kept, whichever exporter method produced it
    assert [p.name for p in (tmp_path / "o").glob("*.onnx")] == ["model.onnx"]
    if kind == "pt":  # the dynamo exporter cannot take TorchScript: the legacy one did
        assert export["info"]["exporter"] == "torch.onnx legacy"
        assert export["info"]["earlier_attempts"][0].startswith("torch.onnx dynamo failed")


def test_export_cli_writes_a_checked_onnx_and_prints_parity(native_files, tmp_path):
    if "pt2" not in native_files:
        pytest.skip("torch is not installed")
    target = tmp_path / "small.onnx"
    result = cli("export", str(native_files["pt2"]), "--out", str(target), "--shape", "3x8x8")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "parity on 64 rows" in result.output
    assert "pass" in result.output
    import onnx

    onnx.checker.check_model(str(target))


def test_export_of_a_pickle_needs_trust(native_files, tmp_path):
    if "joblib" not in native_files:
        pytest.skip("scikit-learn is not installed")
    result = cli("export", str(native_files["joblib"]), "--out", str(tmp_path / "m.onnx"))
    assert result.exit_code == 2 and "--trust-pickle" in result.output
    trusted = cli("export", str(native_files["joblib"]), "--out", str(tmp_path / "m.onnx"),
                  "--trust-pickle")
    assert trusted.exit_code == 0, trusted.output


def test_keras_shape_that_does_not_fit_is_bad_input(native_files, tmp_path):
    if "keras" not in native_files:
        pytest.skip("TensorFlow is not installed")
    result = cli("bench", str(native_files["keras"]), "--shape", "3x16", "--out",
                 str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "does not fit the model's input" in result.output and "Traceback" not in result.output


# --- bad input: one line naming the file or value, exit code 2, no traceback ------------------

def bad_inputs(tmp_path: Path) -> list[tuple[list[str], str]]:
    text = tmp_path / "text.onnx"
    text.write_text("this is not a model\n")
    good = model_files.relu(tmp_path / "good.onnx")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(model_files.two_inputs(tmp_path / "two.onnx").read_bytes()[:60])
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    odd = tmp_path / "model.h5"
    odd.write_bytes(b"x")
    pickle = tmp_path / "model.pkl"
    pickle.write_bytes(b"x")
    floats = tmp_path / "floats.npz"
    np.savez(floats, x=np.ones((2, 3), np.float32), ids=np.ones((2, 3), np.float32))
    wide = tmp_path / "wide.npy"
    np.save(wide, np.ones((2, 9), np.float32))
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    two = str(tmp_path / "two.onnx")
    return [
        (["bench", str(tmp_path / "missing.onnx")], "no such file"),
        (["bench", str(empty)], "the file is empty"),
        (["bench", str(text)], "not a readable ONNX model"),
        (["bench", str(truncated)], "truncated"),
        (["bench", str(odd)], "unsupported extension '.h5'"),
        (["bench", str(pickle)], "pass --trust-pickle"),
        (["bench", two], "has dimension(s) seq besides the batch"),
        (["bench", two, "--shape", "nope=3"], "input 'nope', which the model does not have"),
        (["bench", str(good), "--shape", "x=3x3x3"], "does not fit the model's input"),
        (["bench", two, "--input-data", str(floats)], "holds float32 values"),
        (["bench", str(good), "--input-data", str(wide)], "has shape (2, 9)"),
        (["bench", str(good), "--input-data", str(tmp_path / "none.npy")], "no such file"),
        (["bench", str(good), "--out", str(blocker / "sub")], "cannot write there"),
        (["bench", str(good), "--shape", "x=abc"], "give NAME=DIMS"),
        (["export", str(good), "--out", str(tmp_path / "o.onnx")], "is already ONNX"),
        (["inspect", str(odd)], "unsupported extension"),
    ]


def test_every_bad_input_is_one_line_with_exit_2(tmp_path):
    for args, needle in bad_inputs(tmp_path):
        result = cli(*args)
        where = " ".join(args)
        assert result.exit_code == 2, (where, result.output)
        assert needle in result.output, (where, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (where, result.output)
        assert "Traceback" not in result.output
