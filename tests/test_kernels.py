"""The CPU kernels (tinymeta.kernels) against their numpy references, and the
references against independent checks: a direct loop and the adjoint identities."""
import os
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import tinymeta.kernels as K
from tinymeta.kernels import conv2d, reference as R

TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}
dtypes = st.sampled_from([np.float32, np.float64])


def assert_close(actual, expected, dtype):
    """Same shape, the expected dtype, and max |actual - expected| <= tol * max |expected|."""
    assert actual.shape == expected.shape and actual.dtype == dtype
    scale = max(float(np.abs(expected).max(initial=0.0)), np.finfo(dtype).tiny)
    assert float(np.abs(actual - expected).max(initial=0.0)) <= TOLERANCE[np.dtype(dtype).type] * scale


@st.composite
def conv_cases(draw):
    """(x, w, grad_y, stride, padding) with the padded input at least the kernel; sometimes
    with a leading task axis on all three (one weight per task)."""
    dtype = draw(dtypes)
    tasks = draw(st.sampled_from([(), (1,), (3,)]))
    n, c, o = draw(st.integers(1, 5)), draw(st.integers(1, 8)), draw(st.integers(1, 8))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride, padding = draw(st.integers(1, 3)), draw(st.integers(0, 2))
    assume(kh <= h + 2 * padding and kw <= w + 2 * padding)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ho, wo = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    x, weight, grad_y = (rng.standard_normal(tasks + shape).astype(dtype)
                         for shape in [(n, c, h, w), (o, c, kh, kw), (n, o, ho, wo)])
    return x, weight, grad_y, stride, padding


# Each conv kernel as a function of a module (kernels or reference) and a case.
CONV_KERNELS = {
    "forward": lambda m, x, w, gy, s, p: m.conv2d_forward(x, w, s, p),
    "grad_input": lambda m, x, w, gy, s, p: m.conv2d_grad_input(gy, w, x.shape[-2:], s, p),
    "grad_weight": lambda m, x, w, gy, s, p: m.conv2d_grad_weight(x, gy, w.shape[-2:], s, p),
}
# Small chunks split a batch into several im2col chunks, the last one shorter.
chunk_entries = st.sampled_from([1, 400, conv2d.CHUNK_ENTRIES])


@pytest.mark.parametrize("kernel", CONV_KERNELS)
@settings(deadline=None, max_examples=30)
@given(case=conv_cases(), chunk=chunk_entries)
def test_conv2d_kernel_matches_reference(kernel, case, chunk):
    x = case[0]
    with mock.patch.object(conv2d, "CHUNK_ENTRIES", chunk):
        actual = CONV_KERNELS[kernel](K, *case)
    assert_close(actual, CONV_KERNELS[kernel](R, *case), x.dtype)


@pytest.mark.parametrize("kernel", CONV_KERNELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_kernel_matches_reference_on_a_batch_spanning_chunks(kernel, dtype):
    """At the kernels' own chunk size: with 2 channels, a 3x3 kernel and 12x12 images padded by 1,
    an image fills 2*3*3 rows by 12*12 columns of the column matrix, so this batch needs at
    least two chunks, the last one partly filled."""
    n = conv2d.CHUNK_ENTRIES // (2 * 3 * 3 * 12 * 12) + 2
    rng = np.random.default_rng(6)
    x, w, grad_y = (rng.standard_normal(s).astype(dtype) for s in [(n, 2, 12, 12), (3, 2, 3, 3), (n, 3, 12, 12)])
    case = (x, w, grad_y, 1, 1)
    assert_close(CONV_KERNELS[kernel](K, *case), CONV_KERNELS[kernel](R, *case), dtype)


@st.composite
def pool_cases(draw):
    """(x, kernel, stride); x sometimes drawn from {0, 1, 2} to make ties common."""
    dtype = draw(dtypes)
    n, c = draw(st.integers(1, 5)), draw(st.integers(1, 8))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    kernel, stride = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    assume(kernel <= min(h, w))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        x = rng.integers(0, 3, (n, c, h, w)).astype(dtype)
    else:
        x = rng.standard_normal((n, c, h, w)).astype(dtype)
    return x, kernel, stride


@settings(deadline=None, max_examples=40)
@given(pool_cases())
def test_max_pool2d_forward_matches_reference(case):
    x, kernel, stride = case
    y, argmax = K.max_pool2d_forward(x, kernel, stride)
    y_ref, argmax_ref = R.max_pool2d_forward(x, kernel, stride)
    assert y.dtype == x.dtype and argmax.dtype == np.int64
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)


@settings(deadline=None, max_examples=30)
@given(pool_cases())
def test_max_pool2d_backward_and_gather_match_reference(case):
    """The scatter-add and its adjoint gather, at the argmax of a forward pass."""
    x, kernel, stride = case
    _, argmax = R.max_pool2d_forward(x, kernel, stride)
    rng = np.random.default_rng(0)
    grad_y = rng.standard_normal(argmax.shape).astype(x.dtype)
    assert_close(K.max_pool2d_backward(grad_y, argmax, x.shape[2:]),
                 R.max_pool2d_backward(grad_y, argmax, x.shape[2:]), x.dtype)
    grad_x = rng.standard_normal(x.shape).astype(x.dtype)
    assert_close(K.max_pool2d_gather(grad_x, argmax), R.max_pool2d_gather(grad_x, argmax), x.dtype)


def direct_conv(x, w, stride, padding):
    """The convolution sum written out as loops, one output element at a time."""
    n, c, h, width = x.shape
    o, _, kh, kw = w.shape
    ho, wo = (h + 2 * padding - kh) // stride + 1, (width + 2 * padding - kw) // stride + 1
    y = np.zeros((n, o, ho, wo))
    for b in range(n):
        for f in range(o):
            for i in range(ho):
                for j in range(wo):
                    for ch in range(c):
                        for di in range(kh):
                            for dj in range(kw):
                                r, s = i * stride + di - padding, j * stride + dj - padding
                                if 0 <= r < h and 0 <= s < width:
                                    y[b, f, i, j] += w[f, ch, di, dj] * x[b, ch, r, s]
    return y


CONV_FIXED = [((2, 3, 5, 4), (4, 3, 3, 2), 1, 1), ((2, 2, 7, 6), (3, 2, 3, 3), 2, 1),
              ((1, 2, 5, 5), (2, 2, 2, 4), 3, 2), ((3, 1, 4, 4), (2, 1, 1, 1), 1, 0)]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding", CONV_FIXED)
def test_conv2d_reference_equals_direct_loop(x_shape, w_shape, stride, padding):
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    np.testing.assert_allclose(R.conv2d_forward(x, w, stride, padding),
                               direct_conv(x, w, stride, padding), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("module", [R, K], ids=["reference", "kernels"])
@pytest.mark.parametrize("x_shape, w_shape, stride, padding", CONV_FIXED)
def test_conv2d_adjoint_identities(module, x_shape, w_shape, stride, padding):
    """<conv(x, w), gy> = <x, grad_input(gy, w)> = <w, grad_weight(x, gy)>."""
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    y = module.conv2d_forward(x, w, stride, padding)
    grad_y = rng.standard_normal(y.shape)
    lhs = np.vdot(y, grad_y)
    np.testing.assert_allclose(
        np.vdot(x, module.conv2d_grad_input(grad_y, w, x_shape[2:], stride, padding)), lhs, rtol=1e-12)
    np.testing.assert_allclose(
        np.vdot(w, module.conv2d_grad_weight(x, grad_y, w_shape[2:], stride, padding)), lhs, rtol=1e-12)


@pytest.mark.parametrize("module", [R, K], ids=["reference", "kernels"])
def test_max_pool2d_by_hand_and_adjoint(module):
    """A 2x2 pool written out by hand (a tie picks the first maximum), then
    <backward(gy), gx> = <gy, gather(gx)> with overlapping windows."""
    x = np.array([[[[1., 5., 2., 2.],
                    [3., 4., 2., 0.],
                    [0., 1., 7., 7.]]]])
    y, argmax = module.max_pool2d_forward(x, 2, 2)
    np.testing.assert_array_equal(y, [[[[5., 2.]]]])
    np.testing.assert_array_equal(argmax, [[[[1, 2]]]])
    y, argmax = module.max_pool2d_forward(x, 2, 1)  # overlapping windows share maxima
    np.testing.assert_array_equal(argmax, [[[[1, 1, 2], [5, 10, 10]]]])
    rng = np.random.default_rng(3)
    grad_y, grad_x = rng.standard_normal(y.shape), rng.standard_normal(x.shape)
    np.testing.assert_allclose(np.vdot(module.max_pool2d_backward(grad_y, argmax, x.shape[2:]), grad_x),
                               np.vdot(grad_y, module.max_pool2d_gather(grad_x, argmax)), rtol=1e-12)


def test_max_pool2d_propagates_nan():
    x = np.array([[[[1., np.nan], [3., 2.]]]])
    y, argmax = K.max_pool2d_forward(x, 2, 2)
    assert np.isnan(y).all() and argmax.item() == 1


def test_non_contiguous_inputs():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 7, 3, 2)).transpose(3, 2, 0, 1)[:, :, ::2, :]  # (2, 3, 3, 7)
    w = rng.standard_normal((3, 3, 4, 2)).transpose(2, 1, 3, 0)  # (4, 3, 2, 3)
    assert not x.flags.c_contiguous and not w.flags.c_contiguous
    y = K.conv2d_forward(x, w, 1, 1)
    np.testing.assert_allclose(y, R.conv2d_forward(x, w, 1, 1), rtol=1e-12)
    grad_y = rng.standard_normal(y.shape[::-1]).T  # a transposed view of y's shape
    np.testing.assert_allclose(K.conv2d_grad_input(grad_y, w, (3, 7), 1, 1),
                               R.conv2d_grad_input(grad_y, w, (3, 7), 1, 1), rtol=1e-12)
    np.testing.assert_allclose(K.conv2d_grad_weight(x, grad_y, (2, 3), 1, 1),
                               R.conv2d_grad_weight(x, grad_y, (2, 3), 1, 1), rtol=1e-12)
    pooled, argmax = K.max_pool2d_forward(x, 2, 1)
    np.testing.assert_array_equal(pooled, R.max_pool2d_forward(x, 2, 1)[0])


@pytest.mark.parametrize("call, message", [
    (lambda: K.conv2d_forward(np.zeros((1, 3, 5, 5)), np.zeros((2, 4, 3, 3))), "3 channels"),
    (lambda: K.conv2d_forward(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 5, 5)), 1, 1), "does not fit"),
    (lambda: K.conv2d_forward(np.zeros((1, 1, 5, 5)), np.zeros((1, 1, 3, 3)), 0), "stride"),
    (lambda: K.conv2d_forward(np.zeros((1, 1, 5, 5)), np.zeros((1, 1, 3, 3)), 1, -1), "padding"),
    (lambda: K.conv2d_forward(np.zeros((1, 5, 5)), np.zeros((1, 1, 3, 3))), "4-d"),
    (lambda: K.conv2d_forward(np.zeros((2, 1, 1, 5, 5)), np.zeros((3, 1, 1, 3, 3))), "one leading task count"),
    (lambda: K.conv2d_forward(np.zeros((2, 1, 1, 5, 5)), np.zeros((1, 1, 3, 3))), r"x \(2, 1, 1, 5, 5\), w"),
    (lambda: K.conv2d_forward(np.zeros((1, 1, 5, 5)), np.zeros((1, 1, 3, 3), np.float32)), "dtype"),
    (lambda: K.conv2d_grad_input(np.zeros((1, 2, 3, 3)), np.zeros((2, 1, 3, 3)), (5, 6)), "grad_y"),
    (lambda: K.conv2d_grad_weight(np.zeros((2, 1, 5, 5)), np.zeros((1, 2, 3, 3)), (3, 3)), "grad_y"),
    (lambda: K.max_pool2d_forward(np.zeros((1, 1, 2, 2)), 3, 1), "larger than"),
    (lambda: K.max_pool2d_forward(np.zeros((1, 1, 2, 2)), 1, 0), "positive"),
    (lambda: K.max_pool2d_backward(np.zeros((1, 1, 1, 1)), np.array([[[[4]]]]), (2, 2)), "outside"),
    (lambda: K.max_pool2d_gather(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 1, 1))), "integers"),
])
def test_invalid_arguments_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


NO_JIT_SCRIPT = """
import numpy as np
import tinymeta.kernels as K
from tinymeta.kernels import conv2d, reference as R
assert not hasattr(conv2d._move_taps, "py_func"), "numba JIT is still on"
rng = np.random.default_rng(5)
x, w = rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((3, 2, 3, 2))
for stride in (1, 2):
    y = K.conv2d_forward(x, w, stride, 1)
    gy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(y, R.conv2d_forward(x, w, stride, 1), rtol=1e-12)
    np.testing.assert_allclose(K.conv2d_grad_input(gy, w, (5, 4), stride, 1),
                               R.conv2d_grad_input(gy, w, (5, 4), stride, 1), rtol=1e-12)
    np.testing.assert_allclose(K.conv2d_grad_weight(x, gy, (3, 2), stride, 1),
                               R.conv2d_grad_weight(x, gy, (3, 2), stride, 1), rtol=1e-12)
y, argmax = K.max_pool2d_forward(x, 2, 1)
np.testing.assert_array_equal(argmax, R.max_pool2d_forward(x, 2, 1)[1])
np.testing.assert_allclose(K.max_pool2d_backward(y, argmax, (5, 4)),
                           R.max_pool2d_backward(y, argmax, (5, 4)))
np.testing.assert_array_equal(K.max_pool2d_gather(x, argmax), R.max_pool2d_gather(x, argmax))
x_hat, rstd = K.batch_norm_forward(x, 1e-5)
np.testing.assert_allclose(x_hat, R.batch_norm_forward(x, 1e-5)[0], rtol=1e-12, atol=1e-14)
gx = rng.standard_normal(x.shape)
np.testing.assert_allclose(K.batch_norm_backward(gx, x_hat, rstd),
                           R.batch_norm_backward(gx, x_hat, rstd), rtol=1e-10, atol=1e-12)
for fused, reference in zip(K.batch_norm_double_backward(x, gx, x_hat, rstd),
                            R.batch_norm_double_backward(x, gx, x_hat, rstd)):
    np.testing.assert_allclose(fused, reference, rtol=1e-10, atol=1e-11)
w, b = rng.standard_normal((x.shape[0], x.shape[2])), rng.standard_normal((x.shape[0], x.shape[2]))
for fused, reference in zip(K.batch_norm_affine_forward(x, w, b, 1e-5), R.batch_norm_affine_forward(x, w, b, 1e-5)):
    np.testing.assert_allclose(fused, reference, rtol=1e-12, atol=1e-13)
for fused, reference in zip(K.batch_norm_affine_backward(gx, x_hat, rstd, w),
                            R.batch_norm_affine_backward(gx, x_hat, rstd, w)):
    np.testing.assert_allclose(fused, reference, rtol=1e-10, atol=1e-11)
from tinymeta.kernels import select
select.SMALL = 1  # the numba loops, not numpy's where
mask = x > 0
for a, b in ((x, 0.0), (0.0, x), (x, gx)):
    np.testing.assert_array_equal(K.where(mask, a, b), R.where(mask, a, b))
"""


def test_kernels_are_correct_without_jit():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    result = subprocess.run([sys.executable, "-c", NO_JIT_SCRIPT], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@settings(deadline=None, max_examples=30)
@given(dtype=dtypes, shape=st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 4), st.integers(1, 7)),
       seed=st.integers(0, 2**32 - 1))
def test_batch_norm_kernels_match_reference(dtype, shape, seed):
    rng = np.random.default_rng(seed)
    x = (3 * rng.standard_normal(shape) + rng.standard_normal()).astype(dtype)
    grad = rng.standard_normal(shape).astype(dtype)
    x_hat, rstd = K.batch_norm_forward(x, 1e-5)
    ref_x_hat, ref_rstd = R.batch_norm_forward(x, 1e-5)
    assert_close(x_hat, ref_x_hat, dtype)
    assert_close(rstd, ref_rstd, dtype)
    dx, ref_dx = K.batch_norm_backward(grad, x_hat, rstd), R.batch_norm_backward(grad, ref_x_hat, ref_rstd)
    # dx = r (g - mean g - x_hat mean(g x_hat)) cancels to near zero on tiny groups: errors are
    # relative to the terms it is made of, r * |g|, not to the result
    scale = float(rstd.max()) * float(np.abs(grad).max())
    assert dx.dtype == dtype and float(np.abs(dx - ref_dx).max()) <= 4 * TOLERANCE[np.dtype(dtype).type] * scale
    w = rng.standard_normal((shape[0], shape[2])).astype(dtype)
    b = rng.standard_normal((shape[0], shape[2])).astype(dtype)
    y, affine_x_hat, affine_rstd = K.batch_norm_affine_forward(x, w, b, 1e-5)
    np.testing.assert_array_equal(affine_x_hat, x_hat)
    np.testing.assert_array_equal(affine_rstd, rstd)
    np.testing.assert_array_equal(y, x_hat * w[:, None, :, None] + b[:, None, :, None])  # rounded as numpy rounds
    affine_dx, dw, db = K.batch_norm_affine_backward(grad, x_hat, rstd, w)
    _, ref_dw, ref_db = R.batch_norm_affine_backward(grad, x_hat, rstd, w)
    np.testing.assert_allclose(affine_dx, dx * w[:, None, :, None], rtol=2 * TOLERANCE[np.dtype(dtype).type],
                               atol=2 * TOLERANCE[np.dtype(dtype).type] * scale * float(np.abs(w).max()))
    sums_size = float(np.abs(grad).sum(axis=(1, 3)).max()) * max(1.0, float(np.abs(x_hat).max()))
    for result, expected in ((dw, ref_dw), (db, ref_db)):
        assert result.dtype == dtype
        assert float(np.abs(result - expected).max()) <= 4 * TOLERANCE[np.dtype(dtype).type] * sums_size
    h = rng.standard_normal(shape).astype(dtype)
    fused = K.batch_norm_double_backward(h, grad, x_hat, rstd)
    reference = R.batch_norm_double_backward(h, grad, x_hat, rstd)
    # the same cancellation, relative to the terms' sizes: r |h| for dgrad, r^2 |h| |grad| for dx
    h_size = float(rstd.max()) * float(np.abs(h).max())
    for result, expected, size in zip(fused, reference, (h_size, h_size * scale)):
        error = float(np.abs(result - expected).max())
        assert result.dtype == dtype and error <= 16 * TOLERANCE[np.dtype(dtype).type] * size


def test_batch_norm_reference_normalises_each_group_and_channel():
    x = np.random.default_rng(0).standard_normal((2, 5, 3, 4)) * 7 + 2
    x_hat, rstd = R.batch_norm_forward(x, 0.0)
    np.testing.assert_allclose(x_hat.mean(axis=(1, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(x_hat.var(axis=(1, 3)), 1, rtol=1e-12)
    np.testing.assert_allclose(rstd, 1 / x.std(axis=(1, 3)), rtol=1e-12)


def test_reference_defaults_and_dtypes():
    """Stride 1 and no padding by default; every reference keeps float32 data float32."""
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((3, 2, 3, 2))
    y = R.conv2d_forward(x, w)
    np.testing.assert_allclose(y, direct_conv(x, w, 1, 0), rtol=1e-12)
    gy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(R.conv2d_grad_input(gy, w, (5, 4)), R.conv2d_grad_input(gy, w, (5, 4), 1, 0))
    np.testing.assert_allclose(R.conv2d_grad_weight(x, gy, (3, 2)), R.conv2d_grad_weight(x, gy, (3, 2), 1, 0))
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    y32 = R.conv2d_forward(x32, w32, 2, 1)
    pooled, argmax = R.max_pool2d_forward(x32, 2, 1)
    for out in (y32, R.conv2d_grad_input(y32, w32, (5, 4), 2, 1), R.conv2d_grad_weight(x32, y32, (3, 2), 2, 1),
                pooled, R.max_pool2d_backward(pooled, argmax, (5, 4)), R.max_pool2d_gather(x32, argmax)):
        assert out.dtype == np.float32


@pytest.mark.parametrize("kernel, arrays", [
    ("batch_norm_backward", lambda a, b: (a, b)),
    ("batch_norm_double_backward", lambda a, b: (a, a, b)),
])
def test_batch_norm_gradients_name_arrays_that_do_not_fit(kernel, arrays):
    a, b = np.zeros((2, 3, 4, 5)), np.zeros((2, 3, 4, 6))
    with pytest.raises(ValueError, match=rf"^{kernel}: .*x_hat \(2, 3, 4, 6\) and rstd \(2, 4\) do not fit together"):
        getattr(K, kernel)(*arrays(a, b), np.ones((2, 4)))
    with pytest.raises(ValueError, match=rf"^{kernel}: .*rstd \(4, 2\) do not fit together"):
        getattr(K, kernel)(*arrays(a, a), np.ones((4, 2)))


def test_batch_norm_affine_kernels_name_parameters_that_do_not_fit():
    x, per_channel, wrong = np.zeros((2, 3, 4, 5)), np.ones((2, 4)), np.ones((4, 2))
    with pytest.raises(ValueError, match=r"^batch_norm_affine_forward: x \(2, 3, 4, 5\), w \(2, 4\) and "
                                         r"b \(4, 2\) do not fit together"):
        K.batch_norm_affine_forward(x, per_channel, wrong, 1e-5)
    with pytest.raises(ValueError, match=r"^batch_norm_affine_backward: .*rstd \(2, 4\) and w \(4, 2\) do not fit"):
        K.batch_norm_affine_backward(x, x, per_channel, wrong)
