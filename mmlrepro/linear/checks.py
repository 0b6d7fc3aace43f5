"""Argument checks of the linear models and their configs: each raises ``ValueError`` before any compute."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def check_number(name: str, value: Any, *, low: float, low_ok: bool = False,
                 high: float = math.inf) -> float:
    ok = (isinstance(value, int | float) and not isinstance(value, bool)
          and math.isfinite(value) and (value >= low if low_ok else value > low) and value < high)
    if not ok:
        bound = f"{'>=' if low_ok else '>'} {low}" + (f" and < {high}" if high < math.inf else "")
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def check_int(name: str, value: Any, low: int = 1) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_tau(tau_plus: Any) -> float:
    return check_number("tau_plus", tau_plus, low=0.0, low_ok=True, high=1.0)
