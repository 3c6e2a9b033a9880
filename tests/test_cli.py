"""The CLI end to end: a real run on a tiny suite, list, env, and bad input."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import cuda_usable, write_suite
from toolkit.cli import app
from toolkit.environment import no_nvidia_gpu
from toolkit.results import SCHEMA

CliRunner = pytest.importorskip("typer.testing").CliRunner

runner = CliRunner()


def test_run_writes_results_and_report_for_all_three_frameworks(tiny_run):
    proc, out = tiny_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads((out / "results.json").read_text())
    assert payload["schema"] == SCHEMA
    assert payload["run"]["finished"] and not payload["run"]["interrupted"]
    records = payload["records"]
    for framework in ("sklearn", "keras", "torch"):
        mine = [r for r in records if r["framework"] == framework]
        phases = {r["phase"] for r in mine if r["status"] == "ok"}
        assert {"train", "export", "parity", "load", "first_inference", "infer"} <= phases
        for runtime in ("native", "onnxruntime"):
            sizes = {r["batch_size"] for r in mine if r["phase"] == "infer"
                     and r["runtime"] == runtime and r["status"] == "ok"}
            assert sizes == {1, 4}, (framework, runtime)
    report = (out / "report.md").read_text()
    assert "## keras/seed-dense" in report and "training took" in report
    assert "faster than keras predict" in proc.stdout


def test_every_onnx_timing_carries_its_parity(tiny_run):
    _, out = tiny_run
    records = json.loads((out / "results.json").read_text())["records"]
    timed = [r for r in records if r["runtime"] == "onnxruntime" and r["phase"] == "infer"
             and r["status"] == "ok"]
    assert timed and all(r["parity"] is not None and r["parity"]["passed"] for r in timed)
    assert all(r["threads"] == 1 and r["stats"]["n"] >= 3 for r in timed)


def test_cuda_is_skipped_with_a_reason_and_never_faked(tiny_run):
    _, out = tiny_run
    records = json.loads((out / "results.json").read_text())["records"]
    cuda = [r for r in records if r["provider"] == "cuda"]
    assert cuda
    if cuda_usable():
        assert all(r["device"] == "cuda:0" for r in cuda if r["status"] == "ok")
    else:
        assert all(r["status"] == "skipped" for r in cuda)
        assert all("CUDAExecutionProvider" in r["reason"] for r in cuda
                   if r["runtime"] == "onnxruntime")
    if not cuda_usable():
        native = {r["framework"]: r["reason"] for r in cuda if r["runtime"] == "native"}
        assert "sklearn" not in native  # scikit-learn has no GPU path: none is planned
        if no_nvidia_gpu():  # said before any child imports a framework to find out
            assert all("no NVIDIA GPU on this machine" in r["reason"] for r in cuda)
            assert not list((out / "logs").glob("measure-*-cuda-*.log"))
        else:
            assert "TensorFlow on GPU is not measured" in native["keras"]
            assert "torch.cuda.is_available() is False" in native["torch"]
    # A record that ran on the CPU never carries a CUDA label, and vice versa.
    for r in records:
        if r["status"] == "ok" and r["runtime"] == "onnxruntime" and r["phase"] == "infer":
            assert r["provider"] == ("cpu" if r["device"] == "cpu" else "cuda")


def test_list_shows_every_workload():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    for name in ("sklearn/digits-hgb", "keras/digits-cnn", "torch/digits-resnet18"):
        assert name in result.stdout


def test_env_reports_providers_with_reasons():
    result = runner.invoke(app, ["env"], terminal_width=300)
    assert result.exit_code == 0
    assert "provider cpu" in result.stdout and "usable" in result.stdout
    if not cuda_usable():
        assert "CUDAExecutionProvider not usable" in result.stdout


@pytest.mark.parametrize("args, needle", [
    (["--workloads", "nope"], "unknown workload 'nope'"),
    (["--providers", "tpu"], "unknown provider 'tpu'"),
    (["--batch-sizes", "1,x"], "--batch-sizes '1,x'"),
    (["--suite", "missing.toml"], "suite 'missing.toml' not found"),
    (["--frameworks", "jax"], "unknown framework 'jax'"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle, tmp_path):
    result = runner.invoke(app, ["run", *args, "--out", str(tmp_path / "o")], terminal_width=300)
    assert result.exit_code == 2
    assert needle in result.output
    assert result.output.startswith("error:") and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_unwritable_out_dir_is_bad_input(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = runner.invoke(app, ["run", "--workloads", "seed-linreg", "--out",
                                 str(blocker / "sub")], terminal_width=300)
    assert result.exit_code == 2
    assert "cannot write there" in result.output and "Traceback" not in result.output


def test_a_framework_that_cannot_be_imported_is_skipped_with_a_reason(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails; find_spec -> None
    suite = write_suite(tmp_path / "s.toml", ["torch/digits-mlp"], providers=["cpu"])
    result = runner.invoke(app, ["run", "--suite", str(suite), "--out", str(tmp_path / "o")])
    records = json.loads((tmp_path / "o" / "results.json").read_text())["records"]
    assert records and all(r["status"] == "skipped" for r in records)
    assert all("pip install 'deploybench[torch]'" in r["reason"] for r in records)
    # nothing was measured: the reports are written, then exit 1 with why
    assert (tmp_path / "o" / "report.md").is_file()
    assert result.exit_code == 1, result.output
    assert "error: nothing was measured" in result.output
    assert "pip install 'deploybench[torch]'" in result.output.splitlines()[-1]


def test_a_new_option_given_with_resume_is_refused_by_name(tmp_path):
    suite = write_suite(tmp_path / "s.toml", ["sklearn/seed-linreg"], providers=["cpu"],
                        batch_sizes=[1], rounds=1)
    out = tmp_path / "o"
    assert runner.invoke(app, ["run", "--suite", str(suite), "--out", str(out)]).exit_code == 0
    before = (out / "results.json").read_text()
    for flags, named in ((["--threads", "2"], "--threads"), (["--placement", "each-node"],
                                                             "--placement"),
                         (["--rounds", "5", "--recipes", "fp16"], "--rounds, --recipes")):
        result = runner.invoke(app, ["run", "--resume", str(out), *flags])
        assert result.exit_code == 2 and f"drop {named}" in result.output, result.output
    assert (out / "results.json").read_text() == before  # refused before anything changed
    again = runner.invoke(app, ["bench", str(suite), "--resume", str(out), "--trust-pickle"])
    assert again.exit_code == 2 and "drop the path argument" in again.output, again.output


def test_env_prints_no_onnx_runtime_banner():
    """ORT prints an "EP Error ... Falling back" banner from Python when TensorRT cannot load;
    deploybench folds its reason into the provider line instead."""
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "toolkit.cli", "env"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for banner in ("EP Error", "Falling back", "*****"):
        assert banner not in proc.stdout and banner not in proc.stderr
    if not cuda_usable():
        assert "provider tensorrt" in proc.stdout
        assert "TensorrtExecutionProvider not usable" in proc.stdout


def test_the_tensorrt_banner_becomes_a_reason():
    from toolkit.runners.onnxruntime import unavailable_reason

    banner = ["*************** EP Error ***************",
              "EP Error /onnxruntime_src/onnxruntime/python/onnxruntime_pybind_state.cc:729 void "
              "onnxruntime::python::RegisterTensorRTPluginsAsCustomOps(PySessionOptions&, const "
              "onnxruntime::ProviderOptions&) Please install TensorRT libraries.",
              " when using ['TensorrtExecutionProvider', 'CPUExecutionProvider']",
              "Falling back to ['CPUExecutionProvider'] and retrying."]
    assert unavailable_reason("tensorrt", banner) == (
        "TensorrtExecutionProvider not usable: Please install TensorRT libraries.")
