"""The vectorised meta-gradient over groups of G tasks, against the per-task loop, on one and two threads.

bench_meta.py's Omniglot setting (5-way 1-shot, 15 query, meta-batch 32, one inner
step, second order, float32), both nets. Each vectorised row is
MAML(vectorize=True, tasks_per_pass=G).meta_gradients: G = 32 is one pass over
the whole meta-batch, and the library's default for this setting is G = 8
(tinymeta/meta/task_groups.py). On one thread numpy's BLAS runs on its default
threads; with TaskThreads(2) each thread takes 16 tasks, in one pass (G = 16) or
in groups of the default size. It asks how large a vectorised pass can grow
before its activations and kept column matrices stop fitting in cache.

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

from tinymeta.meta import MAML, TaskThreads  # noqa: E402
from tinymeta.meta.task_groups import default_tasks_per_pass  # noqa: E402
from tinymeta.nn import omniglot_cnn  # noqa: E402
from tinymeta.nn.functional import cross_entropy  # noqa: E402

GROUP_SIZES = (32, 8, 4, 2, 1)
THREADS = 2
LOOP = "per-task loop"


def maml(model, tasks_per_pass=None):
    """Second-order MAML on the per-task loop, or vectorised in groups of tasks_per_pass tasks."""
    return MAML(model, OMNIGLOT_LR, 1, loss_fn=cross_entropy, vectorize=tasks_per_pass is not None,
                tasks_per_pass=tasks_per_pass)


def main():
    tasks = omniglot_tasks(np.random.default_rng(1))
    default = default_tasks_per_pass(tasks, "cpu")
    threads = TaskThreads(THREADS)
    timings = {}
    for downsample in ("stride", "maxpool"):
        workload = f"{downsample} net"
        model = omniglot_cnn(WAY, np.random.default_rng(0), downsample=downsample)
        timings[(workload, LOOP)] = lambda m=maml(model): m.meta_gradients(tasks)
        for size in GROUP_SIZES:
            label = f"vectorised, groups of {size} tasks" + (" (the default)" if size == default else "")
            timings[(workload, label)] = lambda m=maml(model, size): m.meta_gradients(tasks)
        share = len(tasks) // THREADS
        for label, learner in ((LOOP, maml(model)), (f"vectorised, one pass of {share} tasks", maml(model, share)),
                               (f"vectorised, groups of {default} tasks", maml(model, default))):
            timings[(workload, f"{THREADS} task threads, {label}")] = \
                lambda m=learner: threads.meta_gradients(m, tasks)
    medians = interleaved_medians(timings, rounds=2, calls=1, warmup=1)
    table = comparison_table(medians, "median s", 1, [("vs per-task loop", LOOP)])
    print(table)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    write_section("task-groups", "\n\n".join([
        f"## The vectorised meta-gradient over groups of tasks (Omniglot 5-way 1-shot, meta-batch "
        f"{OMNIGLOT_BATCH}, second order, float32)",
        f"`python benchmarks/bench_task_groups.py`, {datetime.date.today()}; {machine_line()}; medians of 2 calls "
        f"each, the implementations taking turns; peak resident memory of the process {peak:.1f} GiB.",
        table]))


if __name__ == "__main__":
    main()
