"""Replaying a recorded computation: the same array operations, none of the graph's bookkeeping.

On small arrays most of a meta-iteration's time is Python, not arithmetic: each
primitive makes a node and a Tensor, and the backward pass sorts the graph,
sums gradients in dicts and calls each node's `backward`, which at second order
makes more nodes. None of that depends on the values. Given inputs of the same
shapes and dtypes, a function made of primitives runs the same forwards on the
same arrays in the same order every time, so `Replay(fn)` records that order
once and from then on runs only the forwards:

    recording   call fn, noting at every Function.apply the node and where each
                of its input arrays came from: an input of fn, the result of an
                earlier step, or a constant (the 2.0 of 2 * x, a tensor fn reads
                from elsewhere, whose .data is then read afresh at every replay
                and must keep its shape, dtype and device)
    replay      slots = fn's input arrays, then the constants; for each step
                    slots[out] = node.forward(*[slots[i] for i in ins])
                and fn's outputs are read from their slots

For this to give what fn gives, fn must compute every array that depends on its
inputs with primitives (an array made by plain numpy would be replayed as a
stale constant), its Python control flow must depend on shapes only, and no
primitive may carry arrays between nodes outside their inputs. These are
checked before a recording is used:
- `item()`, `float()` and `bool()` of a tensor raise while recording (a branch
  on a value; one on `.data` read directly goes unseen unless the check below
  takes the other branch);
- a node whose settings hold an array (where's condition) or whose forward keeps
  arrays on itself (conv's column matrices, max-pool's argmax, batch norm's
  statistics, read later by its backward) is refused while recording, naming it;
- right after the first recording fn runs once more, recorded again, on inputs
  perturbed by about 1% (integer inputs shuffled), and the replay of the first
  recording on those same inputs must match it: the same steps, the same
  constants and bit for bit the same outputs. A stale array shows up there.

Every new combination of input shapes, dtypes, devices and requires_grad is
recorded afresh. The outputs are values: a replay builds no graph, so they
cannot be differentiated further, which is what a training step needs (MAML's
loss and meta-gradient, already differentiated inside fn).
"""
import numpy as np

from . import anomaly, grad_mode
from .backend import get_array_module, to_numpy
from .recording import ReplayError, _state
from .tensor import Tensor


class Replay:
    """fn(*tensors) -> Tensor or tuple of Tensors, called as recorded steps after the first call
    (see the module docstring). Calls inside another recording run fn itself, to be recorded there,
    and so do calls under detect_anomaly(), so that each of fn's ops is checked as it runs."""

    def __init__(self, fn):
        self.fn = fn
        self.tapes = {}

    def __call__(self, *inputs):
        if _state.recording is not None or anomaly.is_anomaly_enabled():
            return self.fn(*inputs)
        try:
            key = (grad_mode.is_grad_enabled(),) + tuple((x.shape, x.dtype, type(x.data), x.requires_grad)
                                                         for x in inputs)
        except AttributeError:
            raise TypeError(f"Replay({_name(self.fn)}): takes Tensors, got "
                            f"({', '.join(type(x).__name__ for x in inputs)})") from None
        tape = self.tapes.get(key)
        if tape is None:
            tape, values = self._recorded_and_checked(inputs)
            self.tapes[key] = tape
        else:
            values = tape.run([x.data for x in inputs])
        return tuple(Tensor(v) for v in values) if tape.many else Tensor(values[0])

    def _recorded_and_checked(self, inputs):
        """The tape of fn on these inputs, checked on perturbed ones, and fn's output arrays."""
        tape, values = self._record(inputs)
        others = _perturbed(inputs)
        check, computed = self._record(others)
        why = tape.differs_from(check, tape.run([x.data for x in others]), computed)
        if why:
            raise ReplayError(f"Replay({_name(self.fn)}): replaying its first recording on perturbed inputs "
                              f"does not give what it computes on them ({why}): it computes an array from its "
                              "inputs outside tinymeta's primitives, or branches on their values; call it "
                              "directly instead")
        return tape, values

    def _record(self, inputs):
        """fn called on inputs while recording: its tape and its output arrays."""
        recording = _Recording([x.data for x in inputs], _name(self.fn))
        _state.recording = recording
        try:
            result = self.fn(*inputs)
        finally:
            _state.recording = None
        many = isinstance(result, (tuple, list))
        results = tuple(result) if many else (result,)
        return recording.finished(results, many), [t.data for t in results]


class _Recording:
    """The steps of one call of fn, as Function.apply notes them (`add`)."""

    def __init__(self, input_arrays, owner):
        self.owner = owner
        self.slot_of = {}       # id(array) -> slot
        self.arrays = []        # the array of each slot, alive so that no id is reused while recording
        self.constants = {}     # slot -> the Tensor of an array that is neither an input nor a result
        self.steps = []         # (node, its settings, input slots, output slot)
        self.n_inputs = len(input_arrays)
        for array in input_arrays:
            self._new_slot(array)

    def _new_slot(self, array):
        self.slot_of[id(array)] = len(self.arrays)
        self.arrays.append(array)
        return len(self.arrays) - 1

    def _slot(self, tensor):
        slot = self.slot_of.get(id(tensor.data))
        if slot is None:
            slot = self._new_slot(tensor.data)
            self.constants[slot] = tensor
        return slot

    def add(self, node, settings, inputs, out):
        """Note one applied primitive: its settings (the node's attributes before forward ran), inputs, output."""
        name = node.name()
        held = [key for key, value in settings.items() if type(value).__name__ == "ndarray"]  # numpy's or cupy's
        if held:
            raise ReplayError(f"Replay({self.owner}): {name} takes an array as a setting ({', '.join(held)}), "
                              "not as an input, so a replay would reuse the recorded one")
        kept = [key for key, value in vars(node).items() if key not in settings or settings[key] is not value]
        if kept:
            raise ReplayError(f"Replay({self.owner}): {name}'s forward keeps arrays on its node "
                              f"({', '.join(kept)}) for later nodes, which a replay does not pass on")
        ins = tuple(self._slot(x) for x in inputs)
        self.steps.append((node, settings, ins, self._new_slot(out)))

    def finished(self, results, many):
        missing = [i for i, t in enumerate(results) if id(t.data) not in self.slot_of]
        if missing:
            raise ReplayError(f"Replay({self.owner}): output(s) {missing} were not made by a primitive "
                              "(nor are they inputs)")
        return _Tape(self, [self.slot_of[id(t.data)] for t in results], many)


class _Tape:
    """A finished recording, ready to run on new input arrays."""

    def __init__(self, recording, output_slots, many):
        self.n_inputs, self.outputs, self.many = recording.n_inputs, output_slots, many
        # (slot, the Tensor, its array when recorded): read afresh at each run, checked against the recording
        self.constants = [(slot, tensor, recording.arrays[slot]) for slot, tensor in recording.constants.items()]
        self.signature = [(type(node), settings, ins, out) for node, settings, ins, out in recording.steps]
        # free each slot after the last step that reads it, as the eager run frees its temporaries
        last_read = {}
        for step, (_, _, ins, out) in enumerate(recording.steps):
            last_read.update((slot, step) for slot in ins)
            last_read.setdefault(out, step)
        frees = [[] for _ in recording.steps]
        for slot, step in last_read.items():
            if slot >= self.n_inputs and slot not in recording.constants and slot not in output_slots:
                frees[step].append(slot)
        for node, *_ in recording.steps:
            node.release()  # the recorded graph is not needed: the steps hold the nodes for their forwards
        self.steps = [(node.forward, ins, out, tuple(free))
                      for (node, _, ins, out), free in zip(recording.steps, frees)]
        self.owner = recording.owner
        self.slot_count = len(recording.arrays)

    def run(self, arrays):
        """fn's output arrays for these input arrays (shapes and dtypes as recorded)."""
        slots = [None] * self.slot_count
        slots[:self.n_inputs] = arrays
        for slot, tensor, recorded in self.constants:
            data = tensor.data
            if data is not recorded and _kind(data) != _kind(recorded):
                raise ReplayError(f"Replay({self.owner}): a tensor it reads from outside its inputs was "
                                  f"{_describe(recorded)} when recorded and is {_describe(data)} now; "
                                  "pass it as an input, or make a new Replay")
            slots[slot] = data
        for forward, ins, out, free in self.steps:
            value = forward(*[slots[i] for i in ins])
            slots[out] = np.asarray(value) if isinstance(value, np.generic) else value
            for slot in free:
                slots[slot] = None
        return [slots[slot] for slot in self.outputs]

    def differs_from(self, other, replayed, computed):
        """Why another recording, the outputs it `computed` and this tape's replay on its inputs
        disagree; '' if they do not."""
        if other.signature != self.signature:
            steps = len(self.signature), len(other.signature)
            return f"other steps ({steps[0]} recorded first, {steps[1]} now)"
        for (_, _, array), (_, _, theirs) in zip(self.constants, other.constants):
            if not _same(array, theirs):
                return f"a constant of shape {np.shape(array)} changed"
        for i, (mine, theirs) in enumerate(zip(replayed, computed)):
            if not _same(mine, theirs):
                return f"output {i} differs"
        return ""


def _kind(array):
    return array.shape, array.dtype, type(array)


def _describe(array):
    return f"{type(array).__module__}.{type(array).__name__} {array.dtype} of shape {array.shape}"


def _same(a, b):
    xp = get_array_module(a)
    return a.shape == b.shape and a.dtype == b.dtype and bool(xp.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


def _perturbed(inputs):
    """New leaf tensors like `inputs`: floating values moved by about 1%, others shuffled."""
    rng = np.random.default_rng(0)
    others = []
    for x in inputs:
        xp, data = get_array_module(x.data), x.data
        if data.dtype.kind in "fc":
            noise = xp.asarray(rng.uniform(0.5, 1.5, data.shape).astype(data.dtype))
            moved = data + (0.01 + 0.01 * xp.abs(data)) * noise
        else:
            moved = xp.asarray(rng.permutation(to_numpy(data).reshape(-1)).reshape(data.shape))
        others.append(Tensor(moved, x.requires_grad))
    return others


def _name(fn):
    return getattr(fn, "__qualname__", type(fn).__name__)
