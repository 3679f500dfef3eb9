"""Batch normalisation, y = w * (x - mean) / sqrt(var + eps) + b, and its gradients, on the CPU.

x has shape (G, N, C, S): G independent groups (a meta-batch's tasks, or 1), N examples,
C channels and S pixels; w and b are (G, C). Each (group, channel) is normalised by the
mean and the biased variance of its N*S values:

    forward   x_hat = (x - mean) * r,           r = 1 / sqrt(var + eps)
              y = x_hat * w + b                 (the affine form; the plain one stops at x_hat)
    backward  dx = r * w * (g - mean(g) - x_hat * mean(g * x_hat))
              dw = sum(g * x_hat),  db = sum(g)  (w = 1 for the plain form)

and the gradient of that backward, dx as a function of (g, x), given h = dL/d(dx)
(the double backward, for MAML's second-order step; tinymeta/ops/normalize.py derives it):

    dg = r * (h - mean(h) - x_hat * d)
    dx = -r^2 * (d * (g - mean(g)) + c * (h - mean(h)) + x_hat * (mean(h g) - mean(h) mean(g) - 3 c d))
    with c = mean(g * x_hat), d = mean(h * x_hat)

Each kernel takes one (group, channel) at a time, so its values are read from memory once
and revisited in cache (numpy would make a pass over the whole array per operation); the
affine form's scale, shift and parameter gradients ride along in the same passes. Serial
and free of the GIL, as every kernel (kernels/__init__.py).

Sums accumulate in float64, in the functions named `_..._sums` (and `_channel_stats`),
which numba compiles with fastmath "reassoc": free to reorder the additions, LLVM splits
each sum over the lanes of vector registers. In strict order every addition waits for the
one before it: the forward took 2.0-2.3x as long, and the backward and double backward
1.1-1.6x, on the Omniglot layers' shapes (benchmarks/RESULTS.md, "Batch norm's sums").
"""
import numpy as np
from numba import njit


def _check(name, **arrays):
    for label, a in arrays.items():
        if a.ndim != 4 or a.dtype not in (np.float32, np.float64):
            raise ValueError(f"{name}: {label} must be a 4-d float32 or float64 array (G, N, C, S), "
                             f"got shape {a.shape} and dtype {a.dtype}")


def _check_fit(name, per_channel, **arrays):
    """The arrays pass _check and share one shape (G, N, C, S), and each array of the
    dict per_channel (rstd, w, b) is (G, C)."""
    _check(name, **arrays)
    shapes = {a.shape for a in arrays.values()}
    first = next(iter(arrays.values())).shape
    if len(shapes) != 1 or any(a.shape != (first[0], first[2]) for a in per_channel.values()):
        given = [f"{label} {a.shape}" for label, a in {**arrays, **per_channel}.items()]
        given = ", ".join(given[:-1]) + " and " + given[-1]
        raise ValueError(f"{name}: {given} do not fit together "
                         f"(one shape (G, N, C, S) for {', '.join(arrays)}, and (G, C) for "
                         f"{', '.join(per_channel)})")


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _channel_stats(x, g, c, eps):
    """(mean, r) of x[g, :, c, :], r = 1 / sqrt(var + eps), in float64."""
    n, pixels = x.shape[1], x.shape[3]
    total = 0.0
    for i in range(n):
        for s in range(pixels):
            total += x[g, i, c, s]
    mean = total / (n * pixels)
    squares = 0.0
    for i in range(n):
        for s in range(pixels):
            d = x[g, i, c, s] - mean
            squares += d * d
    return mean, 1.0 / np.sqrt(squares / (n * pixels) + eps)


@njit(cache=True, nogil=True)
def _normalize(x, eps, x_hat, rstd):
    groups, n, channels, pixels = x.shape
    for gc in range(groups * channels):
        g, c = gc // channels, gc % channels
        mean, r = _channel_stats(x, g, c, eps)
        rstd[g, c] = r
        for i in range(n):
            for s in range(pixels):
                x_hat[g, i, c, s] = (x[g, i, c, s] - mean) * r


@njit(cache=True, nogil=True)
def _normalize_affine(x, eps, w, b, x_hat, rstd, y):
    groups, n, channels, pixels = x.shape
    for gc in range(groups * channels):
        g, c = gc // channels, gc % channels
        mean, r = _channel_stats(x, g, c, eps)
        rstd[g, c] = r
        for i in range(n):
            for s in range(pixels):
                x_hat[g, i, c, s] = (x[g, i, c, s] - mean) * r
                y[g, i, c, s] = x_hat[g, i, c, s] * w[g, c] + b[g, c]  # from the rounded x_hat, as x_hat * w + b


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _backward_sums(grad, x_hat, g, c):
    """(sum(grad), sum(grad * x_hat)) over (group g, channel c), in float64."""
    n, pixels = grad.shape[1], grad.shape[3]
    sum_g, sum_gx = 0.0, 0.0
    for i in range(n):
        for s in range(pixels):
            sum_g += grad[g, i, c, s]
            sum_gx += grad[g, i, c, s] * x_hat[g, i, c, s]
    return sum_g, sum_gx


@njit(cache=True, nogil=True)
def _normalize_backward(grad, x_hat, rstd, w, dx, dw, db):
    groups, n, channels, pixels = grad.shape
    count = n * pixels
    for gc in range(groups * channels):
        g, c = gc // channels, gc % channels
        sum_g, sum_gx = _backward_sums(grad, x_hat, g, c)
        db[g, c], dw[g, c] = sum_g, sum_gx
        mean_g, mean_gx, scale = sum_g / count, sum_gx / count, rstd[g, c] * w[g, c]
        for i in range(n):
            for s in range(pixels):
                dx[g, i, c, s] = scale * (grad[g, i, c, s] - mean_g - x_hat[g, i, c, s] * mean_gx)


def batch_norm_forward(x, eps):
    """(x_hat, rstd): x normalised per (group, channel), and r = 1 / sqrt(var + eps) of shape (G, C)."""
    x = np.ascontiguousarray(x)
    _check("batch_norm_forward", x=x)
    x_hat = np.empty_like(x)
    rstd = np.empty((x.shape[0], x.shape[2]), x.dtype)
    _normalize(x, eps, x_hat, rstd)
    return x_hat, rstd


def batch_norm_affine_forward(x, w, b, eps):
    """(y, x_hat, rstd): y = x_hat * w + b with x_hat and rstd as batch_norm_forward's, w and b (G, C)."""
    x = np.ascontiguousarray(x)
    _check_fit("batch_norm_affine_forward", {"w": w, "b": b}, x=x)
    x_hat, y = np.empty_like(x), np.empty_like(x)
    rstd = np.empty((x.shape[0], x.shape[2]), x.dtype)
    _normalize_affine(x, eps, np.ascontiguousarray(w, x.dtype), np.ascontiguousarray(b, x.dtype), x_hat, rstd, y)
    return y, x_hat, rstd


def _backward(grad, x_hat, rstd, w):
    dx = np.empty_like(grad)
    dw, db = np.empty(rstd.shape, grad.dtype), np.empty(rstd.shape, grad.dtype)
    _normalize_backward(grad, x_hat, rstd, np.ascontiguousarray(w, grad.dtype), dx, dw, db)
    return dx, dw, db


def batch_norm_backward(grad, x_hat, rstd):
    """dx = r * (grad - mean(grad) - x_hat * mean(grad * x_hat)), the means per (group, channel)."""
    grad, x_hat = np.ascontiguousarray(grad), np.ascontiguousarray(x_hat)
    _check_fit("batch_norm_backward", {"rstd": rstd}, grad=grad, x_hat=x_hat)
    return _backward(grad, x_hat, rstd, np.ones_like(rstd))[0]


def batch_norm_affine_backward(grad, x_hat, rstd, w):
    """(dx, dw, db) of y = x_hat * w + b given grad = dL/dy: dx = r * w * (grad - mean(grad) -
    x_hat * mean(grad * x_hat)), dw = sum(grad * x_hat), db = sum(grad), per (group, channel)."""
    grad, x_hat = np.ascontiguousarray(grad), np.ascontiguousarray(x_hat)
    _check_fit("batch_norm_affine_backward", {"rstd": rstd, "w": w}, grad=grad, x_hat=x_hat)
    return _backward(grad, x_hat, rstd, w)


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _double_backward_sums(h, grad, x_hat, g, c):
    """(sum(h), sum(grad), sum(h * x_hat), sum(grad * x_hat), sum(h * grad)) over (group g,
    channel c), in float64."""
    n, pixels = grad.shape[1], grad.shape[3]
    sum_h, sum_g, sum_hx, sum_gx, sum_hg = 0.0, 0.0, 0.0, 0.0, 0.0
    for i in range(n):
        for s in range(pixels):
            hv, gv, xv = h[g, i, c, s], grad[g, i, c, s], x_hat[g, i, c, s]
            sum_h += hv
            sum_g += gv
            sum_hx += hv * xv
            sum_gx += gv * xv
            sum_hg += hv * gv
    return sum_h, sum_g, sum_hx, sum_gx, sum_hg


@njit(cache=True, nogil=True)
def _normalize_double_backward(h, grad, x_hat, rstd, dgrad, dx):
    groups, n, channels, pixels = grad.shape
    count = n * pixels
    for gc in range(groups * channels):
        g, c = gc // channels, gc % channels
        sum_h, sum_g, sum_hx, sum_gx, sum_hg = _double_backward_sums(h, grad, x_hat, g, c)
        mean_h, mean_g, d, cg = sum_h / count, sum_g / count, sum_hx / count, sum_gx / count
        r = rstd[g, c]
        r2 = r * r
        k = sum_hg / count - mean_h * mean_g - 3.0 * cg * d
        for i in range(n):
            for s in range(pixels):
                hv, gv, xv = h[g, i, c, s], grad[g, i, c, s], x_hat[g, i, c, s]
                dgrad[g, i, c, s] = r * (hv - mean_h - xv * d)
                dx[g, i, c, s] = -r2 * (d * (gv - mean_g) + cg * (hv - mean_h) + xv * k)


def batch_norm_double_backward(h, grad, x_hat, rstd):
    """(dgrad, dx): the gradient, given h, of batch_norm_backward's dx with respect to grad and to x
    (through x_hat and r both), as in the module docstring."""
    h, grad, x_hat = (np.ascontiguousarray(a) for a in (h, grad, x_hat))
    _check_fit("batch_norm_double_backward", {"rstd": rstd}, h=h, grad=grad, x_hat=x_hat)
    dgrad, dx = np.empty_like(grad), np.empty_like(grad)
    _normalize_double_backward(h, grad, x_hat, rstd, dgrad, dx)
    return dgrad, dx
