"""nn.functional with a leading task axis: each layer on stacked tasks with per-task
parameters equals the same layer run task by task, and differentiates to second order."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinymeta as tm
from tinymeta import nn
from tinymeta.nn import functional as F


def per_task(fn, *arrays):
    """fn applied to task t's slice of every array, stacked back along the task axis."""
    return np.stack([fn(*(tm.tensor(a[t]) for a in arrays)).data for t in range(len(arrays[0]))])


conv_cases = st.fixed_dictionaries({
    "seed": st.integers(0, 10**6), "tasks": st.integers(1, 3), "n": st.integers(1, 2), "c_in": st.integers(1, 3),
    "c_out": st.integers(1, 3), "h": st.integers(2, 6), "w": st.integers(2, 6), "k": st.integers(1, 3),
    "stride": st.integers(1, 3), "padding": st.integers(0, 1)})


@given(p=conv_cases)
def test_conv2d_with_a_task_axis_convolves_each_task_with_its_own_weight(p):
    rng = np.random.default_rng(p["seed"])
    k = min(p["k"], p["h"] + 2 * p["padding"], p["w"] + 2 * p["padding"])
    x = rng.standard_normal((p["tasks"], p["n"], p["c_in"], p["h"], p["w"]))
    w = rng.standard_normal((p["tasks"], p["c_out"], p["c_in"], k, k))
    b = rng.standard_normal((p["tasks"], p["c_out"]))

    def conv(x_, w_, b_):
        return F.conv2d(x_, w_, b_, p["stride"], p["padding"])

    np.testing.assert_allclose(conv(tm.tensor(x), tm.tensor(w), tm.tensor(b)).data, per_task(conv, x, w, b),
                               rtol=1e-12, atol=1e-12)
    tm.check_grads(conv, x, w, b, order=2)


@given(seed=st.integers(0, 10**6), tasks=st.integers(1, 3), n=st.integers(2, 3), c=st.integers(1, 3),
       image=st.booleans())
def test_batch_norm_with_a_task_axis_uses_each_tasks_own_statistics(seed, tasks, n, c, image):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((tasks, n, c, 3, 2) if image else (tasks, n, c))
    weight, bias = rng.standard_normal((tasks, c)), rng.standard_normal((tasks, c))
    np.testing.assert_allclose(F.batch_norm(tm.tensor(x), tm.tensor(weight), tm.tensor(bias)).data,
                               per_task(F.batch_norm, x, weight, bias), rtol=1e-12, atol=1e-12)
    tm.check_grads(F.batch_norm, x, weight, bias, order=2)


def test_batch_norm_with_a_task_axis_moves_running_statistics_to_the_mean_over_tasks():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 3, 2, 2))
    running_mean, running_var = np.zeros(3), np.ones(3)
    F.batch_norm(tm.tensor(x), tm.tensor(np.ones((2, 3))), tm.tensor(np.zeros((2, 3))), running_mean, running_var,
                 momentum=1.0)
    np.testing.assert_allclose(running_mean, x.mean(axis=(1, 3, 4)).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(running_var, x.var(axis=(1, 3, 4), ddof=1).mean(axis=0), rtol=1e-12)


@given(seed=st.integers(0, 10**6), tasks=st.integers(1, 3), n=st.integers(1, 4), classes=st.integers(2, 4))
def test_cross_entropy_over_a_task_axis_is_the_mean_of_the_per_task_losses(seed, tasks, n, classes):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((tasks, n, classes))
    labels = rng.integers(0, classes, (tasks, n))
    expected = np.mean([F.cross_entropy(tm.tensor(logits[t]), labels[t]).item() for t in range(tasks)])
    assert F.cross_entropy(tm.tensor(logits), labels).item() == pytest.approx(expected, rel=1e-12)
    tm.check_grads(lambda z: F.cross_entropy(z, labels), logits, order=2)


def test_max_pool_and_flatten_keep_the_task_axis():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 6, 6))
    pooled = F.max_pool2d(tm.tensor(x), 2)
    np.testing.assert_array_equal(pooled.data, per_task(lambda a: F.max_pool2d(a, 2), x))
    assert F.flatten(pooled, start_dim=-3).shape == (2, 3, 4 * 3 * 3)
    assert F.flatten(tm.tensor(x[0])).shape == (3, 4 * 6 * 6)
    tm.check_grads(lambda a: F.max_pool2d(a, 2), x, order=2)


@pytest.mark.parametrize("downsample", ["stride", "maxpool"])
def test_omniglot_cnn_with_per_task_parameters_is_one_network_per_task(downsample):
    rng = np.random.default_rng(0)
    model = nn.omniglot_cnn(3, rng, channels=4, downsample=downsample, image_size=16, dtype=np.float64)
    x = rng.standard_normal((2, 5, 1, 16, 16))
    params = {name: tm.tensor(np.stack([p.data, p.data + 0.1 * rng.standard_normal(p.shape)]))
              for name, p in model.parameters_dict().items()}
    out = model(tm.tensor(x), params=params)
    for t in range(2):
        alone = model(tm.tensor(x[t]), params={name: tm.tensor(p.data[t]) for name, p in params.items()})
        np.testing.assert_allclose(out.data[t], alone.data, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda: F.conv2d(tm.tensor(np.ones((2, 1, 1, 4, 4))), tm.tensor(np.ones((3, 2, 1, 3, 3)))),
     r"conv2d: expected NCHW input and OIHW weight .* got shapes \(2, 1, 1, 4, 4\) and \(3, 2, 1, 3, 3\)"),
    (lambda: F.conv2d(tm.tensor(np.ones((2, 1, 1, 4, 4))), tm.tensor(np.ones((2, 2, 1, 3, 3))),
                      tm.tensor(np.ones(2))),
     r"conv2d: bias of shape \(2,\) does not match weight \(2, 2, 1, 3, 3\); expected \(2, 2\)"),
    (lambda: F.batch_norm(tm.tensor(np.ones((2, 3, 4))), tm.tensor(np.ones(4)), None),
     r"batch_norm: weight of shape \(4,\) does not match 4 channels of input \(2, 3, 4\); expected \(2, 4\)"),
    (lambda: F.cross_entropy(tm.tensor(np.ones((2, 3, 4))), np.zeros(3, int)),
     r"cross_entropy: logits of shape \(2, 3, 4\) need labels of shape \(2, 3\), got \(3,\)"),
    (lambda: nn.Conv2d(1, 2, 3, np.random.default_rng(0))(tm.tensor(np.ones((2, 1, 1, 5, 5), np.float32))),
     r"Conv2d\(1, 2\): expected input \(N, 1, H, W\), or \(T, N, 1, H, W\) with per-task parameters"),
])
def test_task_axis_mismatches_name_the_shapes(call, message):
    with pytest.raises(ValueError, match=message):
        call()
