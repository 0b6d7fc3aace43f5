"""MML's per-negative penalty, its slope and which negatives it pushes (SPEC §5 notes).

The geometry helpers of notebook 01 (CCL is MML with one margin and weight 1): the penalty one
negative of score s gets, its slope (the gradient weight) and the active set. They apply the
loss registry's own formula and hyperparameter checks (:mod:`mmlrepro.losses`), so a plotted
curve is the loss's.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

# The formula and the checks of the loss registry, shared so that the curve is MML's own.
from mmlrepro.loss_params import _margins_weights, _non_negative, _reals
from mmlrepro.losses import margin_penalty


def penalty_curve(
    similarity: Tensor | np.ndarray,
    margins: Sequence[float],
    weights: Sequence[float],
    neg_weight: float = 1.0,
    n_negatives: int = 1,
) -> tuple[Tensor, Tensor] | tuple[np.ndarray, np.ndarray]:
    """MML's penalty on one negative of score s and its slope, SPEC §5 notes:

        penalty(s) = (w_neg/N)·Σ_k w_k·relu(s − m_k)
        slope(s)   = (w_neg/N)·Σ_{k: m_k < s} w_k

    Convex and piecewise linear; on (m_k, m_{k+1}] the slope is (w_neg/N)·(w_1 + ... + w_k).
    CCL is one margin with weight 1 (``margins=[m], weights=[1], neg_weight=w``). At a kink the
    slope is the left one (as the autograd gradient of relu at 0). NumPy in, NumPy out.
    """
    margins, weights = _margins_weights(margins, weights)
    neg_weight = _non_negative("neg_weight", neg_weight)
    if (
        isinstance(n_negatives, bool)
        or not isinstance(n_negatives, numbers.Integral)
        or n_negatives < 1
    ):
        raise ValueError(f"n_negatives must be an integer >= 1, got {n_negatives!r}")
    is_numpy = not isinstance(similarity, Tensor)
    s = torch.as_tensor(np.asarray(similarity, dtype=np.float64)) if is_numpy else similarity
    scale = neg_weight / n_negatives
    penalty = scale * margin_penalty(s, margins, weights)
    slope = scale * _active_weight(s, margins, weights)
    if is_numpy:
        return penalty.numpy(), slope.numpy()
    return penalty, slope


def _active_weight(s: Tensor, margins: Sequence[float], weights: Sequence[float]) -> Tensor:
    """Σ_{k: m_k < s} w_k, elementwise (the derivative of Σ_k w_k·relu(s − m_k))."""
    dtype = s.dtype if s.is_floating_point() else torch.get_default_dtype()
    out = torch.zeros(s.shape, dtype=dtype, device=s.device)
    for m, w in zip(margins, weights, strict=True):
        out = out + (s > m).to(dtype) * w
    return out


def active_negatives(
    neg: Tensor, margins: Sequence[float], weights: Sequence[float] | None = None
) -> tuple[Tensor, Tensor]:
    """Which negatives get a non-zero MML/CCL gradient, and how much.

    Returns ``(mask, weight)``: ``mask = s⁻ > min_k m_k`` (bool, shape of ``neg``) and
    ``weight = Σ_{k: m_k < s⁻} w_k``, so that ∂loss_row/∂s⁻_j = (w_neg/N)·weight_j (SPEC §5).
    ``weights`` defaults to all ones (then ``weight`` counts the margins passed).
    ``mask.float().mean()`` is the share of negatives with a non-zero gradient.
    """
    if weights is None:
        weights = [1.0] * len(_reals("margins", margins))
    margins, weights = _margins_weights(margins, weights)
    return neg > margins[0], _active_weight(neg, margins, weights)
