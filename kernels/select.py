"""Elementwise selection, out = a where cond else b, on the CPU, and ReLU's backward.

The backward of ReLU (and of max and where) is such a selection over a whole
activation: the gradient where the mask holds, zero elsewhere. numpy's where
takes about 4 ns an element there (a scalar operand, and a mask with no long
runs, keep it off its fast loops); the loops below run at memory speed, about
0.45 ns an element (30M float32: 13 ms against 120 ms, benchmarks/RESULTS.md).

They take the common shapes: a boolean mask of the result's shape, and a and
b either arrays of that shape or single values, all C-contiguous, a and b of
the result's dtype. Anything else (broadcast conditions, strided operands,
mixed dtypes) is handed to numpy's where, which gives the same values; so are
results of fewer than SMALL elements, where numpy's call costs less than
these checks (3.0 us against 4.5 us at 1,000 elements; 6.8 us against 4.8 us at
4,000; 50 us against 8.6 us at 40,000).

relu_backward, g where a >= 0 else 0, is that selection with its mask made in
the same loop: one pass over g and a and none over a mask (10,000 float32: 2.2
us against 7.9 for the comparison and then where; 10^6: 156 us against 3.8 ms
for numpy's where on the comparison).
"""
import numpy as np
from numba import njit

SMALL = 1 << 11


@njit(cache=True, nogil=True)
def _select_value(cond, keep, a, value, out):
    """out[i] = a[i] where cond[i] == keep, else value (flat arrays)."""
    for i in range(out.size):
        out[i] = a[i] if cond[i] == keep else value


@njit(cache=True, nogil=True)
def _select_arrays(cond, a, b, out):
    """out[i] = a[i] where cond[i], else b[i] (flat arrays)."""
    for i in range(out.size):
        out[i] = a[i] if cond[i] else b[i]


@njit(cache=True, nogil=True)
def _pass_nonnegative(g, a, out):
    """out[i] = g[i] where a[i] >= 0, else 0 (flat arrays; a NaN in a selects 0, as a >= 0 is false)."""
    for i in range(out.size):
        out[i] = g[i] if a[i] >= 0 else 0


def relu_backward(g, a):
    """out = g where a >= 0, else 0 (ReLU's backward at a, of the gradient g); g and a of one shape."""
    if not (_full(g, g.shape, g.dtype) and _full(a, g.shape, g.dtype) and g.dtype.kind == "f"):
        return np.where(a >= 0, g, g.dtype.type(0))
    out = np.empty(g.shape, g.dtype)
    _pass_nonnegative(g.reshape(-1), a.reshape(-1), out.reshape(-1))
    return out


def where(cond, a, b):
    """out = a where cond else b, elementwise with numpy's broadcasting and type promotion
    (a Python number takes the other operand's dtype)."""
    dtype = np.result_type(a, b)
    if not (type(cond) is np.ndarray and cond.dtype == np.bool_ and cond.flags.c_contiguous
            and cond.size >= SMALL and dtype.kind == "f"):
        return np.where(cond, a, b)
    shape = cond.shape  # the fast paths take operands that broadcast to the condition's shape
    a_full, b_full = _full(a, shape, dtype), _full(b, shape, dtype)
    a_value = None if a_full else _single_value(a, len(shape), dtype)
    b_value = None if b_full else _single_value(b, len(shape), dtype)
    if not (a_full and (b_full or b_value is not None) or b_full and a_value is not None):
        return np.where(cond, a, b)  # an operand broadcast along some axes only
    out = np.empty(shape, dtype)  # numpy's allocation: huge pages for large results, where numba's has none
    mask, flat_out = cond.reshape(-1), out.reshape(-1)
    if a_full and b_full:
        _select_arrays(mask, a.reshape(-1), b.reshape(-1), flat_out)
    elif a_full:
        _select_value(mask, True, a.reshape(-1), b_value, flat_out)
    else:
        _select_value(mask, False, b.reshape(-1), a_value, flat_out)
    return out


def _full(x, shape, dtype):
    """x is a C-contiguous numpy array of exactly this shape and dtype."""
    return type(x) is np.ndarray and x.shape == shape and x.dtype == dtype and x.flags.c_contiguous


def _single_value(x, ndim, dtype):
    """x as a scalar of dtype if it is one value that broadcasts onto ndim axes without adding any, else None.
    (Type checks, not np.size or np.shape: those cost microseconds on a Python number.)"""
    if type(x) in (int, float, bool):
        return dtype.type(x)
    if isinstance(x, (np.ndarray, np.generic)) and x.size == 1 and x.ndim <= ndim:
        return dtype.type(x.reshape(()))
    return None
