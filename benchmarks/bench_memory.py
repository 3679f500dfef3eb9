"""Peak memory of one meta-gradient against the number of inner steps: MAML against iMAML.

MAML's second-order meta-gradient differentiates through every inner step, so the
graph it keeps until the outer backward pass holds every step's activations and
parameters: memory grows with the steps. iMAML's inner steps record nothing and
its meta-gradient comes from a linear solve at the last iterate, so memory should
stay flat. Measured with tracemalloc (numpy reports its array buffers to it): the
peak bytes allocated during one call of meta_gradients, above what was held
before it. The median wall time of the call is given beside, as a ratio to MAML
with one step in the same run.

Workload: the sine MLP (1-40-40-1 ReLU), meta-batch 25 tasks of K = 10 support and
10 query points, vectorised over the meta-batch, float32, inner lr 0.01; iMAML
with lambda 20 and 5 conjugate-gradient iterations.

    python benchmarks/bench_memory.py
"""
import datetime
import os
import sys
import time
import tracemalloc
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import machine_line, markdown_table, median_seconds, write_section  # noqa: E402

from tinymeta.data import SineTasks  # noqa: E402
from tinymeta.meta import IMAML, MAML  # noqa: E402
from tinymeta.nn import sine_mlp  # noqa: E402
from tinymeta.solve import ConvergenceWarning  # noqa: E402

STEPS = (1, 5, 20, 50)
META_BATCH, INNER_LR, LAMBDA, CG_STEPS = 25, 0.01, 20.0, 5


def learners(model, steps):
    return {"MAML (second order)": MAML(model, INNER_LR, steps, vectorize=True),
            "iMAML": IMAML(model, INNER_LR, steps, LAMBDA, cg_steps=CG_STEPS, vectorize=True)}


def peak_bytes(learner, tasks):
    """Peak bytes allocated while computing one meta-gradient, above those held before."""
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        learner.meta_gradients(tasks)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before


def main():
    warnings.simplefilter("ignore", ConvergenceWarning)  # 5 CG iterations is a truncated solve on purpose
    started = time.perf_counter()
    model = sine_mlp(np.random.default_rng(0))
    tasks = SineTasks(shots=10, queries=10).sample(META_BATCH, np.random.default_rng(1))
    peaks, seconds = {}, {}
    for steps in STEPS:
        for name, learner in learners(model, steps).items():
            learner.meta_gradients(tasks)   # warm-up: first-call costs stay out of the figures
            peaks[name, steps] = peak_bytes(learner, tasks)
            seconds[name, steps] = median_seconds(lambda: learner.meta_gradients(tasks), repeats=5, warmup=1)
    reference = seconds["MAML (second order)", 1]
    rows = [(name, steps, f"{peaks[name, steps] / 2**20:.2f}", f"{peaks[name, steps] / peaks[name, 1]:.1f}x",
             f"{seconds[name, steps] * 1e3:.1f}", f"{seconds[name, steps] / reference:.1f}x")
            for name in learners(model, 1) for steps in STEPS]
    table = markdown_table(("meta-learner", "inner steps", "peak MiB", "vs 1 step", "median ms",
                            "time vs MAML 1 step"), rows)
    section = "\n".join([
        "## Memory of one meta-gradient against inner steps: MAML against iMAML",
        "",
        f"`python benchmarks/bench_memory.py`, {datetime.date.today()}, {time.perf_counter() - started:.0f} s; "
        f"{machine_line()}.",
        "",
        f"Sine MLP 1-40-40-1, meta-batch {META_BATCH} (vectorised), K = 10 support + 10 query, float32, inner lr "
        f"{INNER_LR}; iMAML lambda {LAMBDA:g}, {CG_STEPS} CG iterations. Peak: tracemalloc's peak of the bytes "
        "allocated during one `meta_gradients` call, above those held before it. Time: median of 5 calls.",
        "",
        table])
    print(section)
    write_section("memory", section)


if __name__ == "__main__":
    main()
