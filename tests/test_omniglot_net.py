"""Second order through a conv net: MAML's meta-gradient of the Omniglot network, checked
against finite differences of the whole function of the initial parameters.

The network is the real architecture made small (8 filters, 12x12 input, float64):
four [3x3 conv, batch norm, ReLU] blocks that halve the image, then linear to 5 classes.
"""
import numpy as np
import pytest

import tinymeta as tm
from tinymeta import nn
from tinymeta.meta import MAML
from tinymeta.nn.functional import cross_entropy
from tinymeta.data import Examples, Task
from tinymeta.nn.functional import max_pool2d, relu


def few_shot_task(rng, way=5, shot=1, query=1, size=12):
    def examples(k):
        return Examples(rng.standard_normal((way * k, 1, size, size)), np.repeat(np.arange(way), k))
    return Task(examples(shot), examples(query))


@pytest.mark.parametrize("downsample", ["stride", "maxpool"])
def test_omniglot_maml_meta_gradient_matches_finite_differences(downsample):
    rng = np.random.default_rng(0)
    model = nn.omniglot_cnn(5, rng, channels=8, downsample=downsample, image_size=16 if downsample == "maxpool" else 12,
                            dtype=np.float64)
    size = 16 if downsample == "maxpool" else 12
    task = few_shot_task(rng, size=size)
    maml = MAML(model, inner_lr=0.4, inner_steps=1, loss_fn=cross_entropy)
    names = [n for n, _ in model.named_parameters()]

    def meta_loss(*params):
        return maml.meta_loss([task], params=dict(zip(names, params)))

    tm.check_grads(meta_loss, *[p.data for p in model.parameters()], order=1, directions=1)


def test_omniglot_network_shapes():
    rng = np.random.default_rng(0)
    x = tm.tensor(rng.standard_normal((4, 1, 28, 28)).astype(np.float32))
    assert nn.omniglot_cnn(5, rng)(x).shape == (4, 5)
    assert nn.omniglot_cnn(5, rng, downsample="maxpool")(x).shape == (4, 5)
    with pytest.raises(ValueError, match="downsample must be 'stride' or 'maxpool'"):
        nn.omniglot_cnn(5, rng, downsample="avgpool")



def test_pooling_then_relu_equals_relu_then_pooling_to_second_order():
    """Windows with ties and all-negative ones: the outputs, the gradient and a second-order term
    (d/ds of <dy/dx, v> for y = pooled(relu(x * s))) agree exactly. (Where a window's maximum is
    exactly 0 the two orders pick different subgradients of the kink; BN outputs are never
    exactly 0 in practice.)"""
    rng = np.random.default_rng(3)
    values = rng.choice([-1.0, -0.5, 0.5, 2.0], size=(2, 3, 4, 6))
    weights, v = rng.standard_normal((2, 3, 2, 3)), rng.standard_normal((2, 3, 4, 6))
    results = []
    for order in (lambda x: relu(max_pool2d(x, 2)), lambda x: max_pool2d(relu(x), 2)):
        x, scale = tm.tensor(values, requires_grad=True), tm.tensor(np.float64(1.5), requires_grad=True)
        y = order(x * scale)
        gx, gs = tm.grad((y * tm.tensor(weights)).sum(), [x, scale], create_graph=True)
        (second,) = tm.grad((gx * tm.tensor(v)).sum(), [scale])
        results.append((y.data, gx.data, gs.data, second.data))
    for ours, papers in zip(*results):
        np.testing.assert_array_equal(ours, papers)
    assert np.any(results[0][1] != 0) and results[0][3] != 0  # the check has something to compare


def test_the_max_pool_net_pools_before_its_relu_and_equals_the_papers_order():
    """omniglot_cnn(downsample="maxpool") is [conv, batch norm, pool, ReLU] blocks; the paper's
    [conv, batch norm, ReLU, pool] (the same layers, so the same parameter names) gives the same
    outputs and the same second-order MAML meta-gradient."""
    rng = np.random.default_rng(2)
    ours = nn.omniglot_cnn(3, rng, channels=4, downsample="maxpool", image_size=16, dtype=np.float64)
    layers = list(ours)
    assert [type(layer).__name__ for layer in layers[:4]] == ["Conv2d", "BatchNorm2d", "MaxPool2d", "ReLU"]
    for block in range(4):
        layers[4 * block + 2], layers[4 * block + 3] = layers[4 * block + 3], layers[4 * block + 2]
    papers = nn.Sequential(*layers)
    assert list(papers.parameters_dict()) == list(ours.parameters_dict())
    task = few_shot_task(rng, way=3, shot=2, query=2, size=16)
    x = tm.tensor(task.query.inputs)
    np.testing.assert_allclose(ours(x).data, papers(x).data, rtol=1e-13, atol=1e-13)
    (our_loss, our_grads), (their_loss, their_grads) = (
        MAML(model, inner_lr=0.4, inner_steps=1, loss_fn=cross_entropy).meta_gradients([task])
        for model in (ours, papers))
    assert our_loss == pytest.approx(their_loss, rel=1e-13)
    for name in our_grads:
        np.testing.assert_allclose(our_grads[name].data, their_grads[name].data, rtol=1e-10, atol=1e-13)
