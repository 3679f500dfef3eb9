"""What every meta-learner offers the training loop.

A learner computes, for a meta-batch of tasks, its meta-loss and a "meta-gradient"
for each parameter of the shared initialisation phi; one outer step hands those to
an optimizer. MAML, first-order MAML, Reptile and pre-training differ only in
`meta_gradients`.
"""


class MetaLearner:
    def meta_gradients(self, tasks):
        """(meta-loss as a float, {parameter name: gradient})."""
        raise NotImplementedError

    def meta_step(self, tasks, optimizer):
        """One outer update of phi; returns the meta-loss measured before it."""
        loss, grads = self.meta_gradients(tasks)
        optimizer.step(grads)
        return loss


def check_meta_batch(learner, tasks):
    """An empty meta-batch has no meta-loss: say so rather than fail deep inside."""
    if len(tasks) == 0:
        raise ValueError(f"{type(learner).__name__}: the meta-batch is empty; pass at least one task")
