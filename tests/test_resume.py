"""Ctrl-C keeps what finished and marks the run interrupted; --resume runs only what is missing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.conftest import write_suite

pytest.importorskip("sklearn")
pytest.importorskip("skl2onnx")


def ctrl_c_works() -> None:
    """In the child, before exec: SIGINT back to its default, so Python installs its Ctrl-C
    handler even where these tests run in a background job (a shell starts those with SIGINT
    ignored, and Python then leaves it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def invoke(*args: str):
    """The CLI in this process (its children share the session's fork servers): the console
    script itself is run end to end for the interrupted half of each test."""
    from typer.testing import CliRunner

    from toolkit.cli import app

    return CliRunner().invoke(app, list(args), terminal_width=250)


def steps_done(path):
    try:
        records = json.loads(path.read_text())["records"]
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    return [r for r in records if r.get("step")]


def test_interrupt_then_resume(tmp_path):
    suite = write_suite(tmp_path / "s.toml", ["sklearn/seed-linreg", "sklearn/digits-logreg"],
                        providers=["cpu"])
    out = tmp_path / "run"
    cli = [sys.executable, "-m", "toolkit.cli", "run"]
    proc = subprocess.Popen([*cli, "--suite", str(suite), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ctrl_c_works)
    deadline = time.monotonic() + 120
    while not steps_done(out / "results.json") and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "--resume" in stderr
    payload = json.loads((out / "results.json").read_text())
    assert payload["run"]["interrupted"] is True
    kept = {r["step"] for r in payload["records"]}
    assert kept and len(kept) < 10  # something finished, not everything (2 builds, 8 rounds)

    resumed = invoke("run", "--resume", str(out))
    assert resumed.exit_code == 0, resumed.output[-2000:]
    payload = json.loads((out / "results.json").read_text())
    assert payload["run"]["interrupted"] is False and payload["run"]["resumed"]
    steps = Counter(r["step"] for r in payload["records"] if r["phase"] in
                    ("train", "load"))
    # every build and every round of every case ran exactly once across the two invocations
    assert steps == Counter({f"sklearn/{w} {s}": 1 for w in ("seed-linreg", "digits-logreg")
                             for s in ("build", "native_sklearn cpu #1", "onnxruntime cpu #1",
                                       "native_sklearn cpu #2", "onnxruntime cpu #2")})
    assert (out / "report.md").exists()


def test_resume_rejects_a_folder_without_results(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "toolkit.cli", "run", "--resume", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "no results.json there" in proc.stderr and "Traceback" not in proc.stderr


def test_bench_interrupted_during_its_build_resumes(tmp_path):
    """Ctrl-C while `bench` exports a native file: exit 130, the run marked interrupted, and
    `bench --resume` runs every step once."""
    from tests import model_files

    model = model_files.joblib_classifier(tmp_path / "iris.joblib")
    out = tmp_path / "bench"
    cli = [sys.executable, "-m", "toolkit.cli", "bench"]
    proc = subprocess.Popen([*cli, str(model), "--trust-pickle", "--batch-sizes", "1",
                             "--rounds", "1", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ctrl_c_works)
    deadline = time.monotonic() + 120
    while not list((out / "logs").glob("build-*.log")) and time.monotonic() < deadline:
        time.sleep(0.05)  # the build child has started
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert f"deploybench bench --resume {out}" in stderr and "Aborted" not in stderr
    payload = json.loads((out / "results.json").read_text())
    assert payload["run"]["interrupted"] is True and payload["records"] == []

    untrusted = invoke("bench", "--resume", str(out))  # the pickle is loaded again: trust is
    assert untrusted.exit_code == 2 and "--trust-pickle" in untrusted.output  # asked anew
    resumed = invoke("bench", "--resume", str(out), "--trust-pickle")
    assert resumed.exit_code == 0, resumed.output[-2000:]
    payload = json.loads((out / "results.json").read_text())
    assert payload["run"]["interrupted"] is False and payload["run"]["resumed"]
    steps = Counter(r["step"] for r in payload["records"] if r["phase"] in ("export", "load"))
    assert steps == Counter({f"sklearn/iris {s}": 1 for s in
                             ("build", "native_sklearn cpu #1", "onnxruntime cpu #1")})
    wrong = invoke("run", "--resume", str(out))
    assert wrong.exit_code == 2 and "resume it with deploybench bench --resume" in wrong.output
    refused = invoke("bench", "--resume", str(out), "--batch-sizes", "8")
    assert refused.exit_code == 2 and "drop --batch-sizes" in refused.output
