"""Seaborn/matplotlib figures used by the notebooks.

Every function builds its own :class:`matplotlib.figure.Figure` (never through ``pyplot``: no
global figure registry, no ``plt.show``, safe under the "Agg" backend and in papermill) and
returns it; a notebook displays it by leaving it as the cell's last expression, and
:func:`save_figure` writes it as PNG and PDF with the profile in the file name.

Figures:

- margin geometry (SPEC §5, the paper's Figure 2): :func:`plot_margin_geometry`,
  :func:`plot_penalty_curve`, :func:`plot_margin_explorer`, :func:`plot_margin_gallery`;
- the real-model measurement of active negatives: :func:`plot_active_share`;
- the data (SPEC §2): :func:`plot_distributions`;
- generic result figures for the table notebooks: :func:`plot_metric_vs_negatives` (MML
  Figure 3), :func:`plot_reproduced_vs_reported`, :func:`plot_heatmap` (InfoNCE+ λ × ε),
  :func:`plot_learning_curves`, :func:`plot_gap_vs_noise`;
- the paper's orderings kept by a truncated paper protocol (issue 36): :func:`plot_truncated_agreement`;
- notebook 01's interactive explorer: :class:`MarginExplorer` (ipywidgets).

Conventions shared by every figure:

- one colour per loss, whatever name it comes under (registry ``"mml"``, display ``"MML"``,
  variant ``"CCL (matched weight)"``): :func:`loss_color`, which refuses an unknown name;
- datasets in the catalogue's order (:data:`mmlrepro.data.NAMES`: Yelp2018, then
  Gowalla), as in the tables;
- figures of stored runs say in their title the profile and the number of seeds they show
  (from the frame's ``profile`` and ``seed`` columns, plus ``title_suffix``);
- :func:`save_figure` writes no date into the files, so re-running a notebook that changes
  nothing changes no tracked file.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Arc, Circle, Wedge
from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

from mmlrepro import geometry
from mmlrepro.comparison import LOSS_NAMES
from mmlrepro.data import NAMES as DATASETS


def _lighten(color, amount: float) -> tuple[float, float, float]:
    """``color`` mixed with white (``amount`` > 0) or black (``amount`` < 0)."""
    rgb = np.array(mpl.colors.to_rgb(color))
    target = 1.0 if amount > 0 else 0.0
    return tuple(float(c) for c in rgb + (target - rgb) * abs(amount))


# One fixed colour per loss (seaborn "colorblind" palette), keyed by its display name
# (:data:`mmlrepro.comparison.LOSS_NAMES`), plus CCL at MML's weight (the matched-weight
# control) and the contrastive toy of notebook 01. Every figure takes its colours from here.
_PALETTE = sns.color_palette("colorblind", 10)
LOSS_COLORS: dict[str, tuple[float, float, float]] = {
    "MML": _PALETTE[3], "CCL": _PALETTE[0], "CCL (matched weight)": _PALETTE[9],
    "BSL": _PALETTE[2], "BPR": _PALETTE[7], "pairwise hinge": _PALETTE[4],
    "softmax CE": _PALETTE[1], "MSE": _PALETTE[5], "InfoNCE": _PALETTE[8],
    "InfoNCE+": _PALETTE[6], "debiased InfoNCE": _lighten(_PALETTE[8], -0.45),
    "debiased CCL": _lighten(_PALETTE[0], -0.5), "contrastive": (0.2, 0.2, 0.2),
}
# Other names of the same losses: the registry names, the variants of the matched-weight
# control (comparison.compare("ccl_matched")) and the margin-geometry kinds and titles.
_ALIASES = {**LOSS_NAMES, "CCL (paper weight)": "CCL", "triplet": "pairwise hinge",
            geometry.LOSS_TITLES["triplet"]: "pairwise hinge"}
_COLOR_KEYS = {**{name.lower(): name for name in LOSS_COLORS},
               **{alias.lower(): name for alias, name in _ALIASES.items()}}


def loss_color(name: str) -> tuple[float, float, float]:
    """The fixed colour of the loss ``name``: a registry name (``"mml"``, ``"softmax_ce"``), a
    display name (``"MML"``, ``"softmax CE"``, case ignored) or a variant label
    (``"CCL (paper weight)"`` = CCL, ``"CCL (matched weight)"``); ``ValueError`` otherwise."""
    key = _COLOR_KEYS.get(str(name).strip().lower())
    if key is None:
        raise ValueError(f"no colour for loss {name!r}: give a registry name "
                         f"({', '.join(LOSS_NAMES)}) or a display name ({', '.join(LOSS_COLORS)}),"
                         " or add it to plots.LOSS_COLORS")
    return LOSS_COLORS[key]


def loss_palette(names) -> dict[str, tuple[float, float, float]]:
    """``{name: loss_color(name)}`` for every distinct name in ``names`` (seaborn's palette)."""
    return {name: loss_color(name) for name in dict.fromkeys(names)}


def dataset_order(values) -> list:
    """The distinct ``values`` in the tables' order: the catalogue's datasets first, in
    :data:`mmlrepro.data.NAMES` order, then anything else in order of appearance."""
    seen = list(dict.fromkeys(values))
    known = [d for d in DATASETS if d in seen]
    return known + [v for v in seen if v not in known]


def runs_caption(df: pd.DataFrame, lines: Sequence[str] = (),
                 title_suffix: str | None = None) -> str:
    """What a figure of stored runs shows, for its title: ``"paper profile · 3 seeds"`` from the
    frame's ``profile`` and ``seed`` columns (where present; the seeds counted per line, the
    groups of the ``lines`` columns, a range when they differ), then ``title_suffix``."""
    parts = []
    if "profile" in df.columns and df["profile"].notna().any():
        profiles = list(dict.fromkeys(df["profile"].dropna().astype(str)))
        parts.append(" + ".join(profiles) + " profile")
        if any(p != "paper" for p in profiles):
            parts.append("pipeline run, not the paper's orders")
    if "seed" in df.columns and df["seed"].notna().any():
        keys = [c for c in lines if c in df.columns]
        per_line = df.groupby(keys, sort=False)["seed"].nunique() if keys else \
            pd.Series([df["seed"].nunique()])
        lo, hi = int(per_line.min()), int(per_line.max())
        parts.append(f"{hi} seed{'s' * (hi != 1)}" if lo == hi else f"{lo}–{hi} seeds")
    if title_suffix:
        parts.append(str(title_suffix))
    return " · ".join(parts)


def _suptitle(fig: Figure, title: str, caption: str) -> None:
    fig.suptitle(f"{title} [{caption}]" if caption else title, fontweight="bold")


# Datasets in greys (the tables' order), so that no colour of LOSS_COLORS means a dataset.
DATASET_COLORS = ((0.15, 0.15, 0.15), (0.6, 0.6, 0.6), (0.4, 0.4, 0.4))
WEIGHT_CMAP = sns.color_palette("flare", as_cmap=True)  # gradient weight: orange to purple
_STYLE = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", font_scale=0.9),
          "axes.titleweight": "bold", "legend.frameon": False}


def _styled(fn: Callable[..., Figure]) -> Callable[..., Figure]:
    """Draw ``fn`` under the project style (a local rc context: no global state is changed)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> Figure:
        with mpl.rc_context(_STYLE):
            return fn(*args, **kwargs)

    return wrapper


def _new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: the frame has no column(s) {missing}; it has {list(df.columns)}")
    if df.empty:
        raise ValueError(f"{what}: the frame is empty")


def _log_x_ticks(ax, values: Sequence[float]) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(values))))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


# ---------------------------------------------------------------------------------------------
# Margin geometry (SPEC §5)


def _user_frame(angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of a unit vector at ``angle`` radians from the user, who points straight up."""
    return np.sin(angle), np.cos(angle)


@_styled
def plot_margin_geometry(loss: str = "mml", margins: Sequence[float] = (0.7, 0.8, 0.9),
                         weights: Sequence[float] = (0.10, 0.15, 0.75), neg_weight: float = 700.0,
                         s_pos: float = geometry.S_POS, n_negatives: int = 100, seed: int = 0,
                         ax=None, vmax: float | None = None, colorbar: bool = True) -> Figure:
    """The 2-D, user-centred picture of which negatives a loss pushes, and how hard.

    The user vector points up; every item is a unit vector, so its cosine similarity with the
    user is the cosine of its angle ``φ`` to the vertical, and a margin ``m`` is a cone of
    half-angle ``arccos(m)``. Shaded cones are the loss's thresholds (see
    :func:`mmlrepro.geometry.equivalent_mml`), darker where the per-negative slope is larger;
    arcs outside the circle label them. Dots are ``n_negatives`` sampled negatives
    (:func:`mmlrepro.geometry.negative_cloud`, drawn slightly inside the circle with a radial
    jitter for visibility only), coloured by the weight ``N·∂L/∂s⁻_j`` their gradient gets, grey
    when it is zero; the star is the positive item at similarity ``s_pos``.

    The colour scale runs from 0 to ``vmax`` (default: this loss's own largest weight); give
    several panels the same ``vmax`` (:func:`mmlrepro.geometry.shared_weight_max`) to compare
    losses, weights above it show in the top colour. Draws on ``ax`` when given (and returns
    its figure); ``colorbar=False`` leaves the colour bar to the caller.
    """
    loss = geometry.check_loss_kind(loss)
    eq_margins, eq_weights, eq_w = geometry.equivalent_mml(loss, margins, weights, neg_weight,
                                                           s_pos)
    angle, radius = geometry.negative_cloud(n_negatives, seed)
    sims = np.cos(angle)
    grad = geometry.negative_weights(loss, sims, margins, weights, neg_weight, s_pos)
    cum = eq_w * np.cumsum(eq_weights)  # N · slope above each threshold
    if ax is None:
        fig = _new_figure(5.2, 5.0)
        ax = fig.add_subplot()
    fig = ax.get_figure()
    vmax = max(float(cum[-1]) if vmax is None else float(vmax), 1e-12)
    norm = mpl.colors.Normalize(0.0, vmax)
    cmap = WEIGHT_CMAP

    ax.add_patch(Circle((0, 0), 1.0, fill=False, color="0.55", lw=1.0))
    for k, (m, c) in enumerate(zip(eq_margins, cum, strict=True)):  # widest cone first
        half = np.degrees(np.arccos(np.clip(m, -1.0, 1.0)))
        color = cmap(norm(c))
        ax.add_patch(Wedge((0, 0), 1.0, 90 - half, 90 + half, lw=0,
                           facecolor=mpl.colors.to_rgba(_lighten(color, 0.7))))
        r = 1.08 + 0.12 * k
        ax.add_patch(Arc((0, 0), 2 * r, 2 * r, theta1=90 - half, theta2=90 + half,
                         color=color, lw=2.2))
        label = geometry.threshold_label(loss, k, m, eq_weights[k])
        end = np.radians(half if half < 179.0 else 45.0)
        ax.annotate(label, xy=(r * np.sin(end), r * np.cos(end)), xytext=(4, 0),
                    textcoords="offset points", ha="left", va="center", fontsize=8,
                    color=_lighten(color, -0.2),
                    bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
        if half < 179.0:
            for sign in (-1, 1):
                x, y = _user_frame(np.array(sign * np.radians(half)))
                ax.plot([0, x], [0, y], color=color, lw=0.8, ls="--")
    x, y = _user_frame(angle)
    active = grad > 0
    ax.scatter(x[~active] * radius[~active], y[~active] * radius[~active], s=16, c="0.75",
               edgecolors="0.5", linewidths=0.3, label="no gradient", zorder=3)
    points = ax.scatter(x[active] * radius[active], y[active] * radius[active], s=22,
                        c=grad[active], cmap=cmap, norm=norm, edgecolors="black",
                        linewidths=0.4, label="pushed", zorder=4)
    px, py = _user_frame(np.array(np.arccos(np.clip(s_pos, -1.0, 1.0))))
    ax.scatter([px], [py], marker="*", s=220, c="tab:green", edgecolors="black", lw=0.6,
               zorder=5, label=f"positive (s⁺={s_pos:.2f})")
    ax.annotate("", xy=(0, 1.0), xytext=(0, 0),
                arrowprops={"arrowstyle": "-|>", "lw": 2.0, "color": "tab:blue"}, zorder=6)
    ax.text(0.04, 0.5, "user", color="tab:blue", fontsize=9, rotation=90, va="center")
    if colorbar:
        fig.colorbar(points, ax=ax, shrink=0.7, pad=0.02, label="gradient weight N·∂L/∂s⁻",
                     extend="max" if cum[-1] > vmax else "neither")
    ax.set_xlim(-1.35, 2.05)
    ax.set_ylim(-1.2, 1.3 + 0.12 * len(eq_margins))
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    ax.set_title(f"{geometry.LOSS_TITLES[loss]}{geometry.weight_label(loss, neg_weight)}: "
                 f"{int(active.sum())} of {n_negatives} negatives pushed")
    ax.legend(loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, -0.02),
              handletextpad=0.2, columnspacing=0.8)
    return fig


@_styled
def plot_penalty_curve(margins: Sequence[float] = (0.7, 0.8, 0.9),
                       weights: Sequence[float] = (0.10, 0.15, 0.75), neg_weight: float = 700.0,
                       n_negatives: int = 100, label: str | None = None, axes=None,
                       loss: str = "mml", slope_max: float | None = None) -> Figure:
    """Per-negative penalty ``(w_neg/N)·Σ_k w_k·relu(s − m_k)`` and its slope
    ``(w_neg/N)·Σ_{m_k < s} w_k`` against the similarity ``s`` (SPEC §5), from
    :func:`mmlrepro.losses.penalty_curve`: convex piecewise linear, a kink at every margin.

    Two panels (penalty, slope), or the two axes given in ``axes``; dashed lines mark margins.
    Drawn in ``loss``'s colour (:func:`loss_color`); the slope axis reaches at least
    ``slope_max`` (a fixed scale, so that a larger w_neg shows as a higher step).
    """
    lo = max(-1.0, min(margins) - 0.35)
    s = np.linspace(lo, 1.0, 701)
    penalty, slope = geometry.penalty_and_slope(s, margins, weights, neg_weight, n_negatives)
    if axes is None:
        fig = _new_figure(9.0, 3.4)
        axes = fig.subplots(1, 2, sharex=True)
    fig = axes[0].get_figure()
    color = loss_color(loss)
    axes[0].plot(s, penalty, color=color, lw=2.2, label=label)
    axes[1].plot(s, slope, color=color, lw=2.2, label=label)
    for ax in axes:
        for m in margins:
            ax.axvline(m, color="0.4", ls="--", lw=0.9)
        ax.set_xlabel("similarity s = cos(user, negative)")
        ax.set_xlim(lo, 1.0)
    edges = [*margins, 1.0]
    _, levels = geometry.penalty_and_slope(np.array(edges[1:]), margins, weights, neg_weight,
                                           n_negatives)
    top = max(float(levels.max()), slope_max or 0.0, 1e-12)
    for k, level in enumerate(levels):  # the slope on (m_k, m_{k+1}]
        axes[1].text((edges[k] + edges[k + 1]) / 2, level + 0.03 * top, f"{level:.3g}",
                     ha="center", va="bottom", fontsize=8)
    axes[1].set_ylim(0, top * 1.2)
    axes[0].set_ylabel("penalty per negative")
    axes[1].set_ylabel("slope ∂L/∂s⁻")
    axes[0].set_title("Penalty of one negative")
    axes[1].set_title("Its slope: the gradient weight")
    if label:
        axes[0].legend(loc="upper left")
    return fig


@_styled
def plot_margin_explorer(loss: str = "mml", margins: Sequence[float] = (0.7, 0.8, 0.9),
                         weights: Sequence[float] = (0.10, 0.15, 0.75), neg_weight: float = 700.0,
                         s_pos: float = geometry.S_POS, n_negatives: int = 100, seed: int = 0,
                         vmax: float | None = None) -> Figure:
    """:func:`plot_margin_geometry` beside the loss's penalty curve and slope (three axes plus a
    colour bar): what the sliders of notebook 01 redraw. ``vmax`` fixes the colour scale and
    the slope axis (``vmax / N``) across redraws; default: this loss's own largest weight."""
    kind = geometry.check_loss_kind(loss)
    fig = _new_figure(12.0, 5.2)
    left, right = fig.subfigures(1, 2, width_ratios=[1.1, 1.0])
    plot_margin_geometry(kind, margins, weights, neg_weight, s_pos, n_negatives, seed,
                         ax=left.add_subplot(), vmax=vmax)
    axes = right.subplots(2, 1, sharex=True)
    eq = geometry.equivalent_mml(kind, margins, weights, neg_weight, s_pos)
    plot_penalty_curve(*eq, n_negatives=n_negatives, axes=axes, loss=kind,
                       slope_max=None if vmax is None else vmax / n_negatives)
    axes[0].set_xlabel("")
    if kind == "triplet":
        axes[0].axvline(s_pos, color="tab:green", lw=1.2, label="s⁺")
        axes[0].legend(loc="upper left")
    return fig


@_styled
def plot_margin_gallery(dataset: str = "gowalla", s_pos: float = geometry.S_POS,
                        n_negatives: int = 100, seed: int = 0,
                        losses: Sequence[str] = geometry.LOSS_KINDS,
                        vmax: float | None = None) -> Figure:
    """The same negatives under each loss in ``losses`` side by side (the paper's Figure 2),
    each with its own paper setting on ``dataset`` (:func:`mmlrepro.geometry.paper_setting`:
    CCL with its w = 150, MML with its w_neg), one :func:`plot_margin_geometry` panel per loss
    (a 2 × 2 grid for four losses, else one row) and one colour scale for all, 0 to ``vmax``
    (default :func:`mmlrepro.geometry.shared_weight_max`)."""
    vmax = geometry.shared_weight_max(losses, dataset) if vmax is None else float(vmax)
    ncols = 2 if len(losses) == 4 else len(losses)
    nrows = -(-len(losses) // ncols)
    fig = _new_figure(4.9 * ncols + 0.8, 4.5 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, loss in zip(axes, losses, strict=False):
        plot_margin_geometry(loss, **geometry.paper_setting(loss, dataset), s_pos=s_pos,
                             n_negatives=n_negatives, seed=seed, ax=ax, vmax=vmax,
                             colorbar=False)
    for ax in axes[len(losses):]:
        ax.set_visible(False)
    mappable = mpl.cm.ScalarMappable(mpl.colors.Normalize(0.0, vmax), WEIGHT_CMAP)
    fig.colorbar(mappable, ax=list(axes), shrink=0.5, pad=0.02,
                 label="gradient weight N·∂L/∂s⁻ (one scale for all panels)")
    return fig


@_styled
def plot_active_share(df: pd.DataFrame, x: str = "n_negatives") -> Figure:
    """Active negatives for each loss, from :func:`mmlrepro.geometry.active_share`.

    Against N (``x="n_negatives"``, log-log): left, the expected number of sampled negatives per
    row with a non-zero gradient (``active_per_row``); right, the share of rows with at least
    one (``rows_with_active``). Against another column such as ``step`` (linear x): left, the
    share of sampled negatives with a gradient (``share_active``); right, as before.
    One line per ``loss``, coloured by the loss its label starts with
    (:func:`mmlrepro.geometry.loss_family`: ``"CCL (m = 0.9)"`` is CCL).
    """
    left = "active_per_row" if x == "n_negatives" else "share_active"
    _require(df, ["loss", x, left, "rows_with_active"], "plot_active_share")
    fig = _new_figure(10.0, 3.8)
    axes = fig.subplots(1, 2)
    hue_order = list(dict.fromkeys(df["loss"]))
    colors = {h: loss_color(geometry.loss_family(h)) for h in hue_order}
    titles = {"active_per_row": "Pushed negatives per row (expected)",
              "share_active": "Share of sampled negatives with a gradient",
              "rows_with_active": "Rows with ≥ 1 pushed negative"}
    ylabels = {"active_per_row": "negatives with a gradient, per row",
               "share_active": "share of sampled negatives",
               "rows_with_active": "share of rows"}
    for ax, col in zip(axes, (left, "rows_with_active"), strict=True):
        sns.lineplot(data=df, x=x, y=col, hue="loss", hue_order=hue_order,
                     palette=colors, marker="o", ax=ax, errorbar=None)
        if x == "n_negatives":
            _log_x_ticks(ax, df[x])
        if col == "rows_with_active":
            ax.yaxis.set_major_formatter(mpl.ticker.PercentFormatter(1.0, decimals=None))
            ax.set_ylim(0, None)
        elif x == "n_negatives":
            ax.set_yscale("log")
        else:
            ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0), useMathText=True)
            ax.set_ylim(0, None)
        ax.set_xlabel({"n_negatives": "negatives per row N", "step": "training step"}.get(x, x))
        ax.set_ylabel(ylabels[col])
        ax.set_title(titles[col])
    axes[1].get_legend().remove()
    axes[0].legend(title=None, loc="best")
    return fig


# ---------------------------------------------------------------------------------------------
# Data (SPEC §2)


@_styled
def plot_distributions(datasets) -> Figure:
    """Item popularity (train interactions per item, sorted, against rank, log-log: the long
    tail) and the distribution of users' train-history lengths, one line per dataset.

    ``datasets``: a :class:`mmlrepro.data.Dataset` or a sequence of them, drawn in the tables'
    order (:func:`dataset_order`).
    """
    if not isinstance(datasets, Sequence):
        datasets = [datasets]
    if len(datasets) == 0:
        raise ValueError("plot_distributions: no dataset given")
    order = dataset_order([ds.name for ds in datasets])
    datasets = sorted(datasets, key=lambda ds: order.index(ds.name))
    fig = _new_figure(10.0, 3.8)
    axes = fig.subplots(1, 2)
    colors = [DATASET_COLORS[i % len(DATASET_COLORS)] for i in range(len(datasets))]
    for ds, color in zip(datasets, colors, strict=True):
        pop = np.sort(ds.item_popularity())[::-1]
        pop = pop[pop > 0]
        axes[0].plot(np.arange(1, len(pop) + 1), pop, color=color, lw=2, label=ds.name)
        lengths = ds.history_lengths()
        lengths = lengths[lengths > 0]
        bins = np.unique(np.round(np.logspace(0, np.log10(lengths.max() + 1), 40)))
        counts, edges = np.histogram(lengths, bins=bins)
        share = counts / counts.sum() / np.diff(edges)  # density per unit length
        axes[1].stairs(share, edges, color=color, lw=2, label=ds.name)
        axes[1].axvline(np.median(lengths), color=color, ls=":", lw=1.2)
    axes[0].set(xscale="log", yscale="log", xlabel="item rank (by train interactions)",
                ylabel="train interactions", title="Item popularity: the long tail")
    axes[1].set(xscale="log", yscale="log", xlabel="train items per user (dotted: median)",
                ylabel="share of users per unit length", title="History lengths")
    axes[0].legend()
    axes[1].legend()
    return fig


# ---------------------------------------------------------------------------------------------
# Results (for the table / figure notebooks)


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


# ---------------------------------------------------------------------------------------------
# Saving

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# No date in any saved file (matplotlib's PNG has none; PDF and SVG would carry the time of
# saving), so the same figure always gives the same bytes.
_METADATA: dict[str, dict] = {"png": {}, "pdf": {"CreationDate": None}, "svg": {"Date": None}}


def save_figure(fig: Figure, name: str, profile: str, figures_dir: str | Path = "figures",
                dpi: int = 150, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Save ``fig`` as ``<figures_dir>/<name>_<profile>.<format>`` for each of ``formats``
    (png, pdf, svg; the folder is created) and return the paths. ``name`` and ``profile`` must
    be plain file-name parts. The files carry no creation date: saving the same figure twice
    writes the same bytes, so re-running a notebook leaves unchanged figures unchanged."""
    for what, part in (("name", name), ("profile", profile)):
        if not isinstance(part, str) or not _NAME_RE.match(part):
            raise ValueError(f"save_figure: {what} must be a plain file-name part "
                             f"(letters, digits, _ . -), got {part!r}")
    unknown = [f for f in formats if f not in _METADATA]
    if unknown:
        raise ValueError(f"save_figure: formats must be among {list(_METADATA)}, got {unknown}")
    folder = Path(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}_{profile}.{ext}" for ext in formats]
    with mpl.rc_context({"svg.hashsalt": "mmlrepro"}):  # SVG ids: fixed, not random
        for path, ext in zip(paths, formats, strict=True):
            fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white",
                        metadata=_METADATA[ext])
    return paths


# ---------------------------------------------------------------------------------------------
# Learning curves and seed noise (notebooks 03, 04 and 07)


def selection_metric(dataset: str, model: str | None) -> str:
    """The metric a paper run selects its epoch on (SPEC §6): NDCG@20 for SimpleX on Gowalla,
    Recall@20 otherwise."""
    return "ndcg@20" if (model, dataset) == ("simplex", "gowalla") else "recall@20"


def _selected_epoch(line: pd.DataFrame, x: str, metric: str, dataset: str) -> tuple[float, float]:
    """``(epoch, metric there)`` of one line: the epoch maximising the seeds' mean of its
    :func:`selection_metric` (``metric`` itself when the frame lacks that column)."""
    model = line["model"].iloc[0] if "model" in line.columns else None
    monitor = selection_metric(dataset, model)
    if monitor not in line.columns or line[monitor].isna().all():
        monitor = metric
    mean = line.groupby(x, sort=True)[list(dict.fromkeys([metric, monitor]))].mean()
    epoch = mean[monitor].idxmax()
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
    (:func:`selection_metric`; SPEC §6). The legend, with a "selected epoch" entry, sits
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


# ---------------------------------------------------------------------------------------------
# Notebook 01's explorer


def explorer_figure(loss: str = "mml", dataset: str = "gowalla", n_negatives: int = 100,
                    seed: int = 0, values: dict[str, float] | None = None) -> Figure:
    """What :class:`MarginExplorer` draws: :func:`plot_margin_explorer` of ``loss`` at the
    slider ``values`` (default: its paper setting, :func:`mmlrepro.geometry.explorer_values`),
    on the colour scale shared by all losses (:func:`mmlrepro.geometry.shared_weight_max`).
    Without ``values`` it is the explorer's first picture, for a static copy in the notebook."""
    kind = geometry.check_loss_kind(loss)
    values = geometry.explorer_values(kind, dataset) if values is None else values
    margins, weights, neg_weight, s_pos = geometry.explorer_settings(kind, values)
    return plot_margin_explorer(kind, margins, weights, neg_weight, s_pos, n_negatives, seed,
                                vmax=geometry.shared_weight_max(dataset=dataset))


class MarginExplorer:
    """Notebook 01's explorer: a loss menu and sliders that redraw :func:`explorer_figure`.

    Choosing a loss resets every slider to that loss's paper setting
    (:func:`mmlrepro.geometry.explorer_values`: CCL's w = 150, MML's w_neg = 700, ...) and
    disables the sliders that do not apply to it (:data:`mmlrepro.geometry.EXPLORER_CONTROLS`);
    each change redraws the figure once into ``output``, on one colour scale for every loss.
    Display it (or its ``widget``); ``figure`` is the last figure drawn and ``draws`` counts
    them. Needs ipywidgets (the ``notebooks`` extra).
    """

    LABELS = {"m1": "margin m1", "m2": "margin m2", "m3": "margin m3", "w1": "weight w1",
              "w2": "weight w2", "w3": "weight w3", "w_neg": "w_neg / w", "s_pos": "s⁺ (hinge)"}

    def __init__(self, loss: str = "mml", dataset: str = "gowalla", n_negatives: int = 100,
                 seed: int = 0) -> None:
        import ipywidgets as widgets

        self.dataset, self.seed = dataset, seed
        kinds = ("mml", "ccl", "triplet", "contrastive")
        self.loss = widgets.Dropdown(options=[(geometry.LOSS_TITLES[k], k) for k in kinds],
                                     value=geometry.check_loss_kind(loss), description="loss")
        self.sliders = {name: self._slider(widgets, name) for name in geometry.EXPLORER_SLIDERS}
        self.n_negatives = widgets.IntSlider(value=n_negatives, min=10, max=400, step=10,
                                             description="N (toy)", continuous_update=False)
        self.output = widgets.Output()
        self.figure: Figure | None = None
        self.draws = 0
        self._quiet = False
        self.reset()
        self.loss.observe(self._on_loss, names="value")
        for control in [*self.sliders.values(), self.n_negatives]:
            control.observe(self.redraw, names="value")
        columns = [["m1", "m2", "m3"], ["w1", "w2", "w3"], ["w_neg", "s_pos"]]
        self.widget = widgets.VBox([
            widgets.HBox([self.loss, self.n_negatives]),
            widgets.HBox([widgets.VBox([self.sliders[n] for n in c]) for c in columns]),
            self.output])
        self.redraw()

    def _repr_mimebundle_(self, **kwargs) -> dict:
        """The widget's bundle, with a plain-text fallback that tells a reader of the saved
        notebook (GitHub, an unrun JupyterLab) what is there instead of the widget's repr."""
        bundle = dict(self.widget._repr_mimebundle_(**kwargs))
        bundle["text/plain"] = ("[margin explorer: sliders over the figure above; run the "
                                "notebook in JupyterLab to use them]")
        return bundle

    def _slider(self, widgets, name: str):
        common = {"description": self.LABELS[name], "continuous_update": False}
        if name == "w_neg":  # 1 (hinge-like) to 1000 (beyond MML's 700) on a log scale
            return widgets.FloatLogSlider(base=10, min=-1, max=3, step=0.01,
                                          readout_format=".4g", **common)
        lo = 0.0 if name.startswith("w") else -1.0
        return widgets.FloatSlider(min=lo, max=1.0, step=0.05, readout_format=".2f", **common)

    def values(self) -> dict[str, float]:
        """The sliders' current values, by name (:data:`mmlrepro.geometry.EXPLORER_SLIDERS`)."""
        return {name: float(s.value) for name, s in self.sliders.items()}

    def reset(self) -> None:
        """Sliders to the chosen loss's paper setting; those that do not apply disabled."""
        kind = self.loss.value
        values = geometry.explorer_values(kind, self.dataset)
        self._quiet = True
        try:
            for name, slider in self.sliders.items():
                slider.value = values[name]
                slider.disabled = name not in geometry.EXPLORER_CONTROLS[kind]
        finally:
            self._quiet = False

    def _on_loss(self, change=None) -> None:
        self.reset()
        self.redraw()

    def redraw(self, change=None) -> None:
        """Draw the figure for the current controls into ``output`` (skipped while resetting)."""
        if self._quiet:
            return
        from IPython.display import Image, clear_output, display

        self.figure = explorer_figure(self.loss.value, self.dataset, self.n_negatives.value,
                                      self.seed, self.values())
        self.draws += 1
        with self.output:
            clear_output(wait=True)
            display(Image(figure_png(self.figure)))


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """``fig`` as PNG bytes (tight box, white background, no date): what a notebook shows."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white",
                metadata=_METADATA["png"])
    return buf.getvalue()


def mark_verdicts(claims: pd.DataFrame) -> pd.DataFrame:
    """``claims`` with each evidence level (or verdict) prefixed by ✓ (holds, at any level of
    :data:`mmlrepro.evidence.HOLDING_LEVELS`), ✗ (does not hold) or – (missing), so the verdict
    survives where colours do not (a notebook as GitHub renders it)."""
    from mmlrepro.evidence import FAILS, HOLDING_LEVELS

    def mark(level: str) -> str:
        level = str(level)
        symbol = ("✗" if level == FAILS else "✓" if level in HOLDING_LEVELS or level.startswith("holds") else "–")
        return f"{symbol} {level}"
    column = "evidence" if "evidence" in claims else "verdict"
    if claims.empty or column not in claims:
        return claims
    return claims.assign(**{column: claims[column].map(mark)})


# ---------------------------------------------------------------------------------------------
# The truncated paper protocol (issue 36)


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
