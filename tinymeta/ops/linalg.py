"""Matrix products.

matmul follows numpy: 2-D matrices, batched stacks (..., n, k) @ (..., k, m)
with broadcasting over the leading axes, and 1-D vectors promoted to a row (on
the left) or a column (on the right) and squeezed from the result. The backward
is da = g @ b^T and db = a^T @ g on the promoted operands, summed to each
input's shape.
"""
from ..function import Function
from .operands import binary_operands
from .shape import Transpose, reshape, sum_to, swapaxes


class MatMul(Function):
    """out = a @ b;  da = g @ b^T, db = a^T @ g (vectors promoted to matrices, batch axes summed)."""

    def forward(self, a, b):
        return a @ b

    def input_error(self, inputs, err):
        a, b = inputs
        if a.ndim == 0 or b.ndim == 0:
            return ValueError(f"matmul: operands must have at least one axis, got shapes {a.shape} and {b.shape}")
        k_a = a.shape[-1]
        k_b = b.shape[-2] if b.ndim > 1 else b.shape[0]
        if k_a != k_b:
            return ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align: "
                              f"a's last axis ({k_a}) must equal b's second-to-last ({k_b})")
        return ValueError(f"matmul: batch axes of shapes {a.shape} and {b.shape} cannot be broadcast")

    def backward(self, g):
        a, b = self.inputs
        if a.data.ndim == 2 and b.data.ndim == 2:  # the common case, without promotions
            return (matmul(g, Transpose.apply(b, axes=(1, 0))) if a.requires_grad else None,
                    matmul(Transpose.apply(a, axes=(1, 0)), g) if b.requires_grad else None)
        a2 = reshape(a, (1,) + a.shape) if a.ndim == 1 else a
        b2 = reshape(b, b.shape + (1,)) if b.ndim == 1 else b
        g2 = g
        if a.ndim == 1:
            g2 = reshape(g2, g2.shape[:-1] + (1,) + g2.shape[-1:]) if b.ndim > 1 else reshape(g2, g2.shape + (1,))
        if b.ndim == 1:
            g2 = reshape(g2, g2.shape + (1,))
        ga = gb = None
        if a.requires_grad:
            ga = reshape(sum_to(matmul(g2, swapaxes(b2, -1, -2)), a2.shape), a.shape)
        if b.requires_grad:
            gb = reshape(sum_to(matmul(swapaxes(a2, -1, -2), g2), b2.shape), b.shape)
        return ga, gb


def matmul(a, b):
    return MatMul.apply(*binary_operands(a, b, "matmul"))
