"""Conjugate gradient on systems whose solution is known."""
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinymeta.solve import ConvergenceWarning, conjugate_gradient


def spd_system(n, seed, condition=10.0):
    """A = Q diag(eigenvalues) Q^T with eigenvalues in [1, condition], a known x, b = A x."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = q @ np.diag(np.linspace(1.0, condition, n)) @ q.T
    x = rng.standard_normal(n)
    return a, x, a @ x


@given(n=st.integers(1, 30), seed=st.integers(0, 2**31), condition=st.floats(1.0, 1e3))
def test_solves_a_symmetric_positive_definite_system_to_the_tolerance(n, seed, condition):
    a, x, b = spd_system(n, seed, condition)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        solution = conjugate_gradient(lambda v: a @ v, b, tol=1e-10, max_iter=5 * n)
    assert solution.converged and solution.iterations <= 5 * n
    true_residual = np.linalg.norm(b - a @ solution.x) / np.linalg.norm(b)
    assert true_residual <= 1e-9     # the recurrence's residual tracks the true one
    np.testing.assert_allclose(solution.x, x, atol=1e-7 * condition * np.linalg.norm(x))


def test_stops_as_soon_as_the_residual_is_below_the_tolerance():
    a, _, b = spd_system(40, 0, condition=100.0)
    loose = conjugate_gradient(lambda v: a @ v, b, tol=1e-2)
    tight = conjugate_gradient(lambda v: a @ v, b, tol=1e-10)
    assert loose.iterations < tight.iterations
    assert 1e-10 < loose.residual <= 1e-2
    products = []
    conjugate_gradient(lambda v: products.append(1) or a @ v, b, tol=1e-2)
    assert len(products) == loose.iterations


def test_the_default_tolerance_is_a_relative_residual_of_1e_6():
    a, _, b = spd_system(40, 3, condition=100.0)
    default = conjugate_gradient(lambda v: a @ v, b)
    explicit = conjugate_gradient(lambda v: a @ v, b, tol=1e-6)
    assert default.residual <= 1e-6 and default.iterations == explicit.iterations
    np.testing.assert_array_equal(default.x, explicit.x)


def test_takes_no_more_products_than_max_iter():
    a, _, b = spd_system(50, 2, condition=1e4)
    products = []
    with pytest.warns(ConvergenceWarning):
        conjugate_gradient(lambda v: products.append(1) or a @ v, b, tol=1e-8, max_iter=3)
    assert len(products) == 3


def test_a_single_iteration_is_allowed():
    solution = conjugate_gradient(lambda v: 2 * v, np.ones(3), max_iter=1)
    assert solution.converged and solution.iterations == 1
    np.testing.assert_allclose(solution.x, 0.5 * np.ones(3))


def test_exact_in_n_steps_for_few_distinct_eigenvalues():
    """CG's defining property: with k distinct eigenvalues it is exact after k products."""
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((20, 20)))
    a = q @ np.diag(np.repeat([1.0, 4.0, 9.0], [7, 7, 6])) @ q.T
    b = rng.standard_normal(20)
    solution = conjugate_gradient(lambda v: a @ v, b, tol=1e-10)
    assert solution.iterations == 3
    np.testing.assert_allclose(a @ solution.x, b, atol=1e-9)


def test_warns_when_the_allowed_iterations_are_not_enough():
    a, x, b = spd_system(50, 2, condition=1e4)
    with pytest.warns(ConvergenceWarning, match="residual stayed above tol .* for all 3 iterations"):
        solution = conjugate_gradient(lambda v: a @ v, b, tol=1e-8, max_iter=3)
    assert solution.converged is False and solution.iterations == 3 and solution.residual > 1e-8
    true_residual = np.linalg.norm(b - a @ solution.x) / np.linalg.norm(b)
    assert solution.residual == pytest.approx(true_residual, rel=1e-6)
    # still the best it could do: closer to x than the starting point 0
    assert np.linalg.norm(solution.x - x) < np.linalg.norm(x)


def test_stops_when_the_residual_reaches_the_tolerance_exactly():
    """A = diag(1, 3), b = (1, 1): the first step leaves r = (1/2, -1/2), ||r|| = ||b|| / 2 exactly."""
    solution = conjugate_gradient(lambda v: np.array([1.0, 3.0]) * v, np.ones(2), tol=0.5)
    assert solution.converged and solution.iterations == 1 and solution.residual == 0.5


def test_warns_on_a_matrix_that_is_not_positive_definite():
    a = np.diag([1.0, -1.0])
    with pytest.warns(ConvergenceWarning, match=r"did not converge: a search direction had p\^T A p <= 0, so A is "
                                                "not positive definite;"):
        solution = conjugate_gradient(lambda v: a @ v, np.array([1.0, 1.0]))
    assert solution.converged is False


def test_on_a_first_direction_of_no_curvature_it_returns_b_as_newton_cg_does():
    """A = diag(1, -1), b = (1, 1): the first direction b has b^T A b = 0; the iterate 0 it had would be no
    answer at all, so it returns b, the solution were A the identity."""
    a, b = np.diag([1.0, -1.0]), np.array([1.0, 1.0])
    with pytest.warns(ConvergenceWarning):
        solution = conjugate_gradient(lambda v: a @ v, b)
    assert solution.iterations == 1
    np.testing.assert_array_equal(solution.x, b)
    assert solution.residual == pytest.approx(np.linalg.norm(b - a @ solution.x) / np.linalg.norm(b), rel=1e-12)


def test_returning_b_it_reports_the_residual_of_b():
    """A = diag(1, -3), b = (1, 1): b^T A b = -2, so x = b, whose residual b - A b = (0, 4) has norm 4."""
    with pytest.warns(ConvergenceWarning):
        solution = conjugate_gradient(lambda v: np.array([1.0, -3.0]) * v, np.ones(2))
    assert solution.residual == pytest.approx(4 / np.sqrt(2), rel=1e-12)


def test_the_residual_is_relative_to_b_also_when_b_is_small():
    a, _, b = spd_system(30, 5, condition=1e3)
    with pytest.warns(ConvergenceWarning):
        small = conjugate_gradient(lambda v: a @ v, b * 1e-3 / np.linalg.norm(b), tol=1e-12, max_iter=3)
    assert small.residual == pytest.approx(np.linalg.norm(b * 1e-3 / np.linalg.norm(b) - a @ small.x) * 1e3, rel=1e-6)


def test_on_a_later_direction_of_negative_curvature_it_returns_the_iterate_it_had():
    """A = diag(1, 1, -3), b = (1, 1, 0.1): b^T A b > 0, so one step is taken; its residual direction has
    negative curvature, so x stays at x_1 = alpha_0 b."""
    a, b = np.diag([1.0, 1.0, -3.0]), np.array([1.0, 1.0, 0.1])
    alpha = (b @ b) / (b @ a @ b)
    with pytest.warns(ConvergenceWarning, match="not positive definite"):
        solution = conjugate_gradient(lambda v: a @ v, b)
    assert solution.iterations == 2 and not solution.converged
    np.testing.assert_allclose(solution.x, alpha * b, rtol=1e-14)
    assert solution.residual == pytest.approx(np.linalg.norm(b - a @ solution.x) / np.linalg.norm(b), rel=1e-12)


def block_matvec(matrices):
    """v (m, n) -> rows A_i v_i: m independent systems whose products are taken together."""
    return lambda v: np.stack([a @ row for a, row in zip(matrices, v)])


@given(m=st.integers(1, 5), n=st.integers(1, 12), seed=st.integers(0, 2**31), max_iter=st.integers(1, 15),
       condition=st.floats(1.0, 1e3))
def test_each_row_of_a_2d_b_comes_out_as_its_own_solve(m, n, seed, max_iter, condition):
    """Rows stop on their own (some converge early, some run out of iterations): each equals the 1-D solve."""
    systems = [spd_system(n, seed + i, condition ** (i / m)) for i in range(m)]
    matrices, b = [a for a, _, _ in systems], np.stack([rhs for _, _, rhs in systems])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        together = conjugate_gradient(block_matvec(matrices), b, tol=1e-8, max_iter=max_iter)
        alone = [conjugate_gradient(lambda v, a=a: a @ v, rhs, tol=1e-8, max_iter=max_iter)
                 for a, rhs in zip(matrices, b)]
    assert together.x.shape == b.shape
    for row, solution in zip(together.x, alone):
        np.testing.assert_allclose(row, solution.x, rtol=1e-12, atol=1e-14)
    assert together.iterations == max(s.iterations for s in alone)
    assert together.residual == pytest.approx(max(s.residual for s in alone), rel=1e-12)
    assert together.converged == all(s.converged for s in alone)


def test_rows_that_return_b_each_report_their_own_residual():
    """Two rows bent at the first direction: diag(1, -3) with b = (1, 1) (residual 4 / sqrt 2) and diag(1, -1)
    with b = (1, 2) (b - A b = (0, 4), residual 4 / sqrt 5); the solution's residual is the larger."""
    matrices = [np.diag([1.0, -3.0]), np.diag([1.0, -1.0])]
    b = np.array([[1.0, 1.0], [1.0, 2.0]])
    with pytest.warns(ConvergenceWarning):
        solution = conjugate_gradient(block_matvec(matrices), b)
        alone = [conjugate_gradient(lambda v, a=a: a @ v, rhs) for a, rhs in zip(matrices, b)]
    np.testing.assert_array_equal(solution.x, b)
    assert solution.residual == pytest.approx(4 / np.sqrt(2), rel=1e-12)
    assert [s.residual for s in alone] == pytest.approx([4 / np.sqrt(2), 4 / np.sqrt(5)], rel=1e-12)


def test_a_row_that_is_not_positive_definite_stops_alone():
    good, _, b_good = spd_system(6, 0, condition=50.0)
    bad = np.diag([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    b = np.stack([b_good, np.ones(6), np.zeros(6)])
    with pytest.warns(ConvergenceWarning, match="not positive definite"):
        solution = conjugate_gradient(block_matvec([good, bad, good]), b, tol=1e-10)
    np.testing.assert_allclose(good @ solution.x[0], b_good, atol=1e-9)   # ran on to the tolerance
    np.testing.assert_array_equal(solution.x[1], np.ones(6))                 # b itself, as alone
    np.testing.assert_array_equal(solution.x[2], np.zeros(6))                # a zero right-hand side
    assert solution.iterations > 1 and not solution.converged


def test_the_warning_points_at_the_line_that_called_the_solver():
    with pytest.warns(ConvergenceWarning) as record:
        conjugate_gradient(lambda v: np.diag([1.0, -1.0]) @ v, np.array([1.0, 1.0]))
    assert [w.filename for w in record] == [__file__]


def test_the_warning_says_the_result_is_approximate_and_what_would_help():
    with pytest.warns(ConvergenceWarning) as record:
        conjugate_gradient(lambda v: np.diag([1.0, -1.0]) @ v, np.array([1.0, 1.0]))
    assert str(record[0].message).endswith("; the returned x is approximate (allow more iterations, loosen tol, "
                                           "or make A better conditioned)")


def test_zero_right_hand_side_gives_zero_without_a_product():
    solution = conjugate_gradient(lambda v: pytest.fail("no product needed"), np.zeros(4))
    assert solution.converged and solution.iterations == 0 and solution.residual == 0.0 and not solution.x.any()


@pytest.mark.parametrize("b, kwargs, message", [
    (np.ones((2, 2, 2)), {}, r"b must be a 1-D array \(or 2-D, one system per row\), got shape \(2, 2, 2\)"),
    (np.ones(2), {"tol": 0.0}, "tol must be positive"),
    (np.ones(2), {"max_iter": 0}, "max_iter must be at least 1")])
def test_bad_arguments_are_refused(b, kwargs, message):
    with pytest.raises(ValueError, match=f"conjugate_gradient: {message}"):
        conjugate_gradient(lambda v: v, b, **kwargs)


def test_a_matvec_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"matvec returned shape \(3,\) for a vector of shape \(2,\)"):
        conjugate_gradient(lambda v: np.ones(3), np.ones(2))
