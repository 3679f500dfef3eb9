"""iMAML: the implicit meta-gradient against a closed form, and against MAML unrolled further and further."""
import warnings

import numpy as np
import pytest

import tinymeta as tm
from tinymeta import nn
from tinymeta.data import Examples, SineTasks, Task
from tinymeta.meta import IMAML, evaluate
from tinymeta.meta.imaml import proximal_adapt
from tinymeta.nn.functional import mse_loss
from tinymeta.solve import ConvergenceWarning


def tiny_mlp(seed=0, hidden=4, act=nn.Tanh):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(1, hidden, rng, dtype=np.float64), act(),
                         nn.Linear(hidden, 1, rng, dtype=np.float64))


def sine_tasks(n, seed=0, shots=5, queries=6):
    return SineTasks(shots=shots, queries=queries, dtype=np.float64).sample(n, np.random.default_rng(seed))


def linear_regression_task(d, seed):
    rng = np.random.default_rng(seed)
    return Task(Examples(rng.standard_normal((8, d)), rng.standard_normal((8, 1))),
                Examples(rng.standard_normal((6, d)), rng.standard_normal((6, 1))))


@pytest.mark.parametrize("damping", [0.0, 3.0])
def test_on_a_quadratic_inner_problem_it_matches_the_closed_form(damping):
    """Linear regression: L_support(theta) = 1/n ||X theta - y||^2 = 1/2 theta^T A theta - b^T theta + c with
    A = 2/n X^T X, b = 2/n X^T y, so theta* = (A + lam I)^{-1} (b + lam phi) and d theta*/d phi = lam (A + lam I)^{-1}:
    the meta-gradient is (I + A/lam)^{-1} grad l^query(theta*); damped by mu, (I + (A + mu I)/lam)^{-1} grad."""
    d, lam, cg_tol = 6, 0.5, 1e-8
    model = nn.Linear(d, 1, np.random.default_rng(0), bias=False, dtype=np.float64)
    task = linear_regression_task(d, seed=1)
    (x, y), (xq, yq) = task.support, task.query
    a, b = 2 / len(x) * x.T @ x, 2 / len(x) * x.T @ y
    phi = model.parameters_dict()["weight"].data
    theta_star = np.linalg.solve(a + lam * np.eye(d), b + lam * phi)
    query_grad = 2 / len(xq) * xq.T @ (xq @ theta_star - yq)
    expected = np.linalg.solve(np.eye(d) + (a + damping * np.eye(d)) / lam, query_grad)

    learner = IMAML(model, inner_lr=0.2, inner_steps=400, lam=lam, cg_steps=50, cg_tol=cg_tol, damping=damping)
    np.testing.assert_allclose(learner.adapt(model.parameters_dict(), task.support)["weight"].data, theta_star,
                               rtol=1e-12, atol=1e-12)
    loss, grads = learner.meta_gradients([task])
    assert loss == pytest.approx(np.mean((xq @ theta_star - yq) ** 2), rel=1e-12)
    (solve,) = learner.last_solves
    assert solve.converged and solve.residual <= cg_tol
    # CG's residual bounds the error: ||x - x*|| <= ||(I + A/lam)^{-1}|| ||r|| <= ||r|| (the matrix is >= I)
    assert np.linalg.norm(grads["weight"] - expected) <= cg_tol * np.linalg.norm(query_grad)


def unrolled_meta_gradient(model, task, steps, lr, lam):
    """MAML through `steps` recorded steps on the proximal inner objective."""
    phi = model.parameters_dict()
    theta = proximal_adapt(model, phi, phi, task.support, mse_loss, steps, lr, lam, create_graph=True)
    loss = mse_loss(model(task.query.inputs, params=theta), task.query.targets)
    return np.concatenate([g.data.ravel() for g in tm.grad(loss, list(phi.values()))])


def test_maml_unrolled_through_more_steps_approaches_the_implicit_gradient():
    model = tiny_mlp(hidden=6)
    (task,) = sine_tasks(1, seed=4)
    lr, lam = 0.05, 2.0
    implicit = IMAML(model, lr, inner_steps=3000, lam=lam, cg_steps=100, cg_tol=1e-12)
    _, grads = implicit.meta_gradients([task])
    reference = np.concatenate([g.ravel() for g in grads.values()])
    errors = [np.linalg.norm(unrolled_meta_gradient(model, task, k, lr, lam) - reference) / np.linalg.norm(reference)
              for k in (1, 50, 100, 200, 400)]
    # while the inner loop is far from theta* (the first ~20 steps here) the gap may rise and fall; once the
    # inner iterates converge (linearly) the unrolled gradient closes in on the implicit one just as fast
    assert errors[0] > 0.1, errors
    assert all(later < 0.1 * earlier for earlier, later in zip(errors[1:], errors[2:])), errors
    assert errors[-1] < 1e-9, errors


def test_vectorized_meta_batch_equals_the_per_task_loop():
    tasks = sine_tasks(4)
    model = tiny_mlp(hidden=8)
    settings = {"inner_lr": 0.05, "inner_steps": 30, "lam": 10.0, "cg_steps": 200, "cg_tol": 1e-12}
    loop_loss, loop = IMAML(model, **settings).meta_gradients(tasks)
    vec_loss, vec = IMAML(model, **settings, vectorize=True).meta_gradients(tasks)
    # lam large enough that every (I + H/lam) is positive definite, so CG converges on every task
    assert vec_loss == pytest.approx(loop_loss, rel=1e-12)
    for name in loop:   # one joint solve against four: equal to the solver's tolerance
        np.testing.assert_allclose(vec[name], loop[name], rtol=1e-8, atol=1e-10, err_msg=name)


def test_vectorized_meta_batch_equals_the_per_task_loop_when_the_solves_are_cut_short():
    """Three CG steps, far from converged, and lam small enough that one task's system is indefinite: the stacked
    solve still gives each task its own step sizes and stopping point, so it matches the loop task by task."""
    tasks = sine_tasks(4, seed=0)
    model = tiny_mlp(hidden=8)
    settings = {"inner_lr": 0.05, "inner_steps": 5, "lam": 0.05, "cg_steps": 3, "cg_tol": 1e-12}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        loop_learner, vec_learner = IMAML(model, **settings), IMAML(model, **settings, vectorize=True)
        _, loop = loop_learner.meta_gradients(tasks)
        _, vec = vec_learner.meta_gradients(tasks)
    assert {str(w.message).split(";")[0] for w in caught} >= {
        "conjugate_gradient did not converge: a search direction had p^T A p <= 0, so A is not positive definite"}
    assert sorted(s.iterations for s in loop_learner.last_solves) == [2, 3, 3, 3]   # one stopped early
    for name in loop:
        np.testing.assert_allclose(vec[name], loop[name], rtol=1e-10, atol=1e-13, err_msg=name)


def test_proximal_steps_follow_the_formula():
    model = tiny_mlp()
    (task,) = sine_tasks(1)
    phi = model.parameters_dict()
    theta = {name: tm.tensor(p.data + 0.1, requires_grad=True) for name, p in phi.items()}
    stepped = proximal_adapt(model, phi, theta, task.support, mse_loss, 1, 0.05, 3.0, create_graph=False)
    grads = tm.grad(mse_loss(model(task.support.inputs, params=theta), task.support.targets), list(theta.values()))
    for (name, t), g in zip(theta.items(), grads):
        expected = t.data - 0.05 * (g.data + 3.0 * (t.data - phi[name].data))
        np.testing.assert_allclose(stepped[name].data, expected, rtol=1e-12)
        assert stepped[name].is_leaf and stepped[name].requires_grad   # nothing recorded


def test_evaluation_with_the_proximal_term_adapts_as_the_inner_loop_does():
    model = tiny_mlp()
    tasks = sine_tasks(3)
    learner = IMAML(model, 0.05, inner_steps=3, lam=4.0)
    result = evaluate(model, tasks, mse_loss, 0.05, steps=[3], proximal=4.0)
    by_hand = [mse_loss(model(t.query.inputs, params=learner.adapt(model.parameters_dict(), t.support)),
                        t.query.targets).item() for t in tasks]
    assert result["loss"][3].mean == pytest.approx(np.mean(by_hand), rel=1e-12)


def test_a_truncated_solve_warns_and_is_reported():
    learner = IMAML(tiny_mlp(hidden=8), 0.05, 10, lam=0.5, cg_steps=2, cg_tol=1e-12)
    with pytest.warns(ConvergenceWarning, match="conjugate_gradient did not converge"):
        learner.meta_gradients(sine_tasks(2))
    assert [s.iterations for s in learner.last_solves] == [2, 2]
    assert not any(s.converged for s in learner.last_solves)


def test_a_converged_solve_does_not_warn():
    learner = IMAML(tiny_mlp(), 0.05, 10, lam=2.0, cg_steps=100, cg_tol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        learner.meta_gradients(sine_tasks(2))


@pytest.mark.parametrize("kwargs, message", [
    ({"inner_steps": 0}, "inner_steps \\(0\\) and cg_steps \\(5\\) must be at least 1"),
    ({"lam": 0.0}, "the proximal strength lam must be positive, got 0.0"),
    ({"damping": -1.0}, "the damping must be zero or positive, got -1.0")])
def test_bad_configurations_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=f"IMAML: {message}"):
        IMAML(tiny_mlp(), 0.05, **({"inner_steps": 5, "lam": 1.0, "cg_steps": 5} | kwargs))


def test_by_default_a_solve_stops_after_10_products_or_at_a_relative_residual_of_1e_3():
    """A quadratic inner problem whose (I + H/lam) has 20 distinct eigenvalues: CG needs more than 10 products."""
    d, rng = 20, np.random.default_rng(0)
    support = Examples(rng.standard_normal((40, d)) * np.linspace(0.1, 3.0, d), rng.standard_normal((40, 1)))
    task = Task(support, Examples(rng.standard_normal((6, d)), rng.standard_normal((6, 1))))
    learner = IMAML(nn.Linear(d, 1, rng, bias=False, dtype=np.float64), 0.01, inner_steps=5, lam=1.0)
    with pytest.warns(ConvergenceWarning, match=r"\(tol 0\.001\) for all 10 iterations"):
        learner.meta_gradients([task])


def test_one_inner_step_and_one_conjugate_gradient_step_are_allowed():
    learner = IMAML(tiny_mlp(), 0.05, inner_steps=1, lam=1.0, cg_steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        learner.meta_gradients(sine_tasks(1))
    assert [s.iterations for s in learner.last_solves] == [1]


def test_a_new_learner_has_no_solves_to_report():
    assert IMAML(tiny_mlp(), 0.05, inner_steps=1, lam=1.0).last_solves == []
