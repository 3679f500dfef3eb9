"""Few-shot evaluation: how good is phi after k steps of training on a new task?

For each test task, adapt phi on its support set with plain SGD and score the
query set after each number of steps asked for (0 = phi itself). The step is
the one the learner meta-trained with: inner_lr is a number, or Meta-SGD's
learned per-parameter rates; proximal = lambda > 0 adds iMAML's pull
lambda (theta - phi) toward the initialisation. Results are the mean over
tasks and the half-width of a 95% confidence interval, 1.96 * std / sqrt(number
of tasks).
"""
from dataclasses import dataclass

import numpy as np

from ..grad_mode import no_grad
from .adapt import fresh_leaves
from .imaml import proximal_adapt


@dataclass(frozen=True)
class Estimate:
    mean: float
    ci95: float

    def __str__(self):
        return f"{self.mean:.4f} ± {self.ci95:.4f}"


def estimate(values):
    values = np.asarray(values, dtype=np.float64)
    half_width = 1.96 * values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return Estimate(float(values.mean()), float(half_width))


def evaluate(model, tasks, loss_fn, inner_lr, steps=(0, 1, 10), metric=None, params=None, proximal=0.0):
    """{"loss": {k: Estimate}, and "metric": {k: Estimate} when `metric(prediction, targets)` is given}."""
    steps = sorted(set(steps))
    if not tasks:
        raise ValueError("evaluate: no tasks to evaluate on")
    if steps[0] < 0:
        raise ValueError(f"evaluate: step counts must be non-negative, got {steps}")
    phi = params if params is not None else model.parameters_dict()
    losses = {k: [] for k in steps}
    scores = {k: [] for k in steps}
    for task in tasks:
        theta = fresh_leaves(phi)
        for k in range(steps[-1] + 1):
            if k in losses:
                with no_grad():
                    prediction = model(task.query.inputs, params=theta)
                    losses[k].append(loss_fn(prediction, task.query.targets).item())
                    if metric is not None:
                        scores[k].append(metric(prediction, task.query.targets))
            if k < steps[-1]:
                theta = proximal_adapt(model, phi, theta, task.support, loss_fn, 1, inner_lr, proximal,
                                       create_graph=False)
    result = {"loss": {k: estimate(v) for k, v in losses.items()}}
    if metric is not None:
        result["metric"] = {k: estimate(v) for k, v in scores.items()}
    return result

