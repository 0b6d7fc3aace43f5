"""mmlrepro.stats against scipy.stats, hand computations and simulations with a planted gain."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from mmlrepro import stats
from mmlrepro.per_user import PerUser
from mmlrepro.stats import (
    ALPHA,
    NO_PER_USER,
    bootstrap_gains,
    compare_configs,
    describe,
    holm,
    paired,
    seed_average,
    seed_interval,
    stack_per_user,
    verdict,
    welch,
)


def zero_inflated(n: int, rng: np.random.Generator, mean_nonzero: float = 0.4) -> np.ndarray:
    """Per-user values like a recall: ~60 % zeros, the rest in (0, 1]."""
    return (rng.random(n) < 0.4) * rng.beta(2, 2 / mean_nonzero - 2, n)


def planted(n: int, gain: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """a_i = (1 + gain) · b_i · m_i, E[m] = 1 independent of b: E[a] / E[b] − 1 = gain."""
    rng = np.random.default_rng(seed)
    b = zero_inflated(n, rng)
    return (1 + gain) * b * rng.uniform(0.5, 1.5, n), b


# --- paired comparison --------------------------------------------------------------------

def test_paired_hand_values_and_scipy():
    b = np.array([0.375, 0.3125, 0.0, 0.125, 0.75, 0.0625, 0.5])   # dyadic: exact differences
    d = np.array([1 / 8, -1 / 16, 1 / 4, 3 / 8, 1 / 8, 1 / 16, 0.0])
    a = b + d
    r = paired(a, b)
    assert r.mean_a == pytest.approx(3.0 / 7) and r.mean_b == pytest.approx(2.125 / 7)
    assert r.gain == pytest.approx(3.0 / 2.125 - 1)
    assert r.n_users == 7
    t = d.mean() / (d.std(ddof=1) / math.sqrt(7))                # t by hand
    assert r.p_t == pytest.approx(2 * sps.t.sf(abs(t), 6), rel=1e-12)
    assert r.p_t == pytest.approx(sps.ttest_rel(a, b).pvalue, rel=1e-12)
    assert r.p_wilcoxon == pytest.approx(sps.wilcoxon(a, b).pvalue, rel=1e-12)
    # Wilcoxon by hand: the zero difference dropped (n = 6); ranks of |d|: 1/16, 1/16 → 1.5
    # each; 1/8, 1/8 → 3.5 each; 1/4 → 5; 3/8 → 6. W- = 1.5 (the -1/16), W+ = 19.5
    assert sps.wilcoxon(a, b).statistic == 1.5
    assert r.ci_low < r.gain < r.ci_high


def test_bootstrap_is_the_ratio_of_resampled_means():
    a, b = planted(40, 0.1, seed=3)
    rng = np.random.default_rng(11)                  # the same draws, one resample at a time
    ref = [a[i].mean() / b[i].mean() - 1 for i in rng.integers(0, 40, size=(50, 40))]
    np.testing.assert_allclose(bootstrap_gains(a, b, 50, seed=11), ref, rtol=1e-12)
    r = paired(a, b, n_boot=50, seed=11)
    assert (r.ci_low, r.ci_high) == pytest.approx(tuple(np.quantile(ref, [0.025, 0.975])))


def test_bootstrap_reproducible_and_chunk_free(monkeypatch):
    a, b = planted(500, 0.05, seed=1)
    r1, r2 = paired(a, b, seed=7), paired(a, b, seed=7)
    assert (r1.ci_low, r1.ci_high) == (r2.ci_low, r2.ci_high)
    r3 = paired(a, b, seed=8)
    assert (r3.ci_low, r3.ci_high) != (r1.ci_low, r1.ci_high)
    assert abs(r3.ci_low - r1.ci_low) < 0.03                     # but close: 2,000 resamples
    monkeypatch.setattr(stats, "BOOT_ELEMENTS", 1234)           # many small chunks, same draws
    r4 = paired(a, b, seed=7)
    assert (r4.ci_low, r4.ci_high) == (r1.ci_low, r1.ci_high)


def test_bootstrap_interval_covers_the_planted_gain():
    gain, covered = 0.08, 0
    for s in range(100):
        a, b = planted(300, gain, seed=1000 + s)
        r = paired(a, b, n_boot=1000, seed=s)
        covered += r.ci_low <= gain <= r.ci_high
    assert covered >= 90, covered                                # nominal 95


def test_planted_gain_is_significant():
    a, b = planted(3000, 0.10, seed=5)
    r = paired(a, b)
    assert 0.05 < r.gain < 0.15 and r.ci_low > 0
    assert r.p_t < 1e-3 and r.p_wilcoxon < 1e-3
    assert verdict("a > b", r.gain, r.p_t) == "holds (significant)"
    assert verdict("a < b", r.gain, r.p_t) == "does not hold"
    r0 = paired(*planted(3000, 0.0, seed=6))                      # no gain planted
    assert r0.ci_low < 0 < r0.ci_high and r0.p_t > ALPHA
    assert verdict("a > b" if r0.gain > 0 else "a < b", r0.gain, r0.p_t) == \
        "holds (not significant)"


def test_identical_runs():
    b = zero_inflated(200, np.random.default_rng(0))
    r = paired(b, b.copy())
    assert r.gain == 0.0 and r.ci_low == 0.0 and r.ci_high == 0.0
    assert r.p_t == 1.0 and r.p_wilcoxon == 1.0                  # scipy: NaN / ValueError
    assert verdict("a > b", r.gain, r.p_t) == "holds (not significant)"
    assert verdict("a < b", r.gain, r.p_wilcoxon) == "holds (not significant)"


def test_paired_bad_input():
    with pytest.raises(ValueError, match="same users"):
        paired([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        paired([0.1, np.nan], [0.1, 0.2])
    with pytest.raises(ValueError, match="mean\\(b\\)"):
        paired([0.1, 0.2], [0.0, 0.0])


# --- seeds --------------------------------------------------------------------------------

def test_seed_interval_by_hand():
    s = seed_interval([0.10, 0.12, 0.14])
    half = 4.302652729911275 * 0.02 / math.sqrt(3)              # t_{0.975, 2} = 4.3027
    assert s.mean == pytest.approx(0.12) and s.sd == pytest.approx(0.02) and s.n == 3
    assert (s.ci_low, s.ci_high) == pytest.approx((0.12 - half, 0.12 + half))
    lo, hi = sps.t.interval(0.95, 2, loc=0.12, scale=sps.sem([0.10, 0.12, 0.14]))
    assert (s.ci_low, s.ci_high) == pytest.approx((lo, hi))
    one = seed_interval([0.2])
    assert one.mean == 0.2 and one.n == 1
    assert math.isnan(one.ci_low) and math.isnan(one.ci_high) and math.isnan(one.sd)


def test_welch_by_hand_and_scipy():
    a, b = np.array([0.10, 0.12, 0.14]), np.array([0.09, 0.095, 0.10, 0.09])
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 4
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3)
    assert welch(a, b) == pytest.approx(2 * sps.t.sf(abs(t), df), rel=1e-10)
    assert welch(a, b) == pytest.approx(sps.ttest_ind(a, b, equal_var=False).pvalue)
    assert math.isnan(welch([0.1], [0.2, 0.3]))                   # one seed: no test
    assert welch([0.1, 0.1], [0.1, 0.1]) == 1.0


def test_compare_configs_with_and_without_per_user():
    rng = np.random.default_rng(4)
    base = zero_inflated(1000, rng)
    a_pu = [1.1 * base * rng.uniform(0.8, 1.2, 1000) for _ in range(3)]
    b_pu = [base * rng.uniform(0.8, 1.2, 1000) for _ in range(3)]
    a_m, b_m = [x.mean() for x in a_pu], [x.mean() for x in b_pu]
    c = compare_configs(a_m, b_m, a_pu, b_pu, seed=3)
    assert c.gain == pytest.approx(np.mean(a_m) / np.mean(b_m) - 1)
    assert c.p_welch == pytest.approx(sps.ttest_ind(a_m, b_m, equal_var=False).pvalue)
    assert c.a == seed_interval(a_m) and c.b == seed_interval(b_m)
    np.testing.assert_allclose(seed_average(a_pu), (a_pu[0] + a_pu[1] + a_pu[2]) / 3)
    assert c.paired == paired(seed_average(a_pu), seed_average(b_pu), seed=3)
    assert c.paired.gain == pytest.approx(c.gain)               # same users in every run
    assert c.paired.p_t < ALPHA
    missing = compare_configs(a_m, b_m)
    assert missing.paired is None and missing.p_welch == c.p_welch
    assert describe(missing.paired) == NO_PER_USER == "no per-user values"
    assert verdict("a > b", missing.gain, None) == "missing"


def test_stack_per_user_checks_users():
    runs = [PerUser(np.array([0, 2, 5]), {"recall@20": np.array([0.1, 0.0, 0.5], "f4")}),
            PerUser(np.array([0, 2, 5]), {"recall@20": np.array([0.2, 0.1, 0.5], "f4")})]
    got = stack_per_user(runs, "recall@20")
    np.testing.assert_allclose(seed_average(got), [0.15, 0.05, 0.5], rtol=1e-6)
    other = PerUser(np.array([0, 2, 6]), {"recall@20": np.zeros(3, "f4")})
    with pytest.raises(ValueError, match="different users"):
        stack_per_user([runs[0], other], "recall@20")


# --- Holm, verdicts -------------------------------------------------------------------------

def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 → running max
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])     # 2 · 0.5 = 1, capped at 1
    np.testing.assert_allclose(holm([0.02]), [0.02])
    out = holm([0.01, None, 0.04, float("nan")])                 # missing: NaN, not counted
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.04])
    assert np.isnan(out[1]) and np.isnan(out[3])
    assert np.isnan(holm([None])).all() and len(holm([])) == 0
    p = np.random.default_rng(0).random(20) ** 3
    adj = holm(p)
    assert np.all(adj >= p) and np.all(adj <= 1)
    assert np.all(np.diff(adj[np.argsort(p)]) >= 0)              # monotone in p
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        holm([0.1, 1.5])


def test_verdicts():
    assert verdict("a > b", 0.05, 0.01) == "holds (significant)"
    assert verdict("a > b", 0.05, ALPHA) == "holds (significant)"     # p ≤ alpha
    assert verdict("a > b", 0.05, 0.2) == "holds (not significant)"
    assert verdict("a > b", -0.05, 0.001) == "does not hold"
    assert verdict("a < b", -0.05, 0.001) == "holds (significant)"
    assert verdict("a < b", 0.05, 0.2) == "does not hold"
    assert verdict("a > b", 0.0, 1.0) == "holds (not significant)"
    assert verdict("a > b", 0.05, None) == "missing"
    assert verdict("a > b", 0.05, float("nan")) == "missing"
    assert verdict("a > b", None, 0.01) == "missing"
    assert set(stats.VERDICTS) == {"holds (significant)", "holds (not significant)",
                                   "does not hold", "missing"}
    with pytest.raises(ValueError, match="claim"):
        verdict("a >= b", 0.1, 0.01)


def test_describe():
    r = stats.Paired(0.0321, 0.0102, 0.0510, 0.004, 0.002, 1000, 0.1032, 0.1)
    assert describe(r, 0.012) == "+3.21 % [+1.02 %, +5.10 %], p_holm = 0.012: holds (significant)"
    assert describe(r) == "+3.21 % [+1.02 %, +5.10 %], p_t = 0.004: holds (significant)"
    assert describe(r, 0.3, claim="a < b").endswith("p_holm = 0.3: does not hold")
    assert describe(None, 0.01) == "no per-user values"


def test_a_constant_shift_is_certain_without_a_numerical_warning():
    import warnings

    a = np.linspace(0.1, 0.5, 50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = paired(a + 0.01, a)
    assert r.p_t == 0.0 and r.p_wilcoxon < 1e-6 and r.ci_low > 0


def test_welch_without_spread_on_either_side():
    assert stats.welch([0.1, 0.1], [0.1, 0.1]) == 1.0
    assert stats.welch([0.2, 0.2], [0.1, 0.1]) == 0.0
    with pytest.warns(RuntimeWarning, match="Precision loss"):   # scipy's own warning, which welch() silences
        expected = sps.ttest_ind([0.2, 0.2], [0.1, 0.12], equal_var=False).pvalue
    assert stats.welch([0.2, 0.2], [0.1, 0.12]) == pytest.approx(expected)
