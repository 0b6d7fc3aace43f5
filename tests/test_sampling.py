"""Uniform negative sampling (SPEC §4)."""

import numpy as np
import pytest
import torch

from mmlrepro.data import synthetic
from mmlrepro.sampling import is_positive, positive_keys, sample_negatives


def test_shape_range_and_seed():
    g = torch.Generator().manual_seed(0)
    neg = sample_negatives(300, 7, 11, device="cpu", generator=g)
    assert neg.shape == (300, 7) and neg.dtype == torch.int64
    assert neg.min() >= 0 and neg.max() <= 10 and len(neg.unique()) == 11
    again = sample_negatives(300, 7, 11, device="cpu", generator=torch.Generator().manual_seed(0))
    assert torch.equal(neg, again)


def test_roughly_uniform():
    n_items, n = 50, 200_000
    neg = sample_negatives(n // 100, 100, n_items, device="cpu",
                           generator=torch.Generator().manual_seed(1))
    counts = np.bincount(neg.reshape(-1).numpy(), minlength=n_items)
    expected = n / n_items
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 100          # 49 dof: mean 49, P(chi2 > 100) ≈ 2e-5


def test_positives_not_excluded_by_default():
    # one user with every item but one as positive: default sampling still draws them
    neg = sample_negatives(1, 1000, 10, device="cpu", generator=torch.Generator().manual_seed(2))
    assert len(neg.unique()) == 10


def test_is_positive_matches_sets():
    ds = synthetic(40, 60, seed=3)
    keys = positive_keys(ds.train_indptr, ds.train_indices, ds.n_items)
    users = torch.arange(40).repeat_interleave(60)
    items = torch.arange(60).repeat(40)
    got = is_positive(keys, users, items, ds.n_items)
    sets = [set(ds.train_indices[ds.train_indptr[u]:ds.train_indptr[u + 1]].tolist())
            for u in range(40)]
    ref = torch.tensor([i in sets[u] for u, i in zip(users.tolist(), items.tolist(), strict=True)])
    assert torch.equal(got, ref) and ref.sum() == len(ds.train_indices)


@pytest.mark.parametrize("as_keys", [False, True])
def test_exclusion_really_excludes(as_keys):
    # user 0 owns 8 of 10 items, user 1 owns none, user 2 owns item 0 only
    indptr = np.array([0, 8, 8, 9])
    indices = np.array([0, 1, 2, 3, 4, 5, 6, 7, 0])
    exclude = positive_keys(indptr, indices, 10) if as_keys else (indptr, indices)
    users = torch.tensor([0, 1, 2, 0] * 100)
    neg = sample_negatives(400, 50, 10, device="cpu", generator=torch.Generator().manual_seed(4),
                           users=users, exclude=exclude)
    u0 = neg[users == 0]
    assert set(u0.unique().tolist()) == {8, 9}
    assert set(neg[users == 1].unique().tolist()) == set(range(10))
    assert set(neg[users == 2].unique().tolist()) == set(range(1, 10))
    with pytest.raises(ValueError, match="users"):
        sample_negatives(3, 2, 10, device="cpu", exclude=exclude)


def test_bad_arguments():
    with pytest.raises(ValueError):
        sample_negatives(3, 0, 10, device="cpu")
    with pytest.raises(ValueError):
        sample_negatives(3, 2, 0, device="cpu")
