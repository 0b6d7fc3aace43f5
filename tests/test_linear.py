"""EASE and iALS, biased and debiased (mmlrepro.linear): naive numpy references on small data."""

import json
import math

import numpy as np
import pytest
import torch

from mmlrepro.data import Dataset, synthetic
from mmlrepro.linear import (
    EASE,
    IALS,
    LinearConfig,
    als_reg,
    als_solve,
    ease,
    gram_matrix,
    ials,
    ials_objective,
    linear_grid,
    reduce_items,
    run_linear,
    save_linear_result,
)
from mmlrepro.linear.ials_model import _row_batches
from mmlrepro.metrics import evaluate


@pytest.fixture(scope="module")
def small() -> Dataset:
    return synthetic(120, 60, dim=4, avg_items=8, seed=3)


@pytest.fixture(scope="module")
def medium() -> Dataset:
    return synthetic(400, 300, seed=1)


def dense_train(ds: Dataset) -> np.ndarray:
    indptr, indices = ds.csr("train")
    x = np.zeros((ds.n_users, ds.n_items))
    x[np.repeat(np.arange(ds.n_users), np.diff(indptr)), indices] = 1.0
    return x


def naive_ease(x: np.ndarray, lam: float, tau: float = 0.0) -> np.ndarray:
    """Column by column: ridge regression of the target column on the other columns of X."""
    n = x.shape[1]
    t = x + tau * (1.0 - x)
    b = np.zeros((n, n))
    for j in range(n):
        keep = np.arange(n) != j
        xj = x[:, keep]
        b[keep, j] = np.linalg.solve(xj.T @ xj + lam * np.eye(n - 1), xj.T @ t[:, j])
    return b


# --------------------------------------------------------------------------------------------
# EASE


def test_gram_matrix_counts_co_occurrences():
    # users: {0, 1}, {1, 2}, {1}  ->  XᵀX by hand
    ds = Dataset("toy", 3, 3, np.array([0, 2, 4, 5]), np.array([0, 1, 1, 2, 1]),
                 np.array([0, 1, 2, 3]), np.array([2, 0, 0]))
    expected = np.array([[1, 1, 0], [1, 3, 1], [0, 1, 1]], dtype=np.float32)
    np.testing.assert_array_equal(gram_matrix(ds).numpy(), expected)


def test_ease_equals_naive_inverse(small):
    x = dense_train(small)
    p = np.linalg.inv(x.T @ x + 7.0 * np.eye(small.n_items))
    expected = np.eye(small.n_items) - p / np.diag(p)  # I − P·diag(1/diag P)
    model = ease(small, 7.0, dtype=torch.float64)
    np.testing.assert_allclose(model.weights.numpy(), expected, atol=1e-12)
    assert np.all(np.diag(model.weights.numpy()) == 0.0)
    np.testing.assert_allclose(model.weights.numpy(), naive_ease(x, 7.0), atol=1e-12)
    model32 = ease(small, 7.0)
    assert model32.weights.dtype == torch.float32
    np.testing.assert_allclose(model32.weights.numpy(), expected, atol=2e-5)


def test_ease_scores_are_history_times_weights(small):
    model = ease(small, 5.0, dtype=torch.float64)
    users = torch.tensor([3, 0, 17, 3])
    expected = dense_train(small)[users.numpy()] @ model.weights.numpy()
    np.testing.assert_allclose(model.score_users(users).numpy(), expected, atol=1e-12)
    assert model.n_items == small.n_items


@pytest.mark.parametrize("tau", [0.02, 0.3])
def test_debiased_ease_equals_naive_dense_objective(small, tau):
    """min ‖X + τ⁺(J − X) − XB‖² + λ‖B‖², diag(B) = 0, solved column by column in numpy."""
    model = ease(small, 4.0, dtype=torch.float64, tau_plus=tau)
    np.testing.assert_allclose(model.weights.numpy(), naive_ease(dense_train(small), 4.0, tau),
                               atol=1e-11)
    assert np.all(np.diag(model.weights.numpy()) == 0.0)


def test_debiased_ease_with_zero_prior_is_biased_ease(small):
    biased = ease(small, 4.0, dtype=torch.float64).weights
    zero = ease(small, 4.0, dtype=torch.float64, tau_plus=0.0).weights
    assert torch.equal(biased, zero)


def test_debiased_ease_rescales_biased_scores_per_item(small):
    """Module docstring: on unobserved entries ŝ_τ = (1 − τ⁺ + τ⁺(Pc)_j)·ŝ_0 + τ⁺(XPc)_u."""
    tau, lam = 0.2, 4.0
    x = dense_train(small)
    p = np.linalg.inv(x.T @ x + lam * np.eye(small.n_items))
    pc = p @ x.sum(0)
    s0 = x @ ease(small, lam, dtype=torch.float64).weights.numpy()
    s_tau = x @ ease(small, lam, dtype=torch.float64, tau_plus=tau).weights.numpy()
    expected = (1 - tau + tau * pc)[None, :] * s0 + tau * (x @ pc)[:, None]
    unobserved = x == 0
    np.testing.assert_allclose(s_tau[unobserved], expected[unobserved], atol=1e-10)


@pytest.mark.parametrize("lam", [0.0, -1.0, float("nan"), float("inf"), "80", True])
def test_ease_bad_lambda_raises_naming_lam(small, lam):
    with pytest.raises(ValueError, match="lam"):
        ease(small, lam)


@pytest.mark.parametrize("tau", [-0.1, 1.0, float("nan")])
def test_ease_bad_tau_raises(small, tau):
    with pytest.raises(ValueError, match="tau_plus"):
        ease(small, 10.0, tau_plus=tau)


# --------------------------------------------------------------------------------------------
# iALS


def naive_user_solve(x: np.ndarray, y: np.ndarray, alpha: float, reg: float, nu: float,
                     tau: float, u: int) -> np.ndarray:
    c = 1.0 + alpha * x[u]
    p = x[u] + tau * (1.0 - x[u])
    r = reg * (x.shape[1] + alpha * x[u].sum()) ** nu
    a = y.T @ (c[:, None] * y) + r * np.eye(y.shape[1])
    return np.linalg.solve(a, y.T @ (c * p))


@pytest.mark.parametrize("tau", [0.0, 0.1])
def test_als_user_solve_equals_naive_per_user_solve(small, tau):
    alpha, reg, nu = 3.0, 0.05, 0.5
    x = dense_train(small)
    y = np.random.default_rng(0).standard_normal((small.n_items, 5))
    indptr = torch.from_numpy(small.train_indptr)
    indices = torch.from_numpy(small.train_indices)
    batches = [torch.from_numpy(b) for b in _row_batches(small.train_indptr, 40, 16)]
    assert len(batches) > 2  # several padded batches are exercised
    row_reg = als_reg(indptr[1:] - indptr[:-1], small.n_items, alpha, reg, nu)
    got = als_solve(indptr, indices, batches, torch.from_numpy(y), alpha, row_reg, tau).numpy()
    for u in (0, 5, 77, small.n_users - 1):
        np.testing.assert_allclose(got[u], naive_user_solve(x, y, alpha, reg, nu, tau, u),
                                   rtol=1e-9, atol=1e-10)


def test_row_batches_cover_every_row_once_longest_first():
    indptr = np.array([0, 3, 3, 10, 11, 13])  # lengths 3, 0, 7, 1, 2
    batches = _row_batches(indptr, budget=8, max_rows=3)
    assert [b.tolist() for b in batches] == [[2], [0, 4], [3, 1]]


@pytest.mark.parametrize("tau", [0.0, 0.05])
def test_ials_objective_equals_dense_objective(small, tau):
    alpha, reg, nu = 2.0, 0.1, 1.0
    rng = np.random.default_rng(1)
    u, v = rng.standard_normal((small.n_users, 3)), rng.standard_normal((small.n_items, 3))
    x = dense_train(small)
    c, p, pred = 1 + alpha * x, x + tau * (1 - x), u @ v.T
    ru = reg * (small.n_items + alpha * x.sum(1)) ** nu
    ri = reg * (small.n_users + alpha * x.sum(0)) ** nu
    expected = (c * (p - pred) ** 2).sum() + (ru * (u**2).sum(1)).sum() + (ri * (v**2).sum(1)).sum()
    indptr, indices = torch.from_numpy(small.train_indptr), torch.from_numpy(small.train_indices)
    got = ials_objective(torch.from_numpy(u), torch.from_numpy(v), indptr, indices, alpha,
                         torch.from_numpy(ru), torch.from_numpy(ri), tau, chunk=100)
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("tau", [0.0, 0.05])
def test_ials_loss_decreases_every_epoch(medium, tau):
    model = ials(medium, 8, alpha=5.0, reg=0.01, epochs=6, tau_plus=tau, show_progress=False,
                 dtype=torch.float64)
    losses = [h["loss"] for h in model.history]
    assert [h["epoch"] for h in model.history] == list(range(1, 7))
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses
    assert model.user_factors.shape == (medium.n_users, 8)
    assert model.item_factors.shape == (medium.n_items, 8)


def test_ials_last_half_step_is_exact_item_solve(small):
    """After fitting, re-solving the items given the users must not change them."""
    alpha, reg, nu = 4.0, 0.02, 1.0
    model = ials(small, 4, alpha, reg, 3, reg_exp=nu, tau_plus=0.1, show_progress=False,
                 dtype=torch.float64)
    xt = dense_train(small).T
    u = model.user_factors.numpy()
    for i in (0, 9, 31):
        np.testing.assert_allclose(model.item_factors[i].numpy(),
                                   naive_user_solve(xt, u, alpha, reg, nu, 0.1, i), rtol=1e-8)


def test_ials_is_seeded_and_scores_are_dot_products(small):
    a = ials(small, 4, 2.0, 0.05, 2, seed=5, show_progress=False)
    b = ials(small, 4, 2.0, 0.05, 2, seed=5, show_progress=False)
    assert torch.equal(a.user_factors, b.user_factors)
    users = torch.tensor([1, 4])
    torch.testing.assert_close(a.score_users(users), a.user_factors[users] @ a.item_factors.T)
    assert a.n_items == small.n_items


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"dim": 0}, "dim"), ({"dim": 2.5}, "dim"), ({"alpha": -1.0}, "alpha"),
    ({"alpha": float("nan")}, "alpha"), ({"reg": 0.0}, "reg"), ({"reg": -0.1}, "reg"),
    ({"epochs": 0}, "epochs"), ({"reg_exp": -1.0}, "reg_exp"), ({"tau_plus": 1.5}, "tau_plus"),
    ({"init_std": 0.0}, "init_std"),
])
def test_ials_bad_parameters_raise_naming_them(small, kwargs, name):
    args = {"dim": 4, "alpha": 1.0, "reg": 0.1, "epochs": 1, **kwargs}
    with pytest.raises(ValueError, match=name):
        ials(small, show_progress=False, **args)


# --------------------------------------------------------------------------------------------
# evaluation, configs, the grid


def test_evaluate_accepts_both_models_and_they_beat_random(medium):
    gen = torch.Generator().manual_seed(0)

    class Random:
        n_items = medium.n_items
        device = torch.device("cpu")

        def score_users(self, users):
            return torch.rand(len(users), medium.n_items, generator=gen)

    chance = evaluate(Random(), medium)["recall@20"]
    fitted = [ease(medium, 20.0), ials(medium, 16, 5.0, 0.01, 5, show_progress=False)]
    for model in fitted:
        metrics = evaluate(model, medium)
        assert set(metrics) == {"recall@20", "ndcg@20", "recall@50", "ndcg@50"}
        assert metrics["recall@20"] > 3 * chance, (type(model).__name__, metrics, chance)
    assert isinstance(fitted[0], EASE) and isinstance(fitted[1], IALS)


def test_reduce_items_keeps_most_popular_items(medium):
    reduced = reduce_items(medium, 50)
    pop = medium.item_popularity()
    top = np.argsort(-pop, kind="stable")[:50]
    assert reduced.n_items == 50 and reduced.n_users == medium.n_users
    np.testing.assert_array_equal(reduced.item_popularity(), pop[top])
    # user 0's train items, mapped: those among the top 50, in their order
    row = medium.train_indices[medium.train_indptr[0]:medium.train_indptr[1]]
    rank = {int(item): k for k, item in enumerate(top)}
    expected = [rank[int(i)] for i in row if int(i) in rank]
    assert reduced.train_indices[reduced.train_indptr[0]:reduced.train_indptr[1]].tolist() == expected
    assert reduce_items(medium, medium.n_items) is medium


def test_linear_config_validates_and_keys():
    a = LinearConfig("gowalla", "ease", lam=80)
    assert a.lam == 80.0 and a.dim is None and a.tau_plus == 0.0
    assert a.key() == LinearConfig("gowalla", "ease", lam=80.0, device="cpu").key()
    assert a.key() != a.replace(tau_plus=0.05).key()
    assert len(a.key()) == 16 and int(a.key(), 16) >= 0
    assert LinearConfig.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    b = LinearConfig("gowalla", "ials", alpha=3.0)
    assert b.lam is None and b.dim == 64 and b.reg_exp == 1.0 and b.epochs == 16
    assert LinearConfig("gowalla", "ials", profile="quick").epochs == 8
    for kwargs, name in [({"lam": 0}, "lam"), ({"method": "slim"}, "method"),
                         ({"dim": 8}, "dim"), ({"tau_plus": 1.0}, "tau_plus"),
                         ({"profile": "fast"}, "profile"), ({"device": "tpu"}, "device")]:
        with pytest.raises(ValueError, match=name):
            LinearConfig("gowalla", **{"method": "ease", **kwargs})
    with pytest.raises(ValueError, match="reg"):
        LinearConfig("gowalla", "ials", reg=0.0)
    with pytest.raises(ValueError, match="lam"):
        LinearConfig("gowalla", "ials", lam=10.0)


def test_linear_grid_covers_methods_priors_and_datasets():
    grid = linear_grid("paper")
    assert len({c.key() for c in grid}) == len(grid)
    ease_runs = [c for c in grid if c.method == "ease"]
    assert sorted({c.lam for c in ease_runs}) == [50.0, 80.0, 150.0, 300.0, 500.0]
    assert {c.tau_plus for c in grid} == {0.0, 0.01, 0.05}
    assert {c.dataset for c in grid} == {"gowalla", "yelp2018"}
    assert len(ease_runs) == 5 * 3 * 2 and len(grid) - len(ease_runs) == 9 * 3 * 2
    quick = linear_grid("quick")
    assert all(c.profile == "quick" for c in quick) and len(quick) == 2 * 3 * (5 + 1)
    assert {(c.alpha, c.reg, c.epochs) for c in quick if c.method == "ials"} == {(100.0, 0.01, 8)}
    with pytest.raises(ValueError, match="profile"):
        linear_grid("huge")


def test_run_linear_returns_metrics_and_saves(medium, tmp_path):
    config = LinearConfig("synthetic", "ials", dim=8, alpha=5.0, reg=0.01, epochs=2, device="cpu")
    result = run_linear(config, dataset=medium)
    assert result["key"] == config.key() and result["config"]["method"] == "ials"
    assert set(result["timings"]) == {"fit_s", "eval_s"} and len(result["history"]) == 2
    assert 0.0 < result["metrics"]["recall@20"] <= 1.0
    path = save_linear_result(result, tmp_path)
    assert path.name == f"{config.key()}.json"
    assert json.loads(path.read_text())["metrics"] == result["metrics"]
    assert math.isfinite(result["history"][-1]["loss"])


def test_ease_priors_share_one_inversion_and_equal_ease(small, monkeypatch):
    import mmlrepro.linear as linear
    import mmlrepro.linear.ease_model as ease_model

    calls = []
    real = ease_model._spd_inverse_
    monkeypatch.setattr(ease_model, "_spd_inverse_", lambda a: calls.append(1) or real(a))
    taus = [0.0, 0.05, 0.2]
    models = list(linear.ease_priors(small, 30.0, taus, dtype=torch.float64))
    assert len(calls) == 1 and [m.tau_plus for m in models] == taus
    for model, tau in zip(models, taus, strict=True):
        torch.testing.assert_close(model.weights, ease(small, 30.0, tau_plus=tau, dtype=torch.float64).weights)
    with pytest.raises(ValueError, match="tau_values"):
        next(linear.ease_priors(small, 30.0, []))


def test_linear_group_fits_each_ease_lambda_once(small, tmp_path, monkeypatch):
    import mmlrepro.linear.ease_model as ease_model
    import mmlrepro.linear.runs as runs
    from mmlrepro.comparison import linear_results
    from mmlrepro.linear import run_linear_group

    grid = [LinearConfig("synthetic", "ease", lam=lam, tau_plus=tau, device="cpu")
            for lam in (20.0, 40.0) for tau in (0.0, 0.05)]
    grid.append(LinearConfig("synthetic", "ials", dim=4, alpha=5.0, reg=0.01, epochs=2, device="cpu"))
    monkeypatch.setattr(runs, "linear_grid", lambda profile: grid)
    monkeypatch.setattr(runs, "linear_dataset", lambda config, data_dir=None: small)
    calls = []
    real = ease_model._spd_inverse_
    monkeypatch.setattr(ease_model, "_spd_inverse_", lambda a: calls.append(1) or real(a))
    assert run_linear_group("paper", results_dir=tmp_path, datasets=["synthetic"], log=None) == 5
    assert len(calls) == 2
    runs = linear_results(tmp_path)
    assert len(runs) == 5 and set(runs["key"]) == {c.key() for c in grid}
    alone = run_linear(grid[1], dataset=small)["metrics"]
    stored = runs.set_index("key").loc[grid[1].key()]
    assert stored["recall@20"] == pytest.approx(alone["recall@20"], abs=1e-6)
    assert run_linear_group("paper", results_dir=tmp_path, datasets=["synthetic"], log=None) == 0
