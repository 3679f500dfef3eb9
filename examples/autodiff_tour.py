"""A tour of tinymeta's autodiff: every derivative it prints is checked against numbers.

    python examples/autodiff_tour.py

1. a gradient, 2. a second derivative (differentiating a gradient),
3. a Hessian-vector product for an MLP loss, each compared with central finite
differences computed here in plain numpy, and 4. the same check done by the
library's own `check_grads` to third order.
"""
import numpy as np

import tinymeta as tm

EPS = 1e-6


def show(what, ours, numeric):
    ours, numeric = np.asarray(ours, dtype=float), np.asarray(numeric, dtype=float)
    error = np.max(np.abs(ours - numeric))
    print(f"{what:<46} autodiff {np.array2string(ours.ravel()[:4], precision=6):<40} "
          f"finite differences {np.array2string(numeric.ravel()[:4], precision=6):<40} max error {error:.1e}")
    assert error < 1e-5 * max(1.0, np.max(np.abs(numeric))), f"{what}: autodiff and finite differences disagree"


def f(x):
    """f(x) = sum(sin(x) * x^2)."""
    return tm.sum(tm.sin(x) * x ** 2)


def f_numpy(x):
    return np.sum(np.sin(x) * x ** 2)


def central_difference(fn, x, direction):
    return (fn(x + EPS * direction) - fn(x - EPS * direction)) / (2 * EPS)


def main():
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal(3)

    # 1. gradient: df/dx_i, one finite difference per coordinate
    x = tm.tensor(x0, requires_grad=True)
    (g,) = tm.grad(f(x), [x], create_graph=True)
    numeric = [central_difference(f_numpy, x0, e) for e in np.eye(3)]
    show("1. gradient of sum(sin(x) x^2)", g.data, numeric)

    # 2. second derivative: differentiate the first coordinate of the gradient again
    (g0_grad,) = tm.grad(g[0], [x])
    grad0 = lambda z: 2 * z[0] * np.sin(z[0]) + z[0] ** 2 * np.cos(z[0])  # noqa: E731  d f/d x_0
    numeric = [central_difference(grad0, x0, e) for e in np.eye(3)]
    show("2. d/dx of df/dx_0 (a Hessian row)", g0_grad.data, numeric)

    # 3. Hessian-vector product of a small tanh MLP's loss, against differences of its gradient
    w = rng.standard_normal((4, 3))
    data = rng.standard_normal((5, 4))
    v = rng.standard_normal((4, 3))

    def loss(weights):
        return tm.mean(tm.tanh(tm.tensor(data) @ weights) ** 2)

    def loss_grad(weights_array):
        return tm.vjp(loss, tm.tensor(weights_array))[1].data

    _, hv = tm.hvp(loss, tm.tensor(w), tm.tensor(v))
    numeric = (loss_grad(w + EPS * v) - loss_grad(w - EPS * v)) / (2 * EPS)
    show("3. Hessian-vector product, tanh MLP loss", hv.data, numeric)

    # 4. the library's own check, along random directions, up to third order
    tm.check_grads(lambda z: tm.sum(tm.sin(z) * z ** 2), x0, order=3)
    print("4. check_grads(order=3) on sum(sin(x) x^2): first, second and third derivatives agree")


if __name__ == "__main__":
    main()
