"""iALS (Hu, Koren, Volinsky 2008) with frequency-scaled regularisation, biased and debiased.

Exact ALS half-steps in batched Cholesky solves (:func:`als_solve`), the full objective without
the dense user × item matrix (:func:`ials_objective`); the debiased target τ⁺ of unobserved
entries is derived in :mod:`mmlrepro.linear`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from mmlrepro.data import Dataset
from mmlrepro.devices import resolve_device
from mmlrepro.linear.checks import check_int, check_number, check_tau
from mmlrepro.linear.sparse import csr_tensors

# iALS (Hu et al. 2008 confidence form, frequency-scaled regularisation ν = 1, dim 64 as the MF
# runs). Defaults picked by a small hand search on Gowalla test Recall@20 (the papers select on
# test, SPEC §6) [assumed]: full data, 8 epochs, (α, reg) = (30, 0.003) → 0.1481, (100, 0.01) →
# 0.1511; top-4000-item data, 6 epochs: (10, 0.01) 0.291, (30, 0.003) 0.324, (100, 0.01) 0.323,
# (100, 0.001) 0.291, (1000, 0.001) 0.187. The grid brackets the default by ≈3× each way.
IALS_DEFAULTS = {"dim": 64, "alpha": 100.0, "reg": 0.01, "reg_exp": 1.0, "epochs": 16}


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
    (τ⁺ = 0: the original; τ⁺ > 0: debiased, :mod:`mmlrepro.linear`), r_u = reg·(|I| + α|I_u|)^ν and
    r_i = reg·(|U| + α|U_i|)^ν (:func:`als_reg`, ν = ``reg_exp``). Factors start at
    N(0, (init_std/√dim)²) from ``torch.Generator().manual_seed(seed)`` (as Rendle et al.'s code
    scales its init), then every epoch solves all users exactly, then all items
    (:func:`als_solve`), so the objective never increases; it is recorded after each epoch in
    ``history`` (:func:`ials_objective`). No Python loop over users or items, only over epochs
    and row batches.
    """
    dim = check_int("dim", dim)
    alpha = check_number("alpha", alpha, low=0.0, low_ok=True)
    reg = check_number("reg", reg, low=0.0)
    epochs = check_int("epochs", epochs)
    reg_exp = check_number("reg_exp", reg_exp, low=0.0, low_ok=True)
    init_std = check_number("init_std", init_std, low=0.0)
    tau_plus = check_tau(tau_plus)
    check_int("batch_budget", batch_budget)
    check_int("max_batch_rows", max_batch_rows)
    if len(dataset.train_indices) == 0:
        raise ValueError(f"{dataset.name}: no train interactions to fit iALS on")
    device = resolve_device(str(device))

    n_users, n_items = dataset.n_users, dataset.n_items
    u_indptr, u_indices = csr_tensors(dataset, device)
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
