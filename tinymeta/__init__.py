"""tinymeta: reverse-mode autodiff that differentiates its own gradients, for meta-learning.

    import tinymeta as tm
    x = tm.tensor([1.0, 2.0], requires_grad=True)
    (g,) = tm.grad((x ** 3).sum(), [x], create_graph=True)   # 3 x^2, differentiable
    (h,) = tm.grad(g.sum(), [x])                               # 6 x
"""
from . import heap  # noqa: F401  (large arrays reuse freed memory; see heap.py)
from . import tensor_methods  # noqa: F401  (attaches operators to Tensor)
from .anomaly import detect_anomaly, is_anomaly_enabled
from .autograd import backward, enable_grad, grad, is_grad_enabled, no_grad, set_grad_enabled
from .creation import full, ones, ones_like, rand, randn, tensor, zeros, zeros_like
from .functional import hessian, hvp, jacobian, jvp, vjp
from .gradcheck import GradcheckError, check_grads
from .ops import *  # noqa: F401,F403
from .replay import Replay, ReplayError
from .tensor import Tensor
