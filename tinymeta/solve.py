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
flattens its parameters. A 2-D b of shape (m, n) holds m independent systems
A_i x_i = b_i whose products are taken together (matvec maps (m, n) to (m, n),
as a vectorised meta-batch's block-diagonal Hessian does): each row has its own
alpha and beta and stops on its own, so row i comes out exactly as a solve of
b_i alone would.

A direction with p^T A p <= 0 shows that A is not positive definite, and CG
stops there with the iterate it had, as truncated Newton-CG does (Nocedal &
Wright, Numerical Optimization, Algorithm 7.1); at the first direction that
iterate would be 0, so, as there, it returns b itself, the answer of A = I.
"""
import warnings
from dataclasses import dataclass

from .backend import get_array_module


class ConvergenceWarning(RuntimeWarning):
    """conjugate_gradient stopped before its residual reached the tolerance."""


@dataclass(frozen=True)
class Solution:
    x: object            # the (approximate) solution, an array like b
    iterations: int      # products with A taken
    residual: float      # ||b - A x|| / ||b||, as the recurrence tracks it (the largest row's, for a 2-D b)
    converged: bool      # every row reached the tolerance


def conjugate_gradient(matvec, b, tol=1e-6, max_iter=None):
    """Solution of A x = b (each row of a 2-D b its own system), A given as matvec(v) -> A v, from x_0 = 0.

    A row stops once ||r|| <= tol * ||b||. Warns (ConvergenceWarning) and returns
    the current iterate of a row if that takes more than max_iter products
    (default: n), or if a direction with p^T A p <= 0 shows that A is not
    positive definite (b itself if that is the first direction).
    """
    if b.ndim not in (1, 2):
        raise ValueError(f"conjugate_gradient: b must be a 1-D array (or 2-D, one system per row), got shape {b.shape}")
    if tol <= 0:
        raise ValueError(f"conjugate_gradient: tol must be positive, got {tol}")
    max_iter = b.shape[-1] if max_iter is None else max_iter
    if max_iter < 1:
        raise ValueError(f"conjugate_gradient: max_iter must be at least 1, got {max_iter}")
    xp = get_array_module(b)
    rows = b.reshape(-1, b.shape[-1])
    x, r, p = rows * 0, rows.copy(), rows.copy()
    rr = (r * r).sum(axis=1)
    b_norm = xp.sqrt(rr)
    running, indefinite = b_norm > 0, False
    iterations = 0
    while running.any() and iterations < max_iter:
        iterations += 1
        ap = matvec(p.reshape(b.shape))
        if ap.shape != b.shape:
            raise ValueError(f"conjugate_gradient: matvec returned shape {ap.shape} for a vector of shape {b.shape}")
        ap = ap.reshape(rows.shape)
        curvature = (p * ap).sum(axis=1)
        bent = running & (curvature <= 0)
        if bent.any():
            indefinite = True
            if iterations == 1:    # x = b: its residual is b - A b, and p = b
                x[bent], r[bent] = rows[bent], rows[bent] - ap[bent]
                rr[bent] = (r[bent] * r[bent]).sum(axis=1)
            running = running & ~bent
        alpha = xp.where(running, rr / xp.where(running, curvature, 1), 0)
        x = x + alpha[:, None] * p
        r = r - alpha[:, None] * ap
        rr_next = xp.where(running, (r * r).sum(axis=1), rr)
        stepped = running
        running = running & (xp.sqrt(rr_next) > tol * b_norm)
        p = xp.where(running[:, None], r + (rr_next / xp.where(stepped, rr, 1))[:, None] * p, 0)
        rr = rr_next
    residual = float(xp.max(xp.sqrt(rr) / xp.where(b_norm > 0, b_norm, 1)))
    if indefinite:
        _warn("a search direction had p^T A p <= 0, so A is not positive definite")
    if running.any():
        _warn(f"the residual stayed above tol * ||b|| (tol {tol:g}) for all {max_iter} iterations")
    return Solution(x.reshape(b.shape), iterations, residual, not (indefinite or running.any()))


def _warn(reason):
    # the message names no changing number, so the default warning filter shows it once, not every meta-step
    warnings.warn(f"conjugate_gradient did not converge: {reason}; the returned x is approximate "
                  "(allow more iterations, loosen tol, or make A better conditioned)", ConvergenceWarning,
                  stacklevel=3)
