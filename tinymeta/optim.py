"""Optimizers over named parameters, and the functional SGD step of inner loops.

`SGD` and `Adam` update parameter tensors in place (under no_grad) from their
`.grad`, or from gradients passed to `step`. Their state (momentum buffers,
Adam's moments, the step count) is plain arrays, saved and restored with
`state_dict()` / `load_state_dict()` for checkpoints. The arithmetic uses array
operators only, so it runs wherever the parameters live.

`sgd_step` is different: it returns *new* tensors, p - lr * g, built with the
differentiable ops, so that MAML can differentiate through it. `InnerAdam` is
Adam as such an inner step (Reptile's code runs its inner loop with it): it
returns new tensors too, and its moments travel in an `AdamMoments` value that
the caller keeps from one adaptation to the next.
"""
from collections import OrderedDict
from dataclasses import dataclass

from .backend import device_of, get_array_module, to_device
from .grad_mode import no_grad
from .ops.elementwise import add_scaled
from .tensor import Tensor


def sgd_step(params, grads, lr):
    """{name: p - lr * g}: one plain gradient step as new tensors (never in place).

    lr is one number, or a dict of per-parameter rates {name: rate} whose shapes
    broadcast against the parameters (Meta-SGD's learned rates, elementwise or one per tensor).
    """
    if len(params) != len(grads):
        raise ValueError(f"sgd_step: {len(params)} parameters but {len(grads)} gradients")
    if not isinstance(lr, dict):
        # p + (-lr) g is p - lr g to the last bit, in one graph node
        return OrderedDict((name, add_scaled(p, g, -lr)) for (name, p), g in zip(params.items(), grads))
    missing = [name for name in params if name not in lr]
    if missing:
        raise KeyError(f"sgd_step: no learning rate for parameters {missing}")
    return OrderedDict((name, p - lr[name] * g) for (name, p), g in zip(params.items(), grads))


def adam_update(g, m, v, t, lr, betas, eps):
    """One Adam step on arrays at step count t (from 1): returns (delta, m, v), the new
    parameter being p - delta, with

        m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2,
        delta = lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
    """
    b1, b2 = betas
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat = m / (1 - b1 ** t)
    v_hat = v / (1 - b2 ** t)
    return lr * m_hat / (v_hat ** 0.5 + eps), m, v


def _check_adam_settings(owner, betas, eps):
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas) or eps <= 0:
        raise ValueError(f"{owner}: betas must be two numbers in [0, 1) and eps positive, "
                         f"got betas={betas!r}, eps={eps!r}")


def _check_non_negative(owner, **settings):
    for name, value in settings.items():
        if value < 0:
            raise ValueError(f"{owner}: {name} must be non-negative, got {value}")


@dataclass(frozen=True)
class AdamMoments:
    """Adam's state: first and second moments {name: array} and the number of steps t they have seen."""
    m: dict
    v: dict
    t: int


class InnerAdam:
    """Adam as an inner-loop step: `stepper(moments)` gives a step(params, grads, lr) for
    `adapt`, returning new tensors and advancing its own copy of the moments (read
    back from `stepper.moments`). First order only: the moments and the step are
    constants, so nothing is differentiated through them. Reptile's published code
    uses betas (0, 0.999): no momentum, each coordinate's step scaled by its RMS gradient.
    """

    def __init__(self, betas=(0.0, 0.999), eps=1e-8):
        _check_adam_settings("InnerAdam", betas, eps)
        self.betas, self.eps = tuple(betas), eps

    def zero_moments(self, params):
        """The moments before any step: zeros shaped like each parameter, t = 0."""
        zeros = {name: get_array_module(p.data).zeros_like(p.data) for name, p in params.items()}
        return AdamMoments(zeros, dict(zeros), 0)

    def stepper(self, moments):
        return _AdamStepper(self, moments)


class _AdamStepper:
    """One adaptation's Adam steps; `moments` is where they have got to."""

    def __init__(self, adam, moments):
        self.adam, self.moments = adam, moments

    def __call__(self, params, grads, lr):
        if isinstance(lr, dict):
            raise TypeError("InnerAdam: takes one learning rate, not one per parameter")
        if len(params) != len(grads):
            raise ValueError(f"InnerAdam: {len(params)} parameters but {len(grads)} gradients")
        t = self.moments.t + 1
        new, m, v = OrderedDict(), {}, {}
        for (name, p), g in zip(params.items(), grads):
            delta, m[name], v[name] = adam_update(g.data, self.moments.m[name], self.moments.v[name], t, lr,
                                                  self.adam.betas, self.adam.eps)
            new[name] = p - Tensor(delta)
        self.moments = AdamMoments(m, v, t)
        return new


class Optimizer:
    """Shared bookkeeping: named parameters, where gradients come from, and checkpoints."""

    def __init__(self, params, lr):
        if isinstance(params, dict):
            self.params = OrderedDict(params)
        else:
            self.params = OrderedDict((str(i), p) for i, p in enumerate(params))
        for name, p in self.params.items():
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise TypeError(f"{type(self).__name__}: parameter {name!r} must be a Tensor that requires grad")
        if lr <= 0:
            raise ValueError(f"{type(self).__name__}: learning rate must be positive, got {lr}")
        self.lr = lr
        self.step_count = 0
        self.state = {name: {} for name in self.params}

    def _gradients(self, grads):
        """Gradient arrays by name, from `grads` (a dict or a sequence) or from each `.grad`; a dict
        may leave parameters out, but not name one this optimizer does not hold (a misspelt name
        would otherwise leave its parameter untrained without a word)."""
        if grads is None:
            pairs = [(name, p.grad) for name, p in self.params.items()]
        elif isinstance(grads, dict):
            strangers = [name for name in grads if name not in self.params]
            if strangers:
                raise ValueError(f"{type(self).__name__}.step: gradients for {strangers}, which name no parameter "
                                 f"of this optimizer (it holds {list(self.params)})")
            pairs = [(name, grads.get(name)) for name in self.params]
        else:
            grads = list(grads)
            if len(grads) != len(self.params):
                raise ValueError(f"{type(self).__name__}.step: {len(grads)} gradients for "
                                 f"{len(self.params)} parameters")
            pairs = list(zip(self.params, grads))
        out = {}
        for name, g in pairs:
            if g is None:
                continue  # a parameter that got no gradient is left as it is
            g = g.data if isinstance(g, Tensor) else g
            if g.shape != self.params[name].shape:
                raise ValueError(f"{type(self).__name__}.step: gradient for {name!r} has shape {g.shape}, "
                                 f"parameter has {self.params[name].shape}")
            out[name] = g
        return out

    def step(self, grads=None):
        """Update every parameter in place from its gradient."""
        grads = self._gradients(grads)  # checked before anything changes
        self.step_count += 1
        with no_grad():
            for name, g in grads.items():
                p = self.params[name]
                p.copy_(self.update(p.data, g, self.state[name]))

    def zero_grad(self):
        for p in self.params.values():
            p.grad = None

    def state_dict(self):
        return {"lr": self.lr, "step_count": self.step_count,
                "state": {name: {k: v.copy() for k, v in s.items()} for name, s in self.state.items()}}

    def load_state_dict(self, state):
        if set(state["state"]) != set(self.params):
            raise KeyError(f"{type(self).__name__}.load_state_dict: checkpoint has parameters "
                           f"{sorted(state['state'])}, this optimizer {sorted(self.params)}")
        self.lr, self.step_count = state["lr"], state["step_count"]
        self.state = {name: {k: to_device(v, device_of(self.params[name].data)).copy() for k, v in s.items()}
                      for name, s in state["state"].items()}


class SGD(Optimizer):
    """p <- p - lr * v, with v = momentum * v + (g + weight_decay * p) (v = g without momentum)."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr)
        _check_non_negative("SGD", momentum=momentum, weight_decay=weight_decay)
        self.momentum, self.weight_decay = momentum, weight_decay

    def update(self, p, g, state):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            v = state.get("velocity")
            state["velocity"] = g.copy() if v is None else self.momentum * v + g
            g = state["velocity"]
        return p - self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba): bias-corrected moving averages m of g and v of g^2;
    p <- p - lr * m_hat / (sqrt(v_hat) + eps)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        _check_adam_settings("Adam", betas, eps)
        _check_non_negative("Adam", weight_decay=weight_decay)
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay

    def update(self, p, g, state):
        if self.weight_decay:
            g = g + self.weight_decay * p
        delta, state["m"], state["v"] = adam_update(g, state.get("m", 0.0), state.get("v", 0.0), self.step_count,
                                                    self.lr, self.betas, self.eps)
        return p - delta
