"""What tinymeta.heap's malloc settings are worth: one Omniglot MAML meta-iteration with
glibc's malloc left as it is (TINYMETA_MALLOC=system) and with freed blocks reused.

The setting of bench_meta.py (5-way 1-shot, 15 query, meta-batch 32, one inner step,
second order, float32, vectorised over tasks), both networks. malloc is set up when
tinymeta is imported, so each setting runs in a process of its own; the two alternate,
ROUNDS times each, and each process reports the median of its timed iterations.

    python benchmarks/bench_heap.py
"""
import datetime
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import machine_line, markdown_table, write_section  # noqa: E402

ROUNDS, ITERATIONS = 3, 4

ONE_PROCESS = """
import sys, time, statistics
sys.path.insert(0, {benchmarks!r})
import numpy as np
from bench_meta import OMNIGLOT_LR, WAY, omniglot_tasks
from tinymeta.meta import MAML
from tinymeta.nn import omniglot_cnn
from tinymeta.nn.functional import cross_entropy
tasks = omniglot_tasks(np.random.default_rng(1))
maml = MAML(omniglot_cnn(WAY, np.random.default_rng(0), downsample={downsample!r}), OMNIGLOT_LR, 1,
            loss_fn=cross_entropy, vectorize=True)
maml.meta_gradients(tasks)
times = []
for _ in range({iterations}):
    start = time.perf_counter()
    maml.meta_gradients(tasks)
    times.append(time.perf_counter() - start)
print(statistics.median(times))
"""


def seconds_per_iteration(downsample, malloc):
    script = ONE_PROCESS.format(benchmarks=os.path.dirname(os.path.abspath(__file__)), downsample=downsample,
                                iterations=ITERATIONS)
    result = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, TINYMETA_MALLOC=malloc),
                            capture_output=True, text=True, check=True)
    return float(result.stdout)


def main():
    rows = []
    for downsample in ("stride", "maxpool"):
        runs = {"system": [], "reuse": []}
        for _ in range(ROUNDS):
            for malloc in runs:
                runs[malloc].append(seconds_per_iteration(downsample, malloc))
        system, reuse = (statistics.median(runs[m]) for m in ("system", "reuse"))
        rows.append((f"{downsample} net", ", ".join(f"{t:.3f}" for t in runs["system"]),
                     ", ".join(f"{t:.3f}" for t in runs["reuse"]), f"{system / reuse:.2f}x"))
    table = markdown_table(("workload", "malloc as it is: s per iteration, each round",
                            "freed blocks reused (tinymeta.heap)", "speed-up (medians)"), rows)
    print(table)
    write_section("heap", "\n\n".join([
        "## Reusing freed memory: one Omniglot MAML meta-iteration with and without tinymeta.heap",
        f"`python benchmarks/bench_heap.py`, {datetime.date.today()}; {machine_line()}. 5-way 1-shot, 15 query, "
        f"meta-batch 32, second order, vectorised, float32; {ROUNDS} alternated rounds of one process per "
        f"setting, each the median of {ITERATIONS} iterations after one untimed.",
        table]))


if __name__ == "__main__":
    main()
