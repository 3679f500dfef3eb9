"""Reptile (Nichol, Achiam & Schulman, 2018).

For each task, run k steps of plain SGD from phi to theta_n (no gradient
recorded), then move phi toward the adapted parameters:

    phi <- phi + epsilon * (1/N sum_n theta_n - phi)

This is a gradient step with step size epsilon on the "Reptile gradient"
phi - mean(theta_n), which is what `meta_gradients` returns: an SGD optimizer
with lr = epsilon performs exactly the update above, and any other optimizer
(Adam, or a schedule that anneals epsilon) can be used on it instead.
In the lecture's picture it follows g1 + g2, the sum of the inner gradients.
"""
import numpy as np

from ..data.task import Examples, stack_tasks
from ..grad_mode import no_grad
from ..nn.functional import mse_loss
from ..optim import SGD
from .adapt import adapt, fresh_leaves, per_task_copies, summed_over_tasks
from .learner import MetaLearner, check_meta_batch


class Reptile(MetaLearner):
    """Meta-learns an initialisation by moving it toward the task-adapted parameters.

    Each inner step uses `inner_batch` support examples (all of them when
    inner_batch >= the support size), visiting the support set in a random
    order drawn from `rng`. vectorize=True adapts the whole meta-batch at once
    (as in MAML; same result, for models whose layers take a task axis).
    """

    def __init__(self, model, inner_lr, inner_steps, inner_batch, outer_lr, loss_fn=mse_loss, rng=None,
                 vectorize=False):
        if inner_steps < 1 or inner_batch < 1:
            raise ValueError(f"Reptile: inner_steps ({inner_steps}) and inner_batch ({inner_batch}) must be positive")
        self.model, self.inner_lr, self.inner_steps = model, inner_lr, inner_steps
        self.inner_batch, self.outer_lr, self.loss_fn = inner_batch, outer_lr, loss_fn
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.vectorize = vectorize

    def optimizer(self):
        """SGD with lr = epsilon: on the Reptile gradient it is exactly phi += eps (theta - phi)."""
        return SGD(self.model.parameters_dict(), lr=self.outer_lr)

    def adapt(self, params, support, loss_fn=None):
        """theta after inner_steps SGD steps on minibatches of the support set, nothing recorded."""
        theta = fresh_leaves(params)
        for batch in self._minibatches(support):
            theta = fresh_leaves(adapt(self.model, theta, batch, loss_fn or self.loss_fn, 1, self.inner_lr,
                                        create_graph=False))
        return theta

    def _minibatches(self, support):
        """inner_steps minibatches of the support set (along its example axis, which is axis 1 when stacked)."""
        inputs, targets = support
        axis = 1 if self.vectorize else 0
        n = inputs.shape[axis]
        if self.inner_batch >= n:
            return [support] * self.inner_steps
        rounds = -(-self.inner_steps * self.inner_batch // n)
        order = np.concatenate([self.rng.permutation(n) for _ in range(rounds)])
        picks = order[: self.inner_steps * self.inner_batch].reshape(self.inner_steps, self.inner_batch)
        return [Examples(inputs.take(idx, axis=axis), targets.take(idx, axis=axis)) for idx in picks]

    def meta_gradients(self, tasks):
        """(mean query loss after adaptation, {name: phi - mean_n theta_n})."""
        check_meta_batch(self, tasks)
        phi = self.model.parameters_dict()
        if self.vectorize:
            batch = stack_tasks(tasks)
            n_tasks = len(tasks)
            theta = self.adapt(per_task_copies(phi, n_tasks), batch.support, summed_over_tasks(self.loss_fn, n_tasks))
            with no_grad():
                loss = self.loss_fn(self.model(batch.query.inputs, params=theta), batch.query.targets).item()
            mean_theta = {name: theta[name].data.mean(axis=0) for name in phi}
        else:
            adapted = [self.adapt(phi, task.support) for task in tasks]
            with no_grad():
                loss = float(np.mean([self.loss_fn(self.model(t.query.inputs, params=theta), t.query.targets).item()
                                      for t, theta in zip(tasks, adapted)]))
            mean_theta = {name: sum(theta[name].data for theta in adapted) / len(adapted) for name in phi}
        return loss, {name: phi[name].data - mean_theta[name] for name in phi}


