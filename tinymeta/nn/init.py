"""Parameter initialisers. Each returns a new float array and takes an explicit Generator.

fan_in and fan_out follow the layer's shape: for a linear weight (in, out) they
are in and out; for a conv weight (out, in, kh, kw) they are in*kh*kw and
out*kh*kw.

    kaiming_uniform: U(-b, b),  b = gain * sqrt(3 / fan_in),   gain = sqrt(2) for ReLU
    kaiming_normal:  N(0, s^2), s = gain / sqrt(fan_in)
    xavier_uniform:  U(-b, b),  b = gain * sqrt(6 / (fan_in + fan_out))
    xavier_normal:   N(0, s^2), s = gain * sqrt(2 / (fan_in + fan_out))
    uniform:         U(-bound, bound) (PyTorch's default for Linear and Conv2d: bound = 1/sqrt(fan_in))
"""
import math

import numpy as np


def fans(shape, layout="linear"):
    """(fan_in, fan_out) of a weight: layout 'linear' is (in, out), 'conv' is (out, in, kh, kw)."""
    if layout == "linear":
        if len(shape) != 2:
            raise ValueError(f"init: a linear weight is (in, out), got shape {shape}")
        return shape[0], shape[1]
    if layout == "conv":
        if len(shape) != 4:
            raise ValueError(f"init: a conv weight is (out, in, kh, kw), got shape {shape}")
        receptive = shape[2] * shape[3]
        return shape[1] * receptive, shape[0] * receptive
    raise ValueError(f"init: layout must be 'linear' or 'conv', got {layout!r}")


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"init: rng must be a numpy.random.Generator, got {type(rng).__name__}")


def kaiming_uniform(shape, rng, layout="linear", gain=math.sqrt(2.0), dtype=np.float32):
    _check_rng(rng)
    bound = gain * math.sqrt(3.0 / fans(shape, layout)[0])
    return rng.uniform(-bound, bound, shape).astype(dtype)


def kaiming_normal(shape, rng, layout="linear", gain=math.sqrt(2.0), dtype=np.float32):
    _check_rng(rng)
    return (rng.standard_normal(shape) * gain / math.sqrt(fans(shape, layout)[0])).astype(dtype)


def xavier_uniform(shape, rng, layout="linear", gain=1.0, dtype=np.float32):
    _check_rng(rng)
    fan_in, fan_out = fans(shape, layout)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, shape).astype(dtype)


def xavier_normal(shape, rng, layout="linear", gain=1.0, dtype=np.float32):
    _check_rng(rng)
    fan_in, fan_out = fans(shape, layout)
    return (rng.standard_normal(shape) * gain * math.sqrt(2.0 / (fan_in + fan_out))).astype(dtype)


def uniform(shape, rng, bound, dtype=np.float32):
    """U(-bound, bound)."""
    _check_rng(rng)
    return rng.uniform(-bound, bound, shape).astype(dtype)


def zeros(shape, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


def ones(shape, dtype=np.float32):
    return np.ones(shape, dtype=dtype)
