"""iMAML: implicit MAML (Rajeswaran, Finn, Kakade & Levine, 2019).

MAML's meta-gradient goes back through every inner step, so its graph, and its
memory, grow with the number of steps. iMAML changes the inner problem so that
the adapted parameters are an exact minimiser that depends smoothly on phi,

    theta*(phi) = argmin_theta  L_support(theta) + lambda/2 ||theta - phi||^2,

approximated here by `inner_steps` plain gradient steps from theta_0 = phi,

    theta_{k+1} = theta_k - lr (grad L_support(theta_k) + lambda (theta_k - phi)).

At the minimiser grad L_support(theta*) + lambda (theta* - phi) = 0; differentiating
that identity in phi gives d theta*/d phi = (I + H/lambda)^{-1}, with H the
Hessian of L_support at theta*, and so the meta-gradient of l^query(theta*) is

    dL/dphi = (I + H/lambda)^{-1} grad l^query(theta*),

whatever path the inner steps took. It is the solution x of (I + H/lambda) x = g,
found by conjugate gradient with one Hessian-vector product per iteration: the
inner steps record nothing, and memory does not grow with their number.
What differs from MAML: the proximal term in the inner loop, and a linear solve
instead of a backward pass through the steps.

The identity holds only at the minimiser, where H + lambda I is positive
semi-definite; a few steps from phi need not get there, and then H can have
eigenvalues below -lambda, so that (I + H/lambda) is indefinite or nearly
singular and its inverse blows the meta-gradient up along those directions.
`damping` mu >= 0 solves (I + (H + mu I)/lambda) x = g instead: Tikhonov damping
of H, as Hessian-free optimisation damps its curvature (Martens, 2010); it
shrinks the correction of the directions of small curvature toward
g / (1 + mu/lambda) and keeps the system positive definite while H >= -(lambda + mu) I.
(The iMAML authors' Omniglot code solves ((1 + rho) I + H/(lambda + delta)) x = g,
rho = 1, delta = 10: at lambda = 2 that is this system with mu = 22, up to the
factor 2 an Adam outer step does not see.)
"""
import math

from ..autograd import grad
from ..backend import get_array_module
from ..data.task import stack_tasks
from ..nn.functional import mse_loss
from ..solve import conjugate_gradient
from ..tensor import Tensor
from .adapt import adapt, fresh_leaves, per_task_copies, summed_over_tasks
from .learner import MetaLearner, check_meta_batch, check_positive
from .task_groups import check_tasks_per_pass, in_groups


def proximal_adapt(model, phi, theta, support, loss_fn, steps, lr, lam, create_graph):
    """theta after `steps` gradient steps on L_support(theta) + lam/2 ||theta - phi||^2 (lam = 0: plain SGD).

    create_graph=True records every step, as MAML does (the unrolled meta-gradient
    iMAML's is compared with); create_graph=False returns fresh leaves, nothing recorded.
    """
    for _ in range(steps):
        stepped = adapt(model, theta, support, loss_fn, 1, lr, create_graph)
        if lam:
            stepped = {name: stepped[name] - (_rate(lr, name) * lam) * (theta[name] - phi[name]) for name in stepped}
        theta = stepped if create_graph else fresh_leaves(stepped)
    return theta


def _rate(lr, name):
    """The step size of parameter `name`: lr itself, or its entry when lr holds one rate per parameter."""
    return lr[name] if isinstance(lr, dict) else lr


class IMAML(MetaLearner):
    """Meta-learns an initialisation from the implicit gradient at the proximal inner solution.

    lam is the proximal strength lambda, damping the mu added to H in the solve;
    conjugate gradient stops at a residual of cg_tol * ||g|| or after cg_steps
    Hessian-vector products (and then warns), each task's system on its own.
    `last_solves` keeps the solver's reports of the latest meta-step, one per task
    (one for each stacked pass, its rows the tasks, when vectorize=True; a pass holds at
    most tasks_per_pass tasks, by default as task_groups.py decides); under TaskThreads
    each share's call replaces it, so it holds one share's reports.
    """

    def __init__(self, model, inner_lr, inner_steps, lam, cg_steps=10, cg_tol=1e-3, damping=0.0, loss_fn=mse_loss,
                 vectorize=False, tasks_per_pass=None):
        if inner_steps < 1 or cg_steps < 1:
            raise ValueError(f"IMAML: inner_steps ({inner_steps}) and cg_steps ({cg_steps}) must be at least 1")
        check_positive("IMAML", inner_lr=inner_lr)
        if lam <= 0:
            raise ValueError(f"IMAML: the proximal strength lam must be positive, got {lam}")
        if damping < 0:
            raise ValueError(f"IMAML: the damping must be zero or positive, got {damping}")
        check_tasks_per_pass("IMAML", tasks_per_pass, vectorize)
        self.model, self.inner_lr, self.inner_steps, self.lam = model, inner_lr, inner_steps, lam
        self.damping = damping
        self.cg_steps, self.cg_tol, self.loss_fn, self.vectorize = cg_steps, cg_tol, loss_fn, vectorize
        self.tasks_per_pass = tasks_per_pass
        self.last_solves = []

    def adapt(self, params, support, loss_fn=None):
        """theta* ~ argmin L_support(theta) + lam/2 ||theta - params||^2, nothing recorded."""
        return proximal_adapt(self.model, params, fresh_leaves(params), support, loss_fn or self.loss_fn,
                              self.inner_steps, self.inner_lr, self.lam, create_graph=False)

    def meta_gradients(self, tasks):
        """(mean query loss at theta*, {name: mean over tasks of (I + (H + mu I)/lam)^{-1} grad l^query(theta*)})."""
        check_meta_batch(self, tasks)
        self.last_solves = []
        if self.vectorize:
            return in_groups(self._stacked_meta_gradients, tasks, self.tasks_per_pass, self.model.device)
        phi = self.model.parameters_dict()
        losses, total = [], {name: 0.0 for name in phi}
        for task in tasks:
            loss, x = self._implicit_gradient(phi, task, self.loss_fn, n_tasks=None)
            losses.append(loss)
            total = {name: total[name] + x[name] for name in phi}
        return sum(losses) / len(tasks), {name: total[name] / len(tasks) for name in phi}

    def _stacked_meta_gradients(self, tasks):
        # the support loss is the sum over the stacked tasks, so H is block-diagonal (one block per task) and
        # one solve, a row per task, covers all; the query loss is the mean, so each task's g (and x) carries
        # its 1/N
        phi = self.model.parameters_dict()
        n_tasks = len(tasks)
        loss, x = self._implicit_gradient(per_task_copies(phi, n_tasks), stack_tasks(tasks),
                                          summed_over_tasks(self.loss_fn, n_tasks), n_tasks)
        return loss, {name: x[name].sum(axis=0) for name in phi}

    def _implicit_gradient(self, phi, task, support_loss_fn, n_tasks):
        """(query loss at theta*, x) with (I + (H + mu I)/lam) x = grad l^query(theta*), x as arrays by name.

        n_tasks is None for one task, or the length of the stacked task axis the parameters lead with.
        """
        theta = self.adapt(phi, task.support, support_loss_fn)
        names, leaves = list(theta), list(theta.values())
        query_loss = self.loss_fn(self.model(task.query.inputs, params=theta), task.query.targets)
        g = grad(query_loss, leaves)
        # the support gradient is recorded once; each product H v is one more backward pass through it
        support_loss = support_loss_fn(self.model(task.support.inputs, params=theta), task.support.targets)
        support_grads = grad(support_loss, leaves, create_graph=True)
        shapes = [p.shape for p in leaves]

        def matvec(v):  # (I + (H + mu I) / lam) v
            hv = grad(support_grads, leaves, grad_outputs=[Tensor(a) for a in _split(v, shapes)], retain_graph=True)
            return v + (_flatten([h.data for h in hv], n_tasks) + self.damping * v) / self.lam

        solution = conjugate_gradient(matvec, _flatten([t.data for t in g], n_tasks), tol=self.cg_tol,
                                      max_iter=self.cg_steps)
        self.last_solves.append(solution)
        return query_loss.item(), dict(zip(names, _split(solution.x, shapes)))


def _flatten(arrays, n_tasks=None):
    """One vector of all entries, or with n_tasks one row per task (the arrays lead with the task axis)."""
    xp = get_array_module(*arrays)
    if n_tasks is None:
        return xp.concatenate([a.ravel() for a in arrays])
    return xp.concatenate([a.reshape(n_tasks, -1) for a in arrays], axis=1)


def _split(vector, shapes):
    """The inverse of _flatten: arrays of the given shapes (each leading with the task axis if vector has rows)."""
    out, start = [], 0
    for shape in shapes:
        size = math.prod(shape[vector.ndim - 1:])
        out.append(vector[..., start:start + size].reshape(shape))
        start += size
    return out
