"""Every loss of SPEC §5, one registry.

Notation: ``pos`` is s⁺, the score of each batch row's positive, shape ``[B]``; ``neg`` holds
s⁻_j (j = 1..N), the scores of the row's sampled negatives, shape ``[B, N]``. Scores are cosine
similarities, but training-time dropout on the normalised user vector lets them exceed 1
(SPEC §3), so nothing here assumes ``|s| <= 1``. Every loss is the mean of a per-row loss
over the B rows and returns a scalar tensor.

The plain functions (``mml``, ``ccl``, ...) are the formulas, with keyword-only
hyperparameters and no checks. Outside code should use ``get_loss(name, **hp)``: it validates
the hyperparameters once, up front (``ValueError`` naming the parameter), checks tensor shapes
on every call, and returns ``loss(pos, neg, users=None)``. Only BSL ``mode="multi"`` uses
``users`` (the user id of every batch row); the other losses ignore it.

Every log-sum-exp goes through ``torch.logsumexp`` (temperatures down to 0.08 and scores above
1 would overflow a raw ``exp`` in float32).

MML's per-negative penalty and slope, for the margin-geometry notebook, are in
:mod:`mmlrepro.geometry.penalty` (``penalty_curve``, ``active_negatives``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mmlrepro.kernels import compiled_kernels
from mmlrepro.loss_params import (
    BSL_MODES,
    LOSS_CHECKS,
    LOSS_DEFAULTS,
    check_loss_params,
)

__all__ = [
    "LOSSES",
    "BoundLoss",
    "LossSpec",
    "bpr",
    "bsl",
    "ccl",
    "debiased_ccl",
    "debiased_infonce",
    "describe",
    "get_loss",
    "hinge",
    "infonce_plus",
    "loss_names",
    "margin_penalty",
    "mml",
    "mse",
    "softmax_ce",
    "ssm",
]

# --------------------------------------------------------------------------------------------
# The losses (SPEC §5). Plain functions: no hyperparameter checks, see get_loss.
# --------------------------------------------------------------------------------------------


# The compiled margin penalty (mmlrepro.kernels) takes over from this many scores on; below it
# the loop's few small passes cost less than the call, and a small batch compiles nothing.
COMPILED_PENALTY_MIN = 2048


def margin_penalty_loop(s: Tensor, margins: Sequence[float], weights: Sequence[float]) -> Tensor:
    """Σ_k w_k·relu(s − m_k), elementwise, in PyTorch: a loop over the K margins (K <= 4 in the
    papers), never over rows; with one margin and weight 1 it is bit-for-bit relu(s − m)."""
    out = F.relu(s - margins[0]) * weights[0]
    for m, w in zip(margins[1:], weights[1:], strict=True):
        out = out + F.relu(s - m) * w
    return out


class _CompiledMarginPenalty(torch.autograd.Function):
    """:func:`margin_penalty_loop` and its gradient Σ_k [s − m_k > 0]·g·w_k, each in one pass of
    the compiled kernel (``mmlrepro/csrc/margin_penalty.cpp``): the same operations in the same
    order per element as the loop and autograd, so the same bits."""

    @staticmethod
    def forward(ctx, s: Tensor, margins: list[float], weights: list[float], kernels) -> Tensor:
        ctx.save_for_backward(s)
        ctx.margins, ctx.weights, ctx.kernels = margins, weights, kernels
        return kernels.margin_penalty_forward(s, margins, weights)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (s,) = ctx.saved_tensors
        return ctx.kernels.margin_penalty_backward(grad, s, ctx.margins, ctx.weights), None, None, None


def _kernel_layout(s: Tensor) -> Tensor | None:
    """``s`` as the kernel reads it, rows × cols with unit stride along a row (a view), or None."""
    if s.dim() == 2 and s.stride(1) == 1:
        return s
    return s.view(-1, s.shape[-1]) if s.dim() >= 1 and s.is_contiguous() and s.shape[-1] else None


def margin_penalty(s: Tensor, margins: Sequence[float], weights: Sequence[float]) -> Tensor:
    """Σ_k w_k·relu(s − m_k), elementwise: MML's penalty of each negative score (SPEC §5).

    On the CPU, for a float32/float64 batch of at least :data:`COMPILED_PENALTY_MIN` scores laid
    out as rows of unit stride (the negatives' columns of a batch's scores are), through the
    compiled kernel of :mod:`mmlrepro.kernels`: one pass forward and one backward where the loop
    makes about 4K each, bit-identical to it. Otherwise, or where the kernels are not built,
    :func:`margin_penalty_loop`."""
    rows = _kernel_layout(s) if (s.device.type == "cpu" and s.numel() >= COMPILED_PENALTY_MIN
                                 and s.dtype in (torch.float32, torch.float64)) else None
    kernels = compiled_kernels() if rows is not None else None
    if kernels is None:
        return margin_penalty_loop(s, margins, weights)
    out = _CompiledMarginPenalty.apply(rows, [float(m) for m in margins], [float(w) for w in weights],
                                       kernels)
    return out.view(s.shape)


def mml(
    pos: Tensor,
    neg: Tensor,
    *,
    margins: Sequence[float],
    weights: Sequence[float],
    pos_weight: float,
    neg_weight: float,
) -> Tensor:
    """Multi-Margin (Cosine) Loss, SPEC §5 [code, author's repo]:

        w_pos·relu(1 − s⁺) + (w_neg / N)·Σ_j Σ_k w_k·relu(s⁻_j − m_k)

    With ``margins=[m], weights=[1], pos_weight=1`` it is exactly ``ccl(margin=m)``.
    """
    neg_term = margin_penalty(neg, margins, weights).mean(dim=-1)
    return (pos_weight * F.relu(1.0 - pos) + neg_weight * neg_term).mean()


def ccl(pos: Tensor, neg: Tensor, *, margin: float, neg_weight: float) -> Tensor:
    """Cosine Contrastive Loss (SimpleX), SPEC §5 [code]:

    relu(1 − s⁺) + (w / N)·Σ_j relu(s⁻_j − m)
    """
    neg_term = F.relu(neg - margin).mean(dim=-1)
    return (F.relu(1.0 - pos) + neg_weight * neg_term).mean()


def bpr(pos: Tensor, neg: Tensor) -> Tensor:
    """BPR on cosine scores, no temperature, SPEC §5 [code, RecBox]:

    mean_j −log σ(s⁺ − s⁻_j) = mean_j softplus(s⁻_j − s⁺)
    """
    return F.softplus(neg - pos[:, None]).mean(dim=-1).mean()


def hinge(pos: Tensor, neg: Tensor, *, margin: float) -> Tensor:
    """Pairwise hinge, SPEC §5 [code, RecBox]: mean_j relu(m + s⁻_j − s⁺) (paper m = 0.9)."""
    return F.relu(margin + neg - pos[:, None]).mean(dim=-1).mean()


def softmax_ce(pos: Tensor, neg: Tensor) -> Tensor:
    """Softmax cross-entropy over [s⁺, s⁻_1..N], no temperature, SPEC §5 [code, RecBox]:

    −log softmax([s⁺, s⁻])₀ = −s⁺ + log(e^{s⁺} + Σ_j e^{s⁻_j})
    """
    logits = torch.cat([pos[:, None], neg], dim=-1)
    return (torch.logsumexp(logits, dim=-1) - pos).mean()


def mse(pos: Tensor, neg: Tensor) -> Tensor:
    """Mean squared error towards 1 / 0, SPEC §5 [code, RecBox]:

    ½(s⁺ − 1)² + ½·Σ_j (s⁻_j)²     (a sum over negatives, not a mean)
    """
    return (0.5 * (pos - 1.0) ** 2 + 0.5 * (neg**2).sum(dim=-1)).mean()


def _group_ids(users: Tensor) -> Tensor:
    """Dense group id in [0, B) of every row, equal ids for equal users. Sort-based, so it never
    synchronises with the device (torch.unique would)."""
    sorted_users, order = torch.sort(users)
    new_group = torch.ones_like(sorted_users, dtype=torch.long)
    new_group[1:] = (sorted_users[1:] != sorted_users[:-1]).long()
    group_sorted = torch.cumsum(new_group, dim=0) - 1
    return torch.empty_like(group_sorted).scatter_(0, order, group_sorted)


def _log_mean_exp_by_group(x: Tensor, users: Tensor) -> Tensor:
    """Row b gets log mean_{b' : users[b'] = users[b]} e^{x_b'}: a segmented log-sum-exp with
    scatter ops (buffers of size B, since there are at most B groups), stabilised by the group
    max (detached: it cancels mathematically)."""
    groups = _group_ids(users)
    n = x.shape[0]
    gmax = torch.full((n,), -math.inf, dtype=x.dtype, device=x.device)
    gmax = gmax.scatter_reduce(0, groups, x.detach(), reduce="amax", include_self=True)
    shift = gmax[groups]
    gsum = torch.zeros(n, dtype=x.dtype, device=x.device).scatter_add(
        0, groups, torch.exp(x - shift)
    )
    gcount = torch.zeros(n, dtype=x.dtype, device=x.device).scatter_add(
        0, groups, torch.ones_like(x)
    )
    return torch.log(gsum[groups]) + shift - torch.log(gcount[groups])


def bsl(
    pos: Tensor,
    neg: Tensor,
    users: Tensor | None = None,
    *,
    tau1: float,
    tau2: float,
    mode: str,
) -> Tensor:
    """Bilateral Softmax Loss (Wu et al. 2024), SPEC §5 [code, BSL repo ``utils/losses.py``].

    ``mode="multi"`` (the paper runs; needs ``users``), with B_u = the batch rows of the same user
    as the row (the row included)::

        −log mean_{b'∈B_u} e^{s⁺_{b'}/τ₁} + τ₂·log mean_j e^{s⁻_j/τ₁}

    ``mode="reweight"`` (the BSL repo sums the negatives here) = MINE+ with λ = τ₂::

        −s⁺/τ₁ + τ₂·log Σ_j e^{s⁻_j/τ₁}

    The mean over negatives in "multi" only shifts the loss by τ₂·log N (no gradient effect); it
    is kept so that values match the BSL code.
    """
    if mode == "reweight":
        return (tau2 * torch.logsumexp(neg / tau1, dim=-1) - pos / tau1).mean()
    if mode != "multi":
        raise ValueError(f"bsl: mode must be one of {BSL_MODES}, got {mode!r}")
    if users is None:
        raise ValueError("bsl: mode='multi' needs users (the user id of every batch row)")
    log_n = math.log(neg.shape[-1])
    pos_term = _log_mean_exp_by_group(pos / tau1, users)
    neg_term = torch.logsumexp(neg / tau1, dim=-1) - log_n
    return (tau2 * neg_term - pos_term).mean()


def ssm(pos: Tensor, neg: Tensor, *, tau: float) -> Tensor:
    """Sampled softmax / InfoNCE, SPEC §5 [text]:

    −s⁺/τ + log(e^{s⁺/τ} + Σ_j e^{s⁻_j/τ})
    """
    logits = torch.cat([pos[:, None], neg], dim=-1) / tau
    return (torch.logsumexp(logits, dim=-1) - pos / tau).mean()


def infonce_plus(pos: Tensor, neg: Tensor, *, tau: float, lam: float, eps: float) -> Tensor:
    """InfoNCE+ (Li, Jin, Ren 2023), SPEC §5 [recon]:

        −s⁺/τ + λ·log(ε·e^{s⁺/τ} + Σ_j e^{s⁻_j/τ})

    λ = ε = 1 is InfoNCE (``ssm``), ε = 0 is MINE+ (the positive leaves the partition exactly:
    the term is dropped, not multiplied by 0), ε = 0 and λ = 1 is DCL. The log is a logsumexp
    over [s⁺/τ + log ε, s⁻_j/τ].
    """
    if eps == 0:
        lse = torch.logsumexp(neg / tau, dim=-1)
    else:
        logits = torch.cat([pos[:, None] / tau + math.log(eps), neg / tau], dim=-1)
        lse = torch.logsumexp(logits, dim=-1)
    return (lam * lse - pos / tau).mean()


def _log1mexp(d: Tensor) -> Tensor:
    """log(1 − e^d) for d < 0 (Mächler's two-branch form, accurate on both sides of −log 2).
    Callers mask d >= 0; inputs there are replaced so that no branch makes inf/nan gradients."""
    d = torch.where(d < 0, d, torch.full_like(d, -1.0))
    near = torch.log(-torch.expm1(torch.where(d > -math.log(2), d, torch.full_like(d, -1.0))))
    far = torch.log1p(-torch.exp(torch.where(d <= -math.log(2), d, torch.full_like(d, -1.0))))
    return torch.where(d > -math.log(2), near, far)


def debiased_infonce(pos: Tensor, neg: Tensor, *, tau: float, tau_plus: float) -> Tensor:
    """Debiased InfoNCE (Chuang et al. 2020), SPEC §5 [text]:

        −s⁺/τ + log(e^{s⁺/τ} + N·max(g, e^{−1/τ})),
        g = (mean_j e^{s⁻_j/τ} − τ⁺·e^{s⁺/τ}) / (1 − τ⁺)

    In log space: log(N·max(g, e^{−1/τ})) = log N + max(log g, −1/τ), with
    log g = A + log(1 − e^{D−A}) − log(1 − τ⁺), A = log mean_j e^{s⁻_j/τ}, D = s⁺/τ + log τ⁺
    (log g = −∞ when g <= 0). τ⁺ = 0 gives log g = A exactly.
    """
    n = neg.shape[-1]
    log_mean_neg = torch.logsumexp(neg / tau, dim=-1) - math.log(n)
    if tau_plus == 0:
        log_g = log_mean_neg
    else:
        d = pos / tau + math.log(tau_plus) - log_mean_neg
        log_g = torch.where(
            d < 0,
            log_mean_neg + _log1mexp(d) - math.log1p(-tau_plus),
            torch.full_like(d, -math.inf),
        )
    log_neg = math.log(n) + log_g.clamp(min=-1.0 / tau)
    lse = torch.logsumexp(torch.stack([pos / tau, log_neg], dim=-1), dim=-1)
    return (lse - pos / tau).mean()


def debiased_ccl(
    pos: Tensor, neg: Tensor, *, margin: float, neg_weight: float, tau_plus: float
) -> Tensor:
    """Debiased CCL, SPEC §5 [recon] -- the project's reading of Li, Jin, Ren 2023: CCL whose
    negative term is debiased like Chuang et al. 2020, the positive's own hinge standing in for
    the positive part of the sampled negatives::

        relu(1 − s⁺) + (w / (1 − τ⁺))·max(0, mean_j relu(s⁻_j − m) − τ⁺·relu(s⁺ − m))

    τ⁺ = 0 is exactly ``ccl``.
    """
    neg_mean = F.relu(neg - margin).mean(dim=-1)
    debiased = (neg_mean - tau_plus * F.relu(pos - margin)).clamp(min=0.0)
    return (F.relu(1.0 - pos) + (neg_weight / (1.0 - tau_plus)) * debiased).mean()


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossSpec:
    """One registry entry: the plain function, its default hyperparameters, the validator that
    normalises them (floats, tuples), the formula as text (for notebooks and reports), its SPEC
    source tag, and whether the loss reads the batch's user ids."""

    name: str
    fn: Callable[..., Tensor]
    defaults: Mapping[str, Any]
    check: Callable[[dict[str, Any]], dict[str, Any]]
    formula: str
    source: str
    uses_users: bool = False


# The defaults and checks of each loss's hyperparameters: mmlrepro.loss_params.
LOSSES: dict[str, LossSpec] = {
    spec.name: spec
    for spec in [
        LossSpec(
            "mml",
            mml,
            LOSS_DEFAULTS["mml"],
            LOSS_CHECKS["mml"],
            "w_pos·relu(1 − s⁺) + (w_neg/N)·Σ_j Σ_k w_k·relu(s⁻_j − m_k)",
            "[code] MML author's repo",
        ),
        LossSpec(
            "ccl",
            ccl,
            LOSS_DEFAULTS["ccl"],
            LOSS_CHECKS["ccl"],
            "relu(1 − s⁺) + (w/N)·Σ_j relu(s⁻_j − m)",
            "[code] SimpleX",
        ),
        LossSpec(
            "bpr",
            bpr,
            LOSS_DEFAULTS["bpr"],
            LOSS_CHECKS["bpr"],
            "mean_j −log σ(s⁺ − s⁻_j)",
            "[code] RecBox",
        ),
        LossSpec(
            "hinge",
            hinge,
            LOSS_DEFAULTS["hinge"],
            LOSS_CHECKS["hinge"],
            "mean_j relu(m + s⁻_j − s⁺)",
            "[code] RecBox",
        ),
        LossSpec(
            "softmax_ce",
            softmax_ce,
            LOSS_DEFAULTS["softmax_ce"],
            LOSS_CHECKS["softmax_ce"],
            "−log softmax([s⁺, s⁻_1..N])₀",
            "[code] RecBox",
        ),
        LossSpec(
            "mse",
            mse,
            LOSS_DEFAULTS["mse"],
            LOSS_CHECKS["mse"],
            "½(s⁺ − 1)² + ½·Σ_j (s⁻_j)²",
            "[code] RecBox",
        ),
        LossSpec(
            "bsl",
            bsl,
            LOSS_DEFAULTS["bsl"],
            LOSS_CHECKS["bsl"],
            "multi: −log mean_{b'∈B_u} e^{s⁺_b'/τ₁} + τ₂·log mean_j e^{s⁻_j/τ₁}; "
            "reweight: −s⁺/τ₁ + τ₂·log Σ_j e^{s⁻_j/τ₁}",
            "[code] BSL repo",
            uses_users=True,
        ),
        LossSpec(
            "ssm",
            ssm,
            LOSS_DEFAULTS["ssm"],
            LOSS_CHECKS["ssm"],
            "−s⁺/τ + log(e^{s⁺/τ} + Σ_j e^{s⁻_j/τ})",
            "[text]",
        ),
        LossSpec(
            "infonce_plus",
            infonce_plus,
            LOSS_DEFAULTS["infonce_plus"],
            LOSS_CHECKS["infonce_plus"],
            "−s⁺/τ + λ·log(ε·e^{s⁺/τ} + Σ_j e^{s⁻_j/τ})",
            "[recon] Li, Jin, Ren 2023",
        ),
        LossSpec(
            "debiased_infonce",
            debiased_infonce,
            LOSS_DEFAULTS["debiased_infonce"],
            LOSS_CHECKS["debiased_infonce"],
            "−s⁺/τ + log(e^{s⁺/τ} + N·max(g, e^{−1/τ})), "
            "g = (mean_j e^{s⁻_j/τ} − τ⁺·e^{s⁺/τ})/(1 − τ⁺)",
            "[text] Chuang et al. 2020",
        ),
        LossSpec(
            "debiased_ccl",
            debiased_ccl,
            LOSS_DEFAULTS["debiased_ccl"],
            LOSS_CHECKS["debiased_ccl"],
            "relu(1 − s⁺) + (w/(1 − τ⁺))·max(0, mean_j relu(s⁻_j − m) − τ⁺·relu(s⁺ − m))",
            "[recon] project's reading of Li, Jin, Ren 2023",
        ),
    ]
}


def loss_names() -> list[str]:
    """Names of every registered loss, registry order."""
    return list(LOSSES)


def _spec(name: str) -> LossSpec:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(LOSSES)}")
    return LOSSES[name]


def describe(name: str) -> str:
    """One line for notebooks: ``name(defaults): formula  source``."""
    spec = _spec(name)
    args = ", ".join(f"{k}={v!r}" for k, v in spec.defaults.items())
    return f"{spec.name}({args}): {spec.formula}  {spec.source}"


@dataclass(frozen=True)
class BoundLoss:
    """A loss with validated hyperparameters: ``loss(pos[B], neg[B, N], users[B] | None)``."""

    name: str
    hp: Mapping[str, Any] = field(repr=True)
    spec: LossSpec = field(repr=False)

    def __call__(self, pos: Tensor, neg: Tensor, users: Tensor | None = None) -> Tensor:
        _check_inputs(self.name, pos, neg, users)
        if self.spec.uses_users:
            return self.spec.fn(pos, neg, users, **self.hp)
        return self.spec.fn(pos, neg, **self.hp)


def _check_inputs(name: str, pos: Tensor, neg: Tensor, users: Tensor | None) -> None:
    """Shape checks only (no device synchronisation)."""
    if not isinstance(pos, Tensor) or not isinstance(neg, Tensor):
        raise ValueError(f"{name}: pos and neg must be tensors")
    if pos.ndim != 1:
        raise ValueError(f"{name}: pos must have shape [B], got {tuple(pos.shape)}")
    if neg.ndim != 2 or neg.shape[0] != pos.shape[0]:
        raise ValueError(
            f"{name}: neg must have shape [B, N] with B = {pos.shape[0]}, got {tuple(neg.shape)}"
        )
    if neg.shape[1] < 1:
        raise ValueError(f"{name}: need N >= 1 negatives per row, got N = {neg.shape[1]}")
    if not pos.is_floating_point() or not neg.is_floating_point():
        raise ValueError(
            f"{name}: pos and neg must be floating point, got {pos.dtype}, {neg.dtype}"
        )
    if users is not None and (users.shape != pos.shape or users.is_floating_point()):
        raise ValueError(
            f"{name}: users must be an integer tensor of shape [B] = {tuple(pos.shape)}, got "
            f"{users.dtype} {tuple(users.shape)}"
        )


def get_loss(name: str, /, *, use_defaults: bool = True, **hp: Any) -> BoundLoss:
    """The validated loss ``name`` of SPEC §5 with hyperparameters ``hp``.

    Hyperparameters not given come from ``LOSSES[name].defaults`` unless ``use_defaults`` is
    False, in which case every one must be given. Raises ``ValueError`` naming the problem: an
    unknown loss, an unknown or missing hyperparameter, or a bad value (margins not strictly
    increasing or outside [-1, 1], weights negative or of another length than the margins,
    negative pos_weight/neg_weight, τ <= 0, τ⁺ outside [0, 1), ε < 0, λ <= 0, an unknown BSL mode).
    BSL ``multi`` further needs ``users`` at call time.
    """
    spec = _spec(name)
    checked = check_loss_params(name, hp, use_defaults)
    return BoundLoss(name, checked, spec)
