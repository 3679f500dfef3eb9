"""Checkpoints a meta-training run can resume from.

One .npz file holds what the learner trains (the model's parameters and
buffers; Meta-SGD's learned rates and Reptile's inner Adam moments too), the
optimizer's state, the iteration reached, the run's configuration and the
states of its random generator and of the learner's own (Reptile's minibatch
order), so that a resumed run draws the same tasks an uninterrupted one would
have. It is written to a temporary file and renamed, so an interrupted
save never leaves a half-written checkpoint.
"""
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from ..backend import to_numpy


def save_checkpoint(path, model, optimizer, iteration, rng, config=None):
    """`model`: a Module or a meta-learner, anything with state_dict() and load_state_dict()."""
    arrays = {f"model/{name}": value for name, value in model.state_dict().items()}
    optim = optimizer.state_dict()
    for param, state in optim["state"].items():
        arrays.update({f"optimizer/{param}/{key}": to_numpy(value) for key, value in state.items()})
    meta = {"iteration": iteration, "config": config or {}, "rng": rng.bit_generator.state,
            "generators": {name: g.bit_generator.state for name, g in _generators(model).items()},
            "optimizer": {"lr": optim["lr"], "step_count": optim["step_count"], "params": list(optim["state"])}}
    arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    with open(partial, "wb") as f:
        np.savez(f, **arrays)
    os.replace(partial, path)


def load_checkpoint(path, model, optimizer, rng):
    """Restore model, optimizer and generator in place; returns (iteration, config)."""
    archive, meta = _open("load_checkpoint", path)
    with archive:
        model.load_state_dict({key[len("model/"):]: archive[key] for key in archive.files
                               if key.startswith("model/")})
        state = {param: {} for param in meta["optimizer"]["params"]}
        for key in archive.files:
            if key.startswith("optimizer/"):
                param, name = key[len("optimizer/"):].rsplit("/", 1)  # a parameter's name may hold "/"
                state[param][name] = archive[key]
    optimizer.load_state_dict({"lr": meta["optimizer"]["lr"], "step_count": meta["optimizer"]["step_count"],
                               "state": state})
    rng.bit_generator.state = meta["rng"]
    generators = _generators(model)
    saved = meta.get("generators", {})
    if set(saved) != set(generators):
        raise KeyError(f"load_checkpoint: the checkpoint holds generators {sorted(saved)}, the learner draws "
                       f"from {sorted(generators)}")
    for name, generator in generators.items():
        generator.bit_generator.state = saved[name]
    return meta["iteration"], meta["config"]


def checkpoint_info(path):
    """(iteration, config) of a checkpoint, without loading it into anything."""
    archive, meta = _open("checkpoint_info", path)
    archive.close()
    return meta["iteration"], meta["config"]


def _open(op, path):
    """(the open archive, its meta record); a missing file, or one that is not a checkpoint
    (cut short, or written by something else), is an error that says which file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{op}: no checkpoint at {path}")
    try:
        archive = np.load(path)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile):
        raise ValueError(_unreadable(op, path, "it is not an .npz archive")) from None
    try:
        meta = json.loads(archive["meta.json"].tobytes().decode())
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as err:
        archive.close()
        raise ValueError(_unreadable(op, path, f"its meta.json record cannot be read: {err}")) from None
    return archive, meta


def _unreadable(op, path, reason):
    return (f"{op}: {path} is not a readable checkpoint: {reason}; it may have been cut short or written "
            "by another program: delete it, or point to another")


def _generators(model):
    return model.generators() if hasattr(model, "generators") else {}
