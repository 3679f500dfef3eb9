"""The Tensor type: construction, dtypes, operators, and the errors bad input gets."""
import numpy as np
import pytest

import tinymeta as tm


def test_python_floats_default_to_float32_and_arrays_keep_their_dtype():
    assert tm.tensor([1.0, 2.0]).dtype == np.float32
    assert tm.tensor(np.zeros(2)).dtype == np.float64
    assert tm.tensor([1, 2]).dtype.kind == "i"


def test_tensor_copies_its_data():
    a = np.ones(2)
    t = tm.tensor(a)
    a[0] = 5.0
    assert t.data[0] == 1.0


def test_array_facts_and_conversions():
    t = tm.tensor(np.arange(6.0).reshape(2, 3))
    assert (t.shape, t.ndim, t.size, len(t)) == ((2, 3), 2, 6, 2)
    assert t[1, 2].item() == 5.0
    assert isinstance(t.numpy(), np.ndarray)
    with pytest.raises(ValueError, match=r"item: tensor of shape \(2, 3\) has 6 elements"):
        t.item()


def test_detach_cuts_the_graph():
    x = tm.tensor([1.0], requires_grad=True)
    d = (x * 2.0).detach()
    assert not d.requires_grad and d.is_leaf


def test_scalars_keep_the_tensor_dtype():
    x = tm.tensor(np.ones(2, dtype=np.float32))
    for y in (x * 2.0, 2.0 * x, x + 1, 1 - x, x / 3.0, 3.0 / x, x ** 2, 2.0 ** x, -x):
        assert y.dtype == np.float32


def test_a_number_an_integer_or_bool_tensor_cannot_hold_promotes_the_result():
    """As in PyTorch: never a silent integer 0 from 0.5."""
    i = tm.tensor(np.array([1, 2, 3]))
    for y, expected in ((i * 0.5, [0.5, 1.0, 1.5]), (0.5 * i, [0.5, 1.0, 1.5]), (i + 0.25, [1.25, 2.25, 3.25]),
                        (1.5 - i, [0.5, -0.5, -1.5])):
        assert y.dtype == np.float32
        np.testing.assert_allclose(y.data, expected)
    assert (i * 2).dtype == np.int64 and (i * 2).data.tolist() == [2, 4, 6]
    flags = tm.tensor(np.array([True, False]))
    assert (flags + 2).dtype == np.int64 and (flags + 2).data.tolist() == [3, 2]
    assert (flags * 0.5).data.tolist() == [0.5, 0.0]


def test_numpy_and_float_read_a_tensors_values():
    x = tm.tensor(np.array([[1.5, -2.0]]), requires_grad=True)
    np.testing.assert_array_equal(np.asarray(x), [[1.5, -2.0]])
    assert np.asarray(x).dtype == np.float64 and np.asarray(x, dtype=np.float32).dtype == np.float32
    copied = np.array(x)
    copied[0, 0] = 9.0
    assert x.data[0, 0] == 1.5
    assert float(tm.tensor(np.array([2.5]))) == 2.5
    with pytest.raises(ValueError, match=r"^float: tensor of shape \(1, 2\) has 2 elements, expected exactly one$"):
        float(x)


def test_numpy_scalars_on_the_left_use_tensor_operators():
    x = tm.tensor(np.ones(2))
    y = np.float64(2.0) * x
    assert isinstance(y, tm.Tensor)


@pytest.mark.parametrize("compare", [lambda a, b: a < b, lambda a, b: a <= b, lambda a, b: a > b,
                                     lambda a, b: a >= b, lambda a, b: a == b, lambda a, b: a != b],
                         ids=["<", "<=", ">", ">=", "==", "!="])
def test_comparisons_return_boolean_tensors_without_grad(compare):
    """Each comparison elementwise against numpy, with a tensor, a number and a broadcast row,
    on values that are below, equal to and above the other operand."""
    a = np.array([[1.0, -1.0, 2.0], [0.5, 3.0, -2.0]])
    b = np.array([[1.0, 0.0, 3.0], [0.5, -3.0, -2.0]])
    x = tm.tensor(a, requires_grad=True)
    for other in (tm.tensor(b), 1.0, b[0]):
        mask = compare(x, other)
        assert mask.dtype == np.bool_ and not mask.requires_grad
        plain = other.data if isinstance(other, tm.Tensor) else other
        np.testing.assert_array_equal(mask.data, compare(a, plain))


def test_tensor_dtype_argument_converts_any_data():
    assert tm.tensor([1.5, 2.5], dtype=np.float64).dtype == np.float64
    np.testing.assert_array_equal(tm.tensor([1.7, -2.7], dtype=np.int32).data, np.array([1, -2], np.int32))
    from_array = tm.tensor(np.array([1, 2]), dtype=np.float32)
    assert from_array.dtype == np.float32 and from_array.data.tolist() == [1.0, 2.0]
    from_tensor = tm.tensor(tm.tensor(np.array([0.25])), dtype=np.float32)
    assert from_tensor.dtype == np.float32 and from_tensor.item() == 0.25
    assert tm.tensor(3, dtype=np.float64).dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_integer_operands_take_the_float_operand_dtype(dtype):
    """An integer tensor meeting a float one becomes that float type (the gradient flows
    to the float side only); two integer tensors stay integer."""
    f = tm.tensor(np.array([0.5, -1.5], dtype=dtype), requires_grad=True)
    i = tm.tensor(np.array([3, -2]))
    for y, expected in ((f + i, [3.5, -3.5]), (i * f, [1.5, 3.0]), (i - f, [2.5, -0.5]), (f / i, [0.5 / 3, 0.75])):
        assert y.dtype == dtype
        np.testing.assert_allclose(y.data, expected, rtol=1e-6)
    (g,) = tm.grad(tm.sum(i * f), [f])
    np.testing.assert_array_equal(g.data, [3.0, -2.0])
    both = i * tm.tensor(np.array([2, 5]))
    assert both.dtype.kind == "i" and both.data.tolist() == [6, -10]


def test_random_constructors_need_a_generator_and_are_reproducible():
    a = tm.randn((3,), np.random.default_rng(7))
    b = tm.randn((3,), np.random.default_rng(7))
    np.testing.assert_array_equal(a.data, b.data)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        tm.randn((3,), 7)


def test_constructors_shapes_and_dtypes():
    assert tm.zeros((2, 3)).shape == (2, 3)
    assert tm.ones(4, dtype=np.float64).dtype == np.float64
    assert tm.full((2,), 3.0).data.tolist() == [3.0, 3.0]
    assert tm.rand((2,), np.random.default_rng(0)).data.max() < 1.0


def test_repr_reads_like_pytorch():
    x = tm.tensor(np.array([1.0, 2.0]), requires_grad=True)
    assert repr(x) == "tensor([1., 2.], dtype=float64, requires_grad=True)"
    assert "grad_fn=mul" in repr(x * 2.0).lower()


# --- errors ---------------------------------------------------------------
@pytest.mark.parametrize("op, name", [(lambda a, b: a + b, "add"), (lambda a, b: a * b, "mul"),
                                      (lambda a, b: a / b, "div"), (lambda a, b: tm.maximum(a, b), "maximum")])
def test_binary_shape_mismatch_names_the_op_and_both_shapes(op, name):
    a, b = tm.tensor(np.ones((2, 3))), tm.tensor(np.ones((4,)))
    with pytest.raises(ValueError, match=rf"^{name}: shapes \(2, 3\) and \(4,\) cannot be broadcast together "
                                         r"\(numpy rules: aligned from the right, each axis equal or 1\)$"):
        op(a, b)


def test_subtraction_mismatch_is_reported_too():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4,\)"):
        tm.tensor(np.ones((2, 3))) - tm.tensor(np.ones(4))


def test_matmul_mismatch_names_the_inner_dimensions():
    a, b = tm.tensor(np.ones((2, 3))), tm.tensor(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\) do not align.*\(3\).*\(4\)"):
        a @ b


def test_mixed_float_precision_is_an_error_not_an_upcast():
    with pytest.raises(TypeError, match="add: operands have dtypes float32 and float64"):
        tm.tensor(np.ones(2, np.float32)) + tm.tensor(np.ones(2))


def test_reshape_and_index_errors_name_the_op():
    x = tm.tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"reshape: cannot reshape tensor of shape \(2, 3\) \(6 elements\) into shape \(4,\)"):
        x.reshape(4)
    with pytest.raises(IndexError, match=r"getitem: index .* shape \(2, 3\)"):
        x[5]
    with pytest.raises(ValueError, match="sum: axis 2 is out of range"):
        x.sum(axis=2)


def test_truth_value_of_many_elements_is_ambiguous():
    with pytest.raises(ValueError, match="ambiguous"):
        bool(tm.tensor(np.ones(2)) > 0)


def test_zeros_like_and_ones_like_ignore_the_values():
    t = tm.tensor(np.array([np.nan, np.inf]))
    np.testing.assert_array_equal(tm.zeros_like(t).data, [0.0, 0.0])
    np.testing.assert_array_equal(tm.ones_like(t).data, [1.0, 1.0])


def test_an_operand_of_the_wrong_type_names_the_op():
    with pytest.raises(TypeError, match="add: expected a Tensor, number or array, got str"):
        tm.tensor([1.0]) + "a"



def test_leaves_and_switching_gradients_on():
    x = tm.tensor(np.array([1.0, 2.0]))
    assert x.is_leaf and x.requires_grad_() is x and x.requires_grad
    y = x * 2.0
    assert not y.is_leaf
    with pytest.raises(ValueError, match="requires_grad_: cannot switch off gradients of a non-leaf tensor; use detach"):
        y.requires_grad_(False)
    x.grad = tm.tensor(np.ones(2))
    x.zero_grad()
    assert x.grad is None


def test_copy_needs_the_same_shape_and_one_element_tensors_have_a_truth_value():
    x = tm.tensor(np.zeros(2))
    with pytest.raises(ValueError, match=r"^copy_: value of shape \(3,\) does not match tensor of shape \(2,\)$"):
        x.copy_(np.ones(3))
    assert bool(tm.tensor([0.5]) > 0) and not bool(tm.tensor(np.array([0.0])))
    assert repr(tm.tensor([1.0, 2.0])) == "tensor([1., 2.])"


def test_lists_as_operands_and_integer_tensors_of_two_widths():
    np.testing.assert_allclose((tm.tensor([1.0, 2.0]) + [0.5, 0.25]).data, [1.5, 2.25])
    ints = tm.tensor(np.array([1, 2])) + [3, 4]  # an integer list stays integer
    assert ints.dtype.kind == "i" and ints.data.tolist() == [4, 6]
    both = tm.tensor(np.array([1, 2], np.int32)) + tm.tensor(np.array([3, 4], np.int64))
    assert both.dtype == np.int64 and both.data.tolist() == [4, 6]
