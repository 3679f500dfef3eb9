"""Programs that tests/test_distributed.py runs under `mpiexec -n 2` (or as one plain process).

    python tests/distributed_run.py gradients OUT     meta-gradients of fixed meta-batches -> OUT/gradients.npz
    python tests/distributed_run.py train OUT [--iterations N] [--resume] [--kill-at K] [--raise-at K]
                                              [--drift-at K]
        meta-train a tiny float64 MAML on sine tasks, checkpointing every 2 iterations to
        OUT/checkpoint.npz; rank 0 writes the final parameters to OUT/params.npz. On the
        last rank, at the K-th meta-batch drawn: --kill-at SIGKILLs the process,
        --raise-at raises ValueError, --drift-at nudges one parameter.

Everything is float64 and built from fixed seeds, so the test process can build
the same learners and tasks (`learners`, `tasks`) and compare.
"""
import argparse
import os
import signal
from pathlib import Path

import numpy as np

from tinymeta import nn
from tinymeta.data import SineTasks
from tinymeta.grad_mode import no_grad
from tinymeta.meta import MAML, Pretrain, Reptile, meta_train
from tinymeta.meta.distributed import communicator
from tinymeta.optim import Adam, InnerAdam
from tinymeta.tensor import Tensor

LEARNERS = ("maml", "maml-vectorized", "fomaml", "reptile", "reptile-adam", "reptile-minibatches", "pretrain")
META_BATCHES = (1, 3, 4)  # fewer tasks than ranks, not divisible by 2, divisible by 2
SOURCE = SineTasks(shots=5, queries=6, dtype=np.float64)


def tiny_mlp():
    rng = np.random.default_rng(0)
    return nn.Sequential(nn.Linear(1, 8, rng, dtype=np.float64), nn.Tanh(), nn.Linear(8, 1, rng, dtype=np.float64))


def learner(name, model):
    if name == "maml":
        return MAML(model, inner_lr=0.05, inner_steps=2)
    if name == "maml-vectorized":
        return MAML(model, inner_lr=0.05, inner_steps=2, vectorize=True)
    if name == "fomaml":
        return MAML(model, inner_lr=0.05, inner_steps=2, first_order=True)
    if name == "reptile":
        return Reptile(model, inner_lr=0.05, inner_steps=3, inner_batch=SOURCE.shots, outer_lr=0.1)
    if name == "reptile-adam":  # its carried inner moments are averaged over the ranks like the gradient
        return Reptile(model, inner_lr=0.01, inner_steps=3, inner_batch=SOURCE.shots, outer_lr=0.1,
                       inner_optimizer=InnerAdam())
    if name == "reptile-minibatches":  # every rank draws the same minibatch order
        return Reptile(model, inner_lr=0.05, inner_steps=3, inner_batch=2, outer_lr=0.1)
    return Pretrain(model)


def tasks(meta_batch):
    return SOURCE.sample(meta_batch, np.random.default_rng(meta_batch))


def gradients(out, processes):
    arrays = {}
    for name in LEARNERS:
        for meta_batch in META_BATCHES:
            loss, grads = processes.meta_gradients(learner(name, tiny_mlp()), tasks(meta_batch))
            arrays[f"{name}/{meta_batch}/loss"] = np.array(loss)
            arrays.update({f"{name}/{meta_batch}/{param}": as_array(g) for param, g in grads.items()})
    if processes.is_root:
        np.savez(out / "gradients.npz", **arrays)


def as_array(gradient):
    return gradient.numpy() if isinstance(gradient, Tensor) else np.asarray(gradient)


class Sabotaged:
    """A task source that runs `action` on the last rank when it draws its `at`-th meta-batch."""

    def __init__(self, source, at, action, processes):
        self.source, self.at, self.action, self.draws = source, at, action, 0
        self.armed = processes.rank == processes.size - 1

    def sample(self, n, rng):
        self.draws += 1
        if self.armed and self.draws == self.at:
            self.action()
        return self.source.sample(n, rng)


def train(out, processes, args):
    model = tiny_mlp()
    source = SOURCE

    def kill():
        os.kill(os.getpid(), signal.SIGKILL)

    def fail():
        raise ValueError("the last rank cannot read its data")

    def drift():
        with no_grad():
            model.parameters()[0].data[0, 0] += 1e-6

    for at, action in ((args.kill_at, kill), (args.raise_at, fail), (args.drift_at, drift)):
        if at:
            source = Sabotaged(source, at, action, processes)
    meta_train(MAML(model, inner_lr=0.05), source, Adam(model.parameters_dict(), lr=0.01), args.iterations,
               3, np.random.default_rng(7), eval_every=2, checkpoint=out / "checkpoint.npz", resume=args.resume,
               progress=False, communicator=processes)
    if processes.is_root:
        model.save(out / "params.npz")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("case", choices=("gradients", "train"))
    p.add_argument("out", type=Path)
    p.add_argument("--iterations", type=int, default=8)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--kill-at", type=int, default=0)
    p.add_argument("--raise-at", type=int, default=0)
    p.add_argument("--drift-at", type=int, default=0)
    args = p.parse_args()
    processes = communicator(check_every=2)
    if args.case == "gradients":
        gradients(args.out, processes)
    else:
        train(args.out, processes, args)


if __name__ == "__main__":
    main()
