"""Intra-op parallelism: large elementwise ops and sums on every core.

numpy runs a ufunc's loop on one core, but releases the GIL while it runs. So
a large op can be cut into one slab of its result per core, along an axis,
with a pool of threads filling the slabs at once (PyTorch's at::parallel_for
does the same). The slabs are disjoint and each is computed as numpy would
compute it alone, so the result is the single-threaded one.

Results smaller than GRAIN elements, and arrays that are not numpy's (cupy),
take the plain call: below that size starting the threads costs more than it
saves. The pool is off unless TINYMETA_NUM_THREADS (or set_num_threads) asks
for more than one thread: on the 2-core machine of benchmarks/RESULTS.md a
whole Omniglot meta-iteration ran slower with it (3.5 s against 3.0 s, best of
three), its memory-bound slabs competing with BLAS's spinning threads, though a
single 120 MB product ran 1.85x faster on two threads.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

GRAIN = 1 << 16
THREADS, _pool = 1, None  # set just below


def set_num_threads(count):
    """Run large ops on `count` threads from now on (1: on the calling thread alone)."""
    global THREADS, _pool
    if count < 1:
        raise ValueError(f"set_num_threads: need at least one thread, got {count}")
    if _pool is not None:
        _pool.shutdown()
    THREADS = count
    _pool = ThreadPoolExecutor(count - 1, thread_name_prefix="tinymeta") if count > 1 else None


set_num_threads(int(os.environ.get("TINYMETA_NUM_THREADS", 1)))


def elementwise(ufunc, *operands):
    """ufunc(*operands), broadcasting as numpy does, sliced along the result's first axis."""
    if not _worth_slicing(operands):
        return ufunc(*operands)
    shape = np.broadcast_shapes(*(np.shape(a) for a in operands))
    if shape[0] < THREADS:
        return ufunc(*operands)
    first = tuple(a.reshape(-1)[:1] if isinstance(a, np.ndarray) else a for a in operands)
    out = np.empty(shape, ufunc(*first).dtype)

    def fill(lo, hi):
        ufunc(*(_rows(a, lo, hi, len(shape)) for a in operands), out=out[lo:hi])

    _run_slabs(fill, shape[0])
    return out


def sum(a, axis, keepdims):  # noqa: A001 - numpy's name
    """a.sum(axis, keepdims), sliced along the first axis that is not summed."""
    if axis is None or not _worth_slicing((a,)):
        return a.sum(axis=axis, keepdims=keepdims)
    kept = [k for k in range(a.ndim) if k not in axis and a.shape[k] >= THREADS]
    if not kept:
        return a.sum(axis=axis, keepdims=keepdims)
    k = kept[0]
    out = np.empty(tuple(1 if i in axis else n for i, n in enumerate(a.shape)), a.dtype)
    lead = (slice(None),) * k

    def fill(lo, hi):
        np.sum(a[lead + (slice(lo, hi),)], axis=axis, keepdims=True, out=out[lead + (slice(lo, hi),)])

    _run_slabs(fill, a.shape[k])
    return out if keepdims else out.reshape(tuple(n for i, n in enumerate(a.shape) if i not in axis))


def _worth_slicing(operands):
    """A pool to slice over, an operand of at least GRAIN elements, and numpy operands only."""
    return (_pool is not None and any(type(a) is np.ndarray and a.size >= GRAIN for a in operands)
            and all(isinstance(a, (np.ndarray, int, float, np.generic)) for a in operands))


def _rows(a, lo, hi, ndim):
    """The part of operand `a` that broadcasts onto rows lo:hi of an ndim-axis result."""
    if np.ndim(a) == ndim and a.shape[0] != 1:
        return a[lo:hi]
    return a


def _run_slabs(fill, length):
    """fill(lo, hi) over THREADS slabs that cover range(length); this thread takes the first."""
    bounds = [length * k // THREADS for k in range(THREADS + 1)]
    futures = [_pool.submit(fill, lo, hi) for lo, hi in zip(bounds[1:-1], bounds[2:])]
    fill(bounds[0], bounds[1])
    for future in futures:
        future.result()
