"""Devices: everything runs on "cpu" here; "cuda" is refused with the reason where no GPU answers."""
import numpy as np
import pytest

import tinymeta as tm
from tinymeta import backend, nn

NO_GPU = not backend.cuda_available()


def test_tensors_and_modules_live_on_the_cpu_by_default():
    t = tm.tensor([1.0, 2.0])
    assert t.device == "cpu" and t.to("cpu") is t
    model = nn.sine_mlp(np.random.default_rng(0))
    assert model.device == "cpu" and model.to("cpu") is model


def test_unknown_device_is_named():
    with pytest.raises(ValueError, match="unknown device 'tpu'; expected one of"):
        tm.tensor([1.0], device="tpu")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        tm.zeros(3, device="gpu")


@pytest.mark.skipif(not NO_GPU, reason="a GPU is available here")
def test_cuda_without_a_gpu_says_why():
    reason = backend.cuda_status()[1]
    assert reason
    with pytest.raises(RuntimeError, match="device 'cuda' is not available: " + reason[:20].replace("(", r"\(")):
        tm.tensor([1.0], device="cuda")
    with pytest.raises(RuntimeError, match="not available"):
        nn.sine_mlp(np.random.default_rng(0)).to("cuda")


@pytest.mark.skipif(NO_GPU, reason=f"no GPU: {backend.cuda_status()[1]}")
def test_moving_to_the_gpu_and_back_is_differentiable():
    x = tm.tensor(np.array([1.0, -2.0]), requires_grad=True)
    y = tm.sum(x.to("cuda") ** 2).to("cpu")
    (g,) = tm.grad(y, [x])
    np.testing.assert_allclose(g.data, [2.0, -4.0])


@pytest.mark.skipif(NO_GPU, reason=f"no GPU: {backend.cuda_status()[1]}")
def test_mixing_devices_is_an_error_naming_both():
    with pytest.raises(ValueError, match=r"add: operands are on different devices \(cpu and cuda\)"):
        tm.tensor([1.0]) + tm.tensor([1.0], device="cuda")
