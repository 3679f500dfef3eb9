"""The standard layers, each a Module around one function of nn.functional."""
import math

import numpy as np

from . import functional as F
from . import init
from .module import Module


def _check_sizes(layer, minimum=1, **sizes):
    """Sizes of a layer must be integers >= minimum; a ValueError names the layer and the size."""
    for name, value in sizes.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{layer}: {name} must be an integer >= {minimum}, got {value!r}")


class Linear(Module):
    """y = x W + b with W of shape (in_features, out_features).

    Initialised as PyTorch's Linear is: W and b uniform in +-1/sqrt(in_features).
    """

    def __init__(self, in_features, out_features, rng, bias=True, dtype=np.float32):
        super().__init__()
        _check_sizes("Linear", in_features=in_features, out_features=out_features)
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.add_parameter("weight", init.uniform((in_features, out_features), rng, bound, dtype))
        if bias:
            self.add_parameter("bias", init.uniform((out_features,), rng, bound, dtype))

    def forward(self, x, params, prefix):
        return F.linear(x, params[prefix + "weight"], params.get(prefix + "bias"))

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={'bias' in self._parameters}"


class Conv2d(Module):
    """2-D convolution, weight (out, in, k, k).

    Initialised as PyTorch's Conv2d is: W and b uniform in +-1/sqrt(in * k * k).
    """

    def __init__(self, in_channels, out_channels, kernel_size, rng, stride=1, padding=0, bias=True,
                 dtype=np.float32):
        super().__init__()
        _check_sizes("Conv2d", in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
                     stride=stride)
        _check_sizes("Conv2d", minimum=0, padding=padding)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        bound = 1.0 / math.sqrt(init.fans(shape, "conv")[0])
        self.add_parameter("weight", init.uniform(shape, rng, bound, dtype))
        if bias:
            self.add_parameter("bias", init.uniform((out_channels,), rng, bound, dtype))

    def forward(self, x, params, prefix):
        weight = params[prefix + "weight"]
        if x.ndim != weight.ndim or x.shape[-3] != self.in_channels:
            raise ValueError(f"Conv2d({self.in_channels}, {self.out_channels}): expected input "
                             f"(N, {self.in_channels}, H, W), or (T, N, {self.in_channels}, H, W) with per-task "
                             f"parameters, got input {x.shape} and weight {weight.shape}")
        return F.conv2d(x, weight, params.get(prefix + "bias"), self.stride, self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class _BatchNorm(Module):
    """Batch norm over channels with learnable scale and shift.

    By default it uses the statistics of the batch it sees, in training and in
    evaluation alike, as MAML does. With track_running_stats=True it also keeps
    running statistics, and `eval()` switches to them.
    """
    expected_ndim = None

    def __init__(self, num_features, momentum=0.1, eps=1e-5, track_running_stats=False, dtype=np.float32):
        super().__init__()
        _check_sizes(type(self).__name__, num_features=num_features)
        if not (0 <= momentum <= 1 and eps > 0):
            raise ValueError(f"{type(self).__name__}: momentum must lie in [0, 1] and eps be positive, "
                             f"got momentum={momentum!r}, eps={eps!r}")
        self.num_features, self.momentum, self.eps = num_features, momentum, eps
        self.add_parameter("weight", init.ones(num_features, dtype))
        self.add_parameter("bias", init.zeros(num_features, dtype))
        self.training = True
        self._buffers = {}
        if track_running_stats:
            self._buffers = {"running_mean": np.zeros(num_features, dtype),
                             "running_var": np.ones(num_features, dtype)}

    def train(self, mode=True):
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def forward(self, x, params, prefix):
        weight = params[prefix + "weight"]
        tasks = weight.ndim - 1  # 1 with per-task parameters (a task axis leads the input too)
        if x.ndim != self.expected_ndim + tasks or x.shape[1 + tasks] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}): expected input with "
                             f"{self.expected_ndim} axes (one more with per-task parameters) and "
                             f"{self.num_features} channels, got shape {x.shape} and weight {weight.shape}")
        use_batch_stats = self.training or not self._buffers
        return F.batch_norm(x, weight, params[prefix + "bias"],
                            self._buffers.get("running_mean"), self._buffers.get("running_var"),
                            training=use_batch_stats, momentum=self.momentum, eps=self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, track_running_stats={bool(self._buffers)}"


class BatchNorm1d(_BatchNorm):
    """Batch norm for (N, C) inputs."""
    expected_ndim = 2


class BatchNorm2d(_BatchNorm):
    """Batch norm for (N, C, H, W) inputs."""
    expected_ndim = 4


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None):
        super().__init__()
        _check_sizes("MaxPool2d", kernel_size=kernel_size)
        if stride is not None:
            _check_sizes("MaxPool2d", stride=stride)
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x, params, prefix):
        return F.max_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}"


class ReLU(Module):
    def forward(self, x, params, prefix):
        return F.relu(x)


class Tanh(Module):
    def forward(self, x, params, prefix):
        return x.tanh()


class Flatten(Module):
    """Merge the axes from start_dim on (as torch.nn.Flatten); -3 merges (C, H, W) under any leading axes."""

    def __init__(self, start_dim=1):
        super().__init__()
        self.start_dim = start_dim

    def forward(self, x, params, prefix):
        return F.flatten(x, self.start_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}"
