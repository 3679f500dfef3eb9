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
