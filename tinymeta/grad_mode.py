"""Whether ops record the graph: `no_grad()` switches recording off.

Outside `no_grad()` every op on a tensor that requires grad records a node.
The backward pass itself runs with recording off unless `create_graph=True`,
which is how the same backward code yields plain gradients or differentiable
ones (for Hessian-vector products and MAML).
"""
import functools

_enabled = True


def is_grad_enabled():
    return _enabled


class set_grad_enabled:
    """Context manager (and decorator) that sets recording on or off and restores it."""

    def __init__(self, mode):
        self.mode = bool(mode)

    def __enter__(self):
        global _enabled
        self.previous, _enabled = _enabled, self.mode

    def __exit__(self, *exc):
        global _enabled
        _enabled = self.previous

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(self.mode):
                return fn(*args, **kwargs)
        return wrapper


class no_grad(set_grad_enabled):
    """`with no_grad():` (or `@no_grad()`) runs ops without recording a graph."""

    def __init__(self):
        super().__init__(False)


class enable_grad(set_grad_enabled):
    """`with enable_grad():` records the graph even inside `no_grad()`."""

    def __init__(self):
        super().__init__(True)
