"""The batch-norm primitives, normalize (with and without its scale and shift) and its gradient:
derivatives of every order match finite differences, and the fused backwards equal the ones
written with primitives."""
import numpy as np
from hypothesis import given, strategies as st

import tinymeta as tm
from tinymeta.ops.normalize import normalize, normalize_affine

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


def affine_inputs(shape, seed):
    rng = np.random.default_rng(seed)
    per_channel = (shape[0], shape[2])
    return rng.standard_normal(shape) * 2 + 1, rng.standard_normal(per_channel), rng.standard_normal(per_channel)


def batch_norm(x, w, b):
    return normalize_affine(x, w, b, 1e-3)


@given(shape=shapes, seed=st.integers(0, 10**6))
def test_normalize_affine_gradchecks_to_second_order(shape, seed):
    tm.check_grads(batch_norm, *affine_inputs(shape, seed), order=2)


def test_normalize_affine_third_order():
    x, w, b = affine_inputs((2, 3, 2, 2), 0)
    tm.check_grads(lambda *t: tm.sum(tm.tanh(batch_norm(*t))), x, w, b, order=3)


@given(shape=shapes, seed=st.integers(0, 10**6))
def test_normalize_affine_is_normalize_scaled_and_shifted(shape, seed):
    """One node computes what normalize, a product and a sum compute, values and gradients
    (the fused backward, and the recorded one that MAML's inner step builds)."""
    x, w, b = (tm.tensor(a, requires_grad=True) for a in affine_inputs(shape, seed))
    view = (shape[0], 1, shape[2], 1)
    composed = normalize(x, 1e-3) * tm.reshape(w, view) + tm.reshape(b, view)
    fused = batch_norm(x, w, b)
    np.testing.assert_allclose(fused.data, composed.data, rtol=1e-12, atol=1e-12)
    g = tm.tensor(np.random.default_rng(seed + 1).standard_normal(shape))
    expected = tm.grad(composed, [x, w, b], grad_outputs=g)
    for create_graph in (False, True):
        for a, e in zip(tm.grad(batch_norm(x, w, b), [x, w, b], grad_outputs=g, create_graph=create_graph),
                        expected):
            np.testing.assert_allclose(a.data, e.data, rtol=1e-9, atol=1e-11)


def test_normalize_affine_names_the_parameter_shape_it_expects():
    x, w, b = affine_inputs((2, 3, 4, 5), 0)
    try:
        normalize_affine(tm.tensor(x), tm.tensor(w[:, :3]), tm.tensor(b), 1e-5)
    except ValueError as err:
        assert ("normalize_affine: scale (2, 3) and shift (2, 4) do not fit input (2, 3, 4, 5); "
                "expected (2, 4) (groups, channels)") in str(err)
    else:
        raise AssertionError("a scale of 3 channels was accepted for 4")
