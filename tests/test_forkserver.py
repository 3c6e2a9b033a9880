"""Children forked from a warm server: a runtime imported once, a fresh child per step, the
import time reported from the server and marked, and nothing left behind."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from tests.test_isolate import artifact, measure_spec
from toolkit import forking
from toolkit.isolate import _child_env, run_child

pytest.importorskip("sklearn")


def tiny_onnx_spec(tmp_path):
    from tests.test_runners import tiny_onnx

    model = tiny_onnx(tmp_path / "m.onnx")
    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=np.ones((2, 3), dtype=np.float32))
    return {**measure_spec(model, inputs), "framework": "onnx", "runner": "onnxruntime"}


def test_steps_share_one_server_and_say_their_import_was_the_servers(tmp_path, monkeypatch):
    spec = tiny_onnx_spec(tmp_path)
    first = run_child(spec, tmp_path, timeout_s=120, threads=1, name="a")
    server = forking.server_for("onnxruntime", _child_env(1), tmp_path)
    second = run_child(spec, tmp_path, timeout_s=120, threads=1, name="b")
    assert first.failure is None and second.failure is None, (first.failure, second.failure)
    assert server is forking.server_for("onnxruntime", _child_env(1), tmp_path)
    loads = [next(r for r in result.records if r.phase == "load") for result in (first, second)]
    assert all(r.info["import_measured"] == "once, by the fork server" for r in loads)
    assert loads[0].info["import_seconds"] == loads[1].info["import_seconds"] > 0
    assert "deploybench code:" in (tmp_path / "logs" / "b.log").read_text()
    monkeypatch.setenv("DEPLOYBENCH_FORK", "0")
    spawned = run_child(spec, tmp_path, timeout_s=120, threads=1, name="c")
    load = next(r for r in spawned.records if r.phase == "load")
    assert "import_measured" not in load.info and load.info["import_seconds"] > 0


def test_a_hung_child_is_killed_and_its_server_serves_the_next_step(tmp_path):
    path, inputs = artifact(tmp_path, "hang", time.sleep, 60)
    hung = run_child(measure_spec(path, inputs), tmp_path, timeout_s=3, threads=1, name="hang")
    assert hung.failure is not None and "timed out after 3 s" in hung.failure
    server = forking.server_for("native_sklearn", _child_env(1), tmp_path)
    assert server is not None and server.process.poll() is None
    path, inputs = artifact(tmp_path, "ok", int, 0)  # unpickles to 0: a model that fails
    done = run_child(measure_spec(path, inputs), tmp_path, timeout_s=60, threads=1, name="ok")
    assert done.records, done.failure  # the child ran and said why the "model" failed
    assert server is forking.server_for("native_sklearn", _child_env(1), tmp_path)


def test_a_server_ends_when_whoever_started_it_is_gone(tmp_path):
    server = forking.Server("onnxruntime", _child_env(1), tmp_path)
    pid = server.process.pid
    assert server.process.stdin is not None
    server.process.stdin.close()  # what the asking process's death does
    assert server.process.wait(timeout=30) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_which_steps_are_forked_and_from_which_runtime():
    assert forking.runner_of({"task": "measure", "runner": "native_keras"}) == "native_keras"
    assert forking.runner_of({"task": "build", "workload": "torch/digits-mlp"}) == \
        "native_torch"
    assert forking.runner_of({"task": "build_file", "framework": "keras"}) == "native_keras"
    assert forking.runner_of({"task": "derive"}) == "onnxruntime"
    assert forking.runner_of({"task": "scenario", "runner": "native_torch"}) == "native_torch"
    assert forking.runner_of({"task": "no-such-task"}) is None


def test_a_line_that_is_not_a_reply_ends_the_server_not_the_run():
    read, write = os.pipe()
    os.write(write, b'{"pid": 12}\nsome library printed this\n')
    os.close(write)
    lines = forking._Lines(read)
    assert lines.read(5.0) == {"pid": 12}
    with pytest.raises(forking.ServerGone, match="some library printed this"):
        lines.read(5.0)
    os.close(read)
