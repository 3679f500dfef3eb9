"""Numerical gradient checks, first order and higher, for any function of tensors.

For f: inputs -> output, reverse mode gives the vector-Jacobian product J^T v.
Along a random direction u of one input x_i, its inner product with u must equal
the directional derivative of <v, f> computed by central differences:

    <u, (J^T v)_i>  ~  (<v, f(.., x_i + eps u, ..)> - <v, f(.., x_i - eps u, ..)>) / (2 eps)

For order 2 the same check is applied to the function x -> <w, J^T v> (itself
computed by reverse mode with create_graph=True), whose gradient is a
Hessian-vector product; order 3 recurses once more. Everything runs in float64.
"""
import numpy as np

from .autograd import grad
from .grad_mode import enable_grad
from .ops import stack, sum
from .tensor import Tensor


class GradcheckError(AssertionError):
    """Reverse-mode derivatives disagree with finite differences."""


def check_grads(f, *inputs, order=2, eps=1e-6, atol=1e-6, rtol=1e-5, directions=2, rng=None):
    """Check the derivatives of f at `inputs` against central differences, up to `order`.

    f takes tensors (one per input) and returns a tensor. Floating inputs (arrays
    or tensors) must be float64; each is checked along `directions` random
    directions, and the check fails if |analytic - numeric| > atol + rtol * |numeric|.
    Raises GradcheckError naming the order, the input and the worst errors.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    leaves = [_as_leaf(x, i) for i, x in enumerate(inputs)]
    wrt = [i for i, x in enumerate(leaves) if x.requires_grad]
    if not wrt:
        raise ValueError("check_grads: no floating-point input to differentiate with respect to")
    _check_order(f, leaves, wrt, 1, order, eps, atol, rtol, directions, rng)


def _as_leaf(x, i):
    data = x.data if isinstance(x, Tensor) else np.asarray(x)
    if data.dtype.kind == "f" and data.dtype != np.float64:
        raise TypeError(f"check_grads: input {i} has dtype {data.dtype}; finite differences need "
                        "float64 inputs")
    return Tensor(data, requires_grad=data.dtype.kind == "f")


def _check_order(f, leaves, wrt, current, order, eps, atol, rtol, directions, rng):
    with enable_grad():
        out = f(*leaves)
    if not isinstance(out, Tensor):
        raise TypeError(f"check_grads: f must return a Tensor, got {type(out).__name__}")
    v = rng.standard_normal(out.shape)
    if out.requires_grad:
        with enable_grad():
            vjps = grad(out, [leaves[i] for i in wrt], grad_outputs=Tensor(v),
                        create_graph=current < order, allow_unused=True)
    else:  # f is constant in its inputs (e.g. the gradient of a linear op): derivative zero
        vjps = [None] * len(wrt)
    for i, g in zip(wrt, vjps):
        _compare(f, leaves, i, g, v, current, eps, atol, rtol, directions, rng)
    if current == order:
        return
    # The next order checks the gradient of x -> <w, J^T v>, itself built by reverse mode.
    ws = [rng.standard_normal(leaves[i].shape) for i in wrt]

    def projected_vjp(*xs):
        out = f(*xs)
        if not out.requires_grad:
            return Tensor(np.zeros(()))
        gs = grad(out, [xs[i] for i in wrt], grad_outputs=Tensor(v), create_graph=True,
                  allow_unused=True)
        terms = [sum(g * Tensor(w)) for g, w in zip(gs, ws) if g is not None]
        if not terms:
            return Tensor(np.zeros(()))
        return sum(stack(terms))

    _check_order(projected_vjp, leaves, wrt, current + 1, order, eps, atol, rtol, directions, rng)


def _compare(f, leaves, i, g, v, order, eps, atol, rtol, directions, rng):
    x = leaves[i]
    worst_abs, worst_rel = 0.0, 0.0
    failed = False
    for _ in range(directions):
        u = rng.standard_normal(x.shape)
        analytic = 0.0 if g is None else float(np.sum(g.data * u))
        numeric = (_value_along(f, leaves, i, u, eps, v) - _value_along(f, leaves, i, u, -eps, v)) / (2 * eps)
        err = abs(analytic - numeric)
        worst_abs = max(worst_abs, err)
        worst_rel = max(worst_rel, err / max(abs(numeric), 1e-300))
        failed |= err > atol + rtol * abs(numeric)
    if failed:
        raise GradcheckError(
            f"order {order} derivative wrt input {i} (shape {x.shape}) disagrees with finite "
            f"differences: worst absolute error {worst_abs:.3g}, worst relative error {worst_rel:.3g} "
            f"(atol={atol}, rtol={rtol}, eps={eps})")


def _value_along(f, leaves, i, u, step, v):
    """<v, f(..., x_i + step * u, ...)>, with the other inputs as they are."""
    moved = list(leaves)
    moved[i] = Tensor(leaves[i].data + step * u, requires_grad=True)
    with enable_grad():
        out = f(*moved)
    return float(np.sum(out.data * v))
