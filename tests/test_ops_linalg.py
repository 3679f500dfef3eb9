"""matmul's backward reads operands transposed instead of adding transpose nodes: every
combination of transposed reads is reached by third derivatives, checked here; and
linear, x @ w + b as one primitive, to second and third order."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinymeta as tm
from tinymeta.ops.linalg import MatMul


@pytest.mark.parametrize("a_shape, b_shape", [((3, 4), (4, 2)), ((2, 3, 4), (4, 5)), ((4,), (2, 4, 3)),
                                              ((2, 1, 3, 4), (3, 4, 2)), ((4,), (4,))])
def test_matmul_third_derivatives(a_shape, b_shape):
    rng = np.random.default_rng(0)
    tm.check_grads(lambda a, b: tm.sum(tm.tanh(a @ b)), rng.standard_normal(a_shape), rng.standard_normal(b_shape),
                   order=3, directions=1)


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_transposed_reads_match_numpy_and_differentiate(transpose_a, transpose_b):
    rng = np.random.default_rng(1)
    # op(a) is (2, 3, 4) and op(b) (2, 4, 5) in every case: rectangular, so a missed transpose fails
    a = rng.standard_normal((2, 4, 3) if transpose_a else (2, 3, 4))
    b = rng.standard_normal((2, 5, 4) if transpose_b else (2, 4, 5))
    expected = (a.swapaxes(-1, -2) if transpose_a else a) @ (b.swapaxes(-1, -2) if transpose_b else b)

    def product(x, y):
        return MatMul.apply(x, y, transpose_a=transpose_a, transpose_b=transpose_b)

    np.testing.assert_allclose(product(tm.tensor(a), tm.tensor(b)).data, expected, rtol=1e-12)
    tm.check_grads(lambda x, y: tm.sum(tm.tanh(product(x, y))), a, b, order=2)


@settings(deadline=None, max_examples=25)
@given(tasks=st.sampled_from([None, 1, 3]), x_has_tasks=st.booleans(), examples=st.sampled_from([(), (1,), (4,)]),
       d_in=st.integers(1, 3), d_out=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_linear_primitive_is_x_w_plus_b_to_second_order(tasks, x_has_tasks, examples, d_in, d_out, seed):
    """One node for x @ w + b, per-task weights and biases (tasks) or not, inputs with or without the
    task axis and with or without an example axis, d_in = 1 being an outer product."""
    rng = np.random.default_rng(seed)
    lead = () if tasks is None else (tasks,)
    x_lead = lead if x_has_tasks or not examples else ()
    x = rng.standard_normal(x_lead + examples + (d_in,))
    w, b = rng.standard_normal(lead + (d_in, d_out)), rng.standard_normal(lead + (d_out,))
    product = x @ w
    expected = product + b.reshape(lead + (1,) * (product.ndim - 1 - len(lead)) + (d_out,))
    out = tm.ops.linear(tm.tensor(x), tm.tensor(w), tm.tensor(b))
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)
    tm.check_grads(lambda x, w, b: tm.sum(tm.tanh(tm.ops.linear(x, w, b))), x, w, b, order=2)


def test_linear_primitive_third_derivatives_with_a_task_axis():
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((2, 3, 1)), rng.standard_normal((2, 1, 4)), rng.standard_normal((2, 4))
    tm.check_grads(lambda x, w, b: tm.sum(tm.tanh(tm.ops.linear(x, w, b))), x, w, b, order=3, directions=1)


def test_linear_primitive_rejects_a_bias_that_would_broadcast_another_way():
    x, w = tm.tensor(np.ones((3, 4, 2))), tm.tensor(np.ones((3, 2, 5)))
    with pytest.raises(ValueError, match=r"^linear: cannot apply to input \(3, 4, 2\), weight \(3, 2, 5\) and bias "
                                         r"\(1, 5\): the bias must have the shape .* \(3, 5\)"):
        tm.ops.linear(x, w, tm.tensor(np.ones((1, 5))))
    with pytest.raises(TypeError, match="linear: operands have dtypes float64 and float32"):
        tm.ops.linear(x, w, tm.tensor(np.ones((3, 5), np.float32)))


@pytest.mark.parametrize("a_shape, b_shape", [((3, 1), (1, 4)), ((2, 3, 1), (2, 1, 4)), ((2, 3, 1), (1, 4)),
                                              ((3, 1), (2, 1, 4))])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_outer_products_equal_numpys_matmul(a_shape, b_shape, transpose_b):
    """Inner size 1 is computed as a broadcast multiply: the same values and shape as a @ b."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(a_shape).astype(np.float32), rng.standard_normal(b_shape).astype(np.float32)
    b_stored = b.swapaxes(-1, -2).copy() if transpose_b else b
    out = MatMul.apply(tm.tensor(a), tm.tensor(b_stored), transpose_b=transpose_b).data
    assert out.shape == (a @ b).shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, a @ b)


@pytest.mark.parametrize("a_shape, b_shape", [((2, 1, 3), (2, 1, 3)), ((3, 2), (1, 2)), ((3, 1), (3, 4)),
                                              ((2, 1), (2, 4))])
def test_products_that_do_not_align_are_refused_not_broadcast(a_shape, b_shape):
    """Shapes one size-1 axis away from an outer product: the broadcast multiply must not take them (it would
    return an array of the wrong shape or values instead of the error)."""
    a, b = tm.tensor(np.ones(a_shape)), tm.tensor(np.ones(b_shape))
    with pytest.raises(ValueError, match="do not align"):
        tm.matmul(a, b)
    with pytest.raises(ValueError, match="do not align"):
        tm.linear(a, b, tm.tensor(np.ones(b_shape[:-2] + b_shape[-1:])))


def test_linear_names_itself_when_the_weight_has_another_dtype():
    with pytest.raises(TypeError, match="^linear: operands have dtypes float32 and float64"):
        tm.linear(tm.tensor(np.ones((2, 3), np.float32)), tm.tensor(np.ones((3, 4))), tm.tensor(np.ones(4)))
