"""EASE and iALS, biased and debiased, evaluated like every other model (SPEC §1 item 4, §5, §9).

Li, Jin, Ren 2023 claim that iALS and EASE are "inherently debiased": unlike the sampled losses
of SPEC §5 they need no false-negative correction. This module gives both models and a debiased
variant of each, so the claim can be tested with the same data and the same metrics.

Debiasing for squared losses [recon, the project's reading]
-----------------------------------------------------------
SPEC §5 debiases with a class prior τ⁺: an unobserved ("negative") pair is in truth a positive
with probability τ⁺ (Chuang et al. 2020). EASE and iALS fit every unobserved entry with the
squared loss toward 0. If that entry's true label is y ~ Bernoulli(τ⁺), the expected squared loss
is E[(y − ŷ)²] = τ⁺(1 − ŷ)² + (1 − τ⁺)ŷ² = (ŷ − τ⁺)² + τ⁺(1 − τ⁺): the debiased objective is the
biased one with the target of every unobserved entry moved from 0 to τ⁺ (the constant does not
matter). The label matrix becomes T = X + τ⁺(J − X) (J all ones); the model's *input* (EASE's
user history X) stays the observed data, as at scoring time. τ⁺ = 0 is the biased model exactly.

The literal Chuang estimator, (mean_unobserved ŷ² − τ⁺ mean_observed ŷ²)/(1 − τ⁺) for the
negative term, is not used: per user it puts weight 1 − τ⁺(|I| − |I_u|)/((1 − τ⁺)|I_u|) on the
observed ŷ², negative as soon as τ⁺ exceeds about the user's density |I_u|/|I| (≈ 0.0007 on
Gowalla), which makes the quadratic objective unbounded below (InfoNCE avoids that with the
max(·, e^{−1/τ}) clamp, a squared loss has no such floor).

- EASE: min_B ‖T − XB‖² + λ‖B‖², diag(B) = 0. With G = XᵀX, P = (G + λI)⁻¹ and c = Xᵀ1 (item
  counts), XᵀT = (1 − τ⁺)G + τ⁺c1ᵀ, and the Lagrange solution is
  B = (1 − τ⁺)I + τ⁺(Pc)1ᵀ − P·diag(((1 − τ⁺) + τ⁺(Pc)_j) / P_jj):
  one extra mat-vec. On unobserved entries the scores are
  (1 − τ⁺ + τ⁺(Pc)_j)·ŝ_uj + τ⁺(XPc)_u, with ŝ the biased EASE scores: a per-item rescaling
  (the second term is constant per user and does not change the ranking).
- iALS: the target of unobserved entries is τ⁺; only the right-hand side of each solve changes,
  YᵀC_u p_u = (1 + α − τ⁺)·Σ_{i∈I_u} y_i + τ⁺·Σ_i y_i, still exact and O(nnz·d).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from mmlrepro.config import PROFILES as RUN_PROFILES
from mmlrepro.data import NAMES as DATASETS
from mmlrepro.data import Dataset, load_dataset
from mmlrepro.devices import device_name, resolve_device
from mmlrepro.files import atomic_write_json
from mmlrepro.metrics import evaluate
from mmlrepro.results import default_results_dir, provenance

METHODS = ("ease", "ials")
PROFILES = (*(p for p in RUN_PROFILES if p != "smoke"), "custom")  # a smoke run fits the quick grid
EASE_LAMBDAS = (50.0, 80.0, 150.0, 300.0, 500.0)
# Debiased variants [assumed]; biased runs use τ⁺ = 0. τ⁺ is the chance that an unobserved pair
# is a true positive; the train density is 0.0007 (Gowalla) / 0.0010 (Yelp2018), so these are
# generous values. (Top-4000-item Gowalla, λ = 80: τ⁺ = 0.2 moves EASE Recall@20 by +0.5%.)
TAU_PLUS = (0.01, 0.05)
QUICK_ITEMS = 4000  # quick profile: keep the 4,000 most popular train items [assumed]
QUICK_IALS_EPOCHS = 8
# iALS (Hu et al. 2008 confidence form, frequency-scaled regularisation ν = 1, dim 64 as the MF
# runs). Defaults picked by a small hand search on Gowalla test Recall@20 (the papers select on
# test, SPEC §6) [assumed]: full data, 8 epochs, (α, reg) = (30, 0.003) → 0.1481, (100, 0.01) →
# 0.1511; top-4000-item data, 6 epochs: (10, 0.01) 0.291, (30, 0.003) 0.324, (100, 0.01) 0.323,
# (100, 0.001) 0.291, (1000, 0.001) 0.187. The grid brackets the default by ≈3× each way.
IALS_DEFAULTS = {"dim": 64, "alpha": 100.0, "reg": 0.01, "reg_exp": 1.0, "epochs": 16}
IALS_GRID = {"alpha": (30.0, 100.0, 300.0), "reg": (0.003, 0.01, 0.03)}


# --------------------------------------------------------------------------------------------
# argument checks (all raise before any compute)


def _check_number(name: str, value: Any, *, low: float, low_ok: bool = False,
                  high: float = math.inf) -> float:
    ok = (isinstance(value, int | float) and not isinstance(value, bool)
          and math.isfinite(value) and (value >= low if low_ok else value > low) and value < high)
    if not ok:
        bound = f"{'>=' if low_ok else '>'} {low}" + (f" and < {high}" if high < math.inf else "")
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def _check_int(name: str, value: Any, low: int = 1) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_tau(tau_plus: Any) -> float:
    return _check_number("tau_plus", tau_plus, low=0.0, low_ok=True, high=1.0)


# --------------------------------------------------------------------------------------------
# sparse helpers


def _csr_tensors(dataset: Dataset, device: torch.device) -> tuple[Tensor, Tensor]:
    indptr, indices = dataset.csr("train")
    return (torch.from_numpy(np.ascontiguousarray(indptr, dtype=np.int64)).to(device),
            torch.from_numpy(np.ascontiguousarray(indices, dtype=np.int64)).to(device))


def sparse_rows(indptr: Tensor, indices: Tensor, rows: Tensor, n_cols: int,
                dtype: torch.dtype = torch.float32) -> Tensor:
    """Rows ``rows`` of the binary CSR matrix ``(indptr, indices)`` as a sparse COO tensor
    ``[len(rows), n_cols]`` (on ``indptr``'s device; no Python loop)."""
    rows = rows.to(indptr.device)
    starts, counts = indptr[rows], indptr[rows + 1] - indptr[rows]
    out_row = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), counts)
    offset = torch.arange(len(out_row), device=rows.device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts)
    cols = indices[torch.repeat_interleave(starts, counts) + offset]
    values = torch.ones(len(cols), dtype=dtype, device=rows.device)
    return torch.sparse_coo_tensor(torch.stack([out_row, cols]), values, (len(rows), n_cols),
                                   is_coalesced=True, check_invariants=False)


def gram_matrix(dataset: Dataset, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32) -> Tensor:
    """Dense co-occurrence counts G = XᵀX ``[n_items, n_items]`` of the binary train matrix X.

    Sparse × sparse product (exact integer counts, < 2²⁴ here) scattered into one dense matrix.
    """
    device = torch.device(device)
    indptr, indices = _csr_tensors(dataset, device)
    x = sparse_rows(indptr, indices, torch.arange(dataset.n_users, device=device),
                    dataset.n_items, dtype)
    with warnings.catch_warnings():  # torch's "sparse CSR support is in beta" notice
        warnings.simplefilter("ignore", UserWarning)
        g = torch.sparse.mm(x.t().coalesce(), x).coalesce()
    dense = torch.zeros(dataset.n_items, dataset.n_items, dtype=dtype, device=device)
    dense[g.indices()[0], g.indices()[1]] = g.values()
    return dense


# --------------------------------------------------------------------------------------------
# EASE


def _spd_inverse_(a: Tensor) -> Tensor:
    """Overwrite the symmetric positive definite ``a`` with its inverse and return it:
    ``torch.linalg.cholesky_ex`` then ``torch.cholesky_inverse`` (LAPACK potrf + potri; MKL on
    the CPU, cuSOLVER on CUDA), both written into ``a``'s own buffer. Torch keeps one temporary
    n×n copy inside each call, so the peak is about two matrices (Gowalla fp32: 2 × 6.7 GB).

    SciPy's in-place ``spotrf``/``spotri`` (``overwrite_a``) would peak at one matrix, but its
    bundled OpenBLAS (scipy 1.17) segfaults in ``spotrf`` on the 38,048² Yelp2018 Gram matrix
    (reproduced twice; the 40,981² Gowalla one went through), so it is not used.
    """
    info = torch.empty((), dtype=torch.int32, device=a.device)
    torch.linalg.cholesky_ex(a, out=(a, info))
    if int(info) != 0:
        raise torch.linalg.LinAlgError(f"Cholesky failed at minor {int(info)}: the matrix is not "
                                       "positive definite; is lam > 0?")
    torch.cholesky_inverse(a, out=a)
    return a


def ease_weights_(p: Tensor, item_counts: Tensor, tau_plus: float = 0.0) -> Tensor:
    """Turn P = (XᵀX + λI)⁻¹ into the EASE weights B, in place, and return it.

    Biased (τ⁺ = 0): B = I − P·diag(1/diag P), diag(B) = 0 (Steck 2019).
    Debiased: B = (1 − τ⁺)I + τ⁺(Pc)1ᵀ − P·diag(((1 − τ⁺) + τ⁺(Pc)_j) / P_jj), c the item counts
    (see the module docstring); the diagonal is again exactly zero.
    """
    diag = p.diagonal().clone()
    if tau_plus > 0:
        pc = p @ item_counts.to(p.dtype)
        p.mul_(-((1.0 - tau_plus) + tau_plus * pc) / diag)  # scales column j
        p.add_(tau_plus * pc[:, None])
    else:
        p.mul_(-1.0 / diag)
    p.diagonal().zero_()
    return p


@dataclass(eq=False)
class EASE:
    """A fitted EASE model: scores ``X[users] @ B`` (SPEC §7 masks the train items)."""

    weights: Tensor  # B, [n_items, n_items], zero diagonal
    train_indptr: Tensor
    train_indices: Tensor
    lam: float
    tau_plus: float = 0.0

    @property
    def n_items(self) -> int:
        return self.weights.shape[0]

    @property
    def device(self) -> torch.device:
        return self.weights.device

    def score_users(self, users: Tensor) -> Tensor:
        """``[len(users), n_items]`` scores: the users' binary train rows times B."""
        x = sparse_rows(self.train_indptr, self.train_indices, users.to(self.device),
                        self.n_items, self.weights.dtype)
        return torch.sparse.mm(x, self.weights)


def ease(dataset: Dataset, lam: float, *, device: str | torch.device = "cpu",
         dtype: torch.dtype = torch.float32, tau_plus: float = 0.0) -> EASE:
    """Fit EASE (Steck 2019): min_B ‖T − XB‖² + λ‖B‖² s.t. diag(B) = 0, T = X + τ⁺(J − X).

    Closed form B = I − P·diag(1/diag P), P = (XᵀX + λI)⁻¹ for τ⁺ = 0; the debiased form is in
    :func:`ease_weights_`. G = XᵀX is built from the sparse train matrix (exact counts), then
    inverted through its Cholesky factor and turned into B in place: the peak memory is about two
    n_items² matrices (:func:`_spd_inverse_`; Gowalla: 40,981² fp32 = 6.7 GB each).
    """
    return next(ease_priors(dataset, lam, [tau_plus], device=device, dtype=dtype))


def ease_priors(dataset: Dataset, lam: float, tau_values: Iterable[float], *,
                device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
                ) -> Iterator[EASE]:
    """EASE at one λ for each prior τ⁺ in ``tau_values``, in order, from one inversion.

    B depends on τ⁺ only through :func:`ease_weights_`, so P = (XᵀX + λI)⁻¹ is computed once and
    each model's B is built from a copy of it (the last one in place): k priors cost one
    inversion instead of k. Yields what ``ease(dataset, lam, tau_plus=τ)`` returns, τ by τ. Drop
    each model before asking for the next (``del``) and the peak stays about two n_items²
    matrices.
    """
    lam = _check_number("lam", lam, low=0.0)
    taus = [_check_tau(t) for t in tau_values]
    if not taus:
        raise ValueError("tau_values: give at least one prior τ⁺ (0 for the biased EASE)")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    device = resolve_device(str(device))
    p = gram_matrix(dataset, device, dtype)
    counts = p.diagonal().clone()  # X binary: diag(XᵀX) = item counts c
    p.diagonal().add_(lam)
    _spd_inverse_(p)
    indptr, indices = _csr_tensors(dataset, device)
    for i, tau in enumerate(taus):
        weights = p if i == len(taus) - 1 else p.clone()
        yield EASE(ease_weights_(weights, counts, tau), indptr, indices, lam, tau)


# --------------------------------------------------------------------------------------------
# iALS


def _row_batches(indptr: np.ndarray, budget: int, max_rows: int) -> list[np.ndarray]:
    """Rows sorted by decreasing length, cut into batches whose padded size rows·max_len stays
    under ``budget`` (and at most ``max_rows`` rows): the only loop is over batches."""
    lengths = np.diff(indptr)
    order = np.argsort(-lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        size = max(1, min(max_rows, budget // max(1, int(lengths[order[start]]))))
        batches.append(order[start:start + size])
        start += size
    return batches


def als_reg(lengths: Tensor, n_other: int, alpha: float, reg: float, reg_exp: float) -> Tensor:
    """Per-row regularisation reg·(Σ_i c_ui)^ν = reg·(n_other + α·|I_u|)^ν.

    The frequency-scaled regularisation of Rendle et al. 2021 ("Revisiting the performance of
    iALS"), λ·(|I_u| + α₀|I|)^ν, scales λ by the row's total loss weight; written for the Hu et
    al. confidence weights (1 + α observed, 1 unobserved) that total is |I| + α|I_u|. ν = 0 is
    the plain Hu et al. regulariser, ν = 1 Rendle et al.'s usual choice.
    """
    return reg * (n_other + alpha * lengths.double()) ** reg_exp


def als_solve(indptr: Tensor, indices: Tensor, batches: list[Tensor], fixed: Tensor,
              alpha: float, row_reg: Tensor, tau_plus: float = 0.0) -> Tensor:
    """One exact ALS half-step: the rows' factors given the ``fixed`` factors Y ``[n_cols, d]``.

    Row u solves (YᵀY + α·Σ_{i∈I_u} y_i y_iᵀ + r_u I)·x_u = (1 + α − τ⁺)·Σ_{i∈I_u} y_i + τ⁺·Σ_i y_i,
    i.e. min Σ_i c_ui (p_ui − x_uᵀy_i)² + r_u‖x_u‖² with c_ui = 1 + α·[i ∈ I_u] and p_ui = 1
    observed, τ⁺ unobserved (Hu et al. 2008; τ⁺ = 0 is the original). The per-row Gram
    Σ_{i∈I_u} y_i y_iᵀ is a batched ``bmm`` over the rows' padded item lists; the d×d systems are
    solved in batches with ``torch.linalg.cholesky`` + ``torch.cholesky_solve``.
    """
    n_rows, d = len(indptr) - 1, fixed.shape[1]
    gram = fixed.T @ fixed
    total = fixed.sum(0)
    out = torch.empty(n_rows, d, dtype=fixed.dtype, device=fixed.device)
    padded = torch.cat([fixed, fixed.new_zeros(1, d)])   # row n_cols: zeros, for the padding
    lengths = indptr[1:] - indptr[:-1]
    for rows in batches:
        lens = lengths[rows]
        width = max(1, int(lens.max()))
        pos = torch.arange(width, device=rows.device)
        idx = indices[(indptr[rows][:, None] + pos).clamp(max=len(indices) - 1)]
        ys = padded[idx.masked_fill_(pos[None, :] >= lens[:, None], len(fixed))]
        a = torch.baddbmm(gram.expand(len(rows), d, d), ys.transpose(1, 2), ys, alpha=alpha)
        a.diagonal(dim1=1, dim2=2).add_(row_reg[rows].to(fixed.dtype)[:, None])
        rhs = (1.0 + alpha - tau_plus) * ys.sum(1) + tau_plus * total
        factor = torch.linalg.cholesky(a)
        out[rows] = torch.cholesky_solve(rhs[..., None], factor)[..., 0]
    return out


def ials_objective(users: Tensor, items: Tensor, indptr: Tensor, indices: Tensor, alpha: float,
                   user_reg: Tensor, item_reg: Tensor, tau_plus: float = 0.0,
                   chunk: int = 1 << 16) -> float:
    """The full weighted objective, in float64, without the dense user × item matrix:

    L = Σ_{u,i} c_ui (p_ui − ŷ_ui)² + Σ_u r_u‖x_u‖² + Σ_i r_i‖y_i‖², ŷ = XYᵀ, written as
    Σ_all (τ⁺ − ŷ)² + Σ_obs [(1 + α)(1 − ŷ)² − (τ⁺ − ŷ)²] + reg, where
    Σ_all (τ⁺ − ŷ)² = τ⁺²·|U||I| − 2τ⁺(Σ_u x_u)·(Σ_i y_i) + ⟨XᵀX, YᵀY⟩ (the Gram trick).
    """
    u, v = users.double(), items.double()
    total = (tau_plus ** 2 * u.shape[0] * v.shape[0] - 2 * tau_plus * (u.sum(0) @ v.sum(0))
             + ((u.T @ u) * (v.T @ v)).sum())
    rows = torch.repeat_interleave(torch.arange(len(indptr) - 1, device=indptr.device),
                                   indptr[1:] - indptr[:-1])
    for s in range(0, len(indices), chunk):
        y = (u[rows[s:s + chunk]] * v[indices[s:s + chunk]]).sum(1)
        total = total + ((1 + alpha) * (1 - y) ** 2 - (tau_plus - y) ** 2).sum()
    total = total + (user_reg * u.pow(2).sum(1)).sum() + (item_reg * v.pow(2).sum(1)).sum()
    return float(total)


@dataclass(eq=False)
class IALS:
    """A fitted iALS model: scores ``U[users] @ Vᵀ``; ``history`` holds the loss per epoch."""

    user_factors: Tensor
    item_factors: Tensor
    alpha: float
    reg: float
    reg_exp: float
    tau_plus: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def n_items(self) -> int:
        return self.item_factors.shape[0]

    @property
    def device(self) -> torch.device:
        return self.item_factors.device

    def score_users(self, users: Tensor) -> Tensor:
        return self.user_factors[users.to(self.device)] @ self.item_factors.T


def ials(dataset: Dataset, dim: int = IALS_DEFAULTS["dim"], alpha: float = IALS_DEFAULTS["alpha"],
         reg: float = IALS_DEFAULTS["reg"], epochs: int = IALS_DEFAULTS["epochs"], *,
         reg_exp: float = IALS_DEFAULTS["reg_exp"], init_std: float = 0.1, seed: int = 0,
         device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
         tau_plus: float = 0.0, batch_budget: int = 1 << 18, max_batch_rows: int = 4096,
         show_progress: bool = True) -> IALS:
    """Fit implicit ALS (Hu, Koren, Volinsky 2008) with frequency-scaled regularisation.

    min_{U,V} Σ_{u,i} c_ui (p_ui − u_uᵀv_i)² + Σ_u r_u‖u_u‖² + Σ_i r_i‖v_i‖², with
    c_ui = 1 + α for train pairs and 1 otherwise, p_ui = 1 for train pairs and τ⁺ otherwise
    (τ⁺ = 0: the original; τ⁺ > 0: debiased, module docstring), r_u = reg·(|I| + α|I_u|)^ν and
    r_i = reg·(|U| + α|U_i|)^ν (:func:`als_reg`, ν = ``reg_exp``). Factors start at
    N(0, (init_std/√dim)²) from ``torch.Generator().manual_seed(seed)`` (as Rendle et al.'s code
    scales its init), then every epoch solves all users exactly, then all items
    (:func:`als_solve`), so the objective never increases; it is recorded after each epoch in
    ``history`` (:func:`ials_objective`). No Python loop over users or items, only over epochs
    and row batches.
    """
    dim = _check_int("dim", dim)
    alpha = _check_number("alpha", alpha, low=0.0, low_ok=True)
    reg = _check_number("reg", reg, low=0.0)
    epochs = _check_int("epochs", epochs)
    reg_exp = _check_number("reg_exp", reg_exp, low=0.0, low_ok=True)
    init_std = _check_number("init_std", init_std, low=0.0)
    tau_plus = _check_tau(tau_plus)
    _check_int("batch_budget", batch_budget)
    _check_int("max_batch_rows", max_batch_rows)
    if len(dataset.train_indices) == 0:
        raise ValueError(f"{dataset.name}: no train interactions to fit iALS on")
    device = resolve_device(str(device))

    n_users, n_items = dataset.n_users, dataset.n_items
    u_indptr, u_indices = _csr_tensors(dataset, device)
    by_item = np.argsort(dataset.train_indices, kind="stable")
    i_indptr = torch.from_numpy(np.concatenate(
        [[0], np.cumsum(np.bincount(dataset.train_indices, minlength=n_items))])).to(device)
    i_indices = torch.from_numpy(dataset.train_users()[by_item]).to(device)
    u_batches = [torch.from_numpy(b).to(device)
                 for b in _row_batches(dataset.train_indptr, batch_budget, max_batch_rows)]
    i_batches = [torch.from_numpy(b).to(device)
                 for b in _row_batches(i_indptr.cpu().numpy(), batch_budget, max_batch_rows)]
    user_reg = als_reg(u_indptr[1:] - u_indptr[:-1], n_items, alpha, reg, reg_exp)
    item_reg = als_reg(i_indptr[1:] - i_indptr[:-1], n_users, alpha, reg, reg_exp)

    gen = torch.Generator().manual_seed(seed)
    scale = init_std / math.sqrt(dim)
    users = (torch.randn(n_users, dim, generator=gen, dtype=torch.float64) * scale).to(device, dtype)
    items = (torch.randn(n_items, dim, generator=gen, dtype=torch.float64) * scale).to(device, dtype)
    model = IALS(users, items, alpha, reg, reg_exp, tau_plus)
    bar = tqdm(range(1, epochs + 1), desc="iALS", disable=not show_progress)
    for epoch in bar:
        start = time.perf_counter()
        users = als_solve(u_indptr, u_indices, u_batches, items, alpha, user_reg, tau_plus)
        items = als_solve(i_indptr, i_indices, i_batches, users, alpha, item_reg, tau_plus)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        loss = ials_objective(users, items, u_indptr, u_indices, alpha, user_reg, item_reg,
                              tau_plus)
        if not math.isfinite(loss):
            raise FloatingPointError(f"iALS objective became {loss} at epoch {epoch}")
        model.history.append({"epoch": epoch, "loss": loss, "seconds": seconds})
        bar.set_postfix(loss=f"{loss:.6g}")
    model.user_factors, model.item_factors = users, items
    return model


# --------------------------------------------------------------------------------------------
# configs, runs, the grid


def reduce_items(dataset: Dataset, n_items: int) -> Dataset:
    """Keep the ``n_items`` most popular train items (ties: smaller id first), renumbered by
    decreasing popularity; other items leave train and test. All users are kept (the quick
    profile: EASE's cost is set by the item count) [assumed]."""
    n_items = _check_int("n_items", n_items)
    if n_items >= dataset.n_items:
        return dataset
    order = np.argsort(-dataset.item_popularity(), kind="stable")[:n_items]
    new_id = np.full(dataset.n_items, -1, dtype=np.int64)
    new_id[order] = np.arange(n_items)

    def keep(split: str) -> tuple[np.ndarray, np.ndarray]:
        indptr, indices = dataset.csr(split)
        mapped = new_id[indices]
        kept = mapped >= 0
        rows = np.repeat(np.arange(dataset.n_users), np.diff(indptr))
        counts = np.bincount(rows[kept], minlength=dataset.n_users)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), mapped[kept]

    return Dataset(f"{dataset.name}-top{n_items}", dataset.n_users, n_items,
                   *keep("train"), *keep("test"))


_EASE_FIELDS = ("lam",)
_IALS_FIELDS = ("dim", "alpha", "reg", "reg_exp", "epochs")
_NOT_IN_KEY = ("device",)


@dataclass(frozen=True)
class LinearConfig:
    """One EASE or iALS run. Parameters of the other method must stay ``None``; the method's own
    ones default to ``lam = 300`` / ``IALS_DEFAULTS`` (``quick``: ``QUICK_IALS_EPOCHS`` epochs).

    ``profile="quick"`` fits on :func:`reduce_items` (top ``QUICK_ITEMS`` items): an EASE run takes
    seconds and an iALS run about a minute on a 2-core CPU; ``paper`` and ``custom`` use the full
    dataset. ``key()`` hashes every
    field but ``device`` (as ``RunConfig.key``): the same run has the same key on every machine.
    """

    dataset: str
    method: str = "ease"
    lam: float | None = None
    dim: int | None = None
    alpha: float | None = None
    reg: float | None = None
    reg_exp: float | None = None
    epochs: int | None = None
    tau_plus: float = 0.0
    seed: int = 0
    profile: str = "custom"
    device: str = "auto"

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ValueError(f"LinearConfig.{name}: {why}")

        if not isinstance(self.dataset, str) or not self.dataset:
            bad("dataset", f"must be a dataset name or folder, got {self.dataset!r}")
        if self.method not in METHODS:
            bad("method", f"must be one of {METHODS}, got {self.method!r}")
        if self.profile not in PROFILES:
            bad("profile", f"must be one of {PROFILES}, got {self.profile!r}")
        own, other = ((_EASE_FIELDS, _IALS_FIELDS) if self.method == "ease"
                      else (_IALS_FIELDS, _EASE_FIELDS))
        for name in other:
            if getattr(self, name) is not None:
                bad(name, f"is not a parameter of {self.method!r}; leave it None")
        defaults = {"lam": 300.0, **IALS_DEFAULTS}
        if self.profile == "quick":
            defaults["epochs"] = QUICK_IALS_EPOCHS
        for name in own:
            if getattr(self, name) is None:
                object.__setattr__(self, name, defaults[name])
        try:
            if self.method == "ease":
                object.__setattr__(self, "lam", _check_number("lam", self.lam, low=0.0))
            else:
                object.__setattr__(self, "dim", _check_int("dim", self.dim))
                object.__setattr__(self, "epochs", _check_int("epochs", self.epochs))
                for name, low_ok in (("alpha", True), ("reg", False), ("reg_exp", True)):
                    object.__setattr__(self, name, _check_number(name, getattr(self, name),
                                                                 low=0.0, low_ok=low_ok))
            object.__setattr__(self, "tau_plus", _check_tau(self.tau_plus))
            object.__setattr__(self, "seed", _check_int("seed", self.seed, low=0))
        except ValueError as err:
            raise ValueError(f"LinearConfig.{err}") from None
        if not (self.device == "auto" or self.device.startswith(("cpu", "cuda", "mps"))):
            bad("device", f"must be 'auto', 'cpu', 'cuda[:i]' or 'mps', got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinearConfig:
        return cls(**data)

    def key(self) -> str:
        """First 16 hex digits of the SHA-256 of the canonical JSON of every field but device."""
        payload = {k: v for k, v in self.to_dict().items() if k not in _NOT_IN_KEY}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> LinearConfig:
        return dataclasses.replace(self, **changes)

    def label(self) -> str:
        hp = (f"lam{self.lam:g}" if self.method == "ease" else
              f"d{self.dim}/a{self.alpha:g}/r{self.reg:g}/nu{self.reg_exp:g}/e{self.epochs}")
        return f"{self.dataset}/{self.method}/{hp}/tau{self.tau_plus:g} [{self.profile}]"


def linear_dataset(config: LinearConfig, data_dir: str | None = None) -> Dataset:
    """The run's data: ``load_dataset(config.dataset)``, reduced to the top ``QUICK_ITEMS`` items
    for the quick profile."""
    dataset = load_dataset(config.dataset, data_dir=data_dir)
    return reduce_items(dataset, QUICK_ITEMS) if config.profile == "quick" else dataset


def fit_linear(config: LinearConfig, dataset: Dataset, show_progress: bool = False
               ) -> EASE | IALS:
    device = resolve_device(config.device)
    if config.method == "ease":
        return ease(dataset, config.lam, device=device, tau_plus=config.tau_plus)
    return ials(dataset, config.dim, config.alpha, config.reg, config.epochs,
                reg_exp=config.reg_exp, seed=config.seed, device=device,
                tau_plus=config.tau_plus, show_progress=show_progress)


def run_linear(config: LinearConfig, dataset: Dataset | None = None, data_dir: str | None = None,
               show_progress: bool = False) -> dict[str, Any]:
    """Fit and evaluate one config (SPEC §7 metrics).

    ``dataset`` defaults to :func:`linear_dataset`; pass it to reuse a loaded one (the quick
    reduction is then the caller's business). Returns ``{"key", "config", "metrics", "timings":
    {"fit_s", "eval_s"}, "device", "history", "provenance"}`` (JSON-ready).
    """
    if dataset is None:
        dataset = linear_dataset(config, data_dir)
    device = resolve_device(config.device)
    start = time.perf_counter()
    model = fit_linear(config, dataset, show_progress)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return linear_result(config, dataset, model, time.perf_counter() - start)


def linear_result(config: LinearConfig, dataset: Dataset, model: EASE | IALS, fit_s: float
                  ) -> dict[str, Any]:
    """Evaluate a fitted ``model`` of ``config`` and return the JSON-ready record of
    :func:`run_linear`."""
    start = time.perf_counter()
    metrics = evaluate(model, dataset)
    eval_s = time.perf_counter() - start
    return {
        "key": config.key(),
        "config": config.to_dict(),
        "dataset": repr(dataset),
        "metrics": metrics,
        "timings": {"fit_s": fit_s, "eval_s": eval_s},
        "device": device_name(model.device),
        "history": getattr(model, "history", []),
        "provenance": provenance(),
    }


def read_linear_results(folder: str | Path, log: Any = print) -> list[dict[str, Any]]:
    """Every valid record of ``folder/*.json`` (written by :func:`save_linear_result`), by file
    name; a file that does not parse or lacks ``config`` / ``metrics`` is reported with its path
    (``log``, one line, e.g. ``print`` to stderr) and left out, as the runs store does."""
    out = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict) or not isinstance(record.get("config"), dict) \
                    or not isinstance(record.get("metrics"), dict):
                raise ValueError("not a linear result (no config or metrics)")
        except (OSError, UnicodeDecodeError, ValueError) as err:
            if log:
                log(f"warning: {path}: {err.__class__.__name__}: {err}; treated as missing")
            continue
        out.append(record)
    return out


def save_linear_result(result: dict[str, Any], folder: str | Path | None = None) -> Path:
    """Write ``result`` to ``<folder>/<key>.json`` (default ``results/linear/``), atomically."""
    folder = Path(folder) if folder is not None else default_results_dir() / "linear"
    path = folder / f"{result['key']}.json"
    atomic_write_json(result, path)
    return path


def linear_grid(profile: str = "paper", datasets: tuple[str, ...] = DATASETS
                ) -> list[LinearConfig]:
    """The ``linear`` group: biased (τ⁺ = 0) and debiased (τ⁺ ∈ ``TAU_PLUS``) runs on both
    datasets. ``paper``: EASE over λ ∈ ``EASE_LAMBDAS`` and iALS over ``IALS_GRID`` (α × reg;
    dim 64, ν = 1, 16 epochs): 2 × 3 × (5 + 9) = 84 runs (a GPU job: one full-data EASE fit is
    ~10 min on a 2-core CPU). ``quick``: top-``QUICK_ITEMS`` items, EASE over the same λ and
    iALS at ``IALS_DEFAULTS`` only, ``QUICK_IALS_EPOCHS`` epochs: 36 runs, about 10 minutes on
    a 2-core CPU."""
    if profile not in ("paper", "quick"):
        raise ValueError(f"profile must be 'paper' or 'quick', got {profile!r}")
    grid = (IALS_GRID if profile == "paper"
            else {"alpha": (IALS_DEFAULTS["alpha"],), "reg": (IALS_DEFAULTS["reg"],)})
    out = []
    for name in datasets:
        for tau in (0.0, *TAU_PLUS):
            out += [LinearConfig(name, "ease", lam=lam, tau_plus=tau, profile=profile)
                    for lam in EASE_LAMBDAS]
            out += [LinearConfig(name, "ials", alpha=a, reg=r, tau_plus=tau, profile=profile)
                    for a in grid["alpha"] for r in grid["reg"]]
    return out
