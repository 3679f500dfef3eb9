"""Module: a thin holder of named parameters around a functional forward.

A Module owns an ordered dict of parameter tensors and of child modules; the
full name of a parameter joins the names on its path (`features.0.weight`).
Calling `model(x)` runs `forward` with the module's own parameters, and
`model(x, params=adapted)` runs the very same code with any other dict of the
same names, which is all MAML's inner loop needs:

    adapted = {name: p - inner_lr * g for (name, p), g in zip(params.items(), grads)}
    loss = loss_fn(model(query_x, params=adapted), query_y)

A parameter passed in `params` may carry one extra leading axis (one set of
weights per task, for layers that support it: see nn.functional.linear).
"""
from collections import OrderedDict

import numpy as np

from ..backend import array_module, device_of, to_device, to_numpy
from ..creation import tensor
from ..grad_mode import no_grad
from ..ops.operands import as_tensor
from ..tensor import Tensor


class Module:
    def __init__(self):
        self._parameters = OrderedDict()
        self._modules = OrderedDict()

    # --- building ------------------------------------------------------
    def add_parameter(self, name, array):
        """Register a new parameter (a leaf that requires grad) holding `array`."""
        self._parameters[name] = tensor(array, requires_grad=True)
        return self._parameters[name]

    def add_module(self, name, module):
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}: child {name!r} is a {type(module).__name__}, expected a Module")
        self._modules[str(name)] = module
        return module

    # --- running -------------------------------------------------------
    def forward(self, x, params, prefix):
        """Compute the output from x, reading this module's parameters as params[prefix + name]."""
        raise NotImplementedError

    def __call__(self, x, params=None):
        if not isinstance(x, Tensor):  # data arrays go where the parameters are
            x = Tensor(to_device(x, self.device)) if hasattr(x, "shape") else as_tensor(x)
        if params is None:
            params = self.parameters_dict()
        else:
            self._check_params(params)
        return self.forward(x, params, "")

    def _check_params(self, params):
        for name, own in self.named_parameters():
            given = params.get(name)
            if given is None:
                raise KeyError(f"{type(self).__name__}: params has no entry {name!r} "
                               f"(expected names: {', '.join(n for n, _ in self.named_parameters())})")
            if given.shape != own.shape and given.shape[1:] != own.shape:
                raise ValueError(f"{type(self).__name__}: params[{name!r}] has shape {given.shape}, "
                                 f"expected {own.shape} (or a leading task axis: (tasks,) + {own.shape})")

    # --- inspecting ----------------------------------------------------
    def named_parameters(self, prefix=""):
        """(full name, tensor) pairs in registration order, depth first."""
        for name, p in self._parameters.items():
            yield prefix + name, p
        for name, child in self._modules.items():
            yield from child.named_parameters(f"{prefix}{name}.")

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def parameters_dict(self):
        """An ordered {full name: tensor} of the module's own parameters."""
        return OrderedDict(self.named_parameters())

    def named_buffers(self, prefix=""):
        """(full name, array) pairs of non-trained state, such as batch norm's running statistics."""
        for name, b in getattr(self, "_buffers", {}).items():
            yield prefix + name, b
        for name, child in self._modules.items():
            yield from child.named_buffers(f"{prefix}{name}.")

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    # --- devices -------------------------------------------------------
    @property
    def device(self):
        """Where the parameters live ("cpu" for a module without any)."""
        first = next(iter(self.named_parameters()), None)
        return "cpu" if first is None else first[1].device

    def to(self, device):
        """Move every parameter and buffer to `device`, in place; returns self."""
        array_module(device)  # a clear error for an unknown or unavailable device
        with no_grad():
            for _, p in self.named_parameters():
                p.data = to_device(p.data, device)
                p.grad = None
        self._move_buffers(device)
        return self

    def _move_buffers(self, device):
        buffers = getattr(self, "_buffers", {})
        for name in buffers:
            buffers[name] = to_device(buffers[name], device)
        for child in self._modules.values():
            child._move_buffers(device)

    # --- saving --------------------------------------------------------
    def state_dict(self):
        """{full name: array copy} of parameters and buffers."""
        state = OrderedDict((name, p.numpy().copy()) for name, p in self.named_parameters())
        state.update((name, np.array(to_numpy(b))) for name, b in self.named_buffers())
        return state

    def load_state_dict(self, state):
        """Copy arrays into the parameters and buffers, in place; names and shapes must match."""
        params = dict(self.named_parameters())
        targets = {name: p.data for name, p in params.items()}
        targets.update(self.named_buffers())
        missing = sorted(set(targets) - set(state))
        unexpected = sorted(set(state) - set(targets))
        if missing or unexpected:
            raise KeyError(f"load_state_dict: {type(self).__name__} is missing {missing} and does not "
                           f"have {unexpected}; is the checkpoint from another architecture?")
        for name, target in targets.items():
            value = np.asarray(state[name])
            if value.shape != target.shape:
                raise ValueError(f"load_state_dict: {name!r} has shape {value.shape} in the checkpoint "
                                 f"but {target.shape} in {type(self).__name__}")
        with no_grad():
            for name, target in targets.items():
                value = to_device(np.asarray(state[name], dtype=target.dtype), device_of(target))
                if name in params:
                    params[name].copy_(value)
                else:
                    target[...] = value

    def save(self, path):
        """Write the state dict to an .npz file."""
        np.savez(path, **self.state_dict())

    def load(self, path):
        with np.load(path) as archive:
            self.load_state_dict({name: archive[name] for name in archive.files})
        return self

    # --- printing ------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        lines.append(")")
        return "\n".join(lines)


class Sequential(Module):
    """Modules applied one after another; children are named 0, 1, 2, ..."""

    def __init__(self, *modules):
        super().__init__()
        for i, module in enumerate(modules):
            self.add_module(str(i), module)

    def forward(self, x, params, prefix):
        for name, module in self._modules.items():
            x = module.forward(x, params, f"{prefix}{name}.")
        return x

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)
