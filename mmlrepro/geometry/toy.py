"""The 2-D toy of the margin geometry (SPEC §5, the paper's Figure 2), drawn by notebook 01.

The user vector points "up"; every item is a unit vector at angle φ from it, so its cosine
score is s = cos φ and a margin m is a cone of half-angle arccos(m). The four losses of the
paper's Figure 2 all push a negative with a per-negative penalty of MML's form
(w_neg/N)·Σ_k w_k·relu(s − m_k) (:func:`equivalent_mml`), so one function,
:func:`mmlrepro.geometry.penalty.penalty_curve`, gives every penalty and slope. Also the paper
settings of each loss and the sliders of notebook 01's explorer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mmlrepro.geometry.penalty import penalty_curve

LOSS_KINDS = ("contrastive", "ccl", "triplet", "mml")
LOSS_TITLES = {"contrastive": "Contrastive", "ccl": "CCL", "triplet": "Triplet / hinge",
               "mml": "MML"}

# The sliders of notebook 01's explorer and the loss settings each one applies to: m3 is the
# single margin of CCL and the hinge (the paper's m = 0.9, MML's top margin), s⁺ only moves the
# hinge's threshold, w_neg is MML's w_neg, CCL's w and the contrastive toy's w.
EXPLORER_SLIDERS = ("m1", "m2", "m3", "w1", "w2", "w3", "w_neg", "s_pos")
EXPLORER_CONTROLS: Mapping[str, tuple[str, ...]] = {
    "mml": ("m1", "m2", "m3", "w1", "w2", "w3", "w_neg"),
    "ccl": ("m3", "w_neg"),
    "triplet": ("m3", "s_pos"),
    "contrastive": ("w_neg",),
}
S_POS = 0.8  # the toy positive's score [assumed]


def check_loss_kind(loss: str) -> str:
    """``loss`` lower-cased if it is one of :data:`LOSS_KINDS`, else ``ValueError``."""
    kind = str(loss).lower()
    if kind not in LOSS_KINDS:
        raise ValueError(f"unknown loss {loss!r} for the margin geometry; one of {LOSS_KINDS}")
    return kind


def loss_family(label: str) -> str:
    """The loss name at the start of a label: ``"CCL (m = 0.9)" -> "CCL"`` (for colours)."""
    return str(label).split(" ")[0]


def equivalent_mml(loss: str, margins: Sequence[float], weights: Sequence[float],
                   neg_weight: float, s_pos: float = 0.8
                   ) -> tuple[tuple[float, ...], tuple[float, ...], float]:
    """``(margins, weights, neg_weight)`` of the MML-form penalty (w_neg/N)·Σ_k w_k·relu(s − m_k)
    that ``loss`` puts on one negative of score s (SPEC §5), given the notebook's sliders:

    - ``mml``: the sliders as they are;
    - ``ccl``: (w/N)·relu(s − m) with m = the largest slider margin, weight 1, w = ``neg_weight``;
    - ``triplet`` (pairwise hinge): (1/N)·relu(m + s − s⁺) = (1/N)·relu(s − (s⁺ − m)), a margin
      relative to the positive, m = the largest slider margin, threshold clipped to [-1, 1];
    - ``contrastive``: no margin, every negative pushed equally, (w/N)·(s + 1) = a margin at −1
      [assumed: the margin-free linear push standing for "contrastive" in the paper's Figure 2].
    """
    kind = check_loss_kind(loss)
    margins, weights = tuple(float(m) for m in margins), tuple(float(w) for w in weights)
    if len(margins) == 0 or len(margins) != len(weights):
        raise ValueError(f"need one weight per margin and at least one margin, got {margins} "
                         f"and {weights}")
    if kind == "mml":
        return margins, weights, float(neg_weight)
    if kind == "ccl":
        return (max(margins),), (1.0,), float(neg_weight)
    if kind == "triplet":
        return (float(np.clip(s_pos - max(margins), -1.0, 1.0)),), (1.0,), 1.0
    return (-1.0,), (1.0,), float(neg_weight)


def paper_setting(loss: str, dataset: str = "gowalla") -> dict:
    """``{"margins", "weights", "neg_weight"}`` of ``loss`` on ``dataset`` as the paper runs it
    (SPEC §8, MF; from :func:`mmlrepro.catalogue.loss_params`), in :func:`equivalent_mml`'s
    arguments: MML its margins, weights and w_neg (700 Gowalla, 400 Yelp2018); CCL m = 0.9 and
    its own w = 150 (not MML's w_neg); the hinge m = 0.9 (weight 1: a plain mean over the
    negatives); the contrastive toy w = 1 [assumed: an unweighted push, like the hinge]."""
    from mmlrepro.catalogue import loss_params

    kind = check_loss_kind(loss)
    if kind == "mml":
        p = loss_params("mml", dataset)
        return {"margins": tuple(p["margins"]), "weights": tuple(p["weights"]),
                "neg_weight": float(p["neg_weight"])}
    if kind == "ccl":
        p = loss_params("ccl", dataset, "mf")
        return {"margins": (float(p["margin"]),), "weights": (1.0,),
                "neg_weight": float(p["neg_weight"])}
    if kind == "triplet":
        return {"margins": (float(loss_params("hinge", dataset)["margin"]),), "weights": (1.0,),
                "neg_weight": 1.0}
    return {"margins": (-1.0,), "weights": (1.0,), "neg_weight": 1.0}


def max_weight(loss: str, margins: Sequence[float], weights: Sequence[float],
               neg_weight: float, s_pos: float = S_POS) -> float:
    """The largest gradient weight N·∂L/∂s⁻ ``loss`` gives any negative: w_neg·Σ_k w_k of its
    :func:`equivalent_mml` penalty (the slope above its top threshold)."""
    _, eq_weights, eq_w = equivalent_mml(loss, margins, weights, neg_weight, s_pos)
    return float(eq_w * sum(eq_weights))


def shared_weight_max(losses: Sequence[str] = LOSS_KINDS, dataset: str = "gowalla") -> float:
    """Top of the colour scale shared by every margin-geometry panel: the largest
    :func:`max_weight` over ``losses`` at their :func:`paper_setting` (700, MML's on Gowalla)."""
    return max(max_weight(k, **paper_setting(k, dataset)) for k in losses)


def explorer_values(loss: str, dataset: str = "gowalla") -> dict[str, float]:
    """Every explorer slider (:data:`EXPLORER_SLIDERS`) at ``loss``'s :func:`paper_setting`:
    the sliders that apply to it (:data:`EXPLORER_CONTROLS`) carry its values, the others MML's
    (they are disabled). The explorer has three margin sliders, so ``dataset`` is one whose MML
    has at most three margins (Gowalla)."""
    kind = check_loss_kind(loss)
    mml = paper_setting("mml", dataset)
    if len(mml["margins"]) > 3:
        raise ValueError(f"the explorer has 3 margin sliders; MML on {dataset} has "
                         f"{len(mml['margins'])} margins")
    values = {f"m{k + 1}": m for k, m in enumerate(mml["margins"])}
    values |= {f"w{k + 1}": w for k, w in enumerate(mml["weights"])}
    values |= {"w_neg": mml["neg_weight"], "s_pos": S_POS}
    own = paper_setting(kind, dataset)
    if kind in ("ccl", "triplet"):
        values["m3"] = own["margins"][0]
    if kind != "triplet":
        values["w_neg"] = own["neg_weight"]
    return {name: float(values[name]) for name in EXPLORER_SLIDERS}


def explorer_settings(loss: str, values: Mapping[str, float]
                      ) -> tuple[tuple[float, ...], tuple[float, ...], float, float]:
    """``(margins, weights, neg_weight, s_pos)`` the explorer draws ``loss`` with, from the
    slider ``values``, reading only the sliders that apply to it (:data:`EXPLORER_CONTROLS`):
    MML's three margins sorted and merged (:func:`merge_margins`), CCL and the hinge the one
    margin m3, the contrastive toy no margin; s⁺ is the default unless the loss is the hinge."""
    kind = check_loss_kind(loss)
    s_pos = float(values["s_pos"]) if kind == "triplet" else S_POS
    if kind == "mml":
        margins, weights = merge_margins([values[f"m{k}"] for k in (1, 2, 3)],
                                         [values[f"w{k}"] for k in (1, 2, 3)])
    elif kind == "contrastive":
        margins, weights = (-1.0,), (1.0,)
    else:
        margins, weights = (float(values["m3"]),), (1.0,)
    neg_weight = 1.0 if kind == "triplet" else float(values["w_neg"])
    return margins, weights, neg_weight, s_pos


def penalty_and_slope(similarity: np.ndarray, margins: Sequence[float], weights: Sequence[float],
                      neg_weight: float, n_negatives: int) -> tuple[np.ndarray, np.ndarray]:
    """Penalty and slope of one negative: :func:`mmlrepro.geometry.penalty.penalty_curve` on NumPy."""
    return penalty_curve(np.asarray(similarity, dtype=np.float64), margins, weights, neg_weight,
                         n_negatives)


def negative_weights(loss: str, similarity: np.ndarray, margins: Sequence[float],
                     weights: Sequence[float], neg_weight: float,
                     s_pos: float = 0.8) -> np.ndarray:
    """Gradient weight N·∂L/∂s⁻_j of every negative under ``loss`` (0 where it gets no gradient):
    N times the slope of its :func:`equivalent_mml` penalty, i.e. w_neg·Σ_{m_k < s} w_k."""
    eq_margins, eq_weights, eq_w = equivalent_mml(loss, margins, weights, neg_weight, s_pos)
    _, slope = penalty_and_slope(similarity, eq_margins, eq_weights, eq_w, 1)
    return slope


def threshold_label(loss: str, k: int, margin: float, weight: float) -> str:
    """Text of the k-th threshold arc of :func:`mmlrepro.plots.plot_margin_geometry`."""
    kind = check_loss_kind(loss)
    if kind == "triplet":
        return f"s⁺ − m = {margin:.2f}"
    if kind == "contrastive":
        return "no margin: all pushed"
    if kind == "ccl":
        return f"m = {margin:.2f}"
    return f"m{k + 1} = {margin:.2f} (w {weight:.2f})"


def weight_label(loss: str, neg_weight: float) -> str:
    """The weight a panel title names: ``" (w_neg 700)"`` (MML), ``" (w 150)"`` (CCL, the
    contrastive toy), ``""`` for the hinge (no weight)."""
    kind = check_loss_kind(loss)
    if kind == "triplet":
        return ""
    return f" ({'w_neg' if kind == 'mml' else 'w'} {neg_weight:.4g})"


def negative_cloud(n: int, seed: int = 0, hard_share: float = 0.5,
                   concentration: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """``(angle, radius)`` of ``n`` toy negatives: a share ``hard_share`` drawn von Mises around
    the user (angle 0, ``concentration`` κ: the hard negatives), the rest uniform on the circle
    [assumed toy distribution]. ``radius`` in [0.86, 1] is a jitter for drawing only: scores are
    cos(angle). Deterministic given ``seed``."""
    if n < 1:
        raise ValueError(f"need n >= 1 negatives, got {n}")
    if not 0.0 <= hard_share <= 1.0:
        raise ValueError(f"hard_share must be in [0, 1], got {hard_share}")
    rng = np.random.default_rng(seed)
    n_hard = int(round(hard_share * n))
    angle = np.concatenate([rng.vonmises(0.0, concentration, n_hard),
                            rng.uniform(-np.pi, np.pi, n - n_hard)])
    radius = 1.0 - 0.14 * rng.random(n)
    return angle, radius


def merge_margins(margins: Sequence[float], weights: Sequence[float]
                  ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Margins sorted increasingly, equal ones merged (their weights summed): what sliders that
    can cross each other mean, in the strictly increasing form the losses require (SPEC §5)."""
    if len(margins) == 0 or len(margins) != len(weights):
        raise ValueError(f"need one weight per margin and at least one margin, got {margins} "
                         f"and {weights}")
    merged: dict[float, float] = {}
    for m, w in sorted(zip((round(float(m), 10) for m in margins), map(float, weights),
                           strict=True)):
        merged[m] = merged.get(m, 0.0) + w
    return tuple(merged), tuple(merged.values())
