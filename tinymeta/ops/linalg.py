"""Matrix products.

matmul follows numpy: 2-D matrices, batched stacks (..., n, k) @ (..., k, m)
with broadcasting over the leading axes, and 1-D vectors promoted to a row (on
the left) or a column (on the right) and squeezed from the result. The backward
is da = g @ b^T and db = a^T @ g on the promoted operands, summed to each
input's shape.

Like BLAS's gemm, the primitive can read either operand transposed (its last two
axes swapped, a free view): out = op(a) @ op(b). The backward uses that instead
of transpose nodes, so a gradient of a product is one node, not two, and so is
every derivative after it:

    out = A B with A = op(a), B = op(b):   dA = g B^T,   dB = A^T g
    da = dA, or dA^T = B g^T when a is read transposed; db likewise.

`linear` is a layer's whole affine map as one primitive, out = x W + b, so
that a network's forward pass is one node per layer and not three (a product,
a reshape of a per-task bias, a broadcast add); its backward is the product's
two plus db = g summed over the example axes.

A product whose inner size is 1 (an outer product: a network's 1-feature
input layer, and its gradients) is computed as a broadcast multiply, which
gives the same values several times faster than numpy's batched matmul there.
"""
from ..function import Function
from .operands import binary_operands
from .reduce import sum as reduce_sum
from .shape import reshape, sum_to


class MatMul(Function):
    """out = op(a) @ op(b), op swapping the last two axes where asked;  da, db as products of
    the same kind (see the module docstring), vectors promoted and batch axes summed."""

    def __init__(self, transpose_a=False, transpose_b=False):
        self.transpose_a, self.transpose_b = transpose_a, transpose_b

    def forward(self, a, b):
        if self.transpose_a:
            a = a.swapaxes(-1, -2)
        if self.transpose_b:
            b = b.swapaxes(-1, -2)
        return _matmul_arrays(a, b)

    def input_error(self, inputs, err):
        return ValueError(f"matmul: {_misfit(*inputs)}")

    def backward(self, g):
        return _product_grads(*self.inputs, self.transpose_a, self.transpose_b, g)


def _misfit(a, b):
    """Why a @ b is not defined, for an error message."""
    if a.ndim == 0 or b.ndim == 0:
        return f"operands must have at least one axis, got shapes {a.shape} and {b.shape}"
    k_a = a.shape[-1]
    k_b = b.shape[-2] if b.ndim > 1 else b.shape[0]
    if k_a != k_b:
        return f"shapes {a.shape} and {b.shape} do not align: a's last axis ({k_a}) must equal b's second-to-last ({k_b})"
    return f"batch axes of shapes {a.shape} and {b.shape} cannot be broadcast"


def _product_grads(a, b, ta, tb, g):
    """(da, db) of out = op(a) @ op(b) given g = dL/d(out), None where an input needs none
    (only products made here are read transposed, and never vectors)."""
    a2 = reshape(a, (1,) + a.shape) if a.ndim == 1 else a
    b2 = reshape(b, b.shape + (1,)) if b.ndim == 1 else b
    g2 = g
    if a.ndim == 1:
        g2 = reshape(g2, g2.shape[:-1] + (1,) + g2.shape[-1:]) if b.ndim > 1 else reshape(g2, g2.shape + (1,))
    if b.ndim == 1:
        g2 = reshape(g2, g2.shape + (1,))
    ga = gb = None
    if a.requires_grad:
        ga = _product(b2, g2, tb, True) if ta else _product(g2, b2, False, not tb)
        ga = reshape(sum_to(ga, a2.shape), a.shape)
    if b.requires_grad:
        gb = _product(g2, a2, True, ta) if tb else _product(a2, g2, not ta, False)
        gb = reshape(sum_to(gb, b2.shape), b.shape)
    return ga, gb


def _matmul_arrays(a, b):
    """a @ b; an outer product (inner size 1, both operands matrices or stacks) as a broadcast multiply."""
    if a.ndim > 1 and b.ndim > 1 and a.shape[-1] == 1 and b.shape[-2] == 1:
        return a * b
    return a @ b


class Linear(Function):
    """out = x @ w + b, b's last axis the features and its leading axes (a task axis) the result's
    first ones, b broadcast over the axes between (a task's examples);
    dx, dw as for matmul, db = g summed over the axes b was broadcast along."""

    def forward(self, x, w, b):
        try:
            out = _matmul_arrays(x, w)
        except ValueError:
            raise ValueError(_misfit(x, w)) from None
        if b.ndim == 0:
            raise ValueError("the bias must have an axis of features, its last")
        lead = b.ndim - 1
        if b.ndim > out.ndim or b.shape[:lead] != out.shape[:lead] or b.shape[-1] != out.shape[-1]:
            raise ValueError(f"the bias must have the shape of the result's first {lead} axes and its "
                             f"last, {out.shape[:lead] + out.shape[-1:]}")
        out += b.reshape(b.shape[:lead] + (1,) * (out.ndim - b.ndim) + b.shape[lead:])
        return out

    def input_error(self, inputs, err):
        x, w, b = inputs
        return ValueError(f"linear: cannot apply to input {x.shape}, weight {w.shape} and bias {b.shape}: {err}")

    def backward(self, g):
        x, w, b = self.inputs
        gx, gw = _product_grads(x, w, False, False, g)
        gb = None
        if b.requires_grad:
            between = tuple(range(b.ndim - 1, g.ndim - 1))
            gb = reduce_sum(g, between) if between else g
        return gx, gw, gb


def _product(a, b, transpose_a, transpose_b):
    """op(a) @ op(b) as one node."""
    return MatMul.apply(a, b, transpose_a=transpose_a, transpose_b=transpose_b)


def matmul(a, b):
    return MatMul.apply(*binary_operands(a, b, "matmul"))


def linear(x, w, b):
    """x @ w + b as one node (see Linear)."""
    x, w = binary_operands(x, w, "linear")
    x, b = binary_operands(x, b, "linear")
    return Linear.apply(x, w, b)
