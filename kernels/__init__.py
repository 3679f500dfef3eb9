"""Array kernels for the CPU, installed as tinymeta.kernels: functions from numpy
arrays to numpy arrays that know nothing of tensors or autodiff.

    conv2d.py      conv2d_forward, conv2d_grad_input, conv2d_grad_weight
                   (NCHW input, OIHW weight; numba im2col + BLAS)
    max_pool2d.py  max_pool2d_forward (values and argmax), max_pool2d_backward
                   (scatter-add) and max_pool2d_gather (its adjoint)
    reference.py   plain numpy versions of all six: the tests' oracles

Numba compiles each kernel once per dtype (float32, float64) and caches it on
disk; with NUMBA_DISABLE_JIT=1 the same code runs as plain Python.
"""
from .conv2d import conv2d_forward, conv2d_grad_input, conv2d_grad_weight
from .max_pool2d import max_pool2d_backward, max_pool2d_forward, max_pool2d_gather

__all__ = ["conv2d_forward", "conv2d_grad_input", "conv2d_grad_weight",
           "max_pool2d_forward", "max_pool2d_backward", "max_pool2d_gather"]
