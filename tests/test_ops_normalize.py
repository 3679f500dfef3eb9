"""The batch-norm primitives, normalize and its gradient: derivatives of every order match
finite differences, and the fused double backward equals the one written with primitives."""
import numpy as np
from hypothesis import given, strategies as st

import tinymeta as tm
from tinymeta.ops.normalize import normalize

shapes = st.tuples(st.integers(1, 3), st.integers(2, 4), st.integers(1, 3), st.integers(1, 5))


def normalize_grad(x, g):
    """Normalize's dx as a function of (x, g): the NormalizeGrad primitive."""
    return tm.grad(normalize(x, 1e-3), x, grad_outputs=g, create_graph=True)


@given(shape=shapes, seed=st.integers(0, 10**6))
def test_fused_double_backward_equals_the_recorded_one(shape, seed):
    """NormalizeGrad's backward: the fused kernel (nothing recorded) and the primitives (recorded)."""
    rng = np.random.default_rng(seed)
    x = tm.tensor(rng.standard_normal(shape) * 3 + 1, requires_grad=True)
    g = tm.tensor(rng.standard_normal(shape), requires_grad=True)
    h = tm.tensor(rng.standard_normal(shape))
    fused = tm.grad(normalize_grad(x, g), [g, x], grad_outputs=h)
    recorded = tm.grad(normalize_grad(x, g), [g, x], grad_outputs=h, create_graph=True)
    for a, b in zip(fused, recorded):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-9, atol=1e-11)


@given(shape=shapes, seed=st.integers(0, 10**6))
def test_normalize_grad_gradchecks_to_second_order(shape, seed):
    """The primitive dx(g, x), in both of its inputs: normalize's second and third derivatives."""
    rng = np.random.default_rng(seed)
    tm.check_grads(normalize_grad, rng.standard_normal(shape) * 2, rng.standard_normal(shape), order=2)


@given(shape=shapes, seed=st.integers(0, 10**6))
def test_normalize_gradchecks_to_second_order(shape, seed):
    x = np.random.default_rng(seed).standard_normal(shape) * 2
    tm.check_grads(lambda t: normalize(t, 1e-3), x, order=2)


def test_normalize_third_order():
    x = np.random.default_rng(0).standard_normal((2, 3, 2, 2))
    tm.check_grads(lambda t: tm.sum(tm.tanh(normalize(t, 1e-3))), x, order=3)


def test_normalize_names_the_expected_layout():
    try:
        normalize(tm.tensor(np.ones((3, 4))), 1e-5)
    except ValueError as err:
        assert "normalize: expected (groups, examples, channels, pixels), got shape (3, 4)" in str(err)
    else:
        raise AssertionError("a 2-d input was accepted")
