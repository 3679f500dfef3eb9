"""Omniglot N-way K-shot classification with MAML, first-order MAML, Reptile, Meta-SGD or iMAML.

    python examples/omniglot.py --data ../shared/data/omniglot          # MAML, 5-way 1-shot
    python examples/omniglot.py --data ../shared/data/omniglot --algo fomaml
    python examples/omniglot.py --data ../shared/data/omniglot --algo imaml --out examples/results/omniglot/imaml
    python examples/omniglot.py --download                               # fetch the full data set

Defaults follow the MAML paper's 5-way 1-shot setup as its published code runs
it: query = shot drawings per class during meta-training, meta-batch 32, one
inner SGD step with lr 0.4, Adam (1e-3) outside, 3 adaptation steps at test;
the network is four [3x3 conv 64, batch norm, ReLU] blocks with stride-2
convolutions, then linear. Meta-SGD starts its learned rates (one per weight) at
the inner lr and adapts with them at test. iMAML takes 5 inner steps of lr 0.1
on the support loss plus lambda/2 ||theta - phi||^2 (lambda 2), 5 conjugate-
gradient iterations for its meta-gradient, and adapts at test the same way (at
lr 0.4 its inner descent diverges: from the initial network the support loss
rises again after the first step; at 0.1 it settles within about 3 steps). Characters
are split into train / validation / test (seeded); each quarter turn of a
training character is a class of its own.

Every --val-every iterations the script measures accuracy on training and
validation tasks and keeps the best checkpoint (by validation accuracy); at the
end it reports test accuracy (mean and 95% CI over --eval-tasks tasks of
characters never trained on) and plots the accuracy curves. Outputs go to --out:
results.md, curves.png, best.npz and checkpoint.npz (for --resume).

In one process, --threads threads (default: one per core) share each
meta-batch (tinymeta.meta.TaskThreads; the meta-gradient is the same). Under an
MPI launcher (`mpiexec -n 2 python examples/omniglot.py ...`, with
tinymeta[mpi] installed) the processes share it instead: rank 0 reads the data
and sends it to the others, validates, checkpoints and writes the results.
"""
import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from tinymeta import nn
from tinymeta.data.omniglot import load_omniglot, split_by_alphabet, split_by_character
from tinymeta.data.sampler import FewShotSampler
from tinymeta.grad_mode import no_grad
from tinymeta.meta import IMAML, MAML, MetaSGD, Reptile, TaskThreads, evaluate, meta_train
from tinymeta.meta.adapt import fresh_leaves
from tinymeta.meta.distributed import communicator
from tinymeta.meta.imaml import proximal_adapt
from tinymeta.meta.evaluate import estimate
from tinymeta.nn.functional import accuracy, cross_entropy
from tinymeta.optim import Adam


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--way", type=int, default=5, help="classes per task (default 5)")
    p.add_argument("--shot", type=int, default=1, help="support drawings per class (default 1)")
    p.add_argument("--query", type=int, default=None,
                   help="query drawings per class during meta-training (default: = shot, as the paper's code)")
    p.add_argument("--eval-query", type=int, default=15, help="query drawings per class at validation and test (default 15)")
    p.add_argument("--algo", choices=("maml", "fomaml", "reptile", "metasgd", "imaml"), default="maml",
                   help="meta-learner (default maml)")
    p.add_argument("--inner-steps", type=int, default=None,
                   help="inner SGD steps in meta-training (default 1; Reptile and iMAML 5)")
    p.add_argument("--lam", type=float, default=2.0, help="iMAML's proximal strength lambda (default 2)")
    p.add_argument("--cg-steps", type=int, default=5, help="iMAML's conjugate-gradient iterations (default 5)")
    p.add_argument("--inner-lr", type=float, default=None,
                   help="inner SGD learning rate (default 0.4; Reptile and iMAML 0.1)")
    p.add_argument("--meta-batch", type=int, default=32, help="tasks per meta-iteration (default 32)")
    p.add_argument("--iters", type=int, default=3000, help="meta-iterations (default 3000, about 30 min on 2 cores)")
    p.add_argument("--eval-steps", type=int, default=None,
                   help="adaptation steps at validation and test (default 3; Reptile: its inner steps)")
    p.add_argument("--eval-tasks", type=int, default=600, help="test tasks (default 600)")
    p.add_argument("--val-every", type=int, default=250, help="iterations between validations (default 250)")
    p.add_argument("--val-tasks", type=int, default=100, help="tasks per validation (default 100)")
    p.add_argument("--downsample", choices=("stride", "maxpool"), default="stride",
                   help="halve the image by stride-2 convs (the paper's Omniglot code) or 2x2 max-pooling")
    p.add_argument("--batch-norm", choices=("transductive", "support-stats"), default="transductive",
                   help="at validation/test, normalise with the statistics of the batch at hand (as MAML does) "
                        "or only those of the support set (non-transductive)")
    p.add_argument("--split", choices=("character", "alphabet"), default="character",
                   help="split characters at random, or whole alphabets (harder)")
    p.add_argument("--data", type=Path, default=None,
                   help="folder with the Omniglot zips (default: $TINYMETA_DATA, then ~/.cache/tinymeta/omniglot)")
    p.add_argument("--download", action="store_true", help="download the official zips if none are found")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--out", type=Path, default=Path("examples/results/omniglot"), help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.npz")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the model runs (default cpu)")
    p.add_argument("--per-task-loop", action="store_true",
                   help="adapt the tasks of a meta-batch one by one (the readable reference) instead of in one "
                        "batched pass; the meta-gradient is the same")
    p.add_argument("--threads", type=int, default=None,
                   help="threads that share each meta-batch (default: one per core; one under an MPI launcher "
                        "and with --batch-norm support-stats, whose running statistics threads cannot share)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args()
    args.query = args.shot if args.query is None else args.query
    args.inner_steps = (5 if args.algo in ("reptile", "imaml") else 1) if args.inner_steps is None else args.inner_steps
    args.inner_lr = (0.1 if args.algo in ("reptile", "imaml") else 0.4) if args.inner_lr is None else args.inner_lr
    if args.eval_steps is None:
        args.eval_steps = args.inner_steps if args.algo in ("reptile", "imaml") else 3
    if args.lam <= 0:
        p.error(f"--lam must be positive, got {args.lam}")
    if args.threads is None:
        args.threads = 1 if args.batch_norm == "support-stats" else os.cpu_count() or 1
    for name in ("way", "shot", "query", "eval_query", "inner_steps", "eval_steps", "meta_batch", "eval_tasks",
                 "val_every", "val_tasks", "cg_steps", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    return args


def adaptation(learner, args):
    """evaluate's inner_lr and proximal arguments: how the learner adapts at test time."""
    if isinstance(learner, MetaSGD):
        return {"inner_lr": {name: rate.detach() for name, rate in learner.inner_lr.items()}, "proximal": 0.0}
    return {"inner_lr": args.inner_lr, "proximal": args.lam if isinstance(learner, IMAML) else 0.0}


def accuracy_after_adaptation(learner, tasks, args):
    """Mean and 95% CI of query accuracy after args.eval_steps steps, batch norm as args.batch_norm says."""
    if args.batch_norm == "transductive":
        result = evaluate(learner.model, tasks, cross_entropy, steps=[args.eval_steps], metric=accuracy,
                          **adaptation(learner, args))
        return result["metric"][args.eval_steps]
    return _non_transductive_accuracy(learner, tasks, args)


def _non_transductive_accuracy(learner, tasks, args):
    """Batch norm in evaluation mode with running statistics of momentum 1 (see main): a
    forward pass over the adapted support set stores its statistics, the query set uses them."""
    model, how = learner.model, adaptation(learner, args)
    batch_norms = [m for m in model._modules.values() if isinstance(m, nn.BatchNorm2d)]
    phi = model.parameters_dict()
    scores = []
    for task in tasks:
        theta = proximal_adapt(model, phi, fresh_leaves(phi), task.support, cross_entropy, args.eval_steps,
                               how["inner_lr"], how["proximal"], create_graph=False)
        with no_grad():
            model(task.support.inputs, params=theta)      # stores the support statistics
            for bn in batch_norms:
                bn.eval()
            scores.append(accuracy(model(task.query.inputs, params=theta), task.query.targets))
            for bn in batch_norms:
                bn.train()
    return estimate(scores)


def make_learner(args, model, rng):
    """The meta-learner; it adapts the whole meta-batch in one batched pass unless --per-task-loop."""
    vectorize = not args.per_task_loop
    if args.algo == "reptile":
        return Reptile(model, args.inner_lr, args.inner_steps, inner_batch=args.way * args.shot, outer_lr=1.0,
                       loss_fn=cross_entropy, rng=rng, vectorize=vectorize)
    if args.algo == "metasgd":
        return MetaSGD(model, args.inner_lr, args.inner_steps, loss_fn=cross_entropy, vectorize=vectorize)
    if args.algo == "imaml":
        return IMAML(model, args.inner_lr, args.inner_steps, args.lam, cg_steps=args.cg_steps, loss_fn=cross_entropy,
                     vectorize=vectorize)
    return MAML(model, args.inner_lr, args.inner_steps, first_order=args.algo == "fomaml", loss_fn=cross_entropy,
                vectorize=vectorize)


def plot_curves(path, history, args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    iterations = [h["iteration"] for h in history]
    for key, label in (("train", "training tasks"), ("validation", "validation tasks")):
        means = np.array([h[key][0] for h in history])
        cis = np.array([h[key][1] for h in history])
        ax.plot(iterations, means, marker="o", ms=3, label=label)
        ax.fill_between(iterations, means - cis, means + cis, alpha=0.2)
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel(f"accuracy after {args.eval_steps} steps")
    ax.set_title(f"Omniglot {args.way}-way {args.shot}-shot, {args.algo}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def work_sharing(args):
    """Who adapts the tasks of a meta-batch: the MPI ranks under a launcher, else --threads threads."""
    processes = communicator()
    if processes.size > 1 or args.threads == 1:
        return processes
    return TaskThreads(args.threads)


def main():
    args = parse_args()
    processes = work_sharing(args)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    # rank 0 reads (or downloads) the data and sends it to the other ranks
    dataset = processes.broadcast(load_omniglot(args.data, download=args.download) if processes.is_root else None)
    split = (split_by_character if args.split == "character" else split_by_alphabet)(dataset, rng)
    if processes.is_root:
        print(f"{dataset}; {len(split.train)} training classes (rotations included), "
              f"{len(split.validation)} validation and {len(split.test)} test characters")

    train_tasks = FewShotSampler(split.train.images, args.way, args.shot, args.query)
    watch_train = FewShotSampler(split.train.images, args.way, args.shot, args.eval_query).sample(
        args.val_tasks, np.random.default_rng([args.seed, 1]))
    val_tasks = FewShotSampler(split.validation.images, args.way, args.shot, args.eval_query).sample(
        args.val_tasks, np.random.default_rng([args.seed, 2]))
    test_tasks = FewShotSampler(split.test.images, args.way, args.shot, args.eval_query).sample(
        args.eval_tasks, np.random.default_rng([args.seed, 3]))

    # non-transductive evaluation keeps the last batch's statistics (momentum 1): the support set's
    support_stats = args.batch_norm == "support-stats"
    model = nn.omniglot_cnn(args.way, np.random.default_rng([args.seed, 4]), downsample=args.downsample,
                            track_running_stats=support_stats, bn_momentum=1.0 if support_stats else 0.1)
    model.to(args.device)
    learner = make_learner(args, model, np.random.default_rng([args.seed, 5]))
    optimizer = Adam(learner.parameters_dict(), lr=1e-3)
    history_file = args.out / "history.json"
    history = json.loads(history_file.read_text()) if args.resume and history_file.exists() else []
    best = max((h["validation"][0] for h in history), default=-1.0)

    def on_eval(iteration):
        nonlocal best
        train_acc = accuracy_after_adaptation(learner, watch_train, args)
        val_acc = accuracy_after_adaptation(learner, val_tasks, args)
        history.append({"iteration": iteration, "train": [train_acc.mean, train_acc.ci95],
                        "validation": [val_acc.mean, val_acc.ci95]})
        history_file.write_text(json.dumps(history))
        note = ""
        if val_acc.mean > best:
            best = val_acc.mean
            np.savez(args.out / "best.npz", **learner.state_dict())   # Meta-SGD's rates included
            note = " (best so far, saved)"
        return f"iteration {iteration}: train accuracy {train_acc}, validation accuracy {val_acc}{note}"

    lr_schedule = None
    if args.algo == "reptile":  # Reptile's outer step size, annealed linearly to zero as in its paper
        optimizer = learner.optimizer()
        lr_schedule = lambda it: 1.0 - it / args.iters  # noqa: E731
    start = time.perf_counter()
    meta_train(learner, train_tasks, optimizer, args.iters, args.meta_batch, rng, eval_every=args.val_every,
               on_eval=on_eval, checkpoint=args.out / "checkpoint.npz", resume=args.resume,
               config=vars(args) | {"out": str(args.out), "data": str(args.data)}, lr_schedule=lr_schedule,
               progress=not args.no_progress, description=args.algo, communicator=processes)
    train_seconds = time.perf_counter() - start
    if not processes.is_root:
        return

    with np.load(args.out / "best.npz") as best_state:
        learner.load_state_dict({name: best_state[name] for name in best_state.files})
    test = accuracy_after_adaptation(learner, test_tasks, args)
    best_iteration = max(history, key=lambda h: h["validation"][0])["iteration"]
    report = "\n".join([
        f"Omniglot {args.way}-way {args.shot}-shot, {args.algo}, {args.split} split, seed {args.seed}",
        "",
        "| setting | value |", "|---|---|",
        f"| meta-iterations | {args.iters} (best validation at {best_iteration}) |",
        f"| meta-batch, inner steps, inner lr | {args.meta_batch}, {args.inner_steps}, {args.inner_lr} |",
        *([f"| iMAML lambda, conjugate-gradient iterations | {args.lam}, {args.cg_steps} |"] if args.algo == "imaml"
          else []),
        f"| network | 4 x [conv 3x3 64, batch norm, ReLU], {args.downsample} downsampling, linear |",
        f"| batch norm at test | {args.batch_norm} |",
        f"| training wall time (this run) | {train_seconds / 60:.1f} min |",
        f"| test tasks | {args.eval_tasks} ({args.eval_query} query drawings per class, {args.eval_steps} adaptation steps) |",
        f"| **test accuracy** | **{test.mean * 100:.2f}% ± {test.ci95 * 100:.2f}%** (95% CI) |"])
    print("\n" + report)
    (args.out / "results.md").write_text(report + "\n")
    plot_curves(args.out / "curves.png", history, args)


if __name__ == "__main__":
    main()
