"""Meta-SGD (Li, Zhou, Chen & Li, 2017): learn the inner learning rates with the initialisation.

MAML adapts with one learning rate alpha shared by every parameter. Meta-SGD
gives each parameter entry its own rate, a tensor alpha of the parameter's
shape, and the inner step becomes elementwise:

    theta = phi - alpha * grad L_support(phi)          (* elementwise)

The meta-objective is MAML's, L(phi, alpha) = 1/N sum_n l_n^query(theta_n), and
alpha is meta-trained together with phi: the meta-gradient is taken with respect
to both, through the same recorded inner step. For one step,

    dL/dphi   = (I - diag(alpha) H(phi)) grad_theta l(theta)
    dL/dalpha = -grad L_support(phi) * grad_theta l(theta)

The per-layer variant (as in MAML++, Antoniou et al. 2019) learns one scalar rate
per parameter tensor instead. Everything else is MAML: this learner is a MAML
whose `inner_lr` is a dict of tensors that it also trains, saved in checkpoints
under the names "inner_lr.<parameter name>".
"""
from collections import OrderedDict

import numpy as np

from ..nn.functional import mse_loss
from ..nn.module import Module
from .learner import check_positive
from .maml import MAML

RATE_PREFIX = "inner_lr."


class LearnedRates(Module):
    """One rate per entry of each parameter of `model` (or one per tensor if per_layer), all set to init_lr."""

    def __init__(self, model, init_lr, per_layer=False):
        super().__init__()
        for name, p in model.named_parameters():
            shape = () if per_layer else p.shape
            self.add_parameter(name, np.full(shape, init_lr, dtype=p.dtype))
        self.to(model.device)


class MetaSGD(MAML):
    """Meta-learns the initialisation phi and the inner learning rates alpha (elementwise, or per layer)."""

    def __init__(self, model, init_lr, inner_steps=1, per_layer=False, loss_fn=mse_loss, vectorize=False,
                 tasks_per_pass=None, replay=False):
        check_positive("MetaSGD", init_lr=init_lr)
        self.rates = LearnedRates(model, init_lr, per_layer)
        super().__init__(model, self.rates.parameters_dict(), inner_steps, loss_fn=loss_fn, vectorize=vectorize,
                         tasks_per_pass=tasks_per_pass, replay=replay)

    def parameters_dict(self):
        """phi under the model's names, and alpha under "inner_lr.<name>"."""
        return OrderedDict(list(self.model.named_parameters()) + list(self.rates.named_parameters(RATE_PREFIX)))

    def meta_loss(self, tasks, params=None):
        """L(phi, alpha); `params`, if given, holds both, under the names of parameters_dict()."""
        trained = params if params is not None else self.parameters_dict()
        phi = OrderedDict((name, trained[name]) for name, _ in self.model.named_parameters())
        rates = {name: trained[RATE_PREFIX + name] for name in phi}
        maml = MAML(self.model, rates, self.inner_steps, loss_fn=self.loss_fn, vectorize=self.vectorize)
        return maml.meta_loss(tasks, params=phi)

    def state_dict(self):
        state = self.model.state_dict()
        state.update((RATE_PREFIX + name, value) for name, value in self.rates.state_dict().items())
        return state

    def load_state_dict(self, state):
        rates = {name[len(RATE_PREFIX):]: v for name, v in state.items() if name.startswith(RATE_PREFIX)}
        self.rates.load_state_dict(rates)
        self.model.load_state_dict({name: v for name, v in state.items() if not name.startswith(RATE_PREFIX)})
