"""The MAML meta-gradient at an Omniglot training setting, with 2 task threads, vectorised
(or, with `loop`, as the per-task loop): the median seconds of CALLS calls after two
warm-up calls, on random 28x28 images.

    python benchmarks/time_training_step.py 5w1s 8      # maml-5w1s: meta-batch 32, 1 query, 1 step of lr 0.4
    python benchmarks/time_training_step.py 20w1s 4     # 20-way 1-shot: meta-batch 16, 5 steps of lr 0.1
    python benchmarks/time_training_step.py 20w1s 4 loop

To compare two versions of the code, run it from each checkout in turn (PYTHONPATH=that
checkout), alternating a few rounds, with nothing else running; benchmarks/RESULTS.md
quotes such rounds. Give the other checkout a link tinymeta/kernels -> ../kernels: an
editable install maps tinymeta.kernels to its own kernels/ folder, whatever PYTHONPATH says.
"""
import statistics
import sys
import time

import numpy as np

from tinymeta import nn
from tinymeta.data.sampler import FewShotSampler
from tinymeta.meta import MAML, TaskThreads
from tinymeta.nn.functional import cross_entropy

SETTINGS = {"5w1s": (5, 32, 1, 0.4), "20w1s": (20, 16, 5, 0.1)}   # way, meta-batch, inner steps, inner lr


def main(setting, calls, vectorize):
    way, meta_batch, steps, lr = SETTINGS[setting]
    rng = np.random.default_rng(0)
    sampler = FewShotSampler(rng.random((100, 20, 28, 28)).astype(np.float32), way, 1, 1)
    maml = MAML(nn.omniglot_cnn(way, np.random.default_rng(4), downsample="stride"), lr, steps,
                loss_fn=cross_entropy, vectorize=vectorize)
    threads = TaskThreads(2)
    tasks = sampler.sample(meta_batch, rng)
    for _ in range(2):
        threads.meta_gradients(maml, tasks)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        threads.meta_gradients(maml, tasks)
        times.append(time.perf_counter() - start)
    threads.close()
    form = "vectorised" if vectorize else "per-task loop"
    print(setting, form, f"{statistics.median(times):.4f}", " ".join(f"{t:.3f}" for t in times))


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4) or sys.argv[3:] not in ([], ["loop"]):
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]), vectorize=sys.argv[3:] != ["loop"])
