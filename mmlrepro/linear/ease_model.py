"""EASE (Steck 2019), biased and debiased by a class prior τ⁺ (the derivation: :mod:`mmlrepro.linear`).

One inversion P = (XᵀX + λI)⁻¹ in place (peak about two n_items² matrices), turned into the
weights B for each prior τ⁺ (:func:`ease_priors`); τ⁺ = 0 is Steck's EASE exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from mmlrepro.data import Dataset
from mmlrepro.devices import resolve_device
from mmlrepro.linear.checks import check_number, check_tau
from mmlrepro.linear.sparse import csr_tensors, gram_matrix, sparse_rows


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
    (see :mod:`mmlrepro.linear`); the diagonal is again exactly zero.
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
    lam = check_number("lam", lam, low=0.0)
    taus = [check_tau(t) for t in tau_values]
    if not taus:
        raise ValueError("tau_values: give at least one prior τ⁺ (0 for the biased EASE)")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    device = resolve_device(str(device))
    p = gram_matrix(dataset, device, dtype)
    counts = p.diagonal().clone()  # X binary: diag(XᵀX) = item counts c
    p.diagonal().add_(lam)
    _spd_inverse_(p)
    indptr, indices = csr_tensors(dataset, device)
    for i, tau in enumerate(taus):
        weights = p if i == len(taus) - 1 else p.clone()
        yield EASE(ease_weights_(weights, counts, tau), indptr, indices, lam, tau)
