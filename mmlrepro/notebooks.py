"""Run the notebooks headless with papermill, and the small helpers the notebooks share.

Every notebook in ``notebooks/`` has one cell tagged ``parameters`` (at least ``profile``,
``datasets``, ``seeds``, ``results_dir``, ``INTERACTIVE`` and ``smoke``; see
:data:`REQUIRED_PARAMETERS`) and computes its derived values in the next cell, so papermill can
run it with other values: :func:`run_notebooks` executes them in order, kernel pinned, and stops
at the first failure with the notebook and the cell named.

Also here: MML Table 1 as published (:data:`PAPER_TABLE1`, SPEC §2) and :func:`table1`, which
puts a set of datasets' statistics next to it (notebook 02).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mmlrepro.config import PROFILES as RUN_PROFILES
from mmlrepro.data import Dataset
from mmlrepro.files import check_writable

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOK_NAMES = (
    "01_margin_geometry.ipynb",
    "02_datasets.ipynb",
    "03_table2_architectures.ipynb",
    "04_table3_losses.ipynb",
    "05_figure3_negatives.ipynb",
    "06_li2023_contrastive.ipynb",
    "07_beyond_the_paper.ipynb",
)
NOTEBOOKS = tuple(NOTEBOOK_DIR / name for name in NOTEBOOK_NAMES)
REQUIRED_PARAMETERS = ("profile", "datasets", "seeds", "results_dir", "INTERACTIVE", "smoke")
PROFILES = tuple(p for p in RUN_PROFILES if p != "smoke")  # the smoke runs are a flag (smoke=True)
KERNEL_NAME = "python3"

# MML Table 1 (SPEC §2): the LightGCN split of Gowalla and Yelp2018.
PAPER_TABLE1: Mapping[str, Mapping[str, float]] = {
    "yelp2018": {"users": 31_668, "items": 38_048, "interactions": 1_561_406,
                 "train": 1_237_259, "test": 324_147, "density": 0.00130},
    "gowalla": {"users": 29_858, "items": 40_981, "interactions": 1_027_370,
                "train": 810_128, "test": 217_242, "density": 0.00084},
}


class NotebookError(RuntimeError):
    """A notebook failed under papermill; the message names the notebook and the cell."""


def run_notebooks(profile: str = "quick", output_dir: str | Path | None = None,
                  parameters: Mapping | None = None, smoke: bool = False,
                  kernel_name: str = KERNEL_NAME,
                  notebooks: Sequence[str | Path] | None = None,
                  progress: bool = False, cell_timeout: int | None = None) -> list[Path]:
    """Execute notebooks headless with papermill, in order, and return the executed paths.

    ``notebooks``: paths or names under ``notebooks/`` (default: every one of
    :data:`NOTEBOOKS` that exists; a missing one is skipped with a warning). Each runs in its
    own folder (so relative paths such as ``results_dir = "../results"`` keep their meaning)
    with the parameters ``profile``, ``smoke`` and ``parameters`` (which win), under the kernel
    ``kernel_name``. The executed notebook is written to ``output_dir / <name>`` (created), or
    over the source when ``output_dir`` is None. The first failure stops the run with a
    :class:`NotebookError` naming the notebook, the failing cell (its index and execution count)
    and the exception; the partly executed notebook is still written. ``cell_timeout``
    (seconds, default none) fails a cell that runs longer.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    paths = _resolve(notebooks)
    wanted = {"profile": profile, "smoke": bool(smoke), **dict(parameters or {})}
    out_dir = Path(output_dir) if output_dir is not None else None
    if out_dir is not None:
        check_writable(out_dir, "notebook output folder")
        out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for path in paths:
        target = out_dir / path.name if out_dir is not None else path
        params = _changed_parameters(path, wanted)
        try:
            pm.execute_notebook(str(path), str(target), parameters=params,
                                kernel_name=kernel_name, cwd=str(path.parent),
                                progress_bar=progress, request_save_on_cell_execute=False,
                                execution_timeout=cell_timeout)
        except PapermillExecutionError as err:
            raise NotebookError(
                f"{path.name}: cell {err.cell_index} (execution count {err.exec_count}) failed: "
                f"{err.ename}: {err.evalue}\n  cell source:\n{_indent(err.source)}\n"
                f"  executed notebook (with the traceback): {target}") from err
        if out_dir is None and params:
            _fold_injected_parameters(target, params)
        done.append(target)
    return done


def _changed_parameters(path: Path, wanted: Mapping) -> dict:
    """The parameters of ``wanted`` whose value differs from the notebook's ``parameters`` cell:
    papermill adds an "injected-parameters" cell only when it is given some."""
    import ast

    import papermill as pm

    defaults = {}
    for name, info in pm.inspect_notebook(str(path)).items():
        try:
            defaults[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            defaults[name] = object()  # not a literal: always pass
    return {k: v for k, v in wanted.items() if k not in defaults or defaults[k] != v or type(defaults[k]) is not type(v)}


def _fold_injected_parameters(path: Path, params: Mapping) -> None:
    """An in-place execution with parameters: write the values into the ``parameters`` cell and
    drop papermill's injected cell, so that the committed notebook has one place that sets them
    and editing it takes effect (issue 17)."""
    import re

    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    for cell in nb.cells:
        if "parameters" in cell.metadata.get("tags", []):
            lines = cell.source.splitlines()
            for name, value in params.items():
                pattern = re.compile(rf"^{re.escape(name)}\s*=\s*(.*?)(\s+#.*)?$")
                hit = next((i for i, line in enumerate(lines) if pattern.match(line)), None)
                if hit is None:
                    lines.append(f"{name} = {value!r}")
                else:
                    comment = pattern.match(lines[hit]).group(2) or ""
                    lines[hit] = f"{name} = {value!r}{comment}"
            cell.source = "\n".join(lines)
    nb.metadata.get("papermill", {})["parameters"] = {}
    nbformat.write(nb, path)


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in str(text).splitlines())


def _resolve(notebooks: Sequence[str | Path] | None) -> list[Path]:
    if notebooks is None:
        missing = [p.name for p in NOTEBOOKS if not p.exists()]
        if missing:
            warnings.warn(f"notebooks not written yet, skipped: {', '.join(missing)}",
                          stacklevel=3)
        return [p for p in NOTEBOOKS if p.exists()]
    paths = []
    for nb in notebooks:
        path = Path(nb)
        if not path.exists() and (NOTEBOOK_DIR / path).exists():
            path = NOTEBOOK_DIR / path
        if not path.exists():
            raise FileNotFoundError(f"notebook {nb} not found (nor in {NOTEBOOK_DIR})")
        paths.append(path.resolve())
    return paths


def table1(datasets: Sequence[Dataset] | Mapping[str, Dataset],
           reported: Mapping[str, Mapping[str, float]] = PAPER_TABLE1) -> pd.DataFrame:
    """MML Table 1 reproduced next to the paper's numbers (SPEC §2).

    Rows: the statistics of :meth:`Dataset.stats` (users, items, interactions, train, test,
    density); columns: ``(dataset, "reproduced" | "paper" | "match")``. Density is rounded to
    the paper's 5 decimals; ``match`` says whether the two are equal (counts exactly). A
    dataset the paper does not list gets an empty ``paper`` column and ``match`` False.
    """
    items = datasets.items() if isinstance(datasets, Mapping) else [(d.name, d)
                                                                     for d in datasets]
    columns = {}
    for name, ds in items:
        ours = {k: round(v, 5) if k == "density" else int(v) for k, v in ds.stats().items()}
        paper = reported.get(name, {})
        columns[(name, "reproduced")] = pd.Series(ours, dtype=object)
        columns[(name, "paper")] = pd.Series({k: paper.get(k) for k in ours}, dtype=object)
        columns[(name, "match")] = pd.Series({k: paper.get(k) == v for k, v in ours.items()})
    if not columns:
        raise ValueError("table1: no dataset given")
    table = pd.DataFrame(columns)
    table.index.name = "statistic"
    return table


def distribution_summary(datasets: Sequence[Dataset]) -> pd.DataFrame:
    """The numbers behind notebook 02's distributions, one column per dataset (SPEC §2, §4):

    - ``median / mean / max train items per user``;
    - ``train share of the top 1% / 10% items`` (by train interactions): the long tail;
    - ``items with < 5 train interactions`` (share);
    - ``P(uniform negative is a train positive)``: E over train rows of L_u / n_items, the chance
      that one uniformly drawn negative (SPEC §4, positives not excluded) is in fact one of the
      row's user's own train items.
    """
    columns = {}
    for ds in datasets:
        lengths = ds.history_lengths()
        pop = np.sort(ds.item_popularity())[::-1]
        cum = np.cumsum(pop) / pop.sum()
        top = {f: float(cum[max(1, int(round(f * ds.n_items))) - 1]) for f in (0.01, 0.10)}
        rows_weighted = float((lengths.astype(float) ** 2).sum() / lengths.sum() / ds.n_items)
        columns[ds.name] = pd.Series({
            "median train items per user": float(pd.Series(lengths).median()),
            "mean train items per user": round(float(lengths.mean()), 2),
            "max train items per user": int(lengths.max()),
            "train share of the top 1% items": round(top[0.01], 4),
            "train share of the top 10% items": round(top[0.10], 4),
            "items with < 5 train interactions": round(float(np.mean(pop < 5)), 4),
            "P(uniform negative is a train positive)": round(rows_weighted, 6),
        }, dtype=object)
    if not columns:
        raise ValueError("distribution_summary: no dataset given")
    return pd.DataFrame(columns)
