"""Every op, from one table: forward against numpy, first- and second-order gradients
against finite differences (float64), on shapes hypothesis draws.

Each case says how to draw its inputs (from a hypothesis data object and a numpy
Generator), how tinymeta computes it, and how numpy does. Inputs are drawn
away from kinks (|x| for abs and relu, ties for max and maximum) where the
derivative does not exist.
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

import tinymeta as tm
from tinymeta import check_grads


@dataclass
class Case:
    name: str
    draw: Callable      # (data, rng) -> (list of input arrays, dict of op parameters)
    op: Callable        # (*tensors, **params) -> Tensor
    ref: Callable       # (*arrays, **params) -> array
    order: int = 2


def shape(data, min_dims=0, max_dims=3):
    return data.draw(array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=4))


def broadcast_pair(data):
    return data.draw(mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4)).input_shapes


def normal(rng, s):
    return rng.standard_normal(s)


def away_from_zero(rng, s):
    return rng.choice([-1.0, 1.0], size=s) * rng.uniform(0.2, 1.5, size=s)


def positive(rng, s):
    return rng.uniform(0.3, 2.0, size=s)


def distinct(rng, s):
    """Values at least 0.05 apart, so a max has no ties."""
    n = int(np.prod(s))
    return (rng.permutation(n) * 0.05 - n * 0.025 + rng.uniform(0, 0.01, n)).reshape(s)


def _two(data, rng, gen_a, gen_b):
    sa, sb = broadcast_pair(data)
    return [gen_a(rng, sa), gen_b(rng, sb)], {}


def one(gen, min_dims=0):
    return lambda data, rng: ([gen(rng, shape(data, min_dims))], {})


def reduction(gen):
    def draw(data, rng):
        s = shape(data, min_dims=1)
        axis = data.draw(st.one_of(st.none(), st.integers(-len(s), len(s) - 1),
                                   st.lists(st.integers(0, len(s) - 1), min_size=1, unique=True).map(tuple)))
        return [gen(rng, s)], {"axis": axis, "keepdims": data.draw(st.booleans())}
    return draw


def maximum_inputs(data, rng):
    sa, sb = broadcast_pair(data)
    a, b = normal(rng, sa), normal(rng, sb)
    if np.min(np.abs(a - b), initial=1.0) < 0.05:  # no ties: move b clear of a
        b = b + 10.0
    return [a, b], {}


CASES = [
    Case("add", lambda d, r: _two(d, r, normal, normal), lambda a, b: a + b, np.add),
    Case("sub", lambda d, r: _two(d, r, normal, normal), lambda a, b: a - b, np.subtract),
    Case("mul", lambda d, r: _two(d, r, normal, normal), lambda a, b: a * b, np.multiply),
    Case("div", lambda d, r: _two(d, r, normal, away_from_zero), lambda a, b: a / b, np.divide),
    Case("pow_tensor", lambda d, r: _two(d, r, positive, normal), lambda a, b: a ** b, np.power),
    Case("pow_scalar", lambda d, r: ([positive(r, shape(d))], {"p": d.draw(st.sampled_from([2, 3, -1, 0.5, 2.5]))}),
         lambda a, p: a ** p, lambda a, p: a ** p),
    Case("rpow_scalar", one(normal), lambda a: 2.0 ** a, lambda a: 2.0 ** a),
    Case("neg", one(normal), lambda a: -a, np.negative),
    Case("exp", one(normal), tm.exp, np.exp),
    Case("log", one(positive), tm.log, np.log),
    Case("sqrt", one(positive), tm.sqrt, np.sqrt),
    Case("sin", one(normal), tm.sin, np.sin),
    Case("cos", one(normal), tm.cos, np.cos),
    Case("tanh", one(normal), tm.tanh, np.tanh),
    Case("sigmoid", one(normal), tm.sigmoid, lambda a: 1 / (1 + np.exp(-a))),
    Case("abs", one(away_from_zero), tm.abs, np.abs),
    Case("relu", one(away_from_zero), tm.relu, lambda a: np.maximum(a, 0)),
    Case("maximum", maximum_inputs, tm.maximum, np.maximum),
    Case("where", lambda d, r: ([*(_two(d, r, normal, normal)[0])], {"seed": d.draw(st.integers(0, 9))}),
         lambda a, b, seed: tm.where(_mask(a.shape, b.shape, seed), a, b),
         lambda a, b, seed: np.where(_mask(a.shape, b.shape, seed), a, b)),
    Case("sum", reduction(normal), tm.sum, lambda a, axis, keepdims: np.sum(a, axis=axis, keepdims=keepdims)),
    Case("max", reduction(distinct), tm.max, lambda a, axis, keepdims: np.max(a, axis=axis, keepdims=keepdims)),
    Case("mean", reduction(normal), tm.mean, lambda a, axis, keepdims: np.mean(a, axis=axis, keepdims=keepdims)),
    Case("var", reduction(normal), tm.var, lambda a, axis, keepdims: np.var(a, axis=axis, keepdims=keepdims)),
    Case("logsumexp", reduction(normal), tm.logsumexp,
         lambda a, axis, keepdims: np.log(np.sum(np.exp(a), axis=axis, keepdims=keepdims))),
    Case("log_softmax", one(normal, min_dims=1), tm.log_softmax,
         lambda a: a - np.log(np.exp(a).sum(-1, keepdims=True))),
    Case("softmax", one(normal, min_dims=1), tm.softmax,
         lambda a: np.exp(a) / np.exp(a).sum(-1, keepdims=True)),
    Case("reshape", one(normal), lambda a: tm.reshape(a, (-1,)), lambda a: a.reshape(-1)),
    Case("transpose", one(normal), lambda a: a.transpose(), lambda a: a.transpose()),
    Case("permute", lambda d, r: ([normal(r, s := shape(d, 1))], {"axes": d.draw(st.permutations(range(len(s))))}),
         lambda a, axes: tm.permute(a, axes), lambda a, axes: np.transpose(a, axes)),
    Case("broadcast_to", lambda d, r: ([normal(r, (s := broadcast_pair(d))[0])], {"to": np.broadcast_shapes(*s)}),
         lambda a, to: tm.broadcast_to(a, to), lambda a, to: np.broadcast_to(a, to)),
    Case("sum_to", lambda d, r: ([normal(r, np.broadcast_shapes(*(s := broadcast_pair(d))))], {"to": s[0]}),
         lambda a, to: tm.sum_to(a, to), lambda a, to: _numpy_sum_to(a, to)),
    Case("getitem_slice", one(normal, min_dims=1), lambda a: a[1::2], lambda a: a[1::2]),
    Case("getitem_int_array", lambda d, r: ([normal(r, s := shape(d, 1))],
                                            {"idx": r.integers(0, s[0], size=d.draw(st.integers(1, 6)))}),
         lambda a, idx: a[idx], lambda a, idx: a[idx]),
    Case("getitem_gather", lambda d, r: ([normal(r, (n := d.draw(st.integers(1, 5)), c := d.draw(st.integers(1, 5))))],
                                         {"cols": r.integers(0, c, size=n)}),
         lambda a, cols: a[np.arange(len(cols)), cols], lambda a, cols: a[np.arange(len(cols)), cols]),
    Case("concatenate", lambda d, r: ([normal(r, (d.draw(st.integers(1, 3)), 2)), normal(r, (d.draw(st.integers(1, 3)), 2))], {}),
         lambda a, b: tm.concatenate([a, b], axis=0), lambda a, b: np.concatenate([a, b], axis=0)),
    Case("stack", lambda d, r: ([normal(r, s := shape(d)), normal(r, s)], {"axis": d.draw(st.integers(0, len(s)))}),
         lambda a, b, axis: tm.stack([a, b], axis), lambda a, b, axis: np.stack([a, b], axis)),
    Case("matmul", lambda d, r: _matmul_inputs(d, r), lambda a, b: a @ b, np.matmul),
]


def _mask(sa, sb, seed):
    return np.random.default_rng(seed).random(np.broadcast_shapes(sa, sb)) > 0.5


def _numpy_sum_to(a, shape):
    lead = a.ndim - len(shape)
    out = a.sum(axis=tuple(range(lead))) if lead else a
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and out.shape[i] != 1)
    return out.sum(axis=axes, keepdims=True) if axes else out


def _matmul_inputs(data, rng):
    n, k, m = (data.draw(st.integers(1, 4)) for _ in range(3))
    kind = data.draw(st.sampled_from(["2d", "batched", "broadcast", "vec_left", "vec_right", "vec_vec"]))
    shapes = {"2d": ((n, k), (k, m)), "batched": ((2, n, k), (2, k, m)),
              "broadcast": ((3, 1, n, k), (2, k, m)), "vec_left": ((k,), (2, k, m)),
              "vec_right": ((2, n, k), (k,)), "vec_vec": ((k,), (k,))}[kind]
    return [normal(rng, s) for s in shapes], {}


def _draw(case, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    return case.draw(data, rng)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@given(data=st.data())
def test_forward_matches_numpy(case, data):
    arrays, params = _draw(case, data)
    for dtype in (np.float32, np.float64):
        xs = [x.astype(dtype) for x in arrays]
        out = case.op(*[tm.tensor(x) for x in xs], **params)
        expected = case.ref(*xs, **params)
        assert out.shape == np.shape(expected)
        assert out.dtype == dtype
        np.testing.assert_allclose(out.data, expected, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                   atol=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@given(data=st.data())
def test_gradients_first_and_second_order(case, data):
    arrays, params = _draw(case, data)
    check_grads(lambda *ts: case.op(*ts, **params), *arrays, order=case.order)


def test_pow_and_log_of_large_softmax_inputs_stay_finite():
    x = tm.tensor(np.array([[1000.0, 0.0, -1000.0]]), requires_grad=True)
    out = tm.log_softmax(x)
    assert np.all(np.isfinite(out.data))
    np.testing.assert_allclose(tm.logsumexp(x, axis=-1).data, [1000.0])
    (g,) = tm.grad(out[0, 1], [x])
    assert np.all(np.isfinite(g.data))


def test_astype_gradients_return_in_the_input_dtype_to_second_order():
    """astype is exact between float dtypes, so its derivatives are checked analytically:
    finite differences through a float32 round trip would measure rounding, not the op."""
    x = tm.tensor(np.array([0.5, -2.0], dtype=np.float32), requires_grad=True)
    y = tm.sum(tm.astype(x, np.float64) ** 3)
    assert y.dtype == np.float64
    (g,) = tm.grad(y, [x], create_graph=True)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g.data, 3 * x.data ** 2)
    (h,) = tm.grad(tm.sum(g), [x])
    np.testing.assert_allclose(h.data, 6 * x.data)
    tm.check_grads(lambda t: tm.astype(tm.astype(t, np.float32), np.float64) * 1.0, np.array([1.0]), order=2,
                   atol=1e-3, rtol=1e-3, eps=1e-2)
