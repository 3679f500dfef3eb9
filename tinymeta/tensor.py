"""Tensor: an array, whether it requires a gradient, and the node that made it.

A Tensor made by a primitive op points to that op's node (a `Function`
instance, see function.py), which holds the op's inputs; following these
pointers from a result back to the leaves is the computation graph that
reverse mode walks. Leaves (tensors the user made) have no node.

This module knows nothing of the ops: the arithmetic operators and methods
(`a + b`, `x.sum()`, ...) are attached in `tensor_methods.py` when the package
loads, so that `ops` can import `tensor` and not the other way round.
"""
import numpy as np

from . import backend, grad_mode
from .recording import refuse_value_read


class Tensor:
    """An n-dimensional array in the computation graph.

    data:           the array (numpy, or cupy on a GPU)
    requires_grad:  whether gradients flow to this tensor
    grad:           gradient accumulated by `backward()` (a Tensor), or None
    _node:          the Function that produced it, None for leaves
    _version:       the value of `Tensor.edits` at this tensor's last in-place
                    change (0 if none), so a backward can tell its data changed
    """
    __slots__ = ("data", "requires_grad", "grad", "_node", "_version", "__weakref__")
    __array_ufunc__ = None  # numpy defers to Tensor's reflected operators (2.0 * t)
    # In-place edits made so far, over all tensors. A node records this count when it
    # is made; an input whose `_version` is larger at backward time changed after the
    # node saw it. One global counter keeps the per-op cost of the check to a read.
    edits = 0

    def __init__(self, data, requires_grad=False, _node=None):
        self.data = data
        self.requires_grad = requires_grad
        self.grad = None
        self._node = _node
        self._version = 0
        if requires_grad and _node is None and data.dtype.kind not in "fc":
            raise TypeError(f"Tensor: only floating-point tensors can require grad, "
                            f"got dtype {data.dtype}")

    # --- array facts ---------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def device(self):
        """"cpu" or "cuda": where the data lives."""
        return backend.device_of(self.data)

    @property
    def is_leaf(self):
        return self._node is None

    def __len__(self):
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def item(self):
        """The value of a one-element tensor as a Python number."""
        return self._only_value("item")

    def __float__(self):
        return float(self._only_value("float"))

    def _only_value(self, op):
        refuse_value_read(op)
        if self.data.size != 1:
            raise ValueError(f"{op}: tensor of shape {self.shape} has {self.size} elements, "
                             "expected exactly one")
        return self.data.item()

    def numpy(self):
        """The data as a numpy array (a copy from the GPU, the array itself on the CPU)."""
        return backend.to_numpy(self.data)

    def __array__(self, dtype=None, copy=None):
        """np.asarray(t) is t.numpy() (not an array of 0-d tensors), so numpy functions and
        plotting take tensors; like .numpy() it leaves the graph behind."""
        array = backend.to_numpy(self.data)
        if dtype is not None:
            array = array.astype(dtype, copy=False)
        return array.copy() if copy else array

    def detach(self):
        """The same data as a new leaf that is cut from the graph and requires no grad."""
        return Tensor(self.data)

    def requires_grad_(self, requires_grad=True):
        """Mark a leaf as needing gradients (in place); returns self."""
        if self._node is not None and not requires_grad:
            raise ValueError("requires_grad_: cannot switch off gradients of a non-leaf tensor; "
                             "use detach()")
        if requires_grad and self.data.dtype.kind not in "fc":
            raise TypeError(f"requires_grad_: only floating-point tensors can require grad, "
                            f"got dtype {self.dtype}")
        self.requires_grad = requires_grad
        return self

    # --- in-place updates (optimizers) ---------------------------------
    def copy_(self, value):
        """Overwrite the data in place with `value` (a Tensor or array), e.g. an optimizer step.

        Allowed only under `no_grad()` for tensors that require grad: an in-place
        change is invisible to the graph. A backward that saved this tensor
        before the change raises instead of using the new data.
        """
        if self.requires_grad and grad_mode.is_grad_enabled():
            raise RuntimeError("copy_: in-place update of a tensor that requires grad; "
                               "wrap it in `with tinymeta.no_grad():`")
        new = value.data if isinstance(value, Tensor) else value
        if getattr(new, "shape", ()) != self.data.shape:
            raise ValueError(f"copy_: value of shape {getattr(new, 'shape', ())} "
                             f"does not match tensor of shape {self.data.shape}")
        self.data[...] = new
        Tensor.edits += 1
        self._version = Tensor.edits
        return self

    def zero_grad(self):
        self.grad = None

    def __repr__(self):
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extra = ""
        if self.data.dtype != np.float32:
            extra += f", dtype={self.dtype}"
        if not isinstance(self.data, np.ndarray):
            extra += f", device='{self.device}'"
        if self._node is not None:
            extra += f", grad_fn={type(self._node).__name__}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def __bool__(self):
        refuse_value_read("bool")
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous; "
                             "use (...).data.any() or .all()")
        return bool(self.data)

    __hash__ = object.__hash__  # __eq__ is elementwise (tensor_methods), identity hashing stays

