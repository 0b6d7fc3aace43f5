"""Figures of stored runs, for the table and figure notebooks (03 to 07) and the report.

- :func:`plot_metric_vs_negatives` (MML Figure 3), :func:`plot_reproduced_vs_reported` (a dot
  plot over SPEC §10's ±5 % band), :func:`plot_heatmap` (InfoNCE+ λ × ε);
- :func:`plot_learning_curves` (the selected epoch and the early stops marked),
  :func:`plot_gap_vs_noise` (the paper's gaps against seed-to-seed noise);
- :func:`plot_truncated_agreement` (the paper's orderings kept by a truncated paper protocol,
  issue 36) and :func:`mark_verdicts` (✓/○/✗ on a claims table).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mmlrepro.config import MIN_DELTA
from mmlrepro.plots.style import (
    _log_x_ticks,
    _new_figure,
    _require,
    _styled,
    _suptitle,
    dataset_order,
    loss_color,
    loss_palette,
    runs_caption,
)
from mmlrepro.reported import LOSS_NAMES
from mmlrepro.selection import paper_monitor, select_best


def _figure_legend(fig: Figure, axes, extra: Sequence = (),
                   rename: dict[str, str] | None = None) -> None:
    """One legend for the whole figure, outside the panels on the right (never over a line):
    every axes' entries, each label once, then the ``extra`` handles; the axes' own legends are
    removed. ``rename`` maps labels (seaborn's section titles) to the text shown; registry
    loss names show as their display names (``"mml"`` as ``"MML"``)."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(text, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    for handle in extra:
        entries[handle.get_label()] = handle
    labels = [(rename or {}).get(t, LOSS_NAMES.get(t, t)) for t in entries]
    fig.legend(list(entries.values()), labels, loc="outside right upper", fontsize=8)


@_styled
def plot_metric_vs_negatives(df: pd.DataFrame, metric: str = "recall@20",
                             x: str = "n_negatives", hue: str = "loss",
                             col: str = "dataset", title_suffix: str | None = None) -> Figure:
    """MML Figure 3: ``metric`` against the number of negatives N (log scale), one line per
    ``hue`` (a loss, in its :func:`loss_color`, whichever name the frame uses), one panel per
    ``col`` (dataset, in the tables' order). With several rows per point (seeds) the line is
    their mean and the band their min–max range [assumed: the paper shows one run]. The title
    gives the profile and the seeds per point (:func:`runs_caption`, then ``title_suffix``)."""
    _require(df, [metric, x, hue, col], "plot_metric_vs_negatives")
    panels = dataset_order(df[col])
    fig = _new_figure(4.2 * len(panels) + 1.8, 4.0)
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0])
    hue_order = list(dict.fromkeys(df[hue]))
    palette = loss_palette(hue_order)
    for ax, panel in zip(axes, panels, strict=True):
        sub = df[df[col] == panel]
        sns.lineplot(data=sub, x=x, y=metric, hue=hue, hue_order=hue_order, palette=palette,
                     marker="o", errorbar=("pi", 100), ax=ax)
        _log_x_ticks(ax, sub[x])
        ax.set_title(str(panel))
        ax.set_xlabel("negatives per row N")
        ax.set_ylabel(metric)
    _figure_legend(fig, axes)
    _suptitle(fig, f"{metric} against the number of negatives",
              runs_caption(df, [hue, col, x], title_suffix))
    return fig


BAND_COLOR = "0.88"   # the ±5 % band around the paper's number (SPEC §10)


@_styled
def plot_reproduced_vs_reported(df: pd.DataFrame, label: str = "label",
                                value: str = "reproduced", reported: str = "reported",
                                panels: Sequence[str] = ("metric", "dataset"), hue: str = "loss",
                                title_suffix: str | None = None) -> Figure:
    """Reproduced against reported as a dot plot of the relative difference
    ``value / reported − 1`` (%): per ``label`` (a cell) a small dot per row (a seed) and a large
    dot at their mean, in the :func:`loss_color` of its ``hue`` column (the loss; the label itself
    when the frame has no such column), over a grey band of ±5 % (SPEC §10's tolerance) around 0,
    the paper's number. One panel per combination of the ``panels`` columns present in ``df``
    (rows: the first, columns: the second, datasets in the tables' order); rows without a
    ``reported`` number are left out. The title gives the profile and the seeds per cell
    (:func:`runs_caption`, then ``title_suffix``)."""
    _require(df, [label, value, reported], "plot_reproduced_vs_reported")
    df = df[df[reported].notna() & (df[reported] != 0)]
    _require(df, [label], "plot_reproduced_vs_reported (rows with a reported number)")
    df = df.assign(rel_pct=100 * (df[value] / df[reported] - 1), **{label: df[label].astype(str)})
    present = [p for p in panels if p in df.columns]
    row_keys = dataset_order(df[present[0]]) if present else [None]
    col_keys = dataset_order(df[present[1]]) if len(present) > 1 else [None]
    order = list(dict.fromkeys(df[label]))
    key = hue if hue in df.columns else label
    loss_of = df.groupby(label, sort=False)[key].first()
    palette = {name: loss_color(loss_of[name]) for name in order}
    reach = max(8.0, float(np.nanmax(np.abs(df["rel_pct"]))) * 1.15)
    fig = _new_figure(3.6 * len(col_keys) + 1.2, 1.2 + 0.3 * len(order) * len(row_keys) + 0.6)
    axes = fig.subplots(len(row_keys), len(col_keys), squeeze=False, sharey=True, sharex=True)
    y_of = {name: i for i, name in enumerate(order)}
    for i, rk in enumerate(row_keys):
        for j, ck in enumerate(col_keys):
            ax, sub = axes[i, j], df
            if rk is not None:
                sub = sub[sub[present[0]] == rk]
            if ck is not None:
                sub = sub[sub[present[1]] == ck]
            ax.axvspan(-5, 5, color=BAND_COLOR, zorder=0, label="±5 % of the paper")
            ax.axvline(0, color="black", lw=0.8, zorder=1, label="the paper's number")
            ax.scatter(sub["rel_pct"], sub[label].map(y_of), s=12, zorder=3, alpha=0.6,
                       color=[palette[n] for n in sub[label]])
            mean = sub.groupby(label, sort=False)["rel_pct"].mean()
            ax.scatter(mean.to_numpy(), mean.index.map(y_of), s=46, zorder=4, edgecolors="black",
                       linewidths=0.6, color=[palette[n] for n in mean.index])
            ax.set_yticks(range(len(order)), order)
            ax.set_xlim(-reach, reach)
            ax.set_title(" · ".join(str(k) for k in (ck, rk) if k is not None))
            ax.set_xlabel("reproduced / reported − 1 (%)")
    axes[0, 0].invert_yaxis()     # shared y axis: first cell on top
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles[:2], labels[:2], loc="outside lower center", ncols=2, fontsize=8)
    _suptitle(fig, "Reproduced vs reported", runs_caption(df, [label, *present], title_suffix))
    return fig


def _grid_edge(values: Sequence[float], best: float, name: str) -> str:
    """", the edge of the λ grid (1.0–1.3)" when ``best`` is the first or last of ≥ 3 values."""
    values = sorted(values)
    if len(values) >= 3 and best in (values[0], values[-1]):
        return f", the edge of the {name} grid ({values[0]:g}–{values[-1]:g})"
    return ""


@_styled
def plot_heatmap(df: pd.DataFrame, index: str, columns: str, values: str,
                 fmt: str = ".4f", title: str | None = None, cmap: str = "viridis",
                 names: dict[str, str] | None = None, caption: str | None = None) -> Figure:
    """Annotated heatmap of ``values`` (mean over duplicate cells, e.g. seeds) on an
    ``index`` × ``columns`` grid, the best cell outlined (e.g. the InfoNCE+ λ × ε sweep), and a
    line under the title saying where the optimum lies: "best at λ = 1.3, ε = 0, the edge of
    the λ grid (1.0–1.3)" (the edge named for a dimension of ≥ 3 values: the optimum may lie
    beyond the grid). ``names`` gives the axes' display names (``{"hp_lam": "λ"}``);
    ``caption`` (e.g. "paper profile · 1 seed") goes in the title's brackets."""
    _require(df, [index, columns, values], "plot_heatmap")
    names = names or {}
    grid = df.pivot_table(index=index, columns=columns, values=values, aggfunc="mean")
    fig = _new_figure(1.6 + 1.0 * grid.shape[1], 1.4 + 0.55 * grid.shape[0])
    ax = fig.add_subplot()
    sns.heatmap(grid, annot=True, fmt=fmt, cmap=cmap, ax=ax, cbar_kws={"label": values},
                linewidths=0.5, linecolor="white")
    best = np.unravel_index(np.nanargmax(grid.to_numpy(dtype=float)), grid.shape)
    ax.add_patch(mpl.patches.Rectangle((best[1], best[0]), 1, 1, fill=False, ec="red", lw=2.5))
    row, col = grid.index[best[0]], grid.columns[best[1]]
    iname, cname = names.get(index, index), names.get(columns, columns)
    where = (f"best at {iname} = {row:g}, {cname} = {col:g}" + _grid_edge(list(grid.index), row, iname)
             + _grid_edge(list(grid.columns), col, cname))
    ax.set_ylabel(iname)
    ax.set_xlabel(cname)
    head = title or f"{values} over {iname} × {cname}"
    ax.set_title(f"{head}{f' [{caption}]' if caption else ''}\n{where}")
    return fig



def _selected_epoch(line: pd.DataFrame, x: str, metric: str, dataset: str) -> tuple[float, float]:
    """``(epoch, metric there)`` of one line: the epoch the one selection rule
    (:func:`mmlrepro.selection.select_best`, SPEC §6) picks on the seeds' mean of the line's
    monitor (:func:`mmlrepro.selection.paper_monitor`; ``metric`` itself when the frame lacks
    that column), with the runs' default ``min_delta``."""
    model = line["model"].iloc[0] if "model" in line.columns else None
    monitor = paper_monitor(dataset, model)
    if monitor not in line.columns or line[monitor].isna().all():
        monitor = metric
    mean = line.groupby(x, sort=True)[list(dict.fromkeys([metric, monitor]))].mean()
    best = select_best([{monitor: v} for v in mean[monitor]], monitor, MIN_DELTA)
    epoch = mean.index[best]
    return epoch, float(mean.loc[epoch, metric])


# Early-stop marks on learning curves: (column of comparison.learning_curves, marker, face, legend)
STOP_MARKS = (("stop_epoch", "X", "0.35", "our early stop (SPEC §6 rule)"),
              ("paper_stop_epoch", "v", "white", "the paper's early stop"))


def _has(df: pd.DataFrame, column: str) -> bool:
    return column in df.columns and df[column].notna().any()


def _mark_stops(ax, sub: pd.DataFrame, lines: list[str], x: str, metric: str, palette, hue: str) -> None:
    """On each line, where the early-stopping rule ends it (``stop_epoch``: ours; an early-stopped
    run's last epoch) and where the paper's early-stopped run stopped (``paper_stop_epoch``),
    at the line's mean ``metric`` of that epoch (the last epoch drawn if the line is shorter)."""
    for column, marker, face, _ in STOP_MARKS:
        if not _has(sub, column):
            continue
        points = []
        for _, line in sub.groupby(lines, sort=False):
            stop = line[column].dropna()
            if stop.empty:
                continue
            mean = line.groupby(x, sort=True)[metric].mean()
            epoch = min(float(stop.mean()), float(mean.index.max()))
            at = mean.index[np.searchsorted(mean.index.to_numpy(dtype=float), epoch, side="left")]
            points.append((at, float(mean.loc[at]), palette[line[hue].iloc[0]]))
        if points:
            ax.scatter([p[0] for p in points], [p[1] for p in points], marker=marker, s=55, zorder=6,
                       color=[p[2] if face != "white" else "white" for p in points],
                       edgecolors=[p[2] for p in points] if face == "white" else "black", linewidths=1.2)


@_styled
def plot_learning_curves(df: pd.DataFrame, metric: str = "recall@20", x: str = "epoch",
                         hue: str = "loss_name", style: str | None = "model",
                         col: str = "dataset", title_suffix: str | None = None) -> Figure:
    """``metric`` after every epoch (from :func:`mmlrepro.comparison.learning_curves`): colour
    by ``hue`` (the loss, :func:`loss_color`), line style by ``style`` (the model), one panel
    per ``col`` (dataset, in the tables' order); with several seeds the line is their mean and
    the band their min–max range. A dot marks each line's selected epoch, the one a paper
    table reports: where the seeds' mean of the selection metric peaks
    (:func:`mmlrepro.selection.paper_monitor`; SPEC §6). The legend, with a "selected epoch" entry, sits
    outside the panels; the title gives the profile and the seeds per line
    (:func:`runs_caption`, then ``title_suffix``)."""
    _require(df, [metric, x, hue, col] + ([style] if style else []), "plot_learning_curves")
    panels = dataset_order(df[col])
    fig = _new_figure(4.2 * len(panels) + 1.8, 4.0)
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0])
    hue_order = list(dict.fromkeys(df[hue]))
    style_order = list(dict.fromkeys(df[style])) if style else None
    palette = loss_palette(hue_order)
    lines = [hue] + ([style] if style else [])
    for ax, panel in zip(axes, panels, strict=True):
        sub = df[df[col] == panel]
        sns.lineplot(data=sub, x=x, y=metric, hue=hue, hue_order=hue_order, style=style,
                     style_order=style_order, palette=palette, errorbar=("pi", 100), ax=ax)
        _mark_stops(ax, sub, lines, x, metric, palette, hue)
        best = [(*_selected_epoch(line, x, metric, str(panel)), palette[line[hue].iloc[0]])
                for _, line in sub.groupby(lines, sort=False)]
        ax.scatter([b[0] for b in best], [b[1] for b in best], color=[b[2] for b in best],
                   s=30, zorder=5, edgecolors="black", linewidths=0.5)
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
        ax.set_title(str(panel))
        ax.set_ylabel(metric)
        ax.set_ylim(0, None)
    dot = Line2D([], [], ls="", marker="o", markersize=5, color="0.35", markeredgecolor="black",
                 label="selected epoch")
    extra = [dot] + [Line2D([], [], ls="", marker=m, markersize=7, color="0.35", markerfacecolor=f,
                            label=text) for column, m, f, text in STOP_MARKS if _has(df, column)]
    _figure_legend(fig, axes, extra=extra, rename={"loss_name": "loss", "model_name": "model"})
    _suptitle(fig, f"{metric} per epoch", runs_caption(df, [*lines, col], title_suffix))
    return fig


@_styled
def plot_gap_vs_noise(df: pd.DataFrame, label: str = "label", panels: str = "metric",
                      title_suffix: str | None = None) -> Figure:
    """The paper's gaps against run-to-run noise (from :func:`mmlrepro.comparison.seed_noise`):
    per row of ``df`` (y = ``label``) a black diamond at ``paper_gap`` (%), a dot in MML's
    colour at ``reproduced_gap`` and a grey bar of ±2·``noise`` around 0 — a gap inside the bar
    is within what two runs with different seeds differ by (≈ 95%). One panel per value of
    ``panels``; the title gives the profile and seeds where the frame has them
    (:func:`runs_caption`, then ``title_suffix``)."""
    _require(df, [label, panels, "paper_gap", "reproduced_gap", "noise"], "plot_gap_vs_noise")
    keys = dataset_order(df[panels])
    order = list(dict.fromkeys(df[label]))
    fig = _new_figure(4.4 * len(keys), 1.6 + 0.32 * len(order))
    axes = np.atleast_1d(fig.subplots(1, len(keys), squeeze=False, sharey=True)[0])
    for ax, key in zip(axes, keys, strict=True):
        sub = df[df[panels] == key].set_index(label).reindex(order)
        y = np.arange(len(order))
        noise = sub["noise"].to_numpy(dtype=float)
        ax.barh(y, 4 * np.nan_to_num(noise), left=-2 * np.nan_to_num(noise), height=0.6,
                color="0.85", label="±2 sd of a seed-to-seed difference")
        ax.scatter(sub["paper_gap"], y, marker="D", color="black", s=30, zorder=5,
                   label="paper's gap")
        ax.scatter(sub["reproduced_gap"], y, color=loss_color("MML"), s=30, zorder=6,
                   label="our gap (MML vs the baseline)")
        ax.axvline(0, color="0.4", lw=0.8)
        ax.set_yticks(y, [str(o) for o in order])
        ax.set_xlabel("MML vs baseline (%)")
        ax.set_title(str(key))
    axes[0].invert_yaxis()  # shared y axis: invert once, first row on top
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8)
    _suptitle(fig, "The paper's gaps against seed-to-seed noise",
              runs_caption(df, [label, panels], title_suffix))
    return fig



def mark_verdicts(claims: pd.DataFrame) -> pd.DataFrame:
    """``claims`` with each evidence level (or verdict) prefixed by ✓ (holds by a significant
    test: :data:`mmlrepro.evidence.TESTED_LEVELS`, "holds (significant)"), ○ (the paper's sign
    without a significant test: :data:`mmlrepro.evidence.SIGN_ONLY_LEVELS`, "holds (not
    significant)", a bare "holds"), ✗ (does not hold: a significant reversal, a failed rule, a
    bare "does not hold"), (✗) (the wrong sign without a significant test) or – (missing), so
    the verdict survives where colours do not (a notebook as GitHub renders it), and an untested
    claim is never marked like a tested one."""
    from mmlrepro.evidence import (
        FAILS,
        FAILS_RULE,
        FAILS_TESTED_LEVELS,
        SIGN_ONLY_LEVELS,
        TESTED_LEVELS,
    )

    def mark(level: str) -> str:
        level = str(level)
        if level in (FAILS, FAILS_RULE, *FAILS_TESTED_LEVELS):
            symbol = "✗"
        elif level.startswith(FAILS):
            symbol = "(✗)"
        elif level in TESTED_LEVELS or level == "holds (significant)":
            symbol = "✓"
        elif level in SIGN_ONLY_LEVELS or level.startswith("holds"):
            symbol = "○"
        else:
            symbol = "–"
        return f"{symbol} {level}"
    column = "evidence" if "evidence" in claims else "verdict"
    if claims.empty or column not in claims:
        return claims
    return claims.assign(**{column: claims[column].map(mark)})


@_styled
def plot_truncated_agreement(curve: pd.DataFrame, quick: float | None = None,
                             budget: float | None = None) -> Figure:
    """The share of the paper's orderings kept by the paper protocol stopped after E epochs
    (:func:`mmlrepro.agreement.agreement_curve`): all orderings with runs, those the full runs
    keep, and each artefact's; ``budget`` (E) shades the epochs a short profile may take and
    ``quick`` draws the quick profile's share of the full runs' orderings as a dashed line."""
    _require(curve, ["epochs", "orderings", "agree", "full_agree", "agree_of_full"], "plot_truncated_agreement")
    fig = _new_figure(7.0, 5.0)
    ax = fig.subplots()
    e = curve["epochs"]
    ax.plot(e, curve["agree_of_full"] / curve["full_agree"], lw=2.2, color="black",
            label=f"the {int(curve['full_agree'].iloc[0])} orderings the full runs keep")
    ax.plot(e, curve["agree"] / curve["orderings"], lw=1.2, color="0.5",
            label=f"all {int(curve['orderings'].iloc[0])} orderings with runs")
    for i, artefact in enumerate(c[len("agree_"):] for c in curve.columns
                                 if c.startswith("agree_") and c != "agree_of_full"):
        ax.plot(e, curve[f"agree_{artefact}"] / curve[f"orderings_{artefact}"], lw=1.4,
                ls=(0, (1 + 2 * i, 2 + i)), color=str(0.2 + 0.15 * i), label=f"{artefact} ({int(curve[f'orderings_{artefact}'].iloc[0])})")
    if budget is not None:
        ax.axvspan(0.5, budget + 0.5, color="0.9", zorder=0, label=f"E ≤ {budget:g} (a short profile's budget)")
    if quick is not None:
        ax.axhline(quick, ls="--", color="0.35", lw=1.2,
                   label=f"quick profile, of the full runs' orderings: {quick:.0%}")
    ax.set_xlim(0.5, float(e.max()) + 0.5)
    ax.set_ylim(min(0.45, (quick or 1.0) - 0.05), 1.02)
    ax.yaxis.set_major_formatter(mpl.ticker.PercentFormatter(1.0))
    ax.set_xlabel("epochs E (the paper protocol stopped after E, selected by its own rule)")
    ax.set_ylabel("orderings of the paper kept")
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    _suptitle(fig, "Paper orderings kept when the paper protocol stops after E epochs", "paper")
    return fig
