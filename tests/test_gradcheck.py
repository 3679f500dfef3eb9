"""check_grads itself: it must fail on wrong derivatives, and say where."""
import numpy as np
import pytest

import tinymeta as tm
from tinymeta.function import Function


class WrongSquare(Function):
    """out = a^2 with a deliberately wrong backward (3a instead of 2a)."""

    def forward(self, a):
        return a * a

    def backward(self, g):
        return (g * self.inputs[0] * 3.0,)


class SquareWithWrongSecondOrder(Function):
    """Right first derivative 2a, but computed from a constant so the second order is lost."""

    def forward(self, a):
        return a * a

    def backward(self, g):
        return (g * tm.tensor(2.0 * self.inputs[0].data),)


def test_check_grads_passes_a_correct_function():
    tm.check_grads(lambda a, b: tm.sum(a * tm.exp(b)), np.ones((2, 2)), np.full(2, 0.3), order=2)


def test_check_grads_reports_the_input_and_order_of_a_wrong_first_derivative():
    with pytest.raises(tm.GradcheckError, match=r"order 1 derivative wrt input 1 \(shape \(3,\)\).*worst absolute error"):
        tm.check_grads(lambda a, b: a + WrongSquare.apply(b), np.ones(3), np.ones(3))


def test_check_grads_catches_a_missing_second_order_term():
    x = np.array([0.5, -1.0])
    tm.check_grads(lambda a: SquareWithWrongSecondOrder.apply(a), x, order=1)
    with pytest.raises(tm.GradcheckError, match="order 2"):
        tm.check_grads(lambda a: SquareWithWrongSecondOrder.apply(a), x, order=2)


def test_check_grads_insists_on_float64():
    with pytest.raises(TypeError, match="float64"):
        tm.check_grads(tm.exp, np.ones(2, dtype=np.float32))


def test_integer_inputs_are_held_constant():
    labels = np.array([0, 2])
    tm.check_grads(lambda x, idx: tm.sum(x[np.arange(2), idx]), np.ones((2, 3)) * 0.5, labels)


def test_a_function_with_constant_gradient_passes_to_any_order():
    """f linear in x: the first derivative is a constant, every higher one zero (the gradient
    does not even depend on x, so the checks of order 2 and 3 compare against zero)."""
    a = np.array([[1.0, -2.0], [0.5, 3.0], [0.0, 1.0]])
    tm.check_grads(lambda x: tm.matmul(tm.tensor(a), x) * 2.0 + 1.0, np.array([0.3, -0.7]), order=3)

