"""The notebooks: structure (parameters cell, first markdown cell), a papermill smoke run of each,
the runner's error reporting, and the table helpers of mmlrepro.notebooks."""

import ast

import nbformat
import numpy as np
import pytest

from mmlrepro import notebooks as nbs
from mmlrepro.data import Dataset, load_dataset

EXISTING = [p for p in nbs.NOTEBOOKS if p.exists()]
IDS = [p.stem for p in EXISTING]


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _assigned_names(source: str) -> set[str]:
    return {t.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)}


def test_notebook_list_is_ordered_and_present():
    assert [p.name[:2] for p in nbs.NOTEBOOKS] == ["01", "02", "03", "04", "05", "06", "07"]
    assert {"01_margin_geometry", "02_datasets"} <= set(IDS)


@pytest.mark.parametrize("path", EXISTING, ids=IDS)
def test_notebook_structure(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert "profile" in nb.cells[0].source  # says which profile/device made the outputs
    assert nb.metadata["kernelspec"]["name"] == nbs.KERNEL_NAME
    params = [i for i, c in enumerate(nb.cells) if "parameters" in _tags(c)]
    assert len(params) == 1, f"{path.name}: {len(params)} cells tagged 'parameters'"
    cell = nb.cells[params[0]]
    assert cell.cell_type == "code"
    assert set(nbs.REQUIRED_PARAMETERS) <= _assigned_names(cell.source)
    assert nb.cells[params[0] + 1].cell_type == "code"  # the derived values


@pytest.mark.parametrize("path", EXISTING, ids=IDS)
def test_checked_cells_have_committed_outputs(path):
    """``pytest --nbval-lax`` compares only cells tagged ``nbval-check-output``, against the
    outputs saved in the notebook: a committed notebook must carry them (run it first)."""
    nb = nbformat.read(path, as_version=4)
    for c in nb.cells:
        if "nbval-check-output" in _tags(c):
            assert c.cell_type == "code" and c.outputs, f"{path.name}: checked cell not executed"
            assert not any(o.output_type == "error" for o in c.outputs)


@pytest.mark.notebooks
@pytest.mark.parametrize("path", EXISTING, ids=IDS)
def test_notebook_smoke_run(path, tmp_path):
    figures = tmp_path / "figures"
    params = {"INTERACTIVE": False, "results_dir": str(tmp_path / "results"),
              "figures_dir": str(figures)}
    [out] = nbs.run_notebooks("quick", output_dir=tmp_path / "out", parameters=params,
                              smoke=True, notebooks=[path])
    nb = nbformat.read(out, as_version=4)
    assert out == tmp_path / "out" / path.name
    assert not any(o.output_type == "error" for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)
    if any("plots." in c.source for c in nb.cells if c.cell_type == "code"):  # figures shown
        assert any("image/png" in o.get("data", {}) for c in nb.cells
                   if c.cell_type == "code" for o in c.outputs)
    injected = [c for c in nb.cells if "injected-parameters" in _tags(c)]
    assert len(injected) == 1 and "smoke = True" in injected[0].source
    saved = sorted(p.name for p in figures.glob("*")) if figures.exists() else []
    assert all("_smoke." in name for name in saved), saved  # never overwrites real figures
    assert len([n for n in saved if n.endswith(".png")]) == len(
        [n for n in saved if n.endswith(".pdf")])


@pytest.mark.notebooks
def test_run_notebooks_names_the_failing_cell(tmp_path):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3",
                                                           "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_markdown_cell("# t"),
                nbformat.v4.new_code_cell("profile = 'quick'\nsmoke = False",
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_code_cell("raise ValueError('boom ' + profile)")]
    path = tmp_path / "bad.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(nbs.NotebookError, match=r"bad\.ipynb: cell 4 .*ValueError: boom paper"):
        nbs.run_notebooks("paper", output_dir=tmp_path / "out", notebooks=[path])
    assert (tmp_path / "out" / "bad.ipynb").exists()  # the partly executed notebook is kept


def test_run_notebooks_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="profile"):
        nbs.run_notebooks("fast", notebooks=[])
    with pytest.raises(FileNotFoundError, match="nope.ipynb"):
        nbs.run_notebooks("quick", notebooks=["nope.ipynb"])


def _tiny() -> Dataset:
    # 3 users, 5 items; train rows: u0 {0, 1}, u1 {0, 2, 3}, u2 {0}; test: u0 {4}, u2 {1}
    indptr = np.array([0, 2, 5, 6])
    test_indptr = np.array([0, 1, 1, 2])
    return Dataset("tiny", 3, 5, indptr, np.array([0, 1, 0, 2, 3, 0]), test_indptr,
                   np.array([4, 1]))


def test_table1_hand_worked():
    table = nbs.table1([_tiny()], reported={"tiny": {"users": 3, "items": 5, "interactions": 8,
                                                     "train": 6, "test": 2, "density": 0.5}})
    assert list(table.index) == ["users", "items", "interactions", "train", "test", "density"]
    assert list(table[("tiny", "reproduced")]) == [3, 5, 8, 6, 2, round(8 / 15, 5)]
    assert list(table[("tiny", "match")]) == [True, True, True, True, True, False]
    table = nbs.table1({"other": _tiny()})
    assert list(table[("other", "paper")]) == [None] * 6
    with pytest.raises(ValueError, match="no dataset"):
        nbs.table1([])


def test_distribution_summary_hand_worked():
    col = nbs.distribution_summary([_tiny()])["tiny"]
    assert col["median train items per user"] == 2.0
    assert col["mean train items per user"] == 2.0
    assert col["max train items per user"] == 3
    # popularity [3, 1, 1, 1, 0]: top 1% and top 10% of 5 items = the top item = 3 / 6
    assert col["train share of the top 1% items"] == 0.5
    assert col["train share of the top 10% items"] == 0.5
    assert col["items with < 5 train interactions"] == 1.0
    # E over rows of L_u / n_items = (2·2 + 3·3 + 1·1) / 6 / 5
    assert col["P(uniform negative is a train positive)"] == round(14 / 30, 6)


@pytest.mark.real_data
def test_table1_matches_the_paper_on_real_data(data_dir):
    table = nbs.table1([load_dataset(n, data_dir=data_dir) for n in ("gowalla", "yelp2018")])
    assert table.xs("match", axis=1, level=1).to_numpy().all()
