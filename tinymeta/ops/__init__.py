"""The differentiable ops: primitives (one Function subclass each) and compositions."""
from .composites import log_softmax, logsumexp, mean, softmax, var
from .elementwise import (abs, add, add_scaled, astype, cos, div, exp, log, maximum, mul, neg, power, relu,
                          sigmoid, sin, sqrt, sub, tanh, where)
from .linalg import linear, matmul
from .reduce import max, sum
from .shape import (broadcast_to, concatenate, getitem, permute, reshape, stack, sum_to,
                    swapaxes, to, transpose)

__all__ = ["abs", "add", "add_scaled", "astype", "broadcast_to", "concatenate", "cos", "div", "exp", "getitem", "log",
           "linear", "log_softmax", "logsumexp", "matmul", "max", "maximum", "mean", "mul", "neg", "permute",
           "power", "relu", "reshape", "sigmoid", "sin", "softmax", "sqrt", "stack", "sub", "sum",
           "sum_to", "swapaxes", "tanh", "to", "transpose", "var", "where"]
