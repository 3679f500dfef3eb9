"""Convolution and max-pooling as primitives over the array kernels.

conv2d (cross-correlation, NCHW input, OIHW weight, stride s, zero padding p):

    y[n, o, i, j] = sum_{c, u, v} x[n, c, s i + u - p, s j + v - p] w[o, c, u, v]

It is bilinear in (x, w), so all its derivatives are again such bilinear maps:
with GI(g, w) = the gradient w.r.t. x (a transposed convolution) and
GW(x, g) = the gradient w.r.t. w, the adjoint identities

    <conv(x, w), g> = <x, GI(g, w)> = <w, GW(x, g)>

give every backward in terms of the three: conv's backward is (GI(g, w), GW(x, g));
GI's backward is (conv(d, w), GW(d, g)); GW's backward is (GI(g, d), conv(x, d)).
So gradients of any order flow through convolutions.

A leading task axis is optional: x (T, N, C, H, W) with w (T, O, C, kh, kw)
convolves task t's images with task t's weight (a meta-batch of networks in one
op); the adjoint identities hold task by task, so nothing else changes.

conv(x, .) and GW(x, .) both multiply by x's column matrix (im2col), and the
identities above meet the same x up to four times: conv(x, w), GW(x, g) in its
backward, and at second order GW's own backward conv(x, d) and GW(x, g') once
more. So a conv node that will have a backward for w builds x's columns once
(the kernels' conv2d_columns) and hands them to the GW node it makes, which
hands them on; GI's backward likewise builds d's once for conv(d, w) and GW(d, g).
They are freed with the graph.

max_pool2d picks, in each window, the position of the maximum (`argmax`, fixed
by the forward pass and piecewise constant in x). Its backward scatters g to
those positions; the scatter's backward gathers at them, and the gather's
backward scatters again.
"""
from ..backend import kernels_for
from ..function import Function
from ..grad_mode import is_grad_enabled
from .shape import reshape


class Conv2d(Function):
    """y = conv(x, w);  dx = GI(g, w), dw = GW(x, g).  columns: x's, kept, or None; with
    keep_columns the forward builds them (a backward will need GW(x, g))."""

    def __init__(self, stride, padding, columns, keep_columns):
        self.stride, self.padding, self.columns, self.keep_columns = stride, padding, columns, keep_columns

    def forward(self, x, w):
        kernels = kernels_for(x)
        if self.columns is None and self.keep_columns:
            self.columns = kernels.conv2d_columns(x, w.shape[-4:], self.stride, self.padding)
        return kernels.conv2d_forward(x, w, self.stride, self.padding, columns=self.columns)

    def input_error(self, inputs, err):
        return ValueError(f"conv2d: input {inputs[0].shape}, weight {inputs[1].shape}, "
                          f"stride {self.stride}, padding {self.padding}: {err}")

    def backward(self, g):
        x, w = self.inputs
        return (conv2d_grad_input(g, w, x.shape[-2:], self.stride, self.padding) if x.requires_grad else None,
                conv2d_grad_weight(x, g, w.shape[-2:], self.stride, self.padding, self.columns)
                if w.requires_grad else None)

    def release(self):
        super().release()
        self.columns = None


class Conv2dGradInput(Function):
    """dx = GI(g, w), the transposed convolution;  backward: dg = conv(d, w), dw = GW(d, g)."""

    def __init__(self, input_hw, stride, padding):
        self.input_hw, self.stride, self.padding = input_hw, stride, padding

    def forward(self, g, w):
        return kernels_for(g).conv2d_grad_input(g, w, self.input_hw, self.stride, self.padding)

    def backward(self, d):
        g, w = self.inputs
        columns = _columns(d, w.shape[-4:], self.stride, self.padding) if g.requires_grad and w.requires_grad else None
        return (_conv2d(d, w, self.stride, self.padding, columns) if g.requires_grad else None,
                conv2d_grad_weight(d, g, w.shape[-2:], self.stride, self.padding, columns)
                if w.requires_grad else None)


class Conv2dGradWeight(Function):
    """dw = GW(x, g);  backward: dx = GI(g, d), dg = conv(x, d).  columns: x's, kept, or None."""

    def __init__(self, kernel_hw, stride, padding, columns):
        self.kernel_hw, self.stride, self.padding, self.columns = kernel_hw, stride, padding, columns

    def forward(self, x, g):
        return kernels_for(x).conv2d_grad_weight(x, g, self.kernel_hw, self.stride, self.padding,
                                                 columns=self.columns)

    def backward(self, d):
        x, g = self.inputs
        return (conv2d_grad_input(g, d, x.shape[-2:], self.stride, self.padding) if x.requires_grad else None,
                _conv2d(x, d, self.stride, self.padding, self.columns) if g.requires_grad else None)

    def release(self):
        super().release()
        self.columns = None


class MaxPool2d(Function):
    """y = max over each kernel x kernel window (step `stride`);  dx = scatter of g to the argmax."""

    def __init__(self, kernel, stride):
        self.kernel, self.stride = kernel, stride

    def forward(self, x):
        y, self.argmax = kernels_for(x).max_pool2d_forward(x, self.kernel, self.stride)
        return y

    def backward(self, g):
        return (MaxPoolScatter.apply(g, argmax=self.argmax, input_hw=self.inputs[0].shape[2:]),)


class MaxPoolScatter(Function):
    """dx = g added at the argmax positions (zeros elsewhere);  backward: dg = gather of d there."""

    def __init__(self, argmax, input_hw):
        self.argmax, self.input_hw = argmax, input_hw

    def forward(self, g):
        return kernels_for(g).max_pool2d_backward(g, self.argmax, self.input_hw)

    def backward(self, d):
        return (MaxPoolGather.apply(d, argmax=self.argmax, input_hw=self.input_hw),)


class MaxPoolGather(Function):
    """out = d read at the argmax positions;  backward: scatter back to them."""

    def __init__(self, argmax, input_hw):
        self.argmax, self.input_hw = argmax, input_hw

    def forward(self, d):
        return kernels_for(d).max_pool2d_gather(d, self.argmax)

    def backward(self, e):
        return (MaxPoolScatter.apply(e, argmax=self.argmax, input_hw=self.input_hw),)


def conv2d(x, w, stride=1, padding=0):
    """Cross-correlation of NCHW `x` with OIHW `w` (no bias; see nn.functional.conv2d),
    or of (T, N, C, H, W) with (T, O, C, kh, kw), task by task."""
    _check_conv(x, w, stride, padding)
    return _conv2d(x, w, stride, padding, None)


def _conv2d(x, w, stride, padding, columns):
    """conv(x, w) with x's kept columns, or None; when the node will be recorded with a gradient
    to flow to w, its backward's GW(x, g) needs them, so its forward builds them and it keeps them."""
    return Conv2d.apply(x, w, stride=stride, padding=padding, columns=columns,
                        keep_columns=w.requires_grad and is_grad_enabled())


def _columns(x, weight_shape, stride, padding):
    """x's columns (only for tensors a forward has already checked: gradients of a conv)."""
    return kernels_for(x.data).conv2d_columns(x.data, weight_shape, stride, padding)


def conv2d_grad_input(g, w, input_hw, stride, padding):
    return Conv2dGradInput.apply(g, w, input_hw=tuple(input_hw), stride=stride, padding=padding)


def conv2d_grad_weight(x, g, kernel_hw, stride, padding, columns):
    return Conv2dGradWeight.apply(x, g, kernel_hw=tuple(kernel_hw), stride=stride, padding=padding, columns=columns)


def max_pool2d(x, kernel_size, stride=None):
    """Max over kernel_size x kernel_size windows of NCHW `x`, stepping `stride` (default kernel_size).
    A (T, N, C, H, W) input (a task axis) is pooled as T*N images."""
    stride = kernel_size if stride is None else stride
    if x.ndim == 5:
        tasks, n = x.shape[:2]
        y = max_pool2d(reshape(x, (tasks * n,) + x.shape[2:]), kernel_size, stride)
        return reshape(y, (tasks, n) + y.shape[1:])
    if x.ndim != 4:
        raise ValueError(f"max_pool2d: expected NCHW input with 4 axes (or 5 with a task axis first), "
                         f"got shape {x.shape}")
    if kernel_size < 1 or stride < 1:
        raise ValueError(f"max_pool2d: kernel_size ({kernel_size}) and stride ({stride}) must be positive")
    if kernel_size > min(x.shape[2:]):
        raise ValueError(f"max_pool2d: window {kernel_size}x{kernel_size} is larger than the "
                         f"input's {x.shape[2]}x{x.shape[3]} image")
    return MaxPool2d.apply(x, kernel=kernel_size, stride=stride)


def _check_conv(x, w, stride, padding):
    if (x.ndim, w.ndim) not in ((4, 4), (5, 5)) or (x.ndim == 5 and x.shape[0] != w.shape[0]):
        raise ValueError(f"conv2d: expected NCHW input and OIHW weight (4 axes each), or both with a "
                         f"leading task axis of one length (5 axes each), got shapes {x.shape} and {w.shape}")
    if x.shape[-3] != w.shape[-3]:
        raise ValueError(f"conv2d: input has {x.shape[-3]} channels but weight {w.shape} expects "
                         f"{w.shape[-3]}")
    if stride < 1 or padding < 0:
        raise ValueError(f"conv2d: stride ({stride}) must be positive and padding ({padding}) non-negative")
    padded = (x.shape[-2] + 2 * padding, x.shape[-1] + 2 * padding)
    if w.shape[-2] > padded[0] or w.shape[-1] > padded[1]:
        raise ValueError(f"conv2d: kernel {w.shape[-2]}x{w.shape[-1]} is larger than the padded input "
                         f"{padded[0]}x{padded[1]} (input {x.shape}, padding {padding})")
    if x.dtype != w.dtype:
        raise TypeError(f"conv2d: input dtype {x.dtype} and weight dtype {w.dtype} differ")
