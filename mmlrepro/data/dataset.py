"""The dataset type: train and test interactions as CSR arrays, and what is drawn from them (SPEC §2, §6).

:class:`Dataset` is frozen; its :attr:`~Dataset.fingerprint` (a content hash) and :func:`draw_id`
(the identity of numpy's random draws used by :meth:`Dataset.subsample_users` and
:meth:`Dataset.holdout`) enter every stored run key, so neither may change.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from mmlrepro.data.errors import DataError

SPLITS = ("train", "test")


@dataclass(frozen=True, eq=False)
class Dataset:
    """User-item interactions split into train and test, as CSR int64 arrays (SPEC §2).

    Row ``u`` of a split holds ``indices[indptr[u]:indptr[u + 1]]``: user ``u``'s item ids in file
    order. ``train_indptr`` and ``test_indptr`` have ``n_users + 1`` entries.
    """

    name: str
    n_users: int
    n_items: int
    train_indptr: np.ndarray
    train_indices: np.ndarray
    test_indptr: np.ndarray
    test_indices: np.ndarray

    def __post_init__(self) -> None:
        for field in ("train_indptr", "train_indices", "test_indptr", "test_indices"):
            object.__setattr__(self, field, np.asarray(getattr(self, field), dtype=np.int64))
        for split in SPLITS:
            indptr, indices = self.csr(split)
            if indptr.shape != (self.n_users + 1,) or indptr[0] != 0 or indptr[-1] != len(indices):
                raise ValueError(f"{self.name}: {split}_indptr is not a CSR index of "
                                 f"{self.n_users} users over {len(indices)} entries")
            if len(indices) and (indices.min() < 0 or indices.max() >= self.n_items):
                raise ValueError(f"{self.name}: {split} item ids outside [0, {self.n_items})")

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, users={self.n_users:,}, items={self.n_items:,}, "
                f"train={len(self.train_indices):,}, test={len(self.test_indices):,})")

    @functools.cached_property
    def fingerprint(self) -> str:
        """Content hash: the first 16 hex digits of the SHA-256 of ``n_users``, ``n_items`` and the
        four CSR arrays (little-endian int64 bytes, after a version tag). It ignores ``name`` and
        where the data came from, and changes with any interaction (or its order within a user).
        Computed once per object: the arrays are treated as immutable."""
        digest = hashlib.sha256(b"mmlrepro.Dataset/v1")
        digest.update(np.array([self.n_users, self.n_items], "<i8").tobytes())
        for field in ("train_indptr", "train_indices", "test_indptr", "test_indices"):
            digest.update(np.ascontiguousarray(getattr(self, field), "<i8").tobytes())
        return digest.hexdigest()[:16]

    def check_for_ranking(self, ks: Iterable[int] = (20, 50)) -> None:
        """Raise :class:`DataError` unless every cutoff ``K`` of ``ks`` is ``< n_items``.

        The evaluation ranks all items (SPEC §7), so with ``K >= n_items`` every item is in the
        top K and Recall@K / NDCG@K say nothing: such a dataset is rejected before any training
        [assumed]. A ``K`` that is not a positive integer is a ``ValueError``.
        """
        ks = list(ks)
        bad = [k for k in ks if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1]
        if bad:
            raise ValueError(f"K must be a positive integer, got {bad[0]!r}")
        if ks and max(ks) >= self.n_items:
            k = max(ks)
            raise DataError(f"dataset {self.name!r} has {self.n_items:,} items, too few for "
                            f"K = {k}: the evaluation ranks all items, so Recall@{k} and "
                            f"NDCG@{k} need more than K items")

    def csr(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(indptr, indices)`` of ``split`` ("train" or "test")."""
        if split == "train":
            return self.train_indptr, self.train_indices
        if split == "test":
            return self.test_indptr, self.test_indices
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")

    def train_users(self) -> np.ndarray:
        """User id of every train row, in row order (pairs with :meth:`train_items`)."""
        return _row_ids(self.train_indptr)

    def train_items(self) -> np.ndarray:
        """Item id of every train row (``== train_indices``)."""
        return self.train_indices

    def history_lengths(self) -> np.ndarray:
        """Number of train items of every user, ``[n_users]``."""
        return np.diff(self.train_indptr)

    def item_popularity(self) -> np.ndarray:
        """Number of train interactions of every item, ``[n_items]``."""
        return np.bincount(self.train_indices, minlength=self.n_items)

    def stats(self) -> dict[str, int | float]:
        """MML Table 1: users, items, interactions = train + test, and
        density = interactions / (users · items) (a float; the paper prints 5 decimals)."""
        train, test = len(self.train_indices), len(self.test_indices)
        return {
            "users": self.n_users,
            "items": self.n_items,
            "interactions": train + test,
            "train": train,
            "test": test,
            "density": (train + test) / (self.n_users * self.n_items),
        }

    def subsample_users(self, n: int, seed: int) -> Dataset:
        """Keep ``n`` users drawn uniformly (without replacement, ``np.random.default_rng(seed)``)
        among those with >= 1 test item, renumbered ``0..n-1`` in their original order. All items
        and ``n_items`` are kept (the quick profile)."""
        eligible = np.flatnonzero(np.diff(self.test_indptr) > 0)
        if not 1 <= n <= len(eligible):
            raise ValueError(f"n must be in [1, {len(eligible)}] (users with a test item), got {n}")
        users = np.sort(np.random.default_rng(seed).choice(eligible, size=n, replace=False))
        train = _take_rows(self.train_indptr, self.train_indices, users)
        test = _take_rows(self.test_indptr, self.test_indices, users)
        return Dataset(f"{self.name}-sub{n}", n, self.n_items, *train, *test)

    def holdout(self, fraction: float = 0.1, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Honest-mode split (SPEC §6): carve a validation set out of train.

        Every user with ``L >= 2`` train items gives up ``k = clip(floor(fraction·L + 0.5), 1, L-1)``
        of them (round half up, at least one, at least one left), chosen uniformly at random with
        ``np.random.default_rng(seed)``; users with fewer than 2 train items keep them all.

        Returns ``(fit, validation)``. Both have the reduced train split (file order kept);
        ``fit.test`` is the original test split (touched once, at the end) and ``validation.test``
        holds the held-out items (used for model selection).
        """
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        lengths = self.history_lengths()
        k = np.clip(np.floor(fraction * lengths + 0.5).astype(np.int64), 1, None)
        k = np.where(lengths >= 2, np.minimum(k, lengths - 1), 0)
        users = self.train_users()
        keys = np.random.default_rng(seed).random(len(users))
        order = np.lexsort((keys, users))  # rows grouped by user, random order inside each user
        rank = np.empty(len(users), np.int64)
        rank[order] = np.arange(len(users)) - self.train_indptr[users[order]]
        held = rank < k[users]
        fit_train = csr_from_rows(users[~held], self.train_indices[~held], self.n_users)
        val_test = csr_from_rows(users[held], self.train_indices[held], self.n_users)
        fit = Dataset(f"{self.name}-fit", self.n_users, self.n_items, *fit_train,
                      self.test_indptr, self.test_indices)
        validation = Dataset(f"{self.name}-validation", self.n_users, self.n_items, *fit_train,
                             *val_test)
        return fit, validation


@functools.cache
def draw_id() -> str:
    """The identity of the random draws of :meth:`Dataset.subsample_users` and
    :meth:`Dataset.holdout`: ``"pcg64:"`` + 8 hex digits of the SHA-256 of what numpy's
    ``default_rng`` gives on a probe that takes every path those draws take (``choice`` without
    replacement by tail shuffle, over 10,000 users, and by Floyd's algorithm; ``random``).

    numpy does not promise these streams across versions (NEP 19), and the quick profile's runs
    and every honest run see data drawn by them, so a run's key names the draw
    (:meth:`mmlrepro.config.RunConfig.data_fingerprint`): a numpy that draws otherwise gives
    other keys, so a stored run is never served for data it did not see. The draws are kept
    (not replaced by a numpy-free one) because 221 stored quick runs saw them [assumed].
    On numpy 1.26 to 2.4 it is ``pcg64:`` + :data:`PCG64_PROBE` (tests/test_store.py).
    """
    rng = np.random.default_rng(0)
    probe = [rng.choice(np.arange(20_000), size=1_000, replace=False),
             rng.choice(np.arange(1_000), size=10, replace=False), rng.random(16)]
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(a, a.dtype.newbyteorder("<")).tobytes()
                                     for a in probe))
    return "pcg64:" + digest.hexdigest()[:8]


def _row_ids(indptr: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))


def csr_from_rows(users: np.ndarray, items: np.ndarray, n_users: int) -> tuple[np.ndarray, ...]:
    """CSR of (user, item) rows; a stable sort keeps each user's items in their given order."""
    order = np.argsort(users, kind="stable")
    indptr = np.zeros(n_users + 1, np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    return indptr, np.ascontiguousarray(items[order], dtype=np.int64)


def _take_rows(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """CSR made of the given rows of ``(indptr, indices)``, in the order given."""
    lengths = indptr[rows + 1] - indptr[rows]
    new_indptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lengths, out=new_indptr[1:])
    offsets = np.arange(new_indptr[-1]) - np.repeat(new_indptr[:-1], lengths)
    return new_indptr, indices[np.repeat(indptr[rows], lengths) + offsets]
