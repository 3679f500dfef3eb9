"""One meta-iteration of MAML (second order) and first-order MAML: tinymeta against PyTorch and JAX.

Sine: the MAML paper's setting, a 1-40-40-1 ReLU MLP, meta-batch 25 tasks, K = 10
support and 10 query points, one inner SGD step (lr 0.01), float32. tinymeta is
timed as the per-task loop a reader writes first, vectorised over the meta-batch
(one batched pass with a task axis on the parameters), and vectorised and
replayed (MAML(replay=True): the pass's primitives recorded once, then only
their array operations run; tinymeta/replay.py); PyTorch as the standard
per-task loop with torch.autograd.grad(create_graph=True); JAX (when installed)
as jit of vmap over the tasks, the fastest form it offers. tinymeta's rows stack
the tasks' arrays in every call (meta_gradients takes a list of tasks); JAX's
and PyTorch's get theirs converted beforehand.

Omniglot: 5-way 1-shot, 15 query drawings per class, meta-batch 32, one inner
step (lr 0.4), the 4-block conv net with batch norm (stride-2 convolutions, and
the max-pool variant), float32; tinymeta as the per-task loop, vectorised (in
the library's default groups, 8 tasks a pass here: tinymeta/meta/task_groups.py),
and each of the two also with the meta-batch shared among one thread per core
(TaskThreads), PyTorch as the per-task loop.

    python benchmarks/bench_meta.py                          # both, on the CPU
    python benchmarks/bench_meta.py sine                     # or one of them
    python benchmarks/bench_meta.py omniglot --device cuda   # Omniglot on the GPU
"""
import argparse
import datetime
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import (comparison_table, interleaved_medians, machine_line, torch_omniglot_logits,  # noqa: E402
                    write_section)

import numba  # noqa: E402

from tinymeta.data import Examples, SineTasks, Task  # noqa: E402
from tinymeta.meta import MAML, TaskThreads  # noqa: E402
from tinymeta.nn import omniglot_cnn, sine_mlp  # noqa: E402
from tinymeta.nn.functional import cross_entropy  # noqa: E402

META_BATCH, INNER_LR = 25, 0.01
ORDERS = (("second order (MAML)", False), ("first order (FOMAML)", True))


def tinymeta_meta_iteration(model, tasks, first_order, vectorize, replay=False):
    maml = MAML(model, INNER_LR, 1, first_order=first_order, vectorize=vectorize, replay=replay)
    return lambda: maml.meta_gradients(tasks)


def torch_meta_iteration(torch, params, tasks, first_order):
    data = [[torch.tensor(a) for a in (t.support.inputs, t.support.targets, t.query.inputs, t.query.targets)]
            for t in tasks]

    def forward(p, x):
        h = torch.relu(x @ p[0] + p[1])
        h = torch.relu(h @ p[2] + p[3])
        return h @ p[4] + p[5]

    def meta_iteration():
        total = 0.0
        for xs, ys, xq, yq in data:
            inner = ((forward(params, xs) - ys) ** 2).mean()
            grads = torch.autograd.grad(inner, params, create_graph=not first_order)
            theta = [p - INNER_LR * g for p, g in zip(params, grads)]
            total = total + ((forward(theta, xq) - yq) ** 2).mean()
        return torch.autograd.grad(total / len(data), params)

    return meta_iteration


def jax_meta_iteration(jax, params, tasks, first_order):
    """jit(grad of the mean query loss after one inner step, vmapped over the tasks)."""
    jnp = jax.numpy
    data = [jnp.asarray(np.stack([getattr(getattr(t, part), field) for t in tasks]))
            for part in ("support", "query") for field in ("inputs", "targets")]

    def loss(p, x, y):
        h = jax.nn.relu(x @ p[0] + p[1])
        h = jax.nn.relu(h @ p[2] + p[3])
        return jnp.mean((h @ p[4] + p[5] - y) ** 2)

    def task_loss(p, xs, ys, xq, yq):
        grads = jax.grad(loss)(p, xs, ys)
        if first_order:
            grads = jax.lax.stop_gradient(grads)
        return loss([w - INNER_LR * g for w, g in zip(p, grads)], xq, yq)

    def meta_loss(p):
        return jnp.mean(jax.vmap(task_loss, in_axes=(None, 0, 0, 0, 0))(p, *data))

    meta_gradient = jax.jit(jax.grad(meta_loss))
    return lambda: jax.block_until_ready(meta_gradient(params))


def sine():
    rng = np.random.default_rng(0)
    model = sine_mlp(np.random.default_rng(1))
    tasks = SineTasks(10, 10).sample(META_BATCH, rng)
    timings = {}
    for order, first_order in ORDERS:
        timings[(order, "tinymeta, per-task loop")] = tinymeta_meta_iteration(model, tasks, first_order, False)
        timings[(order, "tinymeta, vectorised over tasks")] = tinymeta_meta_iteration(model, tasks, first_order, True)
        timings[(order, "tinymeta, vectorised and replayed")] = tinymeta_meta_iteration(model, tasks, first_order,
                                                                                        True, replay=True)
    notes = [_torch_sine(model, tasks, timings), _jax_sine(model, tasks, timings)]
    medians = interleaved_medians(timings, rounds=40, calls=5, warmup=5)
    table = comparison_table(medians, "median ms", 1e3, [("vs PyTorch", "PyTorch eager, per-task loop"),
                                                         ("vs JAX", "JAX jit + vmap")])
    print(table)
    write_section("meta-sine", "\n\n".join([
        "## One meta-iteration, sine (meta-batch 25, K = 10, one inner step), float32",
        f"`python benchmarks/bench_meta.py sine`, {datetime.date.today()}; {machine_line()}; {'; '.join(notes)}; "
        "medians of 200 calls each, the implementations taking turns (40 rounds of 5 calls).",
        table]))


def _jax_sine(model, tasks, timings):
    """Add JAX's rows (after checking its meta-gradient against ours); the note for the table."""
    try:
        import jax
    except ImportError:
        return "JAX not installed: its rows are missing"
    params = [jax.numpy.asarray(p.data) for p in model.parameters()]
    ours = MAML(model, INNER_LR, 1, vectorize=True).meta_gradients(tasks)[1]
    for g, j in zip(ours.values(), jax_meta_iteration(jax, params, tasks, False)()):
        np.testing.assert_allclose(g.data, np.asarray(j), rtol=1e-3, atol=1e-5)  # same meta-gradient
    for order, first_order in ORDERS:
        timings[(order, "JAX jit + vmap")] = jax_meta_iteration(jax, params, tasks, first_order)
    return f"JAX {jax.__version__} on {jax.devices()[0].platform}"


def _torch_sine(model, tasks, timings):
    """Add PyTorch's rows (after checking its meta-gradient against ours); the note for the table."""
    try:
        import torch
    except ImportError:
        return "PyTorch not installed: its rows are missing"
    torch.set_num_threads(os.cpu_count())
    params = [torch.tensor(p.data, requires_grad=True) for p in model.parameters()]
    for order, first_order in ORDERS:
        timings[(order, "PyTorch eager, per-task loop")] = torch_meta_iteration(torch, params, tasks, first_order)
    ours = MAML(model, INNER_LR, 1, vectorize=True).meta_gradients(tasks)[1]
    theirs = torch_meta_iteration(torch, params, tasks, False)()
    for g, t in zip(ours.values(), theirs):
        np.testing.assert_allclose(g.data, t.numpy(), rtol=1e-3, atol=1e-5)  # same meta-gradient
    return f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads"


# --- Omniglot ---------------------------------------------------------------------
WAY, SHOT, QUERY, OMNIGLOT_BATCH, OMNIGLOT_LR = 5, 1, 15, 32, 0.4


def omniglot_tasks(rng):
    """Random 28x28 images: the timing does not depend on what the pixels show."""
    def examples(k):
        return Examples(rng.random((WAY * k, 1, 28, 28), dtype=np.float32), np.repeat(np.arange(WAY), k))
    return [Task(examples(SHOT), examples(QUERY)) for _ in range(OMNIGLOT_BATCH)]


def torch_omniglot_iteration(torch, params, tasks, first_order, device, downsample):
    functional = torch.nn.functional
    data = [[torch.tensor(a, device=device) for a in (t.support.inputs, t.support.targets, t.query.inputs,
                                                      t.query.targets)]
            for t in tasks]

    def logits(p, x):
        return torch_omniglot_logits(torch, p, x, downsample)

    def meta_iteration():
        total = 0.0
        for xs, ys, xq, yq in data:
            inner = functional.cross_entropy(logits(params, xs), ys)
            grads = torch.autograd.grad(inner, params, create_graph=not first_order)
            theta = [p - OMNIGLOT_LR * g for p, g in zip(params, grads)]
            total = total + functional.cross_entropy(logits(theta, xq), yq)
        return torch.autograd.grad(total / len(data), params)

    return meta_iteration


def omniglot(device):
    tasks = omniglot_tasks(np.random.default_rng(1))
    sync = _synchronizer(device)
    timings, notes = {}, []
    threads = TaskThreads(os.cpu_count())
    for downsample in ("stride", "maxpool"):
        model = omniglot_cnn(WAY, np.random.default_rng(0), downsample=downsample).to(device)
        for order, first_order in ORDERS:
            workload = f"{downsample} net, {order}"
            for implementation, vectorize in (("tinymeta, per-task loop", False), ("tinymeta, vectorised", True)):
                maml = MAML(model, OMNIGLOT_LR, 1, first_order=first_order, loss_fn=cross_entropy,
                            vectorize=vectorize)
                timings[(workload, implementation)] = lambda maml=maml: sync(maml.meta_gradients(tasks))
                if device == "cpu":
                    timings[(workload, f"{implementation}, {threads.threads} task threads")] = \
                        lambda maml=maml: threads.meta_gradients(maml, tasks)
        notes.append(_torch_omniglot(model, tasks, downsample, device, sync, timings))

    medians = interleaved_medians(timings, rounds=5, calls=1, warmup=1)
    table = comparison_table(medians, "median s", 1, [("vs PyTorch", "PyTorch eager, per-task loop")])
    print(table)
    where = _gpu_name() if device == "cuda" else f"{machine_line()}; numba threads: {numba.get_num_threads()}"
    write_section(f"meta-omniglot-{device}", "\n\n".join([
        f"## One meta-iteration on {device}, Omniglot 5-way 1-shot, 15 query per class, meta-batch 32, "
        "one inner step, float32",
        f"`python benchmarks/bench_meta.py omniglot --device {device}`, {datetime.date.today()}; {where}; "
        f"{notes[0]}; medians of 5 calls each, the implementations taking turns.",
        table]))


def _torch_omniglot(model, tasks, downsample, device, sync, timings):
    """Add PyTorch's rows for this net (after checking its meta-gradient against ours); the note for the table."""
    try:
        import torch
    except ImportError:
        return "PyTorch not installed: its rows are missing"
    torch.set_num_threads(os.cpu_count())
    params = [torch.tensor(p.numpy(), requires_grad=True, device=device) for p in model.parameters()]
    for order, first_order in ORDERS:
        iteration = torch_omniglot_iteration(torch, params, tasks, first_order, device, downsample)
        timings[(f"{downsample} net, {order}", "PyTorch eager, per-task loop")] = lambda it=iteration: sync(it())
    ours = MAML(model, OMNIGLOT_LR, 1, loss_fn=cross_entropy, vectorize=True).meta_gradients(tasks)[1]
    theirs = torch_omniglot_iteration(torch, params, tasks, False, device, downsample)()
    # the same meta-gradient, up to float32 rounding (which can flip a few ReLU masks)
    # (relative to the whole gradient: conv biases before batch norm get gradients that are
    # zero up to rounding, so their own relative errors mean nothing)
    ours_flat = np.concatenate([g.numpy().ravel() for g in ours.values()])
    theirs_flat = np.concatenate([t.cpu().numpy().ravel() for t in theirs])
    error = np.linalg.norm(ours_flat - theirs_flat) / np.linalg.norm(theirs_flat)
    assert error < 1e-3, f"tinymeta and PyTorch meta-gradients differ ({downsample} net): relative error {error:.2e}"
    print(f"{downsample} net: relative difference of the meta-gradients, tinymeta vs PyTorch: {error:.1e}")
    return f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads"


def _synchronizer(device):
    """Timing a GPU needs the queued kernels finished: a function that waits for them."""
    if device == "cpu":
        return lambda result: result
    import cupy
    return lambda result: cupy.cuda.Device().synchronize()


def _gpu_name():
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    return f"GPU: {props['name'].decode()}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Time one meta-iteration against PyTorch and JAX.")
    parser.add_argument("which", nargs="*", help="sine and/or omniglot (default: both)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="device for the Omniglot meta-iteration (the sine one runs on the CPU)")
    args = parser.parse_args()
    for name in args.which or ["sine", "omniglot"]:
        if name not in ("sine", "omniglot"):
            parser.error(f"unknown benchmark {name!r}: choose sine or omniglot")
        sine() if name == "sine" else omniglot(args.device)
