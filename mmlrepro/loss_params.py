"""The losses' hyperparameters: each loss's defaults and the checks that normalise them (SPEC §5, §8).

:func:`check_loss_params` merges a loss's hyperparameters with its defaults
(:data:`LOSS_DEFAULTS`, registry order) and checks them (``ValueError`` naming the parameter),
returning them normalised (floats, tuples). :func:`mmlrepro.losses.get_loss` binds them to the
formula; :class:`mmlrepro.config.RunConfig` normalises a run's loss parameters with them, without
importing torch (tensors given as values are read where torch is already loaded).
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

BSL_MODES = ("multi", "reweight")


def _is_tensor(value: Any) -> bool:
    """Whether ``value`` is a torch tensor (asked without importing torch: none exists before)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _real(name: str, value: Any) -> float:
    if _is_tensor(value) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _reals(name: str, value: Any) -> tuple[float, ...]:
    if _is_tensor(value) or isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a sequence of numbers, got {value!r}")
    return tuple(_real(f"{name}[{i}]", v) for i, v in enumerate(value))


def _positive(name: str, value: Any) -> float:
    value = _real(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def _non_negative(name: str, value: Any) -> float:
    value = _real(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _cosine_margin(name: str, value: Any) -> float:
    value = _real(name, value)
    if not -1.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [-1, 1] (cosine scale), got {value}")
    return value


def _class_prior(name: str, value: Any) -> float:
    value = _real(name, value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {value}")
    return value


def _margins_weights(margins: Any, weights: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    margins = _reals("margins", margins)
    weights = _reals("weights", weights)
    if not margins:
        raise ValueError("margins must not be empty")
    for i, m in enumerate(margins):
        if not -1.0 <= m <= 1.0:
            raise ValueError(f"margins[{i}] must lie in [-1, 1] (cosine scale), got {m}")
    for i in range(1, len(margins)):
        if margins[i] <= margins[i - 1]:
            raise ValueError(f"margins must be strictly increasing, got {list(margins)}")
    if len(weights) != len(margins):
        raise ValueError(
            f"weights must have one entry per margin: {len(weights)} weights for "
            f"{len(margins)} margins"
        )
    for i, w in enumerate(weights):
        if w < 0:
            raise ValueError(f"weights[{i}] must be >= 0, got {w}")
    return margins, weights


def _check_mml(hp: dict[str, Any]) -> dict[str, Any]:
    margins, weights = _margins_weights(hp["margins"], hp["weights"])
    return {
        "margins": margins,
        "weights": weights,
        "pos_weight": _non_negative("pos_weight", hp["pos_weight"]),
        "neg_weight": _non_negative("neg_weight", hp["neg_weight"]),
    }


def _check_ccl(hp: dict[str, Any]) -> dict[str, Any]:
    return {
        "margin": _cosine_margin("margin", hp["margin"]),
        "neg_weight": _non_negative("neg_weight", hp["neg_weight"]),
    }


def _check_none(hp: dict[str, Any]) -> dict[str, Any]:
    return {}


def _check_hinge(hp: dict[str, Any]) -> dict[str, Any]:
    return {"margin": _cosine_margin("margin", hp["margin"])}


def _check_bsl(hp: dict[str, Any]) -> dict[str, Any]:
    if hp["mode"] not in BSL_MODES:
        raise ValueError(f"mode must be one of {BSL_MODES}, got {hp['mode']!r}")
    return {
        "tau1": _positive("tau1", hp["tau1"]),
        "tau2": _positive("tau2", hp["tau2"]),
        "mode": hp["mode"],
    }


def _check_ssm(hp: dict[str, Any]) -> dict[str, Any]:
    return {"tau": _positive("tau", hp["tau"])}


def _check_infonce_plus(hp: dict[str, Any]) -> dict[str, Any]:
    return {
        "tau": _positive("tau", hp["tau"]),
        "lam": _positive("lam", hp["lam"]),
        "eps": _non_negative("eps", hp["eps"]),
    }


def _check_debiased_infonce(hp: dict[str, Any]) -> dict[str, Any]:
    return {
        "tau": _positive("tau", hp["tau"]),
        "tau_plus": _class_prior("tau_plus", hp["tau_plus"]),
    }


def _check_debiased_ccl(hp: dict[str, Any]) -> dict[str, Any]:
    return {**_check_ccl(hp), "tau_plus": _class_prior("tau_plus", hp["tau_plus"])}


# Defaults: the SPEC §8 Gowalla MF values where the paper gives them; [assumed] elsewhere:
# ssm/infonce_plus/debiased_infonce tau 0.1 (between BSL's tuned 0.08 and 0.11), infonce_plus
# lam = eps = 1 (plain InfoNCE, the neutral point of the family), tau_plus 0.01 (a tuning knob;
# the data's own prior, mean train items per user / items, is ~7e-4 on Gowalla).
LOSS_DEFAULTS: dict[str, Mapping[str, Any]] = {
    "mml": {"margins": (0.7, 0.8, 0.9), "weights": (0.10, 0.15, 0.75), "pos_weight": 1.0, "neg_weight": 700.0},
    "ccl": {"margin": 0.9, "neg_weight": 150.0},
    "bpr": {},
    "hinge": {"margin": 0.9},
    "softmax_ce": {},
    "mse": {},
    "bsl": {"tau1": 0.08, "tau2": 1.22, "mode": "multi"},
    "ssm": {"tau": 0.1},
    "infonce_plus": {"tau": 0.1, "lam": 1.0, "eps": 1.0},
    "debiased_infonce": {"tau": 0.1, "tau_plus": 0.01},
    "debiased_ccl": {"margin": 0.9, "neg_weight": 150.0, "tau_plus": 0.01},
}
LOSS_CHECKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "mml": _check_mml, "ccl": _check_ccl, "bpr": _check_none, "hinge": _check_hinge,
    "softmax_ce": _check_none, "mse": _check_none, "bsl": _check_bsl, "ssm": _check_ssm,
    "infonce_plus": _check_infonce_plus, "debiased_infonce": _check_debiased_infonce,
    "debiased_ccl": _check_debiased_ccl,
}


def check_loss_params(name: str, hp: Mapping[str, Any], use_defaults: bool = True) -> dict[str, Any]:
    """The checked hyperparameters ``hp`` of loss ``name`` (see :func:`mmlrepro.losses.get_loss`).

    Hyperparameters not given come from ``LOSS_DEFAULTS[name]`` unless ``use_defaults`` is
    False, in which case every one must be given. ``ValueError`` naming the problem: an unknown
    loss, an unknown or missing hyperparameter, or a bad value.
    """
    if name not in LOSS_DEFAULTS:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(LOSS_DEFAULTS)}")
    defaults = LOSS_DEFAULTS[name]
    unknown = sorted(set(hp) - set(defaults))
    if unknown:
        allowed = ", ".join(defaults) or "none"
        raise ValueError(
            f"{name}: unknown hyperparameter(s) {', '.join(unknown)} (allowed: {allowed})"
        )
    merged = {**defaults, **hp} if use_defaults else dict(hp)
    missing = [k for k in defaults if k not in merged]
    if missing:
        raise ValueError(f"{name}: missing hyperparameter(s) {', '.join(missing)}")
    try:
        return LOSS_CHECKS[name](merged)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None
