"""Reductions: sum and max over axes.

Their backwards spread g back over the reduced axes: sum copies it to every
element, max routes it to the elements that attained the maximum.
"""
from ..function import Function
from . import threads
from ..tensor import Tensor
from .operands import as_tensor, checked_axes
from .shape import broadcast_to, reshape


def _normalize_axis(axis, ndim, op):
    return None if axis is None else tuple(sorted(checked_axes(axis, ndim, op)))


def _kept_shape(shape, axis):
    """The shape of a reduction with keepdims=True."""
    if axis is None:
        return (1,) * len(shape)
    return tuple(1 if i in axis else n for i, n in enumerate(shape))


class Sum(Function):
    """out = sum of a over `axis`;  da = g broadcast back over the summed axes."""

    def __init__(self, axis, keepdims):
        self.axis = axis
        self.keepdims = keepdims

    def forward(self, a):
        return threads.sum(a, self.axis, self.keepdims)

    def backward(self, g):
        shape = self.inputs[0].shape
        return (broadcast_to(reshape(g, _kept_shape(shape, self.axis)), shape),)


class Max(Function):
    """out = max of a over `axis`;  da = g at the positions of the maximum (shared equally
    among ties), 0 elsewhere. The position mask is piecewise constant in a."""

    def __init__(self, axis, keepdims):
        self.axis = axis
        self.keepdims = keepdims

    def forward(self, a):
        if a.size == 0:
            raise ValueError("max of an empty tensor")
        return a.max(axis=self.axis, keepdims=self.keepdims)

    def backward(self, g):
        a = self.inputs[0].data
        kept = _kept_shape(a.shape, self.axis)
        is_max = a == self.out_data.reshape(kept)
        share = is_max / is_max.sum(axis=self.axis, keepdims=True)
        return (broadcast_to(reshape(g, kept), a.shape) * Tensor(share.astype(a.dtype, copy=False)),)


def sum(a, axis=None, keepdims=False):  # noqa: A001 - the field's name for it
    a = as_tensor(a)
    return Sum.apply(a, axis=_normalize_axis(axis, a.ndim, "sum"), keepdims=keepdims)


def max(a, axis=None, keepdims=False):  # noqa: A001
    a = as_tensor(a)
    return Max.apply(a, axis=_normalize_axis(axis, a.ndim, "max"), keepdims=keepdims)
