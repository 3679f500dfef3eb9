"""A vectorised meta-gradient taken over groups of tasks equals the one-pass meta-gradient
(float64, both small Omniglot nets, every vectorised learner), and the default group size
keeps a pass's inputs within the bound it states."""
import numpy as np
import pytest

import tinymeta as tm
from tinymeta import nn
from tinymeta.data import Examples, Task
from tinymeta.meta import IMAML, MAML, MetaSGD, Reptile
from tinymeta.meta.task_groups import PASS_INPUT_BYTES, default_tasks_per_pass, in_groups
from tinymeta.nn.functional import cross_entropy
from tinymeta.optim import InnerAdam

WAY, SIZE, META_BATCH = 3, 16, 5


def conv_tasks(n, shot=2, query=2, dtype=np.float64):
    rng = np.random.default_rng(0)

    def examples(k):
        return Examples(rng.standard_normal((WAY * k, 1, SIZE, SIZE)).astype(dtype), np.repeat(np.arange(WAY), k))
    return [Task(examples(shot), examples(query)) for _ in range(n)]


LEARNERS = {
    "maml": lambda model, g: MAML(model, 0.4, 2, loss_fn=cross_entropy, vectorize=True, tasks_per_pass=g),
    "fomaml": lambda model, g: MAML(model, 0.4, 2, first_order=True, loss_fn=cross_entropy, vectorize=True,
                                    tasks_per_pass=g),
    "metasgd": lambda model, g: MetaSGD(model, 0.4, 1, loss_fn=cross_entropy, vectorize=True, tasks_per_pass=g),
    # inner Adam moments averaged with the gradient, and minibatches in one order for every group
    "reptile-adam-minibatches": lambda model, g: Reptile(model, 0.01, 3, inner_batch=2, outer_lr=1.0,
                                                         loss_fn=cross_entropy, rng=np.random.default_rng(7),
                                                         vectorize=True, inner_optimizer=InnerAdam(),
                                                         tasks_per_pass=g),
    # a row of conjugate gradient per task, each stopping on its own residual, so the same in any group;
    # lam large enough that every task's I + H / lam is positive definite and CG converges
    "imaml": lambda model, g: IMAML(model, 0.1, 2, lam=100.0, cg_steps=30, cg_tol=1e-6, loss_fn=cross_entropy,
                                    vectorize=True, tasks_per_pass=g),
}


def as_array(gradient):
    return gradient.data if isinstance(gradient, tm.Tensor) else gradient


@pytest.mark.parametrize("name", LEARNERS)
@pytest.mark.parametrize("downsample", ["stride", "maxpool"])
@pytest.mark.parametrize("tasks_per_pass", [1, 2, 3])  # 2 and 3 leave a smaller last group
def test_groups_of_tasks_give_the_one_pass_meta_gradient(name, downsample, tasks_per_pass):
    model = nn.omniglot_cnn(WAY, np.random.default_rng(1), channels=4, downsample=downsample, image_size=SIZE,
                            dtype=np.float64)
    tasks = conv_tasks(META_BATCH)
    one_loss, one_pass = LEARNERS[name](model, META_BATCH).meta_gradients(tasks)
    loss, grouped = LEARNERS[name](model, tasks_per_pass).meta_gradients(tasks)
    assert list(grouped) == list(one_pass)
    assert [type(g) for g in grouped.values()] == [type(g) for g in one_pass.values()]
    assert loss == pytest.approx(one_loss, rel=1e-12)
    for key in one_pass:
        np.testing.assert_allclose(as_array(grouped[key]), as_array(one_pass[key]), rtol=1e-10, atol=1e-14)


def test_in_groups_takes_consecutive_groups_and_weights_them_by_size():
    tasks = list(range(7))
    seen = []

    def mean_of(group):
        seen.append(group)
        return float(np.mean(group)), {"g": np.array([np.mean(group), 2.0 * np.mean(group)])}

    loss, grads = in_groups(mean_of, tasks, 3, "cpu")
    assert seen == [[0, 1, 2], [3, 4, 5], [6]]
    assert loss == pytest.approx(np.mean(tasks), rel=1e-15)
    np.testing.assert_allclose(grads["g"], [np.mean(tasks), 2.0 * np.mean(tasks)], rtol=1e-15)


def test_the_default_group_keeps_a_pass_within_the_input_bound():
    """bench_meta's Omniglot setting (5-way 1-shot, 15 query, float32 28x28): 8 tasks a pass."""
    rng = np.random.default_rng(0)
    task = Task(Examples(rng.random((5, 1, 28, 28), dtype=np.float32), np.arange(5)),
                Examples(rng.random((75, 1, 28, 28), dtype=np.float32), np.repeat(np.arange(5), 15)))
    size = default_tasks_per_pass([task] * 32, "cpu")
    task_bytes = task.support.inputs.nbytes + task.query.inputs.nbytes
    assert size == 8
    assert size * task_bytes <= PASS_INPUT_BYTES < (size + 1) * task_bytes
    assert default_tasks_per_pass([task] * 32, "cuda") == 32


def test_without_a_size_the_groups_are_the_default_for_the_device():
    rng = np.random.default_rng(0)
    task = Task(Examples(rng.random((5, 1, 28, 28), dtype=np.float32), np.arange(5)),
                Examples(rng.random((75, 1, 28, 28), dtype=np.float32), np.repeat(np.arange(5), 15)))
    sizes = []

    def record(group):
        sizes.append(len(group))
        return 0.0, {}
    in_groups(record, [task] * 20, None, "cpu")
    assert sizes == [8, 8, 4]
    sizes.clear()
    in_groups(record, [task] * 20, None, "cuda")
    assert sizes == [20]


def test_a_task_larger_than_the_bound_is_a_pass_of_its_own_and_small_tasks_stay_one_pass():
    huge = Task(Examples(np.zeros((PASS_INPUT_BYTES // 8 + 1, 1)), np.zeros(PASS_INPUT_BYTES // 8 + 1)),
                Examples(np.zeros((1, 1)), np.zeros(1)))
    assert default_tasks_per_pass([huge] * 4, "cpu") == 1
    sine = Task(Examples(np.zeros((10, 1)), np.zeros((10, 1))), Examples(np.zeros((10, 1)), np.zeros((10, 1))))
    assert default_tasks_per_pass([sine] * 25, "cpu") >= 25


@pytest.mark.parametrize("make", [
    lambda **kw: MAML(nn.Linear(1, 1, np.random.default_rng(0)), 0.1, **kw),
    lambda **kw: Reptile(nn.Linear(1, 1, np.random.default_rng(0)), 0.1, 1, 1, 0.1, **kw),
    lambda **kw: IMAML(nn.Linear(1, 1, np.random.default_rng(0)), 0.1, 1, lam=1.0, **kw),
])
def test_tasks_per_pass_is_checked_when_the_learner_is_made(make):
    with pytest.raises(ValueError, match="tasks_per_pass=2 needs vectorize=True; the per-task loop takes one task "
                                         "at a time"):
        make(tasks_per_pass=2)
    for bad in (0, -1, 2.5, float("nan"), "4", True):
        with pytest.raises(ValueError, match="tasks_per_pass must be a positive integer or None"):
            make(vectorize=True, tasks_per_pass=bad)
