import numpy as np

from exporters.parity import compare


def test_identical_outputs_pass():
    x = np.random.default_rng(0).random((20, 10)).astype(np.float32)
    parity = compare(x, x.copy(), "multiclass")
    assert parity.passed and parity.max_abs == 0.0 and parity.label_agreement == 1.0


def test_difference_beyond_tolerance_fails_and_is_measured():
    ref = np.array([[0.2, 0.8], [0.9, 0.1]])
    got = ref + np.array([[0.0, 0.01], [0.0, 0.0]])
    parity = compare(ref, got, "multiclass")
    assert not parity.passed
    assert abs(parity.max_abs - 0.01) < 1e-12
    assert parity.label_agreement == 1.0


def test_label_disagreement_is_counted():
    ref = np.array([[0.6, 0.4], [0.3, 0.7]])
    got = np.array([[0.4, 0.6], [0.3, 0.7]])
    assert compare(ref, got, "multiclass").label_agreement == 0.5
    binary = compare(np.array([0.6, 0.2]), np.array([0.4, 0.2]), "binary")
    assert binary.label_agreement == 0.5


def test_relative_error_ignores_values_near_zero():
    ref = np.array([1e-9, 1.0])
    got = np.array([2e-9, 1.0])
    parity = compare(ref, got, "regression")
    assert parity.max_rel == 0.0  # 1e-9 -> 2e-9 is 100% relative, but below atol
    assert parity.passed and parity.label_agreement is None


def test_shape_mismatch_fails():
    assert not compare(np.zeros((4, 2)), np.zeros((4, 3)), "multiclass").passed


def test_tolerances_are_overridable():
    ref, got = np.array([1.0]), np.array([1.001])
    assert not compare(ref, got, "regression").passed
    assert compare(ref, got, "regression", rtol=1e-2).passed
