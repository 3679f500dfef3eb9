"""Array kernels for the CPU, installed as tinymeta.kernels: functions from numpy
arrays to numpy arrays that know nothing of tensors or autodiff.

    conv2d.py      conv2d_forward, conv2d_grad_input, conv2d_grad_weight
                   (NCHW input, OIHW weight; numba im2col + BLAS), and
                   conv2d_columns (an input's column matrices, kept for reuse)
    max_pool2d.py  max_pool2d_forward (values and argmax), max_pool2d_backward
                   (scatter-add) and max_pool2d_gather (its adjoint)
    batch_norm.py  batch_norm_forward (normalise per group and channel),
                   batch_norm_affine_forward (and scale and shift), their gradients
                   batch_norm_backward and batch_norm_affine_backward, and
                   batch_norm_double_backward (the gradient of the first), fused
    select.py      where (a where cond else b) at memory speed, and relu_backward
                   (g where a >= 0 else 0) in one pass
    reference.py   plain numpy versions of the thirteen others: the tests' oracles

Every conv kernel also takes a leading task axis (5-d arrays, one weight per
task); max pooling has no weights, so 5-d inputs are just more images.

Numba compiles each kernel once per dtype (float32, float64) and caches it on
disk; with NUMBA_DISABLE_JIT=1 the same code runs as plain Python.

Threads. Every kernel is serial and releases the GIL (nogil), so threads that
each take a share of a meta-batch run them side by side (tinymeta.meta.task_threads:
1.6x a meta-iteration on 2 cores). Parallel loops inside the kernels (numba's
prange) did not pay: each launch wakes threads that the BLAS products between
the kernels also want (benchmarks/bench_kernels.py measures it), and numba's
default threading layer cannot be entered from two threads at once.
"""
from .conv2d import conv2d_columns, conv2d_forward, conv2d_grad_input, conv2d_grad_weight
from .max_pool2d import max_pool2d_backward, max_pool2d_forward, max_pool2d_gather
from .batch_norm import (batch_norm_affine_backward, batch_norm_affine_forward, batch_norm_backward,
                         batch_norm_double_backward, batch_norm_forward)
from .select import relu_backward, where

__all__ = ["conv2d_columns", "conv2d_forward", "conv2d_grad_input", "conv2d_grad_weight",
           "max_pool2d_forward", "max_pool2d_backward", "max_pool2d_gather",
           "batch_norm_forward", "batch_norm_affine_forward", "batch_norm_backward", "batch_norm_affine_backward",
           "batch_norm_double_backward", "relu_backward", "where"]
