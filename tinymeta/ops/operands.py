"""Turning op arguments into Tensors of one dtype, and axes into indices.

Python numbers and arrays given to an op become constant tensors (they require
no grad). A number takes the dtype and device of the tensor it meets, so
`x * 2` keeps float32 data float32 (and on the GPU); a number the tensor's dtype
cannot hold promotes the result instead, as in PyTorch (an integer tensor times
0.5 is float32, never a silent integer 0). Two floating tensors of
different precision are an error rather than a silent upcast: mixed precision
in a gradient check would hide exactly the errors the check is meant to find.
Tensors on different devices are an error too; move one with `.to(device)`.
An axis counts from the end when negative, as in numpy; one outside the
tensor's axes is an error naming the op, never wrapped around.
"""
import numpy as np

from ..backend import device_of, get_array_module
from ..tensor import Tensor


def as_tensor(value, dtype=None, like=None):
    """`value` as a Tensor; numbers and arrays become constants (of the numpy dtype `dtype` if
    given and it holds the number, on the device of the array `like` if given)."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (bool, int, float)) and dtype is not None:
        xp = np if like is None or type(like) is np.ndarray else get_array_module(like)
        if dtype.kind not in "fc" and not _keeps_value(dtype, value):  # the common case first: floats
            dtype = _own_dtype(value)
        return Tensor(xp.asarray(value, dtype=dtype))
    if isinstance(value, (np.ndarray, np.generic)):
        return Tensor(np.asarray(value))
    if isinstance(value, (bool, int, float, list, tuple)):
        data = np.asarray(value)
        return Tensor(data.astype(np.float32) if data.dtype == np.float64 else data)
    raise TypeError(f"expected a Tensor, number or array, got {type(value).__name__}")


def _keeps_value(dtype, value):
    """Whether a Python number keeps its value in the integer or bool dtype `dtype`: an integer
    in an integer one, a bool in a bool one (0.5 must not become an integer 0)."""
    return not isinstance(value, float) if dtype.kind in "iu" else isinstance(value, bool)


def _own_dtype(value):
    """The dtype a Python number takes on its own: float32 (the default), int64 or bool."""
    return np.bool_ if isinstance(value, bool) else np.int64 if isinstance(value, int) else np.float32


def binary_operands(a, b, op):
    """Both operands of a binary op as Tensors of a common dtype."""
    try:
        if type(a) is not Tensor:
            b = as_tensor(b)
            a = as_tensor(a, b.data.dtype, b.data)
        elif type(b) is not Tensor:
            b = as_tensor(b, a.data.dtype, a.data)
    except TypeError as err:
        raise TypeError(f"{op}: {err}") from None
    if type(a.data) is not type(b.data) and device_of(a.data) != device_of(b.data):
        raise ValueError(f"{op}: operands are on different devices ({device_of(a.data)} and "
                         f"{device_of(b.data)}); move one with .to(device)")
    da, db = a.data.dtype, b.data.dtype
    if da is db or da == db:
        return a, b
    return _unify_dtypes(a, b, op)


def _unify_dtypes(a, b, op):
    fa, fb = a.data.dtype.kind in "fc", b.data.dtype.kind in "fc"
    if fa and fb:
        raise TypeError(f"{op}: operands have dtypes {a.dtype} and {b.dtype}; "
                        "convert one with .astype() so both match")
    if fa:  # b is an integer or boolean constant
        return a, Tensor(b.data.astype(a.data.dtype))
    if fb:
        return Tensor(a.data.astype(b.data.dtype)), b
    return a, b


def checked_axes(axes, ndim, op):
    """Each of `axes` (one int or a sequence) as an index in [0, ndim), in the order given;
    an axis outside [-ndim, ndim) is a ValueError naming the op."""
    axes = (axes,) if isinstance(axes, (int, np.integer)) else tuple(axes)
    for axis in axes:
        if not -ndim <= axis < ndim:
            raise ValueError(f"{op}: axis {axis} is out of range for a tensor with {ndim} axes")
    return tuple(int(axis) % ndim for axis in axes)
