"""Omniglot N-way K-shot classification with MAML, first-order MAML, Reptile, Meta-SGD or iMAML.

    python examples/omniglot.py --data ../shared/data/omniglot          # MAML, 5-way 1-shot
    python examples/omniglot.py --data ../shared/data/omniglot --algo reptile --way 20 --shot 5
    python examples/omniglot.py --data ../shared/data/omniglot --algo imaml --out examples/results/omniglot/imaml
    python examples/omniglot.py --download                               # fetch the full data set

Defaults follow each paper's published code for the --algo and --way asked for
(examples/omniglot_settings.py says where each number comes from): MAML and
first-order MAML as cbfinn/maml runs them (5-way: meta-batch 32, one inner SGD
step of lr 0.4, 3 steps at test; 20-way: meta-batch 16, 5 steps of lr 0.1, 5 at
test; 40,000 iterations; Adam 1e-3 outside; query = shot drawings per class in
meta-training). Reptile as openai/supervised-reptile runs it: Adam (betas 0,
0.999) in the inner loop, its moments carried from task to task; tasks of 10
drawings per class (--train-shots) in minibatches of 10 (20-way: 20), 5 inner
steps (20-way: 10) of lr 0.001 (0.0005), meta-batch 5, outer step size 1
annealed linearly to 0, 100,000 iterations (200,000); at test 50 steps in
minibatches of 5 (10). Meta-SGD and iMAML keep this example's earlier settings.
The network is four [3x3 conv 64, batch norm, ReLU] blocks with stride-2
convolutions, then linear. Characters are split into train / validation / test
(seeded); each quarter turn of a training character is a class of its own.

Every --val-every iterations (default: 40 points over the run) the script measures
accuracy on training and validation tasks, keeps the best checkpoint by validation
accuracy (batch norm as --batch-norm says) and writes a checkpoint; history.json
records each point with the training seconds so far (validation excluded), which
--resume continues. At the end it tests the best checkpoint on --eval-tasks tasks
of characters never trained on, with transductive batch norm (statistics of the
batch at hand, as MAML) and without (support-set statistics only), and writes
results.md, results.json (what examples/omniglot_table.py reads) and curves.png.
Outputs go to --out, with best.npz and checkpoint.npz. A cell whose training is
another's (Reptile's 5-shot cells train exactly as its 1-shot ones: tasks of
--train-shots drawings either way) is tested from that finished run with
--trained-by RUN, without training again.

In one process, --threads threads (default: one per core) share each
meta-batch (tinymeta.meta.TaskThreads; the meta-gradient is the same). Under an
MPI launcher (`mpiexec -n 2 python examples/omniglot.py ...`, with
tinymeta[mpi] installed) the processes share it instead: rank 0 reads the data
and sends it to the others, validates, checkpoints and writes the results.
"""
import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from omniglot_settings import SOURCES, published_settings
from tinymeta import nn
from tinymeta.data.omniglot import DRAWINGS, load_omniglot, split_by_alphabet, split_by_character
from tinymeta.data.sampler import FewShotSampler
from tinymeta.grad_mode import no_grad
from tinymeta.meta import IMAML, MAML, MetaSGD, Reptile, TaskThreads, evaluate, meta_train
from tinymeta.meta.adapt import fresh_leaves
from tinymeta.meta.checkpoint import checkpoint_info
from tinymeta.meta.distributed import communicator
from tinymeta.meta.imaml import proximal_adapt
from tinymeta.meta.evaluate import estimate
from tinymeta.nn.functional import accuracy, cross_entropy
from tinymeta.optim import Adam, InnerAdam

BATCH_NORMS = ("transductive", "support-stats")
# what a resumed run must share with the run it continues (--iters may grow); iMAML's own settings too for iMAML
SAME_RUN = ("algo", "way", "shot", "query", "train_shots", "inner_steps", "inner_lr", "inner_batch", "inner_optimizer",
            "meta_batch", "outer_lr", "meta_step_final", "downsample", "split", "seed")
IMAML_ONLY = ("lam", "cg_steps", "damping")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    published = "default: as the paper's code, see examples/omniglot_settings.py"
    p.add_argument("--way", type=int, default=5, help="classes per task (default 5)")
    p.add_argument("--shot", type=int, default=1, help="support drawings per class (default 1)")
    p.add_argument("--query", type=int, default=None,
                   help="query drawings per class during meta-training (default: = shot, as MAML's code; "
                        "Reptile 1, only to report a meta-loss)")
    p.add_argument("--train-shots", type=int, default=None,
                   help="Reptile: drawings per class of a training task (default 10, as its code's --train-shots)")
    p.add_argument("--eval-query", type=int, default=15, help="query drawings per class at validation and test (default 15)")
    p.add_argument("--algo", choices=("maml", "fomaml", "reptile", "metasgd", "imaml"), default="maml",
                   help="meta-learner (default maml)")
    p.add_argument("--inner-steps", type=int, default=None, help=f"inner steps in meta-training ({published})")
    p.add_argument("--inner-lr", type=float, default=None, help=f"inner learning rate ({published})")
    p.add_argument("--inner-optimizer", choices=("sgd", "adam"), default=None,
                   help="inner-loop steps: SGD, or Adam with betas (0, 0.999) whose moments carry over from task to "
                        "task (Reptile only; default: adam for Reptile as its code, else sgd)")
    p.add_argument("--inner-batch", type=int, default=None,
                   help="Reptile: examples per inner step (default 10 at 5-way, 20 at 20-way, as its code)")
    p.add_argument("--lam", type=float, default=None, help="iMAML's proximal strength lambda (default 2, as its code)")
    p.add_argument("--cg-steps", type=int, default=None,
                   help="iMAML's conjugate-gradient iterations (default 5, as its code)")
    p.add_argument("--damping", type=float, default=None,
                   help="iMAML: mu of the damped solve (I + (H + mu I)/lambda) x = g (default 22, the system its "
                        "code solves; 0: the paper's formula)")
    p.add_argument("--meta-batch", type=int, default=None, help=f"tasks per meta-iteration ({published})")
    p.add_argument("--outer-lr", type=float, default=None,
                   help="outer learning rate: Adam's (default 0.001, as MAML's code) or Reptile's step size epsilon "
                        "(default 1, as its code's --meta-step)")
    p.add_argument("--meta-step-final", type=float, default=None,
                   help="Reptile: the step size epsilon reached by the last iteration, annealed linearly (default 0)")
    p.add_argument("--iters", type=int, default=None, help=f"meta-iterations ({published})")
    p.add_argument("--eval-steps", type=int, default=None, help=f"adaptation steps at validation and test ({published})")
    p.add_argument("--eval-batch", type=int, default=None,
                   help="Reptile: examples per adaptation step at test (default 5 at 5-way, 10 at 20-way, as its code)")
    p.add_argument("--eval-tasks", type=int, default=600, help="test tasks (default 600)")
    p.add_argument("--val-every", type=int, default=None,
                   help="iterations between validations and checkpoints (default: iters / 40)")
    p.add_argument("--val-tasks", type=int, default=100, help="tasks per validation (default 100)")
    p.add_argument("--downsample", choices=("stride", "maxpool"), default="stride",
                   help="halve the image by stride-2 convs (the papers' Omniglot code) or 2x2 max-pooling")
    p.add_argument("--batch-norm", choices=BATCH_NORMS, default="transductive",
                   help="the batch norm validation picks the best checkpoint by: statistics of the batch at hand "
                        "(as MAML does) or only those of the support set (non-transductive); the test reports both")
    p.add_argument("--split", choices=("character", "alphabet"), default="character",
                   help="split characters at random, or whole alphabets (harder)")
    p.add_argument("--data", type=Path, default=None,
                   help="folder with the Omniglot zips (default: $TINYMETA_DATA, then ~/.cache/tinymeta/omniglot)")
    p.add_argument("--download", action="store_true", help="download the official zips if none are found")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--out", type=Path, default=Path("examples/results/omniglot"), help="output folder")
    p.add_argument("--trained-by", type=Path, default=None, metavar="RUN",
                   help="do not train: test the best checkpoint of the finished run in folder RUN, whose training "
                        "must be this command's (Reptile's 5-shot cells train exactly as its 1-shot ones, on tasks "
                        "of --train-shots drawings; only the test differs)")
    p.add_argument("--resume", action="store_true",
                   help="continue from --out/checkpoint.npz: parameters, optimizer and inner Adam state, random "
                        "generators, history and best checkpoint")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the model runs (default cpu)")
    p.add_argument("--per-task-loop", action="store_true",
                   help="adapt the tasks of a meta-batch one by one (the readable reference) instead of in one "
                        "batched pass; the meta-gradient is the same")
    p.add_argument("--threads", type=int, default=None,
                   help="threads that share each meta-batch (default: one per core; one under an MPI launcher)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    fill_defaults(args, p)
    return args


def fill_defaults(args, parser):
    """Every setting not given on the command line, from the published settings of (algo, way)."""
    settings = published_settings(args.algo, args.way)
    reptile = args.algo == "reptile"
    for name in ("inner_steps", "inner_lr", "inner_optimizer", "meta_batch", "iters", "eval_steps"):
        if getattr(args, name) is None:
            setattr(args, name, settings[name])
    imaml = args.algo == "imaml"
    for name in IMAML_ONLY:
        if getattr(args, name) is None and imaml:
            setattr(args, name, settings[name])
        elif getattr(args, name) is not None and not imaml:
            parser.error(f"--{name.replace('_', '-')} applies to iMAML only (--algo imaml), not to --algo {args.algo}")
    for name, value in (("inner_batch", settings.get("inner_batch")), ("eval_batch", settings.get("eval_batch")),
                        ("train_shots", settings.get("train_shots", args.shot)),
                        ("outer_lr", settings.get("outer_lr", 1e-3)),
                        ("meta_step_final", settings.get("meta_step_final"))):
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.query is None:
        args.query = 1 if reptile else args.shot
    if args.val_every is None:
        args.val_every = max(1, args.iters // 40)
    if args.threads is None:
        args.threads = os.cpu_count() or 1
    if imaml and args.lam <= 0:
        parser.error(f"--lam must be positive, got {args.lam}")
    if imaml and args.damping < 0:
        parser.error(f"--damping must be zero or positive, got {args.damping}")
    if not reptile:
        given = [f"--{name.replace('_', '-')}" for name in ("inner_batch", "eval_batch", "meta_step_final")
                 if getattr(args, name) is not None]
        if given or args.inner_optimizer != "sgd" or args.train_shots != args.shot:
            parser.error(f"{', '.join(given) or '--inner-optimizer adam / --train-shots'} apply to Reptile only "
                         f"(--algo reptile), not to --algo {args.algo}")
    if args.trained_by is not None and args.resume:
        parser.error("--trained-by tests a finished run and trains nothing: it takes no --resume")
    counts = ["way", "shot", "query", "train_shots", "eval_query", "inner_steps", "eval_steps", "meta_batch",
              "iters", "eval_tasks", "val_every", "val_tasks", "threads"]
    for name in counts + (["inner_batch", "eval_batch"] if reptile else []) + (["cg_steps"] if imaml else []):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("inner_lr", "outer_lr"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for given, drawings in (("--shot + --eval-query", args.shot + args.eval_query),
                            ("--train-shots + --query", args.train_shots + args.query)):
        if drawings > DRAWINGS:
            parser.error(f"{given} ask for {drawings} distinct drawings of each character; Omniglot has {DRAWINGS}")


def adapter(learner, args):
    """How the learner adapts at validation and test: (start, support, loss_fn, k) -> theta after k steps.
    Reptile runs its own inner loop (minibatches of --eval-batch, its inner optimizer from the carried
    moments); the others take k SGD steps of the inner lr, Meta-SGD's learned rates, iMAML's proximal pull."""
    if isinstance(learner, Reptile):
        return lambda start, support, loss_fn, k: learner.adapt(start, support, loss_fn, steps=k, batch=args.eval_batch)
    if isinstance(learner, MetaSGD):
        rates, proximal = {name: rate.detach() for name, rate in learner.inner_lr.items()}, 0.0
    else:
        rates, proximal = args.inner_lr, args.lam if isinstance(learner, IMAML) else 0.0
    return lambda start, support, loss_fn, k: proximal_adapt(learner.model, start, start, support, loss_fn, k, rates,
                                                             proximal, create_graph=False)


def accuracy_after_adaptation(learner, tasks, args, batch_norm, support_stats_model):
    """Mean and 95% CI of query accuracy after args.eval_steps steps, with transductive batch norm
    (tasks batched) or support-set statistics (support_stats_model, task by task)."""
    if batch_norm == "transductive":
        result = evaluate(learner.model, tasks, cross_entropy, None, steps=[args.eval_steps], metric=accuracy,
                          adapter=adapter(learner, args))
        return result["metric"][args.eval_steps]
    return _support_stats_accuracy(learner, tasks, args, support_stats_model)


def _support_stats_accuracy(learner, tasks, args, twin):
    """Non-transductive: batch norm in evaluation mode with running statistics of momentum 1, so that a
    forward pass over the adapted support set stores its statistics and the query set uses them. `twin`
    is the learner's network with such statistics; adaptation itself normalises each support batch."""
    batch_norms = [m for m in twin._modules.values() if isinstance(m, nn.BatchNorm2d)]
    phi = learner.model.parameters_dict()
    adapt_k = adapter(learner, args)
    scores = []
    for task in tasks:
        theta = adapt_k(fresh_leaves(phi), task.support, cross_entropy, args.eval_steps)
        with no_grad():
            twin(task.support.inputs, params=theta)      # stores the support statistics
            for bn in batch_norms:
                bn.eval()
            scores.append(accuracy(twin(task.query.inputs, params=theta), task.query.targets))
            for bn in batch_norms:
                bn.train()
    return estimate(scores)


def omniglot_network(args, support_stats=False):
    """The four-block network; support_stats=True: the twin that keeps support-set statistics for testing."""
    model = nn.omniglot_cnn(args.way, np.random.default_rng([args.seed, 4]), downsample=args.downsample,
                            track_running_stats=support_stats, bn_momentum=1.0)
    return model.to(args.device)


def make_learner(args, model, rng):
    """The meta-learner; it adapts the whole meta-batch in one batched pass unless --per-task-loop."""
    vectorize = not args.per_task_loop
    if args.algo == "reptile":
        inner_optimizer = InnerAdam(betas=(0.0, 0.999)) if args.inner_optimizer == "adam" else None
        return Reptile(model, args.inner_lr, args.inner_steps, inner_batch=args.inner_batch, outer_lr=args.outer_lr,
                       loss_fn=cross_entropy, rng=rng, vectorize=vectorize, inner_optimizer=inner_optimizer)
    if args.algo == "metasgd":
        return MetaSGD(model, args.inner_lr, args.inner_steps, loss_fn=cross_entropy, vectorize=vectorize)
    if args.algo == "imaml":
        return IMAML(model, args.inner_lr, args.inner_steps, args.lam, cg_steps=args.cg_steps, damping=args.damping,
                     loss_fn=cross_entropy, vectorize=vectorize)
    return MAML(model, args.inner_lr, args.inner_steps, first_order=args.algo == "fomaml", loss_fn=cross_entropy,
                vectorize=vectorize)


def outer_optimizer(learner, args):
    """(optimizer, lr_schedule): Adam for MAML and the others; for Reptile SGD of step size epsilon,
    annealed linearly from --outer-lr to --meta-step-final as its code does."""
    if not isinstance(learner, Reptile):
        return Adam(learner.parameters_dict(), lr=args.outer_lr), None
    first, last = args.outer_lr, args.meta_step_final

    def epsilon(iteration):
        done = iteration / args.iters
        return done * last + (1 - done) * first
    return learner.optimizer(), epsilon


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
    ax.set_ylabel(f"accuracy after {args.eval_steps} steps ({args.batch_norm})")
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


def resumed_history(args):
    """(history, best validation accuracy) to continue from: the points up to the checkpoint's
    iteration (a run stopped between writing a point and its checkpoint redoes that point)."""
    checkpoint, history_file = args.out / "checkpoint.npz", args.out / "history.json"
    if not (args.resume and checkpoint.exists() and history_file.exists()):
        return [], -1.0
    iteration, config = checkpoint_info(checkpoint)
    same_run = SAME_RUN + (IMAML_ONLY if args.algo == "imaml" else ())
    changed = {name: (config.get(name), getattr(args, name)) for name in same_run
               if config.get(name) != getattr(args, name)}
    if changed:
        sys.exit(f"omniglot.py --resume: {checkpoint} was written by another run; settings that differ "
                 f"(checkpoint, now): {changed}")
    history = [h for h in json.loads(history_file.read_text()) if h["iteration"] <= iteration]
    return history, max((h["validation"][0] for h in history), default=-1.0)


def reproducing_command(argv):
    """The command line of this run, without --resume (resuming continues the same run)."""
    return shlex.join(["python", "examples/omniglot.py", *[a for a in argv if a != "--resume"]])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    source = None if args.trained_by is None else finished_run(args)   # before the data: refuse early
    processes = work_sharing(args)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    # rank 0 reads (or downloads) the data and sends it to the other ranks
    dataset = processes.broadcast(load_omniglot(args.data, download=args.download) if processes.is_root else None)
    split = (split_by_character if args.split == "character" else split_by_alphabet)(dataset, rng)
    if processes.is_root:
        print(f"{dataset}; {len(split.train)} training classes (rotations included), "
              f"{len(split.validation)} validation and {len(split.test)} test characters")
        print(f"{args.algo} {args.way}-way {args.shot}-shot: {args.iters} iterations of meta-batch {args.meta_batch}, "
              f"{args.inner_steps} inner {args.inner_optimizer} steps of lr {args.inner_lr}, {args.eval_steps} at "
              f"test (settings from {SOURCES[args.algo]})")

    test_tasks = FewShotSampler(split.test.images, args.way, args.shot, args.eval_query).sample(
        args.eval_tasks, np.random.default_rng([args.seed, 3]))

    model = omniglot_network(args)
    twin = omniglot_network(args, support_stats=True)   # tests without transduction
    learner = make_learner(args, model, np.random.default_rng([args.seed, 5]))
    if args.trained_by is None:
        history = train(args, processes, rng, split, learner, twin)
    if not processes.is_root:
        return
    if args.trained_by is None:
        best_file, best_point = args.out / "best.npz", max(history, key=lambda h: h["validation"][0])
        run = {"iterations": history[-1]["iteration"], "best_iteration": best_point["iteration"],
               "train_seconds": history[-1]["train_seconds"], "command": reproducing_command(argv)}
    else:  # the source run's training, this command's test
        best_file = args.trained_by / "best.npz"
        run = {key: source[key] for key in ("iterations", "best_iteration", "train_seconds")}
        run["command"] = f"{source['command']} && {reproducing_command(argv)}"
        run["trained_by"] = args.trained_by.name

    with np.load(best_file) as best_state:
        learner.load_state_dict({name: best_state[name] for name in best_state.files})
    share_weights(model, twin)
    test = {bn: accuracy_after_adaptation(learner, test_tasks, args, bn, twin) for bn in BATCH_NORMS}
    report = results_table(args, test, run)
    print("\n" + report)
    (args.out / "results.md").write_text(report + "\n")
    config = vars(args) | {"out": str(args.out), "data": str(args.data),
                           "trained_by": None if args.trained_by is None else str(args.trained_by)}
    (args.out / "results.json").write_text(json.dumps({
        "algo": args.algo, "way": args.way, "shot": args.shot, **run,
        "test": {bn: [t.mean, t.ci95] for bn, t in test.items()}, "test_tasks": args.eval_tasks,
        "config": config}, indent=1))
    if args.trained_by is None:
        plot_curves(args.out / "curves.png", history, args)


def share_weights(model, twin):
    """The twin (support-set statistics for testing) takes the model's parameters."""
    twin.load_state_dict({**twin.state_dict(), **model.state_dict()})


def train(args, processes, rng, split, learner, twin):
    """Meta-train (or continue, with --resume) with validation points and checkpoints; the history."""
    train_tasks = FewShotSampler(split.train.images, args.way, args.train_shots, args.query)
    watch_train = FewShotSampler(split.train.images, args.way, args.shot, args.eval_query).sample(
        args.val_tasks, np.random.default_rng([args.seed, 1]))
    val_tasks = FewShotSampler(split.validation.images, args.way, args.shot, args.eval_query).sample(
        args.val_tasks, np.random.default_rng([args.seed, 2]))
    optimizer, lr_schedule = outer_optimizer(learner, args)
    history_file = args.out / "history.json"
    history, best = resumed_history(args)
    if args.resume and not (args.out / "checkpoint.npz").exists() and processes.is_root:
        print(f"--resume: no checkpoint in {args.out} yet, so the run starts at iteration 0")
    clock = {"trained": history[-1]["train_seconds"] if history else 0.0, "since": time.perf_counter()}

    def on_eval(iteration):
        nonlocal best
        clock["trained"] += time.perf_counter() - clock["since"]
        share_weights(learner.model, twin)
        train_acc = accuracy_after_adaptation(learner, watch_train, args, args.batch_norm, twin)
        val_acc = accuracy_after_adaptation(learner, val_tasks, args, args.batch_norm, twin)
        history.append({"iteration": iteration, "train_seconds": clock["trained"],
                        "train": [train_acc.mean, train_acc.ci95], "validation": [val_acc.mean, val_acc.ci95]})
        history_file.write_text(json.dumps(history))
        note = ""
        if val_acc.mean > best:
            best = val_acc.mean
            np.savez(args.out / "best.npz", **learner.state_dict())   # Meta-SGD's rates, Reptile's moments included
            note = " (best so far, saved)"
        clock["since"] = time.perf_counter()
        return f"iteration {iteration}: train accuracy {train_acc}, validation accuracy {val_acc}{note}"

    config = vars(args) | {"out": str(args.out), "data": str(args.data)}
    meta_train(learner, train_tasks, optimizer, args.iters, args.meta_batch, rng, eval_every=args.val_every,
               on_eval=on_eval, checkpoint=args.out / "checkpoint.npz", resume=args.resume, config=config,
               lr_schedule=lr_schedule, progress=not args.no_progress, description=args.algo, communicator=processes)
    return history


def finished_run(args):
    """The results.json of the finished run in --trained-by, after checking that it trained as this command
    would (every training setting but the shot count, which only the test uses when --train-shots is set)."""
    results_file = args.trained_by / "results.json"
    if not results_file.exists() or not (args.trained_by / "best.npz").exists():
        sys.exit(f"omniglot.py --trained-by: {args.trained_by} holds no finished run (no results.json and "
                 "best.npz); train it first with its own command")
    results = json.loads(results_file.read_text())
    trained = results["config"]
    training = [name for name in SAME_RUN if name != "shot"] + ["iters"]
    training += list(IMAML_ONLY) if args.algo == "imaml" else []
    changed = {name: (trained.get(name), getattr(args, name)) for name in training
               if trained.get(name) != getattr(args, name)}
    if changed:
        sys.exit(f"omniglot.py --trained-by: {args.trained_by} trained with other settings than this command "
                 f"would (run, now): {changed}")
    return results


def results_table(args, test, run):
    inner = f"{args.meta_batch}, {args.inner_steps} {args.inner_optimizer} steps, {args.inner_lr}"
    if args.algo == "reptile":
        inner += f" (minibatches of {args.inner_batch} from {args.train_shots} drawings per class)"
    return "\n".join([
        f"Omniglot {args.way}-way {args.shot}-shot, {args.algo}, {args.split} split, seed {args.seed}",
        "",
        "| setting | value |", "|---|---|",
        f"| meta-iterations | {run['iterations']} (best validation at {run['best_iteration']}) |",
        *([f"| trained by | the run in {run['trained_by']}/ (the same training; this run only tests) |"]
          if "trained_by" in run else []),
        f"| meta-batch, inner steps, inner lr | {inner} |",
        *([f"| iMAML lambda, conjugate-gradient iterations, damping mu | {args.lam}, {args.cg_steps}, {args.damping} |"]
          if args.algo == "imaml" else []),
        f"| network | 4 x [conv 3x3 64, batch norm, ReLU], {args.downsample} downsampling, linear |",
        f"| best checkpoint chosen with batch norm | {args.batch_norm} |",
        f"| training wall time (validation excluded) | {run['train_seconds'] / 60:.1f} min |",
        f"| test tasks | {args.eval_tasks} ({args.eval_query} query drawings per class, {args.eval_steps} adaptation steps) |",
        *[f"| **test accuracy, {bn} batch norm** | **{t.mean * 100:.2f}% ± {t.ci95 * 100:.2f}%** (95% CI) |"
          for bn, t in test.items()]])


if __name__ == "__main__":
    main()
