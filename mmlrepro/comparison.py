"""Reproduced vs reported: the paper's numbers (SPEC §9), ``compare`` and the claims of the text,
and the store's runs as the frames the notebooks' tables and figures take.

Everything here reads the results store; nothing trains. A group's runs are found by their
catalogue keys (:func:`mmlrepro.catalogue.catalogue_key`: the catalogue's configs on the paper's
data), so a stored run on other data, or of another config, is never shown as a paper cell.

Every claim carries its uncertainty (issue 16, :mod:`mmlrepro.stats`): each claim rests on one
or more *parts*, "cell a beats cell b on a metric". A part's gain is mean_a / mean_b − 1 over
the seed means; where every run of both cells has per-user values, its 95 % interval is the
paired bootstrap over users of the seed-averaged per-user values and its p-value the paired
t-test ("p users": test-set sampling noise); where both cells have ≥ 2 seeds, Welch's test on
the seed means is added ("p seeds": seed-to-seed training noise), and the part's p-value is the
larger of the two available (the gain must beat both kinds of noise). A claim of several parts holds only if every part does (its p-value is
their largest: an intersection-union test). The claims of one ``compare`` call are one family,
corrected by Holm.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmlrepro.catalogue import (
    DATASETS,
    LI2023_EPS,
    LI2023_LAMBDAS,
    TABLE3_LOSSES,
    catalogue_key,
    configs,
)
from mmlrepro.linear import read_linear_results
from mmlrepro.metrics import PerUser
from mmlrepro.results import ResultsStore, default_results_dir, load_results
from mmlrepro.stats import (
    LEVEL,
    NO_PER_USER,
    compare_configs,
    holm,
    seed_interval,
    stack_per_user,
    verdict,
)
from mmlrepro.train import early_stop_epochs, select_best

# reported numbers and the comparison


@cache
def reported() -> dict[str, Any]:
    """The paper's numbers (SPEC §9), shipped with the package as ``reported.json``."""
    return json.loads(resources.files("mmlrepro").joinpath("reported.json").read_text())


def reported_frame(table: str) -> pd.DataFrame:
    """``table2`` or ``table3`` as long rows: cell columns, dataset, metric, reported."""
    rows = []
    for entry in reported()[table]:
        cell = {k: v for k, v in entry.items() if k not in DATASETS}
        for d in DATASETS:
            for metric, value in zip(("recall@20", "ndcg@20"), entry[d], strict=True):
                rows.append({**cell, "dataset": d, "metric": metric, "reported": value})
    return pd.DataFrame(rows)


METRICS = ("recall@20", "ndcg@20")


def _runs(group: str | tuple[str, ...], profile: str, results_dir: str | Path | None,
          max_seeds: int = 10) -> pd.DataFrame:
    """Stored runs belonging to ``group`` (or to any of several; matched by config key, any of
    the first seeds), read in one pass over the store."""
    groups = (group,) if isinstance(group, str) else group
    keys = {catalogue_key(c) for g in groups for c in configs(g, profile, max_seeds)}
    frame = load_results(results_dir)
    if frame.empty:
        return frame
    return frame[frame["key"].isin(keys)].copy()


def _aggregate(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean, std, the 95 % t-interval of the mean (:func:`mmlrepro.stats.seed_interval`; NaN
    with one seed) and the count over seeds of the two headline metrics, long format."""
    if frame.empty:
        return pd.DataFrame(columns=[*by, "metric", "mean", "std", "ci_low", "ci_high", "seeds", "device"])
    long = frame.melt(id_vars=[*by, "seed", "device"], value_vars=list(METRICS), var_name="metric")
    agg = long.groupby([*by, "metric"], dropna=False).agg(
        mean=("value", "mean"), std=("value", lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")),
        ci_low=("value", lambda v: seed_interval(v).ci_low), ci_high=("value", lambda v: seed_interval(v).ci_high),
        seeds=("seed", "nunique"), device=("device", lambda v: ", ".join(sorted(set(v)))))
    return agg.reset_index()


def mean_interval(mean: float, ci_low: float) -> str:
    """A cell as text: "mean" of one seed, "mean ± h" of several, h the half-width of the 95 %
    t-interval over seeds (:func:`mmlrepro.stats.seed_interval`); "missing" without runs."""
    if pd.isna(mean):
        return "missing"
    return f"{mean:.4f}" + ("" if pd.isna(ci_low) else f" ± {mean - ci_low:.4f}")


def _with_reported(agg: pd.DataFrame, rep: pd.DataFrame, on: list[str], profile: str) -> pd.DataFrame:
    table = rep.merge(agg, on=on, how="left")
    table["profile"] = profile
    table["rel_diff"] = (table["mean"] - table["reported"]) / table["reported"]
    table["within_5pct"] = np.where(table["mean"].isna(), "missing",
                                    np.where(table["rel_diff"].abs() <= 0.05, "yes", "no"))
    return table


def _cell(table: pd.DataFrame, **where: Any) -> float:
    mask = np.ones(len(table), dtype=bool)
    for k, v in where.items():
        mask &= (table[k] == v).to_numpy()
    values = table.loc[mask, "mean"].dropna()
    return float(values.iloc[0]) if len(values) else float("nan")


# --------------------------------------------------------------------------------------------
# significance of the claims (issue 16)

CLAIM_COLUMNS = ["claim", "reproduced", "gain_pct", "ci_low_pct", "ci_high_pct", "p_users", "p_seeds", "p",
                 "p_holm", "verdict"]


@dataclass(frozen=True)
class Part:
    """One comparison a claim rests on: the runs of cell ``a`` beat those of cell ``b`` on
    ``metric`` (rows of :func:`mmlrepro.results.load_results`, one per seed)."""

    a: pd.DataFrame
    b: pd.DataFrame
    metric: str


@dataclass(frozen=True)
class PartTest:
    """A :class:`Part` tested: ``gain`` = mean_a / mean_b − 1 of the seed means; the 95 %
    bootstrap interval over users and ``p_users``, the paired t-test (NaN without per-user
    values); ``p_seeds``, Welch's test of the seed means (NaN with < 2 seeds a side); ``p``,
    the larger of the two available (NaN: no test possible)."""

    gain: float
    ci_low: float
    ci_high: float
    p_users: float
    p_seeds: float
    missing: bool

    @property
    def p(self) -> float:
        available = [v for v in (self.p_users, self.p_seeds) if not math.isnan(v)]
        return max(available) if available else float("nan")


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
        nan = float("nan")
        if part.a.empty or part.b.empty:
            return PartTest(nan, nan, nan, nan, nan, True)
        a_means = part.a[part.metric].to_numpy(float)
        b_means = part.b[part.metric].to_numpy(float)
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
        except ValueError:          # mean(b) = 0: no relative gain
            return PartTest(nan, nan, nan, nan, nan, False)
        pair = result.paired
        return PartTest(result.gain, pair.ci_low if pair else nan, pair.ci_high if pair else nan,
                        pair.p_t if pair else nan, result.p_welch, False)


def _claim(tester: Tester, text: str, numbers: str, parts: Sequence[Part], rule: bool | None = True) -> dict[str, Any]:
    """One claim row (:data:`CLAIM_COLUMNS`; ``p_holm`` and ``verdict`` are set by
    :func:`_claims`). The gain and interval shown are those of the part that decides: the part
    with the most negative gain, if any has the wrong sign, else the one with the largest p-value
    (an untestable part ranks above every tested one), the smallest gain among equals. ``rule``: a further
    condition of the claim on the numbers (e.g. "within 5 points of the paper's gain"; None: its
    runs are missing). A claim without parts is that rule alone, decided without a test. A
    number whose runs are missing (``nan``, ``+nan%``) shows as ``–``."""
    tests = [tester.test(part) for part in parts]
    row: dict[str, Any] = {"claim": text, "reproduced": re.sub(r"[+-]?\bnan\b%?", "–", numbers),
                           **dict.fromkeys(["gain_pct", "ci_low_pct", "ci_high_pct", "p_users", "p_seeds", "p"],
                                           float("nan")), "_missing": any(t.missing for t in tests),
                           "_rule": rule, "_rule_only": not parts}
    if row["_missing"] or not tests:
        return row
    wrong = [t for t in tests if not t.gain >= 0]
    decides = (min(wrong, key=lambda t: t.gain if t.gain == t.gain else -math.inf) if wrong
               else max(tests, key=lambda t: (math.inf if math.isnan(t.p) else t.p, -t.gain)))
    row.update(gain_pct=100 * decides.gain, ci_low_pct=100 * decides.ci_low, ci_high_pct=100 * decides.ci_high,
               p_users=decides.p_users, p_seeds=decides.p_seeds,
               p=float("nan") if any(math.isnan(t.p) for t in tests) else max(t.p for t in tests))
    return row


def _claims(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The claims of one comparison as a frame: Holm's correction over the family, and the
    verdict: "missing" (runs missing), "does not hold" (a part has the wrong sign, or the
    claim's rule fails), "holds (significant)" / "holds (not significant)" at α = 0.05 after
    Holm, or "holds (no per-user values)" where nothing can be tested."""
    if not rows:
        return pd.DataFrame(columns=CLAIM_COLUMNS)
    frame = pd.DataFrame(rows)
    frame["p_holm"] = holm(frame["p"].tolist())

    def decide(row: pd.Series) -> str:
        if row["_missing"] or row["_rule"] is None:
            return "missing"
        if row["_rule_only"]:     # a rule on the numbers, nothing to test
            return "holds" if row["_rule"] else "does not hold"
        if not row["_rule"] or not row["gain_pct"] >= 0:
            return "does not hold"
        if math.isnan(row["p_holm"]):
            return f"holds ({NO_PER_USER})"
        return verdict("a > b", row["gain_pct"], row["p_holm"])

    frame["verdict"] = frame.apply(decide, axis=1)
    return frame[CLAIM_COLUMNS]


def claims_display(claims: pd.DataFrame) -> pd.DataFrame:
    """``compare(...)["claims"]`` as text for a table: gain in %, the 95 % interval over users
    (or "no per-user values"), the p-values (users, seeds, Holm's of the verdict) to two
    significant digits."""
    def pct(v: float) -> str:
        return "–" if pd.isna(v) else f"{v:+.2f}%"

    def interval(row: pd.Series) -> str:
        if row["verdict"] == "missing" or pd.isna(row["gain_pct"]):   # nothing measured, or a rule alone
            return "–"
        if pd.isna(row["ci_low_pct"]):
            return NO_PER_USER
        return f"[{row['ci_low_pct']:+.2f}%, {row['ci_high_pct']:+.2f}%]"

    out = claims[["claim", "reproduced"]].copy()
    out["gain"] = claims["gain_pct"].map(pct)
    out[f"{LEVEL:.0%} interval (users)"] = claims.apply(interval, axis=1) if len(claims) else []
    for column, name in (("p_users", "p users"), ("p_seeds", "p seeds"), ("p_holm", "p (Holm)")):
        out[name] = claims[column].map(lambda v: "–" if pd.isna(v) else f"{v:.2g}")
    out["verdict"] = claims["verdict"]
    return out


def _rows(runs: pd.DataFrame, **where: Any) -> pd.DataFrame:
    """The runs (one per seed) of the cell ``where``."""
    if runs.empty:
        return runs
    mask = np.ones(len(runs), dtype=bool)
    for k, v in where.items():
        if k not in runs:
            return runs.iloc[0:0]
        mask &= (runs[k] == v).to_numpy()
    return runs[mask]


def _gain(a: float, b: float) -> float:
    return (a / b - 1.0) * 100.0 if b else float("nan")


def _compare_table2(profile: str, results_dir) -> dict[str, pd.DataFrame]:
    runs = _runs("table2", profile, results_dir)
    if not runs.empty:
        runs["early_stop"] = np.where(runs["selection"] == "early_stop", "Y", "N")
    agg = _aggregate(runs, ["model", "loss", "early_stop", "dataset"])
    table = _with_reported(agg, reported_frame("table2"), ["model", "loss", "early_stop", "dataset", "metric"], profile)
    tester, claims = Tester(results_dir), []
    for model in ("simplex", "mf"):
        for es in ("Y", "N"):
            for d in DATASETS:
                for metric in METRICS:
                    where = dict(model=model, early_stop=es, dataset=d)
                    rep = {loss: float(table.loc[(table.loss == loss) & (table.model == model) & (table.early_stop == es)
                                                 & (table.dataset == d) & (table.metric == metric), "reported"].iloc[0])
                           for loss in ("mml", "ccl")}
                    mml = _cell(table, loss="mml", metric=metric, **where)
                    ccl = _cell(table, loss="ccl", metric=metric, **where)
                    claims.append(_claim(
                        tester, f"Table 2: {model} ES={es} {d} {metric}: MML beats CCL (paper: {_gain(rep['mml'], rep['ccl']):+.1f}%)",
                        f"MML {mml:.4f} vs CCL {ccl:.4f}",
                        [Part(_rows(runs, loss="mml", **where), _rows(runs, loss="ccl", **where), metric)]))
    stops = _early_stop_epochs(runs if profile == "paper" else runs.iloc[0:0])  # paper stop epochs: paper settings only
    return {"table": table, "claims": _claims(claims), "stops": stops}


def _early_stop_epochs(runs: pd.DataFrame) -> pd.DataFrame:
    """ES = Y runs: the epoch each stopped after and its best epoch, beside the paper's stop epoch
    (SPEC §8: SimpleX stopped after 33 epochs with CCL and 19 with MML; MF after 19)."""
    columns = ["model", "loss", "dataset", "seeds", "paper_stopped_after", "stopped_after", "best_epoch"]
    if runs.empty or not (runs["selection"] == "early_stop").any():
        return pd.DataFrame(columns=columns)
    paper = reported()["table2_early_stop_epochs"]
    rows = []
    for (model, loss, dataset), sub in runs[runs["selection"] == "early_stop"].groupby(["model", "loss", "dataset"]):
        rows.append({"model": model, "loss": loss, "dataset": dataset, "seeds": sub["seed"].nunique(),
                     "paper_stopped_after": paper.get(f"{model}/{loss}", paper.get(model)),
                     "stopped_after": ", ".join(str(int(e)) for e in sub["epochs_run"]),
                     "best_epoch": ", ".join(str(int(e)) for e in sub["best_epoch"])})
    return pd.DataFrame(rows, columns=columns)


def _compare_table3(profile: str, results_dir) -> dict[str, pd.DataFrame]:
    runs = _runs("table3", profile, results_dir)
    agg = _aggregate(runs, ["loss", "dataset"])
    table = _with_reported(agg, reported_frame("table3"), ["loss", "dataset", "metric"], profile)
    tester, claims = Tester(results_dir), []

    def beats(a: str, b: str, d: str, metric: str) -> Part:
        return Part(_rows(runs, loss=a, dataset=d), _rows(runs, loss=b, dataset=d), metric)

    for d in DATASETS:
        for metric in METRICS:
            mml = _cell(table, loss="mml", dataset=d, metric=metric)
            mse = _cell(table, loss="mse", dataset=d, metric=metric)
            claims.append(_claim(tester, f"Table 3: {d} {metric}: MML beats MSE", f"MML {mml:.4f} vs MSE {mse:.4f}",
                                 [beats("mml", "mse", d, metric)]))
            others = [loss for loss in TABLE3_LOSSES if loss not in ("mml", "bsl")]
            best_other = max((_cell(table, loss=o, dataset=d, metric=metric) for o in others), default=float("nan"))
            claims.append(_claim(tester, f"Table 3: {d} {metric}: MML beats BPR, hinge, softmax CE, MSE and CCL",
                                 f"MML {mml:.4f} vs best of them {best_other:.4f}",
                                 [beats("mml", o, d, metric) for o in others]))
    d = "gowalla"
    r = {loss: _cell(table, loss=loss, dataset=d, metric="recall@20") for loss in ("mml", "bsl", "ccl")}
    n = {loss: _cell(table, loss=loss, dataset=d, metric="ndcg@20") for loss in ("mml", "bsl", "ccl")}
    claims.append(_claim(tester, "Gowalla: MML beats CCL and BSL on Recall@20 but trails BSL on NDCG@20",
                         f"R: MML {r['mml']:.4f}, BSL {r['bsl']:.4f}, CCL {r['ccl']:.4f}; "
                         f"N: MML {n['mml']:.4f}, BSL {n['bsl']:.4f}",
                         [beats("mml", "bsl", d, "recall@20"), beats("mml", "ccl", d, "recall@20"),
                          beats("bsl", "mml", d, "ndcg@20")]))
    return {"table": table, "claims": _claims(claims)}


def _compare_figure3(profile: str, results_dir) -> dict[str, pd.DataFrame]:
    runs = _runs("figure3", profile, results_dir)
    agg = _aggregate(runs, ["dataset", "loss", "n_negatives"])
    agg["profile"] = profile
    tester, claims = Tester(results_dir), []
    gains = reported()["figure3_gain_at_10"]

    def beats(a: str, b: str, d: str, n: int, metric: str) -> Part:
        return Part(_rows(runs, dataset=d, loss=a, n_negatives=n), _rows(runs, dataset=d, loss=b, n_negatives=n), metric)

    for d in DATASETS:
        for metric, claimed in zip(METRICS, gains[d], strict=True):
            mml = _cell(agg, dataset=d, loss="mml", n_negatives=10, metric=metric)
            ccl = _cell(agg, dataset=d, loss="ccl", n_negatives=10, metric=metric)
            gain = _gain(mml, ccl)
            claims.append(_claim(tester, f"Figure 3, {d}, N = 10: MML beats CCL by {claimed:+.2f}% on {metric} "
                                 "(holds: same sign and within 5 points)", f"{gain:+.2f}%",
                                 [beats("mml", "ccl", d, 10, metric)], rule=abs(gain - claimed) <= 5.0))
        for metric in METRICS:
            values = {(loss, n): _cell(agg, dataset=d, loss=loss, n_negatives=n, metric=metric)
                      for loss in ("mml", "ccl", "bsl") for n in (10, 50, 100, 800)}
            small = [(n, values[("mml", n)], max(values[("ccl", n)], values[("bsl", n)])) for n in (10, 50, 100)]
            claims.append(_claim(tester, f"Figure 3, {d}, {metric}: MML ≥ CCL and BSL for N ≤ 100",
                                 "; ".join(f"N={n}: {a:.4f} vs {b:.4f}" for n, a, b in small),
                                 [beats("mml", other, d, n, metric) for n in (10, 50, 100) for other in ("ccl", "bsl")]))
            m8, c8, b8 = values[("mml", 800)], values[("ccl", 800)], values[("bsl", 800)]
            claims.append(_claim(tester, f"Figure 3, {d}, {metric}: at N = 800 MML > CCL but < BSL",
                                 f"MML {m8:.4f}, CCL {c8:.4f}, BSL {b8:.4f}",
                                 [beats("mml", "ccl", d, 800, metric), beats("bsl", "mml", d, 800, metric)]))
    return {"table": agg, "claims": _claims(claims)}


def _compare_ccl_matched(profile: str, results_dir) -> dict[str, pd.DataFrame]:
    runs = _runs("ccl_matched", profile, results_dir)
    if not runs.empty:
        runs["variant"] = np.where(runs["loss"] == "mml", "MML",
                                   np.where(runs["hp_neg_weight"].astype(float) > 300, "CCL (matched weight)", "CCL (paper weight)"))
    agg = _aggregate(runs, ["dataset", "n_negatives", "variant"])
    tester, claims = Tester(results_dir), []
    for d in DATASETS:
        for n in (10, 100):
            for metric in METRICS:
                mml = _cell(agg, dataset=d, n_negatives=n, variant="MML", metric=metric)
                ccl = _cell(agg, dataset=d, n_negatives=n, variant="CCL (paper weight)", metric=metric)
                matched = _cell(agg, dataset=d, n_negatives=n, variant="CCL (matched weight)", metric=metric)
                gain, left = mml - ccl, mml - matched
                share = left / gain * 100 if gain else float("nan")
                claims.append(_claim(
                    tester, f"Matched weight, {d}, N = {n}, {metric}: MML's gain over CCL survives a CCL with MML's weight",
                    f"MML {mml:.4f}, CCL {ccl:.4f}, matched CCL {matched:.4f}: {share:.0f}% of the gain survives",
                    [Part(_rows(runs, dataset=d, n_negatives=n, variant="MML"),
                          _rows(runs, dataset=d, n_negatives=n, variant="CCL (matched weight)"), metric)]))
    return {"table": agg, "claims": _claims(claims)}


def _compare_honest(profile: str, results_dir) -> dict[str, pd.DataFrame]:
    runs = _runs("honest", profile, results_dir)
    agg = _aggregate(runs, ["dataset", "loss", "selection"])
    tester, claims = Tester(results_dir), []
    for d in DATASETS:
        for metric in METRICS:
            vals = {(loss, sel): _cell(agg, dataset=d, loss=loss, selection=sel, metric=metric)
                    for loss in ("ccl", "mml") for sel in ("paper", "honest")}
            claims.append(_claim(
                tester, f"Honest selection, {d}, {metric}: MML still beats CCL when the epoch is chosen on validation",
                f"test-selected MML {vals[('mml', 'paper')]:.4f} / CCL {vals[('ccl', 'paper')]:.4f}; "
                f"validation-selected MML {vals[('mml', 'honest')]:.4f} / CCL {vals[('ccl', 'honest')]:.4f}",
                [Part(_rows(runs, dataset=d, loss="mml", selection="honest"),
                      _rows(runs, dataset=d, loss="ccl", selection="honest"), metric)]))
    return {"table": agg, "claims": _claims(claims)}


def _best_cell(runs: pd.DataFrame, grid: pd.DataFrame, keep: pd.Series) -> pd.DataFrame:
    """The runs of the grid cell (``hp_lam``, ``hp_eps``) with the highest mean among ``keep``."""
    chosen = grid[keep]
    if chosen.empty:
        return runs.iloc[0:0]
    best = chosen.loc[chosen["mean"].idxmax()]
    return _rows(runs, hp_lam=best.hp_lam, hp_eps=best.hp_eps)


def _compare_li2023(profile: str, results_dir) -> dict[str, pd.DataFrame]:
    runs = _runs("li2023", profile, results_dir)
    for col in ("hp_lam", "hp_eps", "hp_tau_plus"):
        if col not in runs:
            runs[col] = np.nan
    agg = _aggregate(runs, ["dataset", "loss", "hp_lam", "hp_eps", "hp_tau_plus"])
    claims_rep = reported()["li2023_claims"]
    tester, claims = Tester(results_dir), []
    for d in DATASETS:
        plus = _rows(runs, dataset=d, loss="infonce_plus")
        for metric in METRICS:
            grid = agg[(agg.dataset == d) & (agg.loss == "infonce_plus") & (agg.metric == metric)].dropna(subset=["mean"])
            full = len(grid) == len(LI2023_LAMBDAS) * len(LI2023_EPS)
            if not full:    # a claim about the grid's best cell needs the whole grid
                grid = grid.iloc[0:0]
            infonce = _cell(grid, hp_lam=1.0, hp_eps=1.0) if full else float("nan")
            best = grid.loc[grid["mean"].idxmax()] if full else None
            mine = grid[grid.hp_eps == 0.0]["mean"].max() if full else float("nan")
            eps0 = _best_cell(plus, grid, grid.hp_eps == claims_rep["best_eps"])
            near = (grid.hp_lam - claims_rep["best_lam"]).abs() < 0.051
            claims.append(_claim(tester, f"Li 2023, {d}, {metric}: ε = 0 is best in the InfoNCE+ grid",
                                 "" if best is None else f"best λ = {best.hp_lam}, ε = {best.hp_eps} ({best['mean']:.4f})",
                                 [Part(eps0, _best_cell(plus, grid, grid.hp_eps != claims_rep["best_eps"]), metric)]))
            claims.append(_claim(tester, f"Li 2023, {d}, {metric}: λ ≈ 1.1 is best",
                                 "" if best is None else f"best λ = {best.hp_lam}",
                                 [Part(_best_cell(plus, grid, near), _best_cell(plus, grid, ~near), metric)]))
            infonce_runs = _rows(plus, hp_lam=1.0, hp_eps=1.0) if full else plus.iloc[0:0]
            claims.append(_claim(tester, f"Li 2023, {d}, {metric}: MINE+ beats InfoNCE (paper: up to +{claims_rep['mine_plus_gain_max_percent']:.0f}%)",
                                 f"best MINE+ {mine:.4f} vs InfoNCE {infonce:.4f} ({_gain(mine, infonce):+.1f}%)",
                                 [Part(eps0, infonce_runs, metric)]))
            sub = agg[(agg.dataset == d) & (agg.metric == metric)]
            ccl = _cell(sub, loss="ccl")
            for biased, name, base, base_runs in (("debiased_infonce", "InfoNCE", infonce, infonce_runs),
                                                  ("debiased_ccl", "CCL", ccl, _rows(runs, dataset=d, loss="ccl"))):
                cells = sub[sub.loss == biased].dropna(subset=["mean"])
                deb = cells["mean"].max() if len(cells) else float("nan")
                deb_runs = (_rows(runs, dataset=d, loss=biased, hp_tau_plus=cells.loc[cells["mean"].idxmax(), "hp_tau_plus"])
                            if len(cells) else runs.iloc[0:0])
                claims.append(_claim(tester, f"Li 2023, {d}, {metric}: debiased {name} ≥ {name}",
                                     f"best debiased {deb:.4f} vs {base:.4f} ({_gain(deb, base):+.1f}%)",
                                     [Part(deb_runs, base_runs, metric)]))
    return {"table": agg, "claims": _claims(claims)}


def _compare_lr_reduce(profile: str, results_dir) -> dict[str, pd.DataFrame]:
    """Issue 18's hypothesis: the paper's early-stopped ("Y") MF runs kept SimpleX's lr schedule
    (``lr_reduce``: lr ×0.1 and the best weights reloaded on each non-improving epoch), which
    would explain why they stopped after 19 epochs where plain "Y" runs stop after 27–43. The
    table puts each ``lr_reduce`` run beside the plain "Y" run of the same seed and the paper's
    "Y" number; it is empty until an ``lr_reduce`` run is stored. Only ``paper``-profile runs
    make claims: the shorter profiles' runs end before the stopping rule can cut them."""
    runs = _runs(("lr_reduce", "table2"), profile, results_dir)
    columns = ["dataset", "loss", "schedule", "stopped_after", "paper_stopped_after", "best_epoch",
               "metric", "reproduced", "reported", "rel_diff"]
    rep = reported_frame("table2")
    rep = rep[(rep.model == "mf") & (rep.early_stop == "Y")]
    paper_stop = reported()["table2_early_stop_epochs"]["mf"]
    rows = []
    if not runs.empty:
        runs = runs[(runs["model"] == "mf") & (runs["selection"] == "early_stop")].drop_duplicates("key")
        reduced = runs[runs["lr_reduce"].astype(bool)]
        cells = set(zip(reduced["dataset"], reduced["loss"], reduced["seed"], strict=True))
        runs = runs[[cell in cells for cell in zip(runs["dataset"], runs["loss"], runs["seed"], strict=True)]]
    for record in ([] if runs.empty else runs.sort_values(["dataset", "loss", "lr_reduce"]).to_dict("records")):
        for metric in METRICS:
            reported_value = float(rep.loc[(rep.loss == record["loss"]) & (rep.dataset == record["dataset"])
                                           & (rep.metric == metric), "reported"].iloc[0])
            rows.append({"dataset": record["dataset"], "loss": record["loss"],
                         "schedule": "lr ×0.1 on each non-improving epoch" if record["lr_reduce"] else "constant lr",
                         "stopped_after": int(record["epochs_run"]), "paper_stopped_after": paper_stop,
                         "best_epoch": int(record["best_epoch"]), "metric": metric,
                         "reproduced": record[metric], "reported": reported_value,
                         "rel_diff": record[metric] / reported_value - 1})
    table = pd.DataFrame(rows, columns=columns)
    tester, claims = Tester(results_dir), []
    for d in DATASETS if profile == "paper" else ():
        for loss in ("ccl", "mml"):
            cell = table[(table.dataset == d) & (table.loss == loss)]
            reduced = cell[cell.schedule.str.startswith("lr")]
            plain = cell[cell.schedule == "constant lr"]
            if reduced.empty:
                continue          # only the runs trained for the hypothesis make claims
            have = not plain.empty
            # issue 32: the mean over the seeds, not the first seed's row
            stop_r = float(reduced[reduced.metric == METRICS[0]].stopped_after.mean())
            stop_p = float(plain[plain.metric == METRICS[0]].stopped_after.mean()) if have else float("nan")
            claims.append(_claim(
                tester, f"lr_reduce, {d} MF {LOSS_NAMES[loss]} ES = Y: the schedule stops nearer the paper's "
                        f"{paper_stop} epochs than constant lr",
                f"stopped after {stop_r:g} (constant lr: {stop_p:g}; mean over seeds)",
                [], None if not have else abs(stop_r - paper_stop) < abs(stop_p - paper_stop)))
            means = reduced.groupby("metric", sort=False)[["reproduced", "reported"]].mean()
            diffs = means.reproduced / means.reported - 1
            claims.append(_claim(
                tester, f"lr_reduce, {d} MF {LOSS_NAMES[loss]} ES = Y: within ±5% of the paper's ES = Y numbers",
                ", ".join(f"{m} {v:+.1%}" for m, v in diffs.items()),
                [], bool((diffs.abs() <= 0.05).all())))
    return {"table": table, "claims": _claims(claims)}


# The early-stopping rules tried against the paper's stop epochs (issue 18): (monitor, patience,
# min_delta); monitor None is each run's own (SPEC §6: Recall@20, NDCG@20 for SimpleX Gowalla).
SPEC_STOPPING_RULE = (None, 3, 1e-6)
OWN_MONITOR = "run's own"
STOPPING_RULES = tuple((monitor, patience, min_delta) for monitor in (None, "ndcg@20") for patience in (1, 2, 3)
                       for min_delta in (1e-6, 1e-4, 5e-4, 1e-3))


def stopping_rules(profile: str = "paper", results_dir: str | Path | None = None) -> pd.DataFrame:
    """Which early-stopping rule gives the paper's stop epochs, read off Table 2's ES = N runs (issue 18).

    The paper says its early-stopped runs stopped after 19 epochs (MF), 33 (SimpleX + CCL) and 19
    (SimpleX + MML); SPEC §6's rule (3 epochs without an improvement > 1e-6) stops ours later.
    Without lr cuts an ES = Y run trains exactly as its ES = N twin until it stops, so the stop
    epoch and the selected epoch's test metrics of any rule are read off the twin's history
    (:func:`mmlrepro.train.early_stop_epochs`, :func:`mmlrepro.train.select_best`) at no cost.
    One row per rule of :data:`STOPPING_RULES`: ``monitor`` (:data:`OWN_MONITOR`: SPEC §6's),
    ``patience``, ``min_delta``; one column per stored cell, ``"<model> <loss> <dataset>"``, with
    its stop epoch (the mean over seeds); ``cells``; ``cells_within_2``, the cells that stop
    within 2 epochs of the paper; ``mean_abs_epoch_gap``, |stop − the paper's stop| averaged over
    the cells; ``max_abs_rel_diff``, the largest |reproduced / reported − 1|
    over the cells and both metrics against the paper's ES = Y numbers; ``spec`` (SPEC §6's rule).
    Sorted by ``mean_abs_epoch_gap``; empty without ES = N Table 2 runs.
    """
    paper_stop = reported()["table2_early_stop_epochs"]
    rep = reported_frame("table2")
    rep = rep[rep.early_stop == "Y"].set_index(["model", "loss", "dataset", "metric"])["reported"]
    plain = {catalogue_key(c): c for c in configs("table2", profile, 10) if c.selection == "paper"}
    histories: dict[str, list[tuple[Any, list[dict[str, float]]]]] = {}
    for record in ResultsStore(results_dir).records():
        if (config := plain.get(record["key"])) is not None:
            histories.setdefault(f"{config.model} {config.loss} {config.dataset}", []).append((config, record["history"]))
    cells = sorted(histories, key=lambda c: (c.split()[0], c.split()[1], c.split()[2] != "yelp2018"))
    rows = []
    for monitor, patience, min_delta in STOPPING_RULES if cells else ():
        row: dict[str, Any] = {"monitor": monitor or OWN_MONITOR, "patience": patience, "min_delta": min_delta}
        gaps, diffs = [], []
        for cell in cells:
            stops = []
            for config, history in histories[cell]:
                rule = config.replace(monitor=monitor or config.monitor, patience=patience, min_delta=min_delta)
                kept = history[:early_stop_epochs(history, rule)]
                chosen = kept[select_best(kept, rule.monitor, min_delta)]
                stops.append(len(kept))
                diffs += [abs(chosen[m] / rep[(config.model, config.loss, config.dataset, m)] - 1) for m in METRICS]
            row[cell] = float(np.mean(stops))
            model, loss = cell.split()[:2]
            gaps.append(abs(row[cell] - paper_stop.get(f"{model}/{loss}", paper_stop.get(model))))
        rows.append({**row, "cells": len(cells), "cells_within_2": sum(g <= 2 for g in gaps),
                     "mean_abs_epoch_gap": float(np.mean(gaps)),
                     "max_abs_rel_diff": max(diffs), "spec": (monitor, patience, min_delta) == SPEC_STOPPING_RULE})
    columns = ["monitor", "patience", "min_delta", *cells, "cells", "cells_within_2", "mean_abs_epoch_gap",
               "max_abs_rel_diff", "spec"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["mean_abs_epoch_gap", "max_abs_rel_diff"], kind="stable").reset_index(drop=True)


COMPARISONS: dict[str, Callable[[str, Any], dict[str, pd.DataFrame]]] = {
    "table2": _compare_table2, "table3": _compare_table3, "figure3": _compare_figure3,
    "ccl_matched": _compare_ccl_matched, "honest": _compare_honest, "li2023": _compare_li2023,
    "lr_reduce": _compare_lr_reduce,
}


def compare(group: str, profile: str = "quick", results_dir: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """Reproduced (mean ± std over seeds) vs reported, and the paper's claims for ``group``.

    Returns ``{"table": ..., "claims": ...}``. For Tables 2 and 3 the table has one row per
    cell and metric with ``reported``, ``mean``, ``std``, ``seeds``, ``device``, ``profile``,
    ``rel_diff`` ((mean − reported) / reported) and ``within_5pct`` (yes / no / missing). The
    claims table has one row per claim of the text (:data:`CLAIM_COLUMNS`): ``claim``,
    ``reproduced`` (the numbers), ``gain_pct`` and its 95 % interval ``ci_low_pct`` /
    ``ci_high_pct`` (NaN without per-user values), ``p``, ``p_holm`` and the ``verdict``: holds
    (significant) / holds (not significant) / holds (no per-user values) / does not hold /
    missing. See the module docstring for the tests; :func:`claims_display` formats it.
    """
    if group not in COMPARISONS:
        raise ValueError(f"unknown group {group!r}; known: {', '.join(COMPARISONS)}")
    return COMPARISONS[group](profile, results_dir)



# --------------------------------------------------------------------------------------------
# helpers for the notebooks (03-07): stored runs as the frames their tables and figures take

# Display names, in the order the notebooks list the losses (Table 3's, then Li et al.'s).
LOSS_NAMES = {"bpr": "BPR", "hinge": "pairwise hinge", "softmax_ce": "softmax CE", "mse": "MSE",
              "ccl": "CCL", "bsl": "BSL", "mml": "MML", "ssm": "InfoNCE", "infonce_plus": "InfoNCE+",
              "debiased_infonce": "debiased InfoNCE", "debiased_ccl": "debiased CCL"}
MODEL_NAMES = {"mf": "MF", "simplex": "SimpleX"}
_CELL_COLUMNS = {"table2": ["model", "loss", "early_stop"], "table3": ["loss"]}


def group_runs(group: str, profile: str, results_dir: str | Path | None = None,
               max_seeds: int = 10) -> pd.DataFrame:
    """The stored runs of ``group`` (one row per run, as :func:`mmlrepro.results.load_results`),
    with ``early_stop`` (Y/N from ``selection``) and the display name ``loss_name`` added."""
    runs = _runs(group, profile, results_dir, max_seeds)
    if runs.empty:
        return runs
    runs["early_stop"] = np.where(runs["selection"] == "early_stop", "Y", "N")
    runs["loss_name"] = runs["loss"].map(lambda v: LOSS_NAMES.get(v, v))
    return _in_loss_order(runs, ["dataset", "model", "n_negatives", "selection", "seed"])


def _in_loss_order(frame: pd.DataFrame, then: list[str], first: tuple[str, ...] = ()) -> pd.DataFrame:
    """``frame`` sorted by ``first``, the :data:`LOSS_NAMES` order of ``loss``, then ``then``."""
    rank = frame["loss"].map(lambda v: list(LOSS_NAMES).index(v) if v in LOSS_NAMES else len(LOSS_NAMES))
    return (frame.assign(_rank=rank).sort_values([*first, "_rank", *then], kind="stable")
            .drop(columns="_rank").reset_index(drop=True))


def cell_label(row: Any, group: str) -> str:
    """The display label of a Table 2 / Table 3 cell: ``"MF · MML · ES N"`` or ``"MML"``."""
    loss = LOSS_NAMES.get(row["loss"], row["loss"])
    if group == "table2":
        return f"{MODEL_NAMES.get(row['model'], row['model'])} · {loss} · ES {row['early_stop']}"
    return loss


def runs_vs_reported(group: str, profile: str, results_dir: str | Path | None = None) -> pd.DataFrame:
    """Every stored run of Table 2 or 3 beside the paper's number of its cell, long format.

    Columns: the cell columns, ``label`` (:func:`cell_label`), ``dataset``, ``metric``, ``seed``,
    ``reproduced`` (the run's selected-epoch test metric), ``reported``. Empty when no run is
    stored. The input of :func:`mmlrepro.plots.plot_reproduced_vs_reported`.
    """
    if group not in _CELL_COLUMNS:
        raise ValueError(f"runs_vs_reported: group must be one of {list(_CELL_COLUMNS)}, got {group!r}")
    cells = _CELL_COLUMNS[group]
    columns = [*cells, "label", "dataset", "metric", "seed", "reproduced", "reported"]
    runs = group_runs(group, profile, results_dir)
    if runs.empty:
        return pd.DataFrame(columns=columns)
    long = runs.melt(id_vars=[*cells, "dataset", "seed"], value_vars=list(METRICS),
                     var_name="metric", value_name="reproduced")
    out = long.merge(reported_frame(group), on=[*cells, "dataset", "metric"], how="left")
    out["label"] = out.apply(cell_label, axis=1, group=group)
    out["order"] = out["metric"].map(METRICS.index)
    first = ("model",) if "model" in cells else ()
    return _in_loss_order(out, ["early_stop", "dataset", "order", "seed"] if first else
                          ["dataset", "order", "seed"], first)[columns]


def learning_curves(group: str, profile: str, results_dir: str | Path | None = None,
                    **where: Any) -> pd.DataFrame:
    """Per-epoch history of the stored runs of ``group``, long: one row per run and epoch.

    Columns: ``dataset``, ``model``, ``model_name``, ``loss``, ``loss_name``, ``selection``, ``early_stop``,
    ``n_negatives``, ``seed``, ``label`` (``"MF · MML"``), ``epoch``, ``train_loss`` and the
    metrics of the epoch's evaluation (test, or validation for ``honest`` runs). ``where``
    keeps the runs whose config fields equal the given values, e.g. ``selection="paper"``.
    """
    keys = {catalogue_key(c) for c in configs(group, profile, 10)}
    rows = []
    for record in ResultsStore(results_dir).records():
        config = record["config"]
        if record["key"] not in keys or any(config.get(k) != v for k, v in where.items()):
            continue
        run = {k: config[k] for k in ("dataset", "model", "loss", "selection", "n_negatives", "seed")}
        run["loss_name"] = LOSS_NAMES.get(run["loss"], run["loss"])
        run["early_stop"] = "Y" if run["selection"] == "early_stop" else "N"
        run["model_name"] = MODEL_NAMES.get(run["model"], run["model"])
        run["label"] = f"{run['model_name']} · {run['loss_name']}"
        for epoch in record["history"]:
            rows.append({**run, "epoch": epoch["epoch"], "train_loss": epoch["loss"],
                         **{m: epoch[m] for m in ("recall@20", "ndcg@20", "recall@50", "ndcg@50") if m in epoch}})
    columns = ["dataset", "model", "model_name", "loss", "loss_name", "selection", "early_stop", "n_negatives",
               "seed", "label", "epoch", "train_loss", *METRICS]
    if not rows:
        return pd.DataFrame(columns=columns)
    return _in_loss_order(pd.DataFrame(rows), ["dataset", "model", "seed", "epoch"])


def seed_noise(profile: str, results_dir: str | Path | None = None) -> pd.DataFrame:
    """The paper's MML-vs-baseline gaps beside the run-to-run noise measured over seeds.

    One row per comparison (Table 2: MML vs CCL in every model × early-stop cell; Table 3: MML
    vs BSL), dataset and metric, with a display ``label``: ``paper_gap`` = (MML / baseline − 1)
    in % from the reported numbers, ``reproduced_gap`` the same from the seed means,
    ``std_mml`` / ``std_base`` the std over seeds relative to the baseline's mean in % (ddof 1),
    ``noise`` = √(std_mml² + std_base²) (%; the std of the difference of two independent runs),
    and ``paper_gap_in_sd`` = ``paper_gap / noise``: how many run-to-run standard deviations the
    published gap spans.
    ``noise`` is NaN for cells with fewer than two seeds.
    """
    rows = []
    for group, base in (("table2", "ccl"), ("table3", "bsl")):
        table = compare(group, profile, results_dir)["table"]
        if group == "table3":
            table = table.assign(model="mf", early_stop="N")
        for keys, sub in table.groupby(["model", "early_stop", "dataset", "metric"], sort=False):
            mml, other = sub[sub.loss == "mml"].iloc[0], sub[sub.loss == base].iloc[0]
            std_mml = mml["std"] / other["mean"] * 100
            std_base = other["std"] / other["mean"] * 100
            cell = f"Table 2 {MODEL_NAMES[keys[0]]}, ES {keys[1]}" if group == "table2" else "Table 3 MF"
            rows.append({
                "comparison": f"{group}: MML vs {LOSS_NAMES[base]}",
                "label": f"{cell}: MML vs {LOSS_NAMES[base]} · {keys[2]}", "model": keys[0], "early_stop": keys[1],
                "dataset": keys[2], "metric": keys[3], "seeds": int(min(mml["seeds"], other["seeds"]))
                if not np.isnan([mml["seeds"], other["seeds"]]).any() else 0,
                "paper_gap": _gain(mml["reported"], other["reported"]),
                "reproduced_gap": _gain(mml["mean"], other["mean"]),
                "std_mml": std_mml, "std_base": std_base,
                "noise": float(np.hypot(std_mml, std_base))})
    out = pd.DataFrame(rows)
    out["paper_gap_in_sd"] = out["paper_gap"] / out["noise"]
    return out


def linear_results(results_dir: str | Path | None = None) -> pd.DataFrame:
    """The EASE / iALS runs of ``results/linear/*.json`` (written by
    :func:`mmlrepro.linear.save_linear_result`), one row per run: ``dataset``, ``method``,
    ``profile``, the hyperparameters (``lam``; ``dim``, ``alpha``, ``reg``, ``reg_exp``,
    ``epochs``), ``tau_plus``, ``debiased`` (τ⁺ > 0), the four metrics, ``device``, ``fit_s``.
    Empty (with those columns) when the folder holds no run."""
    root = Path(results_dir) if results_dir is not None else default_results_dir()
    hp = ["lam", "dim", "alpha", "reg", "reg_exp", "epochs"]
    metrics = ["recall@20", "ndcg@20", "recall@50", "ndcg@50"]
    columns = ["dataset", "method", "profile", *hp, "tau_plus", "debiased", *metrics, "device", "fit_s", "key"]
    rows = []
    for record in read_linear_results(root / "linear", log=lambda line: print(line, file=sys.stderr)):
        config = record["config"]
        rows.append({**{k: config.get(k) for k in ("dataset", "method", "profile", *hp, "tau_plus")},
                     "debiased": float(config.get("tau_plus") or 0.0) > 0, **record["metrics"],
                     "device": record.get("device", ""), "fit_s": record.get("timings", {}).get("fit_s"),
                     "key": record.get("key", "")})
    return pd.DataFrame(rows, columns=columns)

