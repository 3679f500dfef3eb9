"""Whether ops record the graph: `no_grad()` switches recording off.

Outside `no_grad()` every op on a tensor that requires grad records a node.
The backward pass itself runs with recording off unless `create_graph=True`,
which is how the same backward code yields plain gradients or differentiable
ones (for Hessian-vector products and MAML).

The setting belongs to the thread that makes it (as in PyTorch): threads that
each compute the meta-gradient of a share of a meta-batch (meta/task_threads.py)
switch recording on and off without seeing each other's switches.
"""
import functools
import threading


class _State(threading.local):
    enabled = True  # each thread starts with recording on


_state = _State()


def is_grad_enabled():
    return _state.enabled


class set_grad_enabled:
    """Context manager (and decorator) that sets recording on or off and restores it."""

    def __init__(self, mode):
        self.mode = bool(mode)

    def __enter__(self):
        self.previous, _state.enabled = _state.enabled, self.mode

    def __exit__(self, *exc):
        _state.enabled = self.previous

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
