"""2-D convolution (NCHW input, OIHW weight) and its two gradients, on the CPU.

All three kernels are im2col + BLAS matrix products, taken a chunk of images
at a time so that the column matrix stays a few MB (in cache):

    forward       y     = W @ cols(x)            W = w reshaped to (O, C*kh*kw)
    grad_input    dcols = W.T @ gy               gx = col2im(dcols)
    grad_weight   gw    = sum over chunks of gy @ cols(x).T

Numba builds the column matrices; numpy's BLAS does the products.

Contiguous taps.  Kernel tap (i, j) meets xpad[a*s + i, b*s + j] at output
(a, b), s the stride, xpad the zero-padded image.  Split xpad into s*s phase
planes, phase (i % s, j % s) holding xpad[i % s :: s, j % s :: s] in a flat
array of width wq = ceil((W + 2p) / s); tap (i, j) then meets that plane at
(a + i // s, b + j // s).  Computing the output on a grid of width wq instead
of wo, the tap's inputs over the whole grid are one contiguous run of the
plane, so each column row is one vectorised copy.  The wq - wo extra grid
columns are garbage: dropped when the grid becomes y, and given zeros when a
gradient becomes a grid, so they add nothing to any result.  (With s = 1 there
is one phase, the padded image, and wq = W + 2p.)

The numba functions run serially (no prange): every kernel here interleaves
them with multithreaded BLAS, and on a 2-core machine numba's OpenMP threads,
still spinning after a parallel region, stall BLAS's threads for scheduler
ticks: a BLAS product alternated with a prange loop took 8 ms a pair instead
of 0.8 ms with a serial loop (benchmarks/bench_kernels.py measures it).
"""
from collections import namedtuple

import numpy as np
from numba import njit

# Grid columns (output positions) per chunk: large enough for efficient BLAS
# calls, small enough that a chunk's column matrix (C*kh*kw x this) stays in
# cache; the best of 1024, 2048 and 4096 at the benchmark's shapes.
CHUNK_COLUMNS = 2048

Geometry = namedtuple("Geometry", "n c h w o kh kw stride padding ho wo hq wq")
Geometry.__doc__ = """Shapes of one convolution: x (n, c, h, w), w (o, c, kh, kw),
y (n, o, ho, wo); hq x wq is the size of a phase plane, wq the grid width."""


def _check_arrays(name, **arrays):
    """The arrays are 4-d and share one float dtype (float32 or float64); a ValueError
    names the kernel. Works on numpy and cupy arrays alike (kernels/gpu.py uses it)."""
    for label, a in arrays.items():
        if a.ndim != 4:
            raise ValueError(f"{name}: {label} must be 4-d, got shape {tuple(a.shape)}")
    dtypes = [a.dtype for a in arrays.values()]
    if len(set(dtypes)) != 1 or dtypes[0] not in (np.float32, np.float64):
        raise ValueError(f"{name}: expected arrays of one dtype, float32 or float64, "
                         f"got {', '.join(str(d) for d in dtypes)}")


def _prepare(name, **arrays):
    """The arrays, checked (`_check_arrays`) and C-contiguous."""
    arrays = {label: np.asarray(a) for label, a in arrays.items()}
    _check_arrays(name, **arrays)
    return [np.ascontiguousarray(a) for a in arrays.values()]


def _geometry(name, x_shape, w_shape, stride, padding):
    """Check a convolution's shapes and arguments; ValueError names the kernel."""
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
    hq = -(-(h + 2 * padding) // stride)  # ceil((h + 2p) / s)
    wq = -(-(w + 2 * padding) // stride)
    return Geometry(n, c, h, w, o, kh, kw, stride, padding, ho, wo, hq, wq)


def _check_grad_y(name, grad_y, g):
    if grad_y.shape != (g.n, g.o, g.ho, g.wo):
        raise ValueError(f"{name}: grad_y has shape {grad_y.shape}, expected "
                         f"{(g.n, g.o, g.ho, g.wo)} from the input, weight, stride and padding")


def _chunks(g):
    """(first image, image count) of each chunk of about CHUNK_COLUMNS grid columns."""
    per_chunk = max(1, CHUNK_COLUMNS // (g.ho * g.wq))
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
def _phase_transfer(image, phases, stride, padding, wq, into_phases):
    """Move pixels between image (h, w) and its phase planes phases (s*s, >= hq*wq):
    image[r, v] = xpad[r + p, v + p] lives in phase ((r + p) % s, (v + p) % s)
    at flat position ((r + p) // s) * wq + (v + p) // s.  Copies image into the
    phases if into_phases, else phases into image."""
    h, w = image.shape
    if stride == 1:  # one phase, the padded image: whole rows move as vectorised copies
        for r in range(h):
            start = (r + padding) * wq + padding
            if into_phases:
                _copy(image[r], phases[0, start:start + w])
            else:
                _copy(phases[0, start:start + w], image[r])
        return
    for pi in range(stride):
        for pj in range(stride):
            phase = phases[pi * stride + pj]
            # phase column q holds image column q*s + pj - p: valid for q in [lo, hi)
            lo = max(0, -((pj - padding) // stride))
            hi = min(wq, (w - 1 + padding - pj) // stride + 1)
            for rq in range(phases.shape[1] // wq):  # hq rows (the tail is shorter)
                r = rq * stride + pi - padding
                if 0 <= r < h:
                    for q in range(lo, hi):
                        if into_phases:
                            phase[rq * wq + q] = image[r, q * stride + pj - padding]
                        else:
                            image[r, q * stride + pj - padding] = phase[rq * wq + q]


@njit(cache=True)
def _tap_run(i, j, stride, wq):
    """(phase, start) of tap (i, j): its inputs over the grid are phases[phase, start:start + ho*wq]."""
    return (i % stride) * stride + j % stride, (i // stride) * wq + j // stride


@njit(cache=True)
def _new_phases(stride, hq, wq, kw, dtype):
    """Zeroed phase planes, with room at the end for the last taps' garbage columns."""
    return np.zeros((stride * stride, hq * wq + (kw - 1) // stride), dtype)


@njit(cache=True)
def _im2col(x, n0, nb, kh, kw, stride, padding, ho, hq, wq):
    """Column matrix of images n0 .. n0+nb-1:

        cols[(c, i, j), (m, a, b)] = xpad[n0 + m, c, a*stride + i, b*stride + j]

    for b < wq (see the module docstring on contiguous taps)."""
    c_in = x.shape[1]
    g = ho * wq
    cols = np.empty((c_in * kh * kw, nb * g), x.dtype)
    phases = _new_phases(stride, hq, wq, kw, x.dtype)  # padding stays zero from image to image
    for mc in range(nb * c_in):
        m, c = mc // c_in, mc % c_in
        _phase_transfer(x[n0 + m, c], phases, stride, padding, wq, True)
        for i in range(kh):
            for j in range(kw):
                phase, start = _tap_run(i, j, stride, wq)
                _copy(phases[phase, start:start + g], cols[(c * kh + i) * kw + j, m * g:(m + 1) * g])
    return cols


@njit(cache=True)
def _col2im(dcols, n0, kh, kw, stride, padding, ho, hq, wq, gx):
    """The adjoint of _im2col: add each column entry back onto the input pixel it
    was copied from (dropping the padding), writing images n0 .. of gx."""
    c_in = gx.shape[1]
    g = ho * wq
    nb = dcols.shape[1] // g
    phases = _new_phases(stride, hq, wq, kw, gx.dtype)
    for mc in range(nb * c_in):
        m, c = mc // c_in, mc % c_in
        phases[:] = 0
        for i in range(kh):
            for j in range(kw):
                phase, start = _tap_run(i, j, stride, wq)
                _add(dcols[(c * kh + i) * kw + j, m * g:(m + 1) * g], phases[phase, start:start + g])
        _phase_transfer(gx[n0 + m, c], phases, stride, padding, wq, False)


@njit(cache=True)
def _to_nchw(yg, n0, wq, y):
    """y[n0 + m, o, a, b] = yg[o, (m, a, b)] for b < wo: drop the garbage columns."""
    _, o_out, ho, wo = y.shape
    nb = yg.shape[1] // (ho * wq)
    for m in range(nb):
        for o in range(o_out):
            for a in range(ho):
                start = (m * ho + a) * wq
                _copy(yg[o, start:start + wo], y[n0 + m, o, a])


@njit(cache=True)
def _to_grid(gy, n0, nb, wq):
    """The adjoint of _to_nchw: gy's images n0 .. n0+nb-1 as an (O, nb*ho*wq) grid,
    zeros in the garbage columns."""
    _, o_out, ho, wo = gy.shape
    grid = np.zeros((o_out, nb * ho * wq), gy.dtype)
    for m in range(nb):
        for o in range(o_out):
            for a in range(ho):
                _copy(gy[n0 + m, o, a], grid[o, (m * ho + a) * wq:])
    return grid


def conv2d_forward(x, w, stride=1, padding=0):
    """y[n, o, a, b] = sum_{c, i, j} w[o, c, i, j] * xpad[n, c, a*stride + i, b*stride + j],
    xpad being x zero-padded by `padding` on all sides (cross-correlation, as PyTorch)."""
    x, w = _prepare("conv2d_forward", x=x, w=w)
    g = _geometry("conv2d_forward", x.shape, w.shape, stride, padding)
    weights = w.reshape(g.o, -1)
    y = np.empty((g.n, g.o, g.ho, g.wo), x.dtype)
    for n0, nb in _chunks(g):
        cols = _im2col(x, n0, nb, g.kh, g.kw, g.stride, g.padding, g.ho, g.hq, g.wq)
        _to_nchw(weights @ cols, n0, g.wq, y)
    return y


def conv2d_grad_input(grad_y, w, input_hw, stride=1, padding=0):
    """The transposed convolution, gradient of conv2d_forward with respect to x:
    gx[n, c, r, v] = sum over (o, a, b, i, j) with a*stride + i = r + padding and
    b*stride + j = v + padding of w[o, c, i, j] * grad_y[n, o, a, b].
    input_hw = (H, W) of x (with stride > 1 several input sizes give one output size)."""
    grad_y, w = _prepare("conv2d_grad_input", grad_y=grad_y, w=w)
    x_shape = (grad_y.shape[0], w.shape[1], *input_hw)
    g = _geometry("conv2d_grad_input", x_shape, w.shape, stride, padding)
    _check_grad_y("conv2d_grad_input", grad_y, g)
    weights_t = w.reshape(g.o, -1).T
    gx = np.empty(x_shape, grad_y.dtype)
    for n0, nb in _chunks(g):
        dcols = weights_t @ _to_grid(grad_y, n0, nb, g.wq)
        _col2im(dcols, n0, g.kh, g.kw, g.stride, g.padding, g.ho, g.hq, g.wq, gx)
    return gx


def conv2d_grad_weight(x, grad_y, kernel_hw, stride=1, padding=0):
    """Gradient of conv2d_forward with respect to w:
    gw[o, c, i, j] = sum_{n, a, b} grad_y[n, o, a, b] * xpad[n, c, a*stride + i, b*stride + j]."""
    x, grad_y = _prepare("conv2d_grad_weight", x=x, grad_y=grad_y)
    w_shape = (grad_y.shape[1], x.shape[1], *kernel_hw)
    g = _geometry("conv2d_grad_weight", x.shape, w_shape, stride, padding)
    _check_grad_y("conv2d_grad_weight", grad_y, g)
    gw = np.zeros((g.o, g.c * g.kh * g.kw), x.dtype)
    for n0, nb in _chunks(g):
        cols = _im2col(x, n0, nb, g.kh, g.kw, g.stride, g.padding, g.ho, g.hq, g.wq)
        gw += _to_grid(grad_y, n0, nb, g.wq) @ cols.T
    return gw.reshape(w_shape)
