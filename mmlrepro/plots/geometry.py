"""Notebook 01's figures: the margin geometry (SPEC §5, the paper's Figure 2), its interactive
explorer and the active negatives measured on a real model.

- :func:`plot_margin_geometry` (the 2-D, user-centred picture of which negatives a loss pushes),
  :func:`plot_penalty_curve`, :func:`plot_margin_explorer` (both side by side),
  :func:`plot_margin_gallery` (every loss at its paper setting);
- :func:`explorer_figure` and :class:`MarginExplorer` (ipywidgets sliders that redraw it);
- :func:`plot_active_share` (from :func:`mmlrepro.geometry.active_share`).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Arc, Circle, Wedge

from mmlrepro import geometry
from mmlrepro.plots.saving import figure_png
from mmlrepro.plots.style import (
    WEIGHT_CMAP,
    _lighten,
    _log_x_ticks,
    _new_figure,
    _require,
    _styled,
    loss_color,
)


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
    :func:`mmlrepro.geometry.penalty_curve`: convex piecewise linear, a kink at every margin.

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

