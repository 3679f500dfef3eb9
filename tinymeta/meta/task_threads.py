"""Threads that share every meta-batch in one process: each adapts its share of the tasks.

The split and the mean are those of the MPI ranks in distributed.py: with k
threads, thread j takes a contiguous share S_j of the N tasks (`share_of`),
computes the mean meta-loss and meta-gradient g_j of its share exactly as one
thread would, and

    g = sum_j |S_j| g_j / N

is the whole meta-batch's meta-gradient, up to the order of the additions.

Threads pay although Python runs one thread at a time: a vectorised
meta-gradient spends nearly all its time in numpy, BLAS and the numba kernels,
which release the interpreter lock, and only a few hundred graph nodes in
Python (whose grad mode is per thread, tinymeta/grad_mode.py). Meanwhile each
worker's BLAS products run on one thread of their own (threadpoolctl):
otherwise every worker's BLAS would start a thread per core, and threads
waiting for a core stall each other's products. On 2 cores the Omniglot MAML
meta-iteration ran about 1.6x faster than one thread driving a 2-thread BLAS
(benchmarks/RESULTS.md).

Not for models that keep batch norm's running statistics: the threads would
update the same buffers at once (meta-learning normalises with the statistics
of the batch at hand, and keeps none, by default).
"""
from concurrent.futures import ThreadPoolExecutor

from .distributed import SingleProcess, share_of
from .task_groups import mean_of_shares


class TaskThreads(SingleProcess):
    """`threads` workers in this process (the calling thread is one of them):
    `meta_train(..., communicator=TaskThreads(2))`."""

    def __init__(self, threads):
        if int(threads) != threads or threads < 1:
            raise ValueError(f"TaskThreads: threads must be a positive integer, got {threads!r}")
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError as err:
            raise ImportError("TaskThreads: needs threadpoolctl, to run each thread's BLAS on one core; "
                              "install it with  pip install 'tinymeta[examples]'") from err
        self.threads = int(threads)
        self._blas = ThreadpoolController()
        self._pool = ThreadPoolExecutor(self.threads - 1, "tinymeta-task") if self.threads > 1 else None

    def meta_gradients(self, learner, tasks):
        """(meta-loss, {name: meta-gradient}) of the whole meta-batch, each thread adapting its share."""
        shares = [tasks[share_of(len(tasks), j, self.threads)] for j in range(self.threads)]
        shares = [share for share in shares if share]
        if len(shares) < 2:
            return learner.meta_gradients(tasks)
        _check_no_running_statistics(learner)
        with self._blas.limit(limits=1, user_api="blas"):
            others = [self._pool.submit(learner.meta_gradients, share) for share in shares[1:]]
            results = [learner.meta_gradients(shares[0])] + [future.result() for future in others]
        return mean_of_shares(results, [len(share) for share in shares])

    def close(self):
        """Stop the worker threads (they also stop when the process exits)."""
        if self._pool is not None:
            self._pool.shutdown()


def _check_no_running_statistics(learner):
    buffers = [name for name, _ in learner.model.named_buffers()]
    if buffers:
        raise ValueError(f"TaskThreads: the model keeps running statistics ({', '.join(buffers)}), which "
                         "threads would update at once; use one thread, or batch statistics only "
                         "(track_running_stats=False)")
