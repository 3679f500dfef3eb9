"""Model pre-training: the baseline every meta-learner is compared with.

Minimise the loss of one model on the mixture of all tasks, sum_n l_n(phi),
with no adaptation inside the objective. It finds a phi that is good now,
averaged over tasks; MAML looks for one that is good after a few steps of
training. Each task contributes all its points (support and query).
"""
import numpy as np

from ..autograd import grad
from ..nn.functional import mse_loss
from .learner import MetaLearner, check_meta_batch


class Pretrain(MetaLearner):
    def __init__(self, model, loss_fn=mse_loss):
        self.model, self.loss_fn = model, loss_fn

    def meta_gradients(self, tasks):
        """(loss on the task mixture, {name: its gradient}); with tasks of equal size the
        loss over the pooled points is the mean of the per-task losses."""
        check_meta_batch(self, tasks)
        inputs = np.concatenate([x for t in tasks for x in (t.support.inputs, t.query.inputs)])
        targets = np.concatenate([y for t in tasks for y in (t.support.targets, t.query.targets)])
        phi = self.model.parameters_dict()
        loss = self.loss_fn(self.model(inputs), targets)
        return loss.item(), dict(zip(phi, grad(loss, list(phi.values()))))
