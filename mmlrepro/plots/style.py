"""The look every figure shares: one fixed colour per loss, datasets in greys, the project's
seaborn style, and titles that say which runs a figure shows.

- one colour per loss, whatever name it comes under (registry ``"mml"``, display ``"MML"``,
  variant ``"CCL (matched weight)"``): :func:`loss_color`, which refuses an unknown name;
- datasets in the catalogue's order (:data:`mmlrepro.data.NAMES`: Yelp2018, then
  Gowalla), as in the tables, drawn in greys (:data:`DATASET_COLORS`);
- figures of stored runs say in their title the profile and the number of seeds they show
  (:func:`runs_caption`: from the frame's ``profile`` and ``seed`` columns, plus ``title_suffix``);
- every figure function is drawn under :func:`_styled` (a local rc context) on its own
  :class:`matplotlib.figure.Figure` (:func:`_new_figure`, never through ``pyplot``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

from mmlrepro import geometry
from mmlrepro.data import NAMES as DATASETS
from mmlrepro.reported import LOSS_NAMES


def _lighten(color, amount: float) -> tuple[float, float, float]:
    """``color`` mixed with white (``amount`` > 0) or black (``amount`` < 0)."""
    rgb = np.array(mpl.colors.to_rgb(color))
    target = 1.0 if amount > 0 else 0.0
    return tuple(float(c) for c in rgb + (target - rgb) * abs(amount))


# One fixed colour per loss (seaborn "colorblind" palette), keyed by its display name
# (:data:`mmlrepro.reported.LOSS_NAMES`), plus CCL at MML's weight (the matched-weight
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

