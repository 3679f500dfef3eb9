"""Sine-wave regression, the MAML paper's toy experiment: MAML, first-order MAML, Reptile
and model pre-training, trained and compared on the same held-out tasks.

    python examples/sine_maml.py                 # all four, the paper's setting, a few minutes
    python examples/sine_maml.py --algo maml --iters 2000

Each task is y = a sin(x - b), a in [0.1, 5], b in [0, pi], x in [-5, 5]; K support
points per task. The model is a 1-40-40-1 ReLU MLP. Meta-training uses meta-batches
of 25 tasks, one inner SGD step with learning rate 0.01, and Adam (1e-3) outside.
Evaluation adapts each algorithm's learned initialisation on the same 600 test
tasks with K points and plain SGD (lr 0.01), and reports the query MSE after 0, 1
and 10 steps. Outputs, under --out: results.md (the table) and sine.png (fits
before and after adaptation for MAML and pre-training, and MSE against steps).

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
from tinymeta.meta import MAML, Pretrain, Reptile, evaluate, meta_train
from tinymeta.meta.adapt import adapt, fresh_leaves
from tinymeta.meta.distributed import communicator
from tinymeta.nn import sine_mlp
from tinymeta.nn.functional import mse_loss
from tinymeta.optim import Adam

ALGORITHMS = ("maml", "fomaml", "reptile", "pretrain")
LABELS = {"maml": "MAML", "fomaml": "first-order MAML", "reptile": "Reptile", "pretrain": "pre-training"}
DEFAULT_ITERS = {"maml": 30000, "fomaml": 30000, "reptile": 30000, "pretrain": 30000}
EVAL_STEPS = tuple(range(11))
META_BATCH, INNER_LR, OUTER_LR = 25, 0.01, 1e-3


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", nargs="+", choices=ALGORITHMS, default=list(ALGORITHMS),
                   help="which algorithms to train and compare (default: all four)")
    p.add_argument("--iters", type=int, default=None,
                   help="meta-iterations per algorithm (default: "
                        + ", ".join(f"{a} {n}" for a, n in DEFAULT_ITERS.items()) + ")")
    p.add_argument("--shots", type=int, default=10, help="K: support points per task (default 10)")
    p.add_argument("--inner-steps", type=int, default=1,
                   help="inner SGD steps during meta-training for MAML and first-order MAML (default 1)")
    p.add_argument("--reptile-steps", type=int, default=5, help="inner SGD steps of Reptile (default 5)")
    p.add_argument("--eval-tasks", type=int, default=600, help="held-out test tasks (default 600)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--out", type=Path, default=Path("examples/results/sine"),
                   help="folder for results.md and sine.png (default examples/results/sine)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the model runs (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args()
    for name in ("shots", "inner_steps", "reptile_steps", "eval_tasks"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.iters is not None and args.iters < 0:
        p.error(f"--iters must be non-negative, got {args.iters}")
    return args


def make_learner(algo, model, args, rng):
    """Every learner adapts all tasks of a meta-batch in one batched pass (vectorize=True)."""
    if algo == "maml":
        return MAML(model, INNER_LR, args.inner_steps, vectorize=True)
    if algo == "fomaml":
        return MAML(model, INNER_LR, args.inner_steps, first_order=True, vectorize=True)
    if algo == "reptile":
        # outer_lr 1.0: the Reptile gradient phi - theta goes to Adam, like the others' gradients
        return Reptile(model, INNER_LR, args.reptile_steps, inner_batch=args.shots, outer_lr=1.0, rng=rng,
                       vectorize=True)
    return Pretrain(model)


def train(algo, args, task_source, processes):
    rng = np.random.default_rng([args.seed, ALGORITHMS.index(algo)])
    model = sine_mlp(np.random.default_rng(args.seed)).to(args.device)  # the same initial phi for every algorithm
    learner = make_learner(algo, model, args, rng)
    iterations = args.iters if args.iters is not None else DEFAULT_ITERS[algo]
    start = time.perf_counter()
    meta_train(learner, task_source, Adam(model.parameters_dict(), lr=OUTER_LR), iterations, META_BATCH, rng,
               progress=not args.no_progress, description=f"{LABELS[algo]:>16}", communicator=processes)
    return model, iterations, time.perf_counter() - start


def table(results, trained):
    header = "| algorithm | meta-iterations | train time | " + " | ".join(f"MSE after {k} steps" for k in (0, 1, 10)) + " |"
    lines = [header, "|---|---|---|---|---|---|"]
    for algo, result in results.items():
        iterations, seconds = trained[algo]
        cells = " | ".join(str(result["loss"][k]) for k in (0, 1, 10))
        lines.append(f"| {LABELS[algo]} | {iterations} | {seconds:.0f} s | {cells} |")
    return "\n".join(lines)


def fits(model, task, steps):
    """Predictions on a grid after each number of SGD steps on the task's support set."""
    grid = np.linspace(-5, 5, 200, dtype=np.float32).reshape(-1, 1)
    theta, curves = fresh_leaves(model.parameters_dict()), {}
    for k in range(max(steps) + 1):
        if k in steps:
            with no_grad():
                curves[k] = model(grid, params=theta).numpy().ravel()
        theta = fresh_leaves(adapt(model, theta, task.support, mse_loss, 1, INNER_LR, create_graph=False))
    return grid.ravel(), curves


def plot(path, models, results, task_source, seed, shots, n_eval_tasks):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng([seed, 99])
    curves_of_tasks = [task_source.draw_curve(rng) for _ in range(2)]
    shown = [a for a in ("maml", "pretrain") if a in models]
    fig = plt.figure(figsize=(4.2 * (len(shown) + 1), 6.4))
    grid_spec = fig.add_gridspec(2, len(shown) + 1)
    for row, (amplitude, phase) in enumerate(curves_of_tasks):
        task = task_source.task(amplitude, phase, rng)
        for col, algo in enumerate(shown):
            ax = fig.add_subplot(grid_spec[row, col])
            xs, predictions = fits(models[algo], task, (0, 1, 10))
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
    models, results, trained = {}, {}, {}
    for algo in args.algo:
        model, iterations, seconds = train(algo, args, task_source, processes)
        models[algo], trained[algo] = model, (iterations, seconds)
        if processes.is_root:
            results[algo] = evaluate(model, test_tasks, mse_loss, INNER_LR, steps=EVAL_STEPS)
    if not processes.is_root:
        return
    report = "\n".join([
        f"Sine regression, K = {args.shots}, {args.eval_tasks} held-out tasks, seed {args.seed}; "
        f"adaptation: SGD with lr {INNER_LR}. Mean query MSE ± 95% CI half-width.", "", table(results, trained)])
    print("\n" + report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(report + "\n")
    plot(args.out / "sine.png", models, results, task_source, args.seed, args.shots, args.eval_tasks)
    print(f"\nwrote {args.out / 'results.md'} and {args.out / 'sine.png'}")


if __name__ == "__main__":
    main()
