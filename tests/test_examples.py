"""The examples run end to end (tiny budgets): what a newcomer types first must work."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# the examples import the tinymeta of this checkout, whatever is installed
ENVIRONMENT = {**os.environ, "MPLBACKEND": "Agg",
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def run(script, *args, env=None):
    """Run examples/script with this checkout's tinymeta first on the path (not another installed copy)."""
    result = subprocess.run([sys.executable, str(ROOT / "examples" / script), *map(str, args)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, env={**ENVIRONMENT, **(env or {})})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_autodiff_tour_checks_every_derivative_it_prints():
    out = run("autodiff_tour.py")
    assert out.count("max error") == 3
    assert "third derivatives agree" in out


def test_sine_example_trains_all_six_and_writes_table_and_figure(tmp_path):
    pytest.importorskip("matplotlib")
    out = run("sine_maml.py", "--iters", 30, "--eval-tasks", 20, "--out", tmp_path, "--no-progress")
    table = (tmp_path / "results.md").read_text()
    assert table.strip() in out
    for label in ("MAML", "first-order MAML", "Reptile", "Meta-SGD", "iMAML", "pre-training"):
        (cells,) = re.findall(rf"^\| {label} \| 30 \| \d+ s \| [^|]+ \| (.*) \|$", table, re.MULTILINE)
        values = [tuple(map(float, cell.split(" ± "))) for cell in cells.split(" | ")]
        (mse0, ci0), (mse1, _), (mse10, _) = values
        assert np.all(np.isfinite(values)) and ci0 > 0, label
        # gradient steps on each test task's support set lower its query MSE, from any initialisation
        assert mse10 < mse1 < mse0, label
    assert "| Meta-SGD | 30 | " in out and "| learned rates |" in out
    assert (tmp_path / "sine.png").stat().st_size > 10_000


def test_sine_example_rejects_zero_shots():
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "sine_maml.py"), "--shots", "0"],
                            capture_output=True, text=True, env=ENVIRONMENT)
    assert result.returncode != 0 and "--shots must be at least 1" in result.stderr


def test_omniglot_example_on_the_shared_subset(tmp_path, shared_dir):
    """First-order MAML with non-transductive batch norm (the default path is covered by evaluate's tests)."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("PIL")
    out = run("omniglot.py", "--data", shared_dir / "data" / "omniglot", "--iters", 4, "--meta-batch", 2,
              "--val-every", 2, "--val-tasks", 3, "--eval-tasks", 5, "--out", tmp_path, "--no-progress",
              "--algo", "fomaml", "--batch-norm", "support-stats", env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert "test accuracy" in out
    assert (tmp_path / "curves.png").exists() and (tmp_path / "best.npz").exists()


@pytest.mark.parametrize("algo", ["metasgd", "imaml"])
def test_omniglot_example_with_learned_rates_or_implicit_gradients(tmp_path, shared_dir, algo):
    pytest.importorskip("matplotlib")
    pytest.importorskip("PIL")
    out = run("omniglot.py", "--data", shared_dir / "data" / "omniglot", "--iters", 2, "--meta-batch", 2,
              "--inner-steps", 2, "--eval-steps", 2, "--val-every", 2, "--val-tasks", 2, "--eval-tasks", 3,
              "--out", tmp_path, "--no-progress", "--algo", algo, env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert "test accuracy" in out
    with np.load(tmp_path / "best.npz") as best:
        assert ("inner_lr.0.weight" in best.files) == (algo == "metasgd")   # learned rates are kept with phi
