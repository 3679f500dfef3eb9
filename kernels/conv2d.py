"""2-D convolution (NCHW input, OIHW weight) and its two gradients, on the CPU.

All three kernels are im2col + BLAS matrix products, taken a chunk of images
at a time so that the column matrix stays in cache:

    forward       y     = W @ cols(x)            W = w reshaped to (O, C*kh*kw)
    grad_input    dcols = W.T @ gy               gx = col2im(dcols)
    grad_weight   gw    = sum over chunks of gy @ cols(x).T

Numba builds the column matrices; numpy's BLAS does the products.

Wide grid.  Each image is zero-padded into a flat plane of width wp = W + 2p.
With stride 1, the inputs that kernel tap (i, j) meets, over all output
positions, are then one contiguous run of that plane, starting at i*wp + j, if
the output is computed on a grid of width wp instead of wo.  So a column row
is one vectorised copy instead of ho short copies.  The wp - wo extra grid
columns per output row are garbage: dropped when the grid becomes y, and fed
zeros when a gradient becomes a grid, so they add nothing to any result.  With
stride > 1 the grid width is wo and the runs are gathered element by element.

The numba functions run serially (no prange): every kernel here interleaves
them with multithreaded BLAS, and on a 2-core machine numba's OpenMP threads,
still spinning after a parallel region, stall BLAS's threads for a scheduler
tick (~4 ms) per switch; measured in benchmarks/bench_kernels.py.
"""
from collections import namedtuple

import numpy as np
from numba import njit

# Columns (output positions) per chunk: large enough for efficient BLAS calls,
# small enough that a chunk's column matrix (C*kh*kw x this) stays in cache.
CHUNK_COLUMNS = 2048

Geometry = namedtuple("Geometry", "n c h w o kh kw stride padding ho wo wp wg")
Geometry.__doc__ = """Shapes of one convolution: x (n, c, h, w), w (o, c, kh, kw),
y (n, o, ho, wo); wp = w + 2*padding is the padded width, wg the grid width."""


def _geometry(name, x_shape, w_shape, stride, padding):
    """Check a convolution's shapes and arguments; ValueError names the kernel."""
    if len(x_shape) != 4 or len(w_shape) != 4:
        raise ValueError(f"{name}: expected 4-d input (N, C, H, W) and weight (O, C, kh, kw), "
                         f"got shapes {tuple(x_shape)} and {tuple(w_shape)}")
    n, c, h, w = x_shape
    o, wc, kh, kw = w_shape
    if c != wc:
        raise ValueError(f"{name}: input has {c} channels but weight {tuple(w_shape)} expects {wc}")
    if int(stride) != stride or stride < 1:
        raise ValueError(f"{name}: stride must be a positive integer, got {stride!r}")
    if int(padding) != padding or padding < 0:
        raise ValueError(f"{name}: padding must be a non-negative integer, got {padding!r}")
    stride, padding = int(stride), int(padding)
    if min(kh, kw) < 1 or kh > h + 2 * padding or kw > w + 2 * padding:
        raise ValueError(f"{name}: kernel {kh}x{kw} does not fit the input {h}x{w} "
                         f"padded by {padding}")
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (w + 2 * padding - kw) // stride + 1
    wp = w + 2 * padding
    return Geometry(n, c, h, w, o, kh, kw, stride, padding, ho, wo, wp,
                    wp if stride == 1 else wo)


def _check_dtypes(name, *arrays):
    """All arrays share one float dtype (float32 or float64)."""
    dtypes = {a.dtype for a in arrays}
    if len(dtypes) != 1 or arrays[0].dtype not in (np.float32, np.float64):
        raise ValueError(f"{name}: expected arrays of one dtype, float32 or float64, "
                         f"got {', '.join(str(a.dtype) for a in arrays)}")


def _check_grad_y(name, grad_y, g):
    if grad_y.shape != (g.n, g.o, g.ho, g.wo):
        raise ValueError(f"{name}: grad_y has shape {grad_y.shape}, expected "
                         f"{(g.n, g.o, g.ho, g.wo)} from the input, weight, stride and padding")


def _chunks(g):
    """(first image, image count) of each chunk of about CHUNK_COLUMNS grid columns."""
    per_chunk = max(1, CHUNK_COLUMNS // (g.ho * g.wg))
    return [(n0, min(per_chunk, g.n - n0)) for n0 in range(0, g.n, per_chunk)]


@njit(cache=True)
def _copy(src, dst):
    """dst[t] = src[t] for t < len(src) (a loop over views numba vectorises,
    unlike slice assignment)."""
    for t in range(src.shape[0]):
        dst[t] = src[t]


@njit(cache=True)
def _add(src, dst):
    """dst[t] += src[t] for t < len(src)."""
    for t in range(src.shape[0]):
        dst[t] += src[t]


@njit(cache=True)
def _padded_plane(image, padding, wp, tail):
    """image (h, w) zero-padded on all sides, flattened, with `tail` extra zeros
    at the end (the last taps' runs reach past the plane into garbage columns)."""
    h, w = image.shape
    plane = np.zeros((h + 2 * padding) * wp + tail, image.dtype)
    for r in range(h):
        _copy(image[r], plane[(r + padding) * wp + padding:])
    return plane


@njit(cache=True)
def _im2col(x, n0, nb, kh, kw, stride, padding, ho, wg):
    """Column matrix of images n0 .. n0+nb-1:

        cols[(c, i, j), (m, oh, ow)] = xpad[n0 + m, c, oh*stride + i, ow*stride + j]

    for ow < wg (see the module docstring on the wide grid)."""
    _, c_in, _, w = x.shape
    wp = w + 2 * padding
    g = ho * wg
    cols = np.empty((c_in * kh * kw, nb * g), x.dtype)
    for mc in range(nb * c_in):
        m, c = mc // c_in, mc % c_in
        plane = _padded_plane(x[n0 + m, c], padding, wp, kw - 1)
        for i in range(kh):
            for j in range(kw):
                dst = cols[(c * kh + i) * kw + j, m * g:(m + 1) * g]
                start = i * wp + j
                if stride == 1:
                    _copy(plane[start:start + g], dst)
                else:
                    for oh in range(ho):
                        for ow in range(wg):
                            dst[oh * wg + ow] = plane[start + stride * (oh * wp + ow)]
    return cols


@njit(cache=True)
def _col2im(dcols, n0, kh, kw, stride, padding, ho, wg, gx):
    """The adjoint of _im2col: add each column entry back to the input pixel it
    was copied from, then crop the padding, writing images n0 .. of gx."""
    _, c_in, h, w = gx.shape
    wp = w + 2 * padding
    g = ho * wg
    nb = dcols.shape[1] // g
    for mc in range(nb * c_in):
        m, c = mc // c_in, mc % c_in
        plane = np.zeros((h + 2 * padding) * wp + kw - 1, gx.dtype)
        for i in range(kh):
            for j in range(kw):
                src = dcols[(c * kh + i) * kw + j, m * g:(m + 1) * g]
                start = i * wp + j
                if stride == 1:
                    _add(src, plane[start:])
                else:
                    for oh in range(ho):
                        for ow in range(wg):
                            plane[start + stride * (oh * wp + ow)] += src[oh * wg + ow]
        for r in range(h):
            start = (r + padding) * wp + padding
            _copy(plane[start:start + w], gx[n0 + m, c, r])


@njit(cache=True)
def _to_nchw(yg, n0, wg, y):
    """y[n0 + m, o, oh, ow] = yg[o, (m, oh, ow)] for ow < wo: drop the garbage columns."""
    _, o_out, ho, wo = y.shape
    nb = yg.shape[1] // (ho * wg)
    for m in range(nb):
        for o in range(o_out):
            for oh in range(ho):
                start = (m * ho + oh) * wg
                _copy(yg[o, start:start + wo], y[n0 + m, o, oh])


@njit(cache=True)
def _to_grid(gy, n0, nb, wg):
    """The adjoint of _to_nchw: gy's images n0 .. n0+nb-1 as an (O, nb*ho*wg) grid,
    zeros in the garbage columns."""
    _, o_out, ho, wo = gy.shape
    grid = np.zeros((o_out, nb * ho * wg), gy.dtype)
    for m in range(nb):
        for o in range(o_out):
            for oh in range(ho):
                _copy(gy[n0 + m, o, oh], grid[o, (m * ho + oh) * wg:])
    return grid


def conv2d_forward(x, w, stride=1, padding=0):
    """y[n, o, a, b] = sum_{c, i, j} w[o, c, i, j] * xpad[n, c, a*stride + i, b*stride + j],
    xpad being x zero-padded by `padding` on all sides (cross-correlation, as PyTorch)."""
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    g = _geometry("conv2d_forward", x.shape, w.shape, stride, padding)
    _check_dtypes("conv2d_forward", x, w)
    weights = w.reshape(g.o, -1)
    y = np.empty((g.n, g.o, g.ho, g.wo), x.dtype)
    for n0, nb in _chunks(g):
        cols = _im2col(x, n0, nb, g.kh, g.kw, g.stride, g.padding, g.ho, g.wg)
        _to_nchw(weights @ cols, n0, g.wg, y)
    return y


def conv2d_grad_input(grad_y, w, input_hw, stride=1, padding=0):
    """The transposed convolution, gradient of conv2d_forward with respect to x:
    gx[n, c, h, v] = sum over (o, a, b, i, j) with a*stride + i = h + padding and
    b*stride + j = v + padding of w[o, c, i, j] * grad_y[n, o, a, b].
    input_hw = (H, W) of x (with stride > 1 several input sizes give one output size)."""
    grad_y, w = np.ascontiguousarray(grad_y), np.ascontiguousarray(w)
    h, width = input_hw
    x_shape = (grad_y.shape[0], w.shape[1] if w.ndim == 4 else -1, h, width)
    g = _geometry("conv2d_grad_input", x_shape, w.shape, stride, padding)
    _check_dtypes("conv2d_grad_input", grad_y, w)
    _check_grad_y("conv2d_grad_input", grad_y, g)
    weights_t = w.reshape(g.o, -1).T
    gx = np.empty(x_shape, grad_y.dtype)
    for n0, nb in _chunks(g):
        dcols = weights_t @ _to_grid(grad_y, n0, nb, g.wg)
        _col2im(dcols, n0, g.kh, g.kw, g.stride, g.padding, g.ho, g.wg, gx)
    return gx


def conv2d_grad_weight(x, grad_y, kernel_hw, stride=1, padding=0):
    """Gradient of conv2d_forward with respect to w:
    gw[o, c, i, j] = sum_{n, a, b} grad_y[n, o, a, b] * xpad[n, c, a*stride + i, b*stride + j]."""
    x, grad_y = np.ascontiguousarray(x), np.ascontiguousarray(grad_y)
    kh, kw = kernel_hw
    w_shape = (grad_y.shape[1] if grad_y.ndim == 4 else -1, x.shape[1] if x.ndim == 4 else -1,
               kh, kw)
    g = _geometry("conv2d_grad_weight", x.shape, w_shape, stride, padding)
    _check_dtypes("conv2d_grad_weight", x, grad_y)
    _check_grad_y("conv2d_grad_weight", grad_y, g)
    gw = np.zeros((g.o, g.c * kh * kw), x.dtype)
    for n0, nb in _chunks(g):
        cols = _im2col(x, n0, nb, kh, kw, g.stride, g.padding, g.ho, g.wg)
        gw += _to_grid(grad_y, n0, nb, g.wg) @ cols.T
    return gw.reshape(w_shape)
