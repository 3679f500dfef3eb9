"""Layers and losses as functions of (inputs, parameters).

Nothing here holds state: every parameter is an argument, which is what lets
MAML run the same network with adapted parameters. Weights may carry a leading
task axis (one network per task, evaluated in one batched call): `linear` with
a weight of shape (tasks, in, out) maps inputs (tasks, n, in) to (tasks, n, out).
"""
import numpy as np

from .. import ops
from ..ops.conv import conv2d as _conv2d
from ..ops.conv import max_pool2d as _max_pool2d
from ..backend import to_device
from ..tensor import Tensor

relu = ops.relu
max_pool2d = _max_pool2d


def linear(x, weight, bias=None):
    """y = x W + b, with W of shape (in, out) (or (tasks, in, out)) and b of shape (out,) (or (tasks, out))."""
    if x.shape[-1] != weight.shape[-2]:
        raise ValueError(f"linear: input of shape {x.shape} has {x.shape[-1]} features but weight of "
                         f"shape {weight.shape} expects {weight.shape[-2]}")
    y = x @ weight
    if bias is None:
        return y
    if bias.ndim > 1:  # per-task biases (tasks, out) broadcast over each task's examples
        bias = ops.reshape(bias, bias.shape[:-1] + (1,) * (y.ndim - bias.ndim) + bias.shape[-1:])
    return y + bias


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """y = conv(x, W) + b: NCHW input, OIHW weight, bias of shape (out_channels,)."""
    y = _conv2d(x, weight, stride, padding)
    if bias is None:
        return y
    if bias.shape != (weight.shape[0],):
        raise ValueError(f"conv2d: bias of shape {bias.shape} does not match {weight.shape[0]} output channels")
    return y + ops.reshape(bias, (1, -1, 1, 1))


def flatten(x):
    """(n, ...) -> (n, prod(...))."""
    return ops.reshape(x, (x.shape[0], -1))


def batch_norm(x, weight, bias, running_mean=None, running_var=None, training=True,
               momentum=0.1, eps=1e-5):
    """Normalise each channel (axis 1) and apply a learnable scale and shift:

        y = weight * (x - mean) / sqrt(var + eps) + bias

    In training, mean and var are the batch's statistics (over every axis but 1) and
    the running statistics, if given (arrays), move towards them by `momentum`. In
    evaluation the running statistics are used instead. MAML's batch norm is the
    training form at all times (statistics of the batch at hand).
    """
    if x.ndim not in (2, 4):
        raise ValueError(f"batch_norm: expected (N, C) or (N, C, H, W) input, got shape {x.shape}")
    channels = x.shape[1]
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != (channels,):
            raise ValueError(f"batch_norm: {name} of shape {p.shape} does not match {channels} channels "
                             f"of input {x.shape}")
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    shape = (1, channels) + (1,) * (x.ndim - 2)
    if training:
        if x.size == channels:
            raise ValueError(f"batch_norm: input {x.shape} has one value per channel; batch statistics "
                             "need more than one")
        mean = ops.mean(x, axis=axes, keepdims=True)
        centred = x - mean
        var = ops.mean(centred * centred, axis=axes, keepdims=True)
        if running_mean is not None:
            _update_running(running_mean, running_var, mean, var, x.size // channels, momentum)
    else:
        if running_mean is None:
            raise ValueError("batch_norm: evaluation mode needs running statistics")
        centred = x - Tensor(running_mean.reshape(shape))
        var = Tensor(running_var.reshape(shape))
    y = centred / ops.sqrt(var + eps)
    if weight is not None:
        y = y * ops.reshape(weight, shape)
    if bias is not None:
        y = y + ops.reshape(bias, shape)
    return y


def _update_running(running_mean, running_var, mean, var, n, momentum):
    """Exponential moving averages of the batch statistics (unbiased variance), in place."""
    running_mean *= 1 - momentum
    running_mean += momentum * mean.data.reshape(-1)
    running_var *= 1 - momentum
    running_var += momentum * var.data.reshape(-1) * n / max(n - 1, 1)


def mse_loss(prediction, target):
    """mean((prediction - target)^2) over all elements."""
    if not isinstance(target, Tensor):  # a data array: to the prediction's dtype and device
        target = Tensor(to_device(np.asarray(target, dtype=prediction.dtype), prediction.device))
    if prediction.shape != target.shape:
        raise ValueError(f"mse_loss: prediction of shape {prediction.shape} and target of shape "
                         f"{target.shape} differ")
    diff = prediction - target
    return ops.mean(diff * diff)


def cross_entropy(logits, labels):
    """mean_i -log softmax(logits_i)[labels_i], for logits (n, classes) and integer labels (n,)."""
    labels = labels.data if isinstance(labels, Tensor) else np.asarray(labels)
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be (n, classes), got shape {logits.shape}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"cross_entropy: {logits.shape[0]} rows of logits need labels of shape "
                         f"({logits.shape[0]},), got {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"cross_entropy: labels must lie in [0, {logits.shape[1] - 1}], got values "
                         f"from {labels.min()} to {labels.max()}")
    log_probs = ops.log_softmax(logits, axis=1)
    rows = np.arange(len(labels))
    if logits.device != "cpu":  # index the GPU array with GPU indices
        rows, labels = to_device(rows, logits.device), to_device(labels, logits.device)
    return -ops.mean(log_probs[rows, labels])


def accuracy(logits, labels):
    """The fraction of rows whose largest logit is at the label (a float, not differentiable)."""
    labels = labels.data if isinstance(labels, Tensor) else np.asarray(labels)
    return float(np.mean(logits.numpy().argmax(axis=-1) == labels))
