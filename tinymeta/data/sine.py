"""The sine-wave regression tasks of the MAML paper.

Each task is y = a sin(x - b) with amplitude a ~ U[0.1, 5] and phase
b ~ U[0, pi]; x ~ U[-5, 5]. A task's support set has `shots` points (K), its
query set `queries` points, both drawn from the same curve.
"""
import math

import numpy as np

from .task import Examples, Task


class SineTasks:
    """A distribution over sine tasks; `sample(n, rng)` draws n of them."""

    def __init__(self, shots=10, queries=10, amplitude=(0.1, 5.0), phase=(0.0, math.pi),
                 x_range=(-5.0, 5.0), dtype=np.float32):
        for name, count in (("shots", shots), ("queries", queries)):
            if not isinstance(count, (int, np.integer)) or count < 1:
                raise ValueError(f"SineTasks: {name} must be a positive integer, got {count!r}")
        self.shots, self.queries = shots, queries
        self.amplitude, self.phase, self.x_range, self.dtype = amplitude, phase, x_range, dtype

    def draw_curve(self, rng):
        """(amplitude, phase) of one random task."""
        return rng.uniform(*self.amplitude), rng.uniform(*self.phase)

    def task(self, amplitude, phase, rng):
        """A task on the curve amplitude * sin(x - phase), with freshly drawn points."""
        def points(n):
            x = rng.uniform(*self.x_range, size=(n, 1))
            return Examples(x.astype(self.dtype), curve(x, amplitude, phase).astype(self.dtype))
        return Task(points(self.shots), points(self.queries))

    def sample(self, n, rng):
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"SineTasks.sample: rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return [self.task(*self.draw_curve(rng), rng) for _ in range(n)]


def curve(x, amplitude, phase):
    return amplitude * np.sin(x - phase)
