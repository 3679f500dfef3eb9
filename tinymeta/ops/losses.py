"""Losses as primitives: a loss is evaluated at every inner step of every task, so
one node instead of the five of its composition (subtract, square, sum, scale)
shortens both the forward graph and every derivative taken through it.

Their backwards are written with other primitives, so higher derivatives hold.
"""
from ..function import Function
from . import threads
from .elementwise import mul, sub
from .operands import binary_operands


class MeanSquaredError(Function):
    """out = sum((p - t)^2) / n over all n elements;  dp = (2/n) g (p - t), dt = -dp."""

    def forward(self, p, t):
        diff = p - t
        return threads.sum(diff * diff, None, False) * (1.0 / diff.size)

    def backward(self, g):
        p, t = self.inputs
        grad_p = mul(sub(p, t), mul(g, 2.0 / p.size))
        return (grad_p if p.requires_grad else None,
                -grad_p if t.requires_grad else None)


def mean_squared_error(prediction, target):
    """mean((prediction - target)^2) as one node; prediction and target have one shape."""
    if prediction.shape != target.shape:
        raise ValueError(f"mean_squared_error: prediction of shape {prediction.shape} and target of shape "
                         f"{target.shape} differ")
    if prediction.size == 0:
        raise ValueError(f"mean_squared_error: no elements to average (shape {prediction.shape})")
    return MeanSquaredError.apply(*binary_operands(prediction, target, "mean_squared_error"))
