"""Whether this thread is recording a function for a replay (replay.py), and what may not run then.

It sits below tensor.py and function.py, which both consult it: Function.apply
notes every primitive in the recording in progress, and a Tensor refuses to
hand its value to Python during one (a decision made on a value would be
replayed as the recorded call made it).
"""
import threading


class ReplayError(RuntimeError):
    """A function cannot be replayed: it computes outside the primitives, or a primitive keeps state."""


class _State(threading.local):
    recording = None   # the replay._Recording this thread's primitives are noted in, if any


_state = _State()


def refuse_value_read(op):
    """Raise if this thread is recording: a replay would not redo a Python decision on a value."""
    if _state.recording is not None:
        raise ReplayError(f"Replay({_state.recording.owner}): {op}() reads a tensor's value while recording; "
                          "a replay would reuse what the recorded call decided from it")
