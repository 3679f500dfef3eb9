"""Derivatives of functions, with PyTorch's `torch.autograd.functional` names.

Each takes a function f of one tensor or a tuple of tensors and returns f's
output together with the derivative product asked for:

    vjp(f, x, v)    ->  f(x), v^T J         (one reverse pass)
    jvp(f, x, v)    ->  f(x), J v           (two reverse passes: the double-vjp trick)
    hvp(f, x, v)    ->  f(x), H v           (gradient of <grad f(x), v>)
    jacobian(f, x)  ->  J                   (one vjp per output element; small outputs)
    hessian(f, x)   ->  H                   (one hvp per input element; small inputs)

None of them forms a matrix it does not return: a Hessian-vector product costs
about two gradients, whatever the number of parameters.
"""
import numpy as np

from .autograd import grad
from .creation import tensor
from .grad_mode import enable_grad
from .ops import stack, sum
from .ops.operands import as_tensor
from .tensor import Tensor


def _prepare(inputs):
    """Inputs as fresh leaves that require grad, and whether a single tensor was given."""
    single = isinstance(inputs, Tensor) or not isinstance(inputs, (tuple, list))
    items = (inputs,) if single else tuple(inputs)
    leaves = tuple(Tensor(as_tensor(x).data, requires_grad=True) for x in items)
    return leaves, single


def _unpack(values, single):
    return values[0] if single else tuple(values)


def _call(f, leaves, single):
    with enable_grad():
        return f(leaves[0]) if single else f(*leaves)


def _directions(v, leaves, single, op):
    """The direction v of a product, one per input and shaped like it (a ValueError names the op);
    numbers and lists take the input's dtype."""
    vs = (v,) if single else tuple(v)
    if len(vs) != len(leaves):
        raise ValueError(f"{op}: {len(vs)} directions v for {len(leaves)} inputs")
    checked = []
    for i, (w, x) in enumerate(zip(vs, leaves)):
        w = as_tensor(np.asarray(w, x.data.dtype) if isinstance(w, (list, tuple, int, float)) else w)
        if w.shape != x.shape:
            which = "v" if single else f"v[{i}]"
            raise ValueError(f"{op}: {which} has shape {w.shape} but the input has shape {x.shape}; they must match")
        checked.append(w)
    return checked


def _detached(values, create_graph):
    return tuple(v if create_graph or v is None else v.detach() for v in values)


def vjp(f, inputs, v=None, create_graph=False):
    """(f(inputs), v^T J): the vector-Jacobian product; v may be omitted for scalar f."""
    leaves, single = _prepare(inputs)
    out = _call(f, leaves, single)
    grads = grad(out, leaves, grad_outputs=v, create_graph=create_graph, allow_unused=True)
    grads = tuple(g if g is not None else Tensor(np.zeros_like(x.data)) for g, x in zip(grads, leaves))
    return out if create_graph else out.detach(), _unpack(_detached(grads, create_graph), single)


def jvp(f, inputs, v, create_graph=False):
    """(f(inputs), J v) by the double-vjp trick: u -> J^T u is linear in u, and its
    vector-Jacobian product with v is (J^T)^T v = J v."""
    leaves, single = _prepare(inputs)
    vs = _directions(v, leaves, single, "jvp")
    out = _call(f, leaves, single)
    u = Tensor(np.zeros_like(out.data), requires_grad=True)  # any value works: J^T u is linear in u
    with enable_grad():
        jt_u = grad(out, leaves, grad_outputs=u, create_graph=True, allow_unused=True)
        used = [(g, as_tensor(w, g.dtype)) for g, w in zip(jt_u, vs) if g is not None]
        if not used:
            return out.detach(), Tensor(np.zeros_like(out.data))
        inner = sum(stack([sum(g * w) for g, w in used]))
    j_v = grad(inner, u, create_graph=create_graph)
    return out if create_graph else out.detach(), j_v


def hvp(f, inputs, v, create_graph=False):
    """(f(inputs), H v) for scalar f: the gradient of <grad f(x), v> with respect to x."""
    leaves, single = _prepare(inputs)
    vs = _directions(v, leaves, single, "hvp")
    out = _call(f, leaves, single)
    _check_scalar(out, "hvp")
    with enable_grad():
        grads = grad(out, leaves, create_graph=True, allow_unused=True)
        used = [(g, as_tensor(w, g.dtype)) for g, w in zip(grads, vs) if g is not None]
        inner = sum(stack([sum(g * w) for g, w in used]))
    hv = grad(inner, leaves, create_graph=create_graph, allow_unused=True)
    hv = tuple(h if h is not None else Tensor(np.zeros_like(x.data)) for h, x in zip(hv, leaves))
    return out if create_graph else out.detach(), _unpack(_detached(hv, create_graph), single)


def jacobian(f, x):
    """The Jacobian of f at a single tensor x, of shape f(x).shape + x.shape (one vjp per output)."""
    (leaf,), _ = _prepare(x)
    out = _call(f, (leaf,), True)
    rows = []
    for i in range(out.size):
        basis = np.zeros(out.size, dtype=out.dtype)
        basis[i] = 1
        g = grad(out, leaf, grad_outputs=tensor(basis.reshape(out.shape)), retain_graph=True,
                 allow_unused=True)
        rows.append(g.data if g is not None else np.zeros_like(leaf.data))
    return tensor(np.stack(rows).reshape(out.shape + leaf.shape))


def hessian(f, x):
    """The Hessian of scalar f at a single tensor x, of shape x.shape + x.shape (one hvp per element)."""
    (leaf,), _ = _prepare(x)
    columns = []
    for i in range(leaf.size):
        basis = np.zeros(leaf.size, dtype=leaf.dtype)
        basis[i] = 1
        _, h = hvp(f, leaf, basis.reshape(leaf.shape))
        columns.append(h.data)
    return tensor(np.stack(columns).reshape(leaf.shape + leaf.shape))


def _check_scalar(out, op):
    if out.size != 1:
        raise ValueError(f"{op}: f must return a scalar (one element), got shape {out.shape}")
