"""Significance and uncertainty of comparisons between runs (issue 16; metrics of SPEC §7).

Three levels, scipy.stats underneath:

- **Two runs on the same users** (:func:`paired`): per-user values a_i, b_i (i = 1..n) of one
  metric. Relative gain g = mean(a) / mean(b) − 1 with a 95 % percentile bootstrap interval
  over users, the paired t-test and the Wilcoxon signed-rank test on d_i = a_i − b_i.
- **Seeds of one config** (:func:`seed_interval`): mean ± t_{0.975, s−1} · sd / √s.
- **Two configs over seeds** (:func:`compare_configs`): Welch's t-test on the seed means, and
  the paired comparison of the seed-averaged per-user values where every seed has them.

A family of claims is corrected with :func:`holm`; :func:`verdict` turns a claim's direction,
its gain and its adjusted p-value into "holds (significant)", "holds (not significant)",
"does not hold" or "missing". A gain of exactly 0 (identical runs) reads "holds (not
significant)": a tie is no evidence against the claim, and it is not significant (p = 1).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from scipy import stats as sps

if TYPE_CHECKING:
    from mmlrepro.per_user import PerUser

__all__ = ["ALPHA", "Paired", "SeedSummary", "ConfigComparison", "paired", "bootstrap_gains",
           "seed_interval", "welch", "seed_average", "stack_per_user", "compare_configs",
           "holm", "verdict", "describe", "VERDICTS", "NO_PER_USER"]

ALPHA = 0.05                 # significance level of every verdict (after Holm's correction)
LEVEL = 0.95                 # confidence level of every interval
N_BOOT = 2000                # bootstrap resamples
BOOT_ELEMENTS = 1 << 22      # resampled user indices drawn per chunk (~32 MB of int64)
VERDICTS = ("holds (significant)", "holds (not significant)", "does not hold", "missing")
NO_PER_USER = "no per-user values"
Claim = Literal["a > b", "a < b"]


@dataclass(frozen=True)
class Paired:
    """Paired comparison of runs a and b on the same ``n_users`` users (:func:`paired`)."""

    gain: float          # mean_a / mean_b − 1
    ci_low: float        # percentile bootstrap interval of the gain
    ci_high: float
    p_t: float           # paired t-test, two-sided
    p_wilcoxon: float    # Wilcoxon signed-rank, two-sided
    n_users: int
    mean_a: float
    mean_b: float


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    if a.shape != b.shape or len(a) < 2:
        raise ValueError(f"paired values need the same users, >= 2 of them: got {len(a)} and "
                         f"{len(b)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired values contain NaN or inf")
    if b.mean() <= 0:
        raise ValueError(f"mean(b) = {b.mean()}: the relative gain mean(a)/mean(b) - 1 needs "
                         "mean(b) > 0")
    return a, b


def bootstrap_gains(a, b, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """``n_boot`` resampled gains g* = Σ a_{I_j} / Σ b_{I_j} − 1, I_j ~ Uniform{1..n} i.i.d.

    Users are resampled with replacement (the same draw for a and b: the pairing is kept) from
    ``np.random.default_rng(seed)``, in chunks of ~``BOOT_ELEMENTS`` indices, vectorised.
    A resample whose Σ b is 0 gives inf / NaN (only possible on tiny or nearly-empty data).
    """
    a, b = _pair(a, b)
    n = len(a)
    rng = np.random.default_rng(seed)
    rows = max(1, BOOT_ELEMENTS // n)
    out = np.empty(n_boot)
    with np.errstate(divide="ignore", invalid="ignore"):
        for start in range(0, n_boot, rows):
            idx = rng.integers(0, n, size=(min(rows, n_boot - start), n))
            out[start:start + len(idx)] = a[idx].sum(1) / b[idx].sum(1) - 1.0
    return out


def paired(a, b, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> Paired:
    """Compare runs a and b on the same users (per-user values of one metric, same order).

    - gain g = mean(a) / mean(b) − 1; interval: the (1−level)/2 and (1+level)/2 quantiles of
      :func:`bootstrap_gains` (percentile bootstrap, reproducible for a ``seed``).
    - p_t: paired t-test (``scipy.stats.ttest_rel``), t = mean(d) / (sd(d) / √n), d = a − b,
      n − 1 degrees of freedom: tests E[d] = 0.
    - p_wilcoxon: Wilcoxon signed-rank (``scipy.stats.wilcoxon``, zero differences dropped,
      normal approximation for large n): tests that d is symmetric about 0.
    When every d_i is 0 (identical runs) both p-values are 1.0 (scipy would give NaN / raise);
    when every d_i is the same non-zero shift, p_t is 0.0 (sd(d) = 0: t is infinite).
    """
    a, b = _pair(a, b)
    mean_a, mean_b = float(a.mean()), float(b.mean())
    gains = bootstrap_gains(a, b, n_boot, seed)
    lo, hi = np.quantile(gains, [(1 - level) / 2, (1 + level) / 2])
    diff = a - b
    if np.all(diff == 0):
        p_t = p_w = 1.0
    elif np.ptp(diff) <= 1e-9 * abs(diff[0]):  # a constant shift (to rounding): sd(d) ≈ 0, t infinite
        p_t, p_w = 0.0, float(sps.wilcoxon(a, b).pvalue)
    else:
        p_t = float(sps.ttest_rel(a, b).pvalue)
        p_w = float(sps.wilcoxon(a, b).pvalue)
    return Paired(mean_a / mean_b - 1.0, float(lo), float(hi), p_t, p_w, len(a), mean_a, mean_b)


@dataclass(frozen=True)
class SeedSummary:
    """One config over ``n`` seeds: mean, sample sd and the t-interval of the mean."""

    mean: float
    ci_low: float
    ci_high: float
    sd: float
    n: int


def seed_interval(values, level: float = LEVEL) -> SeedSummary:
    """mean ± t_{(1+level)/2, n−1} · s / √n of one metric over n seeds (s: sd with n − 1).

    With one seed sd and the interval are NaN.
    """
    x = np.asarray(values, np.float64).reshape(-1)
    if len(x) == 0:
        raise ValueError("seed_interval needs at least one value")
    mean = float(x.mean())
    if len(x) < 2:
        return SeedSummary(mean, float("nan"), float("nan"), float("nan"), 1)
    sd = float(x.std(ddof=1))
    half = float(sps.t.ppf((1 + level) / 2, len(x) - 1)) * sd / np.sqrt(len(x))
    return SeedSummary(mean, mean - half, mean + half, sd, len(x))


def welch(a_means, b_means) -> float:
    """Two-sided Welch t-test p-value of seed means (``ttest_ind(equal_var=False)``).

    t = (x̄_a − x̄_b) / √(s_a²/n_a + s_b²/n_b), Welch–Satterthwaite degrees of freedom
    ν = (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a−1) + (s_b²/n_b)²/(n_b−1)).
    NaN when either side has fewer than 2 seeds; 1.0 when all seed means are equal, 0.0 when
    each side's are equal and the sides differ (no spread: t is infinite).
    """
    a = np.asarray(a_means, np.float64).reshape(-1)
    b = np.asarray(b_means, np.float64).reshape(-1)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if np.all(a == a[0]) and np.all(b == b[0]):   # no spread on either side: certain either way
        return 1.0 if a[0] == b[0] else 0.0
    with warnings.catch_warnings():   # one side's seeds all equal: scipy warns, the p-value stands
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        return float(sps.ttest_ind(a, b, equal_var=False).pvalue)


def seed_average(per_user_runs: Sequence[np.ndarray]) -> np.ndarray:
    """(1/s) Σ_seeds v_seed: the per-user values averaged over seeds (same users, same order)."""
    runs = [np.asarray(r, np.float64).reshape(-1) for r in per_user_runs]
    if not runs or any(len(r) != len(runs[0]) for r in runs):
        raise ValueError("seed_average needs >= 1 per-user array, all over the same users")
    return np.mean(runs, axis=0)


def stack_per_user(runs: Sequence[PerUser], metric: str) -> list[np.ndarray]:
    """``metric``'s per-user arrays of ``runs`` (:class:`mmlrepro.per_user.PerUser`), checked to
    cover the same users in the same order."""
    if not runs:
        raise ValueError("no run given")
    for r in runs[1:]:
        if not np.array_equal(r.users, runs[0].users):
            raise ValueError("per-user values cover different users; compare runs evaluated "
                             "on the same dataset")
    return [np.asarray(r.values[metric]) for r in runs]


@dataclass(frozen=True)
class ConfigComparison:
    """Configs a and b over seeds (:func:`compare_configs`); ``paired`` is None without
    per-user values for every seed."""

    a: SeedSummary
    b: SeedSummary
    gain: float                   # mean over seeds of a / that of b − 1 (NaN: b's is 0)
    p_welch: float
    paired: Paired | None


def compare_configs(a_means, b_means, a_per_user: Sequence[np.ndarray] | None = None,
                    b_per_user: Sequence[np.ndarray] | None = None, n_boot: int = N_BOOT,
                    seed: int = 0) -> ConfigComparison:
    """Config a against config b, each run over several seeds, on one metric.

    ``a_means`` / ``b_means``: the metric of each seed. Gain: mean(a_means) / mean(b_means) − 1,
    NaN (undefined, no exception) when mean(b_means) is 0; Welch's test (:func:`welch`) on the
    seed means. Where per-user arrays are given for the seeds of both configs, :func:`paired` on
    ``seed_average(a_per_user)`` against ``seed_average(b_per_user)`` (users in the same order,
    e.g. via :func:`stack_per_user`); ``paired`` is None when either side has none, or when b's
    seed-averaged per-user mean is 0 (no relative gain). Per-user arrays for some seeds of a
    side only are refused (``ValueError``): the paired test and the seed means would describe
    different runs.
    """
    sa, sb = seed_interval(a_means), seed_interval(b_means)
    sides = []
    for name, means, arrays in (("a", sa, a_per_user), ("b", sb, b_per_user)):
        given = arrays is not None and len(arrays) > 0
        if given and len(arrays) != means.n:
            raise ValueError(f"per-user values for {len(arrays)} of the {means.n} seeds of {name}: give "
                             "them for every seed or for none")
        sides.append(given)
    pair = None
    if all(sides):
        a_avg, b_avg = seed_average(a_per_user), seed_average(b_per_user)
        pair = paired(a_avg, b_avg, n_boot, seed) if b_avg.mean() > 0 else None
    gain = sa.mean / sb.mean - 1.0 if sb.mean != 0 else float("nan")
    return ConfigComparison(sa, sb, gain, welch(a_means, b_means), pair)


def holm(pvalues: Sequence[float | None]) -> np.ndarray:
    """Holm's step-down adjustment: p_(1) ≤ … ≤ p_(m) sorted, adjusted

        p̃_(i) = min(1, max_{j ≤ i} (m − j + 1) · p_(j)),

    returned in the input order. None / NaN entries (no test) stay NaN and do not count in m.
    Rejecting p̃ ≤ α controls the family-wise error rate at α.
    """
    p = np.array([np.nan if v is None else v for v in pvalues], np.float64).reshape(-1)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if len(ok) == 0:
        return out
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def verdict(claim: Claim, gain: float | None, p_adjusted: float | None,
            alpha: float = ALPHA) -> str:
    """The verdict on a claim "a > b" (gain > 0 claimed) or "a < b" (gain < 0 claimed).

    - "missing": no p-value (None / NaN: no per-user values) or no gain;
    - "does not hold": the gain has the opposite sign (whatever p);
    - "holds (significant)": the claimed sign and p_adjusted ≤ alpha;
    - "holds (not significant)": the claimed sign and p_adjusted > alpha, or a gain of exactly
      0 (identical runs: no evidence against the claim, p = 1).
    """
    if claim not in ("a > b", "a < b"):
        raise ValueError(f"claim must be 'a > b' or 'a < b', got {claim!r}")
    if gain is None or p_adjusted is None or np.isnan(gain) or np.isnan(p_adjusted):
        return "missing"
    signed = gain if claim == "a > b" else -gain
    if signed < 0:
        return "does not hold"
    return "holds (significant)" if signed > 0 and p_adjusted <= alpha else \
        "holds (not significant)"


def describe(result: Paired | None, p_adjusted: float | None = None, claim: Claim = "a > b",
             alpha: float = ALPHA) -> str:
    """One line for a report: "+3.21 % [+1.02 %, +5.10 %], p_holm = 0.003: holds
    (significant)"; ``"no per-user values"`` when ``result`` is None. ``p_adjusted`` defaults
    to the unadjusted paired t-test p-value."""
    if result is None:
        return NO_PER_USER
    p = result.p_t if p_adjusted is None else p_adjusted
    name = "p_t" if p_adjusted is None else "p_holm"
    return (f"{100 * result.gain:+.2f} % [{100 * result.ci_low:+.2f} %, "
            f"{100 * result.ci_high:+.2f} %], {name} = {p:.3g}: "
            f"{verdict(claim, result.gain, p, alpha)}")
