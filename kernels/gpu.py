"""The kernels of tinymeta.kernels for cupy arrays on the GPU: the same functions,
with the same arguments, output shapes and dtypes, so tinymeta.backend picks
this module or the CPU one by the arrays' device.

    conv2d_forward, conv2d_grad_input, conv2d_grad_weight, conv2d_columns
        im2col + cuBLAS, task by task for 5-d arrays (a leading task axis).
        The CUDA kernels of cuda/conv2d.cu build the column matrix cols(x),
        (C*kh*kw, N*Ho*Wo), and fold one back (col2im); cupy's matmul hands
        the three products to cuBLAS:

            forward       y   = W @ cols(x)         W  = w as (O, C*kh*kw)
            grad_input    gx  = col2im(W.T @ gy)    gy = grad_y as (O, N*Ho*Wo)
            grad_weight   gw  = gy @ cols(x).T

        Unlike the CPU kernels, the whole batch makes one column matrix: GPU
        memory holds it (at the Omniglot shapes, 36 MB in float32) and one
        large product keeps cuBLAS busy where chunks would not.  So kept
        columns (conv2d_columns, `columns=`) hold one chunk per task.
    max_pool2d_forward, max_pool2d_backward, max_pool2d_gather
        one CUDA kernel each, in cuda/max_pool2d.cu.
    batch_norm_forward, batch_norm_affine_forward, batch_norm_backward,
    batch_norm_affine_backward, batch_norm_double_backward
        the numpy references' array expressions, which cupy runs as they are.
    where
        cupy's own.

The CUDA sources are compiled by NVRTC (cupy.RawModule) on first use, once per
process (cupy also caches the binaries on disk), and launched on one thread per
element, in blocks of BLOCK threads.  The arguments are checked by the CPU
kernels' own helpers, so errors read the same on both devices.  An argmax index
outside its plane is caught by the pooling kernels themselves; raising it means
reading a flag back, which waits for the GPU.

This module imports cupy: import it only with cupy arrays in hand, as
tinymeta.backend does.
"""
import functools
from pathlib import Path

import cupy
import numpy as np

from .conv2d import Columns, _check_arrays, _check_columns, _check_grad_y, _column_source, _geometry, _prepare
from .max_pool2d import _check_argmax, _check_float, _pool_geometry
from .reference import (batch_norm_affine_backward, batch_norm_affine_forward,  # noqa: F401 (array
                        batch_norm_backward, batch_norm_double_backward,          # methods: cupy runs them)
                        batch_norm_forward)
from .task_axis import over_tasks

where = cupy.where


def relu_backward(g, a):
    """out = g where a >= 0, else 0 (one elementwise kernel of cupy's)."""
    return cupy.where(a >= 0, g, g.dtype.type(0))

_over_tasks = functools.partial(over_tasks, stack=cupy.stack)  # 5-d operands: one convolution per task

CUDA_SOURCES = {name: Path(__file__).with_name("cuda") / f"{name}.cu"
                for name in ("conv2d", "max_pool2d")}

BLOCK = 256  # threads per block

# The suffix of each kernel's entry point, by dtype (im2col_float, im2col_double, ...).
_CUDA_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


@functools.cache
def _module(source):
    """CUDA_SOURCES[source], compiled."""
    return cupy.RawModule(code=CUDA_SOURCES[source].read_text(), options=("-std=c++14",))


@functools.cache
def _kernel(source, name, dtype):
    return _module(source).get_function(f"{name}_{_CUDA_TYPES[dtype]}")


def _launch(source, name, dtype, threads, *args):
    """Run kernel `name` of `source` for `dtype` on `threads` threads; integer
    arguments go as the kernels' long long."""
    if threads:
        args = tuple(np.int64(a) if isinstance(a, (int, np.integer)) else a for a in args)
        _kernel(source, name, dtype)(((threads + BLOCK - 1) // BLOCK,), (BLOCK,), args)


# --- convolution ------------------------------------------------------------

def _im2col(x, g):
    """cols[(c, i, j), (n, a, b)] = xpad[n, c, a*stride + i, b*stride + j],
    one thread per (c, n, a, b)."""
    cols = cupy.empty((g.c * g.kh * g.kw, g.n * g.ho * g.wo), x.dtype)
    _launch("conv2d", "im2col", x.dtype, g.c * g.n * g.ho * g.wo, x, cols, *_conv_args(g))
    return cols


def _col2im(dcols, g):
    """The adjoint of _im2col, (N, C, H, W), one thread per input pixel."""
    gx = cupy.empty((g.n, g.c, g.h, g.w), dcols.dtype)
    _launch("conv2d", "col2im", dcols.dtype, gx.size, dcols, gx, *_conv_args(g))
    return gx


def _conv_args(g):
    """The geometry arguments of the conv2d.cu kernels (the fields of its struct Conv)."""
    return g.n, g.c, g.h, g.w, g.kh, g.kw, g.stride, g.padding, g.ho, g.wo


def _grad_y_matrix(grad_y, g):
    """grad_y (N, O, Ho, Wo) as the (O, N*Ho*Wo) matrix gy of the products (a copy)."""
    return grad_y.transpose(1, 0, 2, 3).reshape(g.o, -1)


def _task_columns(x, t, g, columns):
    """Task t's column matrix: the kept one (its single chunk), or built."""
    return columns.per_task[t][0][2] if columns is not None else _im2col(x[t], g)


def conv2d_columns(x, weight_shape, stride=1, padding=0):
    """cols(x) of every task, kept (as the CPU kernel: conv2d_forward and conv2d_grad_weight
    given them as `columns=`, with this x, weight shape, stride and padding, skip building them)."""
    (x,), _ = _prepare("conv2d_columns", cupy, x=x)
    g = _geometry("conv2d_columns", x.shape[1:], weight_shape, stride, padding)
    return Columns(_column_source(x, g), [[(0, g.n, _im2col(x[t], g))] for t in range(len(x))])


def conv2d_forward(x, w, stride=1, padding=0, columns=None):
    """y[n, o, a, b] = sum_{c, i, j} w[o, c, i, j] * xpad[n, c, a*stride + i, b*stride + j],
    xpad being x zero-padded by `padding` on all sides (cross-correlation, as PyTorch)."""
    (x, w), has_task_axis = _prepare("conv2d_forward", cupy, x=x, w=w)
    g = _geometry("conv2d_forward", x.shape[1:], w.shape[1:], stride, padding)
    _check_columns("conv2d_forward", columns, x, g)
    y = cupy.stack([w[t].reshape(g.o, -1) @ _task_columns(x, t, g, columns) for t in range(len(x))])  # (T, O, N*Ho*Wo)
    y = cupy.ascontiguousarray(y.reshape(len(x), g.o, g.n, g.ho, g.wo).transpose(0, 2, 1, 3, 4))
    return y if has_task_axis else y[0]


@_over_tasks
def conv2d_grad_input(grad_y, w, input_hw, stride=1, padding=0):
    """The transposed convolution, gradient of conv2d_forward with respect to x,
    of shape (N, C) + input_hw (with stride > 1 several input sizes give one output size)."""
    grad_y, w = cupy.ascontiguousarray(grad_y), cupy.ascontiguousarray(w)
    _check_arrays("conv2d_grad_input", grad_y=grad_y, w=w)
    x_shape = (grad_y.shape[0], w.shape[1], *input_hw)
    g = _geometry("conv2d_grad_input", x_shape, w.shape, stride, padding)
    _check_grad_y("conv2d_grad_input", grad_y, g)
    return _col2im(w.reshape(g.o, -1).T @ _grad_y_matrix(grad_y, g), g)


def conv2d_grad_weight(x, grad_y, kernel_hw, stride=1, padding=0, columns=None):
    """Gradient of conv2d_forward with respect to w:
    gw[o, c, i, j] = sum_{n, a, b} grad_y[n, o, a, b] * xpad[n, c, a*stride + i, b*stride + j]."""
    (x, grad_y), has_task_axis = _prepare("conv2d_grad_weight", cupy, x=x, grad_y=grad_y)
    w_shape = (grad_y.shape[2], x.shape[2], *kernel_hw)
    g = _geometry("conv2d_grad_weight", x.shape[1:], w_shape, stride, padding)
    _check_grad_y("conv2d_grad_weight", grad_y[0], g)
    _check_columns("conv2d_grad_weight", columns, x, g)
    gw = cupy.stack([(_grad_y_matrix(grad_y[t], g) @ _task_columns(x, t, g, columns).T).reshape(w_shape)
                     for t in range(len(x))])
    return gw if has_task_axis else gw[0]


# --- max pooling --------------------------------------------------------------

def max_pool2d_forward(x, kernel, stride):
    """(y, argmax) of max pooling x (N, C, H, W) with kernel x kernel windows every
    `stride` pixels, no padding; argmax (int64, y's shape) = h*W + w of the first
    maximum of each window.  One thread per output element."""
    x = cupy.ascontiguousarray(x)
    n, c, h, w, ho, wo, kernel, stride = _pool_geometry(x, kernel, stride)
    y = cupy.empty((n, c, ho, wo), x.dtype)
    argmax = cupy.empty((n, c, ho, wo), cupy.int64)
    _launch("max_pool2d", "max_pool_forward", x.dtype, y.size,
            x, y, argmax, n * c, h, w, kernel, stride, ho, wo)
    return y, argmax


def _by_argmax(name, kernel, source, argmax, target, plane_size):
    """Run the scatter or gather `kernel` from `source` into `target`, one thread
    per argmax entry (each an index into a plane of `plane_size` pixels); raise
    if one lies outside its plane."""
    argmax = cupy.ascontiguousarray(argmax, dtype=cupy.int64)
    bad = cupy.zeros((), cupy.int32)
    _launch("max_pool2d", kernel, source.dtype, argmax.size, source, argmax, target, bad,
            argmax.size, argmax.shape[2] * argmax.shape[3], plane_size)
    if bad.item():  # waits for the kernel
        raise ValueError(f"{name}: argmax index outside the input plane")
    return target


def max_pool2d_backward(grad_y, argmax, input_hw):
    """grad_x (N, C, H, W): zeros with grad_y added at the argmax positions;
    where windows overlap (stride < kernel) the contributions add up (atomicAdd)."""
    grad_y = cupy.ascontiguousarray(grad_y)
    _check_argmax("max_pool2d_backward", grad_y, argmax, 4)
    _check_float("max_pool2d_backward", grad_y)
    h, w = input_hw
    grad_x = cupy.zeros((*grad_y.shape[:2], h, w), grad_y.dtype)
    return _by_argmax("max_pool2d_backward", "max_pool_backward", grad_y, argmax, grad_x, h * w)


def max_pool2d_gather(grad_x, argmax):
    """grad_y[n, c, a, b] = grad_x[n, c] at flat index argmax[n, c, a, b]: the adjoint
    of max_pool2d_backward, <backward(gy), gx> = <gy, gather(gx)>."""
    grad_x = cupy.ascontiguousarray(grad_x)
    _check_argmax("max_pool2d_gather", grad_x, argmax, 2)
    _check_float("max_pool2d_gather", grad_x)
    grad_y = cupy.empty(argmax.shape, grad_x.dtype)
    return _by_argmax("max_pool2d_gather", "max_pool_gather", grad_x, argmax, grad_y,
                      grad_x.shape[2] * grad_x.shape[3])
