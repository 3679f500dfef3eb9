"""Meta-SGD: the initialisation and the inner learning rates, both meta-trained, checked against numbers."""
from unittest import mock

import numpy as np
import pytest

import tinymeta as tm
from tinymeta import nn
from tinymeta.data import SineTasks
from tinymeta.meta import MAML, MetaSGD, adapt, evaluate, meta_train
from tinymeta.meta import maml as maml_module
from tinymeta.meta.metasgd import LearnedRates
from tinymeta.nn.functional import mse_loss
from tinymeta.optim import Adam


def tiny_mlp(seed=0, dtype=np.float64, hidden=4, act=nn.Tanh):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(1, hidden, rng, dtype=dtype), act(), nn.Linear(hidden, 1, rng, dtype=dtype))


def sine_tasks(n, seed=0, dtype=np.float64, shots=5, queries=6):
    return SineTasks(shots=shots, queries=queries, dtype=dtype).sample(n, np.random.default_rng(seed))


def spread_rates(learner, seed=1):
    """Rates that differ from entry to entry, so a mix-up of rates would show."""
    rng = np.random.default_rng(seed)
    with tm.no_grad():
        for rate in learner.rates.parameters():
            rate.copy_(rng.uniform(0.01, 0.1, rate.shape))


@pytest.mark.parametrize("per_layer", [False, True], ids=["elementwise", "per-layer"])
@pytest.mark.parametrize("inner_steps", [1, 2])
def test_meta_gradient_for_rates_and_initialisation_equals_finite_differences(inner_steps, per_layer):
    learner = MetaSGD(tiny_mlp(), init_lr=0.05, inner_steps=inner_steps, per_layer=per_layer)
    spread_rates(learner)
    tasks = sine_tasks(3)
    trained = learner.parameters_dict()
    tm.check_grads(lambda *arrays: learner.meta_loss(tasks, params=dict(zip(trained, arrays))),
                   *[p.data for p in trained.values()], order=1)


def test_one_step_rate_gradient_is_minus_support_gradient_times_query_gradient():
    """dL/dalpha = -grad L_support(phi) * grad l(theta), entry by entry, for one task and one step."""
    model = tiny_mlp()
    learner = MetaSGD(model, init_lr=0.05)
    spread_rates(learner)
    (task,) = sine_tasks(1)
    _, meta_grads = learner.meta_gradients([task])
    phi = model.parameters_dict()
    support_grads = tm.grad(mse_loss(model(task.support.inputs), task.support.targets), list(phi.values()))
    theta = {name: tm.tensor(p.data - learner.inner_lr[name].data * g.data, requires_grad=True)
             for (name, p), g in zip(phi.items(), support_grads)}
    query_grads = tm.grad(mse_loss(model(task.query.inputs, params=theta), task.query.targets), list(theta.values()))
    for name, gs, gq in zip(phi, support_grads, query_grads):
        np.testing.assert_allclose(meta_grads["inner_lr." + name].data, -gs.data * gq.data, rtol=1e-10, atol=1e-14)


def test_with_every_rate_equal_it_is_maml():
    model = tiny_mlp()
    tasks = sine_tasks(3)
    maml_loss, maml = MAML(model, inner_lr=0.05, inner_steps=2).meta_gradients(tasks)
    loss, grads = MetaSGD(model, init_lr=0.05, inner_steps=2).meta_gradients(tasks)
    assert loss == pytest.approx(maml_loss, rel=1e-12)
    for name in maml:
        np.testing.assert_allclose(grads[name].data, maml[name].data, rtol=1e-12)


@pytest.mark.parametrize("per_layer", [False, True], ids=["elementwise", "per-layer"])
def test_vectorized_meta_batch_equals_the_per_task_loop(per_layer):
    tasks = sine_tasks(4)
    results = []
    for vectorize in (False, True):
        learner = MetaSGD(tiny_mlp(act=nn.ReLU, hidden=8), 0.05, 2, per_layer=per_layer, vectorize=vectorize)
        spread_rates(learner)
        results.append(learner.meta_gradients(tasks))
    (loop_loss, loop), (vec_loss, vec) = results
    assert vec_loss == pytest.approx(loop_loss, rel=1e-12)
    assert set(vec) == set(loop)
    for name in loop:
        np.testing.assert_allclose(vec[name].data, loop[name].data, rtol=1e-10, atol=1e-14, err_msg=name)


def test_rates_have_the_parameters_shapes_or_one_per_tensor():
    model = tiny_mlp()
    elementwise = MetaSGD(model, 0.01).parameters_dict()
    per_layer = MetaSGD(model, 0.01, per_layer=True).parameters_dict()
    for name, p in model.named_parameters():
        assert elementwise["inner_lr." + name].shape == p.shape
        assert per_layer["inner_lr." + name].shape == ()
        assert np.all(elementwise["inner_lr." + name].data == 0.01)


def test_meta_training_moves_the_rates_and_a_resumed_run_continues_exactly(tmp_path):
    source = SineTasks(shots=5, queries=5)

    def run(iterations, checkpoint=None, resume=False):
        learner = MetaSGD(tiny_mlp(act=nn.ReLU, dtype=np.float32), 0.01, vectorize=True)
        optimizer = Adam(learner.parameters_dict(), lr=1e-2)
        meta_train(learner, source, optimizer, iterations, 4, np.random.default_rng(3), eval_every=5,
                   checkpoint=checkpoint, resume=resume, progress=False)
        return learner

    straight = run(10)
    assert not np.allclose(straight.rates.parameters()[0].data, 0.01)   # the rates were trained
    run(5, tmp_path / "ckpt.npz")
    resumed = run(10, tmp_path / "ckpt.npz", resume=True)
    for (name, a), b in zip(straight.parameters_dict().items(), resumed.parameters_dict().values()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)
    with np.load(tmp_path / "ckpt.npz") as archive:
        assert "model/inner_lr.0.weight" in archive.files


def test_an_optimizer_without_the_rates_is_refused():
    learner = MetaSGD(tiny_mlp(), 0.01)
    with pytest.raises(ValueError, match=r"optimizer does not hold \['inner_lr.0.bias'.*parameters_dict"):
        learner.meta_step(sine_tasks(2), Adam(learner.model.parameters_dict()))


def test_evaluation_with_the_learned_rates_adapts_with_them():
    model = tiny_mlp()
    learner = MetaSGD(model, 0.05)
    spread_rates(learner)
    tasks = sine_tasks(3)
    result = evaluate(model, tasks, mse_loss, learner.inner_lr, steps=[2])
    by_hand = [mse_loss(model(t.query.inputs, params=adapt(model, model.parameters_dict(), t.support, mse_loss, 2,
                                                           learner.inner_lr, create_graph=False)),
                        t.query.targets).item() for t in tasks]
    assert result["loss"][2].mean == pytest.approx(np.mean(by_hand), rel=1e-12)
    plain = evaluate(model, tasks, mse_loss, 0.05, steps=[2])["loss"][2].mean
    assert plain != pytest.approx(result["loss"][2].mean, rel=1e-6)


def test_learned_rates_default_to_one_rate_per_entry():
    model = tiny_mlp()
    rates = LearnedRates(model, 0.02)
    for name, p in model.named_parameters():
        assert rates.parameters_dict()[name].shape == p.shape


def test_meta_loss_at_other_parameters_is_the_meta_loss_of_a_learner_holding_them():
    learner, other, tasks = MetaSGD(tiny_mlp(seed=0), 0.05), MetaSGD(tiny_mlp(seed=1), 0.05), sine_tasks(2)
    spread_rates(learner, seed=1)
    spread_rates(other, seed=2)
    at_other = learner.meta_loss(tasks, params=other.parameters_dict()).item()
    assert at_other == pytest.approx(other.meta_loss(tasks).item(), rel=1e-12)
    assert at_other != pytest.approx(learner.meta_loss(tasks).item(), rel=1e-6)


@pytest.mark.parametrize("vectorize, stacks", [(None, 0), (False, 0), (True, 1)], ids=["default", "loop", "vectorize"])
def test_the_meta_batch_is_stacked_only_when_vectorize_is_asked(vectorize, stacks):
    kwargs = {} if vectorize is None else {"vectorize": vectorize}
    learner = MetaSGD(tiny_mlp(), 0.05, **kwargs)
    with mock.patch.object(maml_module, "stack_tasks", wraps=maml_module.stack_tasks) as stack_tasks:
        learner.meta_gradients(sine_tasks(3))
    assert stack_tasks.call_count == stacks
