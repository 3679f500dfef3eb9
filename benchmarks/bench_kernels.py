"""Times the CPU kernels (tinymeta.kernels) at the Omniglot conv net's shapes,
against their numpy references and, when it imports, PyTorch.

    python benchmarks/bench_kernels.py [--repeats 20]

Batch 80 (5-way x 16 images), float32.  Convolutions: 3x3, padding 1, stride 1,
64 output channels, on 1x28x28 then 64x14x14, 64x7x7, 64x3x3; max-pool 2x2
stride 2 over 64 channels of 28x28, 14x14, 7x7.  Also:
  - the machine's float32 matmul rate (numpy BLAS, 1024^3), the ceiling that
    each convolution's GFLOP/s is printed beside;
  - ReLU's backward (g where a >= 0, else 0) on the 64-channel activations;
  - a whole step of that net (the forward chain conv, pool, ..., conv, then
    every gradient the weights need), run as one sequence;
  - why the kernels run their prange loops on numba's workqueue threading
    layer: a BLAS call alternated with a numba prange loop on the OpenMP and
    the workqueue layers (one process each), against the loop compiled serially.
Prints a markdown table and writes it to the "kernels" section of RESULTS.md.
"""
import argparse
import datetime
import os
import subprocess
import sys
import time

import numba
import numpy as np
from numba import njit, prange

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cpu_jiffies, machine_line, markdown_table, median_seconds, write_section  # noqa: E402

import tinymeta.kernels as K  # noqa: E402
from tinymeta.kernels import reference as R  # noqa: E402

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None

BATCH, OUT, KERNEL = 80, 64, 3
CONVS = [(1, 28), (64, 14), (64, 7), (64, 3)]  # (input channels, input size)
POOLS = [28, 14, 7]  # input size, 64 channels


def matmul_gflops(repeats):
    a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    return 2 * 1024 ** 3 / median_seconds(lambda: a @ a, repeats) / 1e9


def numpy_conv_ops(module, x, w, gy):
    return {"forward": lambda: module.conv2d_forward(x, w, 1, 1),
            "grad_input": lambda: module.conv2d_grad_input(gy, w, x.shape[2:], 1, 1),
            "grad_weight": lambda: module.conv2d_grad_weight(x, gy, w.shape[2:], 1, 1)}


def torch_conv_ops(x, w, gy):
    x, w, gy = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(gy)
    return {"forward": lambda: F.conv2d(x, w, padding=1),
            "grad_input": lambda: torch.nn.grad.conv2d_input(x.shape, w, gy, padding=1),
            "grad_weight": lambda: torch.nn.grad.conv2d_weight(x, w.shape, gy, padding=1)}


def numpy_pool_ops(module, x, gy):
    _, argmax = module.max_pool2d_forward(x, 2, 2)
    return {"forward": lambda: module.max_pool2d_forward(x, 2, 2),
            "backward": lambda: module.max_pool2d_backward(gy, argmax, x.shape[2:])}


def torch_pool_ops(x, gy):
    x, gy = torch.from_numpy(x), torch.from_numpy(gy)
    _, argmax = F.max_pool2d(x, 2, 2, return_indices=True)
    backward = torch.ops.aten.max_pool2d_with_indices_backward
    return {"forward": lambda: F.max_pool2d(x, 2, 2, return_indices=True),
            "backward": lambda: backward(gy, x, [2, 2], [2, 2], [0, 0], [1, 1], False, argmax)}


def relu_backward_ops(a, g):
    ops = {"reference": lambda: R.relu_backward(g, a), "numba": lambda: K.relu_backward(g, a)}
    if torch is not None:
        ta, tg = torch.from_numpy(a), torch.from_numpy(g)
        ops["torch"] = lambda: torch.ops.aten.threshold_backward(tg, ta, 0)
    return ops


def numpy_step(module, x, weights, gy):
    """One forward and backward pass of the conv/pool chain with the kernels of `module`."""
    acts, pools = [x], []
    for layer, w in enumerate(weights):
        acts.append(module.conv2d_forward(acts[-1], w, 1, 1))
        if layer < len(POOLS):
            pooled, argmax = module.max_pool2d_forward(acts[-1], 2, 2)
            pools.append(argmax)
            acts.append(pooled)
    grads, g = [], gy
    for layer in reversed(range(len(weights))):
        conv_in = acts[2 * layer]
        grads.append(module.conv2d_grad_weight(conv_in, g, (KERNEL, KERNEL), 1, 1))
        if layer > 0:
            g = module.conv2d_grad_input(g, weights[layer], conv_in.shape[2:], 1, 1)
            g = module.max_pool2d_backward(g, pools[layer - 1], acts[2 * layer - 1].shape[2:])
    return grads


def torch_step(x, weights, gy):
    """The same step with torch autograd (which skips the unneeded grad of x)."""
    x, gy = torch.from_numpy(x), torch.from_numpy(gy)
    weights = [torch.from_numpy(w).requires_grad_() for w in weights]

    def step():
        y = x
        for layer, w in enumerate(weights):
            y = F.conv2d(y, w, padding=1)
            if layer < len(POOLS):
                y = F.max_pool2d(y, 2, 2)
        return torch.autograd.grad(y, weights, gy)
    return step


@njit(parallel=True, cache=True)
def _scale_parallel(a, out):
    for i in prange(a.shape[0]):
        out[i] = 2 * a[i]


@njit(cache=True)
def _scale_serial(a, out):
    for i in range(a.shape[0]):
        out[i] = 2 * a[i]


def pair_ms(loop, repeats):
    """ms per (BLAS product, numba loop) pair: what a kernel pays for its loop between BLAS calls."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(s).astype(np.float32) for s in [(64, 576), (576, 2048)])
    v = rng.standard_normal(1 << 18).astype(np.float32)
    out = np.empty_like(v)
    return 1e3 * median_seconds(lambda: (a @ b, loop(v, out)), repeats)


def thread_switch_ms(repeats):
    """pair_ms of the serial loop and of the prange loop on each threading layer (one process
    per layer: numba picks its layer once per process); None where a layer is unavailable."""
    result = {"serial": pair_ms(_scale_serial, repeats)}
    here = os.path.dirname(os.path.abspath(__file__))
    for layer in ("omp", "workqueue"):
        code = f"import bench_kernels as b; print(b.pair_ms(b._scale_parallel, {repeats}))"
        run = subprocess.run([sys.executable, "-c", code], cwd=here, capture_output=True, text=True,
                             env={**os.environ, "NUMBA_THREADING_LAYER": layer})
        result[layer] = float(run.stdout) if run.returncode == 0 else None
    return result


def _ms_or_na(value):
    return "n/a (layer unavailable)" if value is None else f"{value:.2f}"


def ms(seconds):
    return f"{1e3 * seconds:.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per figure (median)")
    args = parser.parse_args()
    threads = numba.get_num_threads()
    if torch is not None:
        torch.set_num_threads(threads)
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    print(machine_line())
    print(f"OPENBLAS_CORETYPE={coretype} (set)" if coretype else "OPENBLAS_CORETYPE is not set")
    print(f"numba threads {threads}, torch "
          + (f"{torch.__version__} threads {torch.get_num_threads()}" if torch else "not importable"))
    busy0, total0, own0 = *cpu_jiffies(), sum(os.times()[:2])
    start = time.perf_counter()

    def timed(fn):
        return median_seconds(fn, args.repeats)

    ceiling = matmul_gflops(args.repeats)
    print(f"float32 matmul ceiling (numpy BLAS, 1024^3): {ceiling:.0f} GFLOP/s")
    rng = np.random.default_rng(0)
    rows, totals = [], {"reference": 0.0, "numba": 0.0, "torch": 0.0}

    def add_row(kernel, shape, ops, flops=None, in_step=True):
        t = {name: timed(fn) for name, fn in ops.items()}
        if in_step:
            for name in t:
                totals[name] += t[name]
        cells = [kernel, shape, ms(t["reference"]), ms(t["numba"]),
                 ms(t["torch"]) if "torch" in t else "-",
                 f"{t['reference'] / t['numba']:.1f}x",
                 f"{t['numba'] / t['torch']:.2f}" if "torch" in t else "-",
                 f"{flops / t['numba'] / 1e9:.0f}" if flops else "-"]
        rows.append(cells)
        print(" | ".join(cells), flush=True)

    for c, size in CONVS:
        x = rng.standard_normal((BATCH, c, size, size)).astype(np.float32)
        w = rng.standard_normal((OUT, c, KERNEL, KERNEL)).astype(np.float32)
        gy = rng.standard_normal((BATCH, OUT, size, size)).astype(np.float32)
        impls = {"reference": numpy_conv_ops(R, x, w, gy), "numba": numpy_conv_ops(K, x, w, gy)}
        if torch is not None:
            impls["torch"] = torch_conv_ops(x, w, gy)
        flops = 2 * BATCH * OUT * c * KERNEL * KERNEL * size * size
        for op in impls["numba"]:
            shape = f"{c}->{OUT}, {size}x{size}"
            add_row(f"conv2d {op}", shape, {name: ops[op] for name, ops in impls.items()}, flops,
                    in_step=not (op == "grad_input" and c == 1))  # the net needs no grad of x
    for size in POOLS:
        x = rng.standard_normal((BATCH, OUT, size, size)).astype(np.float32)
        gy = rng.standard_normal((BATCH, OUT, size // 2, size // 2)).astype(np.float32)
        impls = {"reference": numpy_pool_ops(R, x, gy), "numba": numpy_pool_ops(K, x, gy)}
        if torch is not None:
            impls["torch"] = torch_pool_ops(x, gy)
        for op in impls["numba"]:
            add_row(f"max_pool2d {op}", f"{OUT}, {size}x{size}",
                    {name: ops[op] for name, ops in impls.items()})
    relu_rng = np.random.default_rng(1)  # its own stream: the step below keeps the inputs it was checked on
    for size in POOLS:
        a, g = (relu_rng.standard_normal((BATCH, OUT, size, size)).astype(np.float32) for _ in range(2))
        add_row("relu backward", f"{OUT}, {size}x{size}", relu_backward_ops(a, g), in_step=False)

    x = rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32)
    weights = [rng.standard_normal((OUT, c, KERNEL, KERNEL)).astype(np.float32) for c, _ in CONVS]
    gy = rng.standard_normal((BATCH, OUT, 3, 3)).astype(np.float32)
    for mine, ref in zip(numpy_step(K, x, weights, gy), numpy_step(R, x, weights, gy)):
        np.testing.assert_allclose(mine, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())
    step = {"reference": lambda: numpy_step(R, x, weights, gy),
            "numba": lambda: numpy_step(K, x, weights, gy)}
    if torch is not None:
        step["torch"] = torch_step(x, weights, gy)
    sums = {name: total for name, total in totals.items() if name in step}
    step = {name: timed(fn) for name, fn in step.items()}
    for label, t in [("whole step, sum of the kernels above", sums),
                     ("whole step, run as one sequence", step)]:
        rows.append([f"**{label}**", "fwd + weight grads", ms(t["reference"]), ms(t["numba"]),
                     ms(t["torch"]) if "torch" in t else "-",
                     f"{t['reference'] / t['numba']:.1f}x",
                     f"{t['numba'] / t['torch']:.2f}" if "torch" in t else "-", "-"])
        print(" | ".join(rows[-1]))

    switch = thread_switch_ms(args.repeats)
    busy1, total1, own1 = *cpu_jiffies(), sum(os.times()[:2])
    own_jiffies = (own1 - own0) * os.sysconf("SC_CLK_TCK")
    others = max(0.0, (busy1 - busy0 - own_jiffies) / max(1, total1 - total0))
    header = ("kernel", "shape (batch 80, float32)", "numpy ref ms", "numba ms", "torch ms",
              "ref / numba", "numba / torch", f"numba GFLOP/s (ceiling {ceiling:.0f})")
    command = "python benchmarks/bench_kernels.py" + (
        f" --repeats {args.repeats}" if args.repeats != 20 else "")
    report = "\n".join([
        "## Kernels (tinymeta.kernels, CPU)",
        "",
        f"`{command}`, {datetime.date.today().isoformat()}, median of {args.repeats} calls "
        f"after warm-up, {time.perf_counter() - start:.0f} s.",
        "",
        f"{machine_line()}; numba threads {threads}"
        + (f", torch {torch.__version__} threads {torch.get_num_threads()}" if torch else
           ", torch not importable (no torch column)") + ".",
        f"OPENBLAS_CORETYPE {'= ' + coretype if coretype else 'not set'}. "
        f"float32 matmul ceiling (numpy BLAS, 1024^3): {ceiling:.0f} GFLOP/s. "
        f"Other processes used {100 * others:.0f}% of the CPUs during the run.",
        "",
        markdown_table(header, rows),
        "",
        "Whole step: convolutions forward and weight gradients, input gradients of convs 2-4, "
        "pools forward and backward (the sum leaves out conv 1's grad_input, and the ReLU rows: "
        "this step has no ReLU).",
        "",
        f"Why the kernels' prange loops run on numba's workqueue layer: a BLAS product (64x576 @ 576x2048) "
        f"alternated with a numba loop takes {_ms_or_na(switch['omp'])} ms per pair when the loop is a prange "
        f"on the OpenMP layer (its threads spin after the loop and stall BLAS's threads), "
        f"{_ms_or_na(switch['workqueue'])} ms on the workqueue layer, and {switch['serial']:.2f} ms when it "
        f"is serial.",
    ])
    print()
    print(report)
    write_section("kernels", report)


if __name__ == "__main__":
    main()
