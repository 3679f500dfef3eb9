"""Which array module, and so which device, holds a tensor's data.

Tensors store numpy arrays on the CPU ("cpu") and, where cupy and a GPU are
present, cupy arrays on the GPU ("cuda"). Ops ask `get_array_module(*arrays)`
for the module to call instead of naming numpy, so one implementation serves
both devices, and `kernels_for(*arrays)` for the conv/pool kernels of the
arrays' device. Whether a GPU can be used is found out once, on first asking:
cupy imports on machines without a GPU and fails only at the first allocation,
so the check allocates, and keeps the reason when it fails.
"""
import numpy

DEVICES = ("cpu", "cuda")

_cuda = None  # (cupy module or None, reason it is unusable or None), once checked


def cuda_status():
    """(cupy, None) when a GPU is usable through cupy, else (None, why not)."""
    global _cuda
    if _cuda is None:
        try:
            import cupy
            cupy.zeros(1)  # the first allocation is where a missing GPU or driver shows
            _cuda = (cupy, None)
        except ImportError as err:
            _cuda = (None, f"cupy is not installed ({err}); install tinymeta[gpu]")
        except Exception as err:  # cupy raises CUDA runtime errors of several types here
            _cuda = (None, f"cupy is installed but no GPU answered: {type(err).__name__}: {err}")
    return _cuda


def cuda_available():
    return cuda_status()[0] is not None


def array_module(device):
    """numpy for "cpu", cupy for "cuda" (or an error saying why the GPU cannot be used)."""
    if device == "cpu":
        return numpy
    if device == "cuda":
        cupy, reason = cuda_status()
        if cupy is None:
            raise RuntimeError(f"device 'cuda' is not available: {reason}")
        return cupy
    raise ValueError(f"unknown device {device!r}; expected one of {DEVICES}")


def get_array_module(*arrays):
    """numpy, or cupy if any of `arrays` is a cupy array."""
    for a in arrays:
        if type(a) is not numpy.ndarray and not isinstance(a, (numpy.generic, int, float, bool)):
            cupy = cuda_status()[0]
            if cupy is not None and isinstance(a, cupy.ndarray):
                return cupy
    return numpy


def device_of(array):
    return "cpu" if get_array_module(array) is numpy else "cuda"


def to_device(array, device):
    """`array` on `device` (the same array if it is there already)."""
    if device_of(array) == device:
        return array
    if device == "cpu":
        return array.get()
    return array_module(device).asarray(array)


def to_numpy(array):
    """A numpy array with the same values (copied from the GPU where needed)."""
    return array if isinstance(array, numpy.ndarray) else to_device(array, "cpu")


_kernel_modules = {}


def kernels_for(*arrays):
    """The conv/pool kernel module for the arrays' device: numba on the CPU, CUDA on the GPU.

    Imported on first use, so `import tinymeta` pays for neither numba nor cupy
    until a convolution runs.
    """
    xp = get_array_module(*arrays)
    if xp not in _kernel_modules:
        if xp is numpy:
            from . import kernels as cpu_kernels
            _kernel_modules[xp] = cpu_kernels
        else:
            from .kernels import gpu as gpu_kernels
            _kernel_modules[xp] = gpu_kernels
    return _kernel_modules[xp]
