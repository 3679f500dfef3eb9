"""MAML, first-order MAML, Reptile and pre-training, checked against numbers."""
import re
import warnings

import numpy as np
import pytest

import tinymeta as tm
from tinymeta import nn
from tinymeta.data import Examples, SineTasks, Task
from tinymeta.data.task import stack_tasks
from tinymeta.meta import IMAML, MAML, MetaSGD, Pretrain, Reptile, adapt, evaluate, load_checkpoint, meta_train, save_checkpoint
from tinymeta.meta.checkpoint import checkpoint_info
from tinymeta.nn.functional import accuracy, cross_entropy, mse_loss
from tinymeta.optim import SGD, Adam, InnerAdam


def tiny_mlp(seed=0, dtype=np.float64, hidden=4, act=nn.Tanh):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(1, hidden, rng, dtype=dtype), act(), nn.Linear(hidden, 1, rng, dtype=dtype))


def sine_tasks(n, seed=0, dtype=np.float64, shots=5, queries=6):
    return SineTasks(shots=shots, queries=queries, dtype=dtype).sample(n, np.random.default_rng(seed))


def meta_loss_of(learner, tasks, names):
    return lambda *arrays: learner.meta_loss(tasks, params=dict(zip(names, arrays)))


@pytest.mark.parametrize("inner_steps", [1, 2])
def test_maml_meta_gradient_equals_finite_differences_of_the_meta_objective(inner_steps):
    model = tiny_mlp()
    tasks = sine_tasks(3)
    maml = MAML(model, inner_lr=0.05, inner_steps=inner_steps)
    names = [n for n, _ in model.named_parameters()]
    arrays = [p.data for p in model.parameters()]
    tm.check_grads(meta_loss_of(maml, tasks, names), *arrays, order=1)


def test_maml_meta_objective_is_twice_differentiable_too():
    model = tiny_mlp(hidden=3)
    maml = MAML(model, inner_lr=0.1, inner_steps=1)
    names = [n for n, _ in model.named_parameters()]
    tm.check_grads(meta_loss_of(maml, sine_tasks(2), names), *[p.data for p in model.parameters()], order=2)


def test_first_order_maml_gradient_is_the_query_gradient_at_the_adapted_parameters():
    model = tiny_mlp()
    (task,) = sine_tasks(1)
    fomaml = MAML(model, inner_lr=0.05, inner_steps=2, first_order=True)
    _, meta_grads = fomaml.meta_gradients([task])
    phi = model.parameters_dict()
    theta = adapt(model, phi, task.support, mse_loss, 2, 0.05, create_graph=False)
    theta = {k: tm.tensor(v.data, requires_grad=True) for k, v in theta.items()}
    query_grads = tm.grad(mse_loss(model(task.query.inputs, params=theta), task.query.targets), list(theta.values()))
    for name, g in zip(theta, query_grads):
        np.testing.assert_allclose(meta_grads[name].data, g.data, rtol=1e-12, atol=1e-14)


def test_maml_and_first_order_maml_differ_on_a_non_quadratic_loss():
    model = tiny_mlp()
    tasks = sine_tasks(2)
    _, full = MAML(model, inner_lr=0.1).meta_gradients(tasks)
    _, first = MAML(model, inner_lr=0.1, first_order=True).meta_gradients(tasks)
    difference = max(np.max(np.abs(full[k].data - first[k].data)) for k in full)
    assert difference > 1e-3
    _, full0 = MAML(model, inner_lr=1e-12).meta_gradients(tasks)   # no step: both are the plain gradient
    _, first0 = MAML(model, inner_lr=1e-12, first_order=True).meta_gradients(tasks)
    for k in full0:
        np.testing.assert_allclose(full0[k].data, first0[k].data, rtol=1e-8)


@pytest.mark.parametrize("first_order", [False, True])
def test_vectorized_maml_equals_the_per_task_loop(first_order):
    model = tiny_mlp(act=nn.ReLU, hidden=8)
    tasks = sine_tasks(4)
    loop_loss, loop = MAML(model, 0.05, 2, first_order=first_order).meta_gradients(tasks)
    vec_loss, vec = MAML(model, 0.05, 2, first_order=first_order, vectorize=True).meta_gradients(tasks)
    assert vec_loss == pytest.approx(loop_loss, rel=1e-12)
    for k in loop:
        np.testing.assert_allclose(vec[k].data, loop[k].data, rtol=1e-10, atol=1e-14)


def test_reptile_meta_step_is_phi_plus_epsilon_times_theta_minus_phi():
    model = tiny_mlp()
    tasks = sine_tasks(3)
    reptile = Reptile(model, inner_lr=0.05, inner_steps=3, inner_batch=10, outer_lr=0.4)
    phi = {k: v.data.copy() for k, v in model.parameters_dict().items()}
    thetas = []
    for task in tasks:  # the inner loop by hand: three full-batch SGD steps
        theta = {k: tm.tensor(v, requires_grad=True) for k, v in phi.items()}
        for _ in range(3):
            loss = mse_loss(model(task.support.inputs, params=theta), task.support.targets)
            grads = tm.grad(loss, list(theta.values()))
            theta = {k: tm.tensor(v.data - 0.05 * g.data, requires_grad=True) for (k, v), g in zip(theta.items(), grads)}
        thetas.append(theta)
    reptile.meta_step(tasks, reptile.optimizer())
    for k, p in model.parameters_dict().items():
        expected = phi[k] + 0.4 * (np.mean([t[k].data for t in thetas], axis=0) - phi[k])
        np.testing.assert_allclose(p.data, expected, rtol=1e-12)


def test_reptile_gradient_is_inner_lr_times_the_sum_of_the_inner_gradients():
    """phi - theta_2 = alpha (g1 + g2), g1 the support gradient at phi, g2 at theta_1:
    the lecture's picture of Reptile following g1 + g2."""
    model = tiny_mlp()
    (task,) = sine_tasks(1)
    _, reptile_grads = Reptile(model, inner_lr=0.1, inner_steps=2, inner_batch=100, outer_lr=1.0).meta_gradients([task])
    phi = model.parameters_dict()

    def support_gradient(params):
        return tm.grad(mse_loss(model(task.support.inputs, params=params), task.support.targets),
                       list(params.values()))

    g1 = support_gradient(phi)
    theta1 = {k: tm.tensor(p.data - 0.1 * g.data, requires_grad=True) for (k, p), g in zip(phi.items(), g1)}
    g2 = support_gradient(theta1)
    for name, a, b in zip(phi, g1, g2):
        np.testing.assert_allclose(reptile_grads[name], 0.1 * (a.data + b.data), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("inner_batch", [100, 3])   # full-batch steps, and minibatches of 3 of the 5 shots
def test_vectorized_reptile_equals_the_per_task_loop(inner_batch):
    tasks = sine_tasks(3)
    results = []
    for vectorize in (False, True):
        model = tiny_mlp(act=nn.ReLU, hidden=8)
        reptile = Reptile(model, 0.05, 4, inner_batch=inner_batch, outer_lr=0.5, rng=np.random.default_rng(2),
                          vectorize=vectorize)
        results.append(reptile.meta_gradients(tasks))
    (loop_loss, loop), (vec_loss, vec) = results
    assert vec_loss == pytest.approx(loop_loss, rel=1e-10)
    for k in loop:
        np.testing.assert_allclose(vec[k], loop[k], rtol=1e-10, atol=1e-14)


def test_reptile_minibatches_cover_the_support_set():
    reptile = Reptile(tiny_mlp(), 0.05, inner_steps=5, inner_batch=2, outer_lr=0.5, rng=np.random.default_rng(0))
    support = Examples(np.arange(5.0).reshape(5, 1), np.arange(5.0).reshape(5, 1))
    batches = reptile._minibatches(support, 5, 2, stacked=False)
    assert len(batches) == 5 and all(len(b) == 2 for b in batches)
    seen = np.concatenate([b.inputs.ravel() for b in batches])
    assert set(seen[:4]) | set(seen[4:6]) >= {0.0, 1.0, 2.0, 3.0, 4.0}  # the first pass visits every example


def test_pretrain_gradient_is_the_gradient_on_the_pooled_points():
    model = tiny_mlp()
    tasks = sine_tasks(2)
    loss, grads = Pretrain(model).meta_gradients(tasks)
    x = np.concatenate([np.concatenate([t.support.inputs, t.query.inputs]) for t in tasks])
    y = np.concatenate([np.concatenate([t.support.targets, t.query.targets]) for t in tasks])
    expected = tm.grad(mse_loss(model(x), y), model.parameters())
    for g, e in zip(grads.values(), expected):
        np.testing.assert_allclose(g.data, e.data, rtol=1e-12)


def test_short_maml_run_learns_to_adapt_better_than_pretraining():
    """Seconds, not minutes: MAML's one-step query MSE beats its start and the pre-trained baseline."""
    source = SineTasks(shots=10, queries=10)
    test_tasks = source.sample(100, np.random.default_rng(123))

    def one_step_mse(model):
        return evaluate(model, test_tasks, mse_loss, inner_lr=0.01, steps=[1])["loss"][1].mean

    def trained(learner_class, **kwargs):
        model = nn.Sequential(nn.Linear(1, 40, np.random.default_rng(0)), nn.ReLU(),
                              nn.Linear(40, 40, np.random.default_rng(1)), nn.ReLU(),
                              nn.Linear(40, 1, np.random.default_rng(2)))
        before = one_step_mse(model)
        learner = learner_class(model, **kwargs)
        meta_train(learner, source, Adam(model.parameters_dict(), lr=1e-3), iterations=600, meta_batch=10,
                   rng=np.random.default_rng(7), progress=False)
        return before, one_step_mse(model)

    maml_before, maml_after = trained(MAML, inner_lr=0.01, vectorize=True)
    _, pretrained_after = trained(Pretrain)
    assert maml_after < 0.6 * maml_before
    assert maml_after < 0.8 * pretrained_after


def test_resumed_training_continues_exactly_like_an_uninterrupted_run(tmp_path):
    source = SineTasks(shots=5, queries=5)

    def run(iterations, checkpoint=None, resume=False):
        model = tiny_mlp(act=nn.ReLU, dtype=np.float32)
        learner = MAML(model, 0.01, vectorize=True)
        rng = np.random.default_rng(3)
        optimizer = Adam(model.parameters_dict(), lr=1e-2)
        meta_train(learner, source, optimizer, iterations, 4, rng, eval_every=5, checkpoint=checkpoint,
                   resume=resume, progress=False)
        return model

    straight = run(10)
    run(5, tmp_path / "ckpt.npz")
    resumed = run(10, tmp_path / "ckpt.npz", resume=True)
    for (name, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)


def test_checkpoint_from_another_architecture_is_refused(tmp_path):
    source = SineTasks(shots=5, queries=5)
    small = tiny_mlp(hidden=4, dtype=np.float32)
    meta_train(Pretrain(small), source, SGD(small.parameters_dict(), lr=0.01), 1, 2, np.random.default_rng(0),
               eval_every=1, checkpoint=tmp_path / "c.npz", progress=False)
    big = tiny_mlp(hidden=5, dtype=np.float32)
    with pytest.raises(ValueError, match="in the checkpoint but"):
        meta_train(Pretrain(big), source, SGD(big.parameters_dict(), lr=0.01), 2, 2, np.random.default_rng(0),
                   checkpoint=tmp_path / "c.npz", resume=True, progress=False)


def test_evaluate_reports_mean_and_confidence_interval():
    model = tiny_mlp()
    tasks = sine_tasks(5)
    result = evaluate(model, tasks, mse_loss, inner_lr=0.05, steps=[0, 2])
    at_phi = [mse_loss(model(t.query.inputs), t.query.targets).item() for t in tasks]
    assert result["loss"][0].mean == pytest.approx(np.mean(at_phi))
    assert result["loss"][0].ci95 == pytest.approx(1.96 * np.std(at_phi, ddof=1) / np.sqrt(5))
    after_two = [mse_loss(model(t.query.inputs, params=adapt(model, model.parameters_dict(), t.support, mse_loss,
                                                             2, 0.05, create_graph=False)), t.query.targets).item()
                 for t in tasks]
    assert result["loss"][2].mean == pytest.approx(np.mean(after_two), rel=1e-12)


def classification_tasks(n, seed=0, way=3, shots=4):
    """Gaussian blobs, one centre per class and task: labels 0..way-1, 2-d inputs."""
    rng = np.random.default_rng(seed)
    tasks = []
    for _ in range(n):
        centres = rng.standard_normal((way, 2)) * 2

        def examples():
            labels = np.repeat(np.arange(way), shots)
            return Examples(centres[labels] + rng.standard_normal((len(labels), 2)), labels)

        tasks.append(Task(examples(), examples()))
    return tasks


def adapted_predictions(model, task, loss_fn, lr, steps):
    params = adapt(model, model.parameters_dict(), task.support, loss_fn, steps, lr, create_graph=False)
    return model(task.query.inputs, params=params)


def test_evaluate_scores_the_metric_after_each_number_of_steps():
    model = nn.Sequential(nn.Linear(2, 3, np.random.default_rng(1), dtype=np.float64))
    tasks = classification_tasks(6)
    result = evaluate(model, tasks, cross_entropy, inner_lr=0.5, steps=[0, 3], metric=accuracy)
    for k in (0, 3):
        scores = [accuracy(adapted_predictions(model, t, cross_entropy, 0.5, k), t.query.targets) for t in tasks]
        losses = [cross_entropy(adapted_predictions(model, t, cross_entropy, 0.5, k), t.query.targets).item()
                  for t in tasks]
        assert result["metric"][k].mean == pytest.approx(np.mean(scores), rel=1e-12)
        assert result["metric"][k].ci95 == pytest.approx(1.96 * np.std(scores, ddof=1) / np.sqrt(6), rel=1e-12)
        assert result["loss"][k].mean == pytest.approx(np.mean(losses), rel=1e-12)
    assert result["metric"][3].mean > result["metric"][0].mean  # three steps on the support set help


def test_evaluate_passes_the_query_predictions_and_targets_to_the_metric():
    model = tiny_mlp()
    tasks = sine_tasks(4)

    def max_abs_error(prediction, targets):
        return float(np.max(np.abs(prediction.data - targets)))

    result = evaluate(model, tasks, mse_loss, inner_lr=0.05, steps=[2], metric=max_abs_error)
    expected = [max_abs_error(adapted_predictions(model, t, mse_loss, 0.05, 2), t.query.targets) for t in tasks]
    assert list(result["metric"]) == [2]
    assert result["metric"][2].mean == pytest.approx(np.mean(expected), rel=1e-12)
    assert "metric" not in evaluate(model, tasks, mse_loss, inner_lr=0.05, steps=[2])


def test_meta_train_sets_the_scheduled_learning_rate_before_each_step():
    source = SineTasks(shots=5, queries=5, dtype=np.float64)
    model, by_hand = tiny_mlp(), tiny_mlp()
    schedule = {0: 0.3, 1: 0.05, 2: 0.2}
    optimizer = SGD(model.parameters_dict(), lr=1.0)
    meta_train(Pretrain(model), source, optimizer, 3, 2, np.random.default_rng(4), lr_schedule=schedule.get,
               progress=False)
    assert optimizer.lr == 0.2
    rng = np.random.default_rng(4)
    for iteration in range(3):
        _, grads = Pretrain(by_hand).meta_gradients(source.sample(2, rng))
        with tm.no_grad():
            for name, p in by_hand.parameters_dict().items():
                p.copy_(p.data - schedule[iteration] * grads[name].data)
    for (name, a), (_, b) in zip(model.named_parameters(), by_hand.named_parameters()):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("progress", [True, False])
def test_meta_train_reports_progress_and_evaluations(progress, capsys):
    pytest.importorskip("tqdm")
    model = tiny_mlp()
    history = meta_train(Pretrain(model), SineTasks(dtype=np.float64), SGD(model.parameters_dict(), lr=0.01), 4, 2,
                         np.random.default_rng(0), eval_every=2, on_eval=lambda done: f"evaluated at {done}",
                         progress=progress, description="pretrain demo")
    out, err = capsys.readouterr()
    assert [i for i, _ in history] == [0, 1, 2, 3]
    assert "evaluated at 2" in out and "evaluated at 4" in out
    if progress:  # tqdm's bar, on stderr: the description, the count and the running meta-loss
        assert "pretrain demo" in err and "4/4" in err
        running = history[0][1]
        for _, loss in history[1:]:
            running = 0.98 * running + 0.02 * loss
        assert f"meta_loss={running:.4f}" in err
    else:
        assert err == ""


@pytest.mark.parametrize("make", [
    lambda model: MAML(model, 0.1), lambda model: MAML(model, 0.1, vectorize=True),
    lambda model: MAML(model, 0.1, first_order=True), lambda model: Reptile(model, 0.1, 1, 5, 0.5),
    lambda model: Reptile(model, 0.1, 1, 5, 0.5, vectorize=True), Pretrain], ids=[
    "maml", "maml-vectorized", "fomaml", "reptile", "reptile-vectorized", "pretrain"])
def test_an_empty_meta_batch_is_a_clear_error(make):
    learner = make(tiny_mlp())
    with pytest.raises(ValueError, match=f"{type(learner).__name__}: the meta-batch is empty"):
        learner.meta_gradients([])


@pytest.mark.parametrize("make, message", [
    (lambda: SineTasks(shots=0), "shots must be a positive integer"),
    (lambda: SineTasks(queries=-1), "queries must be a positive integer"),
    (lambda: MAML(tiny_mlp(), 0.01, inner_steps=0), "inner_steps must be at least 1"),
    (lambda: Examples(np.zeros((3, 1)), np.zeros((4, 1))), "inputs have 3 rows but targets have 4"),
    (lambda: Reptile(tiny_mlp(), 0.01, 0, 5, 0.1), "must be positive"),
    (lambda: MAML(tiny_mlp(), -0.01), r"^MAML: inner_lr must be positive, got -0.01$"),
    (lambda: MAML(tiny_mlp(), float("nan")), r"^MAML: inner_lr must be positive, got nan$"),
    (lambda: Reptile(tiny_mlp(), 0.0, 1, 5, 0.1), r"^Reptile: inner_lr must be positive, got 0.0$"),
    (lambda: Reptile(tiny_mlp(), 0.01, 1, 5, -1), r"^Reptile: outer_lr must be positive, got -1$"),
    (lambda: IMAML(tiny_mlp(), -0.01, 2, 1.0), r"^IMAML: inner_lr must be positive, got -0.01$"),
    (lambda: MetaSGD(tiny_mlp(), 0), r"^MetaSGD: init_lr must be positive, got 0$"),
    (lambda: stack_tasks([]), "stack_tasks: got no tasks"),
    (lambda: stack_tasks(sine_tasks(1, shots=3) + sine_tasks(1, shots=4)),
     "stack_tasks: tasks differ in the shapes of their support and query inputs and targets"),
    (lambda: stack_tasks([Task(Examples(np.zeros((2, 1)), np.zeros(2)), Examples(np.zeros((2, 1)), np.zeros(2))),
                          Task(Examples(np.zeros((2, 1)), np.zeros((2, 1))), Examples(np.zeros((2, 1)), np.zeros(2)))]),
     r"targets \[\(\(2, 1\), \(2,\), \(2, 1\), \(2,\)\), \(\(2, 1\), \(2, 1\), \(2, 1\), \(2,\)\)\]")])
def test_bad_configurations_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# --- Reptile's inner minibatches ------------------------------------------------
def test_reptile_minibatches_follow_its_generator_and_keep_every_column():
    """Minibatches walk through fresh permutations drawn from the learner's generator."""
    support = Examples(np.arange(12.0).reshape(6, 2), np.arange(6.0).reshape(6, 1) * 10)
    batches = Reptile(tiny_mlp(), 0.05, inner_steps=2, inner_batch=4, outer_lr=0.5,
                      rng=np.random.default_rng(5))._minibatches(support, 2, 4, stacked=False)
    rng = np.random.default_rng(5)
    order = np.concatenate([rng.permutation(6), rng.permutation(6)])
    for batch, picks in zip(batches, (order[:4], order[4:8])):
        np.testing.assert_array_equal(batch.inputs, support.inputs[picks])
        np.testing.assert_array_equal(batch.targets, support.targets[picks])


def test_reptile_takes_one_minibatch_order_per_meta_iteration():
    """Every call before the outer step reads the same order; the step (carry) moves on to another."""
    reptile = Reptile(tiny_mlp(), 0.05, inner_steps=3, inner_batch=2, outer_lr=0.5, rng=np.random.default_rng(4))
    support = Examples(np.arange(6.0).reshape(6, 1), np.arange(6.0).reshape(6, 1))

    def order():
        return np.concatenate([b.inputs.ravel() for b in reptile._minibatches(support, 3, 2, stacked=False)])
    first = order()
    np.testing.assert_array_equal(order(), first)
    reptile.meta_step(sine_tasks(2), reptile.optimizer())
    assert not np.array_equal(order(), first)


def test_reptile_evaluation_between_outer_steps_leaves_the_training_alone():
    """Validation adapts with minibatches too; the run it interrupts takes the same steps as one without it."""
    tasks = SineTasks(shots=6, queries=5, dtype=np.float64)

    def run(validate):
        reptile = Reptile(tiny_mlp(), 0.05, inner_steps=3, inner_batch=2, outer_lr=0.5, rng=np.random.default_rng(3))

        def on_eval(_):
            reptile.adapt(reptile.model.parameters_dict(), sine_tasks(1)[0].support, steps=4)
        meta_train(reptile, tasks, reptile.optimizer(), 6, 3, np.random.default_rng(1), eval_every=2,
                   on_eval=on_eval if validate else None, progress=False)
        return reptile.state_dict()

    validated, plain = run(True), run(False)
    for name, value in plain.items():
        np.testing.assert_array_equal(validated[name], value, err_msg=name)


def test_reptile_without_a_generator_is_reproducible_and_allows_batches_of_one():
    support = Examples(np.arange(5.0).reshape(5, 1), np.arange(5.0).reshape(5, 1))
    first, second = (Reptile(tiny_mlp(), 0.05, inner_steps=3, inner_batch=1, outer_lr=0.5)._minibatches(support, 3, 1, stacked=False)
                     for _ in range(2))
    for a, b in zip(first, second):
        assert a.inputs.shape == (1, 1)
        np.testing.assert_array_equal(a.inputs, b.inputs)


def test_vectorized_reptile_draws_minibatches_along_the_example_axis():
    """Stacked tasks carry the task axis first: a minibatch keeps every task and picks examples."""
    tasks = sine_tasks(3, shots=6)
    stacked = stack_tasks(tasks).support
    batches = Reptile(tiny_mlp(), 0.05, inner_steps=2, inner_batch=4, outer_lr=0.5, rng=np.random.default_rng(1),
                      vectorize=True)._minibatches(stacked, 2, 4, stacked=True)
    order = np.random.default_rng(1).permutation(6)
    assert batches[0].inputs.shape == (3, 4, 1) and batches[0].targets.shape == (3, 4, 1)
    np.testing.assert_array_equal(batches[0].inputs, stacked.inputs[:, order[:4]])
    np.testing.assert_array_equal(batches[0].targets, stacked.targets[:, order[:4]])


# --- evaluate: arguments and the estimate's edge cases -----------------------------
def test_evaluate_uses_the_parameters_it_is_given():
    model, other = tiny_mlp(seed=0), tiny_mlp(seed=1)
    tasks = sine_tasks(3)
    result = evaluate(model, tasks, mse_loss, inner_lr=0.05, steps=[0], params=other.parameters_dict())
    assert result["loss"][0].mean == pytest.approx(evaluate(other, tasks, mse_loss, 0.05, steps=[0])["loss"][0].mean)


def test_evaluate_on_one_task_has_no_confidence_interval_and_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = evaluate(tiny_mlp(), sine_tasks(1), mse_loss, inner_lr=0.05, steps=[0])
    assert np.isnan(result["loss"][0].ci95)
    assert np.isfinite(evaluate(tiny_mlp(), sine_tasks(2), mse_loss, 0.05, steps=[0])["loss"][0].ci95)


def test_evaluate_averages_metric_values_in_float64():
    values = iter([np.float32(1e8), np.float32(1.0), np.float32(-1e8)])
    result = evaluate(tiny_mlp(), sine_tasks(3), mse_loss, 0.05, steps=[0], metric=lambda p, t: next(values))
    assert result["metric"][0].mean == pytest.approx(1 / 3)


@pytest.mark.parametrize("tasks, steps, message", [
    ([], [0], "evaluate: no tasks to evaluate on"),
    (None, [-1, 2], r"evaluate: step counts must be non-negative, got \[-1, 2\]")])
def test_evaluate_refuses_nothing_to_do(tasks, steps, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        evaluate(tiny_mlp(), sine_tasks(2) if tasks is None else tasks, mse_loss, 0.05, steps=steps)


# --- meta_train's arguments -------------------------------------------------------
def pretrain_run(model=None, **kwargs):
    model = model or tiny_mlp()
    return meta_train(Pretrain(model), SineTasks(dtype=np.float64), SGD(model.parameters_dict(), lr=0.01),
                      rng=np.random.default_rng(0), **kwargs)


@pytest.mark.parametrize("iterations, meta_batch", [(3, 0), (-1, 2)])
def test_meta_train_refuses_bad_budgets(iterations, meta_batch):
    with pytest.raises(ValueError, match=rf"^meta_train: meta_batch \({meta_batch}\) must be positive and "
                                         rf"iterations \({iterations}\) non-negative$"):
        pretrain_run(iterations=iterations, meta_batch=meta_batch, progress=False)


def test_meta_train_accepts_the_smallest_budgets():
    assert pretrain_run(iterations=0, meta_batch=1, progress=False) == []
    assert [i for i, _ in pretrain_run(iterations=2, meta_batch=1, progress=False)] == [0, 1]


def test_meta_train_writes_checkpoints_only_when_asked_and_resumes_only_when_asked(tmp_path):
    path = tmp_path / "run" / "ckpt.npz"
    calls = []
    pretrain_run(iterations=2, meta_batch=2, checkpoint=path, on_eval=calls.append, progress=False)
    assert not path.exists() and calls == []  # eval_every=0: no evaluations, no checkpoints
    pretrain_run(iterations=2, meta_batch=2, checkpoint=path, eval_every=2, progress=False)
    assert path.exists()
    assert [i for i, _ in pretrain_run(iterations=3, meta_batch=2, checkpoint=path, progress=False)] == [0, 1, 2]
    assert [i for i, _ in pretrain_run(iterations=3, meta_batch=2, checkpoint=path, resume=True,
                                       progress=False)] == [2]
    assert [i for i, _ in pretrain_run(iterations=1, meta_batch=2, resume=True, progress=False)] == [0]


def test_meta_train_shows_a_bar_by_default(capsys):
    pytest.importorskip("tqdm")
    pretrain_run(iterations=3, meta_batch=2)
    err = capsys.readouterr().err
    assert re.search(r"(^|\r)100%\|.*\| 3/3 ", err)  # no description unless one is given
    assert re.findall(r"(\d+)/3", err)[-1] == "3"


# --- checkpoints ------------------------------------------------------------------
def test_checkpoint_round_trip_of_config_nested_folders_and_slashed_names(tmp_path):
    model, restored = tiny_mlp(seed=0), tiny_mlp(seed=1)
    optimizer = Adam({"enc/w": model.parameters_dict()["0.weight"]}, lr=0.1)
    optimizer.step({"enc/w": np.ones((1, 4))})
    path = tmp_path / "a" / "b" / "c.npz"
    save_checkpoint(path, model, optimizer, 7, np.random.default_rng(3), config={"way": 5})
    assert sorted(p.name for p in path.parent.iterdir()) == ["c.npz"]  # the temporary file is gone
    other = Adam({"enc/w": restored.parameters_dict()["0.weight"]}, lr=0.5)
    rng = np.random.default_rng(0)
    assert load_checkpoint(path, restored, other, rng) == (7, {"way": 5})
    np.testing.assert_array_equal(other.state["enc/w"]["m"], optimizer.state["enc/w"]["m"])
    assert rng.random() == np.random.default_rng(3).random()
    save_checkpoint(path, model, optimizer, 8, np.random.default_rng(3))
    assert load_checkpoint(path, restored, other, rng)[1] == {}


def test_loading_a_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"^load_checkpoint: no checkpoint at {re.escape(str(tmp_path / 'x.npz'))}$"):
        load_checkpoint(tmp_path / "x.npz", tiny_mlp(), SGD(tiny_mlp().parameters_dict(), lr=0.1),
                        np.random.default_rng(0))


@pytest.mark.parametrize("spoil", ["truncated", "not a zip", "no meta record"])
@pytest.mark.parametrize("read", ["load_checkpoint", "checkpoint_info"])
def test_a_damaged_checkpoint_is_an_error_that_names_the_file(tmp_path, spoil, read):
    model, path = tiny_mlp(), tmp_path / "c.npz"
    optimizer = SGD(model.parameters_dict(), lr=0.1)
    save_checkpoint(path, model, optimizer, 3, np.random.default_rng(0))
    if spoil == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif spoil == "not a zip":
        path.write_bytes(b"not a checkpoint")
    else:
        np.savez(path, weights=np.zeros(3))
    with pytest.raises(ValueError, match=f"^{read}: {re.escape(str(path))} is not a readable checkpoint: .*; it may "
                                         "have been cut short or written by another program"):
        if read == "load_checkpoint":
            load_checkpoint(path, model, optimizer, np.random.default_rng(0))
        else:
            checkpoint_info(path)


# --- MAML's defaults and arguments --------------------------------------------------
def test_maml_takes_one_inner_step_by_default():
    model, tasks = tiny_mlp(), sine_tasks(2)
    _, default = MAML(model, 0.1).meta_gradients(tasks)
    _, one = MAML(model, 0.1, inner_steps=1).meta_gradients(tasks)
    _, two = MAML(model, 0.1, inner_steps=2).meta_gradients(tasks)
    for name in default:
        np.testing.assert_array_equal(default[name].data, one[name].data)
    assert any(np.abs(default[k].data - two[k].data).max() > 1e-6 for k in default)


def test_maml_runs_conv_nets_without_vectorize_by_default():
    """Conv layers take no task axis: the default is the per-task loop."""
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, rng, dtype=np.float64), nn.ReLU(), nn.Flatten(),
                          nn.Linear(2 * 3 * 3, 2, rng, dtype=np.float64))
    task = Task(Examples(rng.standard_normal((4, 1, 5, 5)), np.array([0, 1, 0, 1])),
                Examples(rng.standard_normal((4, 1, 5, 5)), np.array([1, 0, 1, 0])))
    loss, grads = MAML(model, 0.1, loss_fn=cross_entropy).meta_gradients([task, task])
    assert np.isfinite(loss) and set(grads) == set(model.parameters_dict())


def test_maml_meta_loss_at_other_parameters():
    model, other, tasks = tiny_mlp(seed=0), tiny_mlp(seed=1), sine_tasks(2)
    at_other = MAML(model, 0.1).meta_loss(tasks, params=other.parameters_dict()).item()
    assert at_other == pytest.approx(MAML(other, 0.1).meta_loss(tasks).item(), rel=1e-12)
    assert at_other != pytest.approx(MAML(model, 0.1).meta_loss(tasks).item(), rel=1e-6)


def test_maml_without_inner_steps_is_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"^MAML: inner_steps must be at least 1 \(got 0\); with no inner step MAML "
                                         "is plain pre-training, see Pretrain$"):
        MAML(tiny_mlp(), 0.1, inner_steps=0)


def test_meta_train_evaluates_every_eval_every_steps_and_at_the_end_and_saves_the_config(tmp_path):
    done = []
    pretrain_run(iterations=5, meta_batch=1, eval_every=2, on_eval=done.append, checkpoint=tmp_path / "c.npz",
                 config={"shots": 5}, progress=False)
    assert done == [2, 4, 5]
    model = tiny_mlp()
    assert load_checkpoint(tmp_path / "c.npz", model, SGD(model.parameters_dict(), lr=0.1),
                           np.random.default_rng(0)) == (5, {"shots": 5})


def test_a_resumed_run_shows_its_bar_from_where_it_starts(tmp_path, capsys):
    pytest.importorskip("tqdm")
    pretrain_run(iterations=2, meta_batch=1, eval_every=2, checkpoint=tmp_path / "c.npz", progress=False)
    pretrain_run(iterations=3, meta_batch=1, checkpoint=tmp_path / "c.npz", resume=True)
    counts = re.findall(r"(\d+)/3", capsys.readouterr().err)
    assert counts[0] == "2" and counts[-1] == "3"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
def test_a_non_finite_meta_loss_stops_training_before_its_step_with_advice():
    model = tiny_mlp(dtype=np.float32)
    with pytest.raises(FloatingPointError, match=r"^meta_train: the meta-loss became \S+ at iteration \d+; lower the "
                                                 r"inner or outer learning rate; to find the op .*\.detect_anomaly\(\)$"):
        meta_train(MAML(model, inner_lr=1e6, inner_steps=3), SineTasks(), SGD(model.parameters_dict(), lr=1e-3),
                   20, 4, np.random.default_rng(0), progress=False)
    assert all(np.isfinite(p.data).all() for p in model.parameters_dict().values())


# --- Reptile with Adam in the inner loop (as its paper's code) ---------------------------
def adam_reptile(model, vectorize=False, inner_batch=100, rng=None):
    return Reptile(model, inner_lr=0.01, inner_steps=3, inner_batch=inner_batch, outer_lr=0.5, vectorize=vectorize,
                   rng=rng, inner_optimizer=InnerAdam(betas=(0.0, 0.999)))


def test_reptile_keeps_sgd_and_carries_nothing_by_default():
    reptile = Reptile(tiny_mlp(), 0.05, inner_steps=2, inner_batch=10, outer_lr=0.5)
    assert list(reptile.averaged()) == list(reptile.parameters_dict())
    assert set(reptile.state_dict()) == set(reptile.model.state_dict())
    _, grads = reptile.meta_gradients(sine_tasks(2))
    assert set(grads) == set(reptile.parameters_dict())


def test_reptile_inner_adam_carries_the_task_mean_of_the_second_moments_and_counts_the_steps():
    """One full-batch inner step from zero moments: v_n = (1 - b2) g_n^2 with g_n task n's support gradient."""
    model = tiny_mlp()
    reptile = Reptile(model, inner_lr=0.01, inner_steps=1, inner_batch=100, outer_lr=0.5,
                      inner_optimizer=InnerAdam(betas=(0.0, 0.9)))
    tasks = sine_tasks(3)
    phi = model.parameters_dict()
    squares = []
    for task in tasks:
        loss = mse_loss(model(task.support.inputs), task.support.targets)
        squares.append([g.data ** 2 for g in tm.grad(loss, list(phi.values()))])
    reptile.meta_step(tasks, reptile.optimizer())
    assert reptile.moments.t == 1
    for i, name in enumerate(phi):
        np.testing.assert_allclose(reptile.moments.v[name], 0.1 * np.mean([sq[i] for sq in squares], axis=0),
                                   rtol=1e-12)


def test_vectorized_reptile_with_inner_adam_equals_the_per_task_loop():
    """Gradients and carried moments agree, also from moments carried over (second iteration), float64."""
    tasks = [sine_tasks(4, seed=1), sine_tasks(4, seed=2)]
    results = []
    for vectorize in (False, True):
        reptile = adam_reptile(tiny_mlp(), vectorize=vectorize)
        reptile.meta_step(tasks[0], reptile.optimizer())
        results.append(reptile.meta_gradients(tasks[1]))
    (loss_loop, loop), (loss_batched, batched) = results
    assert set(loop) == set(batched) and any(name.startswith("inner_adam.v.") for name in loop)
    assert loss_batched == pytest.approx(loss_loop, rel=1e-12)
    for name in loop:
        np.testing.assert_allclose(batched[name], loop[name], rtol=1e-10, atol=1e-15, err_msg=name)


def test_reptile_inner_adam_moments_survive_a_checkpoint(tmp_path):
    reptile = adam_reptile(tiny_mlp())
    optimizer = reptile.optimizer()
    reptile.meta_step(sine_tasks(2), optimizer)
    save_checkpoint(tmp_path / "c.npz", reptile, optimizer, 1, np.random.default_rng(0))
    restored = adam_reptile(tiny_mlp(seed=1))
    load_checkpoint(tmp_path / "c.npz", restored, restored.optimizer(), np.random.default_rng(1))
    assert restored.moments.t == reptile.moments.t == 3
    for name in reptile.moments.v:
        np.testing.assert_array_equal(restored.moments.v[name], reptile.moments.v[name])


def test_resumed_reptile_with_inner_adam_and_minibatches_continues_exactly(tmp_path):
    """The moments and the learner's own minibatch generator are restored with the run's."""
    source = SineTasks(shots=6, queries=5)

    def run(iterations, checkpoint=None, resume=False):
        reptile = adam_reptile(tiny_mlp(dtype=np.float32), inner_batch=4, rng=np.random.default_rng(9))
        meta_train(reptile, source, reptile.optimizer(), iterations, 3, np.random.default_rng(3), eval_every=4,
                   checkpoint=checkpoint, resume=resume, progress=False)
        return reptile

    straight = run(8)
    run(4, tmp_path / "ckpt.npz")
    resumed = run(8, tmp_path / "ckpt.npz", resume=True)
    for name, value in straight.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], value, err_msg=name)


def test_a_checkpoint_of_sgd_reptile_is_refused_by_adam_reptile_and_back(tmp_path):
    plain = Reptile(tiny_mlp(), 0.05, inner_steps=2, inner_batch=10, outer_lr=0.5)
    with pytest.raises(KeyError, match="inner Adam moments missing"):
        adam_reptile(tiny_mlp()).load_state_dict(plain.state_dict())
    with pytest.raises(KeyError, match="this Reptile's inner loop is SGD"):
        plain.load_state_dict(adam_reptile(tiny_mlp()).state_dict())


def test_evaluate_runs_a_learners_own_inner_loop_batched_as_one_by_one():
    """Reptile's adapt (inner Adam, minibatches of 2) as evaluate's adapter: stacked tasks score as single ones."""
    tasks = sine_tasks(3, shots=4)
    scores = []
    for task_batch in (3, 1):
        reptile = adam_reptile(tiny_mlp(), inner_batch=4)
        reptile.meta_step(sine_tasks(2, seed=5), reptile.optimizer())

        def adapter(start, support, loss_fn, k):
            return reptile.adapt(start, support, loss_fn, steps=k, batch=4)
        scores.append(evaluate(reptile.model, tasks, mse_loss, None, steps=[0, 5], task_batch=task_batch,
                               adapter=adapter)["loss"])
    for k in (0, 5):
        assert scores[0][k].mean == pytest.approx(scores[1][k].mean, rel=1e-10)
    assert scores[0][5].mean < scores[0][0].mean
