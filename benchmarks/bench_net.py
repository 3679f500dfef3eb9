"""The whole Omniglot network, forward and backward, through tinymeta's autodiff and PyTorch's.

One batch of 80 images (5-way x 16), 1x28x28, float32: four [3x3 conv 64, batch
norm, ReLU] blocks that halve the image (stride-2 convs, as the MAML paper's
Omniglot code; and 2x2 max-pooling, here before the ReLU, the same function as
the reproductions' pooling after it), a linear layer, cross entropy; the
gradient of the loss with respect to every parameter. Both sides compute the
same gradients from the same weights (checked before timing).

    python benchmarks/bench_net.py
"""
import datetime
import os
import sys

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import comparison_table, machine_line, median_seconds, torch_omniglot_logits, write_section  # noqa: E402

import tinymeta as tm  # noqa: E402
from tinymeta.nn import omniglot_cnn  # noqa: E402
from tinymeta.nn.functional import cross_entropy  # noqa: E402

BATCH, WAY = 80, 5


def tinymeta_step(model, x, y):
    params = model.parameters()
    return lambda: tm.grad(cross_entropy(model(x), y), params)


def torch_step(torch, model, downsample, x, y):
    functional = torch.nn.functional
    params = [torch.tensor(p.data, requires_grad=True) for p in model.parameters()]
    x, y = torch.tensor(x), torch.tensor(y)
    return lambda: torch.autograd.grad(functional.cross_entropy(torch_omniglot_logits(torch, params, x, downsample), y),
                                       params)


def main():
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, WAY, BATCH)
    timings = {}
    try:
        import torch
        torch.set_num_threads(os.cpu_count())
        torch_note = f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads"
    except ImportError:
        torch, torch_note = None, "PyTorch not installed: its rows are missing"
    for downsample in ("stride", "maxpool"):
        model = omniglot_cnn(WAY, np.random.default_rng(1), downsample=downsample)
        workload = f"{downsample} net"
        timings[(workload, "tinymeta")] = tinymeta_step(model, x, y)
        if torch is not None:
            timings[(workload, "PyTorch eager")] = torch_step(torch, model, downsample, x, y)
            for ours, theirs in zip(timings[(workload, "tinymeta")](), timings[(workload, "PyTorch eager")]()):
                np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=2e-3, atol=2e-5)
    medians = {key: median_seconds(fn, repeats=20, warmup=3) for key, fn in timings.items()}
    table = comparison_table(medians, "median ms", 1e3, [("vs PyTorch", "PyTorch eager")])
    print(table)
    write_section("net", "\n\n".join([
        "## The Omniglot network, forward + backward, batch 80, float32",
        f"`python benchmarks/bench_net.py`, {datetime.date.today()}; {machine_line()}; {torch_note}; "
        f"numba threads: {numba.get_num_threads()}.",
        table]))


if __name__ == "__main__":
    main()
