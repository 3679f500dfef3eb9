"""examples/omniglot_table.py turns run folders into the results table and the learning-curve figures."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
omniglot_table = pytest.importorskip("omniglot_table")


def fake_run(folder, algo, way, shot, iterations, transductive, support_stats, seconds_per_point=60.0):
    """A run folder as examples/omniglot.py leaves it: results.json and history.json."""
    folder.mkdir(parents=True)
    points = [{"iteration": i, "train_seconds": seconds_per_point * (n + 1), "train": [0.5, 0.01],
               "validation": [0.4 + 0.1 * n, 0.01]} for n, i in enumerate(range(iterations // 2, iterations + 1,
                                                                                 iterations // 2))]
    (folder / "history.json").write_text(json.dumps(points))
    command = f"python examples/omniglot.py --algo {algo} --way {way} --shot {shot} --out {folder.name}"
    (folder / "results.json").write_text(json.dumps({
        "algo": algo, "way": way, "shot": shot, "iterations": iterations, "best_iteration": iterations,
        "train_seconds": points[-1]["train_seconds"], "test_tasks": 600, "command": command,
        "test": {"transductive": transductive, "support-stats": support_stats}}))


def fake_tested_run(folder, source, algo, way, shot, iterations, transductive, support_stats):
    """A run folder that omniglot.py --trained-by leaves: results.json only, naming the run that trained."""
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({
        "algo": algo, "way": way, "shot": shot, "iterations": iterations, "best_iteration": iterations,
        "train_seconds": 7200.0, "test_tasks": 600, "trained_by": source,
        "command": f"python examples/omniglot.py --out {source} && python examples/omniglot.py --trained-by {source}",
        "test": {"transductive": transductive, "support-stats": support_stats}}))


def fake_run_in_progress(folder, algo, way, shot, iteration, planned):
    """A run folder mid-training: history.json and a checkpoint (only its meta.json, what the table reads)."""
    folder.mkdir(parents=True)
    points = [{"iteration": i, "train_seconds": 10.0 * i, "train": [0.5, 0.01], "validation": [0.3 + i / 1e4, 0.01]}
              for i in range(250, iteration + 251, 250)]   # one point past the checkpoint, as a stopped run leaves
    (folder / "history.json").write_text(json.dumps(points))
    meta = {"iteration": iteration, "config": {"algo": algo, "way": way, "shot": shot, "iters": planned}}
    np.savez(folder / "checkpoint.npz", **{"meta.json": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)})


def make_page(runs):
    omniglot_table.main(["--runs", str(runs)])
    return (runs / "README.md").read_text()


def row(page, label):
    (line,) = [line for line in page.splitlines() if line.startswith(f"| {label} |")]
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    pytest.importorskip("matplotlib")
    tmp_path = tmp_path_factory.mktemp("runs")
    fake_run(tmp_path / "maml-5w1s", "maml", 5, 1, 4000, [0.95, 0.0045], [0.93, 0.005])
    fake_run(tmp_path / "reptile-5w1s", "reptile", 5, 1, 100000, [0.9712, 0.0031], [0.9501, 0.004],
             seconds_per_point=3600.0)
    fake_run(tmp_path / "maml-5w1s-short", "maml", 5, 1, 200, [0.5, 0.05], [0.5, 0.05])   # fewer iterations
    fake_run_in_progress(tmp_path / "maml-20w1s", "maml", 20, 1, 1000, 40000)
    fake_run_in_progress(tmp_path / "reptile-5w1s-next", "reptile", 5, 1, 500, 100000)   # the cell is finished
    fake_tested_run(tmp_path / "reptile-20w5s", "reptile-20w1s", "reptile", 20, 5, 200000, [0.96, 0.004], [0.95, 0.005])
    (tmp_path / "not_run.json").write_text(json.dumps({"fomaml/20/5": "not run: about 30 h on 2 cores",
                                                        "reptile/5/5": "in progress: 2,500 of 100,000"}))
    return tmp_path


@pytest.fixture(scope="module")
def page(runs):
    return make_page(runs)


def test_each_cell_holds_both_batch_norms_the_papers_figure_and_the_runs_budget(page):
    maml = row(page, "MAML")
    assert len(maml) == 4
    assert maml[0].split("<br>") == ["**95.00 ± 0.45** T", "**93.00 ± 0.50** N", "paper 98.7 ± 0.4 T",
                                     "4,000 it., 2 min"]
    reptile = row(page, "Reptile")[0].split("<br>")
    assert reptile[:2] == ["**97.12 ± 0.31** T", "**95.01 ± 0.40** N"]
    assert "paper 97.68 ± 0.04 T" in reptile and "paper 95.39 ± 0.09 N" in reptile
    assert reptile[-1] == "100,000 it., 2.0 h"


def test_a_cell_tested_from_another_cells_training_names_that_run_and_draws_no_curve(page):
    assert row(page, "Reptile")[3].split("<br>") == [
        "**96.00 ± 0.40** T", "**95.00 ± 0.50** N", "paper 97.12 ± 0.32 T", "paper 96.65 ± 0.33 N",
        "200,000 it., 2.0 h (the training of reptile-20w1s/)"]
    assert "--trained-by reptile-20w1s" in page and "![20-way 5-shot]" not in page


def test_runs_in_progress_are_drawn_dashed_up_to_their_checkpoint_where_no_finished_run_is(runs, page):
    finished, in_progress = omniglot_table.find_runs(runs), omniglot_table.find_in_progress(runs)
    assert [(label, last, unfinished) for label, _, last, unfinished in
            omniglot_table._curves(finished, in_progress, 20, 1)] == [("MAML (in progress: 1,000 of 40,000)", 1000, True)]
    assert [label for label, *_ in omniglot_table._curves(finished, in_progress, 5, 1)] == ["MAML", "Reptile"]
    assert (runs / "curves-20way-1shot.png").stat().st_size > 5000 and "![20-way 1-shot]" in page
    assert "dashed: a run still in progress" in page


def test_missing_cells_say_what_not_run_json_says_of_them_or_not_run(page):
    assert row(page, "first-order MAML")[3].startswith("not run: about 30 h on 2 cores<br>paper 97.9 ± 0.1 T")
    assert row(page, "Reptile")[1].startswith("in progress: 2,500 of 100,000<br>paper 99.48 ± 0.06 T")
    assert row(page, "MAML")[1].startswith("not run<br>")


def test_the_commands_of_the_runs_shown_are_listed(page):
    assert "`python examples/omniglot.py --algo maml --way 5 --shot 1 --out maml-5w1s`" in page
    assert "maml-5w1s-short" not in page   # the longer run of the same cell is the one shown
    assert "--algo reptile --way 5 --shot 1" in page


def test_one_figure_per_setting_with_runs_and_text_outside_the_markers_is_kept(runs):
    (runs / "README.md").write_text("# Omniglot\n\nData notes.\n\n<!-- results -->\nstale table\n<!-- /results -->\n\nEnd.\n")
    page = make_page(runs)
    assert page.startswith("# Omniglot\n\nData notes.\n\n<!-- results -->\n") and page.endswith("<!-- /results -->\n\nEnd.\n")
    assert "stale table" not in page
    assert (runs / "curves-5way-1shot.png").stat().st_size > 5000
    assert not (runs / "curves-20way-5shot.png").exists()
    assert "![5-way 1-shot](curves-5way-1shot.png)" in page
