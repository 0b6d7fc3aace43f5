"""Margin geometry: which negatives a loss pushes, and how hard (SPEC §5, the paper's Figure 2).

Everything notebook 01 computes, in three parts:

- :mod:`mmlrepro.geometry.penalty`: MML's per-negative penalty and its slope
  (:func:`penalty_curve`) and the negatives with a non-zero gradient (:func:`active_negatives`),
  from the loss registry's own formula;
- :mod:`mmlrepro.geometry.toy`: the 2-D, user-centred toy (every loss of Figure 2 as an
  MML-form penalty, :func:`equivalent_mml`), each loss's paper setting and the explorer's sliders;
- :mod:`mmlrepro.geometry.active`: a real model, an MF trained briefly
  (:func:`train_briefly`), and the share of N sampled negatives it pushes as N grows
  (:func:`active_share`).

``from mmlrepro import geometry; geometry.X`` reaches every public name below.
"""

from mmlrepro.geometry.active import (
    ACTIVE_SHARE_LOSSES,
    active_share,
    active_share_during_training,
    active_share_summary,
    train_briefly,
)
from mmlrepro.geometry.penalty import active_negatives, penalty_curve
from mmlrepro.geometry.toy import (
    EXPLORER_CONTROLS,
    EXPLORER_SLIDERS,
    LOSS_KINDS,
    LOSS_TITLES,
    S_POS,
    check_loss_kind,
    equivalent_mml,
    explorer_settings,
    explorer_values,
    loss_family,
    max_weight,
    merge_margins,
    negative_cloud,
    negative_weights,
    paper_setting,
    penalty_and_slope,
    shared_weight_max,
    threshold_label,
    weight_label,
)

__all__ = [
    "ACTIVE_SHARE_LOSSES", "EXPLORER_CONTROLS", "EXPLORER_SLIDERS", "LOSS_KINDS", "LOSS_TITLES",
    "S_POS", "active_negatives", "active_share", "active_share_during_training",
    "active_share_summary", "check_loss_kind", "equivalent_mml", "explorer_settings",
    "explorer_values", "loss_family", "max_weight", "merge_margins", "negative_cloud",
    "negative_weights", "paper_setting", "penalty_and_slope", "penalty_curve",
    "shared_weight_max", "threshold_label", "train_briefly", "weight_label",
]
