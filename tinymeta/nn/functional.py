"""Layers and losses as functions of (inputs, parameters).

Nothing here holds state: every parameter is an argument, which is what lets
MAML run the same network with adapted parameters. Parameters may carry a
leading task axis (one network per task, a whole meta-batch evaluated in one
batched call), and then the inputs carry it too: `linear` with a weight
(T, in, out) maps (T, n, in) to (T, n, out); `conv2d` with a weight
(T, O, C, k, k) maps (T, n, C, H, W) to (T, n, O, H', W'); `batch_norm` with
scale and shift (T, C) normalises each task's batch by its own statistics;
pooling, flatten(start_dim=-3) and the losses take the extra axis as it comes.
"""
import numpy as np

from .. import ops
from ..ops.conv import conv2d as _conv2d
from ..ops.conv import max_pool2d as _max_pool2d
from ..ops.losses import mean_squared_error
from ..ops.normalize import normalize, normalize_affine
from ..backend import to_device
from ..tensor import Tensor

relu = ops.relu
max_pool2d = _max_pool2d


def linear(x, weight, bias=None):
    """y = x W + b, with W of shape (in, out) (or (tasks, in, out)) and b of shape (out,) (or (tasks, out))."""
    if x.shape[-1] != weight.shape[-2]:
        raise ValueError(f"linear: input of shape {x.shape} has {x.shape[-1]} features but weight of "
                         f"shape {weight.shape} expects {weight.shape[-2]}")
    if bias is None:
        return x @ weight
    if bias.shape != weight.shape[:-2] + weight.shape[-1:]:
        raise ValueError(f"linear: bias of shape {bias.shape} does not match weight {weight.shape}; "
                         f"expected {weight.shape[:-2] + weight.shape[-1:]}")
    return ops.linear(x, weight, bias)  # one node; per-task biases broadcast over each task's examples


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """y = conv(x, W) + b: NCHW input, OIHW weight, bias of shape (out_channels,);
    with a task axis, (T, N, C, H, W) input, (T, O, C, k, k) weight and (T, O) bias."""
    y = _conv2d(x, weight, stride, padding)
    if bias is None:
        return y
    if bias.shape != weight.shape[:-3]:
        raise ValueError(f"conv2d: bias of shape {bias.shape} does not match weight {weight.shape}; "
                         f"expected {weight.shape[:-3]}")
    return y + ops.reshape(bias, bias.shape[:-1] + (1, bias.shape[-1], 1, 1))  # over images and pixels


def flatten(x, start_dim=1):
    """Merge the axes from `start_dim` on into one, as numpy's reshape does: (n, c, h, w) -> (n, c*h*w).
    start_dim=-3 merges (C, H, W) whatever leads them, e.g. (T, n, C, H, W) -> (T, n, C*H*W)."""
    start = start_dim % x.ndim
    return ops.reshape(x, x.shape[:start] + (-1,))


def batch_norm(x, weight, bias, running_mean=None, running_var=None, training=True,
               momentum=0.1, eps=1e-5):
    """Normalise each channel and apply a learnable scale and shift:

        y = weight * (x - mean) / sqrt(var + eps) + bias

    x is (N, C) or (N, C, H, W); with a leading task axis, (T, N, C) or (T, N, C, H, W)
    with weight and bias (T, C), each task normalised by its own statistics. In
    training, mean and var are the batch's statistics (over the examples and pixels)
    and the running statistics, if given (arrays), move towards them by `momentum`
    (towards the mean over tasks, with a task axis). In evaluation the running
    statistics are used instead. MAML's batch norm is the training form at all
    times (statistics of the batch at hand).
    """
    if x.ndim not in (2, 3, 4, 5):
        raise ValueError(f"batch_norm: expected (N, C) or (N, C, H, W) input, or either with a leading "
                         f"task axis, got shape {x.shape}")
    tasks = x.ndim in (3, 5)
    channel_axis = 2 if tasks else 1
    channels = x.shape[channel_axis]
    param_shape = (x.shape[0], channels) if tasks else (channels,)
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != param_shape:
            raise ValueError(f"batch_norm: {name} of shape {p.shape} does not match {channels} channels of "
                             f"input {x.shape}; expected {param_shape}")
    groups = x.shape[0] if tasks else 1
    stats_view = [1] * x.ndim  # running statistics broadcast along the channel axis,
    stats_view[channel_axis] = channels
    param_view = [groups] + stats_view[1:] if tasks else stats_view  # scale and shift per task too
    if training:
        if x.size == groups * channels:
            raise ValueError(f"batch_norm: input {x.shape} has one value per channel; batch statistics "
                             "need more than one")
        grouped = ops.reshape(x, (groups, x.shape[channel_axis - 1], channels, -1))  # (G, N, C, pixels)
        if running_mean is not None:
            _update_running(running_mean, running_var, grouped.data, momentum)
        if weight is not None and bias is not None:  # the usual layer: scale and shift in the same node
            per_group = (groups, channels)
            y = normalize_affine(grouped, ops.reshape(weight, per_group), ops.reshape(bias, per_group), eps)
            return ops.reshape(y, x.shape)
        y = ops.reshape(normalize(grouped, eps), x.shape)
    else:
        if running_mean is None:
            raise ValueError("batch_norm: evaluation mode needs running statistics")
        y = (x - Tensor(running_mean.reshape(stats_view))) / ops.sqrt(Tensor(running_var.reshape(stats_view)) + eps)
    if weight is not None:
        y = y * ops.reshape(weight, tuple(param_view))
    if bias is not None:
        y = y + ops.reshape(bias, tuple(param_view))
    return y


def _update_running(running_mean, running_var, grouped, momentum):
    """Exponential moving averages, in place, of the statistics of `grouped` (G, N, C, pixels)
    per channel (the variance unbiased; both averaged over the G groups)."""
    n = grouped.shape[1] * grouped.shape[3]
    running_mean *= 1 - momentum
    running_mean += momentum * grouped.mean(axis=(1, 3)).mean(axis=0)
    running_var *= 1 - momentum
    running_var += momentum * grouped.var(axis=(1, 3)).mean(axis=0) * n / max(n - 1, 1)


def mse_loss(prediction, target):
    """mean((prediction - target)^2) over all elements."""
    if not isinstance(target, Tensor):  # a data array: to the prediction's dtype and device
        target = Tensor(to_device(np.asarray(target, dtype=prediction.dtype), prediction.device))
    if prediction.shape != target.shape:
        raise ValueError(f"mse_loss: prediction of shape {prediction.shape} and target of shape "
                         f"{target.shape} differ")
    return mean_squared_error(prediction, target)


def cross_entropy(logits, labels):
    """mean_i -log softmax(logits_i)[labels_i] over every example: logits (n, classes) and
    integer labels (n,), or with leading axes such as a task axis, (T, n, classes) and (T, n)."""
    labels = labels.data if isinstance(labels, Tensor) else np.asarray(labels)
    if logits.ndim < 2:
        raise ValueError(f"cross_entropy: logits must be (n, classes), got shape {logits.shape}")
    if labels.shape != logits.shape[:-1]:
        raise ValueError(f"cross_entropy: logits of shape {logits.shape} need labels of shape "
                         f"{logits.shape[:-1]}, got {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: labels must be integers, got dtype {labels.dtype}")
    classes = logits.shape[-1]
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"cross_entropy: labels must lie in [0, {classes - 1}], got values "
                         f"from {labels.min()} to {labels.max()}")
    if logits.ndim > 2:
        logits, labels = ops.reshape(logits, (-1, classes)), labels.reshape(-1)
    log_probs = ops.log_softmax(logits, axis=1)
    rows = np.arange(len(labels))
    if logits.device != "cpu":  # index the GPU array with GPU indices
        rows, labels = to_device(rows, logits.device), to_device(labels, logits.device)
    return -ops.mean(log_probs[rows, labels])


def accuracy(logits, labels):
    """The fraction of rows whose largest logit is at the label (a float, not differentiable)."""
    labels = labels.data if isinstance(labels, Tensor) else np.asarray(labels)
    return float(np.mean(logits.numpy().argmax(axis=-1) == labels))
