"""The primitive-op protocol: forward on arrays, backward on Tensors.

A primitive is one small subclass of `Function`:

    class Exp(Function):
        def forward(self, x):            # arrays in, array out
            return np.exp(x)
        def backward(self, grad):        # Tensors in, tuple of Tensors out
            return (grad * self.output(),)

`Exp.apply(t)` runs `forward` on the tensors' data. When recording is on and an
input requires grad, the instance becomes the graph node of the result: it keeps
the input Tensors (`self.inputs`) and the output array. Because `backward` is
written with other primitives on Tensors, running it with recording on builds
graph nodes too, so gradients of gradients come for free. While a Replay records
a function (replay.py), `apply` also notes each node and its arrays there.
"""
import numpy as np

from . import anomaly, grad_mode, recording as replay_recording
from .tensor import Tensor


class Function:
    """Base class of primitives; an applied instance is a node of the graph.

    inputs:            the input Tensors (None once the graph was freed)
    edit_stamp:        `Tensor.edits` (the count of in-place edits) when recorded
    out_data:          the output array, for backwards that use the result
    forward_stack:     where the op was applied, kept under `detect_anomaly()` only
    """
    forward_stack = None

    def forward(self, *arrays):
        raise NotImplementedError

    def backward(self, grad):
        """Given dL/d(output) as a Tensor, return dL/d(input) for each input (None where unneeded)."""
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params):
        """Run forward on the inputs' data; record this node if a gradient may flow."""
        node = cls(**params) if params else cls()
        arrays = [x.data for x in inputs]
        recording = replay_recording._state.recording
        if recording is not None:
            settings = dict(vars(node))
        try:
            out = node.forward(*arrays)
        except (ValueError, IndexError, TypeError) as err:
            raise node.input_error(inputs, err) from None
        if isinstance(out, np.generic):  # numpy reductions return scalars, keep 0-d arrays
            out = np.asarray(out)
        if anomaly._state.enabled:
            anomaly.check_forward(node, inputs, out)
            anomaly.remember_forward(node)
        if recording is not None:
            recording.add(node, settings, inputs, out)
        if grad_mode._state.enabled:
            for x in inputs:
                if x.requires_grad:
                    node.inputs = inputs
                    node.edit_stamp = Tensor.edits
                    node.out_data = out
                    return Tensor(out, True, node)
        return Tensor(out)

    @property
    def needs_input_grad(self):
        """One bool per input: does a gradient have to flow there?"""
        return tuple([x.requires_grad for x in self.inputs])

    def output(self):
        """The node's output as a Tensor that is part of the graph (same node)."""
        return Tensor(self.out_data, True, self)

    def input_error(self, inputs, err):
        """The error a user sees when forward rejects its inputs; ops refine it."""
        shapes = ", ".join(str(x.shape) for x in inputs)
        return ValueError(f"{self.name()}: cannot apply to inputs of shapes {shapes}: {err}")

    @classmethod
    def name(cls):
        return cls.__name__.lower()

    def release(self):
        """Free the graph behind this node (after a backward without retain_graph)."""
        self.inputs = None
        self.out_data = None
