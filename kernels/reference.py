"""Plain numpy reference implementations of every kernel: the oracles of
tests/test_kernels.py and the baseline of benchmarks/bench_kernels.py.

Convolution loops over the kh*kw kernel taps: tap (i, j) meets the strided
slice of the padded input that starts at (i, j), and contributes one tensor
contraction over channels (einsum, which hands it to BLAS).  Pooling views the
input as windows (sliding_window_view) and reduces them.
"""
import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .task_axis import over_tasks

_over_tasks = functools.partial(over_tasks, stack=np.stack)  # 5-d operands: one convolution per task


def _pad(x, padding):
    return np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


def _tap(xpad, i, j, ho, wo, stride):
    """xpad[:, :, a*stride + i, b*stride + j] for output positions (a, b)."""
    return xpad[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]


@_over_tasks
def conv2d_forward(x, w, stride=1, padding=0):
    """y[n, o, a, b] = sum_{c, i, j} w[o, c, i, j] * xpad[n, c, a*stride + i, b*stride + j]."""
    xpad = _pad(x, padding)
    _, _, kh, kw = w.shape
    ho = (xpad.shape[2] - kh) // stride + 1
    wo = (xpad.shape[3] - kw) // stride + 1
    y = np.zeros((x.shape[0], w.shape[0], ho, wo), x.dtype)
    for i in range(kh):
        for j in range(kw):
            y += np.einsum("ncab,oc->noab", _tap(xpad, i, j, ho, wo, stride), w[:, :, i, j],
                           optimize=True)
    return y


@_over_tasks
def conv2d_grad_input(grad_y, w, input_hw, stride=1, padding=0):
    """gx = the adjoint of conv2d_forward in x: each tap adds w[:, :, i, j]^T grad_y
    back onto the input slice it read."""
    n, _, ho, wo = grad_y.shape
    _, c, kh, kw = w.shape
    h, width = input_hw
    gxpad = np.zeros((n, c, h + 2 * padding, width + 2 * padding), grad_y.dtype)
    for i in range(kh):
        for j in range(kw):
            _tap(gxpad, i, j, ho, wo, stride)[...] += np.einsum(
                "noab,oc->ncab", grad_y, w[:, :, i, j], optimize=True)
    return gxpad[:, :, padding:padding + h, padding:padding + width]


@_over_tasks
def conv2d_grad_weight(x, grad_y, kernel_hw, stride=1, padding=0):
    """gw[o, c, i, j] = sum_{n, a, b} grad_y[n, o, a, b] * xpad[n, c, a*stride + i, b*stride + j]."""
    xpad = _pad(x, padding)
    _, o, ho, wo = grad_y.shape
    kh, kw = kernel_hw
    gw = np.empty((o, x.shape[1], kh, kw), x.dtype)
    for i in range(kh):
        for j in range(kw):
            gw[:, :, i, j] = np.einsum("noab,ncab->oc", grad_y, _tap(xpad, i, j, ho, wo, stride),
                                       optimize=True)
    return gw


def max_pool2d_forward(x, kernel, stride):
    """y[n, c, a, b] = max of the window x[n, c, a*stride : +kernel, b*stride : +kernel];
    argmax holds the flat index h*W + w in the (n, c) plane of its first maximum
    in row-major window order."""
    n, c, h, w = x.shape
    windows = sliding_window_view(x, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
    ho, wo = windows.shape[2:4]
    flat = windows.reshape(n, c, ho, wo, kernel * kernel)
    k = flat.argmax(axis=-1)  # numpy's argmax returns the first maximum
    y = np.take_along_axis(flat, k[..., None], axis=-1)[..., 0]
    rows = np.arange(ho)[:, None] * stride + k // kernel
    cols = np.arange(wo)[None, :] * stride + k % kernel
    return y, (rows * w + cols).astype(np.int64)


def max_pool2d_backward(grad_y, argmax, input_hw):
    """gx = zeros (N, C, H, W) with grad_y added at the argmax positions (repeats add up)."""
    n, c = grad_y.shape[:2]
    h, w = input_hw
    gx = np.zeros((n, c, h * w), grad_y.dtype)
    np.add.at(gx, (np.arange(n)[:, None, None], np.arange(c)[None, :, None], argmax.reshape(n, c, -1)),
              grad_y.reshape(n, c, -1))
    return gx.reshape(n, c, h, w)


def max_pool2d_gather(grad_x, argmax):
    """The adjoint of max_pool2d_backward: grad_y[n, c, a, b] = grad_x[n, c] at argmax[n, c, a, b]."""
    n, c, h, w = grad_x.shape
    flat = np.take_along_axis(grad_x.reshape(n, c, h * w), argmax.reshape(n, c, -1), axis=2)
    return flat.reshape(argmax.shape)


def batch_norm_forward(x, eps):
    """(x_hat, rstd) for x (G, N, C, S): x_hat = (x - mean) / sqrt(var + eps) per (group, channel).
    Array methods only, so cupy arrays work too (kernels/gpu.py uses it)."""
    mean = x.mean(axis=(1, 3), keepdims=True)
    centred = x - mean
    rstd = 1 / ((centred * centred).mean(axis=(1, 3), keepdims=True) + eps) ** 0.5
    return centred * rstd, rstd[:, 0, :, 0]


def batch_norm_backward(grad, x_hat, rstd):
    """dx = r * (grad - mean(grad) - x_hat * mean(grad * x_hat)), means per (group, channel)."""
    mean_g = grad.mean(axis=(1, 3), keepdims=True)
    mean_gx = (grad * x_hat).mean(axis=(1, 3), keepdims=True)
    return rstd[:, None, :, None] * (grad - mean_g - x_hat * mean_gx)


def batch_norm_affine_forward(x, w, b, eps):
    """(y, x_hat, rstd): y = x_hat * w + b, w and b (G, C), x_hat and rstd as batch_norm_forward's."""
    x_hat, rstd = batch_norm_forward(x, eps)
    return x_hat * w[:, None, :, None] + b[:, None, :, None], x_hat, rstd


def batch_norm_affine_backward(grad, x_hat, rstd, w):
    """(dx, dw, db) of y = x_hat * w + b: batch_norm_backward's dx scaled by w, dw = sum(grad * x_hat),
    db = sum(grad), the sums per (group, channel)."""
    dx = batch_norm_backward(grad, x_hat, rstd) * w[:, None, :, None]
    return dx, (grad * x_hat).sum(axis=(1, 3)), grad.sum(axis=(1, 3))


def batch_norm_double_backward(h, grad, x_hat, rstd):
    """(dgrad, dx), the gradient of batch_norm_backward's dx with respect to grad and x given
    h = dL/d(dx) (formulas in kernels/batch_norm.py); array methods only, as above."""
    def mean(a):
        return a.mean(axis=(1, 3), keepdims=True)
    r = rstd[:, None, :, None]
    mean_h, mean_g, c, d = mean(h), mean(grad), mean(grad * x_hat), mean(h * x_hat)
    dgrad = r * (h - mean_h - x_hat * d)
    dx = -r * r * (d * (grad - mean_g) + c * (h - mean_h) + x_hat * (mean(h * grad) - mean_h * mean_g - 3 * c * d))
    return dgrad, dx


def where(cond, a, b):
    """out = a where cond else b (numpy's where)."""
    return np.where(cond, a, b)


def relu_backward(g, a):
    """out = g where a >= 0, else 0."""
    return np.where(a >= 0, g, g.dtype.type(0))
