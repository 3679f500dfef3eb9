"""The meta-training loop shared by MAML, first-order MAML, Reptile and pre-training.

Each iteration draws a meta-batch of tasks with the run's Generator and takes one
outer step. Every `eval_every` iterations it calls `on_eval(iteration)` (for a
validation score) and writes a checkpoint from which `meta_train(..., resume=True)`
continues exactly where the run stopped.

With a `communicator` from tinymeta.meta.distributed, several processes train
one model: each adapts its share of every meta-batch and the meta-gradients are
averaged across them (see distributed.py). Rank 0 alone reads and writes the
checkpoint, shows progress and calls `on_eval`; without one, the loop is a
single process. `communicator=TaskThreads(k)` (task_threads.py) shares every
meta-batch among k threads of this one process instead.
"""
import math

from .checkpoint import load_checkpoint, save_checkpoint
from .distributed import SingleProcess


def meta_train(learner, task_source, optimizer, iterations, meta_batch, rng, *, eval_every=0, on_eval=None,
               checkpoint=None, resume=False, config=None, lr_schedule=None, progress=True, description="",
               communicator=None):
    """Run outer steps up to `iterations`; returns the list of (iteration, meta-loss) it ran.

    lr_schedule(iteration) -> learning rate, if given, sets the optimizer's lr before
    each step (e.g. Reptile's linearly annealed outer step size).
    """
    if meta_batch < 1 or iterations < 0:
        raise ValueError(f"meta_train: meta_batch ({meta_batch}) must be positive and iterations "
                         f"({iterations}) non-negative")
    processes = communicator if communicator is not None else SingleProcess()
    start = 0
    if processes.is_root and resume and checkpoint is not None and checkpoint.exists():
        start, _ = load_checkpoint(checkpoint, learner, optimizer, rng)
    start = processes.synchronise(learner, optimizer, rng, start)
    history = []
    bar = _progress_bar(start, iterations, progress and processes.is_root, description)
    running = None
    for iteration in range(start, iterations):
        if lr_schedule is not None:
            optimizer.lr = lr_schedule(iteration)
        loss, grads = processes.meta_gradients(learner, task_source.sample(meta_batch, rng))
        if not math.isfinite(loss):  # before the step, so that the parameters stay the last finite ones
            raise FloatingPointError(f"meta_train: the meta-loss became {loss} at iteration {iteration}; "
                                     "lower the inner or outer learning rate; to find the op that first made a "
                                     "NaN or infinity, run under tinymeta.detect_anomaly()")
        learner.outer_step(optimizer, grads)
        history.append((iteration, loss))
        running = loss if running is None else 0.98 * running + 0.02 * loss
        bar.update(running)
        done = iteration + 1
        processes.check_agreement(learner, done)
        if processes.is_root and eval_every and (done % eval_every == 0 or done == iterations):
            if on_eval is not None:
                bar.write(on_eval(done))
            if checkpoint is not None:
                save_checkpoint(checkpoint, learner, optimizer, done, rng, config)
    bar.close()
    return history


class _progress_bar:
    """A tqdm bar showing the running meta-loss, or nothing if tqdm is absent or progress is off."""

    def __init__(self, start, total, enabled, description):
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, initial=start, desc=description, dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, running_loss):
        if self.bar is not None:
            self.bar.set_postfix(meta_loss=f"{running_loss:.4f}", refresh=False)
            self.bar.update(1)

    def write(self, message):
        if message:
            (self.bar.write if self.bar is not None else print)(message)

    def close(self):
        if self.bar is not None:
            self.bar.close()
