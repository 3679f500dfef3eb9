"""A meta-batch of conv-net tasks adapted in one batched pass (a task axis through every
layer) computes exactly what the per-task loop computes: meta-gradients, Reptile's
update and evaluation, in float64, on both Omniglot networks made small."""
import numpy as np
import pytest

import tinymeta as tm
from tinymeta import nn
from tinymeta.data import Examples, Task
from tinymeta.meta import MAML, MetaSGD, Reptile, evaluate
from tinymeta.nn.functional import accuracy, cross_entropy

WAY, SIZE = 3, 16


def conv_tasks(n, seed=0, shot=2, query=2):
    rng = np.random.default_rng(seed)

    def examples(k):
        return Examples(rng.standard_normal((WAY * k, 1, SIZE, SIZE)), np.repeat(np.arange(WAY), k))
    return [Task(examples(shot), examples(query)) for _ in range(n)]


def small_cnn(downsample, seed=1):
    return nn.omniglot_cnn(WAY, np.random.default_rng(seed), channels=4, downsample=downsample, image_size=SIZE,
                           dtype=np.float64)


def relative_error(a, b):
    flat_a = np.concatenate([g.data.ravel() for g in a.values()])
    flat_b = np.concatenate([g.data.ravel() for g in b.values()])
    return np.linalg.norm(flat_a - flat_b) / np.linalg.norm(flat_b)


@pytest.mark.parametrize("downsample", ["stride", "maxpool"])
@pytest.mark.parametrize("inner_steps", [1, 2])
@pytest.mark.parametrize("first_order", [False, True])
def test_vectorized_conv_net_meta_gradient_equals_the_per_task_loop(downsample, inner_steps, first_order):
    model, tasks = small_cnn(downsample), conv_tasks(3)
    loop_loss, loop = MAML(model, 0.4, inner_steps, first_order, cross_entropy).meta_gradients(tasks)
    batched_loss, batched = MAML(model, 0.4, inner_steps, first_order, cross_entropy,
                                 vectorize=True).meta_gradients(tasks)
    assert batched_loss == pytest.approx(loop_loss, rel=1e-12)
    assert relative_error(batched, loop) <= 1e-10


@pytest.mark.parametrize("downsample", ["stride", "maxpool"])
def test_vectorized_conv_net_meta_objective_gradchecks_to_second_order(downsample):
    model = nn.omniglot_cnn(2, np.random.default_rng(0), channels=2, downsample=downsample, image_size=SIZE,
                            dtype=np.float64)
    rng = np.random.default_rng(3)
    tasks = [Task(*(Examples(rng.standard_normal((2, 1, SIZE, SIZE)), np.arange(2)) for _ in range(2)))
             for _ in range(2)]
    maml = MAML(model, 0.4, 1, loss_fn=cross_entropy, vectorize=True)
    names = list(model.parameters_dict())

    def meta_loss(*arrays):
        return maml.meta_loss(tasks, params=dict(zip(names, arrays)))

    tm.check_grads(meta_loss, *[p.data for p in model.parameters()], order=2, directions=1)


@pytest.mark.parametrize("downsample", ["stride", "maxpool"])
def test_vectorized_reptile_on_a_conv_net_equals_the_per_task_loop(downsample):
    model, tasks = small_cnn(downsample), conv_tasks(3)
    # the whole support set each step: the loop and the batch then see the same examples
    results = [Reptile(model, 0.1, 3, inner_batch=2 * WAY, outer_lr=1.0, loss_fn=cross_entropy,
                       rng=np.random.default_rng(7), vectorize=vectorize).meta_gradients(tasks)
               for vectorize in (False, True)]
    (loop_loss, loop), (batched_loss, batched) = results
    assert batched_loss == pytest.approx(loop_loss, rel=1e-12)
    for name in loop:
        np.testing.assert_allclose(batched[name], loop[name], rtol=1e-10, atol=1e-14)


def test_evaluate_adapts_equal_tasks_in_batches_with_the_loops_results():
    model, tasks = small_cnn("stride"), conv_tasks(5, seed=2, query=3)
    batched = evaluate(model, tasks, cross_entropy, 0.4, steps=(0, 2), metric=accuracy, task_batch=2)
    mixed = tasks + conv_tasks(1, seed=4, query=1)  # unequal sizes: the per-task loop
    looped = evaluate(model, mixed, cross_entropy, 0.4, steps=(0, 2), metric=accuracy)
    alone = evaluate(model, mixed[-1:], cross_entropy, 0.4, steps=(0, 2), metric=accuracy)
    for kind in ("loss", "metric"):
        for k in (0, 2):
            # the mean over the first five tasks, recovered from the six-task mean
            five = (looped[kind][k].mean * 6 - alone[kind][k].mean) / 5
            assert batched[kind][k].mean == pytest.approx(five, rel=1e-10, abs=1e-12)
    assert batched["loss"][2].mean < batched["loss"][0].mean  # adaptation helps on the support's classes


def test_evaluate_in_batches_with_learned_rates_and_a_proximal_pull_equals_the_loop():
    model, tasks = small_cnn("maxpool"), conv_tasks(3, seed=5)
    rng = np.random.default_rng(6)
    rates = {name: tm.tensor(0.1 + 0.05 * rng.random(p.shape)) for name, p in model.parameters_dict().items()}
    batched = evaluate(model, tasks, cross_entropy, rates, steps=(2,), proximal=3.0)
    mixed = tasks + conv_tasks(1, seed=7, query=1)
    looped = evaluate(model, mixed, cross_entropy, rates, steps=(2,), proximal=3.0)
    alone = evaluate(model, mixed[-1:], cross_entropy, rates, steps=(2,), proximal=3.0)
    three = (looped["loss"][2].mean * 4 - alone["loss"][2].mean) / 3
    assert batched["loss"][2].mean == pytest.approx(three, rel=1e-10)


@pytest.mark.parametrize("per_layer", [False, True])
def test_vectorized_meta_sgd_on_a_conv_net_equals_the_per_task_loop(per_layer):
    model, tasks = small_cnn("stride"), conv_tasks(3, seed=8)
    results = [MetaSGD(model, 0.3, 1, per_layer=per_layer, loss_fn=cross_entropy,
                       vectorize=vectorize).meta_gradients(tasks) for vectorize in (False, True)]
    (loop_loss, loop), (batched_loss, batched) = results
    assert batched_loss == pytest.approx(loop_loss, rel=1e-12)
    assert set(batched) == set(loop) and relative_error(batched, loop) <= 1e-10
