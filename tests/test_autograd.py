"""The backward pass: paths, accumulation, graph freeing, deep graphs, errors."""
import gc
import weakref

import numpy as np
import pytest

import tinymeta as tm


def leaf(values, dtype=np.float64):
    return tm.tensor(np.asarray(values, dtype=dtype), requires_grad=True)


def test_gradient_sums_over_every_path():
    x = leaf(3.0)
    y = x * x + x * 2.0 + tm.exp(x) * 0.0   # dy/dx = 2x + 2
    assert tm.grad(y, x).item() == pytest.approx(8.0)


def test_backward_accumulates_into_leaves():
    x = leaf([1.0, 2.0])
    (x * x).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.data, 2 * np.array([1.0, 2.0]) + 3.0)


def test_backward_reaches_only_leaves_that_require_grad():
    x, c = leaf([1.0]), tm.tensor(np.array([5.0]))
    (x * c).sum().backward()
    np.testing.assert_allclose(x.grad.data, [5.0])
    assert c.grad is None


def test_grad_of_a_non_leaf_input():
    x = leaf(2.0)
    h = x * x
    y = h * h * h  # dy/dh = 3 h^2 = 48
    assert tm.grad(y, h).item() == pytest.approx(48.0)


def test_grad_wrt_non_leaf_does_not_stop_other_inputs():
    x = leaf(2.0)
    h = x * 3.0
    y = h * x
    gh, gx = tm.grad(y, [h, x])
    assert gh.item() == pytest.approx(2.0)          # d(h*x)/dh = x
    assert gx.item() == pytest.approx(12.0)         # total derivative 6x


def test_nested_grad_differentiates_a_function_that_calls_grad():
    def slope(x):  # f'(x) for f = x^3 sin-free polynomial: 3x^2
        return tm.grad((x ** 3).sum(), x, create_graph=True)

    x = leaf(1.5)
    (curvature,) = tm.grad(slope(x), [x])           # 6x
    assert curvature.item() == pytest.approx(9.0)


def test_second_derivative_of_product_with_create_graph():
    x, y = leaf(2.0), leaf(3.0)
    gx = tm.grad(x * x * y, x, create_graph=True)   # 2xy
    gxy = tm.grad(gx, y)                            # 2x
    assert gxy.item() == pytest.approx(4.0)


def test_ten_thousand_op_chain_needs_no_recursion():
    x = leaf(1.0)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    assert tm.grad(y, x).item() == pytest.approx(1.0001 ** 10_000)


def test_intermediates_are_freed_after_backward():
    x = leaf([1.0, 2.0])
    hidden = tm.exp(x * 2.0)
    ref = weakref.ref(hidden)
    loss = tm.sum(hidden * hidden)
    del hidden
    gc.collect()
    assert ref() is not None           # the graph still holds it
    loss.backward()
    gc.collect()
    assert ref() is None


def test_second_backward_through_freed_graph_raises():
    x = leaf([1.0])
    y = tm.sum(tm.exp(x) * x)
    y.backward()
    with pytest.raises(RuntimeError, match="already freed.*retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = leaf([1.0])
    y = tm.sum(tm.exp(x) * x)
    g1 = tm.grad(y, x, retain_graph=True)
    g2 = tm.grad(y, x)
    np.testing.assert_allclose(g1.data, g2.data)


def test_create_graph_false_gives_gradients_without_graph():
    x = leaf([1.0, 2.0])
    g = tm.grad(tm.sum(x ** 3), x)
    assert not g.requires_grad


def test_no_grad_records_nothing_and_works_as_decorator():
    x = leaf([1.0])
    with tm.no_grad():
        y = x * 2.0
    assert not y.requires_grad

    @tm.no_grad()
    def double(t):
        return t * 2.0

    assert not double(x).requires_grad
    assert (x * 2.0).requires_grad  # restored afterwards


def test_grad_outputs_weight_non_scalar_outputs():
    x = leaf([1.0, 2.0, 3.0])
    v = np.array([1.0, 0.0, -1.0])
    g = tm.grad(x * x, x, grad_outputs=tm.tensor(v))
    np.testing.assert_allclose(g.data, 2 * np.array([1.0, 2.0, 3.0]) * v)


def test_backward_weights_a_non_scalar_output_by_grad_output():
    x = leaf([1.0, 2.0, 3.0])
    (x * x).backward(tm.tensor(np.array([1.0, 0.5, -1.0])))
    np.testing.assert_allclose(x.grad.data, [2.0, 2.0, -6.0])


def test_backward_with_create_graph_leaves_differentiable_gradients():
    x = leaf(2.0)
    (x ** 3).backward(create_graph=True)
    assert x.grad.requires_grad
    assert tm.grad(x.grad, x).item() == pytest.approx(12.0)  # d(3x^2)/dx


@pytest.mark.parametrize("create_graph", [False, True])
def test_backward_with_retain_graph_can_run_again(create_graph):
    x = leaf([1.0, 2.0])
    y = tm.sum(x * x)
    y.backward(retain_graph=True, create_graph=create_graph)
    y.backward()
    np.testing.assert_allclose(x.grad.data, [4.0, 8.0])


# --- errors a user can reach -----------------------------------------------
@pytest.mark.parametrize("name, call", [("grad", lambda y, x: tm.grad(y, x)), ("backward", lambda y, x: y.backward())])
def test_non_scalar_output_without_grad_outputs_is_an_error(name, call):
    x = leaf([1.0, 2.0])
    with pytest.raises(ValueError, match=rf"^{name}: outputs\[0\] has shape \(2,\); gradients can be implied only "
                                         "for scalar outputs, pass grad_outputs of that shape$"):
        call(x * 2.0, x)


def test_grad_outputs_of_wrong_shape_is_an_error():
    x = leaf([1.0, 2.0])
    with pytest.raises(ValueError, match=r"grad_outputs\[0\] has shape \(3,\) but outputs\[0\] has shape \(2,\)"):
        tm.grad(x * 2.0, x, grad_outputs=tm.tensor(np.ones(3)))


def test_unused_input_is_an_error_unless_allowed():
    x, unused = leaf([1.0]), leaf([2.0])
    with pytest.raises(ValueError, match=r"inputs\[1\].*not used.*allow_unused=True"):
        tm.grad(tm.sum(x * x), [x, unused])
    gx, gu = tm.grad(tm.sum(x * x), [x, unused], allow_unused=True)
    assert gu is None and gx.item() == pytest.approx(2.0)


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="only floating-point tensors can require grad.*int64"):
        tm.tensor(np.array([1, 2]), requires_grad=True)
    with pytest.raises(TypeError, match="int"):
        tm.tensor(np.array([1, 2])).requires_grad_()


def test_output_that_does_not_require_grad_is_an_error():
    x = leaf([1.0])
    with tm.no_grad():
        y = tm.sum(x * 2.0)
    with pytest.raises(ValueError, match=r"^grad: outputs\[0\] does not require grad: nothing it was computed from "
                                         r"requires grad \(or it was computed under no_grad\(\)\)$"):
        tm.grad(y, x)


def test_in_place_change_of_saved_tensor_makes_backward_raise():
    w = leaf([1.0, 2.0])
    loss = tm.sum(w * w)
    with tm.no_grad():
        w.copy_(w * 0.5)
    with pytest.raises(RuntimeError, match=r"mul: input \d \(shape \(2,\)\) was modified in place after it was "
                                           "used; its backward would use the new values. Update it only after "
                                           "the backward pass, or use a copy$"):
        loss.backward()


def test_a_tensor_edited_before_it_was_used_is_not_a_conflict():
    """Only edits after a node was recorded make its backward stale, even when other
    tensors are edited later (the global edit count moves on)."""
    w, other = leaf([1.0, 2.0]), leaf([0.0])
    with tm.no_grad():
        w.copy_(np.array([3.0, 4.0]))
    loss = tm.sum(w * w)
    with tm.no_grad():
        other.copy_(np.array([1.0]))
    loss.backward()
    np.testing.assert_allclose(w.grad.data, [6.0, 8.0])


def test_in_place_update_of_grad_requiring_tensor_needs_no_grad():
    w = leaf([1.0])
    with pytest.raises(RuntimeError, match="no_grad"):
        w.copy_(w * 2.0)


# --- several outputs, repeated outputs, and ops that get their backward wrong -------
def test_grad_of_several_outputs_sums_their_gradients():
    x = leaf([1.0, 2.0])
    g = tm.grad([tm.sum(x * x), tm.sum(x * 3.0)], x)
    np.testing.assert_allclose(g.data, [5.0, 7.0])


def test_an_output_listed_twice_counts_twice():
    x = leaf([1.0, 2.0])
    y = tm.sum(x * x)
    np.testing.assert_allclose(tm.grad([y, y], x).data, [4.0, 8.0])


def test_grad_output_of_a_scalar_may_be_a_number_in_the_output_dtype():
    x = leaf(3.0)
    assert tm.grad(x * x, x, grad_outputs=2.0).item() == pytest.approx(12.0)


def test_grad_outputs_may_be_a_plain_array():
    x = leaf([1.0, 2.0])
    np.testing.assert_allclose(tm.grad(x * x, x, grad_outputs=np.array([1.0, -1.0])).data, [2.0, -4.0])


def _custom(name, forward, backward):
    """A user-defined primitive: tinymeta.function.Function with the given forward and backward."""
    from tinymeta.function import Function
    return type(name, (Function,), {"forward": lambda self, *a: forward(*a),
                                    "backward": lambda self, g: backward(self, g)})


def test_a_backward_may_return_none_for_an_input_and_gradients_for_constants():
    """None means no gradient flows there; a gradient returned for a constant is dropped."""
    first_twice = _custom("FirstTwice", lambda a, b: 2 * a, lambda node, g: (g * 2.0, None))
    both = _custom("Both", lambda a, b: a + b, lambda node, g: (g, g))
    x, y, c = leaf([1.0]), leaf([2.0]), tm.tensor(np.array([3.0]))
    gx, gy = tm.grad(tm.sum(first_twice.apply(x, y)), [x, y], allow_unused=True)
    assert gx.item() == 2.0 and gy is None
    tm.sum(both.apply(x, c)).backward()
    assert x.grad.item() == 1.0 and c.grad is None


def test_a_backward_of_the_wrong_shape_names_the_op():
    bad = _custom("BadOp", lambda a: a * 2, lambda node, g: (tm.tensor(np.ones(3)),))
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"^badop\.backward returned a gradient of shape \(3,\) for an input of "
                                           r"shape \(2,\) \(a bug in that op\)$"):
        tm.grad(tm.sum(bad.apply(x)), x)


@pytest.mark.parametrize("call, error, message", [
    (lambda x: tm.grad(tm.sum(x), [x, 3.0]), TypeError, r"grad: inputs\[1\] is a float, expected a Tensor"),
    (lambda x: tm.grad(tm.sum(x), [tm.tensor(np.ones(2))]), ValueError,
     r"grad: inputs\[0\] \(shape \(2,\)\) does not require grad; create it with requires_grad=True"),
    (lambda x: tm.grad(tm.sum(x), [x, leaf([1.0])]), ValueError,
     r"grad: inputs\[1\] \(shape \(1,\)\) was not used to compute the outputs; pass allow_unused=True to get None for it"),
    (lambda x: tm.grad([tm.sum(x)], x, grad_outputs=[None, None]), ValueError, "grad: got 2 grad_outputs for 1 outputs"),
    (lambda x: tm.grad([tm.sum(x), 2.0], x), TypeError, r"grad: outputs\[1\] is a float, expected a Tensor")])
def test_bad_arguments_to_grad_are_named(call, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        call(leaf([1.0, 2.0]))
