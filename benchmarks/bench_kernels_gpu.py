"""The GPU kernels (tinymeta.kernels.gpu) at the Omniglot network's shapes,
against PyTorch's (cuDNN) on the same GPU where torch has CUDA.

    python benchmarks/bench_kernels_gpu.py

Shapes: a batch of 80 images, float32.  3x3 convolutions, stride 1, padding 1:
1 -> 64 channels on 28x28, then 64 -> 64 on 14x14, 7x7 and 3x3 (forward and
both gradients); 2x2 max-pooling, stride 2, of 64 channels on 28x28, 14x14
and 7x7 (forward, backward scatter, gather).

Each time is the median GPU time of one call, from cupyx.profiler.benchmark:
CUDA events recorded on the current stream around each call, after warm-up
calls, so gaps while the host launches a call's kernels count.  cupy and
PyTorch both launch on the legacy default stream (checked below), so the
events bracket PyTorch's kernels as well.  Both do full float32 arithmetic:
cupy's matmul does not use TF32 unless CUPY_TF32=1, and PyTorch's TF32 is
switched off here; cuDNN chooses its algorithms by its default heuristics.

Without a GPU the script says why and exits 0, leaving RESULTS.md alone.
"""
import datetime
import os
import sys
from functools import partial

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import machine_line, markdown_table, write_section  # noqa: E402

from tinymeta.backend import cuda_status  # noqa: E402

BATCH = 80
CONV_LAYERS = [(1, 64, 28), (64, 64, 14), (64, 64, 7), (64, 64, 3)]  # (in channels, out channels, size)
POOL_SIZES = [28, 14, 7]  # of 64 channels
REPEATS, WARMUP = 200, 20


def gpu_microseconds(fn):
    """Median GPU time of fn() in microseconds."""
    from cupyx.profiler import benchmark
    return float(np.median(benchmark(fn, n_repeat=REPEATS, n_warmup=WARMUP).gpu_times[0])) * 1e6


def torch_cuda(cupy):
    """(torch, None) where PyTorch can run on this GPU on cupy's stream, else (None, why not)."""
    try:
        import torch
    except ImportError as err:
        return None, f"torch is not installed ({err})"
    if not torch.cuda.is_available():
        return None, f"torch {torch.__version__} has no CUDA"
    if torch.cuda.current_stream().cuda_stream != cupy.cuda.get_current_stream().ptr:
        return None, "torch and cupy launch on different streams, so cupy's events would not time torch"
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    return torch, None


def torch_gather(grad_x, argmax):
    """max_pool2d_gather in PyTorch: grad_x at each (n, c) plane's argmax indices."""
    return grad_x.flatten(2).gather(2, argmax.flatten(2)).view(argmax.shape)


def cases(cupy, gpu, torch):
    """(layer, kernel, tinymeta call, PyTorch call or None) at every shape."""
    rng = cupy.random.default_rng(0)
    normal = partial(rng.standard_normal, dtype=cupy.float32)
    if torch is not None:
        import torch.nn.functional as F
        from torch.nn.grad import conv2d_input, conv2d_weight
    for c_in, c_out, size in CONV_LAYERS:
        x, w = normal((BATCH, c_in, size, size)), normal((c_out, c_in, 3, 3))
        gy = normal((BATCH, c_out, size, size))
        layer = f"conv {c_in}->{c_out}, {size}x{size}"
        ours = [("conv2d_forward", partial(gpu.conv2d_forward, x, w, 1, 1)),
                ("conv2d_grad_input", partial(gpu.conv2d_grad_input, gy, w, (size, size), 1, 1)),
                ("conv2d_grad_weight", partial(gpu.conv2d_grad_weight, x, gy, (3, 3), 1, 1))]
        theirs = [None] * 3
        if torch is not None:
            tx, tw, tgy = (torch.from_dlpack(a) for a in (x, w, gy))
            theirs = [partial(F.conv2d, tx, tw, None, 1, 1),
                      partial(conv2d_input, tx.shape, tw, tgy, 1, 1),
                      partial(conv2d_weight, tx, tw.shape, tgy, 1, 1)]
        for (kernel, call), torch_call in zip(ours, theirs):
            yield layer, kernel, call, torch_call
    for size in POOL_SIZES:
        x = normal((BATCH, 64, size, size))
        y, argmax = gpu.max_pool2d_forward(x, 2, 2)
        gy = normal(y.shape)
        layer = f"max-pool 64, {size}x{size}"
        ours = [("max_pool2d_forward", partial(gpu.max_pool2d_forward, x, 2, 2)),
                ("max_pool2d_backward", partial(gpu.max_pool2d_backward, gy, argmax, (size, size))),
                ("max_pool2d_gather", partial(gpu.max_pool2d_gather, x, argmax))]
        theirs = [None] * 3
        if torch is not None:
            tx, tgy, targmax = (torch.from_dlpack(a) for a in (x, gy, argmax))
            theirs = [partial(F.max_pool2d, tx, 2, 2, return_indices=True),
                      partial(torch.ops.aten.max_pool2d_with_indices_backward, tgy, tx, [2, 2], [2, 2],
                              [0, 0], [1, 1], False, targmax),
                      partial(torch_gather, tx, targmax)]
        for (kernel, call), torch_call in zip(ours, theirs):
            yield layer, kernel, call, torch_call


def main():
    cupy, reason = cuda_status()
    if cupy is None:
        print(f"bench_kernels_gpu: skipped, no GPU: {reason}")
        return
    from tinymeta.kernels import gpu
    torch, no_torch = torch_cuda(cupy)
    rows = []
    for layer, kernel, call, torch_call in cases(cupy, gpu, torch):
        ours = gpu_microseconds(call)
        if torch_call is None:
            rows.append((layer, kernel, f"{ours:.1f}", "-", "-"))
        else:
            theirs = gpu_microseconds(torch_call)
            rows.append((layer, kernel, f"{ours:.1f}", f"{theirs:.1f}", f"{ours / theirs:.2f}"))
        print(" | ".join(rows[-1]), flush=True)

    device = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
    device = device.decode() if isinstance(device, bytes) else device
    versions = f"cupy {cupy.__version__}, " + (f"torch {torch.__version__}" if torch
                                                else f"no PyTorch: {no_torch}")
    table = markdown_table(("layer (batch 80)", "kernel", "tinymeta (us)", "PyTorch (us)",
                            "tinymeta / PyTorch"), rows)
    markdown = "\n".join([
        "## GPU kernels at the Omniglot shapes",
        "",
        f"Measured {datetime.date.today()} on {device}; {versions}; {machine_line()}.",
        "Median GPU time per call (CUDA events, `python benchmarks/bench_kernels_gpu.py`), float32, "
        "full float32 arithmetic on both sides (no TF32).",
        "",
        table,
    ])
    print()
    print(markdown)
    write_section("kernels-gpu", markdown)


if __name__ == "__main__":
    main()
