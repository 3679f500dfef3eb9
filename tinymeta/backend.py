"""Which array module holds a tensor's data.

Tensors store numpy arrays on the CPU and, where cupy and a GPU are present,
cupy arrays on the GPU. Ops ask `get_array_module(*arrays)` for the module to
call instead of naming numpy, so one implementation serves both devices. cupy is
imported lazily and at most once: a machine without it never pays for the check.
"""
import numpy

_cupy = None          # the cupy module once it imported, else None
_cupy_checked = False


def _load_cupy():
    global _cupy, _cupy_checked
    if not _cupy_checked:
        _cupy_checked = True
        try:
            import cupy
            _cupy = cupy
        except ImportError:
            _cupy = None
    return _cupy


def get_array_module(*arrays):
    """numpy, or cupy if any of `arrays` is a cupy array."""
    for a in arrays:
        if type(a) is not numpy.ndarray and not isinstance(a, (numpy.generic, int, float, bool)):
            cupy = _load_cupy()
            if cupy is not None and isinstance(a, cupy.ndarray):
                return cupy
    return numpy


_kernel_modules = {}


def kernels_for(*arrays):
    """The conv/pool kernel module for the arrays' device (numba on the CPU).

    Imported on first use, so `import tinymeta` does not pay for numba until a
    convolution runs.
    """
    xp = get_array_module(*arrays)
    if xp not in _kernel_modules:
        if xp is numpy:
            from . import kernels as cpu_kernels
            _kernel_modules[xp] = cpu_kernels
        else:
            raise NotImplementedError("conv and pool kernels for cupy arrays are not available yet")
    return _kernel_modules[xp]
