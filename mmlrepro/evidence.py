"""What each reproduced number and each claim rests on: evidence levels, the claims' tests (issue 16,
:mod:`mmlrepro.stats`) and their verdicts (issue 33). Nothing here reads a store except
:class:`Tester`, which loads the per-user values of the runs it is given.

**A cell** (one number of a paper table) is the mean over its seeds of the selected-epoch metric
(SPEC §10: reproduced when that mean over at least 3 seeds lies within ±5 % of the paper's):
:func:`cell_level` reads "reproduced (3 seeds, within ±5 %)", "agrees at 1 seed" / "agrees at 2
seeds" (within ±5 % on fewer than 3 seeds), "differs at n seeds" or "missing".

**A claim** rests on one or more *parts*, "cell a beats cell b on a metric" (:class:`Part`). A
part's gain is mean_a / mean_b − 1 over the seed means; where every run of both cells has per-user
values, its 95 % interval is the paired bootstrap over users of the seed-averaged per-user values
and ``p_users`` the paired t-test (test-set sampling noise); where both cells have ≥ 2 seeds,
``p_seeds`` is Welch's test on the seed means (training noise). The part's p-value is the larger
of those available. A claim holds only if every part does (its p-value is their largest: an
intersection-union test); the claims of one family are corrected by Holm, a comparison made by two
claims counted once. Evidence levels of a claim (:data:`CLAIM_LEVELS`):

- "significant (users and seeds)": every part tested over users and over seeds, p_Holm ≤ α;
- "significant over users, 1 seed": as above with a part of one seed a side (no seed test);
- "significant over seeds (no per-user values)": tested over seeds only;
- "not significant": every part tested, the claimed sign, p_Holm > α;
- "untested (no per-user values)": the claimed sign, a part that cannot be tested (one seed and
  no per-user values); the tests of its other parts are still shown (:attr:`Claim.parts_text`);
- "no test (a rule on the numbers)": a claim that is a rule on numbers alone (e.g. a stop epoch);
- "does not hold, …": a part with the wrong sign (even if another part lacks runs), or the claim's
  rule fails. The reversal is graded like a claim that holds, on its own test (the deciding
  part's p-value, corrected by Holm with the family): "does not hold, significant over users, 1
  seed" (and the other significant levels), "does not hold, not significant", "does not hold,
  untested (no per-user values)"; a rule that fails on the numbers alone reads "does not hold, by
  a rule on the numbers". A reversal inside the noise is not a refutation, and says so;
- "missing": runs missing.

A claim about a gain the paper gives also says how ours compares (:attr:`Claim.vs_paper`): whether
the paper's gain lies inside our 95 % interval over users, or, without an interval, the ratio of
our gain to the paper's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from mmlrepro.per_user import PerUser
from mmlrepro.results import ResultsStore
from mmlrepro.stats import ALPHA, LEVEL, NO_PER_USER, compare_configs, holm, stack_per_user

NAN = float("nan")
BAND = 0.05                     # a reproduced number lies within ±5 % of the paper's (SPEC §10)
REPRODUCED_SEEDS = 3            # ... as the mean over at least 3 seeds (SPEC §10)

SIG_BOTH = "significant (users and seeds)"
SIG_USERS = "significant over users, 1 seed"
SIG_SEEDS = "significant over seeds (no per-user values)"
NOT_SIG = "not significant"
UNTESTED = f"untested ({NO_PER_USER})"
RULE_ONLY = "no test (a rule on the numbers)"
FAILS = "does not hold"        # the verdict; its evidence levels grade the reversal (FAILS_LEVELS)
MISSING = "missing"
TESTED_LEVELS = (SIG_BOTH, SIG_USERS, SIG_SEEDS)           # the claimed sign, and a test says it is not noise
SIGN_ONLY_LEVELS = (NOT_SIG, UNTESTED, RULE_ONLY)           # the claimed sign, without a significant test
FAILS_RULE = f"{FAILS}, by a rule on the numbers"
FAILS_TESTED_LEVELS = tuple(f"{FAILS}, {v}" for v in TESTED_LEVELS)       # a significant reversal
FAILS_LEVELS = (*FAILS_TESTED_LEVELS, f"{FAILS}, {NOT_SIG}", f"{FAILS}, {UNTESTED}", FAILS_RULE)
CLAIM_LEVELS = (*TESTED_LEVELS, *SIGN_ONLY_LEVELS, *FAILS_LEVELS, MISSING)


def _seeds(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def cell_level(seeds: float, rel_diff: float) -> str:
    """The evidence level of one reproduced number: "missing" without runs; within ±5 % of the
    paper's, "reproduced (n seeds, within ±5 %)" from 3 seeds on, else "agrees at n seed(s)";
    outside, "differs at n seed(s)" (SPEC §10)."""
    if not seeds or (isinstance(seeds, float) and math.isnan(seeds)) or math.isnan(rel_diff):
        return MISSING
    n = int(seeds)
    if abs(rel_diff) > BAND:
        return f"differs at {_seeds(n)}"
    return f"reproduced ({n} seeds, within ±5 %)" if n >= REPRODUCED_SEEDS else f"agrees at {_seeds(n)}"


def cell_reproduced(level: str) -> bool:
    """Whether a :func:`cell_level` is SPEC §10's "reproduced"."""
    return level.startswith("reproduced")


@dataclass(frozen=True)
class Part:
    """One comparison a claim rests on: the runs of cell ``a`` beat those of cell ``b`` on
    ``metric`` (rows of :func:`mmlrepro.results.load_results`, one per seed). ``name``: how a
    table shows it ("MML > CCL"); ``paper_gain``: the paper's a / b − 1 (NaN if it gives none)."""

    a: pd.DataFrame
    b: pd.DataFrame
    metric: str
    name: str = ""
    paper_gain: float = NAN

    @property
    def label(self) -> str:
        """How the part is named in a table: its ``name``, else its metric."""
        return self.name or self.metric

    @property
    def signature(self) -> tuple:
        """The runs compared: two parts with one signature are one comparison (Holm counts it once)."""
        keys = (tuple(sorted(side["key"])) if "key" in side else () for side in (self.a, self.b))
        return (*keys, self.metric)


@dataclass(frozen=True)
class PartTest:
    """A :class:`Part` tested: ``gain`` = mean_a / mean_b − 1 of the seed means; the 95 %
    bootstrap interval over users and ``p_users``, the paired t-test (NaN without per-user
    values); ``p_seeds``, Welch's test of the seed means (NaN with < 2 seeds a side); ``p``,
    the larger of the two available (NaN: no test possible); ``seeds``: the fewer of the two
    cells' seed counts."""

    gain: float
    ci_low: float
    ci_high: float
    p_users: float
    p_seeds: float
    missing: bool
    seeds: int = 0

    @property
    def p(self) -> float:
        available = [v for v in (self.p_users, self.p_seeds) if not math.isnan(v)]
        return max(available) if available else NAN

    @property
    def tested(self) -> bool:
        return not self.missing and not math.isnan(self.p)


class Tester:
    """Tests the parts of claims on one store, loading each run's per-user values once."""

    def __init__(self, results_dir: str | Path | None = None) -> None:
        self.store = ResultsStore(results_dir)   # a bad per-user file is named (issue 32)
        self._loaded: dict[str, PerUser | None] = {}

    def per_user(self, key: str) -> PerUser | None:
        if key not in self._loaded:
            self._loaded[key] = self.store.per_user(key)
        return self._loaded[key]

    def test(self, part: Part) -> PartTest:
        """The part's gain and tests. A mean of 0 for b (no relative gain) reads as a part that
        cannot be tested, handled here rather than in :func:`mmlrepro.stats.compare_configs`.
        The paired test needs per-user values for every run of both cells (seeds with and
        without them: no paired test)."""
        if part.a.empty or part.b.empty:
            return PartTest(NAN, NAN, NAN, NAN, NAN, True)
        a_means = part.a[part.metric].to_numpy(float)
        b_means = part.b[part.metric].to_numpy(float)
        seeds = min(len(a_means), len(b_means))
        if not np.mean(b_means) > 0:
            return PartTest(NAN, NAN, NAN, NAN, NAN, False, seeds)
        values = [self.per_user(k) for k in [*part.a["key"], *part.b["key"]]]
        arrays = None
        if all(v is not None for v in values):
            try:
                arrays = stack_per_user(values, part.metric)
            except ValueError:      # evaluated on other users: no paired test
                arrays = None
        n = len(a_means)
        try:
            result = compare_configs(a_means, b_means, arrays and arrays[:n], arrays and arrays[n:])
        except (ValueError, ZeroDivisionError):     # per-user means of 0: no paired test
            result = compare_configs(a_means, b_means)
        pair = result.paired
        return PartTest(result.gain, pair.ci_low if pair else NAN, pair.ci_high if pair else NAN,
                        pair.p_t if pair else NAN, result.p_welch, False, seeds)


def _pct(v: float) -> str:
    return "–" if math.isnan(v) else f"{100 * v:+.1f}%"


@dataclass(frozen=True)
class Claim:
    """One claim of the text, tested: its ``text``, the ``numbers`` behind it, its ``parts`` and
    their ``tests`` (same order), ``rule`` (a further condition on the numbers, e.g. "within 5
    points of the paper's gain"; None: its runs are missing; a claim without parts is that rule
    alone) and ``p_holm`` (set by :func:`family`)."""

    text: str
    numbers: str
    parts: tuple[Part, ...] = ()
    tests: tuple[PartTest, ...] = ()
    rule: bool | None = True
    p_holm: float = NAN

    @property
    def missing(self) -> bool:
        return self.rule is None or any(t.missing for t in self.tests)

    @property
    def decides(self) -> PartTest | None:
        """The part that decides: if any part with runs has the wrong sign, the reversal best
        tested (the smallest p-value; untested ones after, the most negative gain among equals),
        else the one with the largest p-value (an untestable part first), the smallest gain among
        equals; None when runs are missing or for a rule alone."""
        wrong = [t for t in self.tests if not t.missing and t.gain < 0]
        if wrong:
            return min(wrong, key=lambda t: (math.isnan(t.p), 0.0 if math.isnan(t.p) else t.p, t.gain))
        if self.missing or not self.tests:
            return None
        return max(self.tests, key=lambda t: (math.inf if math.isnan(t.p) else t.p, -t.gain))

    @property
    def deciding_part(self) -> Part | None:
        test = self.decides
        return None if test is None else self.parts[self.tests.index(test)]

    @property
    def reversed(self) -> bool:
        """Whether a part with runs has the wrong sign (then it decides, :attr:`decides`)."""
        return any(not t.missing and t.gain < 0 for t in self.tests)

    @property
    def p(self) -> float:
        """The claim's p-value: for a claim with a part of the wrong sign, that reversal's
        (two-sided, so it tests the reversal; NaN untested); else the largest of its parts' (NaN
        unless every part is tested)."""
        if self.reversed:
            return self.decides.p
        if self.missing or not self.tests or not all(t.tested for t in self.tests):
            return NAN
        return max(t.p for t in self.tests)

    @property
    def holds(self) -> bool | None:
        """False when a part with runs has the wrong sign (whatever the other parts: the claim
        needs every part), else None when runs are missing, else whether the rule holds."""
        if self.reversed:
            return False
        if self.missing:
            return None
        return bool(self.rule) and all(t.gain >= 0 for t in self.tests)

    @property
    def verdict(self) -> str:
        return MISSING if self.holds is None else ("holds" if self.holds else FAILS)

    @property
    def evidence(self) -> str:
        """The evidence level (:data:`CLAIM_LEVELS`)."""
        if self.holds is None:
            return MISSING
        if not self.holds:
            return f"{FAILS}, {self._tested_level([self.decides])}" if self.reversed else FAILS_RULE
        if not self.tests:
            return RULE_ONLY
        return self._tested_level(self.tests)

    def _tested_level(self, tests: Sequence[PartTest]) -> str:
        """How far ``tests`` (every part, or the reversed one) are tested: untested without a
        p-value, not significant at p_Holm > α or a gain of 0, else over what they are."""
        if math.isnan(self.p_holm):
            return UNTESTED
        if self.p_holm > ALPHA or self.decides.gain == 0:
            return NOT_SIG
        users = all(not math.isnan(t.p_users) for t in tests)
        seeds = all(not math.isnan(t.p_seeds) for t in tests)
        return SIG_BOTH if users and seeds else (SIG_USERS if users else SIG_SEEDS)

    @property
    def vs_paper(self) -> str:
        """How our gain compares with the paper's, for the deciding part of a claim about a gain:
        "paper +6.2%: above our 95% interval [+0.5%, +2.9%]" (inside / below), or without an
        interval "ours +1.5% = 0.24 × the paper's +6.2%"; "" when the paper gives no gain."""
        part, test = self.deciding_part, self.decides
        if part is None or math.isnan(part.paper_gain) or math.isnan(test.gain):
            return ""
        paper = part.paper_gain
        if not math.isnan(test.ci_low):
            where = ("inside" if test.ci_low <= paper <= test.ci_high
                     else "above" if paper > test.ci_high else "below")
            return f"paper {_pct(paper)}: {where} our {LEVEL:.0%} interval [{_pct(test.ci_low)}, {_pct(test.ci_high)}]"
        ratio = test.gain / paper if paper else NAN
        return f"ours {_pct(test.gain)} = {ratio:.2f} × the paper's {_pct(paper)}"

    @property
    def parts_text(self) -> str:
        """Each part's test, for a claim of several parts: "MML > CCL +1.2% [+0.4%, +2.0%] p
        0.003; MML > BSL +0.3%, no per-user values" (p unadjusted); "" for one part."""
        if len(self.parts) < 2 or not self.tests:
            return ""
        out = []
        for part, t in zip(self.parts, self.tests, strict=True):
            text = f"{part.label}: "
            if t.missing:
                out.append(text + MISSING)
                continue
            text += _pct(t.gain)
            if not math.isnan(t.ci_low):
                text += f" [{_pct(t.ci_low)}, {_pct(t.ci_high)}]"
            out.append(text + (f" p {t.p:.2g}" if t.tested else f", {NO_PER_USER}"))
        return "; ".join(out)


def claim(tester: Tester, text: str, numbers: str, parts: Sequence[Part] = (),
          rule: bool | None = True) -> Claim:
    """A :class:`Claim` with its parts tested. A number whose runs are missing (``nan``,
    ``+nan%``) shows as ``–`` in ``numbers``."""
    import re

    shown = re.sub(r"[+-]?\bnan\b%?", "–", numbers)
    return Claim(text, shown, tuple(parts), tuple(tester.test(p) for p in parts), rule)


def family(claims: Sequence[Claim]) -> list[Claim]:
    """Holm's correction over a family of claims (:func:`mmlrepro.stats.holm`): each claim's
    ``p_holm`` set; claims resting on the same comparisons (equal part signatures) count once."""
    distinct: dict[tuple, float] = {}
    for c in claims:
        if not math.isnan(c.p):
            distinct.setdefault(tuple(p.signature for p in c.parts), c.p)
    adjusted = dict(zip(distinct, holm(list(distinct.values())), strict=True)) if distinct else {}
    return [replace(c, p_holm=float(adjusted.get(tuple(p.signature for p in c.parts), NAN))) for c in claims]


CLAIM_COLUMNS = ["claim", "reproduced", "decides", "gain_pct", "ci_low_pct", "ci_high_pct", "p_users", "p_seeds", "p",
                 "p_holm", "verdict", "evidence", "vs_paper", "parts"]


def claims_frame(claims: Sequence[Claim]) -> pd.DataFrame:
    """A family of claims (:func:`family` applied) as a frame of :data:`CLAIM_COLUMNS`; the gain,
    interval and p-values are those of the deciding part (:attr:`Claim.decides`), in %, and
    ``decides`` names that part for a claim of several parts ("" otherwise). The ``Claim``
    objects ride along in ``frame.attrs["claims"]``."""
    rows = []
    for c in family(claims):
        d = c.decides
        part = c.deciding_part if len(c.parts) > 1 else None
        rows.append({"claim": c.text, "reproduced": c.numbers,
                     "decides": "" if part is None else part.label,
                     "gain_pct": NAN if d is None else 100 * d.gain,
                     "ci_low_pct": NAN if d is None else 100 * d.ci_low,
                     "ci_high_pct": NAN if d is None else 100 * d.ci_high,
                     "p_users": NAN if d is None else d.p_users, "p_seeds": NAN if d is None else d.p_seeds,
                     "p": c.p, "p_holm": c.p_holm, "verdict": c.verdict, "evidence": c.evidence,
                     "vs_paper": c.vs_paper, "parts": c.parts_text})
    frame = pd.DataFrame(rows, columns=CLAIM_COLUMNS)
    frame.attrs["claims"] = family(claims)
    return frame


def claims_display(claims: pd.DataFrame) -> pd.DataFrame:
    """A claims frame (:func:`claims_frame`) as text for a table: gain in % (with the part it
    belongs to, for a claim of several parts: "+2.10% for MML > CCL (NDCG)"), the 95 % interval
    over users (or "no per-user values"), the p-values (users, seeds, Holm's) to two significant
    digits, the evidence level, the comparison with the paper's gain and each part's test (for a
    claim of several parts)."""
    def pct(v: float) -> str:
        return "–" if pd.isna(v) else f"{v:+.2f}%"

    def interval(row: pd.Series) -> str:
        if row["verdict"] == MISSING or pd.isna(row["gain_pct"]):   # nothing measured, or a rule alone
            return "–"
        if pd.isna(row["ci_low_pct"]):
            return NO_PER_USER
        return f"[{row['ci_low_pct']:+.2f}%, {row['ci_high_pct']:+.2f}%]"

    out = claims[["claim", "reproduced"]].copy()
    out["gain"] = [pct(g) + (f" for {name}" if name and not pd.isna(g) else "")
                   for g, name in zip(claims["gain_pct"], claims["decides"], strict=True)]
    out[f"{LEVEL:.0%} interval (users)"] = claims.apply(interval, axis=1) if len(claims) else []
    for column, name in (("p_users", "p users"), ("p_seeds", "p seeds"), ("p_holm", "p (Holm)")):
        out[name] = claims[column].map(lambda v: "–" if pd.isna(v) else f"{v:.2g}")
    out["evidence"] = claims["evidence"]
    if "vs_paper" in claims and (claims["vs_paper"] != "").any():
        out["vs the paper's gain"] = claims["vs_paper"].replace("", "–")
    if "parts" in claims and (claims["parts"] != "").any():
        out["parts"] = claims["parts"].replace("", "–")
    return out
