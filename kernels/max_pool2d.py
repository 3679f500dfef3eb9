"""2-D max pooling (NCHW, no padding) and the two linear maps of its derivatives.

The forward pass records, for every output, where its maximum came from as a
flat index h*W + w into its (n, c) plane.  Its gradient is then the scatter-add
max_pool2d_backward, a linear map of grad_y; the adjoint of that scatter is
the gather max_pool2d_gather, so each is the other's backward and max-pooling
is differentiable to any order.

Each kernel works on the N*C planes one after another, releasing the GIL
(no prange; see kernels/__init__.py on threads).
"""
import numpy as np
from numba import njit


def _check_float(name, x):
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"{name}: expected float32 or float64, got {x.dtype}")


def _check_argmax(name, grad, argmax, matching_dims):
    """grad and argmax are 4-d and agree on their first `matching_dims` dimensions;
    argmax holds integers."""
    if grad.ndim != 4 or argmax.ndim != 4 or grad.shape[:matching_dims] != argmax.shape[:matching_dims]:
        raise ValueError(f"{name}: expected 4-d arrays agreeing in their first {matching_dims} "
                         f"dimensions, got {grad.shape} and argmax {argmax.shape}")
    if not np.issubdtype(argmax.dtype, np.integer):
        raise ValueError(f"{name}: argmax must hold integers, got {argmax.dtype}")


@njit(cache=True, nogil=True)
def _forward(planes, kernel, stride, ho, wo):
    """y[p, a, b] = max over i, j < kernel of planes[p, a*stride + i, b*stride + j];
    argmax[p, a, b] = h*W + w of the first maximum (row-major), NaN winning as in np.max.

    Row by row of the windows: for each output row, one pass along the windows' top
    image row starts every output, and each further image row updates them all. A
    pass reads its image row in order: 0.7x the time of finishing one window before
    the next, on the max-pool net's 28x28 and 14x14 planes."""
    count, _, w = planes.shape
    y = np.empty((count, ho, wo), planes.dtype)
    argmax = np.empty((count, ho, wo), np.int64)
    for p in range(count):
        plane = planes[p]
        for a in range(ho):
            top = a * stride
            for b in range(wo):
                left = b * stride
                y[p, a, b], argmax[p, a, b] = _row_max(plane, top, left + 1, left + kernel,
                                                       plane[top, left], top * w + left)
            for i in range(top + 1, top + kernel):
                for b in range(wo):
                    left = b * stride
                    y[p, a, b], argmax[p, a, b] = _row_max(plane, i, left, left + kernel, y[p, a, b], argmax[p, a, b])
    return y, argmax


@njit(cache=True, nogil=True, inline="always")
def _row_max(plane, i, start, stop, best, where):
    """(best, where) updated with plane[i, start:stop], in order: a later value replaces
    `best` only if larger, or NaN while `best` is not."""
    w = plane.shape[1]
    for j in range(start, stop):
        v = plane[i, j]
        # bitwise, not short-circuit: selects, not branches a random input would mispredict
        better = (v > best) | ((v != v) & (best == best))
        best = v if better else best
        where = i * w + j if better else where
    return best, where


@njit(cache=True, nogil=True)
def _scatter_add(grad_y, argmax, plane_size):
    """grad_x[p, argmax[p, t]] += grad_y[p, t] for all p, t."""
    count, size = grad_y.shape
    grad_x = np.zeros((count, plane_size), grad_y.dtype)
    for p in range(count):
        for t in range(size):
            k = argmax[p, t]
            if k < 0 or k >= plane_size:
                raise ValueError("max_pool2d_backward: argmax index outside the input plane")
            grad_x[p, k] += grad_y[p, t]
    return grad_x


@njit(cache=True, nogil=True)
def _gather(grad_x, argmax):
    """grad_y[p, t] = grad_x[p, argmax[p, t]]."""
    count, size = argmax.shape
    plane_size = grad_x.shape[1]
    grad_y = np.empty((count, size), grad_x.dtype)
    for p in range(count):
        for t in range(size):
            k = argmax[p, t]
            if k < 0 or k >= plane_size:
                raise ValueError("max_pool2d_gather: argmax index outside the input plane")
            grad_y[p, t] = grad_x[p, k]
    return grad_y


def max_pool2d_forward(x, kernel, stride):
    """(y, argmax) of max pooling x (N, C, H, W) with kernel x kernel windows every
    `stride` pixels, no padding: y[n, c, a, b] = max of x[n, c, a*stride : +kernel,
    b*stride : +kernel]; argmax (int64, y's shape) = h*W + w of its first maximum."""
    x = np.ascontiguousarray(x)
    n, c, h, w, ho, wo, kernel, stride = _pool_geometry(x, kernel, stride)
    y, argmax = _forward(x.reshape(n * c, h, w), kernel, stride, ho, wo)
    return y.reshape(n, c, ho, wo), argmax.reshape(n, c, ho, wo)


def _pool_geometry(x, kernel, stride):
    """Check max_pool2d_forward's arguments (numpy or cupy x); returns
    (n, c, h, w, ho, wo, kernel, stride) with kernel and stride as ints."""
    if x.ndim != 4:
        raise ValueError(f"max_pool2d_forward: expected 4-d input (N, C, H, W), got shape {x.shape}")
    _check_float("max_pool2d_forward", x)
    if int(kernel) != kernel or int(stride) != stride or kernel < 1 or stride < 1:
        raise ValueError(f"max_pool2d_forward: kernel and stride must be positive integers, "
                         f"got {kernel!r} and {stride!r}")
    n, c, h, w = x.shape
    if kernel > h or kernel > w:
        raise ValueError(f"max_pool2d_forward: kernel {kernel} larger than the input {h}x{w}")
    kernel, stride = int(kernel), int(stride)
    return n, c, h, w, (h - kernel) // stride + 1, (w - kernel) // stride + 1, kernel, stride


def max_pool2d_backward(grad_y, argmax, input_hw):
    """grad_x (N, C, H, W): zeros with grad_y added at the argmax positions;
    where windows overlap (stride < kernel) the contributions add up."""
    grad_y, argmax = np.ascontiguousarray(grad_y), np.ascontiguousarray(argmax)
    _check_argmax("max_pool2d_backward", grad_y, argmax, 4)
    _check_float("max_pool2d_backward", grad_y)
    n, c = grad_y.shape[:2]
    h, w = input_hw
    grad_x = _scatter_add(grad_y.reshape(n * c, -1), argmax.reshape(n * c, -1), h * w)
    return grad_x.reshape(n, c, h, w)


def max_pool2d_gather(grad_x, argmax):
    """grad_y[n, c, a, b] = grad_x[n, c] at flat index argmax[n, c, a, b]: the adjoint
    of max_pool2d_backward, <backward(gy), gx> = <gy, gather(gx)>."""
    grad_x, argmax = np.ascontiguousarray(grad_x), np.ascontiguousarray(argmax)
    _check_argmax("max_pool2d_gather", grad_x, argmax, 2)
    _check_float("max_pool2d_gather", grad_x)
    n, c, h, w = grad_x.shape
    grad_y = _gather(grad_x.reshape(n * c, h * w), argmax.reshape(n * c, -1))
    return grad_y.reshape(argmax.shape)
