"""Elementwise primitives, with numpy broadcasting.

Each binary op broadcasts its inputs as numpy does; its backward reduces the
incoming gradient back to each input's shape with `sum_to`, the one place
broadcasting is undone. Notation: g is dL/d(out), the gradient arriving from
the result; each docstring gives out = f(inputs) and the vector-Jacobian
products g -> dL/d(input).
"""
import numpy as np

from ..backend import get_array_module, kernels_for
from ..function import Function
from ..tensor import Tensor
from . import threads
from .operands import as_tensor, binary_operands
from .shape import sum_to


def _broadcast_error(node, inputs, err):
    shapes = " and ".join(str(x.shape) for x in inputs)
    return ValueError(f"{node.name()}: shapes {shapes} cannot be broadcast together "
                      "(numpy rules: aligned from the right, each axis equal or 1)")


class Add(Function):
    """out = a + b;  da = g, db = g (each summed to its input's shape)."""
    input_error = _broadcast_error

    def forward(self, a, b):
        return threads.elementwise(np.add, a, b)

    def backward(self, g):
        a, b = self.inputs
        return (sum_to(g, a.shape) if a.requires_grad else None,
                sum_to(g, b.shape) if b.requires_grad else None)


class Sub(Function):
    """out = a - b;  da = g, db = -g (each summed to its input's shape)."""
    input_error = _broadcast_error

    def forward(self, a, b):
        return threads.elementwise(np.subtract, a, b)

    def backward(self, g):
        a, b = self.inputs
        return (sum_to(g, a.shape) if a.requires_grad else None,
                sum_to(-g, b.shape) if b.requires_grad else None)


class AddScaled(Function):
    """out = a + alpha * b for a fixed number alpha (a gradient step: p + (-lr) g);
    da = g, db = alpha * g (each summed to its input's shape)."""
    input_error = _broadcast_error

    def __init__(self, alpha):
        self.alpha = alpha

    def forward(self, a, b):
        out = threads.elementwise(np.multiply, self.alpha, b)
        if out.shape == a.shape:  # the usual case: one fresh array, no second temporary
            out += a
            return out
        return threads.elementwise(np.add, a, out)

    def backward(self, g):
        a, b = self.inputs
        return (sum_to(g, a.shape) if a.requires_grad else None,
                sum_to(g * self.alpha, b.shape) if b.requires_grad else None)


class Mul(Function):
    """out = a * b;  da = g * b, db = g * a."""
    input_error = _broadcast_error

    def forward(self, a, b):
        return threads.elementwise(np.multiply, a, b)

    def backward(self, g):
        a, b = self.inputs
        return (sum_to(g * b, a.shape) if a.requires_grad else None,
                sum_to(g * a, b.shape) if b.requires_grad else None)


class Div(Function):
    """out = a / b;  da = g / b, db = -g * a / b^2 = -(g / b) * out."""
    input_error = _broadcast_error

    def forward(self, a, b):
        return threads.elementwise(np.divide, a, b)

    def backward(self, g):
        a, b = self.inputs
        g_over_b = g / b
        return (sum_to(g_over_b, a.shape) if a.requires_grad else None,
                sum_to(-g_over_b * self.output(), b.shape) if b.requires_grad else None)


class Pow(Function):
    """out = a ** b (tensor exponent);  da = g * b * a^(b-1), db = g * out * log(a)."""
    input_error = _broadcast_error

    def forward(self, a, b):
        return a ** b

    def backward(self, g):
        a, b = self.inputs
        return (sum_to(g * b * a ** (b - 1.0), a.shape) if a.requires_grad else None,
                sum_to(g * self.output() * log(a), b.shape) if b.requires_grad else None)


class PowScalar(Function):
    """out = a ** p for a fixed number p;  da = g * p * a^(p-1)."""

    def __init__(self, exponent):
        self.exponent = exponent

    def forward(self, a):
        return a ** self.exponent

    def backward(self, g):
        (a,) = self.inputs
        p = self.exponent
        if p == 2:
            return (g * (2.0 * a),)
        return (g * (p * power(a, p - 1)),)


class Maximum(Function):
    """out = max(a, b) elementwise;  g goes to a where a >= b, else to b (ties go to a)."""
    input_error = _broadcast_error

    def forward(self, a, b):
        return threads.elementwise(np.maximum, a, b)

    def backward(self, g):
        a, b = self.inputs
        a_wins = Tensor(threads.elementwise(np.greater_equal, a.data, b.data))
        return (sum_to(where(a_wins, g, 0.0), a.shape) if a.requires_grad else None,
                sum_to(where(a_wins, 0.0, g), b.shape) if b.requires_grad else None)


class Where(Function):
    """out = a where cond else b (cond is a constant boolean array);
    da = g where cond else 0, db = 0 where cond else g."""

    def __init__(self, cond):
        self.cond = cond

    def forward(self, a, b):
        return kernels_for(a, b).where(get_array_module(a, b).asarray(self.cond), a, b)

    def input_error(self, inputs, err):
        return ValueError(f"where: condition of shape {np.shape(self.cond)} and values of shapes "
                          f"{inputs[0].shape} and {inputs[1].shape} cannot be broadcast together")

    def backward(self, g):
        a, b = self.inputs
        return (sum_to(where(self.cond, g, 0.0), a.shape) if a.requires_grad else None,
                sum_to(where(self.cond, 0.0, g), b.shape) if b.requires_grad else None)


class ReLU(Function):
    """out = max(a, 0);  da = g where a >= 0, else 0 (at 0 the gradient passes, as in maximum(a, 0))."""

    def forward(self, a):
        return threads.elementwise(np.maximum, a, 0)

    def backward(self, g):
        return (ReLUGrad.apply(g, self.inputs[0]),)


class ReLUGrad(Function):
    """out = g where a >= 0, else 0: ReLU's backward as one primitive, so that its mask is made in a
    forward too (a replay recomputes it, see replay.py);  dg = (that selection of the incoming
    gradient), and nothing for a: the mask is piecewise constant in a."""

    def forward(self, g, a):
        return kernels_for(g, a).relu_backward(g, a)

    def backward(self, h):
        return ReLUGrad.apply(h, self.inputs[1]), None


class Neg(Function):
    """out = -a;  da = -g."""

    def forward(self, a):
        return threads.elementwise(np.negative, a)

    def backward(self, g):
        return (-g,)


class Exp(Function):
    """out = exp(a);  da = g * out."""

    def forward(self, a):
        return threads.elementwise(np.exp, a)

    def backward(self, g):
        return (g * self.output(),)


class Log(Function):
    """out = log(a);  da = g / a."""

    def forward(self, a):
        return np.log(a)

    def backward(self, g):
        return (g / self.inputs[0],)


class Sqrt(Function):
    """out = sqrt(a);  da = g / (2 out)."""

    def forward(self, a):
        return threads.elementwise(np.sqrt, a)

    def backward(self, g):
        return (g / (2.0 * self.output()),)


class Sin(Function):
    """out = sin(a);  da = g * cos(a)."""

    def forward(self, a):
        return np.sin(a)

    def backward(self, g):
        return (g * cos(self.inputs[0]),)


class Cos(Function):
    """out = cos(a);  da = -g * sin(a)."""

    def forward(self, a):
        return np.cos(a)

    def backward(self, g):
        return (-(g * sin(self.inputs[0])),)


class Tanh(Function):
    """out = tanh(a);  da = g * (1 - out^2)."""

    def forward(self, a):
        return np.tanh(a)

    def backward(self, g):
        out = self.output()
        return (g * (1.0 - out * out),)


class Sigmoid(Function):
    """out = 1 / (1 + exp(-a)), computed without overflow;  da = g * out * (1 - out)."""

    def forward(self, a):
        e = np.exp(-np.abs(a))  # never overflows; exp(-|a|) in (0, 1]
        return get_array_module(a).where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

    def backward(self, g):
        out = self.output()
        return (g * (out * (1.0 - out)),)


class Abs(Function):
    """out = |a|;  da = g * sign(a) (sign is piecewise constant: no second-order term)."""

    def forward(self, a):
        return np.abs(a)

    def backward(self, g):
        return (g * Tensor(np.sign(self.inputs[0].data)),)


class AsType(Function):
    """out = a converted to another float dtype;  da = g converted back."""

    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, a):
        return a.astype(self.dtype)

    def backward(self, g):
        return (astype(g, self.inputs[0].dtype),)


# --- the functions users call -------------------------------------------
def add(a, b):
    return Add.apply(*binary_operands(a, b, "add"))


def sub(a, b):
    return Sub.apply(*binary_operands(a, b, "sub"))


def add_scaled(a, b, alpha):
    """a + alpha * b as one node, alpha a number."""
    return AddScaled.apply(*binary_operands(a, b, "add_scaled"), alpha=alpha)


def mul(a, b):
    return Mul.apply(*binary_operands(a, b, "mul"))


def div(a, b):
    return Div.apply(*binary_operands(a, b, "div"))


def power(a, exponent):
    """a ** exponent; a number exponent is a constant of the op, a tensor one is differentiable."""
    if isinstance(exponent, (int, float)) and not isinstance(exponent, bool):
        return PowScalar.apply(as_tensor(a), exponent=exponent)
    return Pow.apply(*binary_operands(a, exponent, "pow"))


def maximum(a, b):
    return Maximum.apply(*binary_operands(a, b, "maximum"))


def where(cond, a, b):
    """Elementwise `a if cond else b`; cond is a boolean array or tensor (never differentiated)."""
    cond = cond.data if isinstance(cond, Tensor) else cond
    if not hasattr(cond, "dtype"):  # a list or a Python bool; arrays stay on their device
        cond = np.asarray(cond)
    if cond.dtype != np.bool_:
        raise TypeError(f"where: condition must be boolean, got dtype {cond.dtype}")
    return Where.apply(*binary_operands(a, b, "where"), cond=cond)


def relu(a):
    return ReLU.apply(as_tensor(a))


def neg(a):
    return Neg.apply(as_tensor(a))


def exp(a):
    return Exp.apply(as_tensor(a))


def log(a):
    return Log.apply(as_tensor(a))


def sqrt(a):
    return Sqrt.apply(as_tensor(a))


def sin(a):
    return Sin.apply(as_tensor(a))


def cos(a):
    return Cos.apply(as_tensor(a))


def tanh(a):
    return Tanh.apply(as_tensor(a))


def sigmoid(a):
    return Sigmoid.apply(as_tensor(a))


def abs(a):  # noqa: A001 - the field's name for it
    return Abs.apply(as_tensor(a))


def astype(a, dtype):
    """a as another dtype; differentiable between float dtypes, a constant otherwise."""
    a = as_tensor(a)
    dtype = np.dtype(dtype)
    if dtype == a.dtype:
        return a
    if dtype.kind not in "fc":
        return Tensor(a.data.astype(dtype))
    return AsType.apply(a, dtype=dtype)
