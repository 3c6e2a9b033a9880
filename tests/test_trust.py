"""Nothing is loaded that the run did not make, and a full disk is one line with nothing lost:
a planted pickle on --resume, the built-in torch weights, the digests, a node's copies, and a
run whose files cannot grow."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit import digests
from toolkit.backends.files import NodeFolder
from toolkit.results import Record


class Planted:
    """A pickle that runs a shell command when it is loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def plant(path: Path, marker: Path) -> None:
    import torch

    torch.save(Planted(marker), path)


def test_a_planted_pickle_is_not_loaded_on_resume_and_the_real_file_resumes(tiny_run,
                                                                            tmp_path):
    """A run stopped after its builds (its torch measurements dropped), the built torch model
    replaced by a pickle that runs a command: --resume names the file, exits 2 and runs
    nothing; with the file put back, --resume measures from it."""
    pytest.importorskip("torch")
    proc, made = tiny_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "run"
    shutil.copytree(made, out)
    results = out / "results.json"  # its paths are the copy's own, as a moved folder's would be
    payload = json.loads(results.read_text().replace(str(made), str(out)))
    payload["records"] = [r for r in payload["records"]
                          if r["framework"] != "torch" or r["step"].endswith(" build")]
    payload["run"]["interrupted"] = True
    results.write_text(json.dumps(payload))
    model = out / "artifacts" / "torch-digits-mlp" / "model.pth"
    built = model.read_bytes()
    marker = tmp_path / "the-pickle-ran"
    plant(model, marker)

    refused = subprocess.run([sys.executable, "-m", "toolkit.cli", "run", "--resume", str(out)],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert not marker.exists()
    lines = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and str(model) in lines[0] and "SHA-256" in lines[0], refused.stderr
    assert "Traceback" not in refused.stderr

    model.write_bytes(built)
    resumed = subprocess.run([sys.executable, "-m", "toolkit.cli", "run", "--resume", str(out)],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    records = json.loads(results.read_text())["records"]
    torch_cpu = [r for r in records if r["framework"] == "torch" and r["phase"] == "load"
                 and r["provider"] == "cpu"]
    assert {r["runtime"] for r in torch_cpu} == {"native", "onnxruntime"}
    assert all(r["status"] == "ok" for r in torch_cpu), torch_cpu
    assert not marker.exists()


def test_the_torch_runner_loads_built_in_weights_and_never_a_pickled_module(tmp_path):
    torch = pytest.importorskip("torch")
    from toolkit.errors import BadInputError
    from toolkit.runners.native_torch import load_module
    from toolkit.workloads.torch import WORKLOADS

    workload = next(w for w in WORKLOADS if w.name == "digits-mlp")
    module = workload.create(None)
    saved = workload.save(module, tmp_path)
    x = torch.ones((2, 64))
    with torch.no_grad():
        assert torch.equal(load_module(saved)(x), module.eval()(x))
    marker = tmp_path / "the-pickle-ran"
    plant(tmp_path / "planted.pth", marker)
    with pytest.raises(BadInputError, match="planted.pth"):
        load_module(tmp_path / "planted.pth")
    torch.save(module, tmp_path / "whole.pth")  # a whole module is a pickle too
    with pytest.raises(BadInputError, match="whole.pth"):
        load_module(tmp_path / "whole.pth")
    assert not marker.exists()


def test_a_file_is_checked_against_the_digest_of_its_role(tmp_path):
    onnx, weights = tmp_path / "model.onnx", tmp_path / "model.pth"
    onnx.write_bytes(b"onnx")
    weights.write_bytes(b"weights")
    made = digests.stamp([Record(workload="w", framework="torch", phase="train",
                                 info={"artifact": str(weights), "onnx": str(onnx)})])
    kept = digests.follow({}, made[0])
    assert kept == {"artifact": digests.sha256(weights), "onnx": digests.sha256(onnx)}
    files = {"artifact": str(weights), "onnx": str(onnx)}
    digests.check(files, kept, tmp_path)  # as made: nothing to say
    onnx.write_bytes(b"changed")
    with pytest.raises(digests.TamperedError, match="model.onnx"):
        digests.check(files, kept, tmp_path)
    # an ONNX file with no digest recorded (a folder from before them) is read; a pickle is not,
    # named as it is or by a path relative to the run's folder (where the child would read it)
    digests.check({"onnx": str(onnx)}, {}, tmp_path)
    for named in (str(weights), "model.pth"):
        with pytest.raises(digests.TamperedError, match="no SHA-256 was recorded"):
            digests.check({"artifact": named}, {}, tmp_path)
    with pytest.raises(digests.TamperedError, match="not found"):  # never checked: never read
        digests.check({"artifact": "elsewhere/model.pth"}, kept, tmp_path)
    # a later record that names another file for a role without a digest drops the old one
    later = Record(workload="w", framework="torch", phase="export",
                   info={"onnx": str(tmp_path / "other.onnx")})
    assert digests.follow(kept, later)["onnx"] is None


def test_a_node_folder_is_private_and_a_planted_copy_is_not_used(tmp_path):
    source = tmp_path / "driver" / "model.onnx"
    source.parent.mkdir()
    source.write_bytes(b"the real model")
    digest = digests.sha256(source)
    folder = NodeFolder(tmp_path / "nodes" / "run" / "node")
    assert stat.S_IMODE(folder.root.stat().st_mode) == 0o700
    (folder.cas / digest).write_bytes(b"planted under the real digest's name")
    placed = folder.place({str(source): (digest, "ref")}, str(tmp_path / "driver"),
                          lambda ref: source.read_bytes())
    assert Path(placed[str(source)]).read_bytes() == b"the real model"
    assert (folder.cas / digest).read_bytes() == b"the real model"
    with pytest.raises(digests.TamperedError, match="does not hash"):
        folder.place({str(tmp_path / "x.onnx"): ("0" * 64, "ref")}, str(tmp_path / "driver"),
                     lambda ref: b"not what the digest says")


def _no_bigger_than(limit: int):
    def apply() -> None:  # in the child: files stop growing at `limit` bytes (EFBIG)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_run_whose_files_cannot_grow_ends_in_one_line_and_resumes_with_nothing_lost(
        tmp_path):
    """The operating system refuses to let any file grow past 20 kB (as a full disk refuses a
    write): one `error:` line naming what could not be written, exit 2, no traceback, and a
    results.json that is whole; then, with room again, --resume finishes, and every record
    that names raw samples has them."""
    import numpy as np

    from tests import model_files

    model = model_files.relu(tmp_path / "relu.onnx")
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "bench", str(model), "--batch-sizes", "1",
         "--rounds", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=300, preexec_fn=_no_bigger_than(20_000))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "cannot write" in lines[0] and "--resume" in lines[0], \
        proc.stderr[-3000:]
    results = out / "results.json"
    json.loads(results.read_text())  # whole: the last complete one
    assert not list(out.glob(".results.json.*")) and not list(out.glob(".samples.npz.*"))

    resumed = subprocess.run([sys.executable, "-m", "toolkit.cli", "bench", "--resume",
                              str(out)], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = json.loads(results.read_text())["records"]
    named = {row["samples"] for row in rows if row.get("samples")}
    with np.load(out / "samples.npz") as archive:
        assert named and named <= set(archive.files)
