"""Recall/NDCG@K (SPEC §7) against hand-worked values and a brute-force numpy ranking."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from mmlrepro.data import synthetic
from mmlrepro.metrics import (
    EvalIndex,
    PerUser,
    _topk_indices,
    as_csr,
    evaluate,
    load_per_user,
    save_per_user,
    topk_metrics,
)
from mmlrepro.models import MF, SimpleX


def brute_force(scores: np.ndarray, train: list, test: list, ks) -> dict:
    """Full argsort per user in a plain loop (reference only)."""
    rows = brute_force_rows(scores, train, test, ks)
    names = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")]
    return dict(zip(names, np.mean(rows, axis=0), strict=True))


def brute_force_rows(scores: np.ndarray, train: list, test: list, ks) -> np.ndarray:
    """``[users with a test item, 2 * len(ks)]``: each user's recall@k, ndcg@k (plain loop)."""
    rows = []
    for u in range(scores.shape[0]):
        t = set(test[u].tolist())
        if not t:
            continue
        s = scores[u].astype(np.float64).copy()
        s[train[u]] = -np.inf
        ranked = np.argsort(-s, kind="stable")
        row = []
        for k in ks:
            hits = [r for r in range(k) if ranked[r] in t]
            dcg = sum(1 / math.log2(r + 2) for r in hits)
            idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(t))))
            row += [len(hits) / len(t), dcg / idcg]
        rows.append(row)
    return np.array(rows)


def random_split(n_users: int, n_items: int, seed: int):
    """Random disjoint train/test lists with users having 0, 1 and > 50 test items."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for u in range(n_users):
        perm = rng.permutation(n_items)
        n_test = [0, 1, 2, 60, int(rng.integers(0, 30))][u % 5]
        n_train = int(rng.integers(0, 80))
        test.append(np.sort(perm[:n_test]))
        train.append(perm[n_test:n_test + n_train])
    return train, test


def assert_close(a: dict, b: dict, tol=1e-9) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=tol), k


def test_hand_worked_single_user():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5]])
    # train {0} masked -> ranking 1, 2, 3, 4; test {2, 4}
    out = topk_metrics(scores, [np.array([0])], [np.array([2, 4])], ks=(1, 3))
    assert out["recall@1"] == 0.0 and out["ndcg@1"] == 0.0
    assert out["recall@3"] == pytest.approx(0.5)
    g = 1 / math.log2(3)
    assert out["ndcg@3"] == pytest.approx(g / (1 + g))
    assert list(out) == ["recall@1", "ndcg@1", "recall@3", "ndcg@3"]


def test_users_without_test_items_are_skipped():
    scores = torch.tensor([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1]])
    out = topk_metrics(scores, [np.array([], int), np.array([], int)],
                       [np.array([1]), np.array([], int)], ks=(1,))
    assert out == {"recall@1": 1.0, "ndcg@1": 1.0}          # the second user does not count


@pytest.mark.parametrize("n_items", [120, 7000])          # plain top-K / blocked top-K paths
def test_against_brute_force(n_items):
    n_users = 45
    train, test = random_split(n_users, n_items, seed=n_items)
    scores = torch.from_numpy(np.random.default_rng(1).standard_normal((n_users, n_items)))
    before = scores.clone()
    ref = brute_force(scores.numpy(), train, test, (20, 50))
    out = topk_metrics(scores, train, test, ks=(20, 50), chunk_size=8)
    assert_close(out, ref)
    assert torch.equal(scores, before)                        # input not modified
    assert_close(topk_metrics(scores, as_csr(train), as_csr(test)), ref)   # CSR input
    assert 0 < out["recall@50"] < 1 and out["recall@20"] <= out["recall@50"]


def test_float32_scores_match_brute_force():
    train, test = random_split(30, 500, seed=3)
    scores = torch.rand(30, 500)
    assert_close(topk_metrics(scores, train, test, ks=(5, 20)),
                 brute_force(scores.numpy(), train, test, (5, 20)), tol=1e-6)


def test_blocked_topk_is_exact():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(17, 4 * 300, generator=g)
    s[:, -5:] = float("-inf")
    for k in (1, 7, 50):
        assert torch.equal(_topk_indices(s, k, block=4), s.topk(k, dim=1).indices)


def test_bad_input_raises():
    scores = torch.rand(2, 4)
    with pytest.raises(ValueError, match="ks"):
        topk_metrics(scores, [[0], [1]], [[2], [3]], ks=(5,))
    with pytest.raises(ValueError, match="no user"):
        topk_metrics(scores, [[0], [1]], [[], []], ks=(1,))
    with pytest.raises(ValueError, match="outside"):
        topk_metrics(scores, [[0], [9]], [[2], [3]], ks=(1,))
    with pytest.raises(ValueError, match="expected 2"):
        topk_metrics(scores, [[0], [1]], [[2]], ks=(1,))
    with pytest.raises(ValueError, match="CSR pair"):
        topk_metrics(scores, (np.array([0, 5]), np.array([1])), [[2], [3]], ks=(1,))


@pytest.fixture(scope="module")
def data():
    return synthetic(300, 700, seed=1)


def full_metrics(model, ds, ks=(20, 50)):
    with torch.no_grad():
        scores = model.score_users(torch.arange(ds.n_users))
    return topk_metrics(scores, (ds.train_indptr, ds.train_indices),
                        (ds.test_indptr, ds.test_indices), ks)


def test_evaluate_mf_equals_full_matrix(data):
    torch.manual_seed(0)
    model = MF(data.n_users, data.n_items, dim=16, init_std=1.0)
    assert model.training
    ref = full_metrics(model, data)
    assert model.training
    out = evaluate(model, data)
    assert model.training                                      # flag restored
    assert_close(out, ref, tol=1e-6)
    assert_close(evaluate(model, data, chunk_size=7), ref, tol=1e-6)
    index = EvalIndex.from_dataset(data, "cpu")
    assert_close(evaluate(model, data, index=index), ref, tol=1e-6)
    model.eval()
    evaluate(model, data)
    assert not model.training


def test_evaluate_simplex_and_score_users_objects(data):
    torch.manual_seed(0)
    model = SimpleX(data.n_users, data.n_items, data.train_indptr, data.train_indices, dim=16,
                    aggregator="attention", gate=0.7, init_std=1.0)
    ref = full_metrics(model, data)
    assert_close(evaluate(model, data, chunk_size=50), ref, tol=1e-6)

    class Table:                                    # anything with score_users (EASE, iALS)
        def __init__(self, s):
            self.s = s

        def score_users(self, users):
            return self.s[users]

    scores = torch.rand(data.n_users, data.n_items, generator=torch.Generator().manual_seed(2))
    ref = topk_metrics(scores, (data.train_indptr, data.train_indices),
                       (data.test_indptr, data.test_indices))
    assert_close(evaluate(Table(scores), data, chunk_size=64), ref, tol=1e-6)


def test_evaluate_user_subset(data):
    torch.manual_seed(0)
    model = MF(data.n_users, data.n_items, dim=8, init_std=1.0)
    users = np.arange(0, data.n_users, 3)
    with torch.no_grad():
        scores = model.score_users(torch.from_numpy(users))
    tr = [data.train_indices[data.train_indptr[u]:data.train_indptr[u + 1]] for u in users]
    te = [data.test_indices[data.test_indptr[u]:data.test_indptr[u + 1]] for u in users]
    assert_close(evaluate(model, data, users=users), topk_metrics(scores, tr, te), tol=1e-6)


# --- per-user values (issue 16) ---------------------------------------------------------------

def test_per_user_matches_brute_force_and_means():
    n_users, n_items = 45, 7000
    train, test = random_split(n_users, n_items, seed=5)          # every 5th user: no test item
    scores = torch.from_numpy(np.random.default_rng(2).standard_normal((n_users, n_items)))
    out, pu = topk_metrics(scores, train, test, chunk_size=8, per_user=True)
    assert out == topk_metrics(scores, train, test, chunk_size=8)     # same averages, bit for bit
    np.testing.assert_array_equal(pu.users, [u for u in range(n_users) if len(test[u])])
    assert pu.users.dtype == np.int64 and len(pu) == 36
    ref = brute_force_rows(scores.numpy(), train, test, (20, 50))
    assert list(pu.values) == ["recall@20", "ndcg@20", "recall@50", "ndcg@50"]
    for j, name in enumerate(pu.values):
        v = pu.values[name]
        assert v.dtype == np.float32 and v.shape == (36,)
        np.testing.assert_allclose(v, ref[:, j], atol=1e-6)
        assert float(v.mean()) == pytest.approx(out[name], rel=1e-6)
    assert (pu.values["recall@20"] > 0).any() and (pu.values["recall@20"] == 0).any()


def test_evaluate_per_user(data):
    torch.manual_seed(0)
    model = MF(data.n_users, data.n_items, dim=16, init_std=1.0)
    plain = evaluate(model, data, chunk_size=37)
    assert isinstance(plain, dict) and all(type(v) is float for v in plain.values())
    out, pu = evaluate(model, data, chunk_size=37, per_user=True)
    assert out == plain
    assert isinstance(pu, PerUser)
    np.testing.assert_array_equal(pu.users, np.flatnonzero(np.diff(data.test_indptr) > 0))
    for name, v in pu.values.items():
        assert len(v) == len(pu.users)
        assert float(v.mean()) == pytest.approx(out[name], rel=1e-6)
    with torch.no_grad():                                         # against the full matrix
        scores = model.score_users(torch.arange(data.n_users))
    ref = brute_force_rows(scores.numpy(), [data.train_indices[data.train_indptr[u]:
                                                                data.train_indptr[u + 1]]
                                            for u in range(data.n_users)],
                           [data.test_indices[data.test_indptr[u]:data.test_indptr[u + 1]]
                            for u in range(data.n_users)], (20, 50))
    np.testing.assert_allclose(np.stack(list(pu.values.values()), 1), ref, atol=1e-5)
    users = np.arange(data.n_users - 1, -1, -4)                   # a subset, in its own order
    sub, pu_sub = evaluate(model, data, users=users, per_user=True)
    np.testing.assert_array_equal(pu_sub.users, users[np.diff(data.test_indptr)[users] > 0])
    pos = np.searchsorted(pu.users, pu_sub.users)
    np.testing.assert_allclose(pu_sub.values["ndcg@20"], pu.values["ndcg@20"][pos], atol=1e-6)

    class Table:                                               # the score_users path as well
        def score_users(self, u):
            return scores[u]

    out_t, pu_t = evaluate(Table(), data, chunk_size=64, per_user=True)
    assert float(pu_t.values["recall@50"].mean()) == pytest.approx(out_t["recall@50"], rel=1e-6)


def realistic_per_user(n: int, seed: int = 0) -> PerUser:
    """Per-user metrics shaped like a real run: ~60 % zeros at K = 20, recall@20 ≈ 0.15,
    values h/|T| and DCG/IDCG computed from a simulated hit matrix, ~4 % of ids skipped."""
    rng = np.random.default_rng(seed)
    quality = rng.beta(0.4, 3.0, n)
    hits = rng.random((n, 50)) < quality[:, None] / np.sqrt(np.arange(50) + 1.0)
    n_test = np.maximum(hits.sum(1), rng.geometric(0.12, n))
    disc = 1 / np.log2(np.arange(50) + 2.0)
    idcg = np.cumsum(disc)
    values = {}
    for k in (20, 50):
        values[f"recall@{k}"] = (hits[:, :k].sum(1) / n_test).astype(np.float32)
        values[f"ndcg@{k}"] = ((hits[:, :k] * disc[:k]).sum(1)
                               / idcg[np.minimum(n_test, k) - 1]).astype(np.float32)
    users = np.flatnonzero(rng.random(2 * n) < 0.96)[:n].astype(np.int64)
    return PerUser(users, values)


def test_save_load_per_user_roundtrip_and_size(tmp_path):
    pu = realistic_per_user(30_000)
    assert 0.5 < (pu.values["recall@20"] == 0).mean() < 0.7       # "most zeros"
    path = tmp_path / "run.per_user.npz"
    save_per_user(pu, path)
    size = path.stat().st_size
    assert size <= 150_000, size                                  # measured: about 97 KB
    back = load_per_user(path)
    np.testing.assert_array_equal(back.users, pu.users)
    assert back.users.dtype == np.int64 and list(back.values) == list(pu.values)
    for name, v in pu.values.items():
        assert back.values[name].dtype == np.float32
        np.testing.assert_allclose(back.values[name], v, atol=1 / 131070 + 1e-7, rtol=0)
        assert float(back.values[name].mean()) == pytest.approx(float(v.mean()), abs=1e-5)
    odd = PerUser(np.array([7, 3, 3_000_000], np.int64), {"ndcg@20": np.array([0, .5, 1], "f4")})
    save_per_user(odd, tmp_path / "odd")                          # any order, exact file name
    back = load_per_user(tmp_path / "odd")
    np.testing.assert_array_equal(back.users, odd.users)
    np.testing.assert_allclose(back.values["ndcg@20"], odd.values["ndcg@20"], atol=1e-5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        save_per_user(PerUser(np.arange(2), {"x": np.array([0.5, np.nan])}), tmp_path / "nan")


def test_per_user_file_keeps_the_early_stop_values_beside_the_selected_ones(tmp_path):
    pu, earlier = realistic_per_user(30_000), realistic_per_user(30_000, seed=1)
    both = dataclasses.replace(pu, early_stop=PerUser(pu.users, earlier.values))
    save_per_user(both, tmp_path / "n.npz")
    assert (tmp_path / "n.npz").stat().st_size <= 2 * 150_000
    back = load_per_user(tmp_path / "n.npz")
    np.testing.assert_array_equal(back.early_stop.users, pu.users)
    for name in pu.values:
        np.testing.assert_allclose(back.values[name], pu.values[name], atol=1e-5)
        np.testing.assert_allclose(back.early_stop.values[name], earlier.values[name], atol=1e-5)
    save_per_user(pu, tmp_path / "plain.npz")
    assert load_per_user(tmp_path / "plain.npz").early_stop is None
    other_users = dataclasses.replace(pu, early_stop=PerUser(pu.users[::-1].copy(), earlier.values))
    with pytest.raises(ValueError, match="same users"):
        save_per_user(other_users, tmp_path / "bad.npz")
