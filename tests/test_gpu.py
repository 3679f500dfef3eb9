"""The same ops, nets and meta-gradients on the GPU as on the CPU (skipped where no GPU answers).

Reuses the op table of test_ops.py: every op's GPU forward equals its CPU
forward, and its derivatives pass the float64 second-order check with the op
running on the GPU (inputs moved there and results back by the differentiable
`to`, so the finite differences are taken on the CPU side).
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinymeta as tm
from tinymeta import backend, nn
from tinymeta.meta import MAML
from tinymeta.nn.functional import cross_entropy
from test_ops import CASES, _draw
from test_omniglot_net import few_shot_task

pytestmark = pytest.mark.skipif(not backend.cuda_available(), reason=f"no GPU: {backend.cuda_status()[1]}")


def on_gpu(op):
    return lambda *ts, **params: op(*[t.to("cuda") for t in ts], **params).to("cpu")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@settings(max_examples=5)
@given(data=st.data())
def test_gpu_forward_equals_cpu(case, data):
    arrays, params = _draw(case, data)
    for dtype, rtol in ((np.float32, 1e-5), (np.float64, 1e-12)):
        xs = [tm.tensor(x.astype(dtype)) for x in arrays]
        cpu = case.op(*xs, **params)
        gpu = on_gpu(case.op)(*xs, **params)
        np.testing.assert_allclose(gpu.data, cpu.data, rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@settings(max_examples=3)
@given(data=st.data())
def test_gpu_gradients_first_and_second_order(case, data):
    arrays, params = _draw(case, data)
    tm.check_grads(lambda *ts: on_gpu(case.op)(*ts, **params), *arrays, order=case.order)


@pytest.mark.parametrize("downsample", ["stride", "maxpool"])
def test_omniglot_meta_gradient_is_the_same_on_gpu_and_cpu(downsample):
    rng = np.random.default_rng(0)
    size = 28
    model = nn.omniglot_cnn(5, rng, channels=16, downsample=downsample, dtype=np.float64)
    tasks = [few_shot_task(rng, size=size, query=3) for _ in range(4)]
    _, cpu = MAML(model, 0.4, 1, loss_fn=cross_entropy).meta_gradients(tasks)
    model.to("cuda")
    _, gpu = MAML(model, 0.4, 1, loss_fn=cross_entropy).meta_gradients(tasks)
    for name in cpu:
        np.testing.assert_allclose(gpu[name].numpy(), cpu[name].data, rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_detect_anomaly_checks_gpu_arrays_forward_and_backward():
    with tm.detect_anomaly(), pytest.raises(FloatingPointError, match=r"^log: 1 of its 2 output values"):
        tm.tensor(np.array([-1.0, 2.0]), device="cuda").log()
    x = tm.tensor(np.array([0.0, 1.0]), device="cuda", requires_grad=True)
    with tm.detect_anomaly(), pytest.raises(FloatingPointError, match="in the backward of sqrt"):
        tm.grad(x.sqrt().sum(), [x])
