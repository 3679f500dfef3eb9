"""MAML and first-order MAML (Finn, Abbeel & Levine, 2017).

The meta-objective over a meta-batch of tasks n = 1..N is the mean query loss
after adapting the shared initialisation phi on each task's support set:

    L(phi) = 1/N sum_n l_n^query(theta_n),   theta_n = adapt(phi, support_n)

MAML differentiates L through the inner gradient steps; for one step,
grad_phi l(theta) = (I - alpha H(phi)) grad_theta l(theta), obtained by reverse
mode over a graph that contains the inner backward pass (Hessian-vector
products, never the Hessian). First-order MAML treats the inner gradients as
constants, which drops the (I - alpha H) factor: its meta-gradient is
grad_theta l(theta_n). The two differ in one argument to `adapt`.
"""
from ..autograd import grad
from ..data.task import Examples, Task, stack_tasks
from ..nn.functional import mse_loss
from ..ops import mean, stack
from ..replay import Replay
from ..tensor import Tensor
from .adapt import adapt, per_task_copies, summed_over_tasks
from .learner import MetaLearner, check_meta_batch, check_positive
from .task_groups import check_tasks_per_pass, in_groups


class MAML(MetaLearner):
    """Meta-learns an initialisation by differentiating through `inner_steps` SGD steps.

    vectorize=True adapts all tasks of a meta-batch in one batched pass, with a
    separate copy of the parameters per task along a leading task axis; every
    layer of tinymeta.nn accepts such parameters (see nn.functional), the tasks
    must have equal sizes, and the meta-gradient is exactly the per-task loop's,
    with far fewer (larger) operations. The loop (vectorize=False) is the
    readable reference. `meta_gradients` takes the stacked pass over groups of
    at most tasks_per_pass tasks (default: by the inputs' size, task_groups.py).

    replay=True (with vectorize=True) records the stacked meta-gradient's primitives once per set
    of shapes and afterwards runs only their array operations (tinymeta.replay: the same values,
    without the graph's Python bookkeeping; for networks whose primitives carry no state between
    nodes, such as the sine MLP: a conv net is refused with a ReplayError).
    """

    def __init__(self, model, inner_lr, inner_steps=1, first_order=False, loss_fn=mse_loss, vectorize=False,
                 tasks_per_pass=None, replay=False):
        if inner_steps < 1:
            raise ValueError(f"MAML: inner_steps must be at least 1 (got {inner_steps}); with no inner "
                             "step MAML is plain pre-training, see Pretrain")
        if not isinstance(inner_lr, dict):  # Meta-SGD's learned rates are a dict, checked there
            check_positive("MAML", inner_lr=inner_lr)
        check_tasks_per_pass(type(self).__name__, tasks_per_pass, vectorize)
        if replay and not vectorize:
            raise ValueError(f"{type(self).__name__}: replay=True needs vectorize=True (it replays the stacked pass)")
        self.model, self.inner_lr, self.inner_steps = model, inner_lr, inner_steps
        self.first_order, self.loss_fn, self.vectorize = first_order, loss_fn, vectorize
        self.tasks_per_pass = tasks_per_pass
        self._stacked_gradients = Replay(self._loss_and_gradients) if replay else self._loss_and_gradients

    def adapt(self, params, support, loss_fn=None):
        """theta = phi after the inner loop; recorded for MAML, constant-gradient for first-order MAML."""
        return adapt(self.model, params, support, loss_fn or self.loss_fn, self.inner_steps, self.inner_lr,
                     create_graph=not self.first_order)

    def meta_loss(self, tasks, params=None):
        """L(phi): the mean query loss after adaptation, differentiable w.r.t. phi (the model's own
        parameters, or `params` of the same names); vectorised, `tasks` may be stacked already."""
        phi = params if params is not None else self.model.parameters_dict()
        if self.vectorize:
            stacked = isinstance(tasks, Task)
            if not stacked:
                check_meta_batch(self, tasks)
            return self._stacked_meta_loss(tasks if stacked else stack_tasks(tasks), phi)
        check_meta_batch(self, tasks)
        losses = []
        for task in tasks:
            theta = self.adapt(phi, task.support)
            losses.append(self.loss_fn(self.model(task.query.inputs, params=theta), task.query.targets))
        return mean(stack(losses))

    def _stacked_meta_loss(self, batch, phi):
        n_tasks = len(batch.support.inputs)
        per_task = per_task_copies(phi, n_tasks)
        theta = self.adapt(per_task, batch.support, summed_over_tasks(self.loss_fn, n_tasks))
        # the query loss of the stack is the mean over tasks of their query losses: L(phi)
        return self.loss_fn(self.model(batch.query.inputs, params=theta), batch.query.targets)

    def meta_gradients(self, tasks):
        """(meta-loss value, {name: dL/dphi}) for a meta-batch of tasks (and dL/dalpha for Meta-SGD's rates)."""
        check_meta_batch(self, tasks)
        if not self.vectorize:
            return self._meta_gradients(tasks)
        return in_groups(self._meta_gradients, tasks, self.tasks_per_pass, self.model.device)

    def _meta_gradients(self, tasks):
        trained = self.parameters_dict()
        if self.vectorize:
            batch = stack_tasks(tasks)
            loss, *grads = self._stacked_gradients(*trained.values(), *map(Tensor, (*batch.support, *batch.query)))
        else:
            loss = self.meta_loss(tasks)
            grads = grad(loss, list(trained.values()))
        return loss.item(), dict(zip(trained, grads))

    def _loss_and_gradients(self, *tensors):
        """(L, dL/d each trained tensor) of one stacked meta-batch, from everything it reads, passed in:
        the trained tensors (parameters_dict's order), then the support and query inputs and targets."""
        names = list(self.parameters_dict())
        trained = dict(zip(names, tensors))
        xs, ys, xq, yq = (t.data for t in tensors[len(names):])
        loss = self.meta_loss(Task(Examples(xs, ys), Examples(xq, yq)), params=trained)
        return (loss, *grad(loss, list(trained.values())))
