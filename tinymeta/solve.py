"""Conjugate gradient: solve A x = b for symmetric positive-definite A, given only x -> A x.

iMAML needs x = (I + H / lambda)^{-1} g with H a Hessian far too large to form;
a Hessian-vector product costs about two gradients, so a solver that touches A
only through products is what fits. Conjugate gradient (Hestenes & Stiefel,
1952) builds x from search directions p_0, p_1, ... that are A-conjugate
(p_i^T A p_j = 0): starting from x_0 = 0, residual r_0 = b,

    alpha_k = r_k^T r_k / p_k^T A p_k,   x_{k+1} = x_k + alpha_k p_k,   r_{k+1} = r_k - alpha_k A p_k,
    beta_k  = r_{k+1}^T r_{k+1} / r_k^T r_k,   p_{k+1} = r_{k+1} + beta_k p_k.

In exact arithmetic it finishes in at most n steps; in practice it stops when
||r_k|| <= tol * ||b||. Vectors are 1-D arrays (numpy or cupy): the caller
flattens its parameters.
"""
import warnings
from dataclasses import dataclass

import numpy as np


class ConvergenceWarning(RuntimeWarning):
    """conjugate_gradient stopped before its residual reached the tolerance."""


@dataclass(frozen=True)
class Solution:
    x: object            # the (approximate) solution, an array like b
    iterations: int      # products with A taken
    residual: float      # ||b - A x|| / ||b||, as the recurrence tracks it
    converged: bool


def conjugate_gradient(matvec, b, tol=1e-6, max_iter=None):
    """Solution of A x = b, A given as matvec(v) -> A v, from x_0 = 0.

    Stops once ||r|| <= tol * ||b||. Warns (ConvergenceWarning) and returns the
    current iterate if that takes more than max_iter products (default: len(b)),
    or if a direction with p^T A p <= 0 shows that A is not positive definite.
    """
    if b.ndim != 1:
        raise ValueError(f"conjugate_gradient: b must be a 1-D array, got shape {b.shape}")
    if tol <= 0:
        raise ValueError(f"conjugate_gradient: tol must be positive, got {tol}")
    max_iter = len(b) if max_iter is None else max_iter
    if max_iter < 1:
        raise ValueError(f"conjugate_gradient: max_iter must be at least 1, got {max_iter}")
    x = b * 0
    r, p = b.copy(), b.copy()
    rr = float((r * r).sum())
    b_norm = np.sqrt(rr)
    if b_norm == 0:
        return Solution(x, 0, 0.0, True)
    for k in range(1, max_iter + 1):
        ap = matvec(p)
        if ap.shape != b.shape:
            raise ValueError(f"conjugate_gradient: matvec returned shape {ap.shape} for a vector of shape {b.shape}")
        curvature = float((p * ap).sum())
        if curvature <= 0:
            _warn("a search direction had p^T A p <= 0, so A is not positive definite")
            return Solution(x, k, np.sqrt(rr) / b_norm, False)
        alpha = rr / curvature
        x = x + alpha * p
        r = r - alpha * ap
        rr_next = float((r * r).sum())
        if np.sqrt(rr_next) <= tol * b_norm:
            return Solution(x, k, np.sqrt(rr_next) / b_norm, True)
        p = r + (rr_next / rr) * p
        rr = rr_next
    _warn(f"the residual stayed above tol * ||b|| (tol {tol:g}) for all {max_iter} iterations")
    return Solution(x, max_iter, np.sqrt(rr) / b_norm, False)


def _warn(reason):
    # the message names no changing number, so the default warning filter shows it once, not every meta-step
    warnings.warn(f"conjugate_gradient did not converge: {reason}; the returned x is approximate "
                  "(allow more iterations, loosen tol, or make A better conditioned)", ConvergenceWarning,
                  stacklevel=3)
