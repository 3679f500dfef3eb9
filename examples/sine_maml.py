"""Sine-wave regression, the MAML paper's toy experiment: MAML, first-order MAML, Reptile,
Meta-SGD, iMAML and model pre-training, trained and compared on the same held-out tasks.

    python examples/sine_maml.py                 # all six, the paper's setting, about three minutes
    python examples/sine_maml.py --algo maml metasgd imaml --iters 2000

Each task is y = a sin(x - b), a in [0.1, 5], b in [0, pi], x in [-5, 5]; K support
points per task. The model is a 1-40-40-1 ReLU MLP. Meta-training uses meta-batches
of 25 tasks, one inner SGD step with learning rate 0.01, and Adam (1e-3) outside.
Meta-SGD starts its learned rates at 0.01 (one per weight). iMAML takes 10 inner
steps of lr 0.005 on the support loss plus lambda/2 ||theta - phi||^2 (lambda 20)
and 5 conjugate-gradient iterations on (I + (H + mu I)/lambda) x = g, damped by
mu = 100. Evaluation adapts each algorithm's learned
initialisation on the same 600 test tasks with K points by the step it was
meta-trained for (plain SGD with lr 0.01; Meta-SGD with its learned rates; iMAML
with its proximal pull), and reports the query MSE after 0, 1 and 10 steps.

The default iterations keep the whole run under five minutes on 2 cores: MAML
and Meta-SGD (the pair compared) get the same 20,000; first-order MAML and
Reptile 15,000; pre-training, whose loss flattens early, 5,000; iMAML 1,000:
on this task its initialisation drifts toward ever higher curvature, until the
fixed-step inner descent diverges (with seed 0: after 941 iterations undamped,
1,417 with mu = 100; every setting of lambda, inner lr and steps tried diverged,
between 340 and 1,500 iterations; damping mu = 50 to 200 all lasted the 1,000). Outputs, under --out:
results.md (the table) and sine.png (fits before and after adaptation for MAML,
Meta-SGD and pre-training, and MSE against steps for all).

Under an MPI launcher (`mpiexec -n 2 python examples/sine_maml.py`, with
tinymeta[mpi] installed) the processes share each meta-batch; rank 0 evaluates
and writes the results.
"""
import argparse
import time
from pathlib import Path

import numpy as np

from tinymeta.data import SineTasks
from tinymeta.data.sine import curve
from tinymeta.grad_mode import no_grad
from tinymeta.meta import IMAML, MAML, MetaSGD, Pretrain, Reptile, evaluate, meta_train
from tinymeta.meta.adapt import fresh_leaves
from tinymeta.meta.distributed import communicator
from tinymeta.meta.imaml import proximal_adapt
from tinymeta.nn import sine_mlp
from tinymeta.nn.functional import mse_loss
from tinymeta.optim import Adam

ALGORITHMS = ("maml", "fomaml", "reptile", "metasgd", "imaml", "pretrain")
LABELS = {"maml": "MAML", "fomaml": "first-order MAML", "reptile": "Reptile", "metasgd": "Meta-SGD",
          "imaml": "iMAML", "pretrain": "pre-training"}
DEFAULT_ITERS = {"maml": 20000, "fomaml": 15000, "reptile": 15000, "metasgd": 20000, "imaml": 1000,
                 "pretrain": 5000}
EVAL_STEPS = tuple(range(11))
META_BATCH, INNER_LR, OUTER_LR = 25, 0.01, 1e-3
IMAML_LAMBDA, IMAML_INNER_LR, IMAML_CG_STEPS, IMAML_DAMPING = 20.0, 0.005, 5, 100.0


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", nargs="+", choices=ALGORITHMS, default=list(ALGORITHMS),
                   help="which algorithms to train and compare (default: all six)")
    p.add_argument("--iters", type=int, default=None,
                   help="meta-iterations per algorithm (default: "
                        + ", ".join(f"{a} {n}" for a, n in DEFAULT_ITERS.items()) + ")")
    p.add_argument("--shots", type=int, default=10, help="K: support points per task (default 10)")
    p.add_argument("--inner-steps", type=int, default=1,
                   help="inner SGD steps during meta-training for MAML, first-order MAML and Meta-SGD (default 1)")
    p.add_argument("--reptile-steps", type=int, default=5, help="inner SGD steps of Reptile (default 5)")
    p.add_argument("--imaml-steps", type=int, default=10, help="inner steps of iMAML (default 10)")
    p.add_argument("--eval-tasks", type=int, default=600, help="held-out test tasks (default 600)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--out", type=Path, default=Path("examples/results/sine"),
                   help="folder for results.md and sine.png (default examples/results/sine)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the model runs (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args()
    for name in ("shots", "inner_steps", "reptile_steps", "imaml_steps", "eval_tasks"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.iters is not None and args.iters < 0:
        p.error(f"--iters must be non-negative, got {args.iters}")
    return args


def make_learner(algo, model, args, rng):
    """Every learner adapts all tasks of a meta-batch in one batched pass (vectorize=True); MAML's
    and Meta-SGD's passes are replayed (replay=True: the same values, without the graph's Python
    bookkeeping, tinymeta/replay.py)."""
    if algo == "maml":
        return MAML(model, INNER_LR, args.inner_steps, vectorize=True, replay=True)
    if algo == "fomaml":
        return MAML(model, INNER_LR, args.inner_steps, first_order=True, vectorize=True, replay=True)
    if algo == "reptile":
        # outer_lr 1.0: the Reptile gradient phi - theta goes to Adam, like the others' gradients
        return Reptile(model, INNER_LR, args.reptile_steps, inner_batch=args.shots, outer_lr=1.0, rng=rng,
                       vectorize=True)
    if algo == "metasgd":
        return MetaSGD(model, INNER_LR, args.inner_steps, vectorize=True, replay=True)
    if algo == "imaml":
        return IMAML(model, IMAML_INNER_LR, args.imaml_steps, IMAML_LAMBDA, cg_steps=IMAML_CG_STEPS,
                     damping=IMAML_DAMPING, vectorize=True)
    return Pretrain(model)


def adaptation(learner):
    """(evaluate's inner_lr and proximal arguments, a label): how the learner adapts at test time."""
    if isinstance(learner, MetaSGD):
        rates = {name: rate.detach() for name, rate in learner.inner_lr.items()}
        return {"inner_lr": rates, "proximal": 0.0}, "learned rates"
    if isinstance(learner, IMAML):
        return {"inner_lr": IMAML_INNER_LR, "proximal": IMAML_LAMBDA}, f"lr {IMAML_INNER_LR}, pull λ {IMAML_LAMBDA:g}"
    return {"inner_lr": INNER_LR, "proximal": 0.0}, f"lr {INNER_LR}"


def train(algo, args, task_source, processes):
    rng = np.random.default_rng([args.seed, ALGORITHMS.index(algo)])
    model = sine_mlp(np.random.default_rng(args.seed)).to(args.device)  # the same initial phi for every algorithm
    learner = make_learner(algo, model, args, rng)
    iterations = args.iters if args.iters is not None else DEFAULT_ITERS[algo]
    start = time.perf_counter()
    meta_train(learner, task_source, Adam(learner.parameters_dict(), lr=OUTER_LR), iterations, META_BATCH, rng,
               progress=not args.no_progress, description=f"{LABELS[algo]:>16}", communicator=processes)
    return learner, iterations, time.perf_counter() - start


def table(results, trained, steps_by):
    header = ("| algorithm | meta-iterations | train time | adaptation step | "
              + " | ".join(f"MSE after {k} steps" for k in (0, 1, 10)) + " |")
    lines = [header, "|---|---|---|---|---|---|---|"]
    for algo, result in results.items():
        iterations, seconds = trained[algo]
        cells = " | ".join(cell(result["loss"][k]) for k in (0, 1, 10))
        lines.append(f"| {LABELS[algo]} | {iterations} | {seconds:.0f} s | {steps_by[algo]} | {cells} |")
    return "\n".join(lines)


def cell(estimate):
    """An Estimate, or "diverged" where adaptation overflowed on some test task (mean inf or nan)."""
    return str(estimate) if np.isfinite(estimate.mean) else "diverged"


def fits(learner, task, steps):
    """Predictions on a grid after each number of the learner's adaptation steps on the task's support set."""
    model, (how, _) = learner.model, adaptation(learner)
    grid = np.linspace(-5, 5, 200, dtype=np.float32).reshape(-1, 1)
    phi = model.parameters_dict()
    theta, curves = fresh_leaves(phi), {}
    for k in range(max(steps) + 1):
        if k in steps:
            with no_grad():
                curves[k] = model(grid, params=theta).numpy().ravel()
        theta = proximal_adapt(model, phi, theta, task.support, mse_loss, 1, how["inner_lr"], how["proximal"],
                               create_graph=False)
    return grid.ravel(), curves


def plot(path, learners, results, task_source, seed, shots, n_eval_tasks):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng([seed, 99])
    curves_of_tasks = [task_source.draw_curve(rng) for _ in range(2)]
    shown = [a for a in ("maml", "metasgd", "pretrain") if a in learners]
    fig = plt.figure(figsize=(4.2 * (len(shown) + 1), 6.4))
    grid_spec = fig.add_gridspec(2, len(shown) + 1)
    for row, (amplitude, phase) in enumerate(curves_of_tasks):
        task = task_source.task(amplitude, phase, rng)
        for col, algo in enumerate(shown):
            ax = fig.add_subplot(grid_spec[row, col])
            xs, predictions = fits(learners[algo], task, (0, 1, 10))
            ax.plot(xs, curve(xs, amplitude, phase), color="black", lw=2, label="true function")
            for k, style in ((0, ":"), (1, "--"), (10, "-")):
                ax.plot(xs, predictions[k], style, label=f"after {k} step{'s' if k != 1 else ''}")
            ax.scatter(task.support.inputs.ravel(), task.support.targets.ravel(), color="red", zorder=3,
                       label=f"{shots} support points")
            ax.set_title(f"{LABELS[algo]}, task {row + 1}")
            ax.set_ylim(-6, 6)
            if row == 0 and col == 0:
                ax.legend(fontsize=7, loc="lower left")
    ax = fig.add_subplot(grid_spec[:, -1])
    for algo, result in results.items():
        means = [result["loss"][k].mean for k in EVAL_STEPS]
        cis = [result["loss"][k].ci95 for k in EVAL_STEPS]
        ax.errorbar(EVAL_STEPS, means, yerr=cis, marker="o", ms=3, capsize=2, label=LABELS[algo])
    ax.set_xlabel("gradient steps on the support set")
    ax.set_ylabel(f"query MSE ({n_eval_tasks} test tasks, 95% CI)")
    ax.set_yscale("log")
    ax.set_ylim(top=30)   # an adaptation that diverges leaves the plot rather than squashing the others
    ax.legend()
    ax.set_title(f"K = {shots}: MSE against steps")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main():
    args = parse_args()
    processes = communicator()
    task_source = SineTasks(shots=args.shots, queries=args.shots)
    test_tasks = task_source.sample(args.eval_tasks, np.random.default_rng([args.seed, 1000]))
    learners, results, trained, steps_by = {}, {}, {}, {}
    for algo in args.algo:
        learner, iterations, seconds = train(algo, args, task_source, processes)
        learners[algo], trained[algo] = learner, (iterations, seconds)
        how, steps_by[algo] = adaptation(learner)
        if processes.is_root:
            results[algo] = evaluate(learner.model, test_tasks, mse_loss, steps=EVAL_STEPS, **how)
    if not processes.is_root:
        return
    report = "\n".join([
        f"Sine regression, K = {args.shots}, {args.eval_tasks} held-out tasks, seed {args.seed}; "
        "adaptation: SGD steps as each algorithm meta-trained them. Mean query MSE ± 95% CI half-width.", "",
        table(results, trained, steps_by)])
    print("\n" + report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(report + "\n")
    plot(args.out / "sine.png", learners, results, task_source, args.seed, args.shots, args.eval_tasks)
    print(f"\nwrote {args.out / 'results.md'} and {args.out / 'sine.png'}")


if __name__ == "__main__":
    main()
