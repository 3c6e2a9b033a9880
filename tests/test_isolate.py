"""A child that crashes or hangs costs its own case only, with the reason on the record."""

from __future__ import annotations

import ctypes
import os
import pickle
import time

import numpy as np
import pytest

from toolkit.digests import sha256
from toolkit.isolate import run_child
from toolkit.plans.steps import Context, Measure, Sources
from toolkit.suite import Case, parse_suite

pytest.importorskip("sklearn")


class Payload:
    """Unpickling this runs `call(*args)`: a stand-in for a model file that kills its loader."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def artifact(tmp_path, name, call, *args):
    path = tmp_path / f"{name}.joblib"
    path.write_bytes(pickle.dumps(Payload(call, *args)))
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, input=np.zeros((4, 1), dtype=np.float32))
    return path, inputs


def measure_spec(path, inputs):
    return {"task": "measure", "workload": "w", "framework": "sklearn", "runner": "native_sklearn",
            "artifact": str(path), "inputs": str(inputs), "provider": "cpu", "batch_sizes": [1],
            "budget": {"warmup": 0, "min_iterations": 1, "min_seconds": 0, "max_seconds": 0.1},
            "threads": 1}


@pytest.mark.parametrize("name, call, args, expected", [
    ("exit", os._exit, (7,), "exited with code 7"),
    ("segfault", ctypes.string_at, (0,), "SIGSEGV"),
])
def test_crashing_child_becomes_a_reason(tmp_path, name, call, args, expected):
    path, inputs = artifact(tmp_path, name, call, *args)
    result = run_child(measure_spec(path, inputs), tmp_path, timeout_s=60, threads=1, name=name)
    assert result.failure is not None and expected in result.failure
    assert (tmp_path / "logs" / f"{name}.log").exists()


@pytest.mark.parametrize("oom_killer", [False, True])
def test_a_killed_child_says_whether_the_out_of_memory_killer_killed_it(tmp_path, monkeypatch,
                                                                         oom_killer):
    """The kernel's count of out-of-memory kills, read when the child starts and when it has
    ended, tells a kill for memory from another's (here the child sends itself SIGKILL; the
    count is made to move where the test says the killer ran)."""
    import signal

    from toolkit import isolate

    if isolate.oom_kills() is None:
        pytest.skip("this system does not count the kernel's out-of-memory kills")
    if oom_killer:
        counts = iter([5, 6])
        monkeypatch.setattr(isolate, "oom_kills", lambda: next(counts))
    path, inputs = artifact(tmp_path, "killed", signal.raise_signal, signal.SIGKILL)
    result = run_child(measure_spec(path, inputs), tmp_path, timeout_s=60, threads=1,
                       name="killed")
    assert result.failure is not None and "killed by SIGKILL" in result.failure
    said = "by the kernel's out-of-memory killer: the machine"
    assert (said in result.failure) == oom_killer, result.failure
    assert ("not by the kernel's out-of-memory killer" in result.failure) != oom_killer


def test_hanging_child_is_killed_at_its_timeout(tmp_path):
    path, inputs = artifact(tmp_path, "hang", time.sleep, 60)
    start = time.monotonic()
    result = run_child(measure_spec(path, inputs), tmp_path, timeout_s=3, threads=1, name="hang")
    assert time.monotonic() - start < 30
    assert result.failure is not None and "timed out after 3 s" in result.failure


def test_a_crashed_case_becomes_failed_records_and_the_next_case_runs(tmp_path):
    import joblib
    from sklearn.linear_model import LinearRegression

    suite = parse_suite({"workloads": ["sklearn/seed-linreg"], "batch_sizes": [1, 2],
                         "providers": ["cpu"], "threads": 1,
                         "timing": {"warmup": 0, "min_iterations": 2, "min_seconds": 0,
                                    "max_seconds": 0.1}})
    crash, inputs = artifact(tmp_path, "exit", os._exit, 3)
    good = tmp_path / "good.joblib"
    joblib.dump(LinearRegression().fit(np.arange(4.0).reshape(-1, 1), np.arange(4.0)), good)
    case = Case("sklearn/seed-linreg", "native_sklearn", "cpu")

    def built(path):
        return Sources(native=str(path), inputs=str(inputs),  # as a build records it
                       digests={"artifact": sha256(path)})

    failed = Measure(case, sources=built(crash)).execute(Context(suite, tmp_path))
    assert [(r.status, r.batch_size) for r in failed] == [("failed", 1), ("failed", 2)]
    assert "exited with code 3" in failed[0].reason
    ok = Measure(case, sources=built(good)).execute(Context(suite, tmp_path))
    timed = [r for r in ok if r.phase == "infer"]
    assert timed and all(r.ok and r.stats.n >= 2 for r in timed)


def test_a_childs_peak_memory_is_its_own_not_its_parents(tmp_path):
    from tests.test_runners import tiny_onnx

    ballast = np.ones(400 * 2**20 // 8)  # this process now peaks above 400 MB
    model = tiny_onnx(tmp_path / "m.onnx")
    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=np.ones((2, 3), dtype=np.float32))
    spec = {**measure_spec(model, inputs), "framework": "onnx", "runner": "onnxruntime"}
    result = run_child(spec, tmp_path, timeout_s=120, threads=1, name="rss")
    assert result.failure is None, result.failure
    load = next(r for r in result.records if r.phase == "load")
    assert load.peak_rss_mb is not None and 10 < load.peak_rss_mb < 300, load.peak_rss_mb
    del ballast


def test_each_batch_size_carries_its_own_peak_memory(tmp_path):
    """Batch 1 is not given batch 4096's peak: each configuration's memory is read on its own,
    the smallest first."""
    from tests.model_files import matmul_chain

    model = matmul_chain(tmp_path / "wide.onnx", layers=2, width=1024)
    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=np.ones((8, 1024), dtype=np.float32))
    spec = {**measure_spec(model, inputs), "framework": "onnx", "runner": "onnxruntime",
            "batch_sizes": [4096, 1]}
    result = run_child(spec, tmp_path, timeout_s=120, threads=1, name="by-batch")
    assert result.failure is None, result.failure
    timed = {(r.variant, r.batch_size): r for r in result.records if r.phase == "infer"}
    assert timed and all(r.info["memory_of"] == "configuration" for r in timed.values())
    for variant in {v for v, _ in timed}:
        small, large = timed[(variant, 1)].peak_rss_mb, timed[(variant, 4096)].peak_rss_mb
        # batch 4096 holds 16 MB of rows and as much for each layer's output
        assert small is not None and large is not None and large - small > 24, (small, large)
