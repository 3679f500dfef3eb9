"""The GPU kernels (tinymeta.kernels.gpu).

Their CUDA sources compile with nvcc wherever nvcc is on PATH, GPU or not.
Where cupy has a GPU, each kernel matches the numpy reference on the CPU
kernels' own random cases (tests/test_kernels.py: ties, overlapping pool
windows, strides and paddings, both dtypes), on NaN and on non-contiguous
inputs, and raises the CPU kernels' errors; elsewhere those tests skip, saying
why (tinymeta.backend.cuda_status).
"""
import ast
import inspect
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

import tinymeta.kernels as K
from tinymeta.backend import cuda_status
from tinymeta.kernels import reference as R
from test_kernels import assert_close, conv_cases, pool_cases

CUDA_DIR = Path(K.__file__).parent / "cuda"
GPU_MODULE = Path(K.__file__).parent / "gpu.py"
# The kernels each source defines, each once per dtype (im2col_float, im2col_double, ...).
KERNELS = {"conv2d.cu": ["im2col", "col2im"],
           "max_pool2d.cu": ["max_pool_forward", "max_pool_backward", "max_pool_gather"]}

cupy, NO_GPU = cuda_status()
needs_gpu = pytest.mark.skipif(cupy is None, reason=f"needs cupy and a GPU: {NO_GPU}")
if cupy is not None:
    from tinymeta.kernels import gpu as G


def test_every_kernel_compiled_here_is_one_the_gpu_module_launches():
    """The table above names what kernels/gpu.py asks NVRTC for (it cannot be imported
    without cupy, so its source is read): a kernel renamed on one side fails here."""
    launched = set(re.findall(r'(?:_launch\("\w+"|_by_argmax\("\w+"), "(\w+)"', GPU_MODULE.read_text()))
    assert launched == {kernel for kernels in KERNELS.values() for kernel in kernels}


def test_the_gpu_module_offers_every_cpu_kernel():
    """tinymeta.backend hands cupy arrays to kernels/gpu.py by the CPU kernels' names: each
    must be defined or imported there (read from its source, as above)."""
    tree = ast.parse(GPU_MODULE.read_text())
    defined = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom):
            defined.update(alias.asname or alias.name for alias in node.names)
    assert set(K.__all__) <= defined, sorted(set(K.__all__) - defined)


def test_the_gpu_kernels_take_the_cpu_kernels_arguments():
    """Same parameter names and defaults, so that an op's call (say with columns=) fits both."""
    tree = ast.parse(GPU_MODULE.read_text())
    gpu_functions = {node.name: node for node in tree.body
                     if isinstance(node, ast.FunctionDef) and node.name in K.__all__}
    assert gpu_functions
    for name, node in gpu_functions.items():
        cpu = inspect.signature(getattr(K, name)).parameters
        gpu_defaults = [ast.literal_eval(d) for d in node.args.defaults]
        cpu_defaults = [p.default for p in cpu.values() if p.default is not inspect.Parameter.empty]
        assert ([a.arg for a in node.args.args], gpu_defaults) == (list(cpu), cpu_defaults), name


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize("source", sorted(p.name for p in CUDA_DIR.glob("*.cu")))
def test_cuda_source_compiles(source, tmp_path):
    """nvcc compiles every source in cuda/ to PTX for sm_90, with the options gpu.py gives
    NVRTC, and the PTX has one entry point per kernel and dtype."""
    ptx = tmp_path / "x.ptx"
    result = subprocess.run(["nvcc", "-arch=sm_90", "-ptx", "-std=c++14", "-o", str(ptx),
                             str(CUDA_DIR / source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    entries = set(re.findall(r"\.entry\s+(\w+)\(", ptx.read_text()))
    assert entries == {f"{kernel}_{t}" for kernel in KERNELS[source] for t in ("float", "double")}


def assert_gpu_close(actual, expected):
    """actual is a cupy array equal to the numpy array `expected`, within the CPU kernels' tolerance."""
    assert isinstance(actual, cupy.ndarray)
    assert_close(cupy.asnumpy(actual), expected, expected.dtype)


@needs_gpu
def test_gpu_module_loads_these_sources():
    assert sorted(p.name for p in G.CUDA_SOURCES.values()) == sorted(KERNELS)


@needs_gpu
@settings(deadline=None, max_examples=40)
@given(conv_cases())
def test_gpu_conv2d_matches_reference(case):
    x, w, grad_y, stride, padding = case
    x_gpu, w_gpu, grad_y_gpu = (cupy.asarray(a) for a in (x, w, grad_y))
    assert_gpu_close(G.conv2d_forward(x_gpu, w_gpu, stride, padding),
                     R.conv2d_forward(x, w, stride, padding))
    assert_gpu_close(G.conv2d_grad_input(grad_y_gpu, w_gpu, x.shape[2:], stride, padding),
                     R.conv2d_grad_input(grad_y, w, x.shape[2:], stride, padding))
    assert_gpu_close(G.conv2d_grad_weight(x_gpu, grad_y_gpu, w.shape[2:], stride, padding),
                     R.conv2d_grad_weight(x, grad_y, w.shape[2:], stride, padding))
    columns = G.conv2d_columns(x_gpu, w.shape[-4:], stride, padding)   # kept, and given back
    assert_gpu_close(G.conv2d_forward(x_gpu, w_gpu, stride, padding, columns=columns),
                     R.conv2d_forward(x, w, stride, padding))
    assert_gpu_close(G.conv2d_grad_weight(x_gpu, grad_y_gpu, w.shape[-2:], stride, padding, columns=columns),
                     R.conv2d_grad_weight(x, grad_y, w.shape[-2:], stride, padding))
    with pytest.raises(ValueError, match="conv2d_forward: columns built for stride"):
        G.conv2d_forward(x_gpu, w_gpu, stride + 1, padding, columns=columns)


@needs_gpu
@settings(deadline=None, max_examples=40)
@given(pool_cases())
def test_gpu_max_pool2d_matches_reference(case):
    x, kernel, stride = case
    y, argmax = G.max_pool2d_forward(cupy.asarray(x), kernel, stride)
    y_ref, argmax_ref = R.max_pool2d_forward(x, kernel, stride)
    assert y.dtype == x.dtype and argmax.dtype == np.int64
    np.testing.assert_array_equal(cupy.asnumpy(y), y_ref)
    np.testing.assert_array_equal(cupy.asnumpy(argmax), argmax_ref)
    rng = np.random.default_rng(0)
    grad_y = rng.standard_normal(y_ref.shape).astype(x.dtype)
    assert_gpu_close(G.max_pool2d_backward(cupy.asarray(grad_y), argmax, x.shape[2:]),
                     R.max_pool2d_backward(grad_y, argmax_ref, x.shape[2:]))
    grad_x = rng.standard_normal(x.shape).astype(x.dtype)
    assert_gpu_close(G.max_pool2d_gather(cupy.asarray(grad_x), argmax),
                     R.max_pool2d_gather(grad_x, argmax_ref))


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_max_pool2d_propagates_nan(dtype):
    """A NaN wins its window, the first NaN if several, as np.max and the CPU kernel."""
    x = np.array([[[[1., np.nan, 2., 3.],
                    [np.nan, 2., 3., 5.]]]], dtype)
    y, argmax = G.max_pool2d_forward(cupy.asarray(x), 2, 2)
    np.testing.assert_array_equal(cupy.asnumpy(y), [[[[np.nan, 5.]]]])
    np.testing.assert_array_equal(cupy.asnumpy(argmax), [[[[1, 7]]]])


@needs_gpu
def test_gpu_non_contiguous_inputs():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 7, 3, 2)).transpose(3, 2, 0, 1)[:, :, ::2, :]  # (2, 3, 3, 7)
    w = rng.standard_normal((3, 3, 4, 2)).transpose(2, 1, 3, 0)  # (4, 3, 2, 3)
    grad_y = rng.standard_normal((7, 4, 4, 2)).T  # (2, 4, 4, 7), conv2d_forward(x, w, 1, 1)'s shape
    x_gpu, w_gpu, grad_y_gpu = (cupy.asarray(a) for a in (x, w, grad_y))
    assert not (x_gpu.flags.c_contiguous or w_gpu.flags.c_contiguous or grad_y_gpu.flags.c_contiguous)
    assert_gpu_close(G.conv2d_forward(x_gpu, w_gpu, 1, 1), R.conv2d_forward(x, w, 1, 1))
    assert_gpu_close(G.conv2d_grad_input(grad_y_gpu, w_gpu, (3, 7), 1, 1),
                     R.conv2d_grad_input(grad_y, w, (3, 7), 1, 1))
    assert_gpu_close(G.conv2d_grad_weight(x_gpu, grad_y_gpu, (2, 3), 1, 1),
                     R.conv2d_grad_weight(x, grad_y, (2, 3), 1, 1))
    pooled, argmax = G.max_pool2d_forward(x_gpu, 2, 1)
    assert_gpu_close(pooled, R.max_pool2d_forward(x, 2, 1)[0])
    reversed_argmax = argmax.astype(np.int32)[..., ::-1]  # a strided view, not int64
    assert_gpu_close(G.max_pool2d_gather(x_gpu, reversed_argmax),
                     R.max_pool2d_gather(x, cupy.asnumpy(reversed_argmax)))
    assert_gpu_close(G.max_pool2d_backward(pooled, reversed_argmax, (3, 7)),
                     R.max_pool2d_backward(cupy.asnumpy(pooled), cupy.asnumpy(reversed_argmax), (3, 7)))


@needs_gpu
@pytest.mark.parametrize("call, message", [
    (lambda: G.conv2d_forward(cupy.zeros((1, 3, 5, 5)), cupy.zeros((2, 4, 3, 3))), "3 channels"),
    (lambda: G.conv2d_forward(cupy.zeros((1, 1, 2, 2)), cupy.zeros((1, 1, 5, 5)), 1, 1), "does not fit"),
    (lambda: G.conv2d_forward(cupy.zeros((1, 1, 5, 5)), cupy.zeros((1, 1, 3, 3), np.float32)), "dtype"),
    (lambda: G.conv2d_grad_input(cupy.zeros((1, 2, 3, 3)), cupy.zeros((2, 1, 3, 3)), (5, 6)), "grad_y"),
    (lambda: G.conv2d_grad_weight(cupy.zeros((2, 1, 5, 5)), cupy.zeros((1, 2, 3, 3)), (3, 3)), "grad_y"),
    (lambda: G.max_pool2d_forward(cupy.zeros((1, 1, 2, 2)), 3, 1), "larger than"),
    (lambda: G.max_pool2d_forward(cupy.zeros((1, 1, 2, 2)), 1, 0), "positive"),
    (lambda: G.max_pool2d_backward(cupy.zeros((1, 1, 1, 1)), cupy.array([[[[4]]]]), (2, 2)), "outside"),
    (lambda: G.max_pool2d_gather(cupy.zeros((1, 1, 2, 2)), cupy.array([[[[-1]]]])), "outside"),
    (lambda: G.max_pool2d_gather(cupy.zeros((1, 1, 2, 2)), cupy.zeros((1, 1, 1, 1))), "integers"),
])
def test_gpu_invalid_arguments_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
