"""The one place where Tensor gets its operators and op methods.

tensor.py cannot import the ops (they import it), so the package attaches
them here when it loads: `a + b` calls ops.add, `x.sum()` calls ops.sum, and
so on. Comparisons return boolean tensors that never require grad.
"""
from . import autograd, ops
from .tensor import Tensor


def _reflected(op):
    return lambda self, other: op(other, self)


def _comparison(compare):
    def method(self, other):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor(compare(self.data, other))
    return method


def _attach():
    operators = {
        "__add__": ops.add, "__radd__": _reflected(ops.add),
        "__sub__": ops.sub, "__rsub__": _reflected(ops.sub),
        "__mul__": ops.mul, "__rmul__": _reflected(ops.mul),
        "__truediv__": ops.div, "__rtruediv__": _reflected(ops.div),
        "__pow__": ops.power, "__rpow__": _reflected(ops.power),
        "__matmul__": ops.matmul, "__rmatmul__": _reflected(ops.matmul),
        "__neg__": ops.neg, "__getitem__": ops.getitem, "__abs__": ops.abs,
        "__lt__": _comparison(lambda a, b: a < b), "__le__": _comparison(lambda a, b: a <= b),
        "__gt__": _comparison(lambda a, b: a > b), "__ge__": _comparison(lambda a, b: a >= b),
        "__eq__": _comparison(lambda a, b: a == b), "__ne__": _comparison(lambda a, b: a != b),
    }
    methods = {name: getattr(ops, name) for name in (
        "exp", "log", "sin", "cos", "sqrt", "tanh", "sigmoid", "abs", "relu", "sum", "max", "mean", "var",
        "reshape", "permute", "swapaxes", "broadcast_to", "sum_to", "astype",
        "logsumexp", "log_softmax", "softmax", "matmul", "to")}
    methods["transpose"] = ops.permute  # numpy's x.transpose(*axes)
    methods["T"] = property(lambda self: ops.transpose(self))
    methods["backward"] = autograd.backward
    for name, fn in {**operators, **methods}.items():
        setattr(Tensor, name, fn)


_attach()
