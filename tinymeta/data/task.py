"""Tasks as plain data.

A task is what a learning algorithm F receives and is judged on: a support set
(the task's training data, which F adapts on) and a query set (the task's test
data, on which the adapted model is scored). Each set is a pair of arrays,
inputs and targets, with one row per example. A meta-batch of tasks with equal
sizes can be stacked into one Task whose arrays carry a leading task axis.
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Examples:
    """A set of examples: `inputs[i]` is labelled `targets[i]`."""
    inputs: np.ndarray
    targets: np.ndarray

    def __post_init__(self):
        n_in, n_out = len(self.inputs), len(self.targets)
        if n_in != n_out:
            raise ValueError(f"Examples: inputs have {n_in} rows but targets have {n_out}; "
                             "each input needs exactly one target")

    def __len__(self):
        return len(self.inputs)

    def __iter__(self):
        """Unpacks as `inputs, targets = examples`."""
        return iter((self.inputs, self.targets))


@dataclass(frozen=True)
class Task:
    """One task: adapt on `support`, evaluate on `query`."""
    support: Examples
    query: Examples


def stack_tasks(tasks):
    """Stack equally-sized tasks into one Task with a leading task axis on every array."""
    tasks = list(tasks)
    if not tasks:
        raise ValueError("stack_tasks: got no tasks")
    sizes = {tuple(np.shape(array) for array in (*t.support, *t.query)) for t in tasks}
    if len(sizes) != 1:
        raise ValueError(f"stack_tasks: tasks differ in the shapes of their support and query inputs and "
                         f"targets {sorted(sizes)}; only tasks of equal sizes can be stacked")

    def stack(get):
        return np.array([get(t) for t in tasks])   # np.stack's checks, done above, cost more than the copy

    return Task(Examples(stack(lambda t: t.support.inputs), stack(lambda t: t.support.targets)),
                Examples(stack(lambda t: t.query.inputs), stack(lambda t: t.query.targets)))
