"""What every meta-learner offers the training loop.

A learner computes, for a meta-batch of tasks, its meta-loss and a "meta-gradient"
for each tensor it trains; one outer step hands those to an optimizer. What it
trains is the shared initialisation phi (the model's parameters) and, for
Meta-SGD, the inner learning rates too: `parameters_dict()` names them all, the
optimizer is built on it, and `state_dict()` is what a checkpoint saves. MAML,
first-order MAML, Reptile, Meta-SGD, iMAML and pre-training differ only in
`meta_gradients`.

A learner may also carry something from one meta-iteration to the next that is
not trained by the optimizer (Reptile's inner Adam moments): `meta_gradients`
then returns its meta-batch mean too, `averaged()` names everything that is
averaged over the tasks, and `carry(means)` takes it in after the outer step.
A learner that draws random numbers of its own names its Generators in
`generators()`, and checkpoints save their states.
"""


class MetaLearner:
    def meta_gradients(self, tasks):
        """(meta-loss as a float, {parameter name: gradient})."""
        raise NotImplementedError

    def parameters_dict(self):
        """{name: tensor} of everything the outer loop trains (here: phi, the model's parameters)."""
        return self.model.parameters_dict()

    def averaged(self):
        """{name: tensor or array} of everything meta_gradients returns a meta-batch mean of
        (the ranks of an MPI run average exactly these); here the trained parameters."""
        return self.parameters_dict()

    def carry(self, means):
        """Take in, after the outer step, what meta_gradients averaged beside the gradients (nothing here)."""

    def generators(self):
        """{name: numpy Generator} the learner draws from itself (none here)."""
        return {}

    def state_dict(self):
        return self.model.state_dict()

    def load_state_dict(self, state):
        self.model.load_state_dict(state)

    def meta_step(self, tasks, optimizer):
        """One outer update; returns the meta-loss measured before it."""
        loss, grads = self.meta_gradients(tasks)
        untrained = sorted(set(self.parameters_dict()) - set(optimizer.params))
        if untrained:
            raise ValueError(f"{type(self).__name__}.meta_step: the optimizer does not hold {untrained}; "
                             "build it on learner.parameters_dict()")
        self.outer_step(optimizer, grads)
        return loss

    def outer_step(self, optimizer, grads):
        """Hand the trained tensors' meta-gradients to the optimizer, then `carry` the rest of
        what meta_gradients returned."""
        trained = self.parameters_dict()
        optimizer.step({name: g for name, g in grads.items() if name in trained})
        self.carry(grads)


def check_positive(owner, **rates):
    """Learning rates must be positive numbers: a negative one climbs the loss, and zero
    (or NaN) learns nothing; say so when the learner is made rather than after a training."""
    for name, value in rates.items():
        if not value > 0:
            raise ValueError(f"{owner}: {name} must be positive, got {value!r}")


def check_meta_batch(learner, tasks):
    """An empty meta-batch has no meta-loss: say so rather than fail deep inside."""
    if len(tasks) == 0:
        raise ValueError(f"{type(learner).__name__}: the meta-batch is empty; pass at least one task")
