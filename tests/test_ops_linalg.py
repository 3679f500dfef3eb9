"""matmul's backward reads operands transposed instead of adding transpose nodes: every
combination of transposed reads is reached by third derivatives, checked here."""
import numpy as np
import pytest

import tinymeta as tm
from tinymeta.ops.linalg import MatMul


@pytest.mark.parametrize("a_shape, b_shape", [((3, 4), (4, 2)), ((2, 3, 4), (4, 5)), ((4,), (2, 4, 3)),
                                              ((2, 1, 3, 4), (3, 4, 2)), ((4,), (4,))])
def test_matmul_third_derivatives(a_shape, b_shape):
    rng = np.random.default_rng(0)
    tm.check_grads(lambda a, b: tm.sum(tm.tanh(a @ b)), rng.standard_normal(a_shape), rng.standard_normal(b_shape),
                   order=3, directions=1)


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_transposed_reads_match_numpy_and_differentiate(transpose_a, transpose_b):
    rng = np.random.default_rng(1)
    # op(a) is (2, 3, 4) and op(b) (2, 4, 5) in every case: rectangular, so a missed transpose fails
    a = rng.standard_normal((2, 4, 3) if transpose_a else (2, 3, 4))
    b = rng.standard_normal((2, 5, 4) if transpose_b else (2, 4, 5))
    expected = (a.swapaxes(-1, -2) if transpose_a else a) @ (b.swapaxes(-1, -2) if transpose_b else b)

    def product(x, y):
        return MatMul.apply(x, y, transpose_a=transpose_a, transpose_b=transpose_b)

    np.testing.assert_allclose(product(tm.tensor(a), tm.tensor(b)).data, expected, rtol=1e-12)
    tm.check_grads(lambda x, y: tm.sum(tm.tanh(product(x, y))), a, b, order=2)
