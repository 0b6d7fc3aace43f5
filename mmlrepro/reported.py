"""The paper's numbers and names (SPEC §9): MML Tables 2 and 3, the claims of its text, Figure 3's
gains at N = 10, the early-stop epochs, and the Li et al. 2023 claims, shipped with the package as
``reported.json``; the display names of the losses and models."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import pandas as pd

from mmlrepro.catalogue import DATASETS

METRICS = ("recall@20", "ndcg@20")

# Display names, in the order the notebooks list the losses (Table 3's, then Li et al.'s).
LOSS_NAMES = {"bpr": "BPR", "hinge": "pairwise hinge", "softmax_ce": "softmax CE", "mse": "MSE",
              "ccl": "CCL", "bsl": "BSL", "mml": "MML", "ssm": "InfoNCE", "infonce_plus": "InfoNCE+",
              "debiased_infonce": "debiased InfoNCE", "debiased_ccl": "debiased CCL"}
MODEL_NAMES = {"mf": "MF", "simplex": "SimpleX"}


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
            for metric, value in zip(METRICS, entry[d], strict=True):
                rows.append({**cell, "dataset": d, "metric": metric, "reported": value})
    return pd.DataFrame(rows)


def bars_ease() -> dict[str, tuple[float, float, float]]:
    """BARS's EASE points (SPEC §9, other published points): per dataset, its λ, Recall@20 and
    NDCG@20 (``reported.json``'s ``other_points``)."""
    entry = next(p for p in reported()["other_points"] if p["source"] == "BARS" and p["method"].startswith("EASE"))
    return {dataset: (float(lam), *map(float, entry[dataset])) for dataset, lam in entry["lam"].items()}


def paper_stop_epoch(model: str, loss: str) -> int:
    """The epoch the paper's early-stopped runs stopped after (SPEC §8: SimpleX 33 with CCL, 19 with
    MML; MF 19)."""
    stops = reported()["table2_early_stop_epochs"]
    return stops.get(f"{model}/{loss}", stops.get(model))
