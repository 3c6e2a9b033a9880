"""The runner contract over every registered runner, and the CUDA honesty rule."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import cuda_usable
from toolkit.errors import ProviderUnavailableError
from toolkit.runners import RUNNERS
from toolkit.runners.onnxruntime import OrtRunner, create_session, session_options


def tiny_onnx(path):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
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
    runner = OrtRunner.load(tiny_onnx(tmp_path / "m.onnx"), provider="cpu", threads=1)
    out = runner.prepare("run", np.array([[-1.0, 0.5, 2.0]], dtype=np.float32))()
    np.testing.assert_array_equal(out[0], [[0.0, 0.5, 2.0]])
    assert runner.settings["session_providers"][0] == "CPUExecutionProvider"
    assert runner.settings["intra_op_threads"] == 1
    runner.close()


def test_cuda_without_a_gpu_is_refused_with_ort_reason(tmp_path):
    if cuda_usable():
        pytest.skip("CUDA is usable here: nothing to refuse")
    with pytest.raises(ProviderUnavailableError, match="CUDAExecutionProvider not usable"):
        create_session(tiny_onnx(tmp_path / "m.onnx"), "cuda", session_options(1, "all"))


@pytest.mark.cuda
def test_cuda_session_really_runs_on_cuda(tmp_path):
    if not cuda_usable():
        pytest.skip("no usable CUDA provider (no GPU or no CUDA 13 libraries)")
    runner = OrtRunner.load(tiny_onnx(tmp_path / "m.onnx"), provider="cuda", threads=1)
    assert runner.settings["session_providers"][0] == "CUDAExecutionProvider"
    assert runner.device == "cuda:0"
    out = runner.prepare("run", np.array([[-1.0, 0.5, 2.0]], dtype=np.float32))()
    np.testing.assert_array_equal(out[0], [[0.0, 0.5, 2.0]])
