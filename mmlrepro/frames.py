"""The results store as the frames the report's and notebooks' tables and figures take.

Everything here reads the store; nothing trains. A group's runs are found by their catalogue keys
(:func:`mmlrepro.catalogue.catalogue_key`: the catalogue's configs on the paper's data), so a
stored run on other data, or of another config, is never shown as a paper cell. Only the
``paper`` profile stands beside the paper's numbers: the other profiles are pipeline runs whose
orders of the losses are not the paper's (:data:`QUICK_LABEL`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmlrepro.catalogue import catalogue_key, configs
from mmlrepro.config import METRIC_NAMES, RunConfig
from mmlrepro.devices import cpu_model, stretches
from mmlrepro.evidence import BAND, cell_level
from mmlrepro.reported import LOSS_NAMES, METRICS, MODEL_NAMES, paper_stop_epoch, reported_frame
from mmlrepro.results import ResultsStore, default_results_dir, load_results, reported_of
from mmlrepro.selection import early_stop_epochs
from mmlrepro.stats import seed_interval

PAPER = "paper"
QUICK_LABEL = "quick pipeline run (does not preserve the paper's orders)"


def profile_label(profile: str) -> str:
    """How a table or figure names a profile: ``paper``, or what a shorter one is."""
    return PAPER if profile == PAPER else f"{profile}: {QUICK_LABEL}"


def runs_of(group: str | tuple[str, ...], profile: str, results_dir: str | Path | None,
            max_seeds: int = 10) -> pd.DataFrame:
    """Stored runs belonging to ``group`` (or to any of several; matched by config key, any of
    the first seeds), read in one pass over the store."""
    groups = (group,) if isinstance(group, str) else group
    keys = {catalogue_key(c) for g in groups for c in configs(g, profile, max_seeds)}
    frame = load_results(results_dir)
    if frame.empty:
        return frame
    return frame[frame["key"].isin(keys)].copy()


def aggregate(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
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


def with_reported(agg: pd.DataFrame, rep: pd.DataFrame, on: list[str], profile: str) -> pd.DataFrame:
    """The paper's cells with their reproduced numbers. For the ``paper`` profile: ``reported``,
    ``rel_diff`` ((mean − reported) / reported), ``within_5pct`` (yes / no / missing) and the
    cell's ``evidence`` (:func:`mmlrepro.evidence.cell_level`); other profiles get none of these
    (their numbers do not stand for the paper's)."""
    table = rep.merge(agg, on=on, how="left")
    table["profile"] = profile
    if profile != PAPER:
        return table.drop(columns="reported")
    table["rel_diff"] = (table["mean"] - table["reported"]) / table["reported"]
    table["within_5pct"] = np.where(table["mean"].isna(), "missing",
                                    np.where(table["rel_diff"].abs() <= BAND, "yes", "no"))
    table["evidence"] = [cell_level(s, r) for s, r in zip(table["seeds"].fillna(0), table["rel_diff"], strict=True)]
    return table


def cell_mean(table: pd.DataFrame, **where: Any) -> float:
    """The ``mean`` of the row of ``table`` matching ``where`` (NaN if none)."""
    mask = np.ones(len(table), dtype=bool)
    for k, v in where.items():
        mask &= (table[k] == v).to_numpy()
    values = table.loc[mask, "mean"].dropna()
    return float(values.iloc[0]) if len(values) else float("nan")


def rows_of(runs: pd.DataFrame, **where: Any) -> pd.DataFrame:
    """The runs (one per seed) of the cell ``where``."""
    if runs.empty:
        return runs
    mask = np.ones(len(runs), dtype=bool)
    for k, v in where.items():
        if k not in runs:
            return runs.iloc[0:0]
        mask &= (runs[k] == v).to_numpy()
    return runs[mask]


def early_stop_table(runs: pd.DataFrame) -> pd.DataFrame:
    """ES = Y runs: the epoch each stopped after and its best epoch, beside the paper's stop epoch
    (SPEC §8: SimpleX stopped after 33 epochs with CCL and 19 with MML; MF after 19)."""
    columns = ["model", "loss", "dataset", "seeds", "paper_stopped_after", "stopped_after", "best_epoch"]
    if runs.empty or not (runs["selection"] == "early_stop").any():
        return pd.DataFrame(columns=columns)
    rows = []
    for (model, loss, dataset), sub in runs[runs["selection"] == "early_stop"].groupby(["model", "loss", "dataset"]):
        rows.append({"model": model, "loss": loss, "dataset": dataset, "seeds": sub["seed"].nunique(),
                     "paper_stopped_after": paper_stop_epoch(model, loss),
                     "stopped_after": ", ".join(str(int(e)) for e in sub["epochs_run"]),
                     "best_epoch": ", ".join(str(int(e)) for e in sub["best_epoch"])})
    return pd.DataFrame(rows, columns=columns)


EARLY_STOP_NOISE = "whose stop epoch moves with training noise"


def early_stopped(rows: pd.DataFrame) -> int:
    """How many of ``rows`` (cells or runs with an ``early_stop`` Y/N column; none without it) are
    early-stopped (ES = Y): numbers :data:`EARLY_STOP_NOISE` (:func:`reruns_on_another_cpu`)."""
    return int((rows["early_stop"] == "Y").sum()) if "early_stop" in rows else 0


def reruns_on_another_cpu(runs: pd.DataFrame, results_dir: str | Path | None = None) -> pd.DataFrame:
    """Each of ``runs`` that was trained again on another CPU model: its set-aside earlier record
    of the same key (same config, seed and data; :meth:`mmlrepro.results.ResultsStore.set_aside_records`)
    beside the stored one. The change measures the CPUs' floating-point rounding; an early-stopped
    run's stop epoch can move with it. One row per earlier record: ``run``, ``early_stop``,
    ``then`` and ``now`` (CPU models), ``stopped_after`` and ``selected_epoch`` ("then → now"),
    ``stop_moved``, and per metric of :data:`METRICS` the two values and ``change_<metric>``
    (now / then − 1)."""
    def cpus(device: str) -> str:
        return ", ".join(dict.fromkeys(cpu_model(d) for d in stretches(device)))

    store, rows = ResultsStore(results_dir, log=None), []
    for run in runs.itertuples():
        for old in store.set_aside_records(run.key):
            if cpus(old["device"]) == cpus(run.device):
                continue
            row = {"run": f"{MODEL_NAMES.get(run.model, run.model)} + {LOSS_NAMES.get(run.loss, run.loss)}, "
                          f"{run.dataset}, N {run.n_negatives}, seed {run.seed}",
                   "early_stop": "Y" if run.selection == "early_stop" else "N",
                   "then": cpus(old["device"]), "now": cpus(run.device),
                   "stopped_after": f"{old['last']['epoch']} → {run.epochs_run}",
                   "selected_epoch": f"{old['best']['epoch']} → {run.best_epoch}",
                   "stop_moved": old["last"]["epoch"] != run.epochs_run}
            for metric in METRICS:
                then, now = reported_of(old)[metric], float(runs.loc[run.Index, metric])
                row[metric] = f"{then:.4f} → {now:.4f}"
                row[f"change_{metric}"] = now / then - 1.0
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# helpers for the notebooks (03-07)

CELL_COLUMNS = {"table2": ["model", "loss", "early_stop"], "table3": ["loss"]}


def group_runs(group: str, profile: str, results_dir: str | Path | None = None,
               max_seeds: int = 10) -> pd.DataFrame:
    """The stored runs of ``group`` (one row per run, as :func:`mmlrepro.results.load_results`),
    with ``early_stop`` (Y/N from ``selection``) and the display name ``loss_name`` added."""
    runs = runs_of(group, profile, results_dir, max_seeds)
    if runs.empty:
        return runs
    runs["early_stop"] = np.where(runs["selection"] == "early_stop", "Y", "N")
    runs["loss_name"] = runs["loss"].map(lambda v: LOSS_NAMES.get(v, v))
    return in_loss_order(runs, ["dataset", "model", "n_negatives", "selection", "seed"])


def in_loss_order(frame: pd.DataFrame, then: list[str], first: tuple[str, ...] = ()) -> pd.DataFrame:
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


def runs_vs_reported(group: str, profile: str = PAPER, results_dir: str | Path | None = None) -> pd.DataFrame:
    """Every stored paper-profile run of Table 2 or 3 beside the paper's number of its cell, long.

    Columns: the cell columns, ``label`` (:func:`cell_label`), ``dataset``, ``metric``, ``seed``,
    ``reproduced`` (the run's selected-epoch test metric), ``reported``, ``rel_diff``
    (reproduced / reported − 1). Empty when no run is stored. The input of
    :func:`mmlrepro.plots.plot_reproduced_vs_reported`. Only the paper profile stands beside the
    paper's numbers: any other ``profile`` is refused.
    """
    if group not in CELL_COLUMNS:
        raise ValueError(f"runs_vs_reported: group must be one of {list(CELL_COLUMNS)}, got {group!r}")
    if profile != PAPER:
        raise ValueError(f"runs_vs_reported: only the paper profile stands beside the paper's numbers, "
                         f"got {profile!r} ({QUICK_LABEL})")
    cells = CELL_COLUMNS[group]
    columns = [*cells, "label", "dataset", "metric", "seed", "reproduced", "reported", "rel_diff", "profile"]
    runs = group_runs(group, profile, results_dir)
    if runs.empty:
        return pd.DataFrame(columns=columns)
    long = runs.melt(id_vars=[*cells, "dataset", "seed"], value_vars=list(METRICS),
                     var_name="metric", value_name="reproduced")
    out = long.merge(reported_frame(group), on=[*cells, "dataset", "metric"], how="left")
    out["rel_diff"] = out["reproduced"] / out["reported"] - 1
    out["profile"] = profile
    out["label"] = out.apply(cell_label, axis=1, group=group)
    out["order"] = out["metric"].map(METRICS.index)
    first = ("model",) if "model" in cells else ()
    return in_loss_order(out, ["early_stop", "dataset", "order", "seed"] if first else
                         ["dataset", "order", "seed"], first)[columns]


def learning_curves(group: str, profile: str, results_dir: str | Path | None = None,
                    **where: Any) -> pd.DataFrame:
    """Per-epoch history of the stored runs of ``group``, long: one row per run and epoch.

    Columns: ``dataset``, ``model``, ``model_name``, ``loss``, ``loss_name``, ``selection``, ``early_stop``,
    ``n_negatives``, ``seed``, ``label`` (``"MF · MML"``), ``epoch``, ``train_loss``, the metrics
    of the epoch's evaluation (test, or validation for ``honest`` runs), ``stop_epoch`` (where
    SPEC §6's early-stopping rule ends the run: :func:`mmlrepro.selection.early_stop_epochs`, the
    run's own length for an early-stopped run) and ``paper_stop_epoch`` (where the paper's
    early-stopped run of the cell stopped; Table 2's paper profile only, NaN elsewhere).
    ``where`` keeps the runs whose config fields equal the given values, e.g. ``selection="paper"``.
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
        run["profile"] = profile
        history = record["history"]
        lr_cuts = bool(config.get("lr_reduce"))
        run["stop_epoch"] = (len(history) if run["selection"] == "early_stop" or lr_cuts
                             else early_stop_epochs(history, RunConfig.from_dict(config)))
        run["paper_stop_epoch"] = (paper_stop_epoch(run["model"], run["loss"])
                                   if group == "table2" and profile == PAPER else float("nan"))
        for epoch in history:
            rows.append({**run, "epoch": epoch["epoch"], "train_loss": epoch["loss"],
                         **{m: epoch[m] for m in METRIC_NAMES if m in epoch}})
    columns = ["dataset", "model", "model_name", "loss", "loss_name", "selection", "early_stop", "n_negatives",
               "seed", "label", "epoch", "train_loss", *METRICS, "stop_epoch", "paper_stop_epoch", "profile"]
    if not rows:
        return pd.DataFrame(columns=columns)
    return in_loss_order(pd.DataFrame(rows), ["dataset", "model", "seed", "epoch"])


def linear_results(results_dir: str | Path | None = None) -> pd.DataFrame:
    """The EASE / iALS runs of ``results/linear/*.json`` (written by
    :func:`mmlrepro.linear.save_linear_result`), one row per run: ``dataset``, ``method``,
    ``profile``, the hyperparameters (``lam``; ``dim``, ``alpha``, ``reg``, ``reg_exp``,
    ``epochs``), ``tau_plus``, ``debiased`` (τ⁺ > 0), the four metrics, ``device``, ``fit_s``.
    Empty (with those columns) when the folder holds no run."""
    # here, not at the top: mmlrepro.linear holds the models too (torch), and importing the
    # comparison layer imports no torch (tests/test_selection.py)
    from mmlrepro.linear import read_linear_results

    root = Path(results_dir) if results_dir is not None else default_results_dir()
    hp = ["lam", "dim", "alpha", "reg", "reg_exp", "epochs"]
    columns = ["dataset", "method", "profile", *hp, "tau_plus", "debiased", *METRIC_NAMES, "device", "fit_s", "key"]
    rows = []
    for record in read_linear_results(root / "linear", log=lambda line: print(line, file=sys.stderr)):
        config = record["config"]
        rows.append({**{k: config.get(k) for k in ("dataset", "method", "profile", *hp, "tau_plus")},
                     "debiased": float(config.get("tau_plus") or 0.0) > 0, **record["metrics"],
                     "device": record.get("device", ""), "fit_s": record.get("timings", {}).get("fit_s"),
                     "key": record.get("key", "")})
    return pd.DataFrame(rows, columns=columns)
