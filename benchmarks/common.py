"""Shared by the benchmark scripts: a median timer, the RESULTS.md writer, and the Omniglot net in PyTorch.

Each benchmark owns one section of benchmarks/RESULTS.md, delimited by HTML
comments, and rewrites only that section, so the scripts can be rerun in any
order without clobbering each other's figures.
"""
import os
import platform
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def median_seconds(fn, repeats=20, warmup=3):
    """Median wall time of fn() over `repeats` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(fns, rounds=20, calls=5, warmup=3):
    """{key: median wall time of fns[key]()}, the implementations taking turns: each round times
    `calls` calls of every one, in a rotating order. On a shared or throttled machine the speed drifts
    over seconds; timing one implementation after another would put that drift into their ratios,
    taking turns spreads it over all of them alike."""
    keys = list(fns)
    for key in keys:
        for _ in range(warmup):
            fns[key]()
    times = {key: [] for key in keys}
    for r in range(rounds):
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            for _ in range(calls):
                start = time.perf_counter()
                fns[key]()
                times[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in times.items()}


def cpu_jiffies():
    """(busy, total) CPU time of the whole machine so far, from /proc/stat (Linux)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def machine_line():
    """One line naming the machine, thread settings, BLAS and BLAS environment of a run."""
    blas = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                       "OMP_NUM_THREADS", "NUMBA_NUM_THREADS") if k in os.environ}
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{_blas_kernels()}, environment: {blas or 'no BLAS/thread variables set'}")


def _blas_kernels():
    """The BLAS libraries loaded, whose package brought each, and the kernels each picked for this
    processor (OPENBLAS_CORETYPE overrides the pick)."""
    try:
        import numpy  # noqa: F401 (loads the BLAS threadpoolctl looks for)
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS not identified (no threadpoolctl)"
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if not pools:
        return "BLAS not identified"
    return ", ".join(f"{_package(p['filepath'])}'s {p['internal_api']} {p.get('version')} "
                     f"({p.get('architecture')} kernels)" for p in pools)


def _package(library_path):
    """numpy for .../site-packages/numpy.libs/libscipy_openblas..., torch for .../site-packages/torch/lib/..."""
    parts = Path(library_path).parts
    if "site-packages" not in parts:
        return Path(library_path).name
    return parts[parts.index("site-packages") + 1].removesuffix(".libs")


def write_section(name, markdown):
    """Replace (or append) the section `name` of RESULTS.md with `markdown`."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)


def markdown_table(header, rows):
    """A markdown table from a header tuple and rows of already-formatted cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def comparison_table(medians, unit, scale, baselines):
    """A markdown table of median times with ratios against baseline implementations.

    medians:   {(workload, implementation): seconds}
    unit:      the time column's header, e.g. "median ms"; scale converts seconds to it
    baselines: [(column header, implementation)]: each row's time over that
               implementation's time for the same workload ("n/a" where it was not run)
    """
    rows = []
    for (workload, impl), seconds in medians.items():
        ratios = []
        for _, reference in baselines:
            base = medians.get((workload, reference))
            ratios.append(f"{seconds / base:.2f}x" if base else "n/a")
        rows.append((workload, impl, f"{seconds * scale:.3g}", *ratios))
    return markdown_table(("workload", "implementation", unit, *(header for header, _ in baselines)), rows)


def torch_omniglot_logits(torch, params, x, downsample):
    """tinymeta.nn.omniglot_cnn's forward pass in PyTorch, params in its parameter order: four
    blocks of 3x3 conv, batch norm with the batch's statistics, (2x2 max-pooling,) ReLU, then linear.
    The pooling comes before the ReLU, as in omniglot_cnn: the same function as the other order."""
    functional = torch.nn.functional
    for block in range(4):
        w, b, gamma, beta = params[4 * block: 4 * block + 4]
        x = functional.conv2d(x, w, b, stride=2 if downsample == "stride" else 1, padding=1)
        x = functional.batch_norm(x, None, None, gamma, beta, training=True)
        if downsample == "maxpool":
            x = functional.max_pool2d(x, 2)
        x = functional.relu(x)
    return x.flatten(1) @ params[16] + params[17]
