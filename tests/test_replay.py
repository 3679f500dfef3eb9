"""Replay (tinymeta/replay.py): a recorded function run again as its primitives' forwards gives what
the function itself gives, bit for bit, on new inputs; and what cannot be replayed is refused
with an error that names why, never replayed wrongly."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinymeta as tm
from tinymeta import nn
from tinymeta.data import Examples, SineTasks, Task
from tinymeta.meta import MAML, MetaSGD
from tinymeta.nn.functional import cross_entropy
from tinymeta.optim import Adam
from tinymeta.replay import Replay, ReplayError


def leaf(array, requires_grad=True):
    return tm.Tensor(np.asarray(array, dtype=np.float64), requires_grad)


def value_and_gradient(x, w):
    """A small second-order computation: L = sum(relu(x w)^2 / 2) and dL/dw through grad's graph."""
    loss = (tm.relu(x @ w) ** 2).sum() * 0.5
    (gw,) = tm.grad(loss, [w], create_graph=True)
    (hw,) = tm.grad((gw * gw).sum(), [w])   # a Hessian-vector product: 2 H gw
    return loss, gw, hw


@settings(max_examples=10)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2**16))
def test_replay_gives_the_functions_own_values_on_new_inputs(n, k, m, seed):
    rng = np.random.default_rng(seed)
    replayed = Replay(value_and_gradient)
    for _ in range(3):  # the first call records, the later ones replay
        x, w = leaf(rng.standard_normal((n, k)), False), leaf(rng.standard_normal((k, m)))
        got, expected = replayed(x, w), value_and_gradient(x, w)
        for a, b in zip(got, expected):
            assert a.shape == b.shape and np.array_equal(a.numpy(), b.numpy())
    assert len(replayed.tapes) == 1


def test_each_new_set_of_shapes_is_recorded_anew_and_outputs_carry_no_graph():
    replayed = Replay(value_and_gradient)
    for shape in [(3, 2), (5, 2), (3, 2)]:
        x, w = leaf(np.ones(shape), False), leaf(np.linspace(-1, 1, 2 * 4).reshape(2, 4))
        outputs = replayed(x, w)
        assert outputs[1].shape == (2, 4) and all(t.is_leaf and not t.requires_grad for t in outputs)
    assert len(replayed.tapes) == 2


LEARNERS = {"maml": lambda model, replay: MAML(model, 0.01, 2, vectorize=True, replay=replay),
            "first-order maml": lambda model, replay: MAML(model, 0.01, 2, True, vectorize=True, replay=replay),
            "meta-sgd": lambda model, replay: MetaSGD(model, 0.01, 2, vectorize=True, replay=replay)}


@pytest.mark.parametrize("kind", LEARNERS)
def test_replayed_learner_trains_exactly_as_the_learner_itself(kind):
    """Ten outer Adam steps on the sine MLP, replayed and not: the same losses and the same trained
    tensors to the bit (new tasks every step, so every input of the replay changes)."""
    twins = [nn.sine_mlp(np.random.default_rng(1), hidden=8, dtype=np.float64) for _ in range(2)]
    learners = [LEARNERS[kind](model, replay) for model, replay in zip(twins, (False, True))]
    optimizers = [Adam(learner.parameters_dict(), lr=0.01) for learner in learners]
    sampler = SineTasks(5, 5, dtype=np.float64)
    for step in range(10):
        tasks = sampler.sample(4, np.random.default_rng(step))
        losses = [learner.meta_step(tasks, optimizer) for learner, optimizer in zip(learners, optimizers)]
        assert losses[0] == losses[1]
    trained = [learner.parameters_dict() for learner in learners]
    for name, p in trained[0].items():
        assert np.array_equal(p.numpy(), trained[1][name].numpy()), name


def test_maml_replay_needs_the_stacked_pass():
    with pytest.raises(ValueError, match="replay=True needs vectorize=True"):
        MAML(nn.sine_mlp(np.random.default_rng(0)), 0.01, replay=True)


def test_an_array_made_outside_the_primitives_is_caught_before_any_replay():
    def squares_outside(x):
        return tm.Tensor(x.data ** 2) * x   # x^2 by plain numpy: a replay would keep the recorded one
    with pytest.raises(ReplayError, match="perturbed inputs.*outside tinymeta's primitives"):
        Replay(squares_outside)(leaf([1.0, 2.0]))


def test_an_output_made_outside_the_primitives_is_refused():
    with pytest.raises(ReplayError, match=r"output\(s\) \[1\] were not made by a primitive"):
        Replay(lambda x: (x * 2.0, tm.Tensor(x.data + 1.0)))(leaf([1.0, 2.0]))


def test_a_tensor_read_from_outside_the_inputs_is_read_afresh_at_every_replay():
    """A weight the function reads from elsewhere, updated in place or given a new array (as
    Module.to does), is replayed with its value of now, not the one recorded."""
    w = leaf([2.0, 3.0], False)
    replayed = Replay(lambda x: tm.tanh(x * w))
    x = leaf([0.5, -1.0])
    replayed(x)
    for update in (lambda: w.data.__imul__(-0.5), lambda: setattr(w, "data", np.array([10.0, 0.25]))):
        update()
        assert np.array_equal(replayed(x).numpy(), np.tanh(x.numpy() * w.numpy()))


def test_a_tensor_read_from_outside_the_inputs_that_changed_shape_is_refused():
    w = leaf([2.0, 3.0], False)
    replayed = Replay(lambda x: x * w)
    replayed(leaf([0.5, -1.0]))
    w.data = np.ones(1)
    with pytest.raises(ReplayError, match=r"outside its inputs was numpy.ndarray float64 of shape \(2,\) when "
                                          r"recorded and is numpy.ndarray float64 of shape \(1,\) now"):
        replayed(leaf([0.5, -1.0]))


def test_under_detect_anomaly_the_function_runs_itself_so_that_its_ops_are_checked():
    replayed = Replay(lambda x: tm.log(x) * 2.0)
    replayed(leaf([1.0, 2.0]))
    with tm.detect_anomaly(), np.errstate(invalid="ignore"):
        with pytest.raises(FloatingPointError, match="log: 1 of its 2 output values are NaN"):
            replayed(leaf([1.0, -1.0]))


def test_an_input_that_is_not_a_tensor_is_refused_by_name():
    def doubled(x, y):
        return x * 2.0 + y
    with pytest.raises(TypeError, match=r"Replay\(.*doubled\): takes Tensors, got \(Tensor, ndarray\)"):
        Replay(doubled)(leaf([1.0]), np.ones(1))


def test_a_branch_on_a_value_is_refused():
    def clipped(x):
        return x * 2.0 if x.sum() > 0 else x
    with pytest.raises(ReplayError, match=r"bool\(\) reads a tensor's value while recording"):
        Replay(clipped)(leaf([1.0, 2.0]))


def test_an_array_given_to_a_primitive_as_a_setting_is_refused():
    mask = np.array([True, False])
    with pytest.raises(ReplayError, match="where takes an array as a setting"):
        Replay(lambda x: tm.where(mask, x, 0.0))(leaf([1.0, 2.0]))


def test_a_conv_net_whose_nodes_keep_their_columns_is_refused_by_name():
    model = nn.omniglot_cnn(2, np.random.default_rng(0), channels=2, image_size=8, dtype=np.float64)
    rng = np.random.default_rng(1)
    tasks = [Task(*(Examples(rng.standard_normal((2, 1, 8, 8)), np.arange(2)) for _ in range(2)))
             for _ in range(2)]
    maml = MAML(model, 0.4, 1, loss_fn=cross_entropy, vectorize=True, replay=True)
    with pytest.raises(ReplayError, match=r"conv2d's forward keeps arrays on its node \(columns\)"):
        maml.meta_gradients(tasks)


def test_a_replay_called_while_another_records_is_recorded_into_it():
    inner = Replay(lambda x: tm.exp(x) * 2.0)
    outer = Replay(lambda x: inner(x) + x)
    x = leaf([0.5, -1.0])
    for _ in range(2):
        assert np.array_equal(outer(x).numpy(), np.exp(x.numpy()) * 2.0 + x.numpy())
    assert not inner.tapes
