"""The paper's claims per group, tested on the store's paper-profile runs (SPEC §9, issues 16, 33).

:func:`compare` returns, per group, the reproduced table (mean ± h over seeds, the paper's number
beside it and each cell's evidence level) and the claims of the text (:class:`mmlrepro.evidence.Claim`
as a frame, :func:`mmlrepro.evidence.claims_frame`). Only the ``paper`` profile makes claims: the
shorter profiles do not preserve the paper's orders of the losses, so their tables are pipeline
output and their claims list is empty (:data:`mmlrepro.frames.QUICK_LABEL`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmlrepro.catalogue import (
    DATASETS,
    FIGURE3_NEGATIVES,
    LI2023_EPS,
    LI2023_LAMBDAS,
    TABLE3_LOSSES,
)
from mmlrepro.evidence import BAND, Claim, Part, Tester, claim, claims_frame
from mmlrepro.frames import (
    PAPER,
    aggregate,
    cell_mean,
    early_stop_table,
    rows_of,
    runs_of,
    with_reported,
)
from mmlrepro.reported import (
    LOSS_NAMES,
    METRICS,
    MODEL_NAMES,
    paper_stop_epoch,
    reported,
    reported_frame,
)


def _gain(a: float, b: float) -> float:
    """(a / b − 1) in %; NaN when b is 0."""
    return (a / b - 1.0) * 100.0 if b else float("nan")


def _n_seeds(runs: pd.DataFrame) -> int:
    return int(runs["seed"].nunique()) if "seed" in runs else 0


def _paper_gain(rep: pd.DataFrame, a: dict[str, Any], b: dict[str, Any]) -> float:
    """The paper's gain (a fraction) of cell ``a`` over cell ``b`` in a reported frame."""
    def value(where: dict[str, Any]) -> float:
        mask = np.ones(len(rep), dtype=bool)
        for k, v in where.items():
            mask &= (rep[k] == v).to_numpy()
        return float(rep.loc[mask, "reported"].iloc[0])

    return value(a) / value(b) - 1.0


def _result(table: pd.DataFrame, claims: list[Claim], profile: str, **extra: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A group's result: claims only for the paper profile."""
    return {"table": table, "claims": claims_frame(claims if profile == PAPER else []), **extra}


def _compare_table2(profile: str, results_dir) -> dict[str, pd.DataFrame]:
    runs = runs_of("table2", profile, results_dir)
    if not runs.empty:
        runs["early_stop"] = np.where(runs["selection"] == "early_stop", "Y", "N")
    agg = aggregate(runs, ["model", "loss", "early_stop", "dataset"])
    rep = reported_frame("table2")
    table = with_reported(agg, rep, ["model", "loss", "early_stop", "dataset", "metric"], profile)
    tester, claims = Tester(results_dir), []
    for model in ("simplex", "mf"):
        for es in ("Y", "N"):
            for d in DATASETS:
                for metric in METRICS:
                    where = dict(model=model, early_stop=es, dataset=d)
                    paper = _paper_gain(rep, dict(loss="mml", metric=metric, **where), dict(loss="ccl", metric=metric, **where))
                    mml = cell_mean(agg, loss="mml", metric=metric, **where)
                    ccl = cell_mean(agg, loss="ccl", metric=metric, **where)
                    claims.append(claim(
                        tester, f"Table 2: {model} ES={es} {d} {metric}: MML beats CCL (paper: {100 * paper:+.1f}%)",
                        f"MML {mml:.4f} vs CCL {ccl:.4f}",
                        [Part(rows_of(runs, loss="mml", **where), rows_of(runs, loss="ccl", **where), metric,
                              "MML > CCL", paper)]))
    stops = early_stop_table(runs if profile == PAPER else runs.iloc[0:0])  # paper stop epochs: paper settings only
    return _result(table, claims, profile, stops=stops)


def _compare_table3(profile: str, results_dir) -> dict[str, pd.DataFrame]:
    runs = runs_of("table3", profile, results_dir)
    agg = aggregate(runs, ["loss", "dataset"])
    rep = reported_frame("table3")
    table = with_reported(agg, rep, ["loss", "dataset", "metric"], profile)
    tester, claims = Tester(results_dir), []

    def beats(a: str, b: str, d: str, metric: str) -> Part:
        paper = _paper_gain(rep, dict(loss=a, dataset=d, metric=metric), dict(loss=b, dataset=d, metric=metric))
        return Part(rows_of(runs, loss=a, dataset=d), rows_of(runs, loss=b, dataset=d), metric,
                    f"{LOSS_NAMES[a]} > {LOSS_NAMES[b]}{'' if metric == 'recall@20' else ' (NDCG)'}", paper)

    for d in DATASETS:
        for metric in METRICS:
            mml = cell_mean(agg, loss="mml", dataset=d, metric=metric)
            mse = cell_mean(agg, loss="mse", dataset=d, metric=metric)
            claims.append(claim(tester, f"Table 3: {d} {metric}: MML beats MSE", f"MML {mml:.4f} vs MSE {mse:.4f}",
                                [beats("mml", "mse", d, metric)]))
            others = [loss for loss in TABLE3_LOSSES if loss not in ("mml", "bsl")]
            best_other = max((cell_mean(agg, loss=o, dataset=d, metric=metric) for o in others), default=float("nan"))
            claims.append(claim(tester, f"Table 3: {d} {metric}: MML beats BPR, hinge, softmax CE, MSE and CCL",
                                f"MML {mml:.4f} vs best of them {best_other:.4f}",
                                [beats("mml", o, d, metric) for o in others]))
    d = "gowalla"
    r = {loss: cell_mean(agg, loss=loss, dataset=d, metric="recall@20") for loss in ("mml", "bsl", "ccl")}
    n = {loss: cell_mean(agg, loss=loss, dataset=d, metric="ndcg@20") for loss in ("mml", "bsl", "ccl")}
    claims.append(claim(tester, "Gowalla: MML beats CCL and BSL on Recall@20 but trails BSL on NDCG@20",
                        f"R: MML {r['mml']:.4f}, BSL {r['bsl']:.4f}, CCL {r['ccl']:.4f}; "
                        f"N: MML {n['mml']:.4f}, BSL {n['bsl']:.4f}",
                        [beats("mml", "bsl", d, "recall@20"), beats("mml", "ccl", d, "recall@20"),
                         beats("bsl", "mml", d, "ndcg@20")]))
    return _result(table, claims, profile)


def _compare_figure3(profile: str, results_dir) -> dict[str, pd.DataFrame]:
    runs = runs_of("figure3", profile, results_dir)
    agg = aggregate(runs, ["dataset", "loss", "n_negatives"])
    agg["profile"] = profile
    tester, claims = Tester(results_dir), []
    gains = reported()["figure3_gain_at_10"]

    def beats(a: str, b: str, d: str, n: int, metric: str, paper: float = float("nan")) -> Part:
        return Part(rows_of(runs, dataset=d, loss=a, n_negatives=n), rows_of(runs, dataset=d, loss=b, n_negatives=n),
                    metric, f"{LOSS_NAMES[a]} > {LOSS_NAMES[b]} N={n}", paper)

    for d in DATASETS:
        for metric, claimed in zip(METRICS, gains[d], strict=True):
            gain = _gain(cell_mean(agg, dataset=d, loss="mml", n_negatives=10, metric=metric),
                         cell_mean(agg, dataset=d, loss="ccl", n_negatives=10, metric=metric))
            claims.append(claim(tester, f"Figure 3, {d}, N = 10: MML beats CCL by {claimed:+.2f}% on {metric} "
                                "(holds: same sign and within 5 points)", f"{gain:+.2f}%",
                                [beats("mml", "ccl", d, 10, metric, claimed / 100)],
                                rule=abs(gain - claimed) <= 5.0))
        for metric in METRICS:
            values = {(loss, n): cell_mean(agg, dataset=d, loss=loss, n_negatives=n, metric=metric)
                      for loss in ("mml", "ccl", "bsl") for n in FIGURE3_NEGATIVES}
            small = [(n, values[("mml", n)], max(values[("ccl", n)], values[("bsl", n)])) for n in (10, 50, 100)]
            claims.append(claim(tester, f"Figure 3, {d}, {metric}: MML ≥ CCL and BSL for N ≤ 100",
                                "; ".join(f"N={n}: {a:.4f} vs {b:.4f}" for n, a, b in small),
                                [beats("mml", other, d, n, metric) for n in (10, 50, 100) for other in ("ccl", "bsl")]))
            m8, c8, b8 = values[("mml", 800)], values[("ccl", 800)], values[("bsl", 800)]
            claims.append(claim(tester, f"Figure 3, {d}, {metric}: at N = 800 MML > CCL but < BSL",
                                f"MML {m8:.4f}, CCL {c8:.4f}, BSL {b8:.4f}",
                                [beats("mml", "ccl", d, 800, metric), beats("bsl", "mml", d, 800, metric)]))
    return _result(agg, claims, profile)


def _compare_ccl_matched(profile: str, results_dir) -> dict[str, pd.DataFrame]:
    runs = runs_of("ccl_matched", profile, results_dir)
    if not runs.empty:
        runs["variant"] = np.where(runs["loss"] == "mml", "MML",
                                   np.where(runs["hp_neg_weight"].astype(float) > 300, "CCL (matched weight)", "CCL (paper weight)"))
    agg = aggregate(runs, ["dataset", "n_negatives", "variant"])
    tester, claims = Tester(results_dir), []
    for d in DATASETS:
        for n in (10, 100):
            for metric in METRICS:
                mml = cell_mean(agg, dataset=d, n_negatives=n, variant="MML", metric=metric)
                ccl = cell_mean(agg, dataset=d, n_negatives=n, variant="CCL (paper weight)", metric=metric)
                matched = cell_mean(agg, dataset=d, n_negatives=n, variant="CCL (matched weight)", metric=metric)
                gain, left = mml - ccl, mml - matched
                share = (f"{left / gain * 100:.0f}% of the gain survives" if gain > 0 else
                         "no gain over CCL to survive" if gain <= 0 else "")
                claims.append(claim(
                    tester, f"Matched weight, {d}, N = {n}, {metric}: MML's gain over CCL survives a CCL with MML's weight",
                    f"MML {mml:.4f}, CCL {ccl:.4f}, matched CCL {matched:.4f}" + (f": {share}" if share else ""),
                    [Part(rows_of(runs, dataset=d, n_negatives=n, variant="MML"),
                          rows_of(runs, dataset=d, n_negatives=n, variant="CCL (paper weight)"), metric, "MML > CCL"),
                     Part(rows_of(runs, dataset=d, n_negatives=n, variant="MML"),
                          rows_of(runs, dataset=d, n_negatives=n, variant="CCL (matched weight)"), metric,
                          "MML > matched CCL")]))
    return _result(agg, claims, profile)


def _compare_honest(profile: str, results_dir) -> dict[str, pd.DataFrame]:
    runs = runs_of("honest", profile, results_dir)
    agg = aggregate(runs, ["dataset", "loss", "selection"])
    tester, claims = Tester(results_dir), []
    for d in DATASETS:
        for metric in METRICS:
            vals = {(loss, sel): cell_mean(agg, dataset=d, loss=loss, selection=sel, metric=metric)
                    for loss in ("ccl", "mml") for sel in ("paper", "honest")}
            claims.append(claim(
                tester, f"Honest selection, {d}, {metric}: MML still beats CCL when the epoch is chosen on validation",
                f"test-selected MML {vals[('mml', 'paper')]:.4f} / CCL {vals[('ccl', 'paper')]:.4f}; "
                f"validation-selected MML {vals[('mml', 'honest')]:.4f} / CCL {vals[('ccl', 'honest')]:.4f}",
                [Part(rows_of(runs, dataset=d, loss="mml", selection="honest"),
                      rows_of(runs, dataset=d, loss="ccl", selection="honest"), metric, "MML > CCL (honest)")]))
    return _result(agg, claims, profile)


def _best_cell(runs: pd.DataFrame, grid: pd.DataFrame, keep: pd.Series) -> pd.DataFrame:
    """The runs of the grid cell (``hp_lam``, ``hp_eps``) with the highest mean among ``keep``."""
    chosen = grid[keep]
    if chosen.empty:
        return runs.iloc[0:0]
    best = chosen.loc[chosen["mean"].idxmax()]
    return rows_of(runs, hp_lam=best.hp_lam, hp_eps=best.hp_eps)


def _compare_li2023(profile: str, results_dir) -> dict[str, pd.DataFrame]:
    """Li et al.'s claims. "ε = 0 is best" and "MINE+ beats InfoNCE" compare the same runs when
    the best cell with ε ≠ 0 is InfoNCE's own (λ = 1, ε = 1): Holm then counts them once
    (:func:`mmlrepro.evidence.family`)."""
    runs = runs_of("li2023", profile, results_dir)
    for col in ("hp_lam", "hp_eps", "hp_tau_plus"):
        if col not in runs:
            runs[col] = np.nan
    agg = aggregate(runs, ["dataset", "loss", "hp_lam", "hp_eps", "hp_tau_plus"])
    claims_rep = reported()["li2023_claims"]
    tester, claims = Tester(results_dir), []
    for d in DATASETS:
        plus = rows_of(runs, dataset=d, loss="infonce_plus")
        for metric in METRICS:
            grid = agg[(agg.dataset == d) & (agg.loss == "infonce_plus") & (agg.metric == metric)].dropna(subset=["mean"])
            full = len(grid) == len(LI2023_LAMBDAS) * len(LI2023_EPS)
            if not full:    # a claim about the grid's best cell needs the whole grid
                grid = grid.iloc[0:0]
            infonce = cell_mean(grid, hp_lam=1.0, hp_eps=1.0) if full else float("nan")
            best = grid.loc[grid["mean"].idxmax()] if full else None
            mine = grid[grid.hp_eps == 0.0]["mean"].max() if full else float("nan")
            eps0 = _best_cell(plus, grid, grid.hp_eps == claims_rep["best_eps"])
            near = (grid.hp_lam - claims_rep["best_lam"]).abs() < 0.051
            claims.append(claim(tester, f"Li 2023, {d}, {metric}: ε = 0 is best in the InfoNCE+ grid",
                                "" if best is None else f"best λ = {best.hp_lam}, ε = {best.hp_eps} ({best['mean']:.4f})",
                                [Part(eps0, _best_cell(plus, grid, grid.hp_eps != claims_rep["best_eps"]), metric,
                                      "best ε = 0 > best ε ≠ 0")]))
            claims.append(claim(tester, f"Li 2023, {d}, {metric}: λ ≈ 1.1 is best",
                                "" if best is None else f"best λ = {best.hp_lam}",
                                [Part(_best_cell(plus, grid, near), _best_cell(plus, grid, ~near), metric,
                                      "best λ = 1.1 > best other λ")]))
            infonce_runs = rows_of(plus, hp_lam=1.0, hp_eps=1.0) if full else plus.iloc[0:0]
            claims.append(claim(tester, f"Li 2023, {d}, {metric}: MINE+ beats InfoNCE (paper: up to "
                                f"+{claims_rep['mine_plus_gain_max_percent']:.0f}%)",
                                f"best MINE+ {mine:.4f} vs InfoNCE {infonce:.4f} ({_gain(mine, infonce):+.1f}%)",
                                [Part(eps0, infonce_runs, metric, "best MINE+ > InfoNCE")]))
            sub = agg[(agg.dataset == d) & (agg.metric == metric)]
            ccl = cell_mean(sub, loss="ccl")
            for biased, name, base, base_runs in (("debiased_infonce", "InfoNCE", infonce, infonce_runs),
                                                  ("debiased_ccl", "CCL", ccl, rows_of(runs, dataset=d, loss="ccl"))):
                cells = sub[sub.loss == biased].dropna(subset=["mean"])
                deb = cells["mean"].max() if len(cells) else float("nan")
                deb_runs = (rows_of(runs, dataset=d, loss=biased, hp_tau_plus=cells.loc[cells["mean"].idxmax(), "hp_tau_plus"])
                            if len(cells) else runs.iloc[0:0])
                seeds = f"{_n_seeds(deb_runs)} vs {_n_seeds(base_runs)} seeds"
                claims.append(claim(tester, f"Li 2023, {d}, {metric}: debiased {name} ≥ {name}",
                                    f"best debiased {deb:.4f} vs {base:.4f} ({_gain(deb, base):+.1f}%; {seeds})",
                                    [Part(deb_runs, base_runs, metric, f"debiased {name} > {name}")]))
    return _result(agg, claims, profile)


def _compare_lr_reduce(profile: str, results_dir) -> dict[str, pd.DataFrame]:
    """Issue 18's hypothesis: the paper's early-stopped ("Y") MF runs kept SimpleX's lr schedule
    (``lr_reduce``: lr ×0.1 and the best weights reloaded on each non-improving epoch), which
    would explain why they stopped after 19 epochs where plain "Y" runs stop after 27–43. The
    table puts each ``lr_reduce`` run beside the plain "Y" run of the same seed (and, for the paper
    profile, the paper's "Y" number); it is empty until an ``lr_reduce`` run is stored. Only
    ``paper``-profile runs make claims: the shorter profiles' runs end before the stopping rule
    can cut them."""
    runs = runs_of(("lr_reduce", "table2"), profile, results_dir)
    columns = ["dataset", "loss", "schedule", "stopped_after", "paper_stopped_after", "best_epoch",
               "metric", "reproduced", "reported", "rel_diff"]
    rep = reported_frame("table2")
    rep = rep[(rep.model == "mf") & (rep.early_stop == "Y")]
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
                         "stopped_after": int(record["epochs_run"]), "paper_stopped_after": paper_stop_epoch("mf", record["loss"]),
                         "best_epoch": int(record["best_epoch"]), "metric": metric,
                         "reproduced": record[metric], "reported": reported_value,
                         "rel_diff": record[metric] / reported_value - 1})
    table = pd.DataFrame(rows, columns=columns)
    if profile != PAPER:
        table = table.drop(columns=["paper_stopped_after", "reported", "rel_diff"])
    tester, claims = Tester(results_dir), []
    for d in DATASETS if profile == PAPER else ():
        for loss in ("ccl", "mml"):
            cell = table[(table.dataset == d) & (table.loss == loss)]
            reduced = cell[cell.schedule.str.startswith("lr")]
            plain = cell[cell.schedule == "constant lr"]
            if reduced.empty:
                continue          # only the runs trained for the hypothesis make claims
            have, paper_stop = not plain.empty, paper_stop_epoch("mf", loss)
            # issue 32: the mean over the seeds, not the first seed's row
            stop_r = float(reduced[reduced.metric == METRICS[0]].stopped_after.mean())
            stop_p = float(plain[plain.metric == METRICS[0]].stopped_after.mean()) if have else float("nan")
            claims.append(claim(
                tester, f"lr_reduce, {d} MF {LOSS_NAMES[loss]} ES = Y: the schedule stops nearer the paper's "
                        f"{paper_stop} epochs than constant lr",
                f"stopped after {stop_r:g} (constant lr: {stop_p:g}; mean over seeds)",
                [], None if not have else abs(stop_r - paper_stop) < abs(stop_p - paper_stop)))
            means = reduced.groupby("metric", sort=False)[["reproduced", "reported"]].mean()
            diffs = means.reproduced / means.reported - 1
            claims.append(claim(
                tester, f"lr_reduce, {d} MF {LOSS_NAMES[loss]} ES = Y: within ±5% of the paper's ES = Y numbers",
                ", ".join(f"{m} {v:+.1%}" for m, v in diffs.items()),
                [], bool((diffs.abs() <= BAND).all())))
    return _result(table, claims, profile)


COMPARISONS: dict[str, Callable[[str, Any], dict[str, pd.DataFrame]]] = {
    "table2": _compare_table2, "table3": _compare_table3, "figure3": _compare_figure3,
    "ccl_matched": _compare_ccl_matched, "honest": _compare_honest, "li2023": _compare_li2023,
    "lr_reduce": _compare_lr_reduce,
}


def compare(group: str, profile: str = PAPER, results_dir: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """Reproduced (mean ± h over seeds) vs reported, and the paper's claims for ``group``.

    Returns ``{"table": ..., "claims": ...}`` (Table 2 adds ``"stops"``). For Tables 2 and 3 the
    table has one row per cell and metric with ``mean``, ``std``, ``ci_low`` / ``ci_high``,
    ``seeds``, ``device``, ``profile`` and, for the paper profile only, ``reported``,
    ``rel_diff`` ((mean − reported) / reported), ``within_5pct`` (yes / no / missing) and the
    cell's ``evidence`` (:func:`mmlrepro.evidence.cell_level`). The claims frame has one row per
    claim of the text (:data:`mmlrepro.evidence.CLAIM_COLUMNS`: the deciding part (``decides``,
    named for a claim of several parts), its gain, interval and p-values, ``p_holm``,
    ``verdict`` (holds / does not hold / missing), ``evidence`` (:data:`mmlrepro.evidence.CLAIM_LEVELS`),
    ``vs_paper`` and ``parts``); it is empty for a profile other than ``paper``.
    :func:`mmlrepro.evidence.claims_display` formats it.
    """
    if group not in COMPARISONS:
        raise ValueError(f"unknown group {group!r}; known: {', '.join(COMPARISONS)}")
    return COMPARISONS[group](profile, results_dir)


def seed_noise(profile: str, results_dir: str | Path | None = None) -> pd.DataFrame:
    """The paper's MML-vs-baseline gaps beside the run-to-run noise measured over seeds of
    ``profile``'s runs (the noise of the quick profile's 2,000-user, 4-epoch runs says nothing
    about the paper's full-data runs).

    One row per comparison (Table 2: MML vs CCL in every model × early-stop cell; Table 3: MML
    vs BSL), dataset and metric, with a display ``label``: ``paper_gap`` = (MML / baseline − 1)
    in % from the reported numbers, ``reproduced_gap`` the same from the seed means,
    ``std_mml`` / ``std_base`` the std over seeds relative to the baseline's mean in % (ddof 1),
    ``noise`` = √(std_mml² + std_base²) (%; the std of the difference of two independent runs),
    and ``paper_gap_in_sd`` = ``paper_gap / noise``: how many run-to-run standard deviations the
    published gap spans. ``noise`` is NaN for cells with fewer than two seeds.
    """
    rows = []
    for group, base in (("table2", "ccl"), ("table3", "bsl")):
        table = compare(group, profile, results_dir)["table"].drop(columns="reported", errors="ignore")
        cells = ["model", "early_stop", "loss", "dataset", "metric"]
        rep = reported_frame(group)
        if group == "table3":
            table = table.assign(model="mf", early_stop="N")
            rep = rep.assign(model="mf", early_stop="N")
        table = table.merge(rep[[*cells, "reported"]], on=cells, how="left")
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
    out["profile"] = profile
    out["paper_gap_in_sd"] = out["paper_gap"] / out["noise"]
    return out
