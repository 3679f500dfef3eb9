"""nn.functional: layers and losses against numpy, and their derivatives to second order."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinymeta as tm
from tinymeta.kernels import reference
from tinymeta.nn import functional as F


def rng_from(seed):
    return np.random.default_rng(seed)


@given(seed=st.integers(0, 10**6), n=st.integers(1, 4), d_in=st.integers(1, 4), d_out=st.integers(1, 4),
       bias=st.booleans())
def test_linear_matches_numpy_and_gradchecks(seed, n, d_in, d_out, bias):
    rng = rng_from(seed)
    x, w, b = rng.standard_normal((n, d_in)), rng.standard_normal((d_in, d_out)), rng.standard_normal(d_out)
    out = F.linear(tm.tensor(x), tm.tensor(w), tm.tensor(b) if bias else None)
    np.testing.assert_allclose(out.data, x @ w + (b if bias else 0), rtol=1e-12)
    if bias:
        tm.check_grads(F.linear, x, w, b, order=2)
    else:
        tm.check_grads(F.linear, x, w, order=2)


def test_linear_with_a_task_axis_runs_one_network_per_task():
    rng = rng_from(0)
    x, w, b = rng.standard_normal((3, 5, 2)), rng.standard_normal((3, 2, 4)), rng.standard_normal((3, 4))
    out = F.linear(tm.tensor(x), tm.tensor(w), tm.tensor(b))
    for t in range(3):
        np.testing.assert_allclose(out.data[t], x[t] @ w[t] + b[t], rtol=1e-12)
    tm.check_grads(F.linear, x, w, b, order=2)


def test_linear_feature_mismatch_names_the_shapes():
    with pytest.raises(ValueError, match=r"linear: input of shape \(2, 3\) has 3 features but weight of shape \(4, 5\) expects 4"):
        F.linear(tm.tensor(np.ones((2, 3))), tm.tensor(np.ones((4, 5))))


conv_params = st.fixed_dictionaries({
    "seed": st.integers(0, 10**6), "n": st.integers(1, 2), "c_in": st.integers(1, 3), "c_out": st.integers(1, 3),
    "h": st.integers(1, 6), "w": st.integers(1, 6), "k": st.integers(1, 3), "stride": st.integers(1, 3),
    "padding": st.integers(0, 2)})


@given(p=conv_params)
def test_conv2d_gradchecks_to_second_order(p):
    if p["k"] > min(p["h"], p["w"]) + 2 * p["padding"]:
        p["k"] = min(p["h"], p["w"]) + 2 * p["padding"]
    rng = rng_from(p["seed"])
    x = rng.standard_normal((p["n"], p["c_in"], p["h"], p["w"]))
    w = rng.standard_normal((p["c_out"], p["c_in"], p["k"], p["k"]))
    b = rng.standard_normal(p["c_out"])
    out = F.conv2d(tm.tensor(x), tm.tensor(w), tm.tensor(b), p["stride"], p["padding"])
    expected = reference.conv2d_forward(x, w, p["stride"], p["padding"]) + b[None, :, None, None]
    np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-12)
    tm.check_grads(lambda x_, w_, b_: F.conv2d(x_, w_, b_, p["stride"], p["padding"]), x, w, b, order=2)


def test_conv2d_third_order_through_grad_primitives():
    rng = rng_from(1)
    x, w = rng.standard_normal((1, 2, 4, 4)), rng.standard_normal((2, 2, 3, 3))
    tm.check_grads(lambda x_, w_: tm.sum(tm.tanh(F.conv2d(x_, w_, stride=2, padding=1))), x, w, order=3)


@given(seed=st.integers(0, 10**6), n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(2, 7),
       w=st.integers(2, 7), k=st.integers(1, 3), stride=st.integers(1, 3))
def test_max_pool2d_matches_numpy_and_gradchecks(seed, n, c, h, w, k, stride):
    k = min(k, h, w)
    rng = rng_from(seed)
    size = n * c * h * w
    x = (rng.permutation(size) * 0.1 + rng.uniform(0, 0.01, size)).reshape(n, c, h, w)  # no ties
    out = F.max_pool2d(tm.tensor(x), k, stride)
    np.testing.assert_array_equal(out.data, reference.max_pool2d_forward(x, k, stride)[0])
    tm.check_grads(lambda t: F.max_pool2d(t, k, stride), x, order=2)


def test_max_pool_second_order_flows_through_its_backward():
    rng = rng_from(2)
    x = (rng.permutation(32) * 0.1).reshape(1, 2, 4, 4)
    tm.check_grads(lambda t: tm.sum(F.max_pool2d(t * t, 2) ** 3), x, order=3)


@pytest.mark.parametrize("shape", [(5, 3), (4, 2, 3, 3)])
def test_batch_norm_training_matches_numpy_and_gradchecks(shape):
    rng = rng_from(3)
    x = rng.standard_normal(shape) * 2 + 1
    weight, bias = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    bshape = (1, -1) + (1,) * (len(shape) - 2)
    expected = ((x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + 1e-5)
                * weight.reshape(bshape) + bias.reshape(bshape))
    out = F.batch_norm(tm.tensor(x), tm.tensor(weight), tm.tensor(bias))
    np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-12)
    tm.check_grads(lambda x_, w_, b_: F.batch_norm(x_, w_, b_), x, weight, bias, order=2)


def test_batch_norm_running_statistics_and_evaluation_mode():
    rng = rng_from(4)
    x = rng.standard_normal((6, 2, 3, 3)) * 3 + 2
    mean, var = np.zeros(2), np.ones(2)
    F.batch_norm(tm.tensor(x), None, None, mean, var, training=True, momentum=0.5)
    n = 6 * 9
    np.testing.assert_allclose(mean, 0.5 * x.mean((0, 2, 3)))
    np.testing.assert_allclose(var, 0.5 + 0.5 * x.var((0, 2, 3)) * n / (n - 1))
    out = F.batch_norm(tm.tensor(x), None, None, mean, var, training=False)
    np.testing.assert_allclose(out.data, (x - mean.reshape(1, 2, 1, 1)) / np.sqrt(var.reshape(1, 2, 1, 1) + 1e-5))


def test_batch_norm_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match=r"batch_norm: weight of shape \(3,\) does not match 2 channels"):
        F.batch_norm(tm.tensor(np.ones((4, 2))), tm.tensor(np.ones(3)), tm.tensor(np.ones(3)))


@given(seed=st.integers(0, 10**6), n=st.integers(1, 5), classes=st.integers(2, 5))
def test_cross_entropy_matches_numpy_and_gradchecks(seed, n, classes):
    rng = rng_from(seed)
    logits, labels = rng.standard_normal((n, classes)) * 3, rng.integers(0, classes, n)
    shifted = logits - logits.max(1, keepdims=True)
    expected = -np.mean(shifted[np.arange(n), labels] - np.log(np.exp(shifted).sum(1)))
    assert F.cross_entropy(tm.tensor(logits), labels).item() == pytest.approx(expected, rel=1e-12)
    tm.check_grads(lambda t: F.cross_entropy(t, labels), logits, order=2)


def test_cross_entropy_is_stable_for_huge_logits():
    loss = F.cross_entropy(tm.tensor(np.array([[1e4, 0.0], [0.0, 1e4]])), np.array([0, 0]))
    assert loss.item() == pytest.approx(5e3)


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 3]), r"labels must lie in \[0, 2\], got values from 0 to 3"),
    (np.array([-1, 0]), r"labels must lie in \[0, 2\]"),
    (np.array([0.0, 1.0]), "labels must be integers"),
    (np.array([0]), r"logits of shape \(2, 3\) need labels of shape \(2,\), got \(1,\)")])
def test_cross_entropy_rejects_bad_labels(labels, message):
    with pytest.raises((ValueError, TypeError), match=message):
        F.cross_entropy(tm.tensor(np.zeros((2, 3))), labels)


def test_mse_loss_and_accuracy():
    rng = rng_from(5)
    p, t = rng.standard_normal((4, 1)), rng.standard_normal((4, 1))
    assert F.mse_loss(tm.tensor(p), tm.tensor(t)).item() == pytest.approx(np.mean((p - t) ** 2))
    tm.check_grads(lambda a: F.mse_loss(a, tm.tensor(t)), p, order=2)
    with pytest.raises(ValueError, match=r"mse_loss: prediction of shape \(4, 1\) and target of shape \(4,\)"):
        F.mse_loss(tm.tensor(p), tm.tensor(t.ravel()))
    logits = tm.tensor(np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]]))
    assert F.accuracy(logits, np.array([0, 1, 1])) == pytest.approx(2 / 3)


@pytest.mark.parametrize("x_shape, w_shape, kwargs, message", [
    ((1, 3, 5, 5), (2, 2, 3, 3), {}, "input has 3 channels but weight .* expects 2"),
    ((3, 5, 5), (2, 3, 3, 3), {}, "expected NCHW input and OIHW weight"),
    ((1, 1, 2, 2), (1, 1, 5, 5), {"padding": 1}, "kernel 5x5 is larger than the padded input 4x4"),
    ((1, 1, 5, 5), (1, 1, 3, 3), {"stride": 0}, r"stride \(0\) must be positive")])
def test_conv2d_rejects_bad_shapes(x_shape, w_shape, kwargs, message):
    with pytest.raises(ValueError, match=message):
        F.conv2d(tm.tensor(np.ones(x_shape)), tm.tensor(np.ones(w_shape)), **kwargs)


def test_max_pool_window_larger_than_image_is_an_error():
    with pytest.raises(ValueError, match="window 3x3 is larger than the input's 2x2 image"):
        F.max_pool2d(tm.tensor(np.ones((1, 1, 2, 2))), 3)


def test_conv2d_defaults_and_bias_check():
    rng = rng_from(6)
    x, w, b = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 3, 2)), rng.standard_normal(2)
    expected = reference.conv2d_forward(x, w, 1, 0) + b[None, :, None, None]
    np.testing.assert_allclose(F.conv2d(tm.tensor(x), tm.tensor(w), tm.tensor(b)).data, expected, rtol=1e-12)
    with pytest.raises(ValueError, match=r"^conv2d: bias of shape \(3,\) does not match weight \(2, 3, 3, 2\); "
                                         r"expected \(2,\)$"):
        F.conv2d(tm.tensor(x), tm.tensor(w), tm.tensor(np.ones(3)))


def test_batch_norm_running_statistics_move_by_the_default_momentum():
    """From non-zero running statistics, with a batch of two (unbiased variance doubles)."""
    x = np.array([[1.0, -2.0], [3.0, 4.0]])
    mean, var = np.array([1.0, 1.0]), np.array([2.0, 2.0])
    F.batch_norm(tm.tensor(x), None, None, mean, var)
    np.testing.assert_allclose(mean, 0.9 * 1.0 + 0.1 * x.mean(0))
    np.testing.assert_allclose(var, 0.9 * 2.0 + 0.1 * x.var(0) * 2)


@pytest.mark.parametrize("call, message", [
    (lambda: F.batch_norm(tm.tensor(np.ones(3)), None, None),
     r"batch_norm: expected \(N, C\) or \(N, C, H, W\) input, or either with a leading task axis, got shape \(3,\)"),
    (lambda: F.batch_norm(tm.tensor(np.ones((4, 2))), None, tm.tensor(np.ones(3))),
     r"batch_norm: bias of shape \(3,\) does not match 2 channels of input \(4, 2\); expected \(2,\)"),
    (lambda: F.batch_norm(tm.tensor(np.ones((1, 3))), None, None),
     r"batch_norm: input \(1, 3\) has one value per channel; batch statistics need more than one"),
    (lambda: F.batch_norm(tm.tensor(np.ones((4, 2))), None, None, training=False),
     "batch_norm: evaluation mode needs running statistics"),
    (lambda: F.cross_entropy(tm.tensor(np.ones(3)), np.array([0])),
     r"cross_entropy: logits must be \(n, classes\), got shape \(3,\)")])
def test_batch_norm_and_cross_entropy_errors(call, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        call()


def test_losses_and_accuracy_take_labels_as_tensors_lists_and_with_a_task_axis():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    expected = F.cross_entropy(tm.tensor(logits), np.array([0, 2])).item()
    assert F.cross_entropy(tm.tensor(logits), tm.tensor(np.array([0, 2]))).item() == pytest.approx(expected)
    assert F.accuracy(tm.tensor(logits), [0, 2]) == 0.5
    assert F.accuracy(tm.tensor(logits), tm.tensor(np.array([0, 1]))) == 1.0
    per_task = np.stack([logits, logits[::-1]])  # (tasks, n, classes)
    assert F.accuracy(tm.tensor(per_task), np.array([[0, 1], [1, 1]])) == 0.75


def test_linear_names_the_feature_axis_of_a_task_batch():
    with pytest.raises(ValueError, match=r"^linear: input of shape \(2, 5, 3\) has 3 features but weight of shape "
                                         r"\(4, 2\) expects 4$"):
        F.linear(tm.tensor(np.ones((2, 5, 3))), tm.tensor(np.ones((4, 2))))


def test_mse_loss_converts_array_targets_to_the_prediction_dtype():
    prediction = tm.tensor(np.array([[0.5], [1.5]], dtype=np.float32), requires_grad=True)
    loss = F.mse_loss(prediction, np.array([[1.0], [1.0]]))
    assert loss.dtype == np.float32 and loss.item() == pytest.approx(0.25)
