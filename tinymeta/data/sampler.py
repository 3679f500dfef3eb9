"""N-way K-shot classification tasks drawn from an array of classes.

A task picks `way` classes at random, gives them the labels 0..way-1 in the
order they were drawn (so a label means nothing across tasks: a model must
learn each task's labelling from its support set), and takes `shot + query`
different drawings of each: the first `shot` form the support set, the other
`query` the query set. Support and query never share a drawing.
"""
import numpy as np

from tinymeta.data.task import Examples, Task


class FewShotSampler:
    """Draws `way`-way `shot`-shot tasks from `images` of shape (n_classes, n_drawings, H, W).

    Task inputs are float32 of shape (way * shot, 1, H, W) for the support set
    and (way * query, 1, H, W) for the query set, grouped by class; targets are
    int64 labels. `rng`, a numpy Generator, is used where `sample` is given none.
    """

    def __init__(self, images, way, shot, query, rng=None):
        images = np.asarray(images)
        if images.ndim != 4:
            raise ValueError(f"FewShotSampler: images must be (n_classes, n_drawings, H, W), "
                             f"got shape {images.shape}")
        _check_counts(way, shot, query)
        n_classes, n_drawings = images.shape[:2]
        if way > n_classes:
            raise ValueError(f"FewShotSampler: way={way} but only {n_classes} classes to draw from")
        if shot + query > n_drawings:
            raise ValueError(f"FewShotSampler: shot + query = {shot} + {query} = {shot + query} "
                             f"distinct drawings per class needed, but each class has {n_drawings}")
        self.images, self.way, self.shot, self.query, self.rng = images, way, shot, query, rng

    def sample(self, n, rng=None):
        """A list of `n` independent tasks, drawn with `rng` (or the sampler's own Generator)."""
        rng = rng if rng is not None else self.rng
        if not isinstance(rng, np.random.Generator):
            raise TypeError("FewShotSampler.sample: needs a numpy.random.Generator, passed here "
                            f"or to the constructor; got {type(rng).__name__}")
        return [self._task(rng) for _ in range(n)]

    def _task(self, rng):
        n_classes, n_drawings = self.images.shape[:2]
        classes = rng.choice(n_classes, size=self.way, replace=False)   # in random order: label i is classes[i]
        drawings = np.stack([rng.choice(n_drawings, size=self.shot + self.query, replace=False)
                             for _ in classes])
        picked = self.images[classes[:, None], drawings]                 # (way, shot + query, H, W)
        return Task(self._examples(picked[:, :self.shot]), self._examples(picked[:, self.shot:]))

    def _examples(self, picked):
        """(way, k, H, W) images of classes 0..way-1 -> Examples of (way * k, 1, H, W) and labels."""
        way, k, height, width = picked.shape
        inputs = picked.reshape(way * k, 1, height, width).astype(np.float32)
        return Examples(inputs, np.repeat(np.arange(way, dtype=np.int64), k))


def _check_counts(way, shot, query):
    for name, value, least in (("way", way, 1), ("shot", shot, 1), ("query", query, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < least:
            raise ValueError(f"FewShotSampler: {name} must be an integer >= {least}, got {value!r}")
