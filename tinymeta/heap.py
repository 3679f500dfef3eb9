"""Large arrays from reused heap memory, not fresh pages from the kernel.

A batched meta-iteration makes hundreds of short-lived arrays of tens to
hundreds of MB (a whole meta-batch's activations and their gradients).
glibc's malloc serves every block above its mmap threshold (32 MB at most,
by its own adjustment) with fresh pages from the kernel and returns it to the
kernel when freed: each new array is then faulted in and zeroed page by page,
a hidden extra pass over every large result (writing 100 MB into fresh pages
took 30 ms here, into reused ones 3.6 ms). With the threshold raised and
trimming of the heap's top turned off, freed blocks are reused as they are
(benchmarks/RESULTS.md measures an Omniglot meta-iteration with and without).
PyTorch's caching allocators, and jemalloc or tcmalloc, do the same job.

One arena serves every thread: glibc gives each new thread an arena of its
own, whose heaps are at most 64 MB, so a thread's larger blocks would still be
fresh pages (meta/task_threads.py's workers make such blocks; allocations are
few and large, so sharing one arena's lock costs nothing measurable).

The cost: the process keeps its peak heap instead of handing it back. tinymeta
asks for this when imported, on Linux with glibc only; set TINYMETA_MALLOC=system
before importing it to leave malloc as it is.
"""
import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # mallopt's parameter numbers, from glibc's malloc.h
MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GB come from the heap and are reused
TRIM_THRESHOLD = 2**31 - 1  # the largest value mallopt takes: the heap's top is never trimmed


def keep_freed_memory():
    """Have glibc's malloc reuse freed blocks instead of returning them to the kernel, from one
    arena for all threads. True if it took the settings; False where the C library has no
    mallopt (not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # the C library this process runs on
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_ARENA_MAX, 1))
    return all([bool(mallopt(parameter, value)) for parameter, value in settings])


if os.environ.get("TINYMETA_MALLOC", "reuse") != "system":
    keep_freed_memory()
