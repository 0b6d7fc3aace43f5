"""Which early-stopping rule gives the paper's stop epochs, read off Table 2's ES = N runs (issue 18)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmlrepro.catalogue import catalogue_key, configs
from mmlrepro.config import MIN_DELTA, RunConfig
from mmlrepro.reported import METRICS, paper_stop_epoch, reported_frame
from mmlrepro.results import ResultsStore
from mmlrepro.selection import early_stop_epochs, select_best

# The early-stopping rules tried against the paper's stop epochs (issue 18): (monitor, patience,
# min_delta); monitor None is each run's own (SPEC §6: Recall@20, NDCG@20 for SimpleX Gowalla).
SPEC_STOPPING_RULE = (None, RunConfig.patience, MIN_DELTA)
OWN_MONITOR = "run's own"
STOPPING_RULES = tuple((monitor, patience, min_delta) for monitor in (None, "ndcg@20") for patience in (1, 2, 3)
                       for min_delta in (1e-6, 1e-4, 5e-4, 1e-3))


def _paper_es_y() -> pd.Series:
    """The paper's Table 2 ES = Y numbers, by (model, loss, dataset, metric)."""
    rep = reported_frame("table2")
    return rep[rep.early_stop == "Y"].set_index(["model", "loss", "dataset", "metric"])["reported"]


def _es_n_histories(profile: str, results_dir: str | Path | None) -> dict[str, list[tuple[RunConfig, list[dict[str, float]]]]]:
    """Table 2's stored ES = N runs of ``profile``: ``"<model> <loss> <dataset>"`` → (config, history)
    per seed, cells ordered by model, loss, then Yelp2018 before Gowalla."""
    plain = {catalogue_key(c): c for c in configs("table2", profile, 10) if c.selection == "paper"}
    histories: dict[str, list[tuple[RunConfig, list[dict[str, float]]]]] = {}
    for record in ResultsStore(results_dir).records():
        if (config := plain.get(record["key"])) is not None:
            histories.setdefault(f"{config.model} {config.loss} {config.dataset}", []).append((config, record["history"]))
    return dict(sorted(histories.items(), key=lambda kv: (kv[0].split()[0], kv[0].split()[1], kv[0].split()[2] != "yelp2018")))


def stopping_rules(profile: str = "paper", results_dir: str | Path | None = None) -> pd.DataFrame:
    """Which early-stopping rule gives the paper's stop epochs, read off Table 2's ES = N runs (issue 18).

    The paper says its early-stopped runs stopped after 19 epochs (MF), 33 (SimpleX + CCL) and 19
    (SimpleX + MML); SPEC §6's rule (3 epochs without an improvement > 1e-6) stops ours later.
    Without lr cuts an ES = Y run trains exactly as its ES = N twin until it stops, so the stop
    epoch and the selected epoch's test metrics of any rule are read off the twin's history
    (:func:`mmlrepro.selection.early_stop_epochs`, :func:`mmlrepro.selection.select_best`) at no cost.
    One row per rule of :data:`STOPPING_RULES`: ``monitor`` (:data:`OWN_MONITOR`: SPEC §6's),
    ``patience``, ``min_delta``; one column per stored cell, ``"<model> <loss> <dataset>"``, with
    its stop epoch (the mean over seeds); ``cells``; ``cells_within_2``, the cells that stop
    within 2 epochs of the paper; ``mean_abs_epoch_gap``, |stop − the paper's stop| averaged over
    the cells; ``max_abs_rel_diff``, the largest |reproduced / reported − 1|
    over the cells and both metrics against the paper's ES = Y numbers; ``spec`` (SPEC §6's rule).
    Sorted by ``mean_abs_epoch_gap``; empty without ES = N Table 2 runs.
    """
    rep = _paper_es_y()
    histories = _es_n_histories(profile, results_dir)
    cells = list(histories)
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
            gaps.append(abs(row[cell] - paper_stop_epoch(model, loss)))
        rows.append({**row, "cells": len(cells), "cells_within_2": sum(g <= 2 for g in gaps),
                     "mean_abs_epoch_gap": float(np.mean(gaps)),
                     "max_abs_rel_diff": max(diffs), "spec": (monitor, patience, min_delta) == SPEC_STOPPING_RULE})
    columns = ["monitor", "patience", "min_delta", *cells, "cells", "cells_within_2", "mean_abs_epoch_gap",
               "max_abs_rel_diff", "spec"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["mean_abs_epoch_gap", "max_abs_rel_diff"], kind="stable").reset_index(drop=True)


def at_paper_stop(profile: str = "paper", results_dir: str | Path | None = None) -> pd.DataFrame:
    """Table 2's ES = Y cells as if each run had stopped where the paper's did, read off the ES = N runs.

    A run stopped after the paper's stop epoch ``s`` (:func:`mmlrepro.reported.paper_stop_epoch`:
    19 for MF, 33 / 19 for SimpleX + CCL / MML) selects, among its first ``s`` epochs, the epoch
    SPEC §6 selects (:func:`mmlrepro.selection.select_best` on its monitor). Without lr cuts that
    is its ES = N twin's history cut at ``s``. One row per stored cell: ``model``, ``loss``,
    ``dataset``, ``seeds``, ``paper_stopped_after``, ``selected_epoch`` (per seed), and per metric
    of :data:`METRICS` the mean over seeds of that epoch's test value, the paper's ES = Y number
    (``paper_<metric>``) and ``diff_<metric>`` (ours / paper − 1). Empty without ES = N runs.
    """
    rep = _paper_es_y()
    rows = []
    for cell, runs in _es_n_histories(profile, results_dir).items():
        model, loss, dataset = cell.split()
        stop = paper_stop_epoch(model, loss)
        kept = [history[:stop] for _, history in runs]
        chosen = [h[select_best(h, config.monitor, config.min_delta)] for (config, _), h in zip(runs, kept, strict=True)]
        row: dict[str, Any] = {"model": model, "loss": loss, "dataset": dataset, "seeds": len(runs),
                               "paper_stopped_after": stop,
                               "selected_epoch": ", ".join(str(int(c["epoch"])) for c in chosen)}
        for metric in METRICS:
            ours, paper = float(np.mean([c[metric] for c in chosen])), float(rep[(model, loss, dataset, metric)])
            row |= {metric: ours, f"paper_{metric}": paper, f"diff_{metric}": ours / paper - 1.0}
        rows.append(row)
    columns = ["model", "loss", "dataset", "seeds", "paper_stopped_after", "selected_epoch",
               *[f"{p}{m}" for m in METRICS for p in ("", "paper_", "diff_")]]
    return pd.DataFrame(rows, columns=columns)


def missed_at_paper_stop(missed: pd.DataFrame, at: pd.DataFrame) -> list[float]:
    """How far each early-stopped (ES = Y) number of ``missed`` (Table 2 cells: ``model``, ``loss``,
    ``dataset``, ``metric``, ``early_stop``) lies from the paper's when read at the paper's stop
    epoch (``at``, :func:`at_paper_stop`): ours / paper − 1, in ``missed``'s order; cells ``at``
    cannot read are left out."""
    if at.empty or missed.empty:
        return []
    at = at.set_index(["model", "loss", "dataset"])
    return [float(at.at[(r.model, r.loss, r.dataset), f"diff_{r.metric}"])
            for r in missed[missed["early_stop"] == "Y"].itertuples() if (r.model, r.loss, r.dataset) in at.index]
