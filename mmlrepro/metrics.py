"""Exact full-ranking evaluation: Recall@K and NDCG@K (SPEC §7).

For every user with at least one test item (test set T), rank **all** items by score with the
user's train items masked out (set to −inf), take the ranked list L, and

    Recall@K = |L[:K] ∩ T| / |T|
    NDCG@K   = Σ_{r<K, L_r ∈ T} 1/log2(r+2)  ÷  Σ_{r<min(K, |T|)} 1/log2(r+2)

averaged uniformly over those users. Everything runs on the device in user chunks (the only
Python loop is over chunks): the train items are masked by index (scatter of −inf), one top-K
with K = max(ks) gives a hit matrix, from which every K is read. With ``per_user=True`` the
same pass also keeps each evaluated user's value of every metric (:class:`~mmlrepro.per_user.PerUser`,
for the paired tests of :mod:`mmlrepro.stats`), which :mod:`mmlrepro.per_user` stores.

Speed (CPU): the score chunk is written into a preallocated buffer (no page faults) whose width
is padded to a multiple of ``BLOCK`` items, and the top-K is exact but *blocked*: the K largest
scores lie in the K blocks with the largest block maxima (a block outside those has K blocks
whose maxima, K distinct entries, are ≥ its own maximum), so top-K runs over K·BLOCK candidates
instead of all items. Ties may be broken differently than a full sort; they do not matter at
float precision (SPEC §7).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

# the per-user values' storage, re-exported under its old names (checkpoints pickle PerUser as
# mmlrepro.metrics.PerUser, so this name must stay)
from mmlrepro.config import METRIC_NAMES, metric_names
from mmlrepro.per_user import PerUser, PerUserError, load_per_user, save_per_user

__all__ = ["EvalIndex", "PerUser", "topk_metrics", "evaluate", "as_csr", "as_int64", "metric_names",
           "METRIC_NAMES", "save_per_user", "load_per_user", "PerUserError"]

BLOCK = 64          # items per block of the blocked top-K (and padding unit of the buffer width)


def as_csr(items, n_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-user item lists → CSR ``(indptr, indices)`` int64 numpy arrays.

    Accepts a CSR pair given as a **tuple** ``(indptr, indices)`` of numpy arrays / tensors, or
    any other sequence (e.g. a list) of 1-D arrays, one per user.
    """
    if isinstance(items, tuple) and len(items) == 2:
        indptr, indices = as_int64(items[0]).reshape(-1), as_int64(items[1]).reshape(-1)
        if len(indptr) < 1 or indptr[0] != 0 or indptr[-1] != len(indices):
            raise ValueError("a tuple of per-user item lists must be a CSR pair (indptr, "
                             "indices) with indptr[0] == 0 and indptr[-1] == len(indices); "
                             "pass a list for one array per user")
    else:
        rows = [as_int64(r).reshape(-1) for r in items]
        indptr = np.zeros(len(rows) + 1, np.int64)
        np.cumsum([len(r) for r in rows], out=indptr[1:])
        indices = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    if np.any(np.diff(indptr) < 0):
        raise ValueError("per-user item lists: indptr is not non-decreasing")
    if n_rows is not None and len(indptr) != n_rows + 1:
        raise ValueError(f"per-user item lists cover {len(indptr) - 1} users, expected {n_rows}")
    return indptr, indices


def as_int64(a) -> np.ndarray:
    """``a`` (a tensor on any device, an array or a list) as a numpy int64 array."""
    if isinstance(a, Tensor):
        return a.detach().cpu().numpy().astype(np.int64, copy=False)
    return np.asarray(a, dtype=np.int64)


def _sub_csr(indptr: np.ndarray, indices: np.ndarray,
             rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``rows`` of a CSR, re-indexed 0..len(rows)-1: (indptr, row of each entry, items)."""
    counts = indptr[rows + 1] - indptr[rows]
    sub_ptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(counts, out=sub_ptr[1:])
    row_of = np.repeat(np.arange(len(rows), dtype=np.int64), counts)
    src = np.repeat(indptr[rows], counts) + (np.arange(sub_ptr[-1]) - np.repeat(sub_ptr[:-1],
                                                                                 counts))
    return sub_ptr, row_of, indices[src]


@dataclass(frozen=True)
class EvalIndex:
    """Device-resident masks and targets of one evaluation, reusable across epochs.

    ``users`` (device) are the evaluated users (≥ 1 test item) in order; position j is row j of
    the evaluation. ``*_ptr`` stay on the host (chunk boundaries), ``*_row``/``*_item`` (device)
    give the (row, item) of every train / test entry of the evaluated users.
    """

    users: Tensor
    n_items: int
    train_ptr: np.ndarray
    train_row: Tensor
    train_item: Tensor
    test_ptr: np.ndarray
    test_row: Tensor
    test_item: Tensor
    n_test: Tensor

    @property
    def device(self) -> torch.device:
        return self.users.device

    @classmethod
    def from_lists(cls, train_items, test_items, n_items: int, device: torch.device | str = "cpu",
                   users=None) -> EvalIndex:
        """Build from per-user item lists (CSR pair or list of arrays, row u = user u).

        ``users`` (optional) restricts the evaluation to those users; in any case only users
        with ≥ 1 test item are kept.
        """
        tr_ptr, tr_idx = as_csr(train_items)
        te_ptr, te_idx = as_csr(test_items, len(tr_ptr) - 1)
        for name, idx in (("train", tr_idx), ("test", te_idx)):
            if len(idx) and (idx.min() < 0 or idx.max() >= n_items):
                raise ValueError(f"{name} items outside [0, {n_items})")
        rows = np.arange(len(te_ptr) - 1) if users is None else as_int64(users).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(te_ptr) - 1):
            raise ValueError(f"users outside [0, {len(te_ptr) - 1})")
        rows = rows[te_ptr[rows + 1] > te_ptr[rows]]
        if len(rows) == 0:
            raise ValueError("no user to evaluate: none has a test item")
        tr = _sub_csr(tr_ptr, tr_idx, rows)
        te = _sub_csr(te_ptr, te_idx, rows)

        def dev(a: np.ndarray) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(device)

        return cls(dev(rows), int(n_items), tr[0], dev(tr[1]), dev(tr[2]), te[0], dev(te[1]),
                   dev(te[2]), dev(np.diff(te[0])))

    @classmethod
    def from_dataset(cls, dataset, device: torch.device | str = "cpu", users=None) -> EvalIndex:
        """Train items of ``dataset`` masked, its test split as targets."""
        return cls.from_lists((dataset.train_indptr, dataset.train_indices),
                              (dataset.test_indptr, dataset.test_indices),
                              dataset.n_items, device, users)

    def __len__(self) -> int:
        return len(self.users)


def _check_ks(ks: Sequence[int], n_items: int) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1 or max(ks) > n_items:
        raise ValueError(f"ks must be non-empty, each in [1, n_items={n_items}], got {ks}")
    return ks


def _topk_indices(scores: Tensor, k: int, block: int) -> Tensor:
    """Exact top-k column indices (sorted by score) of ``scores`` ``[B, W]``, W % block == 0."""
    n, width = scores.shape
    n_blocks = width // block
    if block <= 1 or n_blocks <= 2 * k:
        return scores.topk(k, dim=1).indices
    top_blocks = scores.view(n, n_blocks, block).amax(2).topk(k, dim=1).indices   # [B, k]
    rows = top_blocks + n_blocks * torch.arange(n, device=scores.device).unsqueeze(1)
    cand = scores.view(n * n_blocks, block).index_select(0, rows.view(-1)).view(n, k * block)
    pos = cand.topk(k, dim=1).indices                                          # [B, k]
    return top_blocks.gather(1, pos // block) * block + pos % block


class _Accumulator:
    """Per-chunk masking, top-K, hits and metric sums, with reusable buffers."""

    def __init__(self, index: EvalIndex, ks: tuple[int, ...], chunk: int, dtype: torch.dtype,
                 block: int = BLOCK, per_user: bool = False) -> None:
        dev = index.device
        self.index, self.ks, self.block = index, ks, block
        self.width = -(-index.n_items // block) * block
        self.scores = torch.empty(chunk, self.width, dtype=dtype, device=dev)
        self.hit_buf = torch.zeros(chunk, self.width, dtype=torch.bool, device=dev)
        disc = 1.0 / torch.log2(torch.arange(max(ks), device=dev, dtype=torch.float64) + 2.0)
        self.disc = disc
        self.idcg = torch.cumsum(disc, 0)
        self.sums = torch.zeros(2 * len(ks), dtype=torch.float64, device=dev)
        self.per_user = (torch.empty(len(index), 2 * len(ks), dtype=torch.float64, device=dev)
                         if per_user else None)

    def add(self, start: int, stop: int) -> None:
        """Metrics of rows ``start:stop`` whose scores are in ``self.scores[:stop - start]``
        (columns ≥ n_items are ignored)."""
        ix, n = self.index, stop - start
        s = self.scores[:n]
        if self.width > ix.n_items:
            s[:, ix.n_items:] = float("-inf")
        a, b = ix.train_ptr[start], ix.train_ptr[stop]
        s.index_put_((ix.train_row[a:b] - start, ix.train_item[a:b]),
                     torch.tensor(float("-inf"), dtype=s.dtype, device=s.device))
        top = _topk_indices(s, max(self.ks), self.block)                       # [n, K]
        a, b = ix.test_ptr[start], ix.test_ptr[stop]
        rows, items = ix.test_row[a:b] - start, ix.test_item[a:b]
        hit_buf = self.hit_buf[:n]
        hit_buf[rows, items] = True
        hits = hit_buf.gather(1, top).to(torch.float64)                        # [n, K]
        hit_buf[rows, items] = False
        n_test = ix.n_test[start:stop]
        gains = hits * self.disc
        out = []
        for k in self.ks:
            recall = hits[:, :k].sum(1) / n_test
            ndcg = gains[:, :k].sum(1) / self.idcg[n_test.clamp(max=k) - 1]
            out += [recall, ndcg]
        self.sums += torch.stack([v.sum() for v in out])
        if self.per_user is not None:
            self.per_user[start:stop] = torch.stack(out, dim=1)

    def result(self) -> dict[str, float]:
        vals = (self.sums / len(self.index)).tolist()
        return dict(zip(metric_names(self.ks), vals, strict=True))

    def per_user_result(self) -> PerUser:
        vals = self.per_user.to(torch.float32).cpu().numpy()
        names = metric_names(self.ks)
        return PerUser(self.index.users.cpu().numpy().astype(np.int64),
                       {n: vals[:, j].copy() for j, n in enumerate(names)})

    def output(self) -> dict[str, float] | tuple[dict[str, float], PerUser]:
        """The averages, and with ``per_user`` the :class:`PerUser` values too."""
        if self.per_user is None:
            return self.result()
        return self.result(), self.per_user_result()


def _chunk(chunk_size: int | None, index: EvalIndex) -> int:
    """Users per chunk: 128 on CPU (the score chunk stays cache-friendly), 4096 elsewhere."""
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    default = 128 if index.device.type == "cpu" else 4096
    return min(chunk_size or default, len(index))


def topk_metrics(scores: Tensor, train_items, test_items, ks: Sequence[int] = (20, 50),
                 chunk_size: int | None = None, index: EvalIndex | None = None,
                 per_user: bool = False) -> dict[str, float] | tuple[dict[str, float], PerUser]:
    """Recall@K and NDCG@K (SPEC §7) of a full score matrix ``scores`` ``[U, I]``.

    ``train_items`` / ``test_items``: per-user item lists aligned with the rows of ``scores``
    (a CSR tuple ``(indptr, indices)`` or a list of 1-D arrays, see :func:`as_csr`). Train items are masked, users without a test item are
    skipped, the rest averaged uniformly. ``scores`` is not modified. Returns
    ``{"recall@K": ..., "ndcg@K": ...}`` for every K in ``ks``; with ``per_user=True``
    ``(that dict, PerUser)``, the per-user values kept in the same pass (``users`` = row ids).
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be [U, I], got shape {tuple(scores.shape)}")
    if index is None:
        index = EvalIndex.from_lists(train_items, test_items, scores.shape[1], scores.device)
    ks = _check_ks(ks, index.n_items)
    chunk = _chunk(chunk_size, index)
    acc = _Accumulator(index, ks, chunk, scores.dtype, per_user=per_user)
    with torch.no_grad():
        for start in range(0, len(index), chunk):
            stop = min(start + chunk, len(index))
            acc.scores[:stop - start, :index.n_items] = scores[index.users[start:stop]]
            acc.add(start, stop)
    return acc.output()


def _model_device(model) -> torch.device:
    if isinstance(model, nn.Module):
        for t in model.parameters():
            return t.device
        for t in model.buffers():
            return t.device
    return torch.device(getattr(model, "device", "cpu"))


def evaluate(model, dataset, ks: Sequence[int] = (20, 50), chunk_size: int | None = None,
             users=None, index: EvalIndex | None = None,
             per_user: bool = False) -> dict[str, float] | tuple[dict[str, float], PerUser]:
    """Exact Recall@K / NDCG@K of ``model`` on ``dataset`` (SPEC §7), never holding ``[U, I]``.

    Users with ≥ 1 test item (optionally only ``users``) are scored in chunks; ``dataset``'s
    train items are masked, its test split is the target. Pass ``index``
    (``EvalIndex.from_dataset(dataset, device)``) to reuse the device arrays across epochs.
    Models with ``user_vectors`` and ``item_vectors`` (MF, SimpleX) are scored as
    ``user_vectors(chunk) @ item_vectors().T`` into a reused buffer (the item table is
    normalised once); anything else through ``model.score_users(users)``. Runs under
    ``torch.no_grad()`` and ``model.eval()``; the training flag is restored afterwards.

    Returns ``{"recall@20": ..., "ndcg@20": ..., "recall@50": ..., "ndcg@50": ...}`` (Python
    floats); with ``per_user=True`` ``(that dict, PerUser)``: every evaluated user's values,
    kept on the device in the same chunked pass (their means are the dict's averages).
    """
    if index is None:
        index = EvalIndex.from_dataset(dataset, _model_device(model), users)
    elif users is not None:
        raise ValueError("give either users or index (an EvalIndex already fixes its users)")
    elif index.n_items != dataset.n_items:
        raise ValueError(f"index has {index.n_items} items, dataset {dataset.n_items}")
    ks = _check_ks(ks, index.n_items)
    chunk = _chunk(chunk_size, index)
    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model.eval()
    try:
        with torch.no_grad():
            return _evaluate(model, index, ks, chunk, per_user)
    finally:
        if was_training:
            model.train()


def _evaluate(model, index: EvalIndex, ks: tuple[int, ...], chunk: int,
              per_user: bool = False) -> dict[str, float] | tuple[dict[str, float], PerUser]:
    fast = hasattr(model, "user_vectors") and hasattr(model, "item_vectors")
    items_t = None
    if fast:
        items = model.item_vectors()
        if items.shape[0] != index.n_items:
            raise ValueError(f"model has {items.shape[0]} items, data {index.n_items}")
        acc = _Accumulator(index, ks, chunk, items.dtype, per_user=per_user)
        items_t = torch.zeros(items.shape[1], acc.width, dtype=items.dtype, device=items.device)
        items_t[:, :index.n_items] = items.T                   # padded columns score 0 → −inf
    for start in range(0, len(index), chunk):
        stop = min(start + chunk, len(index))
        users = index.users[start:stop]
        if fast:
            torch.matmul(model.user_vectors(users), items_t, out=acc.scores[:stop - start])
        else:
            s = model.score_users(users)
            if start == 0:
                if s.shape[1] != index.n_items:
                    raise ValueError(f"score_users gave {s.shape[1]} items, data "
                                     f"{index.n_items}")
                acc = _Accumulator(index, ks, chunk, s.dtype, per_user=per_user)
            acc.scores[:stop - start, :index.n_items] = s
        acc.add(start, stop)
    return acc.output()
