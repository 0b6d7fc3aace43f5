"""Reproduced vs reported: the paper's numbers (SPEC §9), ``compare`` and the claims of the text,
and the store's runs as the frames the notebooks' tables and figures take.

Everything here reads the results store; nothing trains. A group's runs are found by their
catalogue keys (:func:`mmlrepro.catalogue.catalogue_key`: the catalogue's configs on the paper's
data), so a stored run on other data, or of another config, is never shown as a paper cell.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
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
from mmlrepro.results import ResultsStore, default_results_dir, load_results

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


def _runs(group: str, profile: str, results_dir: str | Path | None, max_seeds: int = 10) -> pd.DataFrame:
    """Stored runs belonging to ``group`` (matched by config key, any of the first seeds)."""
    keys = {catalogue_key(c) for c in configs(group, profile, max_seeds)}
    frame = load_results(results_dir)
    if frame.empty:
        return frame
    return frame[frame["key"].isin(keys)].copy()


def _aggregate(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean, std and count over seeds of the two headline metrics, long format."""
    if frame.empty:
        return pd.DataFrame(columns=[*by, "metric", "mean", "std", "seeds", "device"])
    long = frame.melt(id_vars=[*by, "seed", "device"], value_vars=list(METRICS), var_name="metric")
    agg = long.groupby([*by, "metric"], dropna=False).agg(
        mean=("value", "mean"), std=("value", lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")),
        seeds=("seed", "nunique"), device=("device", lambda v: ", ".join(sorted(set(v)))))
    return agg.reset_index()


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


def _claim(text: str, numbers: str, holds: bool | None) -> dict[str, str]:
    """One claim row; a number whose runs are missing (``nan``, ``+nan%``) shows as ``–``."""
    verdict = "missing runs" if holds is None else ("holds" if holds else "does not hold")
    return {"claim": text, "reproduced": re.sub(r"[+-]?\bnan\b%?", "–", numbers), "verdict": verdict}


def _gain(a: float, b: float) -> float:
    return (a / b - 1.0) * 100.0 if b else float("nan")


def _compare_table2(profile: str, results_dir) -> dict[str, pd.DataFrame]:
    runs = _runs("table2", profile, results_dir)
    if not runs.empty:
        runs["early_stop"] = np.where(runs["selection"] == "early_stop", "Y", "N")
    agg = _aggregate(runs, ["model", "loss", "early_stop", "dataset"])
    table = _with_reported(agg, reported_frame("table2"), ["model", "loss", "early_stop", "dataset", "metric"], profile)
    claims = []
    for model in ("simplex", "mf"):
        for es in ("Y", "N"):
            for d in DATASETS:
                for metric in METRICS:
                    where = dict(model=model, early_stop=es, dataset=d, metric=metric)
                    rep_mml = float(table.loc[(table.loss == "mml") & (table.model == model) & (table.early_stop == es)
                                              & (table.dataset == d) & (table.metric == metric), "reported"].iloc[0])
                    rep_ccl = float(table.loc[(table.loss == "ccl") & (table.model == model) & (table.early_stop == es)
                                              & (table.dataset == d) & (table.metric == metric), "reported"].iloc[0])
                    mml, ccl = _cell(table, loss="mml", **where), _cell(table, loss="ccl", **where)
                    ok = None if np.isnan(mml) or np.isnan(ccl) else mml > ccl
                    claims.append(_claim(
                        f"Table 2: {model} ES={es} {d} {metric}: MML beats CCL (paper: {_gain(rep_mml, rep_ccl):+.1f}%)",
                        f"MML {mml:.4f} vs CCL {ccl:.4f} ({_gain(mml, ccl):+.1f}%)", ok))
    stops = _early_stop_epochs(runs if profile == "paper" else runs.iloc[0:0])  # paper stop epochs: paper settings only
    return {"table": table, "claims": pd.DataFrame(claims), "stops": stops}


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
    agg = _aggregate(_runs("table3", profile, results_dir), ["loss", "dataset"])
    table = _with_reported(agg, reported_frame("table3"), ["loss", "dataset", "metric"], profile)
    claims = []
    for d in DATASETS:
        for metric in METRICS:
            mml = _cell(table, loss="mml", dataset=d, metric=metric)
            mse = _cell(table, loss="mse", dataset=d, metric=metric)
            claims.append(_claim(f"Table 3: {d} {metric}: MML beats MSE",
                                 f"MML {mml:.4f} vs MSE {mse:.4f} ({_gain(mml, mse):+.1f}%)",
                                 None if np.isnan(mml) or np.isnan(mse) else mml > mse))
            others = [loss for loss in TABLE3_LOSSES if loss not in ("mml", "bsl")]
            best_other = max((_cell(table, loss=o, dataset=d, metric=metric) for o in others), default=float("nan"))
            claims.append(_claim(f"Table 3: {d} {metric}: MML beats BPR, hinge, softmax CE, MSE and CCL",
                                 f"MML {mml:.4f} vs best of them {best_other:.4f}",
                                 None if np.isnan(mml) or np.isnan(best_other) else mml > best_other))
    d = "gowalla"
    r = {loss: _cell(table, loss=loss, dataset=d, metric="recall@20") for loss in ("mml", "bsl", "ccl")}
    n = {loss: _cell(table, loss=loss, dataset=d, metric="ndcg@20") for loss in ("mml", "bsl", "ccl")}
    missing = any(np.isnan(v) for v in [*r.values(), *n.values()])
    claims.append(_claim("Gowalla: MML beats CCL and BSL on Recall@20 but trails BSL on NDCG@20",
                         f"R: MML {r['mml']:.4f}, BSL {r['bsl']:.4f}, CCL {r['ccl']:.4f}; "
                         f"N: MML {n['mml']:.4f}, BSL {n['bsl']:.4f}",
                         None if missing else (r["mml"] > max(r["bsl"], r["ccl"]) and n["mml"] < n["bsl"])))
    return {"table": table, "claims": pd.DataFrame(claims)}


def _compare_figure3(profile: str, results_dir) -> dict[str, pd.DataFrame]:
    agg = _aggregate(_runs("figure3", profile, results_dir), ["dataset", "loss", "n_negatives"])
    agg["profile"] = profile
    claims = []
    gains = reported()["figure3_gain_at_10"]
    for d in DATASETS:
        for metric, claimed in zip(METRICS, gains[d], strict=True):
            mml = _cell(agg, dataset=d, loss="mml", n_negatives=10, metric=metric)
            ccl = _cell(agg, dataset=d, loss="ccl", n_negatives=10, metric=metric)
            gain = _gain(mml, ccl)
            ok = None if np.isnan(gain) else (gain > 0 and abs(gain - claimed) <= 5.0)
            claims.append(_claim(f"Figure 3, {d}, N = 10: MML beats CCL by {claimed:+.2f}% on {metric} "
                                 "(holds: same sign and within 5 points)", f"{gain:+.2f}%", ok))
        for metric in METRICS:
            values = {(loss, n): _cell(agg, dataset=d, loss=loss, n_negatives=n, metric=metric)
                      for loss in ("mml", "ccl", "bsl") for n in (10, 50, 100, 800)}
            small = [(n, values[("mml", n)], max(values[("ccl", n)], values[("bsl", n)])) for n in (10, 50, 100)]
            missing = any(np.isnan(v) for _, a, b in small for v in (a, b))
            claims.append(_claim(f"Figure 3, {d}, {metric}: MML ≥ CCL and BSL for N ≤ 100",
                                 "; ".join(f"N={n}: {a:.4f} vs {b:.4f}" for n, a, b in small),
                                 None if missing else all(a >= b for _, a, b in small)))
            m8, c8, b8 = values[("mml", 800)], values[("ccl", 800)], values[("bsl", 800)]
            claims.append(_claim(f"Figure 3, {d}, {metric}: at N = 800 MML > CCL but < BSL",
                                 f"MML {m8:.4f}, CCL {c8:.4f}, BSL {b8:.4f}",
                                 None if np.isnan([m8, c8, b8]).any() else (c8 < m8 < b8)))
    return {"table": agg, "claims": pd.DataFrame(claims)}


def _compare_ccl_matched(profile: str, results_dir) -> dict[str, pd.DataFrame]:
    runs = _runs("ccl_matched", profile, results_dir)
    if not runs.empty:
        runs["variant"] = np.where(runs["loss"] == "mml", "MML",
                                   np.where(runs["hp_neg_weight"].astype(float) > 300, "CCL (matched weight)", "CCL (paper weight)"))
    agg = _aggregate(runs, ["dataset", "n_negatives", "variant"])
    claims = []
    for d in DATASETS:
        for n in (10, 100):
            for metric in METRICS:
                mml = _cell(agg, dataset=d, n_negatives=n, variant="MML", metric=metric)
                ccl = _cell(agg, dataset=d, n_negatives=n, variant="CCL (paper weight)", metric=metric)
                matched = _cell(agg, dataset=d, n_negatives=n, variant="CCL (matched weight)", metric=metric)
                gain, left = mml - ccl, mml - matched
                share = left / gain * 100 if gain else float("nan")
                claims.append(_claim(
                    f"Matched weight, {d}, N = {n}, {metric}: MML's gain over CCL survives a CCL with MML's weight",
                    f"MML {mml:.4f}, CCL {ccl:.4f}, matched CCL {matched:.4f}: {share:.0f}% of the gain survives",
                    None if np.isnan([mml, ccl, matched]).any() else left > 0))
    return {"table": agg, "claims": pd.DataFrame(claims)}


def _compare_honest(profile: str, results_dir) -> dict[str, pd.DataFrame]:
    runs = _runs("honest", profile, results_dir)
    agg = _aggregate(runs, ["dataset", "loss", "selection"])
    claims = []
    for d in DATASETS:
        for metric in METRICS:
            vals = {(loss, sel): _cell(agg, dataset=d, loss=loss, selection=sel, metric=metric)
                    for loss in ("ccl", "mml") for sel in ("paper", "honest")}
            missing = np.isnan(list(vals.values())).any()
            claims.append(_claim(
                f"Honest selection, {d}, {metric}: MML still beats CCL when the epoch is chosen on validation",
                f"test-selected MML {vals[('mml', 'paper')]:.4f} / CCL {vals[('ccl', 'paper')]:.4f}; "
                f"validation-selected MML {vals[('mml', 'honest')]:.4f} / CCL {vals[('ccl', 'honest')]:.4f}",
                None if missing else vals[("mml", "honest")] > vals[("ccl", "honest")]))
    return {"table": agg, "claims": pd.DataFrame(claims)}


def _compare_li2023(profile: str, results_dir) -> dict[str, pd.DataFrame]:
    runs = _runs("li2023", profile, results_dir)
    for col in ("hp_lam", "hp_eps", "hp_tau_plus"):
        if col not in runs:
            runs[col] = np.nan
    agg = _aggregate(runs, ["dataset", "loss", "hp_lam", "hp_eps", "hp_tau_plus"])
    claims_rep = reported()["li2023_claims"]
    claims = []
    for d in DATASETS:
        for metric in METRICS:
            grid = agg[(agg.dataset == d) & (agg.loss == "infonce_plus") & (agg.metric == metric)].dropna(subset=["mean"])
            full = len(grid) == len(LI2023_LAMBDAS) * len(LI2023_EPS)
            infonce = _cell(grid, hp_lam=1.0, hp_eps=1.0) if full else float("nan")
            best = grid.loc[grid["mean"].idxmax()] if full else None
            mine = grid[grid.hp_eps == 0.0]["mean"].max() if full else float("nan")
            claims.append(_claim(f"Li 2023, {d}, {metric}: ε = 0 is best in the InfoNCE+ grid",
                                 "" if best is None else f"best λ = {best.hp_lam}, ε = {best.hp_eps} ({best['mean']:.4f})",
                                 None if best is None else best.hp_eps == claims_rep["best_eps"]))
            claims.append(_claim(f"Li 2023, {d}, {metric}: λ ≈ 1.1 is best",
                                 "" if best is None else f"best λ = {best.hp_lam}",
                                 None if best is None else abs(best.hp_lam - claims_rep["best_lam"]) < 0.051))
            gain = _gain(mine, infonce)
            claims.append(_claim(f"Li 2023, {d}, {metric}: MINE+ beats InfoNCE (paper: up to +{claims_rep['mine_plus_gain_max_percent']:.0f}%)",
                                 f"best MINE+ {mine:.4f} vs InfoNCE {infonce:.4f} ({gain:+.1f}%)",
                                 None if np.isnan(gain) else gain > 0))
            sub = agg[(agg.dataset == d) & (agg.metric == metric)]
            ccl = _cell(sub, loss="ccl")
            for biased, name, base in (("debiased_infonce", "InfoNCE", infonce), ("debiased_ccl", "CCL", ccl)):
                deb = sub[sub.loss == biased]["mean"].max() if (sub.loss == biased).any() else float("nan")
                claims.append(_claim(f"Li 2023, {d}, {metric}: debiased {name} ≥ {name}",
                                     f"best debiased {deb:.4f} vs {base:.4f} ({_gain(deb, base):+.1f}%)",
                                     None if np.isnan([deb, base]).any() else deb >= base))
    return {"table": agg, "claims": pd.DataFrame(claims)}


COMPARISONS: dict[str, Callable[[str, Any], dict[str, pd.DataFrame]]] = {
    "table2": _compare_table2, "table3": _compare_table3, "figure3": _compare_figure3,
    "ccl_matched": _compare_ccl_matched, "honest": _compare_honest, "li2023": _compare_li2023,
}


def compare(group: str, profile: str = "quick", results_dir: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """Reproduced (mean ± std over seeds) vs reported, and the paper's claims for ``group``.

    Returns ``{"table": ..., "claims": ...}``. For Tables 2 and 3 the table has one row per
    cell and metric with ``reported``, ``mean``, ``std``, ``seeds``, ``device``, ``profile``,
    ``rel_diff`` ((mean − reported) / reported) and ``within_5pct`` (yes / no / missing). The
    claims table has one row per claim of the text: ``claim``, ``reproduced``, ``verdict``
    (holds / does not hold / missing runs).
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
    for path in sorted((root / "linear").glob("*.json")):
        record = json.loads(path.read_text())
        config = record["config"]
        rows.append({**{k: config.get(k) for k in ("dataset", "method", "profile", *hp, "tau_plus")},
                     "debiased": float(config.get("tau_plus") or 0.0) > 0, **record["metrics"],
                     "device": record.get("device", ""), "fit_s": record.get("timings", {}).get("fit_s"),
                     "key": record.get("key", path.stem)})
    return pd.DataFrame(rows, columns=columns)

