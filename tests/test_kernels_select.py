"""kernels/select.py's where against numpy's: the same values (NaN and infinities
passed through where selected, never made by the selection), dtype and shape,
on its fast loops and on the shapes it hands to numpy."""
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import tinymeta.kernels as K
from tinymeta.kernels import select

SPECIALS = np.array([np.nan, np.inf, -np.inf, -0.0])


def operand(rng, kind, shape, dtype):
    """A full array (some NaN/inf entries), a size-1 array, a 0-d array or a Python number."""
    if kind == "number":
        return float(rng.standard_normal())
    if kind == "0-d":
        return np.asarray(rng.standard_normal(), dtype)
    if kind == "size-1":
        return np.full((1,) * len(shape), rng.standard_normal(), dtype)
    values = rng.standard_normal(shape)
    values.flat[rng.integers(0, values.size, size=max(1, values.size // 5))] = rng.choice(SPECIALS)
    return values.astype(dtype)


def assert_same(actual, expected):
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    np.testing.assert_array_equal(actual, expected)  # NaN at the same places counts as equal


@settings(deadline=None, max_examples=40)
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple),
       a_kind=st.sampled_from(["full", "number", "0-d", "size-1"]),
       b_kind=st.sampled_from(["full", "number", "0-d", "size-1"]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**32 - 1))
def test_where_equals_numpy(shape, a_kind, b_kind, dtype, seed):
    rng = np.random.default_rng(seed)
    cond = rng.random(shape) < 0.5
    a, b = operand(rng, a_kind, shape, dtype), operand(rng, b_kind, shape, dtype)
    with mock.patch.object(select, "SMALL", 1):  # the numba loops, at sizes hypothesis can draw
        assert_same(K.where(cond, a, b), np.where(cond, a, b))


@settings(deadline=None, max_examples=40)
@given(shapes=mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**32 - 1))
def test_where_equals_numpy_on_shapes_that_broadcast_each_other(shapes, dtype, seed):
    """Condition and operands of any mutually broadcastable shapes (size-1 arrays with extra
    axes, a condition smaller than an operand): the fast loops must take only what they can."""
    rng = np.random.default_rng(seed)
    cond_shape, a_shape, b_shape = shapes.input_shapes
    cond = rng.random(cond_shape) < 0.5
    a, b = (rng.standard_normal(shape).astype(dtype) for shape in (a_shape, b_shape))
    with mock.patch.object(select, "SMALL", 1):
        assert_same(K.where(cond, a, b), np.where(cond, a, b))


@pytest.mark.parametrize("size", [select.SMALL - 1, select.SMALL])
def test_where_equals_numpy_on_either_side_of_the_small_size(size):
    rng = np.random.default_rng(size)
    cond, grad = rng.random(size) < 0.5, rng.standard_normal(size).astype(np.float32)
    assert_same(K.where(cond, grad, 0.0), np.where(cond, grad, 0.0))
    assert_same(K.where(cond, 0.0, grad), np.where(cond, 0.0, grad))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_where_selects_zero_over_nan_and_keeps_nan_where_selected(dtype):
    """ReLU's backward: a NaN gradient where the mask is off must not leak through."""
    grad = np.array([np.nan, np.inf, 2.0, np.nan], dtype)
    mask = np.array([False, False, True, True])
    with mock.patch.object(select, "SMALL", 1):
        out = K.where(mask, grad, 0.0)
        assert out.dtype == dtype
        np.testing.assert_array_equal(out, [0.0, 0.0, 2.0, np.nan])
        np.testing.assert_array_equal(K.where(mask, 0.0, grad), [np.nan, np.inf, 0.0, 0.0])


@pytest.mark.parametrize("case", ["broadcast condition", "strided operand", "mixed dtypes", "integer operands",
                                  "broadcast operand", "single value with more axes"])
def test_where_hands_other_shapes_to_numpy_with_the_same_result(case):
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((4, 5)).astype(np.float32), rng.standard_normal((4, 5)).astype(np.float32)
    cond = rng.random((4, 5)) < 0.5
    if case == "broadcast condition":
        cond = cond[:1]
    elif case == "strided operand":
        a = rng.standard_normal((4, 10)).astype(np.float32)[:, ::2]
    elif case == "mixed dtypes":
        b = b.astype(np.float64)
    elif case == "integer operands":
        a, b = np.arange(20).reshape(4, 5), -np.arange(20).reshape(4, 5)
    elif case == "broadcast operand":
        b = b[:, :1]
    else:  # one value, but it makes the result (1, 4, 5)
        b = np.full((1, 1, 1), 2.0, np.float32)
    with mock.patch.object(select, "SMALL", 1):
        assert_same(K.where(cond, a, b), np.where(cond, a, b))


@settings(max_examples=20)
@given(st.integers(0, 2**16), st.sampled_from([np.float32, np.float64]), st.booleans())
def test_relu_backward_equals_numpy_where_on_the_comparison(seed, dtype, strided):
    """g where a >= 0, else 0, with NaN and infinities in both (a NaN in a selects 0, one in g passes
    where selected); strided operands take numpy's path, with the same result."""
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 6, size=rng.integers(0, 4)))
    g, a = operand(rng, "full", shape, dtype), operand(rng, "full", shape + (2,) if strided else shape, dtype)
    if strided:
        a = a[..., 0]
    out = K.relu_backward(g, a)
    assert_same(out, np.where(a >= 0, g, dtype(0)))
    assert_same(out, K.reference.relu_backward(g, a))
