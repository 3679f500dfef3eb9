"""Few-shot evaluation: how good is phi after k steps of training on a new task?

For each test task, adapt phi on its support set with plain SGD and score the
query set after each number of steps asked for (0 = phi itself). The step is
the one the learner meta-trained with: inner_lr is a number, or Meta-SGD's
learned per-parameter rates; proximal = lambda > 0 adds iMAML's pull
lambda (theta - phi) toward the initialisation. A learner with an inner loop of
its own (Reptile's minibatches and inner Adam) passes it as `adapter(start,
support, loss_fn, k) -> theta after k steps from start`, run from the start for
each k asked for. Results are the mean over
tasks and the half-width of a 95% confidence interval, 1.96 * std / sqrt(number
of tasks).

Tasks of equal sizes are adapted `task_batch` at a time in one batched pass
(a task axis on the parameters, as MAML's vectorize=True); the per-task loop,
`_scores_one_by_one`, is the reference it equals, and runs for tasks of mixed sizes.
"""
from dataclasses import dataclass

import numpy as np

from ..data.task import stack_tasks
from ..grad_mode import no_grad
from ..tensor import Tensor
from .adapt import fresh_leaves, per_task_copies, summed_over_tasks
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


def evaluate(model, tasks, loss_fn, inner_lr, steps=(0, 1, 10), metric=None, params=None, proximal=0.0,
             task_batch=32, adapter=None):
    """{"loss": {k: Estimate}, and "metric": {k: Estimate} when `metric(prediction, targets)` is given}."""
    steps = sorted(set(steps))
    if not tasks:
        raise ValueError("evaluate: no tasks to evaluate on")
    if steps[0] < 0:
        raise ValueError(f"evaluate: step counts must be non-negative, got {steps}")
    if task_batch < 1:
        raise ValueError(f"evaluate: task_batch must be at least 1, got {task_batch}")
    phi = params if params is not None else model.parameters_dict()
    scores = {"loss": {k: [] for k in steps}}
    if metric is not None:
        scores["metric"] = {k: [] for k in steps}
    equal_sizes = len({(t.support.inputs.shape, t.query.inputs.shape) for t in tasks}) == 1
    if equal_sizes:
        for start in range(0, len(tasks), task_batch):
            _scores_stacked(model, tasks[start:start + task_batch], phi, loss_fn, inner_lr, proximal, adapter, steps,
                            metric, scores)
    else:
        _scores_one_by_one(model, tasks, phi, loss_fn, inner_lr, proximal, adapter, steps, metric, scores)
    return {kind: {k: estimate(v) for k, v in per_step.items()} for kind, per_step in scores.items()}


def _adapted(model, start, support, loss_fn, inner_lr, proximal, adapter, steps):
    """(k, theta after k steps from start) for each k in steps: the adapter run from the start
    for each k, or (proximal) SGD steps of inner_lr taken once, scored on the way."""
    if adapter is not None:
        for k in steps:
            yield k, adapter(start, support, loss_fn, k)
        return
    theta, done = start, 0
    for k in steps:
        theta = proximal_adapt(model, start, theta, support, loss_fn, k - done, inner_lr, proximal, create_graph=False)
        done = k
        yield k, theta


def _scores_one_by_one(model, tasks, phi, loss_fn, inner_lr, proximal, adapter, steps, metric, scores):
    """Adapt and score each task in turn, appending to scores[kind][k]."""
    for task in tasks:
        for k, theta in _adapted(model, fresh_leaves(phi), task.support, loss_fn, inner_lr, proximal, adapter, steps):
            with no_grad():
                prediction = model(task.query.inputs, params=theta)
            _record(scores, k, loss_fn, metric, prediction, task.query.targets)


def _scores_stacked(model, tasks, phi, loss_fn, inner_lr, proximal, adapter, steps, metric, scores):
    """The same for tasks of equal sizes, adapted together with one copy of phi per task."""
    batch = stack_tasks(tasks)
    start = fresh_leaves(per_task_copies(phi, len(tasks)))
    summed_loss = summed_over_tasks(loss_fn, len(tasks))
    for k, theta in _adapted(model, start, batch.support, summed_loss, inner_lr, proximal, adapter, steps):
        with no_grad():
            predictions = model(batch.query.inputs, params=theta).data
        for prediction, targets in zip(predictions, batch.query.targets):
            _record(scores, k, loss_fn, metric, Tensor(prediction), targets)


def _record(scores, k, loss_fn, metric, prediction, targets):
    """One task's query loss (and metric) after k steps."""
    with no_grad():
        scores["loss"][k].append(loss_fn(prediction, targets).item())
        if metric is not None:
            scores["metric"][k].append(metric(prediction, targets))
