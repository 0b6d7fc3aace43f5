"""Margin geometry: which negatives a loss pushes, and how hard (SPEC §5, the paper's Figure 2).

Two parts, both used by notebook 01:

1. A 2-D toy. The user vector points "up"; every item is a unit vector at angle φ from it, so
   its cosine score is s = cos φ and a margin m is a cone of half-angle arccos(m). The four
   losses of the paper's Figure 2 all push a negative with a per-negative penalty of MML's form
   (w_neg/N)·Σ_k w_k·relu(s − m_k) (:func:`equivalent_mml`), so one function,
   :func:`mmlrepro.losses.penalty_curve`, gives every penalty and slope.
2. A real model. :func:`train_briefly` fits an MF for a few hundred CCL steps and
   :func:`active_share` measures, for a batch of users, the share of N uniformly sampled
   negatives whose gradient is non-zero under CCL (one margin, 0.9) and MML (smallest margin
   0.7), as N grows: the paper's argument that a single high margin wastes most negatives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mmlrepro.data import Dataset
from mmlrepro.losses import active_negatives, get_loss, penalty_curve
from mmlrepro.models import MF

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

# The losses compared on a real model (SPEC §8, Gowalla): label -> (margins, weights).
ACTIVE_SHARE_LOSSES: Mapping[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "CCL (m = 0.9)": ((0.9,), (1.0,)),
    "MML (m = 0.7, 0.8, 0.9)": ((0.7, 0.8, 0.9), (0.10, 0.15, 0.75)),
}


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
    """Penalty and slope of one negative: :func:`mmlrepro.losses.penalty_curve` on NumPy."""
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


# ---------------------------------------------------------------------------------------------
# A real model


def train_briefly(dataset: Dataset, steps: int = 300, loss: str = "ccl",
                  loss_params: Mapping | None = None, batch_size: int = 256,
                  n_negatives: int = 100, dim: int = 64, lr: float = 1e-3, seed: int = 0,
                  device: str = "cpu", checkpoints: Sequence[int] = (),
                  on_checkpoint: Callable[[int, MF], None] | None = None) -> MF:
    """An MF (SPEC §3: cosine scores, N(0, 1e-4) init, dropout 0.1 after normalising) trained
    for ``steps`` Adam steps on random train rows with uniform negatives (SPEC §4), the loss
    ``get_loss(loss, **loss_params)`` (defaults: CCL m = 0.9, w = 150).

    A deliberately short, self-contained fit for the geometry measurement, not a paper run
    [assumed]: no regulariser, no clipping, rows drawn with replacement, lazy Adam
    (``torch.optim.SparseAdam``: only the rows of a batch are updated, so a step costs O(batch)
    on CPU instead of a pass over both tables) and lr 1e-3 (10× the paper's, so that a few
    hundred steps move the scores the way much longer training at 1e-4 would).
    ``on_checkpoint(step, model)`` is called (under ``torch.no_grad``, model in train mode)
    after every step listed in ``checkpoints`` (0 = before training). Returns the model in eval
    mode.
    """
    if steps < 0 or batch_size < 1 or n_negatives < 1:
        raise ValueError(f"need steps >= 0, batch_size and n_negatives >= 1, got {steps}, "
                         f"{batch_size}, {n_negatives}")
    bad = [c for c in checkpoints if not 0 <= c <= steps]
    if bad:
        raise ValueError(f"checkpoints must lie in [0, steps={steps}], got {bad}")
    loss_fn = get_loss(loss, **dict(loss_params or {}))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # model init and dropout
    model = MF(dataset.n_users, dataset.n_items, dim=dim).to(device)
    opt = torch.optim.SparseAdam([model.user_emb, model.item_emb], lr=lr)
    users = torch.from_numpy(dataset.train_users())
    items = torch.from_numpy(dataset.train_items())
    marks = set(checkpoints)
    model.train()
    for step in range(steps + 1):
        if step in marks and on_checkpoint is not None:
            with torch.no_grad():
                on_checkpoint(step, model)
            model.train()
        if step == steps:
            break
        rows = torch.randint(len(users), (batch_size,), generator=gen)
        neg = torch.randint(dataset.n_items, (batch_size, n_negatives), generator=gen)
        pos_s, neg_s = _sparse_scores(model, users[rows].to(device), items[rows].to(device),
                                      neg.to(device))
        opt.zero_grad(set_to_none=True)
        loss_fn(pos_s, neg_s).backward()
        opt.step()
    return model.eval()


def _sparse_scores(model: MF, users: torch.Tensor, pos: torch.Tensor,
                   neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``model(users, pos, neg)`` in training mode (SPEC §3: cosine, dropout after normalising
    the user vector) with sparse gradients for the embedding tables."""
    u = F.normalize(F.embedding(users, model.user_emb, sparse=True), dim=-1)
    u = F.dropout(u, model.dropout, training=True)
    ip = F.normalize(F.embedding(pos, model.item_emb, sparse=True), dim=-1)
    ineg = F.normalize(F.embedding(neg, model.item_emb, sparse=True), dim=-1)
    return (u * ip).sum(-1), torch.bmm(ineg, u.unsqueeze(-1)).squeeze(-1)


def active_share_during_training(dataset: Dataset, checkpoints: Sequence[int],
                                 n_values: Sequence[int] = (10, 100, 800),
                                 n_users: int = 4096, seed: int = 0,
                                 **train_kwargs) -> tuple[pd.DataFrame, MF]:
    """:func:`active_share` measured after every step in ``checkpoints`` of one
    :func:`train_briefly` run (``train_kwargs`` go to it; its ``steps`` is ``max(checkpoints)``).
    Returns ``(frame with a "step" column, the trained model)``."""
    frames: list[pd.DataFrame] = []

    def measure(step: int, model: MF) -> None:
        frames.append(active_share(model, dataset, n_values, n_users, seed).assign(step=step))

    model = train_briefly(dataset, steps=max(checkpoints), seed=seed, checkpoints=checkpoints,
                          on_checkpoint=measure, **train_kwargs)
    return pd.concat(frames, ignore_index=True), model


@torch.no_grad()
def active_share(model: torch.nn.Module, dataset: Dataset,
                 n_values: Sequence[int] = (10, 50, 100, 200, 400, 800), n_users: int = 4096,
                 seed: int = 0, losses: Mapping[str, tuple] = ACTIVE_SHARE_LOSSES,
                 training_mode: bool = True, chunk: int = 1024) -> pd.DataFrame:
    """How many of N uniformly sampled negatives (SPEC §4: all items, positives not excluded)
    get a non-zero gradient, for each loss (label -> (margins, weights)) and each N, as exact
    expectations over the sampling (no sampling noise).

    For ``n_users`` users with train items (drawn with ``seed``; all of them if fewer), score
    every item; user u's active fraction is p_u = |{i : s(u, i) > min_k m_k}| / n_items
    (:func:`mmlrepro.losses.active_negatives`). Then, averaged over the users:

    - ``share_active`` = mean p_u: the expected share of sampled negatives with a gradient;
    - ``active_per_row`` = N · share_active: their expected number per row;
    - ``rows_with_active`` = mean 1 − (1 − p_u)^N: the chance a row has at least one;
    - ``mean_weight``: expected Σ_{m_k < s⁻} w_k of a sampled negative.

    Scores are those the loss sees in training (``training_mode``: one dropout draw on each
    user vector, SPEC §3) [assumed; ``False`` gives the clean eval scores]. Users are scored in
    chunks of ``chunk`` (memory ``chunk × n_items``). One row per (loss, N).
    """
    if n_users < 1 or any(n < 1 for n in n_values):
        raise ValueError(f"need n_users >= 1 and every N >= 1, got {n_users} and {n_values}")
    eligible = np.flatnonzero(dataset.history_lengths() > 0)
    pick = np.random.default_rng(seed).choice(eligible, size=min(n_users, len(eligible)),
                                              replace=False)
    device = next(model.parameters()).device
    users = torch.from_numpy(np.sort(pick)).to(device)
    was_training = model.training
    model.train(training_mode)
    torch.manual_seed(seed)  # dropout
    items = model.item_vectors()
    p = {label: [] for label in losses}
    weight = {label: [] for label in losses}
    for start in range(0, len(users), chunk):
        scores = model.user_vectors(users[start:start + chunk]) @ items.T
        for label, (margins, weights) in losses.items():
            mask, w = active_negatives(scores, margins, weights)
            p[label].append(mask.double().mean(1))
            weight[label].append(w.double().mean(1))
    model.train(was_training)
    rows = []
    for n in n_values:
        for label in losses:
            pu = torch.cat(p[label])
            rows.append({"loss": label, "n_negatives": int(n),
                         "share_active": float(pu.mean()),
                         "active_per_row": float(n * pu.mean()),
                         "rows_with_active": float((1 - (1 - pu) ** n).mean()),
                         "mean_weight": float(torch.cat(weight[label]).mean())})
    return pd.DataFrame(rows)


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


def active_share_summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per N from an :func:`active_share` frame: each loss's share of active negatives
    and of rows with one, and ``ratio`` = (last loss's share) / (first loss's share), i.e.
    MML / CCL with :data:`ACTIVE_SHARE_LOSSES` (inf where the first is 0)."""
    labels = list(dict.fromkeys(df["loss"]))
    if len(labels) < 2:
        raise ValueError(f"need at least two losses to compare, got {labels}")
    wide = df.pivot(index="n_negatives", columns="loss", values=["share_active",
                                                                  "rows_with_active"])
    out = pd.DataFrame(index=wide.index)
    for label in labels:
        out[f"{label}: share of negatives"] = wide[("share_active", label)]
        out[f"{label}: rows with one"] = wide[("rows_with_active", label)]
    first, last = wide[("share_active", labels[0])], wide[("share_active", labels[-1])]
    out["ratio"] = np.where(first > 0, last / first.where(first > 0, 1.0), np.inf)
    return out
