"""Intra-op parallelism: large ops cut into slabs give numpy's own results, bit for bit."""
import threading
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinymeta.ops import threads


@pytest.fixture(scope="module")
def four_threads_small_grain():
    """Slice even small arrays, over four threads, so that hypothesis's shapes exercise the slabs."""
    pool = threads.ThreadPoolExecutor(3)
    with mock.patch.multiple(threads, THREADS=4, GRAIN=1, _pool=pool):
        yield
    pool.shutdown()


shapes = st.lists(st.integers(1, 7), min_size=1, max_size=4).map(tuple)


@given(shape=shapes, seed=st.integers(0, 10**6), data=st.data())
def test_elementwise_equals_numpy_with_broadcasting(four_threads_small_grain, shape, seed, data):
    rng = np.random.default_rng(seed)
    other = tuple(data.draw(st.sampled_from([n, 1])) for n in shape)[data.draw(st.integers(0, len(shape))):]
    a, b = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(other).astype(np.float32)
    for ufunc in (np.add, np.multiply, np.divide, np.maximum):
        np.testing.assert_array_equal(threads.elementwise(ufunc, a, b), ufunc(a, b))
        np.testing.assert_array_equal(threads.elementwise(ufunc, b, a), ufunc(b, a))
    np.testing.assert_array_equal(threads.elementwise(np.maximum, a, 0.0), np.maximum(a, 0.0))
    assert threads.elementwise(np.negative, a).dtype == np.float32


@given(shape=shapes, seed=st.integers(0, 10**6), data=st.data())
def test_sum_equals_numpy_over_any_axes(four_threads_small_grain, shape, seed, data):
    a = np.random.default_rng(seed).standard_normal(shape)
    axes = tuple(sorted(data.draw(st.sets(st.integers(0, len(shape) - 1)))))
    keepdims = data.draw(st.booleans())
    np.testing.assert_allclose(threads.sum(a, axes, keepdims), a.sum(axis=axes, keepdims=keepdims),
                               rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(threads.sum(a, None, keepdims), a.sum(keepdims=keepdims), rtol=1e-13)


def test_large_ops_use_the_pool_and_small_ones_do_not():
    a = np.ones((1024, 8), np.float32)
    with mock.patch.object(threads, "GRAIN", 1024), \
            mock.patch.object(threads, "_run_slabs", wraps=threads._run_slabs) as slabs:
        threads.elementwise(np.add, a[:2], a[:2])
        assert slabs.call_count == 0
        if threads.THREADS > 1:
            np.testing.assert_array_equal(threads.elementwise(np.add, a, a), 2 * a)
            assert slabs.call_count == 1


def test_large_sums_use_the_pool_and_small_ones_do_not(four_threads_small_grain):
    a = np.arange(4 * 512, dtype=np.float64).reshape(4, 512)   # the kept axis just long enough: one row per thread
    with mock.patch.object(threads, "GRAIN", a.size), \
            mock.patch.object(threads, "_run_slabs", wraps=threads._run_slabs) as slabs:
        np.testing.assert_array_equal(threads.sum(a[:, :8], (1,), False), a[:, :8].sum(axis=1))
        assert slabs.call_count == 0
        np.testing.assert_array_equal(threads.sum(a, (1,), False), a.sum(axis=1))
        assert slabs.call_count == 1


def test_a_result_with_one_row_per_thread_is_sliced(four_threads_small_grain):
    a = np.ones((threads.THREADS, 512), np.float32)
    with mock.patch.object(threads, "_run_slabs", wraps=threads._run_slabs) as slabs:
        np.testing.assert_array_equal(threads.elementwise(np.add, a, a), 2 * a)
    assert slabs.call_count == 1


@pytest.mark.parametrize("axis", [(2,), (0,), (0, 2)], ids=["no-axis-to-slice", "sliced", "two-axes"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_sums_have_numpys_dtype_and_shape(four_threads_small_grain, axis, keepdims):
    a = np.random.default_rng(0).standard_normal((3, 2, 8)).astype(np.float32)
    got, expected = threads.sum(a, axis, keepdims), a.sum(axis=axis, keepdims=keepdims)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_set_num_threads_resizes_the_pool_and_refuses_zero():
    before = threads.THREADS
    try:
        threads.set_num_threads(1)
        assert threads._pool is None
        a = np.ones((threads.GRAIN, 2), np.float32)
        np.testing.assert_array_equal(threads.elementwise(np.add, a, a), 2 * a)
        threads.set_num_threads(3)
        assert threads.THREADS == 3 and threads._pool is not None
        np.testing.assert_array_equal(threads.elementwise(np.add, a, a), 2 * a)
        with pytest.raises(ValueError, match="set_num_threads: need at least one thread, got 0"):
            threads.set_num_threads(0)
    finally:
        threads.set_num_threads(before)


def test_a_single_row_operand_broadcasts_over_every_slab(four_threads_small_grain):
    a, row = np.arange(24.0).reshape(8, 3), np.array([[1.0, -2.0, 3.0]])
    np.testing.assert_array_equal(threads.elementwise(np.add, a, row), a + row)
    np.testing.assert_array_equal(threads.elementwise(np.subtract, row, a), row - a)


@pytest.mark.parametrize("length", [4, 7, 10])
def test_slabs_cover_the_range_once_one_slab_per_thread(four_threads_small_grain, length):
    slabs = []
    threads._run_slabs(lambda lo, hi: slabs.append(range(length)[lo:hi]), length)
    assert len(slabs) == threads.THREADS
    assert sorted(i for slab in slabs for i in slab) == list(range(length))


def test_two_threads_run_a_large_op_on_the_caller_and_one_worker_named_tinymeta():
    before, caller, names = threads.THREADS, threading.current_thread().name, []

    def add(a, b, out=None):  # np.add that records which thread computes
        names.append(threading.current_thread().name)
        return np.add(a, b, out=out)

    a = np.ones((1024, 2), np.float32)
    try:
        threads.set_num_threads(2)
        with mock.patch.object(threads, "GRAIN", a.size):
            np.testing.assert_array_equal(threads.elementwise(add, a, a), 2 * a)
    finally:
        threads.set_num_threads(before)
    workers = [name for name in names if name != caller]
    assert len(workers) == 1 and workers[0].startswith("tinymeta"), names
