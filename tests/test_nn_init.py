"""Initialisers: the scales their formulas promise, and reproducibility from a Generator."""
import math

import numpy as np
import pytest

from tinymeta.nn import init


def test_kaiming_uniform_bound_and_variance():
    w = init.kaiming_uniform((400, 300), np.random.default_rng(0))
    bound = math.sqrt(2) * math.sqrt(3 / 400)
    assert np.abs(w).max() <= bound
    assert w.var() == pytest.approx(2 / 400, rel=0.03)  # He: Var = 2 / fan_in


def test_kaiming_normal_for_conv_uses_receptive_field():
    w = init.kaiming_normal((64, 32, 3, 3), np.random.default_rng(1), layout="conv")
    assert w.var() == pytest.approx(2 / (32 * 9), rel=0.03)


@pytest.mark.parametrize("fn", [init.xavier_uniform, init.xavier_normal])
def test_xavier_variance(fn):
    w = fn((300, 500), np.random.default_rng(2))
    assert w.var() == pytest.approx(2 / (300 + 500), rel=0.03)


def test_same_generator_state_same_weights_and_dtype():
    a = init.xavier_uniform((3, 4), np.random.default_rng(5))
    b = init.xavier_uniform((3, 4), np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32


def test_generator_is_required():
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        init.kaiming_uniform((3, 3), 42)
    with pytest.raises(ValueError, match=r"a conv weight is \(out, in, kh, kw\)"):
        init.kaiming_normal((3, 3), np.random.default_rng(0), layout="conv")
