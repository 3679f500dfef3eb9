"""Kept column matrices: the conv kernels given an input's columns (conv2d_columns) compute
what they compute without them, and the conv ops build each input's columns once however
many derivatives meet it, and free them with the graph."""
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings

import tinymeta as tm
import tinymeta.kernels as K
from tinymeta.kernels import conv2d as conv2d_kernels, reference as R
from tinymeta.ops.conv import conv2d
from test_kernels import assert_close, chunk_entries, conv_cases


@settings(deadline=None, max_examples=30)
@given(case=conv_cases(), chunk=chunk_entries)
def test_kept_columns_give_the_reference_forward_and_grad_weight(case, chunk):
    """Built under one chunk size and used under the default one: the kept chunks carry their own layout."""
    x, w, grad_y, stride, padding = case
    with mock.patch.object(conv2d_kernels, "CHUNK_ENTRIES", chunk):
        columns = K.conv2d_columns(x, w.shape[-4:], stride, padding)
    assert_close(K.conv2d_forward(x, w, stride, padding, columns=columns),
                 R.conv2d_forward(x, w, stride, padding), x.dtype)
    assert_close(K.conv2d_grad_weight(x, grad_y, w.shape[-2:], stride, padding, columns=columns),
                 R.conv2d_grad_weight(x, grad_y, w.shape[-2:], stride, padding), x.dtype)


x_3x5x5 = np.zeros((2, 3, 5, 5))


@pytest.mark.parametrize("call, message", [
    (lambda c: K.conv2d_forward(np.zeros((2, 3, 5, 6)), np.zeros((4, 3, 3, 3)), 1, 1, columns=c),
     r"conv2d_forward: columns built for input shape \(1, 2, 3, 5, 5\) do not fit input shape \(1, 2, 3, 5, 6\)$"),
    (lambda c: K.conv2d_forward(x_3x5x5, np.zeros((4, 3, 3, 3)), 2, 1, columns=c),
     r"conv2d_forward: columns built for stride 1 do not fit stride 2$"),
    (lambda c: K.conv2d_forward(x_3x5x5, np.zeros((4, 3, 3, 2)), 1, 0, columns=c),
     r"conv2d_forward: columns built for kernel width 3, padding 1 do not fit kernel width 2, padding 0$"),
    (lambda c: K.conv2d_forward(x_3x5x5.astype(np.float32), np.zeros((4, 3, 3, 3), np.float32), 1, 1, columns=c),
     r"conv2d_forward: columns built for dtype float64 do not fit dtype float32$"),
    (lambda c: K.conv2d_grad_weight(np.zeros((3, 2, 3, 5, 5)), np.zeros((3, 2, 4, 5, 5)), (3, 3), 1, 1, columns=c),
     r"conv2d_grad_weight: columns built for input shape \(1, 2, 3, 5, 5\) do not fit input shape \(3, 2, 3, 5, 5\)"),
])
def test_columns_of_another_input_or_geometry_are_refused(call, message):
    columns = K.conv2d_columns(x_3x5x5, (4, 3, 3, 3), 1, 1)
    with pytest.raises(ValueError, match=message):
        call(columns)


def test_columns_laid_out_for_another_output_count_are_refused():
    """A first layer's columns (fewer rows than outputs: one matrix per image) do not fit a weight
    with fewer outputs, whose columns interleave the images."""
    x = np.zeros((2, 1, 5, 5))
    columns = K.conv2d_columns(x, (16, 1, 3, 3), 1, 1)
    K.conv2d_forward(x, np.zeros((16, 1, 3, 3)), 1, 1, columns=columns)  # the weight they were built for
    with pytest.raises(ValueError, match=r"conv2d_forward: columns built for layout image by image do not fit "
                                         r"layout images interleaved$"):
        K.conv2d_forward(x, np.zeros((4, 1, 3, 3)), 1, 1, columns=columns)


def test_columns_for_a_weight_of_other_channels_are_refused():
    with pytest.raises(ValueError, match=r"conv2d_columns: input has 3 channels but weight \(4, 2, 3, 3\) expects 2"):
        K.conv2d_columns(x_3x5x5, (4, 2, 3, 3), 1, 1)


def counting_column_builds():
    """A mock.patch of the column builder that counts its calls (one per chunk of images)."""
    return mock.patch.object(conv2d_kernels, "_im2col", wraps=conv2d_kernels._im2col)


@pytest.mark.parametrize("first, second, builds", [
    # d/dx and d/dw of <dL/dw, v>: x's columns serve conv(x, w), GW(x, g), and at second order GW's
    # backward conv(x, d) and GW(x, g') (four builds without kept columns)
    ("w", ["x", "w"], 1),
    # d/dw of <dL/dx, v>: GI's backward meets its d in conv(d, w) and GW(d, g), one build of d's for
    # both, beside x's for the forward and both GW(x, .) (five builds without kept columns)
    ("x", ["w"], 2),
])
def test_second_order_through_a_conv_builds_each_inputs_columns_once(first, second, builds):
    rng = np.random.default_rng(0)
    tensors = {"x": tm.tensor(rng.standard_normal((2, 3, 5, 5)), requires_grad=True),
               "w": tm.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)}
    v = tm.tensor(rng.standard_normal(tensors[first].shape))
    with counting_column_builds() as build:
        (g,) = tm.grad(tm.sum(conv2d(tensors["x"], tensors["w"], 1, 1) ** 2), [tensors[first]], create_graph=True)
        tm.grad(tm.sum(g * v), [tensors[name] for name in second])
    assert build.call_count == builds


def test_no_columns_are_kept_without_a_gradient_for_the_weight():
    """Not when nothing is recorded, nor when no gradient will flow to w (no GW(x, g) to come)."""
    rng = np.random.default_rng(2)
    x = tm.tensor(rng.standard_normal((2, 3, 5, 5)), requires_grad=True)
    w = tm.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    with mock.patch.object(K, "conv2d_columns", wraps=K.conv2d_columns) as keep:
        with tm.no_grad():
            conv2d(x, w, 1, 1)
        assert conv2d(x, w.detach(), 1, 1)._node.columns is None
        assert keep.call_count == 0
        assert conv2d(x, w, 1, 1)._node.columns is not None
        assert keep.call_count == 1


def test_kept_columns_are_freed_with_the_graph():
    rng = np.random.default_rng(3)
    x = tm.tensor(rng.standard_normal((2, 3, 5, 5)))
    w = tm.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    y = conv2d(x, w, 1, 1)
    node = y._node
    assert node.columns is not None
    tm.sum(y).backward()
    assert node.columns is None
