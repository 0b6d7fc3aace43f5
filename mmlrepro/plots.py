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
  Figure 3), :func:`plot_reproduced_vs_reported`, :func:`plot_heatmap` (InfoNCE+ λ × ε).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Arc, Circle, Wedge
from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

from mmlrepro import geometry

# Fixed colours for the losses that recur across notebooks (seaborn "colorblind" palette);
# other names get the remaining colours in order of appearance.
_PALETTE = sns.color_palette("colorblind", 10)
LOSS_COLORS = {
    "MML": _PALETTE[3], "CCL": _PALETTE[0], "BSL": _PALETTE[2], "BPR": _PALETTE[7],
    "pairwise hinge": _PALETTE[4], "softmax CE": _PALETTE[1], "MSE": _PALETTE[5],
    "CCL (matched w)": _PALETTE[9], "InfoNCE": _PALETTE[8], "InfoNCE+": _PALETTE[6],
}
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


def _lighten(color, amount: float) -> tuple[float, float, float]:
    """``color`` mixed with white (``amount`` > 0) or black (``amount`` < 0)."""
    rgb = np.array(mpl.colors.to_rgb(color))
    target = 1.0 if amount > 0 else 0.0
    return tuple(rgb + (target - rgb) * abs(amount))


def _palette(names: Sequence[str]) -> dict[str, tuple]:
    """Colour per loss name: the fixed :data:`LOSS_COLORS` first, then the unused colours."""
    spare = [c for c in _PALETTE if c not in LOSS_COLORS.values()] + list(_PALETTE)
    out, k = {}, 0
    for name in names:
        if name in LOSS_COLORS:
            out[name] = LOSS_COLORS[name]
        else:
            out[name], k = spare[k % len(spare)], k + 1
    return out


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
                         s_pos: float = 0.8, n_negatives: int = 100, seed: int = 0,
                         ax=None) -> Figure:
    """The 2-D, user-centred picture of which negatives a loss pushes, and how hard.

    The user vector points up; every item is a unit vector, so its cosine similarity with the
    user is the cosine of its angle ``φ`` to the vertical, and a margin ``m`` is a cone of
    half-angle ``arccos(m)``. Shaded cones are the loss's thresholds (see
    :func:`mmlrepro.geometry.equivalent_mml`), darker where the per-negative slope is larger;
    arcs outside the circle label them. Dots are ``n_negatives`` sampled negatives
    (:func:`mmlrepro.geometry.negative_cloud`, drawn slightly inside the circle with a radial
    jitter for visibility only), coloured by the weight ``N·∂L/∂s⁻_j`` their gradient gets, grey
    when it is zero; the star is the positive item at similarity ``s_pos``. Draws on ``ax`` when
    given (and returns its figure).
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
    vmax = max(float(cum[-1]), 1e-12)
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
    fig.colorbar(points, ax=ax, shrink=0.7, pad=0.02, label="gradient weight N·∂L/∂s⁻")
    ax.set_xlim(-1.35, 2.05)
    ax.set_ylim(-1.2, 1.3 + 0.12 * len(eq_margins))
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    ax.set_title(f"{geometry.LOSS_TITLES[loss]}: {int(active.sum())} of {n_negatives} "
                 "negatives pushed")
    ax.legend(loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, -0.02),
              handletextpad=0.2, columnspacing=0.8)
    return fig


@_styled
def plot_penalty_curve(margins: Sequence[float] = (0.7, 0.8, 0.9),
                       weights: Sequence[float] = (0.10, 0.15, 0.75), neg_weight: float = 700.0,
                       n_negatives: int = 100, label: str | None = None, axes=None) -> Figure:
    """Per-negative penalty ``(w_neg/N)·Σ_k w_k·relu(s − m_k)`` and its slope
    ``(w_neg/N)·Σ_{m_k < s} w_k`` against the similarity ``s`` (SPEC §5), from
    :func:`mmlrepro.losses.penalty_curve`: convex piecewise linear, a kink at every margin.

    Two panels (penalty, slope), or the two axes given in ``axes``; dashed lines mark margins.
    """
    lo = max(-1.0, min(margins) - 0.35)
    s = np.linspace(lo, 1.0, 701)
    penalty, slope = geometry.penalty_and_slope(s, margins, weights, neg_weight, n_negatives)
    if axes is None:
        fig = _new_figure(9.0, 3.4)
        axes = fig.subplots(1, 2, sharex=True)
    fig = axes[0].get_figure()
    color = LOSS_COLORS["MML"]
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
    top = max(float(levels.max()), 1e-12)
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
                         s_pos: float = 0.8, n_negatives: int = 100, seed: int = 0) -> Figure:
    """:func:`plot_margin_geometry` beside the loss's penalty curve and slope (three axes plus a
    colour bar): what the sliders of notebook 01 redraw."""
    fig = _new_figure(12.0, 5.2)
    left, right = fig.subfigures(1, 2, width_ratios=[1.1, 1.0])
    plot_margin_geometry(loss, margins, weights, neg_weight, s_pos, n_negatives, seed,
                         ax=left.add_subplot())
    axes = right.subplots(2, 1, sharex=True)
    eq = geometry.equivalent_mml(geometry.check_loss_kind(loss), margins, weights, neg_weight,
                                 s_pos)
    plot_penalty_curve(*eq, n_negatives=n_negatives, axes=axes)
    axes[0].set_xlabel("")
    if geometry.check_loss_kind(loss) == "triplet":
        axes[0].axvline(s_pos, color="tab:green", lw=1.2, label="s⁺")
        axes[0].legend(loc="upper left")
    return fig


@_styled
def plot_margin_gallery(margins: Sequence[float] = (0.7, 0.8, 0.9),
                        weights: Sequence[float] = (0.10, 0.15, 0.75), neg_weight: float = 700.0,
                        s_pos: float = 0.8, n_negatives: int = 100, seed: int = 0,
                        losses: Sequence[str] = geometry.LOSS_KINDS) -> Figure:
    """The same negatives under each loss in ``losses`` side by side (the paper's Figure 2):
    one :func:`plot_margin_geometry` panel per loss, each with its colour bar (a 2 × 2 grid
    for four losses, else one row)."""
    ncols = 2 if len(losses) == 4 else len(losses)
    nrows = -(-len(losses) // ncols)
    fig = _new_figure(5.4 * ncols, 4.5 * nrows)
    subs = np.atleast_1d(fig.subfigures(nrows, ncols)).ravel()[:len(losses)]
    for sub, loss in zip(subs, losses, strict=True):
        plot_margin_geometry(loss, margins, weights, neg_weight, s_pos, n_negatives, seed,
                             ax=sub.add_subplot())
    return fig


@_styled
def plot_active_share(df: pd.DataFrame, x: str = "n_negatives") -> Figure:
    """Active negatives for each loss, from :func:`mmlrepro.geometry.active_share`.

    Against N (``x="n_negatives"``, log-log): left, the expected number of sampled negatives per
    row with a non-zero gradient (``active_per_row``); right, the share of rows with at least
    one (``rows_with_active``). Against another column such as ``step`` (linear x): left, the
    share of sampled negatives with a gradient (``share_active``); right, as before.
    One line per ``loss``.
    """
    left = "active_per_row" if x == "n_negatives" else "share_active"
    _require(df, ["loss", x, left, "rows_with_active"], "plot_active_share")
    fig = _new_figure(10.0, 3.8)
    axes = fig.subplots(1, 2)
    hue_order = list(dict.fromkeys(df["loss"]))
    palette = _palette([geometry.loss_family(h) for h in hue_order])
    colors = {h: palette[geometry.loss_family(h)] for h in hue_order}
    titles = {"active_per_row": "Pushed negatives per row (expected)",
              "share_active": "Share of sampled negatives with a gradient",
              "rows_with_active": "Rows with ≥ 1 pushed negative"}
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
        ax.set_ylabel("")
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

    ``datasets``: a :class:`mmlrepro.data.Dataset` or a sequence of them.
    """
    if not isinstance(datasets, Sequence):
        datasets = [datasets]
    if len(datasets) == 0:
        raise ValueError("plot_distributions: no dataset given")
    fig = _new_figure(10.0, 3.8)
    axes = fig.subplots(1, 2)
    colors = sns.color_palette("deep", len(datasets))
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


@_styled
def plot_metric_vs_negatives(df: pd.DataFrame, metric: str = "recall@20",
                             x: str = "n_negatives", hue: str = "loss",
                             col: str = "dataset") -> Figure:
    """MML Figure 3: ``metric`` against the number of negatives N (log scale), one line per
    ``hue`` (loss), one panel per ``col`` (dataset). With several rows per point (seeds) the
    line is their mean and the band their min–max range [assumed: the paper shows one run]."""
    _require(df, [metric, x, hue, col], "plot_metric_vs_negatives")
    panels = list(dict.fromkeys(df[col]))
    fig = _new_figure(4.6 * len(panels), 3.8)
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0])
    hue_order = list(dict.fromkeys(df[hue]))
    palette = _palette(hue_order)
    for ax, panel in zip(axes, panels, strict=True):
        sub = df[df[col] == panel]
        sns.lineplot(data=sub, x=x, y=metric, hue=hue, hue_order=hue_order, palette=palette,
                     marker="o", errorbar=("pi", 100), ax=ax)
        _log_x_ticks(ax, sub[x])
        ax.set_title(str(panel))
        ax.set_xlabel("negatives per row N")
        ax.set_ylabel(metric)
        if ax is not axes[-1]:
            ax.get_legend().remove()
        else:
            ax.legend(title=hue, loc="best")
    return fig


@_styled
def plot_reproduced_vs_reported(df: pd.DataFrame, label: str = "label",
                                value: str = "reproduced", reported: str = "reported",
                                panels: Sequence[str] = ("metric", "dataset")) -> Figure:
    """Reproduced numbers as horizontal bars (mean over the rows of a label, i.e. over seeds,
    with a ±sd error bar, the relative difference to the paper written on the bar) and the
    paper's numbers as black diamonds (none where ``reported`` is NaN), one panel per
    combination of the ``panels`` columns present in ``df`` (rows: the first, columns: the
    second)."""
    _require(df, [label, value, reported], "plot_reproduced_vs_reported")
    present = [p for p in panels if p in df.columns]
    row_keys = list(dict.fromkeys(df[present[0]])) if present else [None]
    col_keys = list(dict.fromkeys(df[present[1]])) if len(present) > 1 else [None]
    order = list(dict.fromkeys(df[label]))
    fig = _new_figure(4.2 * len(col_keys), 0.8 + 0.38 * len(order) * len(row_keys) + 0.6)
    axes = fig.subplots(len(row_keys), len(col_keys), squeeze=False, sharey=True)
    palette = _palette([str(o) for o in order])
    for i, rk in enumerate(row_keys):
        for j, ck in enumerate(col_keys):
            ax, sub = axes[i, j], df
            if rk is not None:
                sub = sub[sub[present[0]] == rk]
            if ck is not None:
                sub = sub[sub[present[1]] == ck]
            sub = sub.assign(**{label: sub[label].astype(str)})
            sns.barplot(data=sub, y=label, x=value, order=[str(o) for o in order], hue=label,
                        palette=palette, errorbar="sd", ax=ax, alpha=0.85, legend=False)
            rep = sub.groupby(label, sort=False)[reported].first().reindex(
                [str(o) for o in order]).to_numpy(dtype=float)
            mean = sub.groupby(label, sort=False)[value].mean().reindex(
                [str(o) for o in order]).to_numpy(dtype=float)
            ax.scatter(rep, np.arange(len(order)), marker="D", s=36, color="black", zorder=5,
                       label="reported (paper)")
            for y, (ours, paper) in enumerate(zip(mean, rep, strict=True)):
                if np.isfinite(ours) and np.isfinite(paper) and paper != 0:
                    ax.text(ours * 0.98, y, f"{ours / paper - 1:+.1%}", ha="right",
                            va="center", fontsize=8, color="white", fontweight="bold")
            title = " · ".join(str(k) for k in (ck, rk) if k is not None)
            ax.set_title(title)
            ax.set_xlabel(str(rk) if rk is not None else value)
            ax.set_ylabel("")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles[-1:], ["reported (paper); bar text: reproduced vs reported"],
               loc="outside lower center", fontsize=8)
    return fig


@_styled
def plot_heatmap(df: pd.DataFrame, index: str, columns: str, values: str,
                 fmt: str = ".4f", title: str | None = None, cmap: str = "viridis") -> Figure:
    """Annotated heatmap of ``values`` (mean over duplicate cells, e.g. seeds) on an
    ``index`` × ``columns`` grid, the best cell outlined (e.g. the InfoNCE+ λ × ε sweep)."""
    _require(df, [index, columns, values], "plot_heatmap")
    grid = df.pivot_table(index=index, columns=columns, values=values, aggfunc="mean")
    fig = _new_figure(1.2 + 1.0 * grid.shape[1], 1.0 + 0.55 * grid.shape[0])
    ax = fig.add_subplot()
    sns.heatmap(grid, annot=True, fmt=fmt, cmap=cmap, ax=ax, cbar_kws={"label": values},
                linewidths=0.5, linecolor="white")
    best = np.unravel_index(np.nanargmax(grid.to_numpy(dtype=float)), grid.shape)
    ax.add_patch(mpl.patches.Rectangle((best[1], best[0]), 1, 1, fill=False, ec="red", lw=2.5))
    ax.set_title(title or f"{values} over {index} × {columns}")
    return fig


# ---------------------------------------------------------------------------------------------
# Saving

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def save_figure(fig: Figure, name: str, profile: str,
                figures_dir: str | Path = "figures", dpi: int = 150) -> list[Path]:
    """Save ``fig`` as ``<figures_dir>/<name>_<profile>.png`` and ``.pdf`` (the folder is
    created); returns the two paths. ``name`` and ``profile`` must be plain file-name parts."""
    for what, part in (("name", name), ("profile", profile)):
        if not isinstance(part, str) or not _NAME_RE.match(part):
            raise ValueError(f"save_figure: {what} must be a plain file-name part "
                             f"(letters, digits, _ . -), got {part!r}")
    folder = Path(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}_{profile}.{ext}" for ext in ("png", "pdf")]
    for path in paths:
        fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white")
    return paths


# ---------------------------------------------------------------------------------------------
# Learning curves and seed noise (notebooks 03, 04 and 07)


@_styled
def plot_learning_curves(df: pd.DataFrame, metric: str = "recall@20", x: str = "epoch",
                         hue: str = "loss_name", style: str | None = "model",
                         col: str = "dataset") -> Figure:
    """``metric`` after every epoch (from :func:`mmlrepro.experiments.learning_curves`): colour
    by ``hue`` (the loss), line style by ``style`` (the model), one panel per ``col``; with
    several seeds the line is their mean and the band their min–max range. A dot marks each
    line's best epoch (the one a paper table reports)."""
    _require(df, [metric, x, hue, col] + ([style] if style else []), "plot_learning_curves")
    panels = list(dict.fromkeys(df[col]))
    fig = _new_figure(4.6 * len(panels), 3.8)
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0])
    hue_order = list(dict.fromkeys(df[hue]))
    style_order = list(dict.fromkeys(df[style])) if style else None
    palette = _palette(hue_order)
    lines = [hue] + ([style] if style else [])
    for ax, panel in zip(axes, panels, strict=True):
        sub = df[df[col] == panel]
        sns.lineplot(data=sub, x=x, y=metric, hue=hue, hue_order=hue_order, style=style,
                     style_order=style_order, palette=palette, errorbar=("pi", 100), ax=ax)
        mean = sub.groupby(lines + [x], sort=False)[metric].mean().reset_index()
        best = mean.loc[mean.groupby(lines, sort=False)[metric].idxmax()]
        ax.scatter(best[x], best[metric], color=[palette[h] for h in best[hue]], s=30, zorder=5)
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
        ax.set_title(str(panel))
        ax.set_ylabel(metric)
        ax.set_ylim(0, None)
        if ax is not axes[-1]:
            ax.get_legend().remove()
        else:
            handles, labels = ax.get_legend_handles_labels()
            labels = [{"loss_name": "loss", "model_name": "model"}.get(t, t) for t in labels]
            ax.legend(handles, labels, title=None, loc="best", fontsize=8)
    return fig


@_styled
def plot_gap_vs_noise(df: pd.DataFrame, label: str = "label", panels: str = "metric") -> Figure:
    """The paper's gaps against run-to-run noise (from :func:`mmlrepro.experiments.seed_noise`):
    per row of ``df`` (y = ``label``) a black diamond at ``paper_gap`` (%), a red dot at
    ``reproduced_gap`` and a grey bar of ±2·``noise`` around 0 — a gap inside the bar is within
    what two runs with different seeds differ by (≈ 95%). One panel per value of ``panels``."""
    _require(df, [label, panels, "paper_gap", "reproduced_gap", "noise"], "plot_gap_vs_noise")
    keys = list(dict.fromkeys(df[panels]))
    order = list(dict.fromkeys(df[label]))
    fig = _new_figure(4.4 * len(keys), 1.2 + 0.32 * len(order))
    axes = np.atleast_1d(fig.subplots(1, len(keys), squeeze=False, sharey=True)[0])
    for ax, key in zip(axes, keys, strict=True):
        sub = df[df[panels] == key].set_index(label).reindex(order)
        y = np.arange(len(order))
        noise = sub["noise"].to_numpy(dtype=float)
        ax.barh(y, 4 * np.nan_to_num(noise), left=-2 * np.nan_to_num(noise), height=0.6,
                color="0.85", label="±2 sd of a seed-to-seed difference")
        ax.scatter(sub["paper_gap"], y, marker="D", color="black", s=30, zorder=5, label="paper's gap")
        ax.scatter(sub["reproduced_gap"], y, color=LOSS_COLORS["MML"], s=30, zorder=6,
                   label="reproduced gap")
        ax.axvline(0, color="0.4", lw=0.8)
        ax.set_yticks(y, [str(o) for o in order])
        ax.set_xlabel("MML vs baseline (%)")
        ax.set_title(str(key))
    axes[0].invert_yaxis()  # shared y axis: invert once, first row on top
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8)
    return fig
