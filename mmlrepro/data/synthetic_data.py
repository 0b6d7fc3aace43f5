"""Synthetic data: planted low-rank preferences with Zipf-like popularity, and ``synthetic:U:I`` specs.

For tests and demos [assumed generator, the project's own]; :func:`parse_synthetic` reads the
``synthetic[:USERS[:ITEMS]]`` dataset specs that the CLI and run configs accept.
"""

from __future__ import annotations

import inspect
import re

import numpy as np

from mmlrepro.data.dataset import Dataset, csr_from_rows
from mmlrepro.data.errors import DataError

SYNTHETIC_MAX_CELLS = 10**7  # users x items of a "synthetic:U:I" spec (dense U x I work arrays)


def synthetic(n_users: int = 500, n_items: int = 800, dim: int = 8, avg_items: int = 20,
              test_fraction: float = 0.2, popularity_skew: float = 1.0, seed: int = 0,
              name: str = "synthetic", temperature: float = 0.2) -> Dataset:
    """A small dataset with planted low-rank preferences and Zipf-like popularity, for tests/demos.

    Users and items get unit vectors ``p_u, q_i`` in ``R^dim`` (Gaussian, normalised); item ``i``
    has popularity ``π_i ∝ 1 / rank_i`` (ranks a random permutation). User ``u`` draws
    ``L_u = clip(Poisson(avg_items), 3, n_items // 2)`` distinct items from
    ``softmax_i(p_u·q_i / temperature + popularity_skew · log π_i)`` without replacement (Gumbel
    top-k). ``max(1, floor(test_fraction·L_u + 0.5))`` of them, at random, go to test, capped so
    that >= 2 stay in train. Deterministic given ``seed`` [assumed generator, project's own].
    """
    if min(n_users, dim, avg_items) < 1 or n_items < 6:
        raise ValueError("need n_users, dim, avg_items >= 1 and n_items >= 6")
    if not 0.0 < test_fraction < 1.0 or temperature <= 0 or popularity_skew < 0:
        raise ValueError("need 0 < test_fraction < 1, temperature > 0, popularity_skew >= 0")
    rng = np.random.default_rng(seed)
    p = rng.standard_normal((n_users, dim))
    q = rng.standard_normal((n_items, dim))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    log_pop = -np.log1p(rng.permutation(n_items))
    lengths = np.clip(rng.poisson(avg_items, n_users), 3, n_items // 2)
    keys = p @ q.T / temperature + popularity_skew * log_pop + rng.gumbel(size=(n_users, n_items))
    top = np.argsort(-keys, axis=1)[:, : lengths.max()]  # per user, items by decreasing key
    chosen = top[np.arange(lengths.max()) < lengths[:, None]]  # row-major: grouped by user
    users = np.repeat(np.arange(n_users), lengths)
    order = np.lexsort((rng.random(len(users)), users))  # shuffle within each user
    chosen = chosen[order]
    n_test = np.minimum(np.maximum(np.floor(test_fraction * lengths + 0.5), 1), lengths - 2)
    rank = np.arange(len(users)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    is_test = rank < np.repeat(n_test, lengths)
    train = csr_from_rows(users[~is_test], chosen[~is_test], n_users)
    test = csr_from_rows(users[is_test], chosen[is_test], n_users)
    return Dataset(name, n_users, n_items, *train, *test)


_SYNTHETIC_USAGE = "expected synthetic, synthetic:USERS or synthetic:USERS:ITEMS (e.g. synthetic:500:800)"


def parse_synthetic(spec: str) -> dict[str, int] | None:
    """The :func:`synthetic` sizes of a dataset spec, or None if ``spec`` is not one.

    Only exactly ``"synthetic"`` or a string starting ``"synthetic:"`` is a spec (a folder named
    ``synthetic_mine`` is not; write ``./synthetic`` for a folder named ``synthetic``):
    ``synthetic`` -> the defaults, ``synthetic:USERS``, ``synthetic:USERS:ITEMS``, each size a
    run of ASCII digits. Returns ``{"n_users": U, "n_items": I}``. Raises :class:`DataError`
    naming the spec for anything else: a size that is not a whole number, more than two sizes,
    ``USERS < 1``, ``ITEMS < 6`` (what :func:`synthetic` needs), or ``USERS x ITEMS`` over
    ``SYNTHETIC_MAX_CELLS`` (the generator works on dense ``USERS x ITEMS`` arrays).
    """
    if spec != "synthetic" and not spec.startswith("synthetic:"):
        return None
    fields = spec.split(":")[1:]
    if len(fields) > 2:
        raise DataError(f"dataset {spec!r}: {len(fields)} sizes; {_SYNTHETIC_USAGE}")
    for field in fields:
        if not re.fullmatch(r"[0-9]+", field):
            raise DataError(f"dataset {spec!r}: size {field!r} is not a whole number; "
                            f"{_SYNTHETIC_USAGE}")
    defaults = inspect.signature(synthetic).parameters
    sizes = {key: defaults[key].default for key in ("n_users", "n_items")}
    sizes.update(zip(("n_users", "n_items")[: len(fields)], map(int, fields), strict=True))
    if sizes["n_users"] < 1 or sizes["n_items"] < 6:
        raise DataError(f"dataset {spec!r}: needs USERS >= 1 and ITEMS >= 6, got "
                        f"{sizes['n_users']} users and {sizes['n_items']} items")
    if sizes["n_users"] * sizes["n_items"] > SYNTHETIC_MAX_CELLS:
        raise DataError(f"dataset {spec!r}: USERS x ITEMS = {sizes['n_users'] * sizes['n_items']:,}"
                        f" is over {SYNTHETIC_MAX_CELLS:,} (the generator's dense arrays)")
    return sizes
