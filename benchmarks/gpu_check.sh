#!/usr/bin/env bash
# The GPU checks of tinymeta in one call, for a machine with an NVIDIA GPU (run from the
# repository root). It installs the package, runs the GPU tests (ops against the CPU with
# second-order checks, CUDA kernels against the numpy references, the Omniglot meta-gradient
# on GPU and CPU) and the GPU benchmarks, which add their tables to benchmarks/RESULTS.md.
#
# Without network access, bring cupy (and optionally a CUDA build of torch) as wheels in
# ./.wheels: `pip download cupy-cuda12x -d .wheels` on a machine that has the network.
# Output goes to stdout and, when $OUT is set, to $OUT/gpu_check.log and $OUT/RESULTS.md.
set -uo pipefail
log=${OUT:-/tmp}/gpu_check.log
{
  echo "== $(date -u) on $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
  if [ -d .wheels ]; then
    python -m pip install -q --no-index --find-links .wheels cupy-cuda12x || python -m pip install -q --no-index --find-links .wheels cupy
  fi
  python -m pip install -q -e ".[test]"
  python -c "from tinymeta import backend; print('cuda:', backend.cuda_status())"
  python -m pytest -q -rs tests/test_gpu.py tests/test_cuda_kernels.py tests/test_device.py
  status=$?
  python benchmarks/bench_kernels_gpu.py
  python benchmarks/bench_meta.py omniglot --device cuda
  [ -n "${OUT:-}" ] && cp benchmarks/RESULTS.md "$OUT/RESULTS.md"
  exit $status
} 2>&1 | tee "$log"
exit "${PIPESTATUS[0]}"
