"""2-D convolution (NCHW input, OIHW weight) and its two gradients, on the CPU.

A leading task axis is optional: x (T, N, C, H, W) with w (T, O, C, kh, kw)
is T independent convolutions, task t's images with task t's weight (one
network per task: MAML's meta-batch in one call). 4-d arrays are one task.

All three kernels are im2col + BLAS matrix products, taken task by task and a
chunk of images at a time, so that the column matrix stays a few MB (in cache):

    forward       y     = W @ cols(x)            W = w reshaped to (O, C*kh*kw)
    grad_input    dcols = W.T @ gy               gx = col2im(dcols)
    grad_weight   gw.T  = sum over chunks of cols(x) @ gy.T

Numba builds the column matrices; numpy's BLAS does the products. grad_weight
takes its product transposed: OpenBLAS ran (C*kh*kw, n) @ (n, O) at 88-92
GFLOP/s on one core against 68-72 for (O, n) @ (n, C*kh*kw), at these sizes.

Kept columns.  Differentiating through a convolution takes cols(x) again and
again: the forward, its backward's grad_weight, and, at second order, the
forward of the grad_weight node's own backward (conv(x, d)), for the same x.
`conv2d_columns` builds all of x's chunks once and keeps them, and forward and
grad_weight take them as `columns=`. They cost memory, about kh*kw/stride^2
times x's, for as long as they are kept.

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

Threads.  The numba copies run serially and release the GIL, between BLAS
products.  A prange version (numba's workqueue layer) copied a chunk 1.8x
faster on its own, but made a whole Omniglot meta-iteration slower on 2 cores
(5.1 s against 4.3 s): a few thousand parallel launches per iteration, each
waking threads that BLAS's still-spinning threads compete with
(benchmarks/bench_kernels.py measures such a loop alternated with BLAS).  The
cores are shared out one level up instead, by task: see kernels/__init__.py.
"""
from collections import namedtuple

import numpy as np
from numba import njit

# Entries of a chunk's column matrix (C*kh*kw rows, one column per grid
# position): large enough for efficient BLAS calls and few Python-level steps,
# small enough to stay in cache (4 MB in float32).
CHUNK_ENTRIES = 1 << 20

Geometry = namedtuple("Geometry", "n c h w o kh kw stride padding ho wo hq wq")
Geometry.__doc__ = """Shapes of one convolution: x (n, c, h, w), w (o, c, kh, kw),
y (n, o, ho, wo); hq x wq is the size of a phase plane, wq the grid width."""

Columns = namedtuple("Columns", "source per_task")
Columns.__doc__ = """The column matrices of one input, kept (conv2d_columns): per_task[t] lists
(first image, image count, cols) for each chunk of task t's images; source is what they
were built for (`_column_source`), which a kernel given them checks."""


def _check_arrays(name, **arrays):
    """The arrays are all 4-d, or all 5-d with one task count (their leading axis),
    and share one float dtype (float32 or float64); a ValueError names the kernel.
    Returns the task count, None for 4-d arrays. Works on numpy and cupy arrays
    alike (kernels/gpu.py uses it)."""
    ndims = {a.ndim for a in arrays.values()}
    if ndims not in ({4}, {5}) or (ndims == {5} and len({a.shape[0] for a in arrays.values()}) != 1):
        shapes = ", ".join(f"{label} {tuple(a.shape)}" for label, a in arrays.items())
        raise ValueError(f"{name}: expected 4-d arrays, or 5-d ones with one leading task count, "
                         f"got {shapes}")
    dtypes = [a.dtype for a in arrays.values()]
    if len(set(dtypes)) != 1 or dtypes[0] not in (np.float32, np.float64):
        raise ValueError(f"{name}: expected arrays of one dtype, float32 or float64, "
                         f"got {', '.join(str(d) for d in dtypes)}")
    return next(iter(arrays.values())).shape[0] if ndims == {5} else None


def _prepare(name, xp=np, **arrays):
    """(arrays, has_task_axis): the arrays as arrays of module xp (numpy, or cupy for
    kernels/gpu.py), checked (`_check_arrays`), C-contiguous and 5-d, a 4-d array
    becoming a task axis of one."""
    arrays = {label: xp.asarray(a) for label, a in arrays.items()}
    has_task_axis = _check_arrays(name, **arrays) is not None
    return [xp.ascontiguousarray(a if has_task_axis else a[None]) for a in arrays.values()], has_task_axis


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


def _column_source(x, g):
    """What column matrices of x (5-d: tasks first) depend on: its shape and dtype, the kernel
    size, stride and padding."""
    return (tuple(x.shape), str(x.dtype), g.kh, g.kw, g.stride, g.padding)


def _check_columns(name, columns, x, g):
    """`columns` (or None) were built from an input of x's shape and dtype with g's kernel size,
    stride and padding; a ValueError names the kernel and what differs. (That they hold x's
    values is the caller's word.)"""
    if columns is None or columns.source == _column_source(x, g):
        return
    fields = ("input shape", "dtype", "kernel height", "kernel width", "stride", "padding")
    differ = [(field, built, here) for field, built, here in zip(fields, columns.source, _column_source(x, g))
              if built != here]
    raise ValueError(f"{name}: columns built for {', '.join(f'{f} {b}' for f, b, _ in differ)} do not fit "
                     f"{', '.join(f'{f} {h}' for f, _, h in differ)}")


def _chunks(g):
    """(first image, image count) of each chunk: as many images as keep the column
    matrix within CHUNK_ENTRIES entries (at least one)."""
    per_chunk = max(1, CHUNK_ENTRIES // (g.c * g.kh * g.kw * g.ho * g.wq))
    return [(n0, min(per_chunk, g.n - n0)) for n0 in range(0, g.n, per_chunk)]


@njit(cache=True, nogil=True)
def _copy(src, dst):
    """dst[t] = src[t] for t < len(src) (a loop over views numba vectorises,
    unlike slice assignment)."""
    for t in range(src.shape[0]):
        dst[t] = src[t]


@njit(cache=True, nogil=True)
def _add(src, dst):
    """dst[t] += src[t] for t < len(src)."""
    for t in range(src.shape[0]):
        dst[t] += src[t]


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
def _tap_run(i, j, stride, wq):
    """(phase, start) of tap (i, j): its inputs over the grid are phases[phase, start:start + ho*wq]."""
    return (i % stride) * stride + j % stride, (i // stride) * wq + j // stride


@njit(cache=True, nogil=True)
def _new_phases(stride, hq, wq, kw, dtype):
    """Zeroed phase planes, with room at the end for the last taps' garbage columns."""
    return np.zeros((stride * stride, hq * wq + (kw - 1) // stride), dtype)


@njit(cache=True, nogil=True)
def _im2col(x, n0, nb, kh, kw, stride, padding, ho, hq, wq):
    """Column matrix of images n0 .. n0+nb-1:

        cols[(c, i, j), (m, a, b)] = xpad[n0 + m, c, a*stride + i, b*stride + j]

    for b < wq (see the module docstring on contiguous taps)."""
    c_in = x.shape[1]
    g = ho * wq
    cols = np.empty((c_in * kh * kw, nb * g), x.dtype)
    for m in range(nb):
        phases = _new_phases(stride, hq, wq, kw, x.dtype)  # padding stays zero from channel to channel
        for c in range(c_in):
            _phase_transfer(x[n0 + m, c], phases, stride, padding, wq, True)
            for i in range(kh):
                for j in range(kw):
                    phase, start = _tap_run(i, j, stride, wq)
                    _copy(phases[phase, start:start + g], cols[(c * kh + i) * kw + j, m * g:(m + 1) * g])
    return cols


@njit(cache=True, nogil=True)
def _col2im(dcols, n0, kh, kw, stride, padding, ho, hq, wq, gx):
    """The adjoint of _im2col: add each column entry back onto the input pixel it
    was copied from (dropping the padding), writing images n0 .. of gx."""
    c_in = gx.shape[1]
    g = ho * wq
    nb = dcols.shape[1] // g
    for m in range(nb):
        phases = _new_phases(stride, hq, wq, kw, gx.dtype)
        for c in range(c_in):
            phases[:] = 0
            for i in range(kh):
                for j in range(kw):
                    phase, start = _tap_run(i, j, stride, wq)
                    _add(dcols[(c * kh + i) * kw + j, m * g:(m + 1) * g], phases[phase, start:start + g])
            _phase_transfer(gx[n0 + m, c], phases, stride, padding, wq, False)


@njit(cache=True, nogil=True)
def _to_nchw(yg, n0, wq, y):
    """y[n0 + m, o, a, b] = yg[o, (m, a, b)] for b < wo: drop the garbage columns."""
    _, o_out, ho, wo = y.shape
    nb = yg.shape[1] // (ho * wq)
    for m in range(nb):
        for o in range(o_out):
            for a in range(ho):
                start = (m * ho + a) * wq
                _copy(yg[o, start:start + wo], y[n0 + m, o, a])


@njit(cache=True, nogil=True)
def _to_grid(gy, n0, nb, wq):
    """The adjoint of _to_nchw: gy's images n0 .. n0+nb-1 as an (O, nb*ho*wq) grid,
    zeros in the garbage columns (written alone: zeroing the whole grid first was one
    more pass over it)."""
    _, o_out, ho, wo = gy.shape
    grid = np.empty((o_out, nb * ho * wq), gy.dtype)
    for m in range(nb):
        for o in range(o_out):
            for a in range(ho):
                start = (m * ho + a) * wq
                _copy(gy[n0 + m, o, a], grid[o, start:start + wo])
                for b in range(start + wo, start + wq):
                    grid[o, b] = 0
    return grid


def _task_columns(x, t, g, columns):
    """(first image, image count, cols) for each chunk of task t's images: the kept `columns`,
    or, without them, each chunk built as it is asked for (so one at a time is in memory)."""
    if columns is not None:
        return columns.per_task[t]
    return ((n0, nb, _im2col(x[t], n0, nb, g.kh, g.kw, g.stride, g.padding, g.ho, g.hq, g.wq))
            for n0, nb in _chunks(g))


def conv2d_columns(x, kernel_hw, stride=1, padding=0):
    """cols(x), all chunks of every task, kept: conv2d_forward and conv2d_grad_weight given them
    as `columns=` (with this x, kernel size, stride and padding) skip building them."""
    (x,), _ = _prepare("conv2d_columns", x=x)
    g = _geometry("conv2d_columns", x.shape[1:], (0, x.shape[2], *kernel_hw), stride, padding)
    return Columns(_column_source(x, g), [list(_task_columns(x, t, g, None)) for t in range(len(x))])


def conv2d_forward(x, w, stride=1, padding=0, columns=None):
    """y[n, o, a, b] = sum_{c, i, j} w[o, c, i, j] * xpad[n, c, a*stride + i, b*stride + j],
    xpad being x zero-padded by `padding` on all sides (cross-correlation, as PyTorch);
    with a task axis, y[t] = conv2d_forward(x[t], w[t]). `columns`: x's, kept (conv2d_columns)."""
    (x, w), has_task_axis = _prepare("conv2d_forward", x=x, w=w)
    g = _geometry("conv2d_forward", x.shape[1:], w.shape[1:], stride, padding)
    _check_columns("conv2d_forward", columns, x, g)
    y = np.empty((len(x), g.n, g.o, g.ho, g.wo), x.dtype)
    for t in range(len(x)):
        weights = w[t].reshape(g.o, -1)
        for n0, _, cols in _task_columns(x, t, g, columns):
            _to_nchw(weights @ cols, n0, g.wq, y[t])
    return y if has_task_axis else y[0]


def conv2d_grad_input(grad_y, w, input_hw, stride=1, padding=0):
    """The transposed convolution, gradient of conv2d_forward with respect to x:
    gx[n, c, r, v] = sum over (o, a, b, i, j) with a*stride + i = r + padding and
    b*stride + j = v + padding of w[o, c, i, j] * grad_y[n, o, a, b] (per task, with a task axis).
    input_hw = (H, W) of x (with stride > 1 several input sizes give one output size)."""
    (grad_y, w), has_task_axis = _prepare("conv2d_grad_input", grad_y=grad_y, w=w)
    x_shape = (grad_y.shape[1], w.shape[2], *input_hw)
    g = _geometry("conv2d_grad_input", x_shape, w.shape[1:], stride, padding)
    _check_grad_y("conv2d_grad_input", grad_y[0], g)
    gx = np.empty((len(w),) + x_shape, grad_y.dtype)
    for t in range(len(w)):
        weights_t = w[t].reshape(g.o, -1).T
        for n0, nb in _chunks(g):
            dcols = weights_t @ _to_grid(grad_y[t], n0, nb, g.wq)
            _col2im(dcols, n0, g.kh, g.kw, g.stride, g.padding, g.ho, g.hq, g.wq, gx[t])
    return gx if has_task_axis else gx[0]


def conv2d_grad_weight(x, grad_y, kernel_hw, stride=1, padding=0, columns=None):
    """Gradient of conv2d_forward with respect to w:
    gw[o, c, i, j] = sum_{n, a, b} grad_y[n, o, a, b] * xpad[n, c, a*stride + i, b*stride + j]
    (per task, with a task axis). `columns`: x's, kept (conv2d_columns)."""
    (x, grad_y), has_task_axis = _prepare("conv2d_grad_weight", x=x, grad_y=grad_y)
    w_shape = (grad_y.shape[2], x.shape[2], *kernel_hw)
    g = _geometry("conv2d_grad_weight", x.shape[1:], w_shape, stride, padding)
    _check_grad_y("conv2d_grad_weight", grad_y[0], g)
    _check_columns("conv2d_grad_weight", columns, x, g)
    gw_t = np.zeros((len(x), g.c * g.kh * g.kw, g.o), x.dtype)
    for t in range(len(x)):
        for n0, nb, cols in _task_columns(x, t, g, columns):
            gw_t[t] += cols @ _to_grid(grad_y[t], n0, nb, g.wq).T
    gw = np.ascontiguousarray(gw_t.transpose(0, 2, 1)).reshape((len(x),) + w_shape)
    return gw if has_task_axis else gw[0]
