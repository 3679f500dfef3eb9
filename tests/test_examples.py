"""The examples run end to end (tiny budgets): what a newcomer types first must work."""
import json
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


# --- Omniglot: the published settings, Reptile's run, resuming ------------------------------
# The papers' command lines, verbatim (cbfinn/maml main.py; openai/supervised-reptile README; aravindr93/imaml_dev
# README), and the omniglot.py settings each flag is; the defaults must be these commands.
PUBLISHED = {
    ("maml", 5, 1): "--meta_batch_size=32 --update_batch_size=1 --update_lr=0.4 --num_updates=1 "
                    "--metatrain_iterations=40000",
    ("maml", 20, 1): "--meta_batch_size=16 --update_batch_size=1 --num_classes=20 --update_lr=0.1 --num_updates=5 "
                     "--metatrain_iterations=40000",
    ("reptile", 5, 1): "--shots 1 --inner-batch 10 --inner-iters 5 --meta-step 1 --meta-batch 5 --meta-iters 100000 "
                       "--eval-batch 5 --eval-iters 50 --learning-rate 0.001 --meta-step-final 0 --train-shots 10",
    ("reptile", 5, 5): "--train-shots 10 --inner-batch 10 --inner-iters 5 --learning-rate 0.001 --meta-step 1 "
                       "--meta-step-final 0 --meta-batch 5 --meta-iters 100000 --eval-batch 5 --eval-iters 50",
    ("reptile", 20, 1): "--shots 1 --classes 20 --inner-batch 20 --inner-iters 10 --meta-step 1 --meta-batch 5 "
                        "--meta-iters 200000 --eval-batch 10 --eval-iters 50 --learning-rate 0.0005 "
                        "--meta-step-final 0 --train-shots 10",
    ("imaml", 5, 1): "--N_way 5 --K_shot 1 --inner_lr 1e-1 --outer_lr 1e-3 --n_steps 16 --task_mb_size 32 --lam 2.0 "
                     "--cg_steps 5",
}
FLAGS = {"meta_batch_size": "meta_batch", "update_batch_size": "shot", "update_lr": "inner_lr",
         "num_updates": "inner_steps", "metatrain_iterations": "iters", "num_classes": "way",
         "shots": "shot", "classes": "way", "inner-batch": "inner_batch", "inner-iters": "inner_steps",
         "meta-step": "outer_lr", "meta-batch": "meta_batch", "meta-iters": "iters", "eval-batch": "eval_batch",
         "eval-iters": "eval_steps", "learning-rate": "inner_lr", "meta-step-final": "meta_step_final",
         "train-shots": "train_shots", "N_way": "way", "K_shot": "shot", "inner_lr": "inner_lr",
         "outer_lr": "outer_lr", "n_steps": "inner_steps", "task_mb_size": "meta_batch", "lam": "lam",
         "cg_steps": "cg_steps"}


def omniglot_defaults(*argv):
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import omniglot
    finally:
        sys.path.pop(0)
    return vars(omniglot.parse_args(list(argv)))


def published_flags(command):
    pairs = [flag.lstrip("-").replace("=", " ").split() for flag in re.findall(r"--\S+(?:[= ][^-\s]\S*)?", command)]
    return {FLAGS[name]: float(value) for name, value in pairs}


@pytest.mark.parametrize("algo, way, shot", list(PUBLISHED), ids=lambda v: str(v))
def test_omniglot_defaults_are_the_papers_commands(algo, way, shot):
    settings = omniglot_defaults("--algo", algo, "--way", str(way), "--shot", str(shot))
    for name, value in published_flags(PUBLISHED[(algo, way, shot)]).items():
        assert settings[name] == value, name
    assert settings["inner_optimizer"] == ("adam" if algo == "reptile" else "sgd")


def test_omniglot_imaml_solves_the_system_its_authors_code_solves():
    """imaml_dev's matrix_evaluator: ((1 + cg_damping) I + H / (lam + 10)) x = g, --cg_damping 1.0, --lam 2.0;
    that is (I + (H + mu I) / lam) x = g / c with c = lam / ((1 + cg_damping)(lam + 10)), so
    mu = (1 + cg_damping)(lam + 10) - lam. Its measure_accuracy.py adapts with --n_steps 16 at test."""
    settings = omniglot_defaults("--algo", "imaml")
    assert settings["damping"] == (1 + 1.0) * (settings["lam"] + 10) - settings["lam"]
    assert settings["eval_steps"] == 16


def test_omniglot_refuses_imaml_settings_for_other_algorithms():
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "omniglot.py"), "--damping", "1"],
                            capture_output=True, text=True, env=ENVIRONMENT)
    assert result.returncode != 0 and "--damping applies to iMAML only (--algo imaml), not to --algo maml" \
        in result.stderr


def test_omniglot_first_order_maml_runs_maml_settings_and_20_way_evaluates_with_its_5_steps():
    maml, fomaml = (omniglot_defaults("--algo", algo, "--way", "20") for algo in ("maml", "fomaml"))
    assert {k: v for k, v in maml.items() if k != "algo"} == {k: v for k, v in fomaml.items() if k != "algo"}
    assert maml["eval_steps"] == 5 and omniglot_defaults()["eval_steps"] == 3


@pytest.mark.parametrize("argv, message", [
    (["--shot", "6"], "--shot + --eval-query ask for 21 distinct drawings of each character; Omniglot has 20"),
    (["--algo", "reptile", "--train-shots", "20"],
     "--train-shots + --query ask for 21 distinct drawings of each character; Omniglot has 20"),
    (["--inner-lr", "-0.4"], "--inner-lr must be positive, got -0.4"),
    (["--algo", "reptile", "--outer-lr", "0"], "--outer-lr must be positive, got 0.0")])
def test_omniglot_refuses_settings_no_run_can_have_before_reading_data(argv, message, capsys):
    with pytest.raises(SystemExit):
        omniglot_defaults(*argv)
    assert capsys.readouterr().err.strip().endswith(f"error: {message}")


def test_omniglot_refuses_reptile_settings_for_maml():
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "omniglot.py"), "--inner-batch", "4"],
                            capture_output=True, text=True, env=ENVIRONMENT)
    assert result.returncode != 0 and "--inner-batch apply to Reptile only (--algo reptile), not to --algo maml" \
        in result.stderr


def test_omniglot_reptile_resumes_and_reports_both_batch_norms(tmp_path, shared_dir):
    """Reptile with its inner Adam: the moments are in the best checkpoint, a resumed run continues
    the history and its training seconds, and a resume with other settings is refused."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("PIL")
    args = ["--data", shared_dir / "data" / "omniglot", "--algo", "reptile", "--meta-batch", 2, "--val-every", 1,
            "--val-tasks", 2, "--eval-tasks", 3, "--eval-steps", 3, "--out", tmp_path, "--no-progress"]
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    first = run("omniglot.py", *args, "--iters", 2, "--resume", env=env)   # nothing to resume yet
    assert f"--resume: no checkpoint in {tmp_path} yet, so the run starts at iteration 0" in first
    out = run("omniglot.py", *args, "--iters", 3, "--resume", env=env)
    assert "iteration 3:" in out and "iteration 2:" not in out and "no checkpoint" not in out
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["iteration"] for h in history] == [1, 2, 3]
    seconds = [h["train_seconds"] for h in history]
    assert 0 < seconds[0] < seconds[1] < seconds[2]
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["test"]) == {"transductive", "support-stats"} and results["iterations"] == 3
    assert results["command"].startswith("python examples/omniglot.py --data") and "--resume" not in results["command"]
    with np.load(tmp_path / "best.npz") as best:
        assert "inner_adam.v.0.weight" in best.files and int(best["inner_adam.t"]) > 0
    refused = subprocess.run([sys.executable, str(ROOT / "examples" / "omniglot.py"), *map(str, args), "--iters", "4",
                              "--inner-lr", "0.01", "--resume"], capture_output=True, text=True, cwd=ROOT,
                             env={**ENVIRONMENT, **env})
    assert refused.returncode != 0 and "'inner_lr': (0.001, 0.01)" in refused.stderr


def test_omniglot_reptile_5_shot_cell_is_tested_from_the_1_shot_training(tmp_path, shared_dir):
    """--trained-by tests a finished run's best checkpoint at another shot count when the training is the
    same (Reptile trains on --train-shots drawings whatever the shot); other training settings are refused."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("PIL")
    common = ["--data", shared_dir / "data" / "omniglot", "--algo", "reptile", "--meta-batch", 2, "--iters", 2,
              "--val-every", 1, "--val-tasks", 2, "--eval-tasks", 3, "--eval-steps", 3, "--no-progress"]
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    trained, tested = tmp_path / "reptile-5w1s", tmp_path / "reptile-5w5s"
    run("omniglot.py", *common, "--shot", 1, "--out", trained, env=env)
    out = run("omniglot.py", *common, "--shot", 5, "--trained-by", trained, "--out", tested, env=env)
    assert "trained by | the run in reptile-5w1s/" in out and not (tested / "history.json").exists()
    source, results = (json.loads((folder / "results.json").read_text()) for folder in (trained, tested))
    assert (results["shot"], results["trained_by"]) == (5, "reptile-5w1s")
    assert {key: results[key] for key in ("iterations", "best_iteration", "train_seconds")} == \
        {key: source[key] for key in ("iterations", "best_iteration", "train_seconds")}
    assert results["command"].startswith(source["command"] + " && ") and "--trained-by" in results["command"]
    assert set(results["test"]) == {"transductive", "support-stats"}

    def refusal(source_dir, *extra):
        result = subprocess.run([sys.executable, str(ROOT / "examples" / "omniglot.py"), *map(str, common), "--shot",
                                 "5", "--trained-by", str(source_dir), "--out", str(tested), *extra],
                                capture_output=True, text=True, cwd=ROOT, env={**ENVIRONMENT, **env})
        assert result.returncode != 0
        return result.stderr

    assert "'inner_lr': (0.001, 0.01)" in refusal(trained, "--inner-lr", "0.01")   # another training
    assert "holds no finished run" in refusal(tmp_path / "nothing-here")
