"""Markdown shared by the generated reports (REPRODUCTION.md, its appendix, the README's block)
and the notebooks: GitHub tables, a cell as "mean ± h", the paper's wide layout of Tables 2 and 3,
Figure 3's points, the notes under a table, the links to the figures drawn beside them, and the
stamp of the tree a report comes from.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmlrepro import catalogue as cat
from mmlrepro import comparison as ex
from mmlrepro.devices import stretches
from mmlrepro.results import git_commit


def stamp() -> str:
    """Which tree the report comes from: ``commit <sha>``, or ``uncommitted changes (on top of
    <sha>)`` when tracked files differ from it (:func:`mmlrepro.results.git_commit`)."""
    commit = git_commit()
    if commit.endswith("-dirty"):
        return f"uncommitted changes (on top of commit `{commit[:-6]}`)"
    return f"commit `{commit}`"


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".4f") -> str:
    """A GitHub markdown table (no extra dependency)."""
    if frame.empty:
        return "_(no rows)_\n"

    def fmt(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return "–" if math.isnan(v) else format(v, floatfmt)
        return str(v).replace("|", "\\|")

    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def mean_std(row: pd.Series) -> str:
    return ex.mean_interval(row["mean"], row.get("ci_low", float("nan")))


def pct(v: float) -> str:
    return "–" if pd.isna(v) else f"{v * 100:+.1f}%"


_METRIC_SHORT = {"recall@20": "R@20", "ndcg@20": "N@20"}


def _cell_names(cell_cols: list[str], keys: tuple) -> dict[str, str]:
    """A Table 2 / 3 cell's columns with display names: model, loss, ES."""
    row = {}
    for col, key in zip(cell_cols, keys, strict=True):
        names = {"loss": ex.LOSS_NAMES, "model": ex.MODEL_NAMES}.get(col, {})
        row[{"early_stop": "ES"}.get(col, col)] = names.get(key, key)
    return row


def _by_cell(table: pd.DataFrame, cell_cols: list[str]):
    """Per cell of ``table`` (the paper's row order): its row with the cell's names, its rows,
    and its (``"<dataset> R@20"``-style name, row) per dataset and metric."""
    for keys, sub in table.groupby(cell_cols, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        cells = [(f"{d} {_METRIC_SHORT[metric]}", sub[(sub.dataset == d) & (sub.metric == metric)].iloc[0])
                 for d in cat.DATASETS for metric in ex.METRICS]
        yield _cell_names(cell_cols, keys), sub, cells


def wide_table(table: pd.DataFrame, cell_cols: list[str]) -> pd.DataFrame:
    """A paper-profile Table 2 / Table 3 (``compare(...)["table"]``) in the paper's own layout: one
    row per cell (the paper's row order), per dataset and metric the paper's number beside ours
    ("mean ± h (+x.x%)", "–" without runs), and the cell's evidence (:func:`mmlrepro.evidence.cell_level`;
    the levels counted when its four numbers differ)."""
    rows = []
    for row, sub, cells in _by_cell(table, cell_cols):
        for name, cell in cells:
            row[f"{name} paper"] = f"{cell['reported']:.4f}"
            ours = mean_std(cell)
            row[f"{name} ours"] = "–" if ours == "missing" else f"{ours} ({pct(cell['rel_diff'])})"
        levels = sub["evidence"].value_counts()
        row["evidence"] = levels.index[0] if len(levels) == 1 else "; ".join(f"{v}: {n}" for v, n in levels.items())
        rows.append(row)
    return pd.DataFrame(rows)


def means_table(table: pd.DataFrame, cell_cols: list[str]) -> pd.DataFrame:
    """A quick Table 2 / 3 with one row per cell: "mean ± h" per dataset and metric, seeds."""
    rows = []
    for row, sub, cells in _by_cell(table, cell_cols):
        for name, cell in cells:
            row[name] = mean_std(cell).replace("missing", "–")
        row["seeds"] = int(sub["seeds"].fillna(0).max())
        rows.append(row)
    return pd.DataFrame(rows)


def paper_table(table: pd.DataFrame, cell_cols: list[str]) -> pd.DataFrame:
    """A Table 2 / Table 3 comparison (``comparison.compare(...)["table"]``) for display: the cell
    columns, dataset, metric, reported, ``reproduced`` as "mean ± h" (h: the half-width of the
    95 % t-interval over seeds, shown from 2 seeds), seeds, profile, device,
    ``rel. diff`` in % and ``within ±5%``."""
    paper = "reported" in table
    out = table[cell_cols + ["dataset", "metric"] + (["reported"] if paper else [])].copy()
    out["reproduced"] = table.apply(mean_std, axis=1)
    out["seeds"] = table["seeds"].fillna(0).astype(int)
    out["profile"] = table["profile"]
    out["device"] = table["device"].fillna("")
    if paper:
        out["rel. diff"] = table["rel_diff"].map(lambda v: "–" if pd.isna(v) else f"{v * 100:+.1f}%")
        out["within ±5%"] = table["within_5pct"]
        out["evidence"] = table["evidence"]
    return out


def figure3_wide(table: pd.DataFrame) -> pd.DataFrame:
    """Figure 3's points, all six N columns ("–" where a point has no run): one row per dataset,
    loss (MML, CCL, BSL) and metric."""
    rows = []
    for d in cat.DATASETS:
        for loss in ("mml", "ccl", "bsl"):
            for metric in ex.METRICS:
                row = {"dataset": d, "loss": ex.LOSS_NAMES[loss], "metric": metric}
                for n in cat.FIGURE3_NEGATIVES:
                    hit = table[(table.dataset == d) & (table.loss == loss) & (table.n_negatives == n)
                                & (table.metric == metric)] if not table.empty else table
                    row[f"N={n}"] = "–" if hit.empty else mean_std(hit.iloc[0])
                rows.append(row)
    return pd.DataFrame(rows)


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """A comparison table for display: "mean ± h" in one column, relative differences in %,
    no device column (a footnote says it)."""
    shown = table.drop(columns=[c for c in ("device", "profile") if c in table.columns])
    if "mean" in shown:
        shown["value"] = table.apply(mean_std, axis=1)
        shown = shown.drop(columns=[c for c in ("mean", "std", "ci_low", "ci_high") if c in shown.columns])
    if "rel_diff" in shown:
        shown = shown.rename(columns={"rel_diff": "rel. diff"})
        shown["rel. diff"] = shown["rel. diff"].map(pct)
    return shown


def devices_note(table: pd.DataFrame) -> str:
    """The devices of a table's runs, for a footnote (one entry per distinct device string)."""
    devices = sorted({d for v in table["device"].dropna() for part in str(v).split(", ") for d in stretches(part)})
    return ("_Devices of these runs: " + "; ".join(devices) + "._\n") if devices else ""


def figure_link(paths: list[Path], text: str, out_dir: Path) -> str:
    png = [p for p in paths if str(p).endswith(".png")][0]
    return f"![{text}]({Path(png).resolve().relative_to(out_dir.resolve())})\n"


def figure3_figures(profile: str, results_dir: Any, figures_dir: Path, out_dir: Path) -> list[str]:
    lines = []
    try:
        from mmlrepro.plots import plot_metric_vs_negatives, save_figure

        runs = ex.group_runs("figure3", profile, results_dir)   # as notebook 05 draws it: one file, one figure
        for metric in ex.METRICS:
            fig = plot_metric_vs_negatives(runs.assign(loss=runs["loss_name"]), metric)
            lines.append(figure_link(save_figure(fig, f"figure3_{metric.replace('@', '')}", profile, figures_dir),
                                      f"Figure 3 {metric} [{profile}]", out_dir))
    except Exception as err:  # the table above is the result; a figure failure must not hide it
        lines.append(f"_(figure not drawn: {err})_\n")
    return lines
