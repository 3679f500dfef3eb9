"""detect_anomaly: the first op to make a NaN or an infinity from finite values raises, naming itself."""
import threading

import numpy as np
import pytest

import tinymeta as tm
from tinymeta import nn
from tinymeta.data import SineTasks
from tinymeta.function import Function
from tinymeta.meta import MAML, TaskThreads, meta_train
from tinymeta.optim import SGD

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the NaNs and overflows are the point


def leaf(values):
    return tm.tensor(np.asarray(values, dtype=np.float64), requires_grad=True)


def test_outside_the_context_a_nan_passes_silently():
    assert not tm.is_anomaly_enabled()
    assert np.isnan(tm.tensor(np.array([-1.0, 2.0])).log().data[0])


@pytest.mark.parametrize("make, op", [(lambda: tm.tensor(np.array([-1.0, 2.0, 3.0])).log(), "log"),
                                      (lambda: tm.exp(leaf([1000.0, 1.0, 2.0])), "exp"),
                                      (lambda: leaf([1.0, 0.0, 2.0]) / 0.0, "div")])
def test_a_forward_that_makes_non_finite_values_from_finite_inputs_is_named(make, op):
    with tm.detect_anomaly(), pytest.raises(FloatingPointError, match=rf"^{op}: \d of its 3 output values are NaN "
                                                                       r"or infinite, from finite inputs of shapes \(3,\)"):
        make()


def test_a_non_finite_input_is_an_earlier_ops_doing_and_passes():
    with tm.detect_anomaly():
        y = tm.exp(tm.tensor(np.array([np.nan, 1.0])))
    assert np.isnan(y.data[0])


@pytest.mark.parametrize("order", [1, 2])
def test_a_backward_that_makes_non_finite_gradients_names_the_op_and_where_its_forward_ran(order):
    x = leaf([0.0, 1.0])
    with tm.detect_anomaly(), pytest.raises(FloatingPointError) as raised:
        y = x.sqrt().sum()  # finite, but d sqrt(x)/dx = 1 / (2 sqrt(x)) is infinite at 0
        (g,) = tm.grad(y, [x], create_graph=order == 2)
        if order == 2:
            tm.grad(g.sum(), [x])
    message = str(raised.value)
    assert "in the backward of sqrt" in message
    assert f"called from {__file__}:" in message and "x.sqrt().sum()" in message


def test_a_non_finite_incoming_gradient_passes():
    x = leaf([1.0, 2.0])
    with tm.detect_anomaly():
        (g,) = tm.grad(x * 3.0, [x], grad_outputs=tm.tensor(np.array([np.nan, 1.0])))
    np.testing.assert_array_equal(g.data, [np.nan, 3.0])


class _BrokenBackward(Function):
    """y = x, with a backward that returns infinity without going through any primitive."""

    def forward(self, x):
        return x.copy()

    def backward(self, grad):
        return (tm.tensor(np.full(grad.shape, np.inf)),)


def test_a_gradient_a_backward_returns_non_finite_is_named_with_its_input():
    x = leaf([1.0, 2.0])
    with tm.detect_anomaly():
        y = _BrokenBackward.apply(x).sum()
        with pytest.raises(FloatingPointError, match=r"^_brokenbackward\.backward: made a NaN or infinite gradient "
                                                     r"for input 0 \(shape \(2,\)\) from a finite incoming gradient"):
            tm.grad(y, [x])


def test_the_setting_is_restored_on_leaving_even_through_an_error():
    with pytest.raises(FloatingPointError):
        with tm.detect_anomaly():
            with tm.detect_anomaly():
                pass
            assert tm.is_anomaly_enabled()
            tm.tensor(np.array([0.0])).log()
    assert not tm.is_anomaly_enabled()


def test_the_setting_reaches_other_threads():
    errors = []

    def work():
        try:
            tm.tensor(np.array([-1.0])).log()
        except FloatingPointError as err:
            errors.append(err)

    with tm.detect_anomaly():
        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
    assert len(errors) == 1 and str(errors[0]).startswith("log:")


@pytest.mark.parametrize("threads", [1, 2])
def test_a_diverging_meta_training_stops_at_the_op_instead_of_at_the_meta_loss(threads):
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(1, 8, rng, dtype=np.float32), nn.ReLU(), nn.Linear(8, 1, rng, dtype=np.float32))
    communicator = TaskThreads(threads)
    with tm.detect_anomaly(), pytest.raises(FloatingPointError) as raised:
        meta_train(MAML(model, inner_lr=1e6, inner_steps=3), SineTasks(), SGD(model.parameters_dict(), lr=1e-3),
                   20, 4, np.random.default_rng(0), communicator=communicator, progress=False)
    communicator.close()
    assert not str(raised.value).startswith("meta_train")
    assert all(np.isfinite(p.data).all() for p in model.parameters_dict().values())
