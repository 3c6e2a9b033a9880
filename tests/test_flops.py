"""FLOP counts of small graphs whose count is known by hand, and the peak measurement."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from tests.model_files import onnx_model
from toolkit import flops


def weight(name, shape):
    return numpy_helper.from_array(np.ones(shape, dtype=np.float32), name)


def value(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_matmul_and_relu(tmp_path):
    path = onnx_model(tmp_path / "mm.onnx",
                      [helper.make_node("MatMul", ["x", "w"], ["h"]),
                       helper.make_node("Relu", ["h"], ["y"])],
                      [value("x", ["N", 64])], [value("y", ["N", 10])], [weight("w", (64, 10))])
    # 2 * 64 * 10 per row for the product, 10 for the Relu
    assert flops.count(path, 1) == 2 * 64 * 10 + 10
    assert flops.count(path, 8) == 8 * (2 * 64 * 10 + 10)
    assert flops.flops_per_row(path) == 2 * 64 * 10 + 10


def test_gemm_with_bias_and_transposed_weight(tmp_path):
    path = onnx_model(tmp_path / "gemm.onnx",
                      [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)],
                      [value("x", ["N", 16])], [value("y", ["N", 4])],
                      [weight("w", (4, 16)), weight("b", (4,))])
    assert flops.count(path, 2) == 2 * (2 * 16 * 4 + 4)


def test_conv(tmp_path):
    # 1 -> 2 channels, 3x3 kernel, no padding, 5x5 input: 3x3 output per channel
    path = onnx_model(tmp_path / "conv.onnx",
                      [helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3])],
                      [value("x", ["N", 1, 5, 5])], [value("y", ["N", 2, 3, 3])],
                      [weight("w", (2, 1, 3, 3)), weight("b", (2,))])
    outputs = 2 * 3 * 3
    assert flops.count(path, 1) == 2 * outputs * 1 * 9 + outputs


def test_conv_transpose(tmp_path):
    # 2 -> 1 channel, 2x2 kernel, stride 1, 3x3 input: each input element scatters 1 * 4 terms
    path = onnx_model(tmp_path / "convt.onnx",
                      [helper.make_node("ConvTranspose", ["x", "w"], ["y"], kernel_shape=[2, 2])],
                      [value("x", ["N", 2, 3, 3])], [value("y", ["N", 1, 4, 4])],
                      [weight("w", (2, 1, 2, 2))])
    assert flops.count(path, 1) == 2 * (2 * 3 * 3) * 1 * 4


def ml_model(path, node, inputs, outputs):
    graph = helper.make_graph([node], "ml", inputs, outputs)
    model = helper.make_model(graph, ir_version=8, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    path.write_bytes(model.SerializeToString())
    return path


def test_linear_models_of_the_ml_domain_are_counted(tmp_path):
    # 3 features, 2 targets: 6 multiply-adds and 2 intercepts per row
    path = ml_model(tmp_path / "linear.onnx",
                    helper.make_node("LinearRegressor", ["x"], ["y"], domain="ai.onnx.ml",
                                     coefficients=[1.0] * 6, intercepts=[0.5, 0.5], targets=2),
                    [value("x", ["N", 3])], [value("y", ["N", 2])])
    assert flops.count(path, 4) == 4 * (2 * 6 + 2)


def test_tree_ensembles_get_no_figure(tmp_path):
    node = helper.make_node(
        "TreeEnsembleRegressor", ["x"], ["y"], domain="ai.onnx.ml", n_targets=1,
        nodes_featureids=[0], nodes_modes=["LEAF"], nodes_nodeids=[0], nodes_treeids=[0],
        nodes_values=[0.0], nodes_truenodeids=[0], nodes_falsenodeids=[0],
        target_ids=[0], target_nodeids=[0], target_treeids=[0], target_weights=[1.0])
    path = ml_model(tmp_path / "tree.onnx", node, [value("x", ["N", 3])],
                    [value("y", ["N", 1])])
    assert flops.count(path, 1) is None


def test_peak_is_measured_once_and_cached(tmp_path):
    cache = tmp_path / "peak.json"
    first = flops.cached_peak(cache, "this machine", 1)
    assert first > 0.1  # GFLOP/s: any real CPU does more than this
    cache.write_text('{"this machine": 123.0}')
    assert flops.cached_peak(cache, "this machine", 1) == 123.0  # read back, not re-measured
