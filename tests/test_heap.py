"""tinymeta.heap: on glibc, freed large arrays stay in the process for reuse,
unless TINYMETA_MALLOC=system leaves malloc alone. Observed from outside malloc:
the resident memory after a large array is freed."""
import os
import subprocess
import sys

import pytest

from tinymeta import heap

PROBE = """
import numpy as np
import tinymeta

def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

before = resident_mb()
block = np.ones(200 * 2**20 // 8)  # 200 MB, every page touched
del block
print(resident_mb() - before)
"""

glibc_linux = pytest.mark.skipif(not heap.keep_freed_memory(), reason="needs Linux with glibc's malloc")


def kept_mb(malloc_setting):
    env = dict(os.environ, TINYMETA_MALLOC=malloc_setting)
    result = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60,
                            check=True)
    return float(result.stdout)


@glibc_linux
def test_a_freed_large_array_stays_in_the_heap_for_reuse():
    assert kept_mb("reuse") > 150


@glibc_linux
def test_tinymeta_malloc_system_returns_freed_arrays_to_the_kernel():
    assert kept_mb("system") < 50


def test_elsewhere_than_linux_malloc_is_left_alone(monkeypatch):
    monkeypatch.setattr(heap.sys, "platform", "darwin")
    assert heap.keep_freed_memory() is False


def test_a_c_library_without_mallopt_is_left_alone(monkeypatch):
    class NoMallopt:  # musl and other C libraries have no glibc mallopt
        def __init__(self, name):
            pass
    monkeypatch.setattr(heap.sys, "platform", "linux")
    monkeypatch.setattr(heap.ctypes, "CDLL", NoMallopt)
    assert heap.keep_freed_memory() is False
