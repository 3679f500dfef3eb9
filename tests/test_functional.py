"""Hessian-vector products, jvp, jacobian, hessian, and third-order derivatives."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinymeta as tm


def quadratic_form(a):
    return lambda x: tm.sum(x * tm.matmul(tm.tensor(a), x))


@given(n=st.integers(1, 6), seed=st.integers(0, 1000))
def test_hvp_of_quadratic_form_is_a_plus_a_transpose_times_v(n, seed):
    rng = np.random.default_rng(seed)
    a, x, v = rng.standard_normal((n, n)), rng.standard_normal(n), rng.standard_normal(n)
    _, hv = tm.hvp(quadratic_form(a), tm.tensor(x), tm.tensor(v))
    np.testing.assert_allclose(hv.data, (a + a.T) @ v, rtol=1e-12, atol=1e-12)


def mlp_loss(params_x):
    w1, b1, w2, b2, x = params_x
    h = tm.tanh(x @ w1 + b1)
    return tm.mean((h @ w2 + b2) ** 2)


def _mlp_point(rng):
    shapes = [(3, 4), (4,), (4, 1), (1,)]
    return [rng.standard_normal(s) for s in shapes], rng.standard_normal((5, 3))


@given(seed=st.integers(0, 1000))
def test_hvp_equals_finite_differences_of_the_gradient(seed):
    rng = np.random.default_rng(seed)
    params, x = _mlp_point(rng)
    flat = np.concatenate([p.ravel() for p in params])
    v = rng.standard_normal(flat.size)

    def loss_of_flat(w):
        return mlp_loss(unflatten_t(w) + [tm.tensor(x)])

    def unflatten_t(w):
        out, i = [], 0
        for p in params:
            out.append(tm.reshape(w[i:i + p.size], p.shape))
            i += p.size
        return out

    _, hv = tm.hvp(loss_of_flat, tm.tensor(flat), tm.tensor(v))
    eps = 1e-5
    _, g_plus = tm.vjp(loss_of_flat, tm.tensor(flat + eps * v))
    _, g_minus = tm.vjp(loss_of_flat, tm.tensor(flat - eps * v))
    np.testing.assert_allclose(hv.data, (g_plus.data - g_minus.data) / (2 * eps), rtol=1e-6, atol=1e-8)


def test_hvp_of_tanh_mlp_equals_explicit_hessian_times_v():
    rng = np.random.default_rng(1)
    params, x = _mlp_point(rng)
    w1 = params[0]
    v = rng.standard_normal(w1.shape)

    def loss_of_w1(w):
        return mlp_loss([w] + [tm.tensor(p) for p in params[1:]] + [tm.tensor(x)])

    hessian = tm.hessian(loss_of_w1, tm.tensor(w1)).data.reshape(w1.size, w1.size)
    _, hv = tm.hvp(loss_of_w1, tm.tensor(w1), tm.tensor(v))
    np.testing.assert_allclose(hv.data.ravel(), hessian @ v.ravel(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-12)  # a Hessian is symmetric


def test_hessian_of_quadratic_form():
    a = np.random.default_rng(2).standard_normal((3, 3))
    h = tm.hessian(quadratic_form(a), tm.tensor(np.zeros(3)))
    np.testing.assert_allclose(h.data, a + a.T, atol=1e-12)


def test_jacobian_of_elementwise_and_linear_maps():
    a = np.random.default_rng(3).standard_normal((2, 3))
    x = np.array([0.1, -0.4, 0.7])
    np.testing.assert_allclose(tm.jacobian(lambda t: tm.matmul(tm.tensor(a), t), tm.tensor(x)).data, a)
    np.testing.assert_allclose(tm.jacobian(tm.exp, tm.tensor(x)).data, np.diag(np.exp(x)))


@given(seed=st.integers(0, 1000))
def test_jvp_equals_jacobian_times_v(seed):
    rng = np.random.default_rng(seed)
    a, x, v = rng.standard_normal((2, 3)), rng.standard_normal(3), rng.standard_normal(3)

    def f(t):
        return tm.tanh(tm.matmul(tm.tensor(a), t))

    out, jv = tm.jvp(f, tm.tensor(x), tm.tensor(v))
    np.testing.assert_allclose(out.data, np.tanh(a @ x))
    np.testing.assert_allclose(jv.data, tm.jacobian(f, tm.tensor(x)).data @ v, rtol=1e-10)


def test_vjp_of_several_inputs():
    x, y = tm.tensor(np.array([1.0, 2.0])), tm.tensor(np.array([3.0, 4.0]))
    out, (gx, gy) = tm.vjp(lambda a, b: a * b, (x, y), tm.tensor(np.array([1.0, -1.0])))
    np.testing.assert_allclose(out.data, [3.0, 8.0])
    np.testing.assert_allclose(gx.data, [3.0, -4.0])
    np.testing.assert_allclose(gy.data, [1.0, -2.0])


def nth_derivative(f, x, n):
    x = tm.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    y = f(x)
    for _ in range(n):
        y = tm.grad(y, x, create_graph=True)
    return y.data


@pytest.mark.parametrize("x", [-1.3, 0.0, 0.4, 2.2])
def test_third_derivative_of_sin_is_minus_cos(x):
    assert nth_derivative(tm.sin, x, 3) == pytest.approx(-np.cos(x), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("x", [-2.0, 0.5, 3.0])
def test_third_derivative_of_x_to_the_fourth_is_24x(x):
    assert nth_derivative(lambda t: t ** 4, x, 3) == pytest.approx(24 * x)


def test_third_order_gradcheck_on_a_composition():
    x = np.random.default_rng(4).standard_normal((2, 3))
    tm.check_grads(lambda t: tm.sum(tm.tanh(t) * tm.exp(t * 0.3)), x, order=3)


@pytest.mark.parametrize("call, message", [
    (lambda x: tm.hvp(lambda t: (t ** 2).sum(), x, np.ones(4)),
     r"hvp: v has shape \(4,\) but the input has shape \(3,\); they must match"),
    (lambda x: tm.jvp(lambda a, b: a * b, (x, x), (np.ones(3),)), "jvp: 1 directions v for 2 inputs"),
    (lambda x: tm.jvp(lambda a, b: a * b, (x, x), (np.ones(3), np.ones((3, 1)))),
     r"jvp: v\[1\] has shape \(3, 1\) but the input has shape \(3,\); they must match")])
def test_a_direction_that_does_not_fit_the_input_is_refused(call, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        call(tm.tensor(np.ones(3), requires_grad=True))


def test_directions_given_as_lists_take_the_inputs_precision():
    x = tm.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    _, hv = tm.hvp(lambda t: (t ** 3).sum(), x, [1.0, 0.0, 1.0])          # H = diag(6 x)
    _, jv = tm.jvp(lambda a, b: a * b, (x, x), ([1.0, 1.0, 1.0], [0.0, 1.0, 0.0]))
    assert hv.dtype == np.float64 and jv.dtype == np.float64
    np.testing.assert_array_equal(hv.data, [6.0, 0.0, 18.0])
    np.testing.assert_array_equal(jv.data, [1.0, 4.0, 3.0])               # x v_a + x v_b
