"""Omniglot MAML meta-iterations per second in one process and in two MPI processes, and a scaling model.

    flock /tmp/tinymeta-cpu.lock python benchmarks/bench_mpi.py

The setting is examples/omniglot.py's meta-training default: 5-way 1-shot,
1 query drawing per class, meta-batch 32, one second-order inner step (lr 0.4),
the stride-2 conv net, float32, Adam outside; images are random (the time
does not depend on them). The script launches itself twice on the same
meta-batches: `python bench_mpi.py --worker` (1 process, numba and BLAS at
their default of every core) and `mpiexec -n 2 python bench_mpi.py --worker`
(2 processes, which tinymeta.meta.distributed gives cores / 2 threads each).
Each worker times `meta_train` itself, after one untimed iteration. The
two-process worker also measures the pieces of the scaling model: drawing a
task, the meta-gradient of one task on one thread, and the Allreduce of the
flat meta-gradient buffer.
"""
import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import cpu_jiffies, machine_line, markdown_table, write_section  # noqa: E402

WAY, SHOT, QUERY, INNER_LR = 5, 1, 1, 0.4
NETWORKS = (("10 Gb/s Ethernet", 10e9, 25e-6), ("100 Gb/s InfiniBand", 100e9, 2e-6))  # bits/s, latency alpha
RANKS = (8, 64, 512)


def worker(args):
    from tinymeta.data.sampler import FewShotSampler
    from tinymeta.meta import MAML, meta_train
    from tinymeta.meta.distributed import communicator
    from tinymeta.nn import omniglot_cnn
    from tinymeta.nn.functional import cross_entropy
    from tinymeta.optim import Adam

    processes = communicator()
    images = np.random.default_rng(0).random((1000, 20, 28, 28), dtype=np.float32)
    source = FewShotSampler(images, WAY, SHOT, QUERY)
    model = omniglot_cnn(WAY, np.random.default_rng(1))
    learner = MAML(model, INNER_LR, 1, loss_fn=cross_entropy)
    optimizer = Adam(model.parameters_dict(), lr=1e-3)

    def train(iterations):
        return meta_train(learner, source, optimizer, iterations, args.meta_batch, np.random.default_rng(2),
                          progress=False, communicator=processes)

    train(1)  # warm-up: numba's cached kernels load, buffers are allocated
    start = time.perf_counter()
    train(args.iters)
    seconds = (time.perf_counter() - start) / args.iters
    report = {"processes": processes.size, "threads": _threads(), "seconds_per_iteration": seconds}
    if processes.size > 1:
        report.update(_pieces(processes, learner, source, args.meta_batch))
    if processes.is_root:
        print(json.dumps(report))


def _threads():
    import numba
    from threadpoolctl import threadpool_info
    import numpy
    blas = [pool["num_threads"] for pool in threadpool_info()
            if pool["user_api"] == "blas" and Path(numpy.__file__).parent.name in pool["filepath"]]
    return {"numba": numba.get_num_threads(), "blas": blas[0] if blas else None}  # numpy's BLAS


def _median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _pieces(processes, learner, source, meta_batch):
    """The scaling model's inputs, measured with every rank busy as in training."""
    rng = np.random.default_rng(3)
    tasks = source.sample(4, rng)
    params = learner.model.parameters_dict()
    flat = np.zeros(1 + sum(p.data.size for p in params.values()), dtype=np.float32)
    total = np.empty_like(flat)
    processes.comm.Barrier()
    allreduce = _median_seconds(lambda: processes.comm.Allreduce(flat, total), 50)
    return {"sample_per_task": _median_seconds(lambda: source.sample(meta_batch, rng), 20) / meta_batch,
            "compute_per_task": _median_seconds(lambda: learner.meta_gradients(tasks), 5) / len(tasks),
            "allreduce": allreduce, "buffer_bytes": flat.nbytes}


def ring_allreduce_seconds(p, n_bytes, bits_per_second, alpha):
    """Ring all-reduce (reduce-scatter, then all-gather): 2 (p - 1) messages of n / p bytes each."""
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * n_bytes * 8 / bits_per_second


def efficiency(p, tasks_per_rank, meta_batch, pieces, network):
    """One process's time for the meta-batch over p times one rank's: every rank draws the whole
    meta-batch, adapts its ceil(meta_batch / p) tasks and all-reduces the buffer."""
    _, bandwidth, alpha = network
    one = meta_batch * (pieces["sample_per_task"] + pieces["compute_per_task"])
    rank = (meta_batch * pieces["sample_per_task"] + tasks_per_rank * pieces["compute_per_task"]
            + ring_allreduce_seconds(p, pieces["buffer_bytes"], bandwidth, alpha))
    return one / (p * rank)


def scaling_table(pieces, meta_batch):
    rows = []
    for p in RANKS:
        for name, batch, per_rank in ((f"meta-batch {meta_batch} split {p} ways", meta_batch,
                                       math.ceil(meta_batch / p)),
                                      ("1 task per rank (meta-batch = ranks)", p, 1)):
            cells = [f"{efficiency(p, per_rank, batch, pieces, net) * 100:.0f}%" for net in NETWORKS]
            allreduce = [f"{ring_allreduce_seconds(p, pieces['buffer_bytes'], b, a) * 1e3:.2f}"
                         for _, b, a in NETWORKS]
            rows.append((p, name, *allreduce, *cells))
    header = ("ranks", "meta-batch", *(f"all-reduce ms, {n}" for n, _, _ in NETWORKS),
              *(f"efficiency, {n}" for n, _, _ in NETWORKS))
    return markdown_table(header, rows)


def limits(pieces):
    """What bounds the efficiency at the largest number of ranks, one task per rank."""
    p = RANKS[-1]
    ring = [ring_allreduce_seconds(p, pieces["buffer_bytes"], b, a) * 1e3 for _, b, a in NETWORKS]
    return (f"What limits it: at {p} ranks with one task each, a rank computes for "
            f"{pieces['compute_per_task'] * 1e3:.1f} ms but draws all {p} tasks in "
            f"{p * pieces['sample_per_task'] * 1e3:.1f} ms (every rank draws the whole meta-batch so that "
            f"the run does not depend on the number of ranks), and the ring's latency term alone is "
            f"{2 * (p - 1) * NETWORKS[0][2] * 1e3:.1f} ms on Ethernet (all-reduce {ring[0]:.1f} ms there, "
            f"{ring[1]:.1f} ms on InfiniBand). A fixed meta-batch of 32 cannot keep more than 32 ranks busy.")


def launch(command, env):
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"bench_mpi: {' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=10, help="timed meta-iterations per run (default 10)")
    p.add_argument("--meta-batch", type=int, default=32, help="tasks per meta-iteration (default 32)")
    p.add_argument("--rounds", type=int, default=3, help="times each configuration runs (default 3)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)

    script = [sys.executable, __file__, "--worker", "--iters", str(args.iters), "--meta-batch", str(args.meta_batch)]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    mpiexec = Path(sys.executable).with_name("mpiexec")
    configurations = {1: script, 2: [str(mpiexec) if mpiexec.exists() else "mpiexec", "-n", "2", *script]}
    started, (busy0, total0), own0 = time.perf_counter(), cpu_jiffies(), sum(os.times()[:4])
    runs = {n: [] for n in configurations}
    for _ in range(args.rounds):  # alternated, so that a busy spell on the machine hits both
        for n, command in configurations.items():
            runs[n].append(launch(command, env))
    (busy1, total1), own1 = cpu_jiffies(), sum(os.times()[:4])
    others = max(0.0, (busy1 - busy0 - (own1 - own0) * os.sysconf("SC_CLK_TCK")) / max(1, total1 - total0))
    # the best round: other processes on a shared machine only ever slow a run down
    seconds = {n: min(r["seconds_per_iteration"] for r in rs) for n, rs in runs.items()}
    medians = {n: float(np.median([r["seconds_per_iteration"] for r in rs])) for n, rs in runs.items()}
    rows = [(f"{n} x {rs[0]['threads']['numba']} numba / {rs[0]['threads']['blas']} BLAS threads",
             ", ".join(f"{r['seconds_per_iteration']:.3f}" for r in rs), f"{seconds[n]:.3f}",
             f"{1 / seconds[n]:.3f}", f"{seconds[1] / seconds[n]:.2f}x", f"{medians[1] / medians[n]:.2f}x")
            for n, rs in runs.items()]
    measured = markdown_table(("processes x threads", "s / meta-iteration, each round", "best",
                               "meta-iterations / s (best)", "speed-up (best)", "speed-up (medians)"), rows)
    two = runs[2][-1]
    pieces = (f"Measured in the 2-process run: {two['buffer_bytes']:,} bytes all-reduced per meta-iteration "
              f"(the net's {two['buffer_bytes'] // 4 - 1:,} float32 meta-gradients and the meta-loss); "
              f"compute {two['compute_per_task'] * 1e3:.1f} ms per task on one thread; "
              f"drawing a task {two['sample_per_task'] * 1e6:.0f} µs; "
              f"Allreduce of the buffer between the 2 processes (shared memory) {two['allreduce'] * 1e3:.3f} ms.")
    write_section("mpi", "\n\n".join([
        f"## Omniglot MAML across MPI processes (5-way 1-shot, 1 query per class, meta-batch {args.meta_batch}, "
        "float32)",
        f"`python benchmarks/bench_mpi.py`, {datetime.date.today()}: {args.rounds} rounds, each running both "
        f"configurations on the same meta-batches, {args.iters} timed meta-iterations after one untimed; "
        f"{time.perf_counter() - started:.0f} s; {machine_line()}; MPICH wheel, mpi4py. Other processes used "
        f"{100 * others:.0f}% of the CPUs during the run.",
        measured, pieces,
        "Scaling model (on paper, from the pieces above). Per meta-iteration a rank draws the whole meta-batch "
        "(sample x meta-batch), adapts ceil(meta-batch / p) tasks (compute x tasks) and all-reduces n bytes, "
        "costed as a ring all-reduce: 2 (p - 1) alpha + 2 (p - 1) / p x n / bandwidth, with latency alpha = "
        "25 µs on 10 Gb/s Ethernet (TCP) and 2 µs on 100 Gb/s InfiniBand (assumed, not measured here; MPI "
        "libraries use recursive halving/doubling for this size, whose latency term is 2 log2(p) alpha, so "
        "the ring is the pessimistic case). Efficiency = one process's time for the same meta-batch / (p x a "
        "rank's time). Optimizer step and load imbalance between ranks are left out; compute assumes every "
        "rank runs one thread on its own core.",
        scaling_table(two, args.meta_batch), limits(two)]))
    print(measured)
    print(pieces)


if __name__ == "__main__":
    main()
