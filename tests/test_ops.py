"""Every op, from one table: forward against numpy, first- and second-order gradients
against finite differences (float64), on shapes hypothesis draws.

Each case says how to draw its inputs (from a hypothesis data object and a numpy
Generator), how tinymeta computes it, and how numpy does. Inputs are drawn
away from kinks (|x| for abs and relu, ties for max and maximum) where the
derivative does not exist.

Besides the drawn examples, each case lists fixed ones (`Fixed`: input shapes and op
parameters) chosen to expose the classic mistakes whatever hypothesis draws:
non-square matrices (a missing transpose), broadcasting along every axis of either
operand, size-1 axes (a sum_to that averages, or forgets one), negative values, and
batches that span several of the convolution kernel's chunks.
"""
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

import tinymeta as tm
from tinymeta import check_grads
from tinymeta.kernels import reference
from tinymeta.kernels.conv2d import CHUNK_ENTRIES
from tinymeta.ops.conv import conv2d, max_pool2d
from tinymeta.ops.losses import mean_squared_error


@dataclass
class Fixed:
    shapes: tuple       # one shape per input
    params: dict = field(default_factory=dict)

    def __repr__(self):
        """A test id without spaces or brackets, e.g. (2,1,4)x(3,1) or (2,3,4)-axis=1-keepdims=True."""
        text = "-".join(["x".join(map(str, self.shapes))] + [f"{k}={np.asarray(v).tolist()}" for k, v in self.params.items()])
        return re.sub(r"[\[\] ]", "", text)


@dataclass
class Case:
    name: str
    draw: Callable      # (data, rng) -> (list of input arrays, dict of op parameters)
    op: Callable        # (*tensors, **params) -> Tensor
    ref: Callable       # (*arrays, **params) -> array
    values: tuple = ()  # for the fixed examples: one (rng, shape) -> array per input
    fixed: list = field(default_factory=list)
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


def on_grid(rng, s):
    """Multiples of 0.1; with `off_grid` (odd multiples of 0.05) no pair of values ties."""
    return rng.integers(-20, 20, size=s) * 0.1


def off_grid(rng, s):
    return rng.integers(-20, 20, size=s) * 0.1 + 0.05


# Fixed examples shared by many cases.
PAIRS = [Fixed(s) for s in [
    ((2, 3), (2, 3)),            # equal, non-square
    ((2, 3), (3,)),              # b lacks the leading axis
    ((4, 1), (3,)),              # each operand broadcast along a different axis
    ((3, 1), (1, 4)),
    ((2, 1, 4), (3, 1)),         # broadcasting on every axis, size-1 axes on both sides
    ((1, 3, 1), (2, 1, 4)),
    ((), (2, 3)),                # a scalar on either side
    ((2, 3), ()),
]]
UNARY = [Fixed((s,)) for s in [(), (3,), (2, 3), (1, 4, 1)]]
ROWS = [Fixed((s,)) for s in [(1,), (3,), (2, 3), (2, 1, 4)]]  # at least one axis
REDUCTIONS = [Fixed(((2, 3, 4),), {"axis": axis, "keepdims": keepdims}) for axis, keepdims in [
    (None, False), (None, True), (1, False), (-1, True), ((0, 2), False), ((0, 1, 2), True)]] + [
    Fixed(((1, 3, 1),), {"axis": 0, "keepdims": True}),   # over a size-1 axis
    Fixed(((4, 1),), {"axis": (0, 1), "keepdims": False})]
# With 2 channels, a 3x3 kernel and 12x12 images padded by 1, an image fills 2*3*3 rows by
# 12*12 columns of the column matrix, so this many images span at least two of the conv
# kernels' chunks (the last one partly filled).
SPANNING_BATCH = CHUNK_ENTRIES // (2 * 3 * 3 * 12 * 12) + 2
CONVS = [Fixed(((2, 3, 5, 4), (4, 3, 3, 2)), {"stride": 1, "padding": 1}),   # non-square image and kernel
         Fixed(((2, 2, 7, 6), (3, 2, 3, 3)), {"stride": 2, "padding": 1}),
         Fixed(((1, 2, 5, 5), (2, 2, 2, 4)), {"stride": 3, "padding": 2}),
         Fixed(((3, 1, 4, 4), (2, 1, 1, 1)), {"stride": 1, "padding": 0}),
         Fixed(((SPANNING_BATCH, 2, 12, 12), (3, 2, 3, 3)), {"stride": 1, "padding": 1})]
POOLS = [Fixed(((2, 3, 4, 6),), {"kernel_size": 2, "stride": 2}),
         Fixed(((1, 2, 5, 5),), {"kernel_size": 3, "stride": 1}),    # overlapping windows
         Fixed(((2, 1, 5, 7),), {"kernel_size": 2, "stride": 3}),    # rows and columns left over
         Fixed(((SPANNING_BATCH, 2, 12, 12),), {"kernel_size": 2, "stride": 2})]
MATMULS = [Fixed(s) for s in [
    ((2, 3), (3, 4)), ((1, 3), (3, 1)), ((3, 1), (1, 2)), ((3, 3), (3, 3)),
    ((2, 2, 3), (2, 3, 4)), ((3, 1, 2, 3), (2, 3, 4)), ((2, 3), (4, 3, 5)),
    ((3,), (2, 3, 4)), ((2, 2, 3), (3,)), ((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,))]]
LINEARS = [Fixed(s) for s in [
    ((3, 2), (2, 4), (4,)), ((2,), (2, 3), (3,)), ((4, 1), (1, 3), (3,)),   # a batch, a vector, an outer product
    ((2, 3, 2), (2, 2, 4), (2, 4)), ((2, 3, 1), (2, 1, 4), (2, 4)),        # a task axis on everything
    ((3, 2), (2, 2, 4), (2, 4)), ((2, 3, 2), (2, 4), (4,))]]               # on the weight only, on the input only


def _sum_to_fixed():
    """Every PAIRS broadcast, summed back to either operand's shape."""
    out = []
    for f in PAIRS:
        full = np.broadcast_shapes(*f.shapes)
        out += [Fixed((full,), {"to": s}) for s in f.shapes]
    return out


CASES = [
    Case("add", lambda d, r: _two(d, r, normal, normal), lambda a, b: a + b, np.add, (normal, normal), PAIRS),
    Case("sub", lambda d, r: _two(d, r, normal, normal), lambda a, b: a - b, np.subtract, (normal, normal), PAIRS),
    Case("add_scaled", lambda d, r: (_two(d, r, normal, normal)[0], {"alpha": d.draw(st.sampled_from([-0.3, 1.0, 2.5]))}),
         lambda a, b, alpha: tm.add_scaled(a, b, alpha), lambda a, b, alpha: a + alpha * b, (normal, normal),
         [Fixed(f.shapes, {"alpha": -0.7}) for f in PAIRS]),
    Case("mul", lambda d, r: _two(d, r, normal, normal), lambda a, b: a * b, np.multiply, (normal, normal), PAIRS),
    Case("div", lambda d, r: _two(d, r, normal, away_from_zero), lambda a, b: a / b, np.divide,
         (normal, away_from_zero), PAIRS),
    Case("pow_tensor", lambda d, r: _two(d, r, positive, normal), lambda a, b: a ** b, np.power,
         (positive, normal), PAIRS),
    Case("pow_scalar", lambda d, r: ([positive(r, shape(d))], {"p": d.draw(st.sampled_from([2, 3, -1, 0.5, 2.5]))}),
         lambda a, p: a ** p, lambda a, p: a ** p, (positive,),
         [Fixed(((2, 3),), {"p": p}) for p in (2, 3, -1, 0.5, 2.5)] + [Fixed(((),), {"p": 2})]),
    Case("rpow_scalar", one(normal), lambda a: 2.0 ** a, lambda a: 2.0 ** a, (normal,), UNARY),
    Case("neg", one(normal), lambda a: -a, np.negative, (normal,), UNARY),
    Case("exp", one(normal), tm.exp, np.exp, (normal,), UNARY),
    Case("log", one(positive), tm.log, np.log, (positive,), UNARY),
    Case("sqrt", one(positive), tm.sqrt, np.sqrt, (positive,), UNARY),
    Case("sin", one(normal), tm.sin, np.sin, (normal,), UNARY),
    Case("cos", one(normal), tm.cos, np.cos, (normal,), UNARY),
    Case("tanh", one(normal), tm.tanh, np.tanh, (normal,), UNARY),
    Case("sigmoid", one(normal), tm.sigmoid, lambda a: 1 / (1 + np.exp(-a)), (lambda r, s: 4 * normal(r, s),), UNARY),
    Case("abs", one(away_from_zero), tm.abs, np.abs, (away_from_zero,), UNARY),
    # to third order: relu's gradient is a primitive (ReLUGrad) whose own gradient is one again
    Case("relu", one(away_from_zero), tm.relu, lambda a: np.maximum(a, 0), (away_from_zero,), UNARY, order=3),
    Case("maximum", lambda d, r: _two(d, r, on_grid, off_grid), tm.maximum, np.maximum, (on_grid, off_grid), PAIRS),
    Case("where", lambda d, r: ([*(_two(d, r, normal, normal)[0])], {"seed": d.draw(st.integers(0, 9))}),
         lambda a, b, seed: tm.where(_mask(a.shape, b.shape, seed), a, b),
         lambda a, b, seed: np.where(_mask(a.shape, b.shape, seed), a, b),
         (normal, normal), [Fixed(f.shapes, {"seed": 3}) for f in PAIRS]),
    Case("sum", reduction(normal), tm.sum, lambda a, axis, keepdims: np.sum(a, axis=axis, keepdims=keepdims),
         (normal,), REDUCTIONS),
    Case("max", reduction(distinct), tm.max, lambda a, axis, keepdims: np.max(a, axis=axis, keepdims=keepdims),
         (distinct,), REDUCTIONS),
    Case("mean", reduction(normal), tm.mean, lambda a, axis, keepdims: np.mean(a, axis=axis, keepdims=keepdims),
         (normal,), REDUCTIONS),
    Case("var", reduction(normal), tm.var, lambda a, axis, keepdims: np.var(a, axis=axis, keepdims=keepdims),
         (normal,), REDUCTIONS),
    Case("logsumexp", reduction(normal), tm.logsumexp,
         lambda a, axis, keepdims: np.log(np.sum(np.exp(a), axis=axis, keepdims=keepdims)), (normal,), REDUCTIONS),
    Case("log_softmax", one(normal, min_dims=1), tm.log_softmax,
         lambda a: a - np.log(np.exp(a).sum(-1, keepdims=True)), (normal,), ROWS),
    Case("softmax", one(normal, min_dims=1), tm.softmax,
         lambda a: np.exp(a) / np.exp(a).sum(-1, keepdims=True), (normal,), ROWS),
    Case("reshape", one(normal), lambda a: tm.reshape(a, (-1,)), lambda a: a.reshape(-1), (normal,), UNARY),
    Case("transpose", one(normal), lambda a: a.transpose(), lambda a: a.transpose(), (normal,), UNARY),
    Case("permute", lambda d, r: ([normal(r, s := shape(d, 1))], {"axes": d.draw(st.permutations(range(len(s))))}),
         lambda a, axes: tm.permute(a, axes), lambda a, axes: np.transpose(a, axes), (normal,),
         [Fixed(((2, 3, 4),), {"axes": (2, 0, 1)}), Fixed(((2, 3, 4),), {"axes": (1, 2, 0)}),
          Fixed(((2, 1, 3),), {"axes": (0, 2, 1)}), Fixed(((3,),), {"axes": (0,)})]),
    Case("swapaxes", lambda d, r: ([normal(r, s := shape(d, 1))],
                                   {"axes": tuple(d.draw(st.integers(-len(s), len(s) - 1)) for _ in range(2))}),
         lambda a, axes: tm.swapaxes(a, *axes), lambda a, axes: np.swapaxes(a, *axes), (normal,),
         [Fixed(((2, 3, 4),), {"axes": (0, -1)}), Fixed(((2, 3),), {"axes": (1, 0)}),
          Fixed(((3, 2),), {"axes": (-2, 0)})]),
    Case("broadcast_to", lambda d, r: ([normal(r, (s := broadcast_pair(d))[0])], {"to": np.broadcast_shapes(*s)}),
         lambda a, to: tm.broadcast_to(a, to), lambda a, to: np.broadcast_to(a, to), (normal,),
         [Fixed((s,), {"to": np.broadcast_shapes(*f.shapes)}) for f in PAIRS for s in f.shapes]),
    Case("sum_to", lambda d, r: ([normal(r, np.broadcast_shapes(*(s := broadcast_pair(d))))], {"to": s[0]}),
         lambda a, to: tm.sum_to(a, to), lambda a, to: _numpy_sum_to(a, to), (normal,), _sum_to_fixed()),
    Case("getitem_slice", one(normal, min_dims=1), lambda a: a[1::2], lambda a: a[1::2], (normal,),
         [Fixed((s,)) for s in [(3,), (4, 2), (5, 1, 2)]]),
    Case("getitem_int_array", lambda d, r: ([normal(r, s := shape(d, 1))],
                                            {"idx": r.integers(0, s[0], size=d.draw(st.integers(1, 6)))}),
         lambda a, idx: a[idx], lambda a, idx: a[idx], (normal,),
         [Fixed(((4, 3),), {"idx": np.array([3, 0, 0, 2])}), Fixed(((5,),), {"idx": np.array([4, 4, 1])})]),
    Case("getitem_gather", lambda d, r: ([normal(r, (n := d.draw(st.integers(1, 5)), c := d.draw(st.integers(1, 5))))],
                                         {"cols": r.integers(0, c, size=n)}),
         lambda a, cols: a[np.arange(len(cols)), cols], lambda a, cols: a[np.arange(len(cols)), cols], (normal,),
         [Fixed(((3, 4),), {"cols": np.array([3, 0, 3])}), Fixed(((2, 1),), {"cols": np.array([0, 0])})]),
    Case("concatenate", lambda d, r: ([normal(r, (d.draw(st.integers(1, 3)), 2)), normal(r, (d.draw(st.integers(1, 3)), 2))], {}),
         lambda a, b: tm.concatenate([a, b], axis=0), lambda a, b: np.concatenate([a, b], axis=0), (normal, normal),
         [Fixed(((1, 2), (3, 2))), Fixed(((2, 3), (2, 3)))]),
    Case("stack", lambda d, r: ([normal(r, s := shape(d)), normal(r, s)], {"axis": d.draw(st.integers(0, len(s)))}),
         lambda a, b, axis: tm.stack([a, b], axis), lambda a, b, axis: np.stack([a, b], axis), (normal, normal),
         [Fixed(((2, 3), (2, 3)), {"axis": axis}) for axis in (0, 1, 2)] + [Fixed(((), ()), {"axis": 0})]),
    Case("matmul", lambda d, r: _matmul_inputs(d, r), lambda a, b: a @ b, np.matmul, (normal, normal), MATMULS),
    Case("linear", lambda d, r: _linear_inputs(d, r), tm.linear, lambda x, w, b: _numpy_linear(x, w, b),
         (normal, normal, normal), LINEARS),
    Case("mean_squared_error", lambda d, r: ([normal(r, s := shape(d)), normal(r, s)], {}), mean_squared_error,
         lambda p, t: np.mean((p - t) ** 2), (normal, normal), [Fixed((s, s)) for s in [(), (3,), (2, 3), (1, 4, 1)]]),
    Case("conv2d", lambda d, r: _conv_inputs(d, r), conv2d,
         reference.conv2d_forward, (normal, normal), CONVS),
    Case("max_pool2d", lambda d, r: _pool_inputs(d, r), max_pool2d,
         lambda x, kernel_size, stride: reference.max_pool2d_forward(x, kernel_size, stride)[0], (distinct,), POOLS),
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


def _linear_inputs(data, rng):
    n, k, m = (data.draw(st.integers(1, 4)) for _ in range(3))
    kind = data.draw(st.sampled_from(["batch", "vector", "tasks", "tasks_in_weight", "tasks_in_input"]))
    shapes = {"batch": ((n, k), (k, m), (m,)), "vector": ((k,), (k, m), (m,)),
              "tasks": ((2, n, k), (2, k, m), (2, m)), "tasks_in_weight": ((n, k), (3, k, m), (3, m)),
              "tasks_in_input": ((2, n, k), (k, m), (m,))}[kind]
    return [normal(rng, s) for s in shapes], {}


def _numpy_linear(x, w, b):
    """x @ w plus b broadcast over the examples (b's leading axes are the tasks)."""
    product = x @ w
    return product + b.reshape(b.shape[:-1] + (1,) * (product.ndim - b.ndim) + b.shape[-1:])


def _conv_inputs(data, rng):
    n, c, o = (data.draw(st.integers(1, 3)) for _ in range(3))
    h, w, kh, kw = (data.draw(st.integers(1, 5)) for _ in range(4))
    stride, padding = data.draw(st.integers(1, 3)), data.draw(st.integers(0, 2))
    kh, kw = min(kh, h + 2 * padding), min(kw, w + 2 * padding)
    return [normal(rng, (n, c, h, w)), normal(rng, (o, c, kh, kw))], {"stride": stride, "padding": padding}


def _pool_inputs(data, rng):
    n, c, h, w = (data.draw(st.integers(1, 4)) for _ in range(4))
    kernel = data.draw(st.integers(1, min(h, w)))
    return [distinct(rng, (n, c, h, w))], {"kernel_size": kernel, "stride": data.draw(st.integers(1, 3))}


def _draw(case, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    return case.draw(data, rng)


def _check_forward(case, arrays, params):
    for dtype in (np.float32, np.float64):
        xs = [x.astype(dtype) for x in arrays]
        out = case.op(*[tm.tensor(x) for x in xs], **params)
        expected = case.ref(*xs, **params)
        assert out.shape == np.shape(expected)
        assert out.dtype == dtype
        # float32's absolute tolerance scales with the output: a sum's rounding error grows with
        # its terms, not with its value (a conv output near 0 may sum terms of size 1)
        scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
        np.testing.assert_allclose(out.data, expected, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                   atol=1e-6 * scale if dtype == np.float32 else 1e-12)


def _check_gradients(case, arrays, params):
    check_grads(lambda *ts: case.op(*ts, **params), *arrays, order=case.order)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@given(data=st.data())
def test_forward_matches_numpy(case, data):
    _check_forward(case, *_draw(case, data))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@given(data=st.data())
def test_gradients_first_and_second_order(case, data):
    _check_gradients(case, *_draw(case, data))


FIXED = [pytest.param(case, fixed, id=f"{case.name}-{fixed}") for case in CASES for fixed in case.fixed]


def _fixed_inputs(case, fixed):
    rng = np.random.default_rng(0)
    return [value(rng, s) for value, s in zip(case.values, fixed.shapes)], fixed.params


def test_every_case_has_fixed_examples():
    assert [case.name for case in CASES if not case.fixed] == []


@pytest.mark.parametrize("case, fixed", FIXED)
def test_fixed_forward_matches_numpy(case, fixed):
    _check_forward(case, *_fixed_inputs(case, fixed))


@pytest.mark.parametrize("case, fixed", FIXED)
def test_fixed_gradients_first_and_second_order(case, fixed):
    _check_gradients(case, *_fixed_inputs(case, fixed))


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


@pytest.mark.parametrize("case, fixed", FIXED)
def test_fixed_gradients_in_float32_stay_float32_and_match_float64(case, fixed):
    """The default dtype's backward: no constant of another precision sneaks in (that would
    be a dtype error), and the values agree with the float64 gradient."""
    arrays, params = _fixed_inputs(case, fixed)
    grads = {}
    for dtype in (np.float32, np.float64):
        xs = [tm.tensor(x.astype(dtype), requires_grad=True) for x in arrays]
        out = case.op(*xs, **params)
        weights = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
        grads[dtype] = tm.grad(out, xs, grad_outputs=tm.tensor(weights))
    for g32, g64 in zip(grads[np.float32], grads[np.float64]):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32.data, g64.data, rtol=2e-4, atol=2e-4)


# --- behaviours the table does not reach: defaults, special points, other argument forms --
def test_reductions_drop_the_reduced_axes_unless_asked():
    x = tm.tensor(np.arange(6.0).reshape(2, 3))
    for op in (tm.sum, tm.max, tm.mean, tm.var, tm.logsumexp):
        assert op(x).shape == () and op(x, axis=0).shape == (3,), op.__name__
        assert op(x, axis=1, keepdims=True).shape == (2, 1), op.__name__


def test_var_with_ddof():
    x = np.array([[1.0, 4.0, 2.0], [0.5, -1.0, 3.0]])
    np.testing.assert_allclose(tm.var(tm.tensor(x), axis=1, ddof=1).data, np.var(x, axis=1, ddof=1))
    with pytest.raises(ValueError, match=r"^var: 3 elements over axis \(1,\) leave no degrees of freedom \(ddof=3\)$"):
        tm.var(tm.tensor(x), axis=1, ddof=3)


def test_logsumexp_shifts_each_row_by_its_own_maximum():
    """Rows of very different scale: a shift shared by all rows would underflow the small one."""
    x = np.array([[1000.0, 999.0], [0.0, -1.0]])
    expected = np.array([1000.0, 0.0]) + np.log1p(np.exp(-1.0))
    np.testing.assert_allclose(tm.logsumexp(tm.tensor(x), axis=1).data, expected, rtol=1e-12)


def test_softmax_and_log_softmax_along_another_axis():
    x = np.random.default_rng(2).standard_normal((3, 4))
    np.testing.assert_allclose(tm.softmax(tm.tensor(x), axis=0).data, np.exp(x) / np.exp(x).sum(0), rtol=1e-12)
    np.testing.assert_allclose(tm.log_softmax(tm.tensor(x), axis=0).data, x - np.log(np.exp(x).sum(0)), rtol=1e-12)


def test_max_shares_the_gradient_equally_among_ties():
    x = tm.tensor(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]), requires_grad=True)
    (g,) = tm.grad(tm.sum(tm.max(x, axis=1)), [x])
    np.testing.assert_allclose(g.data, [[0.0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])


def test_abs_has_zero_gradient_at_zero():
    x = tm.tensor(np.array([0.0, 1.5, -2.0]), requires_grad=True)
    (g,) = tm.grad(tm.sum(tm.abs(x)), [x])
    np.testing.assert_array_equal(g.data, [0.0, 1.0, -1.0])


def test_where_takes_a_boolean_tensor_as_condition():
    x = tm.tensor(np.array([-1.0, 2.0, -3.0]), requires_grad=True)
    out = tm.where(x > 0, x, x * 0.5)
    np.testing.assert_allclose(out.data, [-0.5, 2.0, -1.5])
    (g,) = tm.grad(tm.sum(out), [x])
    np.testing.assert_allclose(g.data, [0.5, 1.0, 0.5])


def test_where_takes_a_list_or_a_python_bool_as_condition():
    a, b = tm.tensor(np.array([1.0, 2.0, 3.0])), tm.tensor(np.array([4.0, 5.0, 6.0]))
    np.testing.assert_array_equal(tm.where([True, False, True], a, b).data, [1.0, 5.0, 3.0])
    np.testing.assert_array_equal(tm.where(False, a, b).data, [4.0, 5.0, 6.0])


def test_astype_to_integers_is_a_constant_of_the_truncated_values():
    x = tm.tensor(np.array([1.7, -2.7]), requires_grad=True)
    y = tm.astype(x, np.int64)
    assert y.dtype == np.int64 and not y.requires_grad
    np.testing.assert_array_equal(y.data, [1, -2])


def test_indexing_with_an_integer_tensor():
    x = tm.tensor(np.arange(12.0).reshape(4, 3), requires_grad=True)
    picked = x[tm.tensor(np.array([2, 0, 2]))]
    np.testing.assert_array_equal(picked.data, x.data[[2, 0, 2]])
    (g,) = tm.grad(tm.sum(picked), [x])
    np.testing.assert_array_equal(g.data, np.array([[1.0] * 3, [0.0] * 3, [2.0] * 3, [0.0] * 3]))


def test_concatenate_and_stack_default_to_the_first_axis_and_accept_negative_axes():
    a, b = np.ones((1, 2)), np.zeros((3, 2))
    np.testing.assert_array_equal(tm.concatenate([tm.tensor(a), tm.tensor(b)]).data, np.concatenate([a, b]))
    c, d = np.arange(6.0).reshape(2, 3), -np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(tm.stack([tm.tensor(c), tm.tensor(d)]).data, np.stack([c, d]))
    np.testing.assert_array_equal(tm.stack([tm.tensor(c), tm.tensor(d)], axis=-1).data, np.stack([c, d], axis=-1))


def test_max_pool2d_with_a_task_axis_pools_every_image_with_the_given_window_and_stride():
    x = np.random.default_rng(4).standard_normal((2, 3, 1, 7, 7))
    pooled = max_pool2d(tm.tensor(x), 3, stride=2)
    expected = reference.max_pool2d_forward(x.reshape(6, 1, 7, 7), 3, 2)[0]
    np.testing.assert_array_equal(pooled.data, expected.reshape(2, 3, 1, 3, 3))


def test_conv2d_and_max_pool2d_defaults():
    """conv2d: stride 1, no padding; max_pool2d: stride equal to the window."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 2, 6, 5)), rng.standard_normal((3, 2, 3, 2))
    np.testing.assert_allclose(conv2d(tm.tensor(x), tm.tensor(w)).data, reference.conv2d_forward(x, w, 1, 0),
                               rtol=1e-12)
    np.testing.assert_array_equal(max_pool2d(tm.tensor(x), 2).data, reference.max_pool2d_forward(x, 2, 2)[0])


def _t(*shape, dtype=np.float64):
    return tm.tensor(np.ones(shape, dtype))


# Each error message whole: an op's name, the shapes or values, and what was expected.
ERRORS = [
    (lambda: tm.max(_t(0)), ValueError, r"max: cannot apply to inputs of shapes \(0,\): max of an empty tensor"),
    (lambda: tm.mean(_t(0, 3), axis=0), ValueError, r"mean: no elements to average over axis \(0,\) of shape \(0, 3\)"),
    (lambda: tm.sum_to(_t(2, 3), (3, 2)), ValueError, r"sum_to: shape \(2, 3\) does not broadcast from \(3, 2\)"),
    (lambda: tm.where(np.ones(2), _t(2), _t(2)), TypeError, "where: condition must be boolean, got dtype float64"),
    (lambda: _t(3)[np.array([0.0, 1.0])], IndexError,
     "getitem: index arrays must be integers or booleans, got dtype float64"),
    (lambda: tm.concatenate([_t(2, dtype=np.float32), _t(2)]), TypeError,
     r"concatenate: tensors have different dtypes \['float32', 'float64'\]"),
    (lambda: tm.stack([_t(2), _t(3)]), ValueError, r"stack: all tensors need the same shape, got \[\(2,\), \(3,\)\]"),
    (lambda: tm.stack([]), ValueError, "stack: needs at least one tensor"),
    (lambda: tm.stack([_t(2), _t(2)], axis=2), ValueError, "stack: axis 2 is out of range for a tensor with 2 axes"),
    (lambda: tm.softmax(_t(2, 3), axis=2), ValueError, "softmax: axis 2 is out of range for a tensor with 2 axes"),
    (lambda: tm.log_softmax(_t(2, 3), axis=-3), ValueError,
     "log_softmax: axis -3 is out of range for a tensor with 2 axes"),
    (lambda: tm.concatenate([_t(2, 3), _t(2, 4)]), ValueError,
     r"concatenate: shapes \(2, 3\), \(2, 4\) must have one number of axes and agree on every axis but axis 0"),
    (lambda: tm.concatenate([_t(2, 3), _t(2)], axis=-1), ValueError,
     r"concatenate: shapes \(2, 3\), \(2,\) must have one number of axes and agree on every axis but axis 1"),
    (lambda: tm.concatenate([_t(2, 3), _t(2, 3)], axis=2), ValueError,
     "concatenate: axis 2 is out of range for a tensor with 2 axes"),
    (lambda: tm.transpose(_t(2, 3), (0, 2)), ValueError, "transpose: axis 2 is out of range for a tensor with 2 axes"),
    (lambda: tm.transpose(_t(2, 3), (0, 0)), ValueError,
     r"transpose: axes \(0, 0\) are not a permutation of the 2 axes of a tensor of shape \(2, 3\)"),
    (lambda: tm.swapaxes(_t(2, 3), 0, -3), ValueError, "swapaxes: axis -3 is out of range for a tensor with 2 axes"),
    (lambda: tm.broadcast_to(_t(2, 3), (3, 3)), ValueError, r"broadcast_to: cannot broadcast shape \(2, 3\) to \(3, 3\)"),
    (lambda: tm.concatenate([]), ValueError, "concatenate: needs at least one tensor"),
    (lambda: tm.matmul(_t(), _t(3)), ValueError, r"matmul: operands must have at least one axis, got shapes \(\) and \(3,\)"),
    (lambda: tm.matmul(_t(3), _t()), ValueError, r"matmul: operands must have at least one axis, got shapes \(3,\) and \(\)"),
    (lambda: tm.matmul(_t(3), _t(4, 5)), ValueError, r"matmul: shapes \(3,\) and \(4, 5\) do not align: a's last axis "
                                                      r"\(3\) must equal b's second-to-last \(4\)"),
    (lambda: tm.matmul(_t(2, 3), _t(4)), ValueError, r"matmul: shapes \(2, 3\) and \(4,\) do not align: a's last axis "
                                                     r"\(3\) must equal b's second-to-last \(4\)"),
    (lambda: tm.matmul(_t(2, 2, 3), _t(2, 4, 5)), ValueError, r"matmul: shapes \(2, 2, 3\) and \(2, 4, 5\) do not "
                                                              r"align: a's last axis \(3\) must equal b's second-to-last \(4\)"),
    (lambda: tm.matmul(_t(2, 2, 3), _t(3, 3, 4)), ValueError,
     r"matmul: batch axes of shapes \(2, 2, 3\) and \(3, 3, 4\) cannot be broadcast"),
    (lambda: conv2d(_t(1, 3, 5, 5), _t(4, 2, 3, 3)), ValueError,
     r"conv2d: input has 3 channels but weight \(4, 2, 3, 3\) expects 2"),
    (lambda: conv2d(_t(1, 1, 1, 3, 4), _t(1, 1, 1, 5, 1)), ValueError,
     r"conv2d: kernel 5x1 is larger than the padded input 3x4 \(input \(1, 1, 1, 3, 4\), padding 0\)"),
    (lambda: conv2d(_t(1, 1, 3, 4), _t(1, 1, 5, 1)), ValueError,
     r"conv2d: kernel 5x1 is larger than the padded input 3x4 \(input \(1, 1, 3, 4\), padding 0\)"),
    (lambda: conv2d(_t(1, 1, 3, 4), _t(1, 1, 1, 6)), ValueError,
     r"conv2d: kernel 1x6 is larger than the padded input 3x4 \(input \(1, 1, 3, 4\), padding 0\)"),
    (lambda: conv2d(_t(1, 1, 3, 3, dtype=np.float32), _t(1, 1, 2, 2)), TypeError,
     "conv2d: input dtype float32 and weight dtype float64 differ"),
    (lambda: conv2d(_t(1, 1, 5, 5, dtype=np.int64), _t(1, 1, 3, 3, dtype=np.int64), 2, 1), ValueError,
     r"conv2d: input \(1, 1, 5, 5\), weight \(1, 1, 3, 3\), stride 2, padding 1: .*int64.*"),
    (lambda: conv2d(_t(1, 1, 5, 5, dtype=np.float16), _t(1, 1, 3, 3, dtype=np.float16).requires_grad_(), 2, 1),
     ValueError, r"conv2d: input \(1, 1, 5, 5\), weight \(1, 1, 3, 3\), stride 2, padding 1: .*float16.*"),
    (lambda: max_pool2d(_t(2, 3), 2), ValueError, r"max_pool2d: expected NCHW input with 4 axes \(or 5 with a task axis first\), got shape \(2, 3\)"),
    (lambda: max_pool2d(_t(1, 1, 4, 4), 0, 1), ValueError,
     r"max_pool2d: kernel_size \(0\) and stride \(1\) must be positive"),
    (lambda: max_pool2d(_t(1, 1, 4, 4), 2, 0), ValueError,
     r"max_pool2d: kernel_size \(2\) and stride \(0\) must be positive"),
    (lambda: max_pool2d(_t(1, 1, 2, 5), 3), ValueError,
     r"max_pool2d: window 3x3 is larger than the input's 2x5 image"),
    (lambda: mean_squared_error(_t(3), _t(2, 3)), ValueError,
     r"mean_squared_error: prediction of shape \(3,\) and target of shape \(2, 3\) differ"),
    (lambda: mean_squared_error(_t(0, 2), _t(0, 2)), ValueError,
     r"mean_squared_error: no elements to average \(shape \(0, 2\)\)"),
    (lambda: tm.linear(_t(2, 3), _t(3, 4), _t()), ValueError,
     r"linear: cannot apply to input \(2, 3\), weight \(3, 4\) and bias \(\): the bias must have an axis of "
     r"features, its last"),
    (lambda: tm.linear(_t(2, 3), _t(4, 5), _t(5)), ValueError,
     r"linear: cannot apply to input \(2, 3\), weight \(4, 5\) and bias \(5,\): shapes \(2, 3\) and \(4, 5\) "
     r"do not align: a's last axis \(3\) must equal b's second-to-last \(4\)"),
] + [(lambda op=op: op(_t(2, 3), axis=2), ValueError, rf"{op.__name__}: axis 2 is out of range for a tensor with 2 axes")
     for op in (tm.sum, tm.max, tm.mean, tm.var, tm.logsumexp)] + [
    (lambda op=op: op(_t(2, dtype=np.float32), _t(2)), TypeError,
     rf"{name}: operands have dtypes float32 and float64; convert one with \.astype\(\) so both match")
    for name, op in [("add", tm.add), ("sub", tm.sub), ("mul", tm.mul), ("div", tm.div), ("pow", tm.power),
                     ("maximum", tm.maximum), ("matmul", tm.matmul), ("mean_squared_error", mean_squared_error),
                     ("add_scaled", lambda a, b: tm.add_scaled(a, b, 2.0)),
                     ("where", lambda a, b: tm.where(np.array([True, False]), a, b))]]


@pytest.mark.parametrize("call, error, message", ERRORS)
def test_bad_input_errors_name_the_op_and_what_was_expected(call, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        call()


def test_maximum_gives_ties_to_the_first_operand():
    a, b = tm.tensor(np.array([1.0, 2.0]), requires_grad=True), tm.tensor(np.array([1.0, 3.0]), requires_grad=True)
    ga, gb = tm.grad(tm.sum(tm.maximum(a, b)), [a, b])
    np.testing.assert_array_equal(ga.data, [1.0, 0.0])
    np.testing.assert_array_equal(gb.data, [0.0, 1.0])


def test_relu_passes_the_gradient_at_zero_and_no_nan_where_it_is_off():
    """relu is maximum(x, 0) with the tie at 0 going to x; a NaN arriving where x < 0 stays there."""
    x = tm.tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    (gx,) = tm.grad(tm.relu(x), [x], grad_outputs=tm.tensor(np.array([np.nan, 3.0, 4.0])))
    np.testing.assert_array_equal(gx.data, [0.0, 3.0, 4.0])


def test_shapes_may_be_lists_or_separate_integers_and_axes_negative():
    x = tm.tensor(np.arange(6.0))
    np.testing.assert_array_equal(tm.reshape(x, [3, 2]).data, x.data.reshape(3, 2))
    np.testing.assert_array_equal(tm.reshape(x, 3, 2).data, x.data.reshape(3, 2))
    np.testing.assert_array_equal(x.reshape(np.int64(6)).data, x.data)
    np.testing.assert_array_equal(tm.broadcast_to(tm.tensor(np.ones(3)), [2, 3]).data, np.ones((2, 3)))
    np.testing.assert_array_equal(tm.transpose(x, axes=(-1,)).data, x.data)
