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

Images innermost.  A chunk's column matrix has a row for each weight (c, i, j)
and a column for each output pixel (a, b) of each image m, the images innermost:

    cols[(c, i, j), (a, b, m)] = xpad[n0 + m, c, a*s + i, b*s + j]

s the stride, xpad x zero-padded by p.  The chunk is first transposed into
(C, H, W, images) order (`_images_last`), where the images' values at one
pixel lie side by side; a row of the column matrix is then, for each output
pixel, one copy of the nb values at one pixel (zeros where the tap meets the
padding).  Columns ordered image by image, as most texts have them, take the
same copies per image and channel instead, a few values long in the 7x7 and
4x4 images of the later layers, where the copies then cost more than the
products (3.5 times as much on the stride net's 4x4 layer).  The products give
y, and take gy, in the same (O, ho, wo, images) order: one transposing copy
per chunk (`_transpose`) to and from NCHW.  A first layer (C*kh*kw < O: one
input channel, 64 output ones) keeps its images apart instead, since its
column matrix is smaller than y: a column matrix per image, stacked, and a
product per image (numpy's batched matmul) that writes that image of y.

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

# Entries of a chunk's column matrix (C*kh*kw rows, one column per output
# pixel): large enough for efficient BLAS calls and few Python-level steps,
# small enough to stay in cache (4 MB in float32).
CHUNK_ENTRIES = 1 << 20
# Side of the blocks `_transpose` moves: with its size fixed, LLVM unrolls a block into 64
# straight moves. Against scalar loops over 64 x 64 tiles, on one quiet core: 1.3-1.7x as
# fast on chunks of 20-75 images, the same on 5 (all edge), 0.89x on 75 rows 4 KiB apart.
BLOCK = 8

Geometry = namedtuple("Geometry", "n c h w o kh kw stride padding ho wo")
Geometry.__doc__ = """Shapes of one convolution: x (n, c, h, w), w (o, c, kh, kw), y (n, o, ho, wo)."""

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
    return Geometry(n, c, h, w, o, kh, kw, stride, padding, ho, wo)


def _check_grad_y(name, grad_y, g):
    if grad_y.shape != (g.n, g.o, g.ho, g.wo):
        raise ValueError(f"{name}: grad_y has shape {grad_y.shape}, expected "
                         f"{(g.n, g.o, g.ho, g.wo)} from the input, weight, stride and padding")


def _column_source(x, g):
    """What column matrices of x (5-d: tasks first) depend on: its shape and dtype, the kernel
    size, stride and padding, and their layout (`_interleaved`, which the weight's shape sets)."""
    layout = "images interleaved" if _interleaved(g) else "image by image"
    return (tuple(x.shape), str(x.dtype), g.kh, g.kw, g.stride, g.padding, layout)


def _check_columns(name, columns, x, g):
    """`columns` (or None) were built from an input of x's shape and dtype with g's kernel size,
    stride and padding, in the layout g's weight shape takes; a ValueError names the kernel and
    what differs. (That they hold x's values is the caller's word.)"""
    if columns is None or columns.source == _column_source(x, g):
        return
    fields = ("input shape", "dtype", "kernel height", "kernel width", "stride", "padding", "layout")
    differ = [(field, built, here) for field, built, here in zip(fields, columns.source, _column_source(x, g))
              if built != here]
    raise ValueError(f"{name}: columns built for {', '.join(f'{f} {b}' for f, b, _ in differ)} do not fit "
                     f"{', '.join(f'{f} {h}' for f, _, h in differ)}")


def _interleaved(g):
    """Whether a chunk's columns interleave its images (see the module docstring): not where the
    column matrix has fewer rows than y (C*kh*kw < O, a first layer's), since there the
    transposes would move more values than the short copies they spare."""
    return g.c * g.kh * g.kw >= g.o


def _chunks(g):
    """(first image, image count) of each chunk: as many images as keep the column
    matrix within CHUNK_ENTRIES entries (at least one)."""
    per_chunk = max(1, CHUNK_ENTRIES // (g.c * g.kh * g.kw * g.ho * g.wo))
    return [(n0, min(per_chunk, g.n - n0)) for n0 in range(0, g.n, per_chunk)]


@njit(cache=True, nogil=True)
def _transpose_block(src, dst, m0, f0):
    """dst[f, m] = src[m, f] for the BLOCK x BLOCK block at (m0, f0) of src."""
    block = src[m0:m0 + BLOCK, f0:f0 + BLOCK]
    out = dst[f0:f0 + BLOCK, m0:m0 + BLOCK]
    for a in range(BLOCK):
        for b in range(BLOCK):
            out[b, a] = block[a, b]


@njit(cache=True, nogil=True)
def _transpose(src, dst):
    """dst[f, m] = src[m, f], block by block, the blocks taken one after another along the
    longer rows (the images-first side's), so that those fill whole cache lines in turn: rows of
    64 channels of 4x4 pixels lie 4 KiB apart, in one cache set, and walking across them thrashes
    it.  The edges that fill no whole block go value by value, along the longer rows too."""
    rows, cols = src.shape
    r_end, c_end = rows - rows % BLOCK, cols - cols % BLOCK
    if cols >= rows:
        for m0 in range(0, r_end, BLOCK):
            for f0 in range(0, c_end, BLOCK):
                _transpose_block(src, dst, m0, f0)
        for m in range(rows):
            for f in range(c_end if m < r_end else 0, cols):
                dst[f, m] = src[m, f]
    else:
        for f0 in range(0, c_end, BLOCK):
            for m0 in range(0, r_end, BLOCK):
                _transpose_block(src, dst, m0, f0)
        for f in range(cols):
            for m in range(r_end if f < c_end else 0, rows):
                dst[f, m] = src[m, f]


@njit(cache=True, nogil=True)
def _move_taps(xt, cols, kh, kw, stride, padding, ho, wo, into_cols):
    """Between a chunk xt (c, h, w, nb), images innermost, and its column matrix

        cols[(c, i, j), (a, b, m)] = xpad[m, c, a*s + i, b*s + j]:

    copy xt's values into cols if into_cols (zeros where a tap meets the padding), else add
    cols' entries back onto the pixels they came from.  Each move is the nb values of one
    pixel, in a loop with no index arithmetic of its own."""
    c_in, h, w, nb = xt.shape
    for c in range(c_in):
        image = xt[c]
        for i in range(kh):
            for j in range(kw):
                outputs = cols[(c * kh + i) * kw + j].reshape(ho, wo, nb)
                for a in range(ho):
                    r = a * stride + i - padding
                    for b in range(wo):
                        v = b * stride + j - padding
                        if 0 <= r < h and 0 <= v < w:
                            if into_cols:
                                for m in range(nb):
                                    outputs[a, b, m] = image[r, v, m]
                            else:
                                for m in range(nb):
                                    image[r, v, m] += outputs[a, b, m]
                        elif into_cols:
                            for m in range(nb):
                                outputs[a, b, m] = 0


@njit(cache=True, nogil=True)
def _move_taps_each(images, cols, kh, kw, stride, padding, ho, wo, into_cols):
    """_move_taps image by image: between images (nb, c, h, w) and cols (nb, c*kh*kw, ho*wo),
    cols[m] the column matrix of images[m] alone."""
    c_in, h, w = images.shape[1:]
    for m in range(len(images)):
        _move_taps(images[m].reshape(c_in, h, w, 1), cols[m], kh, kw, stride, padding, ho, wo, into_cols)


def _images_last(x, n0, nb):
    """x's images n0 .. n0+nb-1 with the images innermost: xt[c, r, v, m] = x[n0 + m, c, r, v]
    (for one image, a view of it)."""
    if nb == 1:
        return x[n0].reshape(x.shape[1:] + (1,))
    xt = np.empty(x.shape[1:] + (nb,), x.dtype)
    _transpose(x[n0:n0 + nb].reshape(nb, -1), xt.reshape(-1, nb))
    return xt


def _images_first(xt, n0, x):
    """The inverse of _images_last: x[n0 + m, c, r, v] = xt[c, r, v, m]."""
    nb = xt.shape[-1]
    _transpose(xt.reshape(-1, nb), x[n0:n0 + nb].reshape(nb, -1))


def _im2col(x, n0, nb, g):
    """Column matrices of images n0 .. n0+nb-1 of x (one task's), stacked: one, (1, C*kh*kw,
    ho*wo*nb), of the images interleaved,

        cols[0, (c, i, j), (a, b, m)] = xpad[n0 + m, c, a*stride + i, b*stride + j],

    or, for a first layer (`_interleaved`), one per image, cols[m, (c, i, j), (a, b)]."""
    taps = (g.kh, g.kw, g.stride, g.padding, g.ho, g.wo)
    if _interleaved(g):
        cols = np.empty((1, g.c * g.kh * g.kw, g.ho * g.wo * nb), x.dtype)
        _move_taps(_images_last(x, n0, nb), cols[0], *taps, True)
    else:
        cols = np.empty((nb, g.c * g.kh * g.kw, g.ho * g.wo), x.dtype)
        _move_taps_each(x[n0:n0 + nb], cols, *taps, True)
    return cols


def _col2im(dcols, n0, g, gx):
    """The adjoint of _im2col: add each column entry back onto the input pixel it
    was copied from (dropping the padding), writing images n0 .. of gx."""
    taps = (g.kh, g.kw, g.stride, g.padding, g.ho, g.wo)
    if _interleaved(g):
        xt = np.zeros((g.c, g.h, g.w, dcols.shape[2] // (g.ho * g.wo)), gx.dtype)
        _move_taps(xt, dcols[0], *taps, False)
        _images_first(xt, n0, gx)
    else:
        images = gx[n0:n0 + len(dcols)]
        images[:] = 0
        _move_taps_each(images, dcols, *taps, False)


def _grad_y_columns(grad_y, n0, nb, g):
    """grad_y's images n0 .. n0+nb-1 as the stacked (O, ...) matrices of the products, in the
    column order of _im2col's."""
    if _interleaved(g):
        return _images_last(grad_y, n0, nb).reshape(1, g.o, -1)
    return grad_y[n0:n0 + nb].reshape(nb, g.o, -1)


def _task_columns(x, t, g, columns):
    """(first image, image count, cols) for each chunk of task t's images: the kept `columns`,
    or, without them, each chunk built as it is asked for (so one at a time is in memory)."""
    if columns is not None:
        return columns.per_task[t]
    return ((n0, nb, _im2col(x[t], n0, nb, g))
            for n0, nb in _chunks(g))


def conv2d_columns(x, weight_shape, stride=1, padding=0):
    """cols(x), all chunks of every task, kept: conv2d_forward and conv2d_grad_weight given them
    as `columns=` (with this x, a weight of this (O, C, kh, kw) shape, stride and padding) skip
    building them."""
    (x,), _ = _prepare("conv2d_columns", x=x)
    g = _geometry("conv2d_columns", x.shape[1:], weight_shape, stride, padding)
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
        for n0, nb, cols in _task_columns(x, t, g, columns):
            if _interleaved(g):
                _images_first((weights @ cols[0]).reshape(g.o, g.ho, g.wo, nb), n0, y[t])
            else:  # one product per image, each its image of y
                np.matmul(weights, cols, out=y[t, n0:n0 + nb].reshape(nb, g.o, -1))
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
            dcols = np.matmul(weights_t, _grad_y_columns(grad_y[t], n0, nb, g))
            _col2im(dcols, n0, g, gx[t])
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
            gw_t[t] += np.matmul(cols, _grad_y_columns(grad_y[t], n0, nb, g).transpose(0, 2, 1)).sum(axis=0)
    gw = np.ascontiguousarray(gw_t.transpose(0, 2, 1)).reshape((len(x),) + w_shape)
    return gw if has_task_axis else gw[0]
