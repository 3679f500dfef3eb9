"""The lecture notebook (examples/lecture.ipynb) runs top to bottom on this checkout's code, its committed
outputs are what that code prints now, and every result its text quotes is a number printed above it.

The notebook is executed once per session by a Jupyter kernel (nbclient); a cell that raises fails the run.
After a change that moves its numbers, re-execute it with
`jupyter execute --inplace examples/lecture.ipynb` and bring the quoted numbers in its text up to date.
"""
import os
import re
from pathlib import Path

import pytest

for _module in ("nbformat", "nbclient", "ipykernel", "matplotlib"):
    pytest.importorskip(_module, reason=f"{_module} is not installed; `pip install -e \".[test]\"` brings it")
import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "lecture.ipynb"
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
# In the text: a result quoted as a decimal, in exponent form or as a percentage (counts like "25 tasks" are settings).
QUOTED = re.compile(r"(?<![\w.])\d+(?:\.\d+(?:e[-+]?\d+)?%?|e[-+]?\d+|%)")
NOISE = 1e-12  # numbers this small print rounding error, whatever their digits


@pytest.fixture(scope="module")
def committed():
    return nbformat.read(NOTEBOOK, as_version=4)


@pytest.fixture(scope="module")
def executed():
    """The notebook run afresh in a kernel that imports this checkout's tinymeta and draws inline figures."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        patch.delenv("MPLBACKEND", raising=False)
        NotebookClient(notebook, timeout=600, kernel_name="python3", record_timing=False,
                       resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    return notebook


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def printed(cell):
    """Everything a code cell printed or returned as text."""
    parts = [out.text for out in cell.outputs if out.output_type == "stream"]
    parts += [out.data["text/plain"] for out in cell.outputs if "text/plain" in out.get("data", {})]
    return "".join(parts)


def figures(cell):
    return sum("image/png" in out.get("data", {}) for out in cell.outputs)


def same_within_printed_digits(a, b):
    """Equal up to one unit of the last printed digit, or both rounding noise."""
    x, y = float(a), float(b)
    if abs(x) < NOISE and abs(y) < NOISE:
        return True
    mantissa, _, exponent = a.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    unit = 10.0 ** (int(exponent or 0) - decimals)
    return abs(x - y) <= unit * (1 + 1e-9)


def test_notebook_runs_top_to_bottom_without_error(executed):
    cells = code_cells(executed)
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    assert not [out for cell in cells for out in cell.outputs if out.output_type == "error"]


def test_committed_notebook_was_run_top_to_bottom_in_one_kernel(committed):
    assert committed.metadata.kernelspec.name == "python3"
    cells = code_cells(committed)
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))


def test_committed_figures_are_embedded_as_png(committed, executed):
    drawn = [figures(cell) for cell in code_cells(executed)]
    assert sum(drawn) >= 5   # tasks, first-order gap, l1 and l2, Reptile's arrows, before and after adaptation
    assert [figures(cell) for cell in code_cells(committed)] == drawn


def test_committed_outputs_are_what_the_code_prints_now(committed, executed):
    for number, (old, new) in enumerate(zip(code_cells(committed), code_cells(executed)), start=1):
        assert old.source == new.source
        old_text, new_text = printed(old), printed(new)
        assert NUMBER.sub("#", old_text) == NUMBER.sub("#", new_text), \
            f"code cell {number} prints other text now:\n{new_text}\ncommitted:\n{old_text}"
        for a, b in zip(NUMBER.findall(old_text), NUMBER.findall(new_text)):
            assert same_within_printed_digits(a, b), f"code cell {number}: committed {a}, now {b}:\n{new_text}"


def test_every_quoted_result_is_printed_by_a_cell_above_it(committed):
    """After the first code cell, every decimal, exponent or percentage in a text cell appears in a code
    cell above it: in what it printed, or in its source (a setting such as the step size)."""
    above, unbacked = "", []
    for cell in committed.cells:
        if cell.cell_type == "code":
            above += cell.source + printed(cell)
        elif above:
            unbacked += [(quoted, cell.source[:60]) for quoted in QUOTED.findall(cell.source)
                         if not re.search(rf"(?<![\d.]){re.escape(quoted)}(?!\d)", above)]
    assert not unbacked, f"numbers in the text that no cell above prints: {unbacked}"
