"""The one inner loop that MAML, first-order MAML and Reptile share.

Starting from parameters theta_0 (a dict of tensors), take `steps` steps of
gradient descent on the support loss:

    theta_{k+1} = theta_k - lr * grad L_support(theta_k)

With `create_graph=True` each gradient is itself recorded, so the adapted
parameters are differentiable functions of theta_0 through every step: that is
MAML. With `create_graph=False` the gradients are constants: first-order MAML
and Reptile. The step itself is plain SGD unless another `step` is passed in:
Reptile's published code takes Adam steps (optim.InnerAdam), first order.
"""
from ..autograd import grad
from ..ops import broadcast_to
from ..optim import sgd_step
from ..tensor import Tensor


def adapt(model, params, support, loss_fn, steps, lr, create_graph, step=sgd_step):
    """The parameters after `steps` steps on `support`, as a new dict (never in place);
    step(params, grads, lr) -> new params is one SGD step unless told otherwise."""
    inputs, targets = support
    for _ in range(steps):
        loss = loss_fn(model(inputs, params=params), targets)
        grads = grad(loss, list(params.values()), create_graph=create_graph)
        params = step(params, grads, lr)
    return params


def fresh_leaves(params):
    """The same values as new leaves that require grad: adaptation from here records
    nothing that leads back to `params` (Reptile, evaluation)."""
    return {name: Tensor(p.data, requires_grad=True) for name, p in params.items()}


# --- Adapting a whole meta-batch at once ------------------------------------
# Tasks of equal size can be stacked (data.stack_tasks) and adapted in one batched
# pass: every parameter gets a leading task axis holding one copy per task, and
# the layers apply copy n to task n. The support loss of the stack is the mean of
# the per-task losses; multiplied by the number of tasks it is their sum, whose
# gradient with respect to copy n is exactly task n's own gradient.

def per_task_copies(params, n_tasks):
    """{name: p broadcast to (n_tasks,) + p.shape}: one copy of each parameter per task."""
    return {name: broadcast_to(p, (n_tasks,) + p.shape) for name, p in params.items()}


def summed_over_tasks(loss_fn, n_tasks):
    """The stacked tasks' loss as the sum (not the mean) of their per-task losses."""
    def loss(prediction, targets):
        return loss_fn(prediction, targets) * float(n_tasks)
    return loss
