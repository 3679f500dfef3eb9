"""The Omniglot results page: one table of every algorithm and setting, and learning curves.

    python examples/omniglot_table.py --runs examples/results/omniglot

reads every run folder under --runs that examples/omniglot.py finished (its
results.json and history.json) and writes --runs/README.md: rows MAML,
first-order MAML and Reptile; columns 5-way 1-shot, 5-way 5-shot, 20-way 1-shot
and 20-way 5-shot; each cell the test accuracy (mean ± 95% CI) with transductive
batch norm (T) and with support-set statistics (N), the paper's figures, the
meta-iterations and training time of the run, and below the table the command
that reproduces each cell (a cell tested from another cell's training, omniglot.py
--trained-by, says so and gives both commands). A cell without a finished run reads what
--runs/not_run.json says of it ({"reptile/20/5": "not run: why", "maml/5/1":
"in progress: how far", ...}), or "not run". Beside it, one
figure per setting, curves-<way>way-<shot>shot.png: validation accuracy of the
three algorithms against meta-iterations and against training time, a run still
in progress (a checkpoint and a history, no results yet) drawn dashed up to its
checkpoint.
If two runs fill one cell, the one with more meta-iterations is shown. Text of
README.md outside the markers <!-- results --> and <!-- /results --> is kept.
"""
import argparse
import json
from pathlib import Path

from omniglot_settings import PAPER
from tinymeta.meta.checkpoint import checkpoint_info

ALGORITHMS = {"maml": "MAML", "fomaml": "first-order MAML", "reptile": "Reptile"}
SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))
BATCH_NORMS = {"transductive": "T", "support-stats": "N"}
BEGIN, END = "<!-- results -->", "<!-- /results -->"


def find_runs(folder):
    """{(algo, way, shot): (run folder, its results)} of the finished runs under `folder`."""
    runs = {}
    for results_file in sorted(Path(folder).glob("*/results.json")):
        results = json.loads(results_file.read_text())
        cell = (results["algo"], results["way"], results["shot"])
        if cell not in runs or results["iterations"] > runs[cell][1]["iterations"]:
            runs[cell] = (results_file.parent, results)
    return runs


def find_in_progress(folder):
    """{(algo, way, shot): (run folder, iteration reached, iterations planned)} of the runs under `folder`
    that have a checkpoint and a history but no results yet (the furthest one of a cell)."""
    runs = {}
    for checkpoint in sorted(Path(folder).glob("*/checkpoint.npz")):
        run = checkpoint.parent
        if (run / "results.json").exists() or not (run / "history.json").exists():
            continue
        iteration, config = checkpoint_info(checkpoint)
        cell = (config["algo"], config["way"], config["shot"])
        if cell not in runs or iteration > runs[cell][1]:
            runs[cell] = (run, iteration, config["iters"])
    return runs


def percent(estimate):
    mean, ci95 = estimate
    return f"{mean * 100:.2f} ± {ci95 * 100:.2f}"


def duration(seconds):
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def cell_text(algo, way, shot, run, reason):
    """One table cell: measured (T and N) and the paper's figures, iterations and time, or why it is missing."""
    paper = [f"paper {PAPER[(algo, bn)][(way, shot)]} {tag}" for bn, tag in BATCH_NORMS.items()
             if (algo, bn) in PAPER]
    if run is None:
        return "<br>".join([reason or "not run", *paper])
    _, results = run
    measured = [f"**{percent(results['test'][bn])}** {tag}" for bn, tag in BATCH_NORMS.items()]
    budget = f"{results['iterations']:,} it., {duration(results['train_seconds'])}"
    if results.get("trained_by"):
        budget += f" (the training of {results['trained_by']}/)"
    return "<br>".join([*measured, *paper, budget])


def results_page(runs, reasons, in_progress):
    header = "| | " + " | ".join(f"{way}-way {shot}-shot" for way, shot in SETTINGS) + " |"
    rows = [header, "|---" * (len(SETTINGS) + 1) + "|"]
    for algo, label in ALGORITHMS.items():
        cells = [cell_text(algo, way, shot, runs.get((algo, way, shot)), reasons.get(f"{algo}/{way}/{shot}"))
                 for way, shot in SETTINGS]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    commands = [f"- {ALGORITHMS[algo]}, {way}-way {shot}-shot (`{folder.name}/`): `{results['command']}`"
                for (algo, way, shot), (folder, results) in sorted(runs.items()) if algo in ALGORITHMS]
    figures = [f"![{way}-way {shot}-shot](curves-{way}way-{shot}shot.png)" for way, shot in SETTINGS
               if _curves(runs, in_progress, way, shot)]
    test_tasks = sorted({results["test_tasks"] for _, results in runs.values()})
    return "\n".join([
        f"Test accuracy in percent on {', '.join(map(str, test_tasks)) or 'the'} tasks of characters never trained on "
        "(mean ± 95% CI), after the adaptation steps of each paper's code, with transductive batch norm "
        "(**T**: statistics of the batch at hand, as MAML's code) and without (**N**: the support set's "
        "statistics only); the papers' figures are on the full Omniglot, these on the data each run read. "
        "Below each cell: meta-iterations and training wall time (validation excluded) of the run.",
        "",
        *rows,
        "",
        "Commands (each writes its run folder; `python examples/omniglot_table.py` rebuilds this page):",
        "",
        *(commands or ["- none yet"]),
        "",
        "Validation accuracy during training, against meta-iterations and against training time "
        "(dashed: a run still in progress, up to its last checkpoint):",
        "",
        *figures])


def with_results(page, results):
    """`page` with the text between the markers replaced by `results` (or a new page of them)."""
    block = f"{BEGIN}\n{results}\n{END}"
    if BEGIN in page and END in page:
        return page[:page.index(BEGIN)] + block + page[page.index(END) + len(END):]
    return f"# Omniglot few-shot classification\n\n{block}\n"


def _curves(runs, in_progress, way, shot):
    """(label, run folder, last iteration, in progress) of each algorithm's curve in a setting: its finished
    run if that run trained (a --trained-by run only tested: its curve is the source run's, in the source's
    setting), else a run in progress, up to its checkpoint."""
    curves = []
    for algo, label in ALGORITHMS.items():
        finished = runs.get((algo, way, shot))
        if finished is not None and not finished[1].get("trained_by"):
            curves.append((label, finished[0], finished[1]["iterations"], False))
        elif (algo, way, shot) in in_progress:
            folder, iteration, planned = in_progress[(algo, way, shot)]
            curves.append((f"{label} (in progress: {iteration:,} of {planned:,})", folder, iteration, True))
    return curves


def plot_setting(path, curves, way, shot):
    """Validation accuracy of each curve's run against meta-iterations and against training time."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (by_iteration, by_time) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for label, folder, last, unfinished in curves:
        history = [h for h in json.loads((folder / "history.json").read_text()) if h["iteration"] <= last]
        accuracy = [h["validation"][0] for h in history]
        style = dict(marker="o", ms=3, label=label, linestyle="--" if unfinished else "-")
        by_iteration.plot([h["iteration"] for h in history], accuracy, **style)
        by_time.plot([h["train_seconds"] / 60 for h in history], accuracy, **style)
    by_iteration.set_xlabel("meta-iteration")
    by_time.set_xlabel("training time (min)")
    by_iteration.set_ylabel("validation accuracy")
    for ax in (by_iteration, by_time):
        ax.grid(alpha=0.3)
    by_iteration.legend()
    fig.suptitle(f"Omniglot {way}-way {shot}-shot")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=Path, default=Path("examples/results/omniglot"),
                   help="folder of run folders; README.md and the figures are written there")
    args = p.parse_args(argv)
    runs, in_progress = find_runs(args.runs), find_in_progress(args.runs)
    reasons_file = args.runs / "not_run.json"
    reasons = json.loads(reasons_file.read_text()) if reasons_file.exists() else {}
    readme = args.runs / "README.md"
    readme.write_text(with_results(readme.read_text() if readme.exists() else "",
                                   results_page(runs, reasons, in_progress)))
    for way, shot in SETTINGS:
        curves = _curves(runs, in_progress, way, shot)
        if curves:
            plot_setting(args.runs / f"curves-{way}way-{shot}shot.png", curves, way, shot)
    print(f"wrote {args.runs / 'README.md'} from {len(runs)} runs")


if __name__ == "__main__":
    main()
