"""Per-user values: each evaluated user's Recall/NDCG@K of one evaluation, and their files (issue 16).

:class:`PerUser` holds them (the paired tests of :mod:`mmlrepro.stats` read them);
:func:`save_per_user` / :func:`load_per_user` store them compactly as ``.npz`` (uint16 fixed
point, users as deltas, a ``meta`` the store checks against the run's record). Numpy only:
reading the store does not import torch. :func:`mmlrepro.metrics.evaluate` computes them.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["PER_USER_FORMAT", "QUANT", "PerUser", "PerUserError", "load_per_user", "save_per_user"]

QUANT = 65535       # per-user files: a value v in [0, 1] is stored as the uint16 round(v * QUANT)
PER_USER_FORMAT = 2  # per-user files with ``meta`` (key, epoch, means; store schema 4)


class PerUserError(ValueError):
    """A per-user file that cannot be read or does not hold what it claims; the message names it."""


@dataclass(frozen=True)
class PerUser:
    """Each evaluated user's metrics: ``values[name][j]`` is user ``users[j]``'s value.

    ``users`` (int64): the evaluated users (≥ 1 test item) in evaluation order (the dataset's
    user order, or the order of an explicit ``users`` subset). ``values``: one float32 array
    per metric name (``"recall@20"``, ``"ndcg@20"``, ...), aligned with ``users``; its mean is
    the averaged metric. ``epoch``: the epoch whose evaluation they are (None: not said).

    ``early_stop``: on a ``paper`` ("N") run, the same users' values at the epoch its
    early-stopped ("Y") twin selects when that is another epoch (its selection stopped earlier;
    :func:`mmlrepro.train.train`), so the twin read off this run's history has per-user values
    too; ``None`` otherwise. Its ``epoch`` is that epoch and its ``patience`` the twin's
    patience it was kept for (``patience`` is not in the "N" run's key, so a twin of another
    patience selects another epoch: :func:`mmlrepro.selection.early_stop_from_history` checks).
    ``key``: the run the values belong to, as read from a file (:func:`load_per_user`).
    """

    users: np.ndarray
    values: dict[str, np.ndarray]
    early_stop: PerUser | None = None
    epoch: int | None = None
    patience: int | None = None
    key: str | None = None

    def __len__(self) -> int:
        return len(self.users)

    def means(self) -> dict[str, float]:
        """Each metric's mean over the users (float64)."""
        return {name: float(np.mean(np.asarray(v, np.float64))) for name, v in self.values.items()}


def save_per_user(per_user: PerUser, path: str | Path, key: str | None = None) -> None:
    """Store ``per_user`` at ``path`` (exactly that name) as a compressed ``.npz``.

    Layout: ``names`` (unicode array of the metric names); ``values`` uint16 ``[n_users,
    n_metrics]``, fixed point q = round(v · 65535) (every metric lies in [0, 1]; absolute error
    ≤ 1/131070 ≈ 7.6e-6, so a stored mean stays within ~1e-5 of the exact one, where float16
    at the same size, step 2⁻¹¹ near 1, shifted means by ~1e-4 relative, enough to flip a
    fourth decimal); ``user_deltas`` int64 = ``diff(users, prepend=0)`` (mostly 1s for the usual
    ascending ids, so they compress to almost nothing; any order round-trips). About 97 KB for
    30,000 users and 4 metrics of realistic values (tests/test_metrics.py measures it).
    ``per_user.early_stop``, when set, is stored as ``early_stop_values`` of the same layout
    (same users and names), doubling the size. ``meta`` (a JSON string, store schema 4): the
    run's ``key``, the ``epoch``, each metric's ``means`` (of the stored, quantised values),
    and for the early-stop set its ``epoch``, ``patience`` and ``means``; the store checks them
    against the run's record on every read (:meth:`mmlrepro.results.ResultsStore.per_user`).
    """
    names = list(per_user.values)
    arrays = {"values": _quantised(per_user, names)}
    meta: dict = {"format": PER_USER_FORMAT, "key": key if key is not None else per_user.key,
                  "epoch": per_user.epoch, "means": _means(arrays["values"], names), "early_stop": None}
    if per_user.early_stop is not None:
        if not np.array_equal(per_user.early_stop.users, per_user.users) or list(per_user.early_stop.values) != names:
            raise ValueError("the early-stop per-user values must cover the same users and metrics")
        arrays["early_stop_values"] = _quantised(per_user.early_stop, names)
        meta["early_stop"] = {"epoch": per_user.early_stop.epoch, "patience": per_user.early_stop.patience,
                              "means": _means(arrays["early_stop_values"], names)}
    deltas = np.diff(np.asarray(per_user.users, np.int64), prepend=np.int64(0))
    with open(path, "wb") as f:
        np.savez_compressed(f, names=np.array(names), user_deltas=deltas, meta=np.array(json.dumps(meta)),
                            **arrays)


def _means(quantised: np.ndarray, names: list[str]) -> dict[str, float]:
    """The mean of each metric's stored values, as :func:`load_per_user` reads them back."""
    return {n: float(np.mean((quantised[:, j] / QUANT).astype(np.float32), dtype=np.float64))
            for j, n in enumerate(names)}


def _quantised(per_user: PerUser, names: list[str]) -> np.ndarray:
    """``[n_users, n_metrics]`` uint16 fixed point of :func:`save_per_user`."""
    values = np.stack([np.asarray(per_user.values[n], np.float64) for n in names], axis=1)
    if not np.all((values >= 0) & (values <= 1)):             # also refuses NaN
        raise ValueError("per-user values must lie in [0, 1] (no NaN) to be stored")
    return np.round(values * QUANT).astype(np.uint16)


def load_per_user(path: str | Path) -> PerUser:
    """Read a :func:`save_per_user` file back: values q / 65535 as float32, users int64 (and the
    early-stop values, where the file has them), with the ``key``, ``epoch`` and ``patience``
    of its ``meta`` (None in a file written before store schema 4, which has no ``meta``).

    :class:`PerUserError` naming ``path`` when the file is not such a file (garbage, truncated,
    pickled objects, arrays missing or of the wrong shape) or its values do not have the means
    its ``meta`` says."""
    try:
        with np.load(path, allow_pickle=False) as z:
            names = [str(n) for n in z["names"]]
            users = np.cumsum(z["user_deltas"], dtype=np.int64)
            raw = {name: z[name] for name in ("values", "early_stop_values") if name in z.files}
            meta = json.loads(str(z["meta"])) if "meta" in z.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise PerUserError(f"{path}: not a per-user file ({err.__class__.__name__}: "
                           f"{' '.join(str(err).split())[:120]})") from None
    if "values" not in raw or any(a.dtype != np.uint16 or a.shape != (len(users), len(names))
                                  for a in raw.values()):
        raise PerUserError(f"{path}: not a per-user file (values missing or not {len(users)} x {len(names)} uint16)")
    if meta is not None and not isinstance(meta, dict):
        raise PerUserError(f"{path}: its meta is not a JSON object")
    meta = meta or {}
    es_meta = meta.get("early_stop") or {}
    for name, stored in (("values", meta.get("means")), ("early_stop_values", es_meta.get("means"))):
        if name in raw and stored is not None and not _close(_means(raw[name], names), stored, 1e-9):
            raise PerUserError(f"{path}: its {name} do not have the means its meta says (edited or corrupt)")

    def per_user(values: np.ndarray) -> dict[str, np.ndarray]:
        return {n: (values[:, j] / QUANT).astype(np.float32) for j, n in enumerate(names)}

    early_stop = (PerUser(users, per_user(raw["early_stop_values"]), epoch=es_meta.get("epoch"),
                          patience=es_meta.get("patience"))
                  if "early_stop_values" in raw else None)
    return PerUser(users, per_user(raw["values"]), early_stop, epoch=meta.get("epoch"), key=meta.get("key"))


def _close(a: dict[str, float], b: object, tol: float) -> bool:
    """Whether the metric means ``a`` and ``b`` name the same metrics, each within ``tol``."""
    return (isinstance(b, dict) and set(a) == set(b)
            and all(isinstance(b[n], int | float) and abs(a[n] - b[n]) <= tol for n in a))
