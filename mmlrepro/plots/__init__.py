"""Seaborn/matplotlib figures used by the notebooks and the report.

Every function builds its own :class:`matplotlib.figure.Figure` (never through ``pyplot``: no
global figure registry, no ``plt.show``, safe under the "Agg" backend and in papermill) and
returns it; a notebook displays it by leaving it as the cell's last expression, and
:func:`save_figure` writes it as PNG and PDF with the profile in the file name.

- :mod:`mmlrepro.plots.style`: one fixed colour per loss (:func:`loss_color`), datasets in
  greys and in the tables' order, the project style, titles naming the profile and the seeds;
- :mod:`mmlrepro.plots.saving`: :func:`save_figure` and :func:`figure_png`, with no date in any
  file, so re-running a notebook that changes nothing changes no tracked file;
- :mod:`mmlrepro.plots.geometry`: notebook 01, the margin geometry (SPEC §5, the paper's
  Figure 2), its explorer (:class:`MarginExplorer`) and the active negatives of a real model;
- :mod:`mmlrepro.plots.datasets`: the data (SPEC §2), :func:`plot_distributions`;
- :mod:`mmlrepro.plots.results`: figures of stored runs (MML Figure 3, reproduced vs reported,
  the InfoNCE+ heatmap, learning curves, gaps against noise, the truncated protocol's
  agreement) and :func:`mark_verdicts`.

``from mmlrepro import plots; plots.X`` reaches every public name below.
"""

from mmlrepro.plots.datasets import plot_distributions
from mmlrepro.plots.geometry import (
    MarginExplorer,
    explorer_figure,
    plot_active_share,
    plot_margin_explorer,
    plot_margin_gallery,
    plot_margin_geometry,
    plot_penalty_curve,
)
from mmlrepro.plots.results import (
    BAND_COLOR,
    STOP_MARKS,
    mark_verdicts,
    plot_gap_vs_noise,
    plot_heatmap,
    plot_learning_curves,
    plot_metric_vs_negatives,
    plot_reproduced_vs_reported,
    plot_truncated_agreement,
)
from mmlrepro.plots.saving import figure_png, save_figure
from mmlrepro.plots.style import (
    DATASET_COLORS,
    LOSS_COLORS,
    WEIGHT_CMAP,
    dataset_order,
    loss_color,
    loss_palette,
    runs_caption,
)

__all__ = [
    "BAND_COLOR", "DATASET_COLORS", "LOSS_COLORS", "STOP_MARKS", "WEIGHT_CMAP", "MarginExplorer",
    "dataset_order", "explorer_figure", "figure_png", "loss_color", "loss_palette",
    "mark_verdicts", "plot_active_share", "plot_distributions", "plot_gap_vs_noise",
    "plot_heatmap", "plot_learning_curves", "plot_margin_explorer", "plot_margin_gallery",
    "plot_metric_vs_negatives",
    "plot_margin_geometry", "plot_penalty_curve", "plot_reproduced_vs_reported",
    "plot_truncated_agreement", "runs_caption", "save_figure",
]
