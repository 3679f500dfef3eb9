"""Anomaly detection: find the op that first turns finite numbers into NaN or infinity.

A diverging inner loop or a log of zero shows up as a NaN meta-loss many ops
later; inside `with detect_anomaly():` every primitive checks its own result:

- a forward whose inputs are all finite but whose output is not raises
  FloatingPointError naming the op and the input shapes (a non-finite input is
  an earlier op's doing, already checked there, so it passes);
- a backward that turns a finite incoming gradient into a non-finite one raises
  naming the op and the line of code whose forward recorded that node (the
  primitives a backward is made of are checked as forwards too, and their error
  says inside whose backward they ran).

Every node recorded in the context keeps the stack of its forward call, and
every result is scanned for non-finite values: slow, for debugging only. Outside
the context nothing is checked or kept. Unlike grad mode the setting is
process-wide, so that the worker threads of TaskThreads check their tasks too.
"""
import os
import traceback

import numpy as np

from .backend import get_array_module


class _State:
    enabled = False


_state = _State()
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class detect_anomaly:
    """`with detect_anomaly():` raises FloatingPointError at the first op that makes
    a NaN or an infinity from finite values, forward or backward."""

    def __enter__(self):
        self.previous, _state.enabled = _state.enabled, True

    def __exit__(self, *exc):
        _state.enabled = self.previous


def is_anomaly_enabled():
    return _state.enabled


def _all_finite(array):
    return not np.issubdtype(array.dtype, np.inexact) or bool(get_array_module(array).isfinite(array).all())


def check_forward(node, inputs, out):
    """Raise if `out` is not finite though every input is."""
    if _all_finite(out) or not all(_all_finite(x.data) for x in inputs):
        return
    bad = int((~get_array_module(out).isfinite(out)).sum())
    shapes = ", ".join(str(x.shape) for x in inputs)
    raise FloatingPointError(f"{node.name()}: {bad} of its {out.size} output values are NaN or "
                             f"infinite, from finite inputs of shapes {shapes}")


def remember_forward(node):
    """Keep where the op was called (dropping this module's and function.py's frames)."""
    node.forward_stack = traceback.extract_stack()[:-2]


def checked_backward(node, grad):
    """node.backward(grad), raising if it makes non-finite gradients from a finite one."""
    try:
        input_grads = node.backward(grad)
    except FloatingPointError as err:
        raise FloatingPointError(f"{err}, in the backward of {node.name()}{_forward_call(node)}") from None
    if not _all_finite(grad.data):
        return input_grads
    for i, g in enumerate(input_grads):
        if g is not None and not _all_finite(g.data):
            raise FloatingPointError(
                f"{node.name()}.backward: made a NaN or infinite gradient for input {i} (shape "
                f"{g.shape}) from a finite incoming gradient of shape {grad.shape}{_forward_call(node)}")
    return input_grads


def _forward_call(node):
    """'; its forward ran at FILE:LINE ...' for a node recorded under detect_anomaly, with the
    innermost caller outside tinymeta when the op was applied inside it (a layer, MAML's adapt)."""
    stack = node.forward_stack
    if not stack:
        return ""
    where = f"; its forward ran at {_frame(stack[-1])}"
    outside = [frame for frame in stack if not frame.filename.startswith(_PACKAGE)]
    if outside and outside[-1] is not stack[-1]:
        where += f", called from {_frame(outside[-1])}"
    return where


def _frame(frame):
    return f"{frame.filename}:{frame.lineno} in {frame.name} ({frame.line})"
