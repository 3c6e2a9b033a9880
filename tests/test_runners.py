"""The runner contract over every registered runner, and the CUDA honesty rule."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from exporters.session import session_options
from tests.children import Children
from tests.conftest import cuda_usable
from toolkit.environment import missing_framework
from toolkit.errors import ProviderUnavailableError
from toolkit.runners import RUNNERS, RunnerConfig
from toolkit.runners.onnxruntime import OrtRunner, create_session

HERE = Path(__file__).parent


def tiny_onnx(path, batch="N"):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path.write_bytes(model.SerializeToString())
    return path


FRAMEWORK_OF = {"native_sklearn": "sklearn", "native_torch": "torch", "native_keras": "keras"}


def _missing(name: str) -> str | None:
    framework = FRAMEWORK_OF.get(name)
    return missing_framework(framework) if framework else None


@pytest.fixture(scope="module")
def runner_checks():
    """Every runner's check in a child of its own, started together: their imports overlap."""
    children = Children({name: [sys.executable, str(HERE / "runner_check.py"), name, "1"]
                         for name in sorted(RUNNERS) if _missing(name) is None},
                        env={"TF_CPP_MIN_LOG_LEVEL": "3"})
    yield children
    children.close()


@pytest.mark.parametrize("name", sorted(RUNNERS))
def test_every_runner_computes_what_its_framework_computes(runner_checks, name):
    """Each registered runner, in a child of its own: every variant's call gives the
    framework's own outputs, on the CPU, with the thread count asked for read back."""
    missing = _missing(name)
    if missing:
        pytest.skip(missing)
    proc = runner_checks.result(name)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    variants = [line["variant"] for line in lines]
    assert RUNNERS[name].idiomatic in variants or name == "onnxruntime"
    assert len(variants) >= 2, variants  # every runner offers a second path to compare
    for line in lines:
        assert line["max_abs"] is not None and line["max_abs"] < 1e-5, line
        assert (line["provider"], line["device"]) == ("cpu", "cpu")
        assert line["settings"]["threads"] == 1, line["settings"]
        if "n_jobs" in line["settings"]:  # an estimator's own workers follow --threads too
            assert line["settings"]["n_jobs"] == 1, line["settings"]


def test_prepare_is_outside_the_timed_region():
    """A runner whose prepare takes 50 ms and whose call is instant: the timings hold the
    call only, first inference included."""
    from toolkit.steps.measure import first_inference, timed
    from toolkit.timing import Budget

    class SlowPrepare:
        runtime, idiomatic, device = "native", "call", "cpu"

        def prepare(self, variant, batch):
            time.sleep(0.05)
            return lambda: None

    base = {"workload": "w", "framework": "f"}
    x = {"x": np.ones((2, 1))}
    first = first_inference(SlowPrepare(), "call", x, 1, base)
    assert first.ok and first.seconds < 0.01, first
    budget = Budget(warmup=0, min_iterations=3, min_seconds=0, max_seconds=1, blocks=3)
    records = list(timed(SlowPrepare(), ["call"], x, (1, 2), budget, base))
    assert [r.batch_size for r in records] == [1, 2]
    assert all(r.ok and r.stats.n >= 3 and r.stats.max_ms < 10 for r in records), records
    assert all(r.idiomatic for r in records)


def test_variants_and_batch_sizes_are_interleaved_in_blocks():
    """Three blocks of two series: the calls alternate between the series block by block."""
    from toolkit.timing import Budget, time_interleaved

    order = []
    calls = {key: (lambda key=key: order.append(key)) for key in ("a", "b")}
    budget = Budget(warmup=1, warmup_seconds=0, min_iterations=6, min_seconds=0,
                    max_seconds=5, blocks=3)
    timings = time_interleaved(calls, budget)
    assert [timings[k].stats.n for k in ("a", "b")] == [6, 6]
    assert order == ["a", "b"] + ["a", "a", "b", "b"] * 3  # warmup, then the blocks


def test_a_series_that_raises_costs_only_itself():
    from toolkit.timing import Budget, Timing, time_interleaved

    def broken():
        raise RuntimeError("no kernel for this batch")

    found = time_interleaved({"ok": lambda: None, "bad": broken},
                                Budget(warmup=0, min_iterations=2, min_seconds=0, blocks=1))
    assert isinstance(found["ok"], Timing) and found["ok"].stats.n == 2
    assert isinstance(found["bad"], RuntimeError)


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_reach_the_measuring_child(tmp_path, threads):
    from toolkit.plans.steps import Context, Measure, Sources
    from toolkit.suite import Case, parse_suite

    model = tiny_onnx(tmp_path / "m.onnx")
    np.savez(tmp_path / "x.npz", x=np.ones((4, 3), dtype=np.float32))
    suite = parse_suite({"workloads": ["digits-mlp"], "batch_sizes": [1], "threads": threads,
                         "timing": {"warmup": 0, "min_iterations": 2, "min_seconds": 0,
                                    "max_seconds": 0.1}})
    records = Measure(Case("onnx/m", "onnxruntime", "cpu"),
                      sources=Sources(onnx=str(model), inputs=str(tmp_path / "x.npz"))
                      ).execute(Context(suite, tmp_path))
    timed = [r for r in records if r.timed]
    assert timed and all(r.threads == threads for r in timed)
    # read back from the session the child created, not copied from the request
    assert all(r.settings["intra_op_threads"] == threads for r in timed), timed[0].settings


def test_onnxruntime_runner_computes_and_records_its_settings(tmp_path):
    runner = OrtRunner.load(tiny_onnx(tmp_path / "m.onnx"),
                            RunnerConfig(threads=1, optimization="basic"))
    assert runner.variants == ("run", "iobinding")
    out = runner.prepare("run", {"x": np.array([[-1.0, 0.5, 2.0]], dtype=np.float32)})()
    np.testing.assert_array_equal(out[0], [[0.0, 0.5, 2.0]])
    assert runner.settings["session_providers"][0] == "CPUExecutionProvider"
    assert runner.settings["intra_op_threads"] == 1
    assert runner.settings["graph_optimization"] == "basic"
    assert runner.fixed_batch is None
    runner.close()


def test_iobinding_runs_the_model_on_bound_inputs(tmp_path):
    runner = OrtRunner.load(tiny_onnx(tmp_path / "m.onnx"), RunnerConfig())
    binding = runner.prepare("iobinding", {"x": np.array([[-1.0, 0.5, 2.0]], dtype=np.float32)})()
    np.testing.assert_array_equal(binding.copy_outputs_to_cpu()[0], [[0.0, 0.5, 2.0]])


def test_fixed_batch_is_measured_at_its_size_only(tmp_path):
    from toolkit.steps.measure import MeasureSpec, measure_case

    model = tiny_onnx(tmp_path / "fixed.onnx", batch=2)
    np.savez(tmp_path / "x.npz", x=np.ones((5, 3), dtype=np.float32))
    spec = MeasureSpec("w", "onnx", "onnxruntime", str(model), str(tmp_path / "x.npz"), "cpu",
                       (1, 2, 4), {"warmup": 0, "min_iterations": 2, "min_seconds": 0,
                                   "max_seconds": 0.1}, 1)
    infer = [r for r in measure_case(spec) if r.phase == "infer"]
    skipped = {r.batch_size: r.reason for r in infer if r.status == "skipped"}
    assert set(skipped) == {1, 4}
    assert all("fixed at 2" in reason for reason in skipped.values())
    timed = [(r.variant, r.batch_size) for r in infer if r.ok]
    assert timed == [("run", 2), ("iobinding", 2)]


def test_cuda_without_a_gpu_is_refused_with_ort_reason(tmp_path):
    if cuda_usable():
        pytest.skip("CUDA is usable here: nothing to refuse")
    with pytest.raises(ProviderUnavailableError, match="CUDAExecutionProvider not usable"):
        create_session(tiny_onnx(tmp_path / "m.onnx"), "cuda", session_options(1, "all"))


def test_native_torch_on_cuda_without_a_gpu_says_why():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("torch sees a GPU here")
    from toolkit.runners.native_torch import TorchRunner

    with pytest.raises(ProviderUnavailableError, match="torch.cuda.is_available\\(\\) is False"):
        TorchRunner.load(None, RunnerConfig("cuda"))


@pytest.mark.cuda
def test_cuda_session_really_runs_on_cuda(tmp_path):
    if not cuda_usable():
        pytest.skip("no usable CUDA provider (no GPU or no CUDA 13 libraries)")
    runner = OrtRunner.load(tiny_onnx(tmp_path / "m.onnx"), RunnerConfig("cuda"))
    assert runner.settings["session_providers"][0] == "CUDAExecutionProvider"
    assert runner.device == "cuda:0"
    assert runner.variants == ("copies", "iobinding")
    x = {"x": np.array([[-1.0, 0.5, 2.0]], dtype=np.float32)}
    np.testing.assert_array_equal(runner.prepare("copies", x)()[0], [[0.0, 0.5, 2.0]])
    np.testing.assert_array_equal(
        runner.prepare("iobinding", x)().copy_outputs_to_cpu()[0], [[0.0, 0.5, 2.0]])


@pytest.mark.cuda
def test_native_torch_on_cuda_synchronises_and_reports_memory(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    from toolkit.runners.native_torch import TorchRunner

    model = torch.nn.Sequential(torch.nn.Linear(3, 4))
    torch.jit.save(torch.jit.script(model), tmp_path / "m.pt")  # a .pth holds weights only
    runner = TorchRunner.load(tmp_path / "m.pt", RunnerConfig("cuda"))
    assert runner.device == "cuda:0"
    out = runner.prepare("inference_mode", {"input": np.ones((2, 3), dtype=np.float32)})()
    assert out.is_cuda and tuple(out.shape) == (2, 4)
    assert runner.gpu_memory_mb() > 0


@pytest.mark.parametrize("optimization", ["disable", "all"])
def test_each_onnx_child_checks_its_own_session_against_the_reference(tmp_path, optimization):
    """The parity a timing carries is its own session's (this provider, this optimisation
    level), against the native outputs saved at build time; a wrong reference fails it."""
    from toolkit.plans.steps import Context, Measure, Sources
    from toolkit.suite import Case, parse_suite

    model = tiny_onnx(tmp_path / "m.onnx")
    x = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    np.savez(tmp_path / "good.npz", scores=np.maximum(x, 0))
    np.savez(tmp_path / "bad.npz", scores=np.maximum(x, 0) * 1.01)
    suite = parse_suite({"workloads": ["digits-mlp"], "batch_sizes": [1, 2], "threads": 1,
                         "optimization": optimization,
                         "timing": {"warmup": 0, "min_iterations": 2, "min_seconds": 0,
                                    "max_seconds": 0.1}})
    for reference, verdict in (("good.npz", "pass"), ("bad.npz", "fail")):
        sources = Sources(onnx=str(model), inputs=str(tmp_path / "x.npz"),
                          reference={"path": str(tmp_path / reference), "score_output": 0,
                                     "task": "regression"})
        records = Measure(Case("onnx/m", "onnxruntime", "cpu"), sources=sources).execute(
            Context(suite, tmp_path))
        timed = [r for r in records if r.timed]
        assert len(timed) == 4  # run and iobinding at batch 1 and 2
        assert all(r.parity is not None and r.parity.verdict == verdict for r in timed)
        assert all(r.settings["graph_optimization"] == optimization for r in timed)
        firsts = [r for r in records if r.phase == "first_inference"]
        assert [r.variant for r in firsts] == ["run", "iobinding"]
        assert all(r.info["session"] == "fresh" for r in firsts)


def test_onnx_runtimes_other_session_options_are_applied_and_read_back(tmp_path):
    """The memory arena and pattern a suite's [session] asks for are the session's, as ONNX
    Runtime reads them back; left out, they are its defaults."""
    model = tiny_onnx(tmp_path / "m.onnx")
    chosen = OrtRunner.load(model, RunnerConfig(session=(("memory_arena", False),
                                                         ("memory_pattern", False))))
    assert chosen.settings["memory_arena"] is False and chosen.settings["memory_pattern"] is False
    default = OrtRunner.load(model, RunnerConfig())
    assert default.settings["memory_arena"] is True and default.settings["memory_pattern"] is True
