"""The vectorised meta-gradient taken over groups of G tasks, on one thread, against the per-task loop.

bench_meta.py's Omniglot setting (5-way 1-shot, 15 query, meta-batch 32, one inner
step, second order, float32), both nets. G = 32 is one vectorised pass over the
whole meta-batch; smaller G takes MAML(vectorize=True).meta_gradients of each
slice tasks[i:i + G] in turn (the gradients are not combined: the work is the
same). One Python thread, no TaskThreads, with numpy's BLAS on its default threads. It asks how large a vectorised
pass can grow before its activations and kept column matrices stop fitting in cache.

    python benchmarks/bench_task_groups.py
"""
import datetime
import os
import resource
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_meta import OMNIGLOT_BATCH, OMNIGLOT_LR, WAY, omniglot_tasks  # noqa: E402
from common import comparison_table, interleaved_medians, machine_line, write_section  # noqa: E402

from tinymeta.meta import MAML  # noqa: E402
from tinymeta.nn import omniglot_cnn  # noqa: E402
from tinymeta.nn.functional import cross_entropy  # noqa: E402

GROUP_SIZES = (32, 8, 4, 2, 1)
LOOP = "per-task loop"


def main():
    tasks = omniglot_tasks(np.random.default_rng(1))
    timings = {}
    for downsample in ("stride", "maxpool"):
        model = omniglot_cnn(WAY, np.random.default_rng(0), downsample=downsample)
        loop = MAML(model, OMNIGLOT_LR, 1, loss_fn=cross_entropy)
        vectorised = MAML(model, OMNIGLOT_LR, 1, loss_fn=cross_entropy, vectorize=True)
        timings[(f"{downsample} net", LOOP)] = lambda m=loop: m.meta_gradients(tasks)
        for size in GROUP_SIZES:
            timings[(f"{downsample} net", f"vectorised, groups of {size} tasks")] = (
                lambda m=vectorised, g=size: [m.meta_gradients(tasks[i:i + g]) for i in range(0, len(tasks), g)])
    medians = interleaved_medians(timings, rounds=2, calls=1, warmup=1)
    table = comparison_table(medians, "median s", 1, [("vs per-task loop", LOOP)])
    print(table)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    write_section("task-groups", "\n\n".join([
        f"## The vectorised meta-gradient over groups of tasks, one thread (Omniglot 5-way 1-shot, meta-batch "
        f"{OMNIGLOT_BATCH}, second order, float32)",
        f"`python benchmarks/bench_task_groups.py`, {datetime.date.today()}; {machine_line()}; medians of 2 calls "
        f"each, the implementations taking turns; peak resident memory of the process {peak:.1f} GiB.",
        table]))


if __name__ == "__main__":
    main()
