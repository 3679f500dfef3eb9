"""Reptile (Nichol, Achiam & Schulman, 2018).

For each task, run k steps of plain SGD from phi to theta_n (no gradient
recorded), then move phi toward the adapted parameters:

    phi <- phi + epsilon * (1/N sum_n theta_n - phi)

This is a gradient step with step size epsilon on the "Reptile gradient"
phi - mean(theta_n), which is what `meta_gradients` returns: an SGD optimizer
with lr = epsilon performs exactly the update above, and any other optimizer
(Adam, or a schedule that anneals epsilon) can be used on it instead.
In the lecture's picture it follows g1 + g2, the sum of the inner gradients.

The inner loop is plain SGD, or, with inner_optimizer=InnerAdam(), Adam as the
paper's code runs it (betas (0, 0.999)). That code keeps one Adam optimizer
for the whole run: its moments carry over from task to task and from one
meta-iteration to the next (only the weights are reset to phi). Here every task
of a meta-batch starts from the same carried moments, so that the tasks stay
independent (batched, threads, MPI ranks); after the outer step the carried
moments become the meta-batch mean of each task's final moments, and their
step count advances by inner_steps. `meta_gradients` returns those means beside
the Reptile gradient, under "inner_adam.m.<name>" and "inner_adam.v.<name>",
so that every way of sharing a meta-batch averages them like the gradient;
`carry` takes them in. The moments are part of `state_dict` (checkpoints), and
test-time adaptation (`adapt`) starts from them too, as the paper's code does.

When inner_batch is smaller than the support set, the inner steps walk through
the support set in a random order drawn from the learner's own Generator, one
order per meta-iteration for every task of it: each call reads a copy of the
Generator, which `carry` advances after the outer step. So however a meta-batch
is shared (stacked, threads, MPI ranks: none knows the others' tasks), every
share takes the same minibatches and the run is the same; and evaluation, which
adapts between outer steps (every task in that one order), leaves the training's
orders alone. A shared order
is still a fair draw for each task: its examples sit in random order of class
and drawing (data/sampler.py).
"""
import copy
from collections import OrderedDict

import numpy as np

from ..backend import device_of, to_device, to_numpy
from ..data.task import Examples, stack_tasks
from ..grad_mode import no_grad
from ..nn.functional import mse_loss
from ..optim import SGD, AdamMoments, sgd_step
from .adapt import adapt, fresh_leaves, per_task_copies, summed_over_tasks
from .learner import MetaLearner, check_meta_batch, check_positive
from .task_groups import check_tasks_per_pass, in_groups

MOMENTS_PREFIX = "inner_adam."


class Reptile(MetaLearner):
    """Meta-learns an initialisation by moving it toward the task-adapted parameters.

    Each inner step uses `inner_batch` support examples (all of them when
    inner_batch >= the support size), visiting the support set in a random
    order drawn from `rng`, the same for every task of a meta-iteration.
    vectorize=True adapts the meta-batch in stacked passes (as in MAML; same
    result, for models whose layers take a task axis), of at most tasks_per_pass
    tasks each (default: by the inputs' size, task_groups.py).
    inner_optimizer: None for SGD steps of inner_lr, or an optim.InnerAdam.
    """

    def __init__(self, model, inner_lr, inner_steps, inner_batch, outer_lr, loss_fn=mse_loss, rng=None,
                 vectorize=False, inner_optimizer=None, tasks_per_pass=None):
        if inner_steps < 1 or inner_batch < 1:
            raise ValueError(f"Reptile: inner_steps ({inner_steps}) and inner_batch ({inner_batch}) must be positive")
        check_positive("Reptile", inner_lr=inner_lr, outer_lr=outer_lr)
        check_tasks_per_pass("Reptile", tasks_per_pass, vectorize)
        self.model, self.inner_lr, self.inner_steps = model, inner_lr, inner_steps
        self.inner_batch, self.outer_lr, self.loss_fn = inner_batch, outer_lr, loss_fn
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.vectorize, self.tasks_per_pass = vectorize, tasks_per_pass
        self.inner_optimizer = inner_optimizer
        self.moments = None if inner_optimizer is None else inner_optimizer.zero_moments(model.parameters_dict())

    def optimizer(self):
        """SGD with lr = epsilon: on the Reptile gradient it is exactly phi += eps (theta - phi)."""
        return SGD(self.model.parameters_dict(), lr=self.outer_lr)

    def adapt(self, params, support, loss_fn=None, steps=None, batch=None):
        """theta after `steps` (default inner_steps) inner steps on minibatches of `batch` (default
        inner_batch) support examples, from the carried moments; nothing recorded. `params` may
        carry a leading task axis (per_task_copies) with `support` stacked to match."""
        return self._adapt(params, support, loss_fn, steps, batch)[0]

    def _adapt(self, params, support, loss_fn=None, steps=None, batch=None):
        """(theta, the moments the inner Adam ended with, or None for SGD)."""
        step = sgd_step if self.inner_optimizer is None else self.inner_optimizer.stepper(self.moments)
        stacked = _has_task_axis(params, self.model.parameters_dict())
        theta = fresh_leaves(params)
        for minibatch in self._minibatches(support, steps or self.inner_steps, batch or self.inner_batch, stacked):
            theta = fresh_leaves(adapt(self.model, theta, minibatch, loss_fn or self.loss_fn, 1, self.inner_lr,
                                       create_graph=False, step=step))
        return theta, (None if self.inner_optimizer is None else step.moments)

    def _minibatches(self, support, steps, batch, stacked):
        """`steps` minibatches of the support set (along its example axis, axis 1 when stacked)."""
        inputs, targets = support
        axis = 1 if stacked else 0
        n = inputs.shape[axis]
        if batch >= n:
            return [support] * steps
        rounds = -(-steps * batch // n)
        this_iteration = copy.deepcopy(self.rng)   # the same order for every call until carry advances rng
        order = np.concatenate([this_iteration.permutation(n) for _ in range(rounds)])
        picks = order[: steps * batch].reshape(steps, batch)
        return [Examples(inputs.take(idx, axis=axis), targets.take(idx, axis=axis)) for idx in picks]

    def meta_gradients(self, tasks):
        """(mean query loss after adaptation, {name: phi - mean_n theta_n}), and with an inner
        Adam the meta-batch means of its final moments (see the module docstring)."""
        check_meta_batch(self, tasks)
        if self.vectorize:
            return in_groups(self._stacked_meta_gradients, tasks, self.tasks_per_pass, self.model.device)
        phi = self.model.parameters_dict()
        adapted = [self._adapt(phi, task.support) for task in tasks]
        with no_grad():
            loss = float(np.mean([self.loss_fn(self.model(t.query.inputs, params=theta), t.query.targets).item()
                                  for t, (theta, _) in zip(tasks, adapted)]))
        mean_theta = {name: sum(theta[name].data for theta, _ in adapted) / len(adapted) for name in phi}
        means = {} if self.moments is None else _mean_of_moments([moments for _, moments in adapted])
        return loss, _reptile_gradient(phi, mean_theta, means)

    def _stacked_meta_gradients(self, tasks):
        phi = self.model.parameters_dict()
        batch = stack_tasks(tasks)
        n_tasks = len(tasks)
        theta, moments = self._adapt(per_task_copies(phi, n_tasks), batch.support,
                                     summed_over_tasks(self.loss_fn, n_tasks))
        with no_grad():
            loss = self.loss_fn(self.model(batch.query.inputs, params=theta), batch.query.targets).item()
        mean_theta = {name: theta[name].data.mean(axis=0) for name in phi}
        means = {} if moments is None else _task_means(moments)
        return loss, _reptile_gradient(phi, mean_theta, means)

    def averaged(self):
        """The parameters, and the carried inner moments (their meta-batch means travel with the gradient)."""
        return OrderedDict(list(self.parameters_dict().items()) + list(_flat_moments(self.moments).items()))

    def carry(self, means):
        """After the outer step: the next meta-iteration's minibatch order, and the carried moments
        become the meta-batch means, inner_steps steps on."""
        self.rng.random()   # one draw moves rng on: _minibatches reads it through a copy
        if self.moments is None:
            return
        m, v = ({name: means[f"{MOMENTS_PREFIX}{kind}.{name}"] for name in self.moments.m} for kind in ("m", "v"))
        self.moments = AdamMoments(m, v, self.moments.t + self.inner_steps)

    def state_dict(self):
        state = self.model.state_dict()
        if self.moments is not None:
            state.update((name, to_numpy(value)) for name, value in _flat_moments(self.moments).items())
            state[MOMENTS_PREFIX + "t"] = np.array(self.moments.t)
        return state

    def load_state_dict(self, state):
        ours = {name: value for name, value in state.items() if name.startswith(MOMENTS_PREFIX)}
        self.model.load_state_dict({name: value for name, value in state.items() if name not in ours})
        if self.moments is None:
            if ours:
                raise KeyError(f"Reptile.load_state_dict: the state holds inner Adam moments {sorted(ours)[:2]}..., "
                               "but this Reptile's inner loop is SGD")
            return
        phi = self.model.parameters_dict()
        expected = set(_flat_moments(self.moments)) | {MOMENTS_PREFIX + "t"}
        if set(ours) != expected:
            raise KeyError(f"Reptile.load_state_dict: inner Adam moments missing {sorted(expected - set(ours))}, "
                           f"unexpected {sorted(set(ours) - expected)}")
        m, v = ({name: to_device(np.asarray(ours[f"{MOMENTS_PREFIX}{kind}.{name}"]), device_of(p.data))
                 for name, p in phi.items()} for kind in ("m", "v"))
        self.moments = AdamMoments(m, v, int(ours[MOMENTS_PREFIX + "t"]))

    def generators(self):
        """The Generator of the inner minibatch order (a checkpoint saves its state)."""
        return {"reptile.minibatches": self.rng}


def _reptile_gradient(phi, mean_theta, moment_means):
    """{name: phi - mean_n theta_n}, and the inner moments' meta-batch means beside it."""
    return {**{name: phi[name].data - mean_theta[name] for name in phi}, **moment_means}


def _has_task_axis(params, phi):
    name, p = next(iter(phi.items()))
    return params[name].ndim > p.ndim


def _flat_moments(moments):
    if moments is None:
        return {}
    return {f"{MOMENTS_PREFIX}{kind}.{name}": value
            for kind, per_name in (("m", moments.m), ("v", moments.v)) for name, value in per_name.items()}


def _task_means(moments):
    """Means over the leading task axis of stacked tasks' moments."""
    return {name: value.mean(axis=0) for name, value in _flat_moments(moments).items()}


def _mean_of_moments(per_task):
    flat = [_flat_moments(moments) for moments in per_task]
    return {name: sum(f[name] for f in flat) / len(flat) for name in flat[0]}
