"""The two networks of the classic few-shot experiments, as the MAML paper builds them."""
import numpy as np

from .layers import BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU
from .module import Sequential


def sine_mlp(rng, hidden=40, dtype=np.float32):
    """1 -> 40 -> 40 -> 1 with ReLU: the sine-regression model."""
    return Sequential(Linear(1, hidden, rng, dtype=dtype), ReLU(), Linear(hidden, hidden, rng, dtype=dtype), ReLU(),
                      Linear(hidden, 1, rng, dtype=dtype))


def omniglot_cnn(n_classes, rng, channels=64, downsample="stride", image_size=28, in_channels=1, dtype=np.float32,
                 track_running_stats=False, bn_momentum=0.1):
    """Four blocks of [3x3 conv, batch norm, ReLU], each halving the image, then a linear layer.

    downsample="stride" halves with stride-2 convolutions (the MAML paper's Omniglot
    code); "maxpool" uses stride-1 convolutions followed by 2x2 max-pooling (its
    MiniImagenet code, and many Omniglot reproductions). There the pooling comes
    before the ReLU: ReLU is monotone, so max(relu(x)) = relu(max(x)) exactly, with
    the same gradients to every order unless a window's maximum is exactly 0 (a
    kink, where the orders take different subgradients), and the ReLU then runs on a
    quarter of the pixels. Batch norm uses the statistics of the
    batch at hand, as MAML does; track_running_stats and bn_momentum are passed to
    every BatchNorm2d.
    """
    if downsample not in ("stride", "maxpool"):
        raise ValueError(f"omniglot_cnn: downsample must be 'stride' or 'maxpool', got {downsample!r}")
    layers, size, c_in = [], image_size, in_channels
    for _ in range(4):
        if downsample == "stride":
            layers += [Conv2d(c_in, channels, 3, rng, stride=2, padding=1, dtype=dtype)]
            size = (size + 1) // 2
        else:
            layers += [Conv2d(c_in, channels, 3, rng, padding=1, dtype=dtype)]
        layers += [BatchNorm2d(channels, momentum=bn_momentum, track_running_stats=track_running_stats,
                               dtype=dtype)]
        if downsample == "maxpool":
            if size < 2:
                raise ValueError(f"omniglot_cnn: a {image_size}x{image_size} image is too small for four 2x2 poolings")
            layers += [MaxPool2d(2)]
            size //= 2
        layers += [ReLU()]
        c_in = channels
    layers += [Flatten(start_dim=-3), Linear(channels * size * size, n_classes, rng, dtype=dtype)]
    return Sequential(*layers)
