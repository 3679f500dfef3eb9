"""Batch normalisation as primitives: x_hat = (x - mean) / sqrt(var + eps), and with a
per-channel scale and shift, y = x_hat * w + b, in one node (NormalizeAffine).

x is (G, N, C, S): G independent groups (the tasks of a meta-batch, or 1), N examples,
C channels, S pixels; mean and var (biased) are taken per (group, channel) over N*S values.

    forward    x_hat = (x - mean) * r,        r = 1 / sqrt(var + eps)
    backward   dx = r * (g - mean(g) - x_hat * mean(g * x_hat))

When the backward is itself recorded (create_graph, as in MAML's inner step), dx is
a primitive too, NormalizeGrad(g, x), so that MAML's meta-gradient differentiates
one node per batch norm and inner step rather than about ten. Its own gradient, given
h = dL/d(dx), follows from L = sum h * dx = r * N*S * (mean(h g) - mean(h) mean(g) - c d),
with c = mean(g x_hat) and d = mean(h x_hat): dx is linear in g through the same
(symmetric) operator, and depends on x through x_hat (whose backward is the one above,
applied to dL/dx_hat = -r (d g + c h)) and through r (dr/dx = -r^2 x_hat / (N*S)):

    dg = r * (h - mean(h) - x_hat * d)
    dx = -r^2 * (d (g - mean(g)) + c (h - mean(h)) + x_hat (mean(h g) - mean(h) mean(g) - 3 c d))

NormalizeAffine's gradient, given g = dL/dy, is the one above applied to g * w, with the
parameters' gradients dw = sum(g * x_hat) and db = sum(g) (sums over examples and pixels);
its fused kernel finds all three in the passes that the plain dx takes.

Fused kernels compute each formula in one or two passes over the data. When a backward
is recorded in turn (third derivatives and beyond) it is written with primitives, r as a
composition of x, so that derivatives of every order flow through; the fused and the
recorded forms compute the same values (tested).
"""
from ..backend import kernels_for
from ..function import Function
from ..grad_mode import is_grad_enabled
from ..tensor import Tensor
from .composites import mean, var
from .reduce import sum
from .shape import reshape

AXES = (1, 3)  # the examples and the pixels of each (group, channel)


class Normalize(Function):
    """out = (x - mean) * r;  dx = r * (g - mean(g) - out * mean(g * out)), a NormalizeGrad node when recorded."""

    def __init__(self, eps):
        self.eps = eps

    def forward(self, x):
        x_hat, self.rstd = kernels_for(x).batch_norm_forward(x, self.eps)
        return x_hat

    def backward(self, g):
        if not is_grad_enabled():  # nothing will differentiate dx: the fused kernel alone
            return (Tensor(kernels_for(g.data).batch_norm_backward(g.data, self.out_data, self.rstd)),)
        return (NormalizeGrad.apply(g, self.inputs[0], x_hat=self.output(), rstd=self.rstd, eps=self.eps),)


class NormalizeGrad(Function):
    """out = r * (g - mean(g) - x_hat * mean(g * x_hat)), Normalize's dx as a function of (g, x);
    dg and dx as in the module docstring.

    x_hat, Normalize's output, is kept beside the inputs rather than among them: it is a
    function of x, and the backward returns the whole dx, through x_hat and r alike.
    """

    def __init__(self, x_hat, rstd, eps):
        self.x_hat, self.rstd, self.eps = x_hat, rstd, eps

    def forward(self, g, x):
        return kernels_for(g).batch_norm_backward(g, self.x_hat.data, self.rstd)

    def backward(self, h):
        g, x = self.inputs
        if not is_grad_enabled():
            dg, dx = kernels_for(h.data).batch_norm_double_backward(h.data, g.data, self.x_hat.data, self.rstd)
            return Tensor(dg), Tensor(dx)
        x_hat = self.x_hat
        r = (var(x, AXES, keepdims=True) + self.eps) ** -0.5
        mean_h, mean_g = mean(h, AXES, keepdims=True), mean(g, AXES, keepdims=True)
        c, d = mean(g * x_hat, AXES, keepdims=True), mean(h * x_hat, AXES, keepdims=True)
        dg = NormalizeGrad.apply(h, x, x_hat=x_hat, rstd=self.rstd, eps=self.eps)
        k = mean(h * g, AXES, keepdims=True) - mean_h * mean_g - 3.0 * c * d
        dx = -(r * r) * (d * (g - mean_g) + c * (h - mean_h) + x_hat * k)
        return dg, dx

    def release(self):
        super().release()
        self.x_hat = None   # held beside the inputs: freed with them


class NormalizeAffine(Function):
    """out = x_hat * w + b, w and b (G, C): batch norm with its scale and shift in one node;
    dx = NormalizeGrad(g * w, x), dw = sum(g * x_hat), db = sum(g) (fused when nothing is recorded)."""

    def __init__(self, eps):
        self.eps = eps

    def forward(self, x, w, b):
        y, self.x_hat, self.rstd = kernels_for(x).batch_norm_affine_forward(x, w, b, self.eps)
        return y

    def backward(self, g):
        x, w, _ = self.inputs
        if not is_grad_enabled():
            dx, dw, db = kernels_for(g.data).batch_norm_affine_backward(g.data, self.x_hat, self.rstd, w.data)
            return Tensor(dx), Tensor(dw), Tensor(db)
        x_hat = normalize(x, self.eps)  # as a function of x (one more pass): dw's derivatives flow through it
        scaled = g * reshape(w, (w.shape[0], 1, w.shape[1], 1))
        dx = NormalizeGrad.apply(scaled, x, x_hat=x_hat, rstd=self.rstd, eps=self.eps)
        return dx, sum(g * x_hat, AXES), sum(g, AXES)

    def release(self):
        super().release()
        self.x_hat = None


def _check_layout(name, x):
    if x.ndim != 4:
        raise ValueError(f"{name}: expected (groups, examples, channels, pixels), got shape {x.shape}")


def normalize(x, eps):
    """x (G, N, C, S) normalised per group and channel (see the module docstring)."""
    _check_layout("normalize", x)
    return Normalize.apply(x, eps=eps)


def normalize_affine(x, w, b, eps):
    """x (G, N, C, S) normalised per group and channel, then scaled by w and shifted by b, both (G, C)."""
    _check_layout("normalize_affine", x)
    groups_channels = (x.shape[0], x.shape[2])
    if w.shape != groups_channels or b.shape != groups_channels:
        raise ValueError(f"normalize_affine: scale {w.shape} and shift {b.shape} do not fit input {x.shape}; "
                         f"expected {groups_channels} (groups, channels)")
    return NormalizeAffine.apply(x, w, b, eps=eps)
