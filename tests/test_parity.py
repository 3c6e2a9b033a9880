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


def test_tiny_outputs_are_inconclusive_not_a_silent_pass():
    # a random-init network whose outputs are about 1e-9: any absolute tolerance passes it
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((8, 10)) * 1e-9
    parity = compare(ref, ref * 1.5, "multiclass")
    assert parity.verdict == "inconclusive" and not parity.passed
    assert parity.scale is not None and parity.scale < 1e-8
    from exporters.parity import explain

    assert "too small to judge" in explain(parity)


def test_tolerance_follows_the_scale_of_the_outputs():
    ref = np.array([[1000.0, -2000.0, 500.0]])
    # 5e-3 off on outputs in the thousands: float32 noise, passes (1e-5 * 2000 = 0.02)
    assert compare(ref, ref + 5e-3, "regression").verdict == "pass"
    # 0.5 off: fails, while an absolute atol of 1 would have let it through unnoticed
    assert compare(ref, ref + 0.5, "regression").verdict == "fail"
    small = np.array([[1e-3, -2e-3]])
    assert compare(small, small * (1 + 1e-3), "regression").verdict == "fail"
    assert compare(small, small * (1 + 1e-6), "regression").verdict == "pass"


def test_nan_outputs_fail_even_when_tiny():
    ref = np.full((2, 2), 1e-12)
    got = ref.copy()
    got[0, 0] = np.nan
    assert compare(ref, got, "regression").verdict == "fail"
