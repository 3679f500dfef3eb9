"""Primitives that move elements without computing on them.

Their backwards are the inverse movements: reshape undoes reshape, transpose
applies the inverse permutation, broadcast_to and sum_to are each other's
adjoints, and indexing scatters the gradient back into the indexed positions.
"""
import math

import numpy as np

from ..backend import array_module, get_array_module, to_device
from ..function import Function
from . import threads
from .operands import as_tensor, checked_axes


def _normalize_shape(shape):
    if type(shape) is tuple:
        return shape
    return (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)


class ToDevice(Function):
    """out = a's values on another device;  da = g moved back to a's device."""

    def __init__(self, device):
        self.device = device

    def forward(self, a):
        return to_device(a, self.device)

    def backward(self, g):
        return (to(g, self.inputs[0].device),)


class Reshape(Function):
    """out = a viewed with another shape of the same size;  da = g reshaped back."""

    def __init__(self, shape):
        self.shape = shape

    def forward(self, a):
        return a.reshape(self.shape)

    def input_error(self, inputs, err):
        a = inputs[0]
        return ValueError(f"reshape: cannot reshape tensor of shape {a.shape} ({a.size} elements) "
                          f"into shape {self.shape}")

    def backward(self, g):
        return (reshape(g, self.inputs[0].shape),)


class Transpose(Function):
    """out = a with axes permuted: out.shape[i] = a.shape[axes[i]];  da = g with the inverse permutation."""

    def __init__(self, axes):
        self.axes = axes

    def forward(self, a):
        return a.transpose(self.axes)

    def input_error(self, inputs, err):
        return ValueError(f"transpose: axes {self.axes} are not a permutation of the "
                          f"{inputs[0].ndim} axes of a tensor of shape {inputs[0].shape}")

    def backward(self, g):
        return (transpose(g, tuple(np.argsort(self.axes))),)


class BroadcastTo(Function):
    """out = a repeated along new leading axes and axes of size 1;  da = sum_to(g, a.shape)."""

    def __init__(self, shape):
        self.shape = shape

    def forward(self, a):
        # A fresh array, not numpy's read-only broadcast view: filling it costs a fraction
        # of np.broadcast_to's call overhead at the small sizes meta-learning lives on.
        xp = get_array_module(a)
        if xp is np and math.prod(self.shape) >= threads.GRAIN:  # math.prod: np.prod of a tuple costs 5 us
            return threads.elementwise(np.positive, np.broadcast_to(a, self.shape))
        out = xp.empty(self.shape, dtype=a.dtype)
        out[...] = a
        return out

    def input_error(self, inputs, err):
        return ValueError(f"broadcast_to: cannot broadcast shape {inputs[0].shape} to {self.shape}")

    def backward(self, g):
        return (sum_to(g, self.inputs[0].shape),)


class SumTo(Function):
    """out = a summed over the axes that broadcasting to a.shape added (leading axes,
    and axes where `shape` has 1);  da = broadcast_to(g, a.shape)."""

    def __init__(self, shape):
        self.shape = shape

    def forward(self, a):
        lead = a.ndim - len(self.shape)
        out = threads.sum(a, tuple(range(lead)), keepdims=False) if lead else a
        ones = tuple(i for i, n in enumerate(self.shape) if n == 1 and out.shape[i] != 1)
        if ones:
            out = threads.sum(out, ones, keepdims=True)
        if out.shape != self.shape:
            raise ValueError("shapes differ after the sum")
        return out

    def input_error(self, inputs, err):
        return ValueError(f"sum_to: shape {inputs[0].shape} does not broadcast from {self.shape}")

    def backward(self, g):
        return (broadcast_to(g, self.inputs[0].shape),)


class GetItem(Function):
    """out = a[index] for basic slices and integer-array indices;
    da = zeros like a with g added at the indexed positions (`ScatterAdd`)."""

    def __init__(self, index):
        self.index = index

    def forward(self, a):
        return a[self.index]

    def input_error(self, inputs, err):
        return IndexError(f"getitem: index {self.index!r} is invalid for a tensor of shape "
                          f"{inputs[0].shape}: {err}")

    def backward(self, g):
        return (ScatterAdd.apply(g, index=self.index, shape=self.inputs[0].shape),)


class ScatterAdd(Function):
    """out = zeros(shape) with g added at out[index] (repeated indices add up);
    the adjoint of getitem, so its own backward is getitem: dg = d_out[index]."""

    def __init__(self, index, shape):
        self.index = index
        self.shape = shape

    def forward(self, g):
        xp = get_array_module(g)
        out = xp.zeros(self.shape, dtype=g.dtype)
        xp.add.at(out, self.index, g)
        return out

    def backward(self, d_out):
        return (getitem(d_out, self.index),)


class Concatenate(Function):
    """out = the inputs joined along `axis`;  each input's gradient is its slice of g."""

    def __init__(self, axis):
        self.axis = axis

    def forward(self, *arrays):
        return get_array_module(*arrays).concatenate(arrays, axis=self.axis)

    def input_error(self, inputs, err):
        shapes = ", ".join(str(x.shape) for x in inputs)
        return ValueError(f"concatenate: shapes {shapes} must have one number of axes and agree on "
                          f"every axis but axis {self.axis}")

    def backward(self, g):
        grads, start = [], 0
        for x, needed in zip(self.inputs, self.needs_input_grad):
            stop = start + x.shape[self.axis]
            index = (slice(None),) * self.axis + (slice(start, stop),)
            grads.append(getitem(g, index) if needed else None)
            start = stop
        return tuple(grads)


# --- the functions users call -------------------------------------------
def to(a, device):
    """`a` on `device` ("cpu" or "cuda"); differentiable, and `a` itself if it is there already."""
    array_module(device)  # a clear error for an unknown or unavailable device
    if a.device == device:
        return a
    return ToDevice.apply(a, device=device)


def reshape(a, *shape):
    """`a` with another shape; accepts reshape(a, (2, 3)) and reshape(a, 2, 3); one axis may be -1."""
    shape = _normalize_shape(shape[0] if len(shape) == 1 else shape)
    if a.data.shape == shape:
        return a
    return Reshape.apply(a, shape=shape)


def transpose(a, axes=None):
    """Permute axes (reverse them when axes is None)."""
    a = as_tensor(a)
    axes = tuple(reversed(range(a.ndim))) if axes is None else checked_axes(axes, a.ndim, "transpose")
    if axes == tuple(range(a.ndim)):
        return a
    return Transpose.apply(a, axes=axes)


def permute(a, *axes):
    """Permute axes, given as separate arguments or one sequence; reverse them when none are given."""
    if len(axes) == 1 and not isinstance(axes[0], (int, np.integer)):
        axes = axes[0]
    return transpose(a, axes or None)


def swapaxes(a, axis1, axis2):
    """`a` with axes axis1 and axis2 exchanged."""
    a = as_tensor(a)
    axis1, axis2 = checked_axes((axis1, axis2), a.ndim, "swapaxes")
    if axis1 == axis2:
        return a
    axes = list(range(a.ndim))
    axes[axis1], axes[axis2] = axis2, axis1
    return Transpose.apply(a, axes=tuple(axes))


def broadcast_to(a, shape):
    shape = _normalize_shape(shape)
    if a.data.shape == shape:
        return a
    return BroadcastTo.apply(as_tensor(a), shape=shape)


def sum_to(a, shape):
    """Sum `a` down to `shape`, undoing numpy broadcasting (identity when the shapes agree)."""
    if a.data.shape == shape:
        return a
    return SumTo.apply(a, shape=_normalize_shape(shape))


def _plain_index(index):
    """An index with tensors replaced by their integer arrays (indices are never differentiated)."""
    if isinstance(index, tuple):
        return tuple(_plain_index(i) for i in index)
    data = getattr(index, "data", None)
    if data is not None and not isinstance(index, (np.ndarray, slice)):
        index = data
    if isinstance(index, (list, np.ndarray)):
        index = np.asarray(index)
        if index.dtype.kind == "f":
            raise IndexError(f"getitem: index arrays must be integers or booleans, got dtype {index.dtype}")
    return index


def getitem(a, index):
    return GetItem.apply(a, index=_plain_index(index))


def concatenate(tensors, axis=0):
    """Join tensors along an existing axis; their other axes must agree."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("concatenate: needs at least one tensor")
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1:
        raise TypeError(f"concatenate: tensors have different dtypes {sorted(map(str, dtypes))}")
    (axis,) = checked_axes(axis, tensors[0].ndim, "concatenate")
    return Concatenate.apply(*tensors, axis=axis)


def stack(tensors, axis=0):
    """Join tensors of equal shape along a new axis (a composition: reshape, then concatenate)."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack: all tensors need the same shape, got {sorted(shapes)}")
    (axis,) = checked_axes(axis, tensors[0].ndim + 1, "stack")
    return concatenate([reshape(t, t.shape[:axis] + (1,) + t.shape[axis:]) for t in tensors], axis)
