"""The runner contract over every registered runner, and the CUDA honesty rule."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import cuda_usable
from toolkit.errors import ProviderUnavailableError
from toolkit.runners import RUNNERS
from toolkit.runners.onnxruntime import OrtRunner, create_session, session_options


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


@pytest.mark.parametrize("name", sorted(RUNNERS))
def test_every_runner_declares_the_contract(name):
    cls = RUNNERS[name]
    assert cls.runtime in ("native", "onnxruntime")
    for method in ("import_framework", "load", "prepare", "close"):
        assert callable(getattr(cls, method))
    assert isinstance(cls.idiomatic, str) and cls.idiomatic


def test_onnxruntime_runner_computes_and_records_its_settings(tmp_path):
    runner = OrtRunner.load(tiny_onnx(tmp_path / "m.onnx"), provider="cpu", threads=1,
                            optimization="basic")
    assert runner.variants == ("run", "iobinding")
    out = runner.prepare("run", {"x": np.array([[-1.0, 0.5, 2.0]], dtype=np.float32)})()
    np.testing.assert_array_equal(out[0], [[0.0, 0.5, 2.0]])
    assert runner.settings["session_providers"][0] == "CPUExecutionProvider"
    assert runner.settings["intra_op_threads"] == 1
    assert runner.settings["graph_optimization"] == "basic"
    assert runner.fixed_batch is None
    runner.close()


def test_iobinding_runs_the_model_on_bound_inputs(tmp_path):
    runner = OrtRunner.load(tiny_onnx(tmp_path / "m.onnx"), provider="cpu", threads=1)
    binding = runner.prepare("iobinding", {"x": np.array([[-1.0, 0.5, 2.0]], dtype=np.float32)})()
    np.testing.assert_array_equal(binding.copy_outputs_to_cpu()[0], [[0.0, 0.5, 2.0]])


def test_fixed_batch_is_measured_at_its_size_only(tmp_path):
    from toolkit.steps import MeasureSpec, measure_case

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
        TorchRunner.load(None, provider="cuda", threads=1)


@pytest.mark.cuda
def test_cuda_session_really_runs_on_cuda(tmp_path):
    if not cuda_usable():
        pytest.skip("no usable CUDA provider (no GPU or no CUDA 13 libraries)")
    runner = OrtRunner.load(tiny_onnx(tmp_path / "m.onnx"), provider="cuda", threads=1)
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
    torch.save(model, tmp_path / "m.pt")
    runner = TorchRunner.load(tmp_path / "m.pt", provider="cuda", threads=1)
    assert runner.device == "cuda:0"
    out = runner.prepare("inference_mode", {"input": np.ones((2, 3), dtype=np.float32)})()
    assert out.is_cuda and tuple(out.shape) == (2, 4)
    assert runner.gpu_memory_mb() > 0
