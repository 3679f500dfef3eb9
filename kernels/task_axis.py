"""A leading task axis for kernels written for one task (the numpy references, the GPU kernels).

A convolution kernel f(a, b, *args) of two 4-d arrays (images and weight, or a gradient and
weight, ...) becomes, for 5-d arrays, the stack over t of f(a[t], b[t], *args): task t's
images with task t's weight. The CPU kernels in conv2d.py take the task axis themselves.
"""
import functools


def over_tasks(kernel, stack):
    """`kernel` extended to 5-d operands; `stack` joins the per-task results (numpy.stack or cupy.stack)."""
    @functools.wraps(kernel)
    def per_task(a, b, *args, **kwargs):
        if a.ndim == 5:
            return stack([kernel(a[t], b[t], *args, **kwargs) for t in range(a.shape[0])])
        return kernel(a, b, *args, **kwargs)
    return per_task
