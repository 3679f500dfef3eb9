"""Where one Omniglot MAML meta-iteration spends its time: a profile by function.

The setting of bench_meta.py (5-way 1-shot, 15 query, meta-batch 32, one inner step,
second order, float32; the stride-2 net unless --downsample maxpool; vectorised in
the library's default groups of tasks unless --per-task-loop), one
meta-iteration after a warm-up, under cProfile; the table lists the functions with
the most time of their own (time in BLAS and numpy counts to the Python function
that called them). The unprofiled time is the median of 3 calls.

    python benchmarks/profile_meta.py --label after                 # vectorised over tasks
    python benchmarks/profile_meta.py --label before --per-task-loop
    python benchmarks/profile_meta.py --label after-maxpool --downsample maxpool
    PYTHONPATH=/path/to/an/older/checkout python benchmarks/profile_meta.py --label before --per-task-loop
"""
import argparse
import cProfile
import datetime
import os
import pstats
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_meta import OMNIGLOT_LR, WAY, omniglot_tasks  # noqa: E402
from common import machine_line, markdown_table, write_section  # noqa: E402

import tinymeta  # noqa: E402
from tinymeta.meta import MAML  # noqa: E402
from tinymeta.nn import omniglot_cnn  # noqa: E402
from tinymeta.nn.functional import cross_entropy  # noqa: E402

ROWS = 12


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", required=True, help="names the RESULTS.md section, e.g. before or after")
    parser.add_argument("--per-task-loop", action="store_true", help="profile the per-task loop (vectorize=False)")
    parser.add_argument("--downsample", choices=("stride", "maxpool"), default="stride",
                        help="the net: stride-2 convolutions, or stride-1 ones with 2x2 max-pooling")
    args = parser.parse_args()
    model = omniglot_cnn(WAY, np.random.default_rng(0), downsample=args.downsample)
    tasks = omniglot_tasks(np.random.default_rng(1))
    maml = MAML(model, OMNIGLOT_LR, 1, loss_fn=cross_entropy, vectorize=not args.per_task_loop)
    maml.meta_gradients(tasks)  # warm-up: numba compiles, caches fill
    walls = []
    for _ in range(3):  # the heap may still be growing in the first calls
        start = time.perf_counter()
        maml.meta_gradients(tasks)
        walls.append(time.perf_counter() - start)
    wall = statistics.median(walls)
    profile = cProfile.Profile()
    profile.enable()
    maml.meta_gradients(tasks)
    profile.disable()
    stats = pstats.Stats(profile).stats  # {(file, line, function): (calls, _, own time, cumulative, _)}
    total = sum(own for _, _, own, _, _ in stats.values())
    top = sorted(stats.items(), key=lambda item: -item[1][2])[:ROWS]
    rows = [(f"`{_short(file)}:{function}`", calls, f"{own:.3f}", f"{own / total:.0%}")
            for (file, _, function), (calls, _, own, _, _) in top]
    table = markdown_table(("function", "calls", "own s", "share"), rows)
    print(table)
    mode = "per-task loop" if args.per_task_loop else "vectorised over tasks"
    write_section(f"profile-omniglot-{args.label}", "\n\n".join([
        f"## Profile of one Omniglot MAML meta-iteration ({args.label}: {args.downsample} net, {mode})",
        f"`python benchmarks/profile_meta.py --label {args.label}"
        f"{' --per-task-loop' if args.per_task_loop else ''}"
        f"{' --downsample maxpool' if args.downsample == 'maxpool' else ''}`, {datetime.date.today()}, tinymeta from "
        f"`{_short(os.path.dirname(tinymeta.__file__))}`; {machine_line()}. One meta-iteration took "
        f"{wall:.2f} s unprofiled (median of 3), {total:.2f} s of own time under cProfile; the top {ROWS} functions:",
        table]))


def _short(path):
    """The last two components of a path (package/module.py), or a builtin's name."""
    parts = path.replace("\\", "/").split("/")
    return "/".join(parts[-2:])


if __name__ == "__main__":
    main()
