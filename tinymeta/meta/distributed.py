"""Data-parallel meta-training over MPI: each process adapts its share of every meta-batch.

The tasks of a meta-batch are independent and the meta-gradient is their mean,
g = 1/N sum_n g_n. With p processes ("ranks"), rank r takes a contiguous share
S_r of the N tasks (share sizes differ by at most one; a rank gets none when
N < p), computes the mean meta-loss and meta-gradient g_r of its share exactly
as one process would, and all ranks add up |S_r| * g_r in one Allreduce over a
flat buffer and divide by N:

    sum_r |S_r| g_r / N = 1/N sum_n g_n = g,

the one-process meta-gradient up to the order of the additions. It holds for
MAML, first-order MAML, Reptile (whose "gradient" phi - mean_n theta_n is a mean
over tasks too, as are the inner Adam moments it carries) and pre-training (with
tasks of equal size): the buffer holds everything `learner.averaged()` names. Every rank then
takes the same optimizer step on the same numbers, so the parameters stay equal
without being sent again; a checksum compared every `check_every` iterations
turns a rank that drifted anyway into an error instead of a wrong model.

Every rank draws the whole meta-batch from its own copy of the run's Generator
and keeps its share: the union of the shares is the meta-batch one process
draws, and the generators stay in step with no communication. At the start
(after rank 0 alone has read the checkpoint when resuming) rank 0 sends its
parameters, buffers, optimizer state, generator state and iteration to all.
Rank 0 alone prints and writes files: `meta_train` and the examples ask `is_root`.

`communicator()` decides from the launcher's environment variables, before
importing mpi4py: under `mpiexec -n 2` (or srun) it returns an MPICommunicator;
as one plain process a SingleProcess, which sends nothing and imports nothing.

Not combined across ranks: batch norm's running statistics (each rank keeps
those of its own tasks; meta-training normalises with batch statistics and
never trains on them). Reptile's minibatch order needs nothing sent: it is
one order per meta-iteration, which every rank draws alike (reptile.py).
"""
import os
import sys
import traceback
import zlib

import numpy as np

from ..backend import device_of, to_device, to_numpy
from ..tensor import Tensor

# The number of processes, as the launchers announce it: MPICH and Intel MPI (Hydra), srun with PMI-2;
# Open MPI; srun with PMIx.
LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS")
BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def launched_processes():
    """How many processes the MPI launcher started (1 for a plain `python script.py`)."""
    for name in LAUNCHER_SIZE_VARIABLES:
        if name in os.environ:
            return int(os.environ[name])
    return 1


def communicator(check_every=100):
    """The processes this program runs as: an MPICommunicator under a launcher, else SingleProcess().

    Under MPI it also makes an uncaught exception on any rank stop every rank,
    and sets each rank's numba and BLAS threads to cores / ranks on its machine.
    """
    size = launched_processes()
    if size == 1:
        return SingleProcess()
    try:
        from mpi4py import MPI
        from threadpoolctl import threadpool_limits
    except ImportError as err:
        raise ImportError(f"communicator: started as {size} processes by an MPI launcher, but {err.name} "
                          "cannot be imported; install it with  pip install 'tinymeta[mpi]'") from err
    comm = MPI.COMM_WORLD
    if comm.size != size:
        library = MPI.Get_library_version().splitlines()[0]
        raise RuntimeError(f"communicator: the launcher started {size} processes but MPI sees {comm.size}; "
                           f"mpi4py runs on another MPI ({library}) than the launcher's")
    _stop_every_rank_on_error(comm)
    _share_cores(comm, MPI, threadpool_limits)
    return MPICommunicator(comm, check_every)


def share_of(n_tasks, rank, size):
    """The slice of a meta-batch of n_tasks that `rank` of `size` adapts: contiguous blocks whose
    sizes differ by at most one, the larger ones first; empty for ranks beyond n_tasks."""
    base, extra = divmod(n_tasks, size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


class SingleProcess:
    """One process: the whole meta-batch is its share, and nothing is sent."""
    rank, size, is_root = 0, 1, True

    def broadcast(self, value):
        return value

    def meta_gradients(self, learner, tasks):
        return learner.meta_gradients(tasks)

    def synchronise(self, learner, optimizer, rng, iteration):
        return iteration

    def check_agreement(self, learner, iteration):
        pass


class MPICommunicator:
    """The ranks of an MPI job, training one model together (see the module docstring)."""

    def __init__(self, comm, check_every=100):
        if check_every < 1:
            raise ValueError(f"MPICommunicator: check_every must be at least 1, got {check_every}")
        self.comm, self.check_every = comm, check_every
        self.rank, self.size = comm.rank, comm.size
        self.is_root = self.rank == 0

    def broadcast(self, value):
        """Rank 0's `value` (any picklable object) on every rank."""
        return self.comm.bcast(value, root=0)

    def meta_gradients(self, learner, tasks):
        """(meta-loss, {name: meta-gradient}) of the whole meta-batch; this rank adapts only its share."""
        params = {name: _array(value) for name, value in learner.averaged().items()}
        share = tasks[share_of(len(tasks), self.rank, self.size)]
        dtype = np.result_type(*(p.dtype for p in params.values()))
        flat = np.zeros(1 + sum(p.size for p in params.values()), dtype=dtype)  # [loss, grads...]
        if share:
            loss, grads = learner.meta_gradients(share)
            flat[0] = loss
            flat[1:] = np.concatenate([to_numpy(_array(grads[name])).ravel() for name in params])
            flat *= len(share)
        total = np.empty_like(flat)
        self.comm.Allreduce(flat, total)  # the sum over ranks
        total /= len(tasks)
        return float(total[0]), _unflatten(total[1:], params)

    def synchronise(self, learner, optimizer, rng, iteration):
        """Rank 0's parameters, buffers, optimizer state, generator states and iteration, on every rank."""
        generators = learner.generators()
        mine = (learner.state_dict(), optimizer.state_dict(), rng.bit_generator.state,
                {name: g.bit_generator.state for name, g in generators.items()}, iteration)
        learner_state, optimizer_state, rng_state, generator_states, iteration = self.broadcast(
            mine if self.is_root else None)
        if not self.is_root:
            learner.load_state_dict(learner_state)
            optimizer.load_state_dict(optimizer_state)
            rng.bit_generator.state = rng_state
            for name, generator in generators.items():
                generator.bit_generator.state = generator_states[name]
        return iteration

    def check_agreement(self, learner, iteration):
        """Every check_every iterations: all ranks must hold bit-identical parameters (rank 0 raises)."""
        if iteration % self.check_every:
            return
        checksum = 0
        for p in learner.parameters_dict().values():
            checksum = zlib.crc32(np.ascontiguousarray(to_numpy(p.data)), checksum)
        checksums = self.comm.allgather(checksum)
        drifted = [rank for rank, c in enumerate(checksums) if c != checksums[0]]
        if drifted and self.is_root:  # the others wait in their next collective call until the job stops
            raise RuntimeError(f"meta_train: after iteration {iteration} the parameters of rank(s) {drifted} "
                               f"differ from rank 0's (CRC-32 checksums {checksums}): the ranks no longer train "
                               "one model; a random choice that depends on the rank?")


def _array(gradient):
    return gradient.data if isinstance(gradient, Tensor) else gradient


def _unflatten(flat, arrays):
    """{name: the piece of `flat` shaped like arrays[name], on that array's device}."""
    grads, offset = {}, 0
    for name, a in arrays.items():
        piece = flat[offset:offset + a.size].reshape(a.shape)
        grads[name] = to_device(piece, device_of(a))
        offset += a.size
    return grads


def _stop_every_rank_on_error(comm):
    """An uncaught exception prints its traceback (from the rank that raised it) and ends the
    whole job: otherwise the other ranks would wait forever in their next collective call."""
    def stop(kind, error, trace):
        sys.stdout.flush()
        sys.stderr.write(f"tinymeta: rank {comm.rank} of {comm.size} failed; stopping every rank\n")
        traceback.print_exception(kind, error, trace)
        sys.stderr.flush()
        if "SLURM_STEP_ID" in os.environ:
            comm.Abort(1)  # srun lets the other tasks run on after one exits
        # mpiexec forwards all of this rank's output, then stops the others; after an
        # MPI_Abort it may stop them before the traceback got through
        os._exit(1)
    sys.excepthook = stop


def _share_cores(comm, MPI, threadpool_limits):
    """numba and BLAS threads = this machine's cores / its ranks, where the user's environment
    does not set them: `mpiexec -n 2` on 2 cores then runs 2 x 1 threads, not 2 x 2."""
    same_machine = comm.Split_type(MPI.COMM_TYPE_SHARED)
    threads = max(1, (os.cpu_count() or 1) // same_machine.size)
    same_machine.Free()
    if "NUMBA_NUM_THREADS" not in os.environ:
        import numba
        numba.set_num_threads(threads)
    if not any(name in os.environ for name in BLAS_THREAD_VARIABLES):
        threadpool_limits(threads)  # the BLAS and OpenMP libraries loaded so far
        for name in BLAS_THREAD_VARIABLES:  # and those loaded later (numba loads scipy's OpenBLAS)
            os.environ[name] = str(threads)
