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

The package: :mod:`~mmlrepro.linear.ease_model` (EASE, its debiased weights, one inversion for
several priors), :mod:`~mmlrepro.linear.ials_model` (iALS: exact ALS half-steps, the objective),
:mod:`~mmlrepro.linear.runs` (:class:`LinearConfig`, the ``linear`` group's grid, fitting,
storing and reading runs), :mod:`~mmlrepro.linear.sparse` (the binary train matrix as torch
tensors) and :mod:`~mmlrepro.linear.checks` (argument checks, raised before any compute).
"""

from mmlrepro.linear.ease_model import EASE, ease, ease_priors, ease_weights_
from mmlrepro.linear.ials_model import IALS, IALS_DEFAULTS, als_reg, als_solve, ials, ials_objective
from mmlrepro.linear.runs import (
    EASE_LAMBDAS,
    IALS_GRID,
    METHODS,
    PROFILES,
    QUICK_IALS_EPOCHS,
    QUICK_ITEMS,
    TAU_PLUS,
    LinearConfig,
    fit_linear,
    linear_dataset,
    linear_grid,
    linear_result,
    read_linear_results,
    reduce_items,
    run_linear,
    run_linear_group,
    save_linear_result,
)
from mmlrepro.linear.sparse import gram_matrix, sparse_rows

__all__ = [
    "EASE", "EASE_LAMBDAS", "IALS", "IALS_DEFAULTS", "IALS_GRID", "METHODS", "PROFILES",
    "QUICK_IALS_EPOCHS", "QUICK_ITEMS", "TAU_PLUS", "LinearConfig", "als_reg", "als_solve", "ease",
    "ease_priors", "ease_weights_", "fit_linear", "gram_matrix", "ials", "ials_objective",
    "linear_dataset", "linear_grid", "linear_result", "read_linear_results", "reduce_items",
    "run_linear", "run_linear_group", "save_linear_result", "sparse_rows",
]
