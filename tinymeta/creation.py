"""Making tensors: from data, filled with a constant, or random from an explicit generator.

Floating data defaults to float32 (speed); pass dtype=np.float64 for gradient
checks. Random constructors take a `numpy.random.Generator` so that every run
is reproducible from a seed: there is no hidden global random state.
"""
import numpy as np

from .tensor import Tensor


def tensor(data, dtype=None, requires_grad=False):
    """A leaf tensor holding a copy of `data` (a number, nested list, array or Tensor).

    Python floats become float32 unless `dtype` says otherwise; numpy arrays keep
    their dtype.
    """
    if isinstance(data, Tensor):
        data = data.data
    from_python = not isinstance(data, (np.ndarray, np.generic))
    array = np.array(data, dtype=dtype)
    if dtype is None and from_python and array.dtype == np.float64:
        array = array.astype(np.float32)
    if array.dtype == object:
        raise TypeError(f"tensor: cannot make a numeric tensor from {type(data).__name__} data")
    return Tensor(array, requires_grad=requires_grad)


def zeros(shape, dtype=np.float32, requires_grad=False):
    return Tensor(np.zeros(shape, dtype=dtype), requires_grad=requires_grad)


def ones(shape, dtype=np.float32, requires_grad=False):
    return Tensor(np.ones(shape, dtype=dtype), requires_grad=requires_grad)


def full(shape, value, dtype=np.float32, requires_grad=False):
    return Tensor(np.full(shape, value, dtype=dtype), requires_grad=requires_grad)


def zeros_like(t, requires_grad=False):
    return Tensor(np.zeros_like(t.data), requires_grad=requires_grad)


def ones_like(t, requires_grad=False):
    return Tensor(np.ones_like(t.data), requires_grad=requires_grad)


def randn(shape, rng, dtype=np.float32, requires_grad=False):
    """Standard normal samples drawn from the Generator `rng`."""
    _check_rng(rng, "randn")
    return Tensor(rng.standard_normal(shape).astype(dtype), requires_grad=requires_grad)


def rand(shape, rng, dtype=np.float32, requires_grad=False):
    """Uniform samples in [0, 1) drawn from the Generator `rng`."""
    _check_rng(rng, "rand")
    return Tensor(rng.random(shape).astype(dtype), requires_grad=requires_grad)


def _check_rng(rng, op):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{op}: rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
