"""Engine overhead on the sine model: tinymeta against hand-written numpy and PyTorch.

The model is MAML's sine regressor, a 1-40-40-1 ReLU MLP, on a batch of 10
points (K = 10). Two workloads:

- first order: MSE forward + backward to the six parameter arrays;
- second order: one MAML task, i.e. the gradient (w.r.t. the initial parameters)
  of the query loss after one differentiable SGD step on the support loss.

The hand-written numpy version (forward, backward and, for second order, the
backward of the backward, all derived by hand) is the zero-overhead floor.
tinymeta runs each workload as written (eager: nodes, graph walk) and replayed
(tinymeta.Replay: the recorded primitives' array operations only).

    python benchmarks/bench_engine.py
"""
import datetime
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import comparison_table, interleaved_medians, machine_line, write_section  # noqa: E402

import tinymeta as tm  # noqa: E402

SIZES = [(1, 40), (40, 40), (40, 1)]
K, INNER_LR = 10, 0.01


def init_params(rng):
    params = []
    for fan_in, fan_out in SIZES:
        params.append((rng.uniform(-1, 1, (fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32))
        params.append(np.zeros(fan_out, dtype=np.float32))
    return params


# --- hand-written numpy: the floor ----------------------------------------
def numpy_first_order(params, x, y):
    w1, b1, w2, b2, w3, b3 = params
    z1 = x @ w1 + b1
    h1 = np.maximum(z1, 0)
    z2 = h1 @ w2 + b2
    h2 = np.maximum(z2, 0)
    out = h2 @ w3 + b3
    d_out = 2.0 * (out - y) / out.size
    g_w3, g_b3 = h2.T @ d_out, d_out.sum(0)
    d_z2 = (d_out @ w3.T) * (z2 > 0)
    g_w2, g_b2 = h1.T @ d_z2, d_z2.sum(0)
    d_z1 = (d_z2 @ w2.T) * (z1 > 0)
    g_w1, g_b1 = x.T @ d_z1, d_z1.sum(0)
    return [g_w1, g_b1, g_w2, g_b2, g_w3, g_b3]


def numpy_second_order(params, xs, ys, xq, yq):
    """MAML meta-gradient for one task, derived by hand (ReLU masks are constant almost everywhere).

    Forward through the support loss, its gradient g(phi), theta = phi - lr g, the
    query-loss gradient q at theta, then the meta-gradient q - lr * H(phi) q, with
    the Hessian-vector product H q done as a forward-mode pass over the support
    backward (the tangent of g along q).
    """
    w1, b1, w2, b2, w3, b3 = params
    m1 = (xs @ w1 + b1) > 0
    h1 = (xs @ w1 + b1) * m1
    m2 = (h1 @ w2 + b2) > 0
    h2 = (h1 @ w2 + b2) * m2
    out = h2 @ w3 + b3
    scale = 2.0 / out.size
    d_out = scale * (out - ys)
    d_z2 = (d_out @ w3.T) * m2
    d_z1 = (d_z2 @ w2.T) * m1
    g = [xs.T @ d_z1, d_z1.sum(0), h1.T @ d_z2, d_z2.sum(0), h2.T @ d_out, d_out.sum(0)]
    theta = [p - INNER_LR * gp for p, gp in zip(params, g)]
    q = numpy_first_order(theta, xq, yq)
    # tangent of the support backward along direction q (forward mode), gives H q
    t_w1, t_b1, t_w2, t_b2, t_w3, t_b3 = q
    t_h1 = (xs @ t_w1 + t_b1) * m1
    t_h2 = (t_h1 @ w2 + h1 @ t_w2 + t_b2) * m2
    t_out = t_h2 @ w3 + h2 @ t_w3 + t_b3
    t_d_out = scale * t_out
    t_d_z2 = (t_d_out @ w3.T + d_out @ t_w3.T) * m2
    t_d_z1 = (t_d_z2 @ w2.T + d_z2 @ t_w2.T) * m1
    hq = [xs.T @ t_d_z1, t_d_z1.sum(0), t_h1.T @ d_z2 + h1.T @ t_d_z2, t_d_z2.sum(0),
          t_h2.T @ d_out + h2.T @ t_d_out, t_d_out.sum(0)]
    return [qp - INNER_LR * hp for qp, hp in zip(q, hq)]


# --- tinymeta ---------------------------------------------------------------
def tm_loss(params, x, y):
    w1, b1, w2, b2, w3, b3 = params
    h = tm.relu(x @ w1 + b1)
    h = tm.relu(h @ w2 + b2)
    return tm.mean((h @ w3 + b3 - y) ** 2)


def tm_first_order(params, x, y):
    return tm.grad(tm_loss(params, x, y), params)


def tm_second_order(params, xs, ys, xq, yq):
    g = tm.grad(tm_loss(params, xs, ys), params, create_graph=True)
    theta = [p - INNER_LR * gp for p, gp in zip(params, g)]
    return tm.grad(tm_loss(theta, xq, yq), params)


# --- PyTorch (optional) -----------------------------------------------------
def torch_functions(torch):
    def loss(params, x, y):
        w1, b1, w2, b2, w3, b3 = params
        h = torch.relu(x @ w1 + b1)
        h = torch.relu(h @ w2 + b2)
        return ((h @ w3 + b3 - y) ** 2).mean()

    def first(params, x, y):
        return torch.autograd.grad(loss(params, x, y), params)

    def second(params, xs, ys, xq, yq):
        g = torch.autograd.grad(loss(params, xs, ys), params, create_graph=True)
        theta = [p - INNER_LR * gp for p, gp in zip(params, g)]
        return torch.autograd.grad(loss(theta, xq, yq), params)

    return first, second


def check_agreement(params, data, tm_params, tm_data):
    """The three implementations must compute the same gradients before their speed means anything."""
    for ours, floor in ((tm_first_order(tm_params, *tm_data[:2]), numpy_first_order(params, *data[:2])),
                        (tm_second_order(tm_params, *tm_data), numpy_second_order(params, *data))):
        for a, b in zip(ours, floor):
            np.testing.assert_allclose(a.data, b, rtol=2e-4, atol=1e-5)


def main():
    rng = np.random.default_rng(0)
    params = init_params(rng)
    data = [rng.uniform(-5, 5, (K, 1)).astype(np.float32) for _ in range(4)]
    tm_params = [tm.tensor(p, requires_grad=True) for p in params]
    tm_data = [tm.tensor(d) for d in data]
    check_agreement(params, data, tm_params, tm_data)

    replayed_first = tm.Replay(lambda *t: tm_first_order(list(t[:6]), *t[6:]))
    replayed_second = tm.Replay(lambda *t: tm_second_order(list(t[:6]), *t[6:]))
    for ours, floor in ((replayed_first(*tm_params, *tm_data[:2]), numpy_first_order(params, *data[:2])),
                        (replayed_second(*tm_params, *tm_data), numpy_second_order(params, *data))):
        for a, b in zip(ours, floor):
            np.testing.assert_allclose(a.data, b, rtol=2e-4, atol=1e-5)
    timings = {
        ("first order", "numpy (hand-written)"): lambda: numpy_first_order(params, *data[:2]),
        ("first order", "tinymeta"): lambda: tm_first_order(tm_params, *tm_data[:2]),
        ("first order", "tinymeta, replayed"): lambda: replayed_first(*tm_params, *tm_data[:2]),
        ("second order", "numpy (hand-written)"): lambda: numpy_second_order(params, *data),
        ("second order", "tinymeta"): lambda: tm_second_order(tm_params, *tm_data),
        ("second order", "tinymeta, replayed"): lambda: replayed_second(*tm_params, *tm_data),
    }
    try:
        import torch
        torch.set_num_threads(os.cpu_count())
        first, second = torch_functions(torch)
        t_params = [torch.tensor(p, requires_grad=True) for p in params]
        t_data = [torch.tensor(d) for d in data]
        timings[("first order", "PyTorch eager")] = lambda: first(t_params, *t_data[:2])
        timings[("second order", "PyTorch eager")] = lambda: second(t_params, *t_data)
        torch_note = f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads"
    except ImportError:
        torch_note = "PyTorch not installed: its rows are missing"

    medians = interleaved_medians(timings, rounds=60, calls=5, warmup=30)
    table = comparison_table(medians, "median µs", 1e6, [("vs numpy floor", "numpy (hand-written)"),
                                                         ("vs PyTorch", "PyTorch eager")])
    print(table)
    write_section("engine", "\n\n".join([
        "## Engine overhead: sine MLP 1-40-40-1, batch 10, float32",
        f"`python benchmarks/bench_engine.py`, {datetime.date.today()}; {machine_line()}; {torch_note}; "
        "medians of 300 calls each, the implementations taking turns (60 rounds of 5 calls).",
        "Second order = gradient of the query loss after one differentiable inner SGD step (one MAML task).",
        table]))


if __name__ == "__main__":
    main()
