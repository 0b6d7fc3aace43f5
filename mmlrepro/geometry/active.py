"""Active negatives on a real model: which sampled negatives a margin loss pushes (notebook 01).

:func:`train_briefly` fits an MF for a few hundred CCL steps and :func:`active_share` measures,
for a batch of users, the share of N uniformly sampled negatives whose gradient is non-zero
under CCL (one margin, 0.9) and MML (smallest margin 0.7), as N grows: the paper's argument
(SPEC §5) that a single high margin wastes most negatives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mmlrepro.data import Dataset
from mmlrepro.geometry.penalty import active_negatives
from mmlrepro.losses import get_loss
from mmlrepro.models import MF

# The losses compared on a real model (SPEC §8, Gowalla): label -> (margins, weights).
ACTIVE_SHARE_LOSSES: Mapping[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "CCL (m = 0.9)": ((0.9,), (1.0,)),
    "MML (m = 0.7, 0.8, 0.9)": ((0.7, 0.8, 0.9), (0.10, 0.15, 0.75)),
}


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
    (:func:`mmlrepro.geometry.penalty.active_negatives`). Then, averaged over the users:

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
