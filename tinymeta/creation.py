"""Making tensors: from data, filled with a constant, or random from an explicit generator.

Floating data defaults to float32 (speed); pass dtype=np.float64 for gradient
checks. `device` is "cpu" (numpy) or "cuda" (cupy, where a GPU is present).
Random constructors take a `numpy.random.Generator` so that every run is
reproducible from a seed: there is no hidden global random state (random
values are drawn on the CPU and then moved, so a seed gives the same numbers
on every device).
"""
import numpy as np

from .backend import array_module, get_array_module, to_device
from .tensor import Tensor


def tensor(data, dtype=None, requires_grad=False, device="cpu"):
    """A leaf tensor holding a copy of `data` (a number, nested list, array or Tensor).

    Python floats become float32 unless `dtype` says otherwise; arrays keep
    their dtype.
    """
    if isinstance(data, Tensor):
        data = data.data
    on_gpu = hasattr(data, "__cuda_array_interface__")
    from_python = not (on_gpu or isinstance(data, (np.ndarray, np.generic)))
    array = to_device(data, "cpu") if on_gpu else np.array(data, dtype=dtype)
    if dtype is not None:
        array = array.astype(dtype)
    elif from_python and array.dtype == np.float64:
        array = array.astype(np.float32)
    if array.dtype == object:
        raise TypeError(f"tensor: cannot make a numeric tensor from {type(data).__name__} data")
    return Tensor(_on(device, array), requires_grad=requires_grad)


def _on(device, array):
    array_module(device)  # a clear error for an unknown or unavailable device
    return to_device(array, device)


def zeros(shape, dtype=np.float32, requires_grad=False, device="cpu"):
    return Tensor(array_module(device).zeros(shape, dtype=dtype), requires_grad=requires_grad)


def ones(shape, dtype=np.float32, requires_grad=False, device="cpu"):
    return Tensor(array_module(device).ones(shape, dtype=dtype), requires_grad=requires_grad)


def full(shape, value, dtype=np.float32, requires_grad=False, device="cpu"):
    return Tensor(array_module(device).full(shape, value, dtype=dtype), requires_grad=requires_grad)


def zeros_like(t, requires_grad=False):
    return Tensor(get_array_module(t.data).zeros_like(t.data), requires_grad=requires_grad)


def ones_like(t, requires_grad=False):
    return Tensor(get_array_module(t.data).ones_like(t.data), requires_grad=requires_grad)


def randn(shape, rng, dtype=np.float32, requires_grad=False, device="cpu"):
    """Standard normal samples drawn from the Generator `rng`."""
    _check_rng(rng, "randn")
    return Tensor(_on(device, rng.standard_normal(shape).astype(dtype)), requires_grad=requires_grad)


def rand(shape, rng, dtype=np.float32, requires_grad=False, device="cpu"):
    """Uniform samples in [0, 1) drawn from the Generator `rng`."""
    _check_rng(rng, "rand")
    return Tensor(_on(device, rng.random(shape).astype(dtype)), requires_grad=requires_grad)


def _check_rng(rng, op):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{op}: rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
