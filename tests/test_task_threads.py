"""Threads that share a meta-batch in one process compute the one-thread meta-gradient,
follow its training trajectory, and keep their grad modes apart."""
import sys
import threading

import numpy as np
import pytest

import tinymeta as tm
from tinymeta import nn
from tinymeta.data import Examples, SineTasks, Task
from tinymeta.meta import IMAML, MAML, MetaSGD, Pretrain, Reptile, TaskThreads, meta_train
from tinymeta.meta.distributed import SingleProcess
from tinymeta.nn.functional import cross_entropy
from tinymeta.optim import Adam, InnerAdam

pytest.importorskip("threadpoolctl", reason="TaskThreads needs threadpoolctl; pip install 'tinymeta[test]'")

SINE = SineTasks(shots=5, queries=6, dtype=np.float64)
WAY, SIZE = 3, 16


def tiny_mlp():
    rng = np.random.default_rng(0)
    return nn.Sequential(nn.Linear(1, 8, rng, dtype=np.float64), nn.Tanh(), nn.Linear(8, 1, rng, dtype=np.float64))


def conv_tasks(n):
    rng = np.random.default_rng(5)

    def examples(k):
        return Examples(rng.standard_normal((WAY * k, 1, SIZE, SIZE)), np.repeat(np.arange(WAY), k))
    return [Task(examples(1), examples(2)) for _ in range(n)]


LEARNERS = {
    "maml": lambda model: MAML(model, inner_lr=0.05, inner_steps=2),
    "maml-vectorized": lambda model: MAML(model, inner_lr=0.05, inner_steps=2, vectorize=True),
    "fomaml": lambda model: MAML(model, inner_lr=0.05, inner_steps=2, first_order=True),
    "reptile": lambda model: Reptile(model, inner_lr=0.05, inner_steps=3, inner_batch=SINE.shots, outer_lr=0.1),
    "reptile-adam": lambda model: Reptile(model, inner_lr=0.01, inner_steps=3, inner_batch=SINE.shots, outer_lr=0.1,
                                          inner_optimizer=InnerAdam()),
    "reptile-minibatches": lambda model: Reptile(model, inner_lr=0.01, inner_steps=3, inner_batch=2, outer_lr=0.1,
                                                 inner_optimizer=InnerAdam()),
    "pretrain": lambda model: Pretrain(model),
    "metasgd": lambda model: MetaSGD(model, 0.05, inner_steps=2),
    # 25 steps for 25 parameters, and lam large enough that I + H / lam is positive definite: CG converges
    "imaml": lambda model: IMAML(model, inner_lr=0.05, inner_steps=3, lam=10.0, cg_steps=25),
}


def flat(grads):
    return np.concatenate([np.ravel(g.data if isinstance(g, tm.Tensor) else g) for g in grads.values()])


@pytest.fixture(scope="module")
def three_threads():
    threads = TaskThreads(3)
    yield threads
    threads.close()


@pytest.mark.parametrize("name", LEARNERS)
@pytest.mark.parametrize("meta_batch", [1, 2, 5])  # fewer tasks than threads, and a split with unequal shares
def test_threads_compute_the_one_thread_meta_gradient(three_threads, name, meta_batch):
    learner = LEARNERS[name](tiny_mlp())
    tasks = SINE.sample(meta_batch, np.random.default_rng(meta_batch))
    loss, grads = three_threads.meta_gradients(learner, tasks)
    expected_loss, expected = SingleProcess().meta_gradients(learner, tasks)
    assert list(grads) == list(expected)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(flat(grads), flat(expected), rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("downsample", ["stride", "maxpool"])
def test_threads_compute_the_one_thread_meta_gradient_of_a_vectorised_conv_net(three_threads, downsample):
    """The conv, pool, batch-norm and selection kernels run in several threads at once."""
    model = nn.omniglot_cnn(WAY, np.random.default_rng(1), channels=4, downsample=downsample, image_size=SIZE,
                            dtype=np.float64)
    learner = MAML(model, inner_lr=0.1, inner_steps=1, loss_fn=cross_entropy, vectorize=True)
    tasks = conv_tasks(7)
    _, grads = three_threads.meta_gradients(learner, tasks)
    _, expected = learner.meta_gradients(tasks)
    np.testing.assert_allclose(flat(grads), flat(expected), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name", ["maml-vectorized", "reptile-minibatches"])
def test_threads_follow_the_one_thread_training_trajectory(name):
    def train(communicator):
        learner = LEARNERS[name](tiny_mlp())
        optimizer = Adam(learner.parameters_dict(), lr=0.01)
        meta_train(learner, SINE, optimizer, iterations=6, meta_batch=4, rng=np.random.default_rng(3),
                   progress=False, communicator=communicator)
        return flat(learner.parameters_dict())

    threads = TaskThreads(2)
    np.testing.assert_allclose(train(threads), train(None), rtol=1e-10)
    threads.close()


def test_one_thread_is_the_plain_meta_gradient():
    learner = LEARNERS["maml"](tiny_mlp())
    tasks = SINE.sample(3, np.random.default_rng(0))
    loss, grads = TaskThreads(1).meta_gradients(learner, tasks)
    np.testing.assert_array_equal(flat(grads), flat(learner.meta_gradients(tasks)[1]))


@pytest.mark.parametrize("threads", [0, -1, 1.5])
def test_a_thread_count_that_is_not_a_positive_integer_is_refused(threads):
    with pytest.raises(ValueError, match="TaskThreads: threads must be a positive integer"):
        TaskThreads(threads)


def test_a_model_with_running_statistics_is_refused_naming_them():
    model = nn.Sequential(nn.Linear(1, 4, np.random.default_rng(0), dtype=np.float64),
                          nn.BatchNorm1d(4, track_running_stats=True, dtype=np.float64))
    learner = MAML(model, inner_lr=0.1)
    message = ("TaskThreads: the model keeps running statistics (1.running_mean, 1.running_var), which threads "
               "would update at once; use one thread, or batch statistics only (track_running_stats=False)")
    with pytest.raises(ValueError) as refused:
        TaskThreads(2).meta_gradients(learner, SINE.sample(2, np.random.default_rng(0)))
    assert str(refused.value) == message


def test_without_threadpoolctl_the_error_names_it_and_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import threadpoolctl now fails
    with pytest.raises(ImportError) as refused:
        TaskThreads(2)
    assert str(refused.value) == ("TaskThreads: needs threadpoolctl, to run each thread's BLAS on one core; "
                                  "install it with  pip install 'tinymeta[examples]'")


class Recording:
    """A learner that records, for each share, the thread it ran on and the BLAS thread counts it saw."""

    def __init__(self):
        from threadpoolctl import threadpool_info
        self.threadpool_info, self.seen, self.model = threadpool_info, [], tiny_mlp()

    def meta_gradients(self, tasks):
        blas = [pool["num_threads"] for pool in self.threadpool_info() if pool["user_api"] == "blas"]
        self.seen.append((threading.current_thread().name, blas))
        return 0.0, {"w": np.full(1, float(len(tasks)))}


def test_each_share_runs_with_a_one_thread_blas_on_a_named_worker_or_the_caller():
    learner = Recording()
    threads = TaskThreads(3)
    threads.meta_gradients(learner, list(range(6)))
    threads.close()
    names = sorted(name for name, _ in learner.seen)
    assert names[0] == threading.current_thread().name and len(names) == 3
    assert all(name.startswith("tinymeta-task") for name in names[1:])
    assert all(blas and set(blas) == {1} for _, blas in learner.seen)


def test_a_closed_team_takes_no_more_work():
    threads = TaskThreads(2)
    threads.close()
    with pytest.raises(RuntimeError, match="shutdown"):
        threads.meta_gradients(Recording(), [1, 2])


def test_grad_mode_belongs_to_the_thread_that_sets_it():
    """One thread inside no_grad() leaves recording on in another, and the other way round."""
    inside, checked = threading.Event(), threading.Event()
    seen = {}

    def worker():
        inside.wait()
        seen["worker"] = tm.is_grad_enabled()
        x = tm.tensor(np.ones(2), requires_grad=True)
        seen["records"] = (x * x).requires_grad
        with tm.no_grad():
            seen["worker off"] = tm.is_grad_enabled()
            checked.set()

    thread = threading.Thread(target=worker)
    thread.start()
    with tm.no_grad():
        inside.set()
        checked.wait()
        seen["main"] = tm.is_grad_enabled()
    thread.join()
    assert seen == {"worker": True, "records": True, "worker off": False, "main": False}
    assert tm.is_grad_enabled()
