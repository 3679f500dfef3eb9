"""Batch normalisation's core as one primitive: x_hat = (x - mean) / sqrt(var + eps).

x is (G, N, C, S): G independent groups (the tasks of a meta-batch, or 1), N examples,
C channels, S pixels; mean and var (biased) are taken per (group, channel) over N*S values.

    forward    x_hat = (x - mean) * r,        r = 1 / sqrt(var + eps)
    backward   dx = r * (g - mean(g) - x_hat * mean(g * x_hat))

Fused kernels compute each in one pass over the data, where the same formulas as
compositions of primitives would take about ten. When the backward is itself recorded
(create_graph, as in MAML's inner step) it is written with primitives instead: x_hat
is this node's output and r a composition of x, so derivatives of every order flow
through; both forms compute the same dx (tested).
"""
from ..backend import kernels_for
from ..function import Function
from ..grad_mode import is_grad_enabled
from ..tensor import Tensor
from .composites import mean, var

AXES = (1, 3)  # the examples and the pixels of each (group, channel)


class Normalize(Function):
    """out = (x - mean) * r;  dx = r * (g - mean(g) - out * mean(g * out))."""

    def __init__(self, eps):
        self.eps = eps

    def forward(self, x):
        x_hat, self.rstd = kernels_for(x).batch_norm_forward(x, self.eps)
        return x_hat

    def backward(self, g):
        if not is_grad_enabled():  # nothing will differentiate dx: the fused kernel
            return (Tensor(kernels_for(g.data).batch_norm_backward(g.data, self.out_data, self.rstd)),)
        x, x_hat = self.inputs[0], self.output()
        r = (var(x, AXES, keepdims=True) + self.eps) ** -0.5
        return ((g - mean(g, AXES, keepdims=True) - x_hat * mean(g * x_hat, AXES, keepdims=True)) * r,)


def normalize(x, eps):
    """x (G, N, C, S) normalised per group and channel (see the module docstring)."""
    if x.ndim != 4:
        raise ValueError(f"normalize: expected (groups, examples, channels, pixels), got shape {x.shape}")
    return Normalize.apply(x, eps=eps)
