"""Uniform negative sampling on the device (SPEC §4).

Negatives are drawn uniformly over **all** items, with replacement, positives not excluded,
fresh for every training row [code]; ``torch.randint`` on the device is distributionally
identical to the official sampler. Excluding the user's positives is an option (off when
reproducing): rejected draws are redrawn, vectorised over the rejected entries only.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["sample_negatives", "positive_keys", "is_positive"]


def positive_keys(indptr, indices, n_items: int, device: torch.device | str | None = None) -> Tensor:
    """Sorted int64 keys ``u·n_items + i`` of every positive (u, i) of a CSR, for membership
    tests with ``searchsorted``. Build once per dataset and pass as ``exclude``."""
    indptr = torch.as_tensor(indptr, dtype=torch.int64, device=device)
    indices = torch.as_tensor(indices, dtype=torch.int64, device=indptr.device)
    if indptr.ndim != 1 or len(indptr) < 1 or int(indptr[-1]) != len(indices):
        raise ValueError(f"not a CSR pair: indptr[-1] != len(indices) ({len(indices)})")
    rows = torch.repeat_interleave(torch.arange(len(indptr) - 1, device=indptr.device),
                                   indptr.diff())
    return torch.sort(rows * n_items + indices).values


def is_positive(keys: Tensor, users: Tensor, items: Tensor, n_items: int) -> Tensor:
    """Boolean ``items.shape``: whether (users[b], items[b, ...]) is in ``keys``
    (from :func:`positive_keys`). ``users`` broadcasts against ``items`` from the left."""
    if len(keys) == 0:
        return torch.zeros_like(items, dtype=torch.bool)
    u = users.reshape(users.shape + (1,) * (items.ndim - users.ndim))
    q = u * n_items + items
    pos = torch.searchsorted(keys, q).clamp(max=len(keys) - 1)
    return keys[pos] == q


def sample_negatives(n_rows: int, n_negatives: int, n_items: int, *,
                     device: torch.device | str, generator: torch.Generator | None = None,
                     users: Tensor | None = None, exclude=None, max_rounds: int = 50) -> Tensor:
    """Uniform negatives ``LongTensor[n_rows, n_negatives]`` in ``[0, n_items)``, with
    replacement (SPEC §4).

    ``exclude`` (optional; needs ``users`` ``[n_rows]``): the positives, either a CSR pair
    ``(indptr, indices)`` or the keys of :func:`positive_keys` (faster: build them once). Drawn
    positives are redrawn for up to ``max_rounds`` rounds, each round touching only the entries
    still rejected; entries of a user who has (almost) every item may remain after that.
    """
    if n_rows < 0 or n_negatives < 1 or n_items < 1:
        raise ValueError(f"need n_rows >= 0, n_negatives >= 1, n_items >= 1; got {n_rows}, "
                         f"{n_negatives}, {n_items}")
    neg = torch.randint(n_items, (n_rows, n_negatives), device=device, generator=generator)
    if exclude is None:
        return neg
    if users is None or users.shape != (n_rows,):
        raise ValueError(f"exclude needs users of shape ({n_rows},)")
    keys = exclude if isinstance(exclude, Tensor) else positive_keys(*exclude, n_items, device)
    users = users.to(neg.device)
    bad = is_positive(keys, users, neg, n_items).nonzero()
    for _ in range(max_rounds):
        if len(bad) == 0:
            break
        r, c = bad.unbind(1)
        fresh = torch.randint(n_items, (len(r),), device=neg.device, generator=generator)
        neg[r, c] = fresh
        bad = bad[is_positive(keys, users[r], fresh, n_items)]
    return neg
