"""Ops defined once as compositions of primitives.

Their gradients (of any order) follow from the primitives they are made of, so
nothing here has a backward of its own. The numerically delicate ones
(logsumexp, log_softmax) subtract the maximum first so that large inputs do not
overflow exp; the maximum is a constant shift (detached), which leaves the
result, and therefore its derivatives, unchanged.
"""
from ..tensor import Tensor
from .elementwise import exp, log, mul, sub
from .operands import as_tensor, checked_axes
from .reduce import _normalize_axis, max, sum
from .shape import reshape


def _count(x, axis):
    axes = range(x.ndim) if axis is None else axis
    n = 1
    for ax in axes:
        n *= x.shape[ax]
    return n


def mean(x, axis=None, keepdims=False):
    """sum(x) / n over the given axes."""
    x = as_tensor(x)
    axis = _normalize_axis(axis, x.ndim, "mean")
    n = _count(x, axis)
    if n == 0:
        raise ValueError(f"mean: no elements to average over axis {axis} of shape {x.shape}")
    return mul(sum(x, axis, keepdims), 1.0 / n)


def var(x, axis=None, keepdims=False, ddof=0):
    """mean((x - mean(x))^2), with n - ddof in the denominator."""
    x = as_tensor(x)
    axis = _normalize_axis(axis, x.ndim, "var")
    n = _count(x, axis)
    if n - ddof <= 0:
        raise ValueError(f"var: {n} elements over axis {axis} leave no degrees of freedom (ddof={ddof})")
    centred = sub(x, mean(x, axis, keepdims=True))
    return mul(sum(centred * centred, axis, keepdims), 1.0 / (n - ddof))


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) computed as m + log(sum(exp(x - m))) with m = max(x), held constant."""
    x = as_tensor(x)
    axis = _normalize_axis(axis, x.ndim, "logsumexp")
    shift = Tensor(max(x.detach(), axis, keepdims=True).data)
    total = log(sum(exp(sub(x, shift)), axis, keepdims=True)) + shift
    return total if keepdims else _squeeze(total, axis)


def _squeeze(x, axis):
    kept = range(x.ndim) if axis is None else axis
    return reshape(x, tuple(n for i, n in enumerate(x.shape) if i not in kept))


def log_softmax(x, axis=-1):
    """x - logsumexp(x): log-probabilities along `axis`."""
    return _log_softmax(as_tensor(x), axis, "log_softmax")


def softmax(x, axis=-1):
    """exp(log_softmax(x)): probabilities along `axis` that sum to one."""
    return exp(_log_softmax(as_tensor(x), axis, "softmax"))


def _log_softmax(x, axis, op):
    checked_axes(axis, x.ndim, op)  # an error names the op the user called, not logsumexp
    return sub(x, logsumexp(x, axis, keepdims=True))
