"""A vectorised meta-gradient taken over groups of tasks, so that no one pass grows too large.

A vectorised learner stacks its tasks into one pass per layer, and that pass's
activations, and what its graph keeps for the backward pass, grow with the
number of tasks. Past the caches, and past the memory, a larger pass gets
slower. On one Python thread of this project's 2-core machine the max-pool
Omniglot CNN stacked over a meta-batch of 32 tasks (2,560 images, 514 MB for each
activation of the first layer, GBs of kept column matrices) took 3.9x as long as
the per-task loop, and in groups of 8 tasks 0.89x; on 2 task threads, 16 tasks
each, 9.1 s in one pass against 2.3 s in groups of 8 (benchmarks/RESULTS.md,
section "task-groups").

The meta-loss and the meta-gradient are means over the tasks, so consecutive
groups G_1..G_k of the N tasks, each taken as one pass, combine exactly as the
shares of threads and MPI ranks do (distributed.py):

    g = sum_j |G_j| g_j / N,

the one-pass meta-gradient up to the order of the additions.

By default (tasks_per_pass=None) a group on the CPU holds as many tasks as keep
its stacked inputs, support and query sets together, within PASS_INPUT_BYTES:
8 tasks of the setting above (5-way 1-shot with 15 query drawings per class, 80
images of 28x28 float32 a task), while the examples' meta-batches (one query
drawing per class) and sine's stay one pass. On a GPU, whose memory is large
and whose speed comes from large passes, the whole meta-batch is one pass.
"""
import numbers

from ..tensor import Tensor
from .distributed import _array

PASS_INPUT_BYTES = 2 * 2**20


def check_tasks_per_pass(owner, tasks_per_pass, vectorize):
    """None, or a positive integer, and only for a vectorised learner."""
    if tasks_per_pass is None:
        return
    if not vectorize:
        raise ValueError(f"{owner}: tasks_per_pass={tasks_per_pass!r} needs vectorize=True; the per-task loop "
                         "takes one task at a time")
    if isinstance(tasks_per_pass, bool) or not isinstance(tasks_per_pass, numbers.Integral) or tasks_per_pass < 1:
        raise ValueError(f"{owner}: tasks_per_pass must be a positive integer or None, got {tasks_per_pass!r}")


def default_tasks_per_pass(tasks, device):
    """As many tasks as keep one pass's stacked inputs within PASS_INPUT_BYTES on the CPU (at
    least one); all of them on a GPU."""
    if device != "cpu":
        return len(tasks)
    task_bytes = tasks[0].support.inputs.nbytes + tasks[0].query.inputs.nbytes
    return max(1, PASS_INPUT_BYTES // max(1, task_bytes))


def in_groups(meta_gradients, tasks, tasks_per_pass, device):
    """meta_gradients(group) -> (loss, {name: gradient}) of consecutive groups of at most
    `tasks_per_pass` tasks (None: the default for `device`), combined into the whole meta-batch's."""
    tasks_per_pass = tasks_per_pass or default_tasks_per_pass(tasks, device)
    if len(tasks) <= tasks_per_pass:
        return meta_gradients(tasks)
    groups = [tasks[start:start + tasks_per_pass] for start in range(0, len(tasks), tasks_per_pass)]
    return mean_of_shares([meta_gradients(group) for group in groups], [len(group) for group in groups])


def mean_of_shares(results, sizes):
    """(loss, {name: gradient}) of a meta-batch from its shares' results, shares of `sizes` tasks:
    each is the mean over its tasks, so the whole is sum_j |S_j| g_j / N. A gradient comes back
    as the shares gave it, a Tensor (MAML's) or an array (Reptile's, iMAML's)."""
    weights = [size / sum(sizes) for size in sizes]
    loss = sum(w * share_loss for w, (share_loss, _) in zip(weights, results))
    grads = {}
    for name, first in results[0][1].items():
        total = sum(w * _array(share_grads[name]) for w, (_, share_grads) in zip(weights, results))
        grads[name] = Tensor(total) if isinstance(first, Tensor) else total
    return loss, grads
