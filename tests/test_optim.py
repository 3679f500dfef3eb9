"""Optimizers: the update formulas, checkpoints, and a training run that learns."""
import numpy as np
import pytest

import tinymeta as tm
from tinymeta import nn
from tinymeta.nn import functional as F
from tinymeta.optim import SGD, Adam, InnerAdam, sgd_step


def param(values):
    return tm.tensor(np.asarray(values, dtype=np.float64), requires_grad=True)


def test_sgd_with_momentum_and_weight_decay_follows_the_formula():
    p = param([1.0, -2.0])
    opt = SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
    g1, g2 = np.array([0.5, 1.0]), np.array([-1.0, 0.25])
    opt.step([g1])
    v = g1 + 0.01 * np.array([1.0, -2.0])
    expected = np.array([1.0, -2.0]) - 0.1 * v
    np.testing.assert_allclose(p.data, expected)
    opt.step([g2])
    v = 0.9 * v + g2 + 0.01 * expected
    np.testing.assert_allclose(p.data, expected - 0.1 * v)


def test_adam_follows_the_formula_for_two_steps():
    p = param([1.0])
    opt = Adam({"p": p}, lr=0.01)
    m = v = 0.0
    value = 1.0
    for t, g in enumerate([0.3, -0.7], start=1):
        p.grad = tm.tensor(np.array([g]))
        opt.step()
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        value -= 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        assert p.data[0] == pytest.approx(value, rel=1e-12)


def test_adam_weight_decay_adds_decay_times_p_to_the_gradient():
    p = param([1.0, -2.0])
    opt = Adam({"p": p}, lr=0.01, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1)
    m = v = np.zeros(2)
    value = np.array([1.0, -2.0])
    for t, g in enumerate([np.array([0.3, 0.0]), np.array([-0.7, 0.2])], start=1):
        opt.step({"p": g})
        g = g + 0.1 * value
        m, v = 0.8 * m + 0.2 * g, 0.9 * v + 0.1 * g * g
        value = value - 0.01 * (m / (1 - 0.8 ** t)) / (np.sqrt(v / (1 - 0.9 ** t)) + 1e-6)
        np.testing.assert_allclose(p.data, value, rtol=1e-12)


def test_zero_grad_clears_every_gradient_so_a_step_changes_nothing():
    a, b = param([1.0, 2.0]), param([3.0])
    opt = SGD({"a": a, "b": b}, lr=0.1)
    tm.sum(a * b).backward()
    np.testing.assert_allclose(a.grad.data, [3.0, 3.0])
    opt.zero_grad()
    assert a.grad is None and b.grad is None
    opt.step()
    np.testing.assert_array_equal(a.data, [1.0, 2.0])
    np.testing.assert_array_equal(b.data, [3.0])


def test_adam_checkpoint_resumes_exactly():
    a, b = param([1.0, 2.0]), param([1.0, 2.0])
    opt_a, opt_b = Adam([a], lr=0.1), Adam([b], lr=0.1)
    opt_a.step([np.array([1.0, -1.0])])
    opt_b.load_state_dict(opt_a.state_dict())
    with tm.no_grad():
        b.copy_(a)
    opt_a.step([np.array([0.5, 0.5])])
    opt_b.step([np.array([0.5, 0.5])])
    np.testing.assert_array_equal(a.data, b.data)


def test_step_rejects_gradients_of_the_wrong_shape():
    opt = SGD([param([1.0, 2.0])], lr=0.1)
    with pytest.raises(ValueError, match=r"gradient for '0' has shape \(3,\), parameter has \(2,\)"):
        opt.step([np.ones(3)])
    assert opt.step_count == 0


def test_step_rejects_a_gradient_that_names_no_parameter_and_changes_nothing():
    """A misspelt name would otherwise leave its parameter untrained without a word."""
    p = param([1.0, 2.0])
    opt = Adam({"layer.weight": p}, lr=0.1)
    with pytest.raises(ValueError, match=r"Adam.step: gradients for \['layer.weigth'\], which name no parameter "
                                         r"of this optimizer \(it holds \['layer.weight'\]\)"):
        opt.step({"layer.weight": np.ones(2), "layer.weigth": np.ones(2)})
    assert opt.step_count == 0
    np.testing.assert_array_equal(p.data, [1.0, 2.0])


def test_sgd_step_returns_new_differentiable_tensors():
    p = param([2.0])
    new = sgd_step({"p": p}, [p * p], lr=0.1)  # p - 0.1 p^2
    assert new["p"] is not p and p.data[0] == 2.0
    assert tm.grad(new["p"].sum(), p).item() == pytest.approx(1 - 0.2 * 2.0)


def test_sgd_step_with_per_parameter_rates_is_differentiable_in_the_rates():
    p, q = param([2.0, 3.0]), param([1.0])
    rates = {"p": param([0.1, 0.5]), "q": param(0.2)}   # elementwise for p, one scalar for q
    new = sgd_step({"p": p, "q": q}, [p * p, q], lr=rates)
    np.testing.assert_allclose(new["p"].data, [2.0 - 0.1 * 4.0, 3.0 - 0.5 * 9.0])
    np.testing.assert_allclose(new["q"].data, [1.0 - 0.2 * 1.0])
    d_rate_p, d_rate_q = tm.grad(new["p"].sum() + new["q"].sum(), [rates["p"], rates["q"]])
    np.testing.assert_allclose(d_rate_p.data, [-4.0, -9.0])   # d(p - a g)/da = -g
    np.testing.assert_allclose(d_rate_q.data, -1.0)
    with pytest.raises(KeyError, match=r"sgd_step: no learning rate for parameters \['q'\]"):
        sgd_step({"p": p, "q": q}, [p, q], lr={"p": rates["p"]})


@pytest.mark.parametrize("make_optimizer", [lambda ps: SGD(ps, lr=0.5, momentum=0.9),
                                            lambda ps: Adam(ps, lr=0.05)], ids=["sgd", "adam"])
def test_training_lowers_the_loss_on_a_separable_problem(make_optimizer):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 2)).astype(np.float32)
    labels = (x[:, 0] + 2 * x[:, 1] > 0).astype(np.int64)
    model = nn.Sequential(nn.Linear(2, 16, rng), nn.ReLU(), nn.Linear(16, 2, rng))
    opt = make_optimizer(model.parameters_dict())
    inputs = tm.tensor(x)
    first = F.cross_entropy(model(inputs), labels).item()
    for _ in range(60):
        loss = F.cross_entropy(model(inputs), labels)
        model.zero_grad()
        loss.backward()
        opt.step()
    final = F.cross_entropy(model(inputs), labels)
    assert final.item() < 0.3 * first
    assert F.accuracy(model(inputs), labels) > 0.95


# --- Adam as an inner-loop step -------------------------------------------------------
def test_inner_adam_follows_the_adam_formula_for_two_steps_and_counts_them():
    p = param([1.0, -2.0])
    adam = InnerAdam(betas=(0.5, 0.9), eps=1e-8)
    step = adam.stepper(adam.zero_moments({"p": p}))
    g1, g2 = np.array([0.5, -1.0]), np.array([-1.0, 0.25])
    after1 = step({"p": p}, [tm.tensor(g1)], 0.1)
    after2 = step(after1, [tm.tensor(g2)], 0.1)
    m1, v1 = 0.5 * g1, 0.1 * g1 ** 2
    m2, v2 = 0.5 * m1 + 0.5 * g2, 0.9 * v1 + 0.1 * g2 ** 2
    expected1 = p.data - 0.1 * (m1 / 0.5) / (np.sqrt(v1 / 0.1) + 1e-8)
    expected2 = expected1 - 0.1 * (m2 / 0.75) / (np.sqrt(v2 / 0.19) + 1e-8)
    np.testing.assert_allclose(after1["p"].data, expected1, rtol=1e-13)
    np.testing.assert_allclose(after2["p"].data, expected2, rtol=1e-13)
    np.testing.assert_allclose(step.moments.v["p"], v2, rtol=1e-13)
    assert step.moments.t == 2
    np.testing.assert_array_equal(p.data, [1.0, -2.0])   # never in place


def test_inner_adam_without_momentum_first_steps_each_coordinate_by_the_learning_rate():
    """beta1 = 0 (Reptile's code): from zero moments the first step is lr * g / |g|."""
    p = param([3.0, 0.0, -1.0])
    adam = InnerAdam()
    g = np.array([2.0, -0.1, 0.5])
    after = adam.stepper(adam.zero_moments({"p": p}))({"p": p}, [tm.tensor(g)], 0.01)
    np.testing.assert_allclose(after["p"].data, p.data - 0.01 * np.sign(g), rtol=1e-6)


def test_inner_adam_starts_from_the_moments_it_is_given():
    p = param([1.0])
    adam = InnerAdam(betas=(0.0, 0.5))
    carried = adam.stepper(adam.zero_moments({"p": p}))
    carried({"p": p}, [tm.tensor(np.array([4.0]))], 1.0)           # v = 8, t = 1
    after = adam.stepper(carried.moments)({"p": p}, [tm.tensor(np.array([1.0]))], 1.0)
    v = 0.5 * 8.0 + 0.5 * 1.0                                        # t = 2: v_hat = v / 0.75
    np.testing.assert_allclose(after["p"].data, 1.0 - 1.0 / (np.sqrt(v / 0.75) + 1e-8), rtol=1e-13)


@pytest.mark.parametrize("kwargs", [{"betas": (1.0, 0.999)}, {"betas": (0.0,)}, {"betas": (0.9, -0.1)}, {"eps": 0.0}])
@pytest.mark.parametrize("make", [lambda **kw: InnerAdam(**kw), lambda **kw: Adam([param([1.0])], **kw)],
                         ids=["InnerAdam", "Adam"])
def test_adam_refuses_bad_settings(make, kwargs):
    with pytest.raises(ValueError, match=r"^(Inner)?Adam: betas must be two numbers in \[0, 1\) and eps positive"):
        make(**kwargs)


@pytest.mark.parametrize("make, message", [
    (lambda: SGD([param([1.0])], lr=0.1, momentum=-0.5), "SGD: momentum must be non-negative, got -0.5"),
    (lambda: SGD([param([1.0])], lr=0.1, weight_decay=-1), "SGD: weight_decay must be non-negative, got -1"),
    (lambda: Adam([param([1.0])], weight_decay=-1e-4), "Adam: weight_decay must be non-negative, got -0.0001")])
def test_optimizers_refuse_negative_momentum_and_decay(make, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        make()


def test_inner_adam_takes_one_learning_rate():
    p = param([1.0])
    adam = InnerAdam()
    with pytest.raises(TypeError, match="InnerAdam: takes one learning rate"):
        adam.stepper(adam.zero_moments({"p": p}))({"p": p}, [tm.tensor(np.array([1.0]))], {"p": 0.1})
