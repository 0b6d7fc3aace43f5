"""How many of the paper's orderings a truncated protocol keeps, read off stored histories (issue 36).

A run of the paper protocol stopped after E epochs trains exactly the first E epochs of the
stored 100-epoch run (:mod:`mmlrepro.verify` says why), and selects its epoch by the same rule
(:func:`mmlrepro.selection.select_best`) among them. So for every E the number each truncated run
reports is ``history[select_best(history[:E])]``, at no training cost; an early-stopped (ES = Y)
run keeps its own, shorter history (it stops where it stopped).

The orderings (:func:`orderings`) are the paper's, from its tables and text (SPEC §9):

- **Table 3**: per dataset and metric, the order of every pair of the seven losses (the pairs the
  paper ties, Yelp2018 NDCG@20 BSL = MML = 0.0580, are left out);
- **Table 2**: per model, ES, dataset and metric, the sign of MML − CCL;
- **Figure 3**: the signs the text states, for the N the tables do not cover (N = 100 is Table 3's
  runs): MML > CCL and MML > BSL at N = 10 and 50 ("MML ≥ the baselines for N ≤ 100"), MML >
  CCL and BSL > MML at N = 800.

An ordering counts where both its cells have a stored run of the profile; a cell is the mean over
its stored seeds. A reproduced tie counts as disagreeing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmlrepro.catalogue import DATASETS, TABLE3_LOSSES, catalogue_key, paper_config
from mmlrepro.comparison import METRICS, reported_frame
from mmlrepro.config import RunConfig
from mmlrepro.results import ResultsStore
from mmlrepro.selection import select_best

# Figure 3's signs in the text (SPEC §9), by N: (winner, loser) pairs.
FIGURE3_SIGNS = {10: (("mml", "ccl"), ("mml", "bsl")), 50: (("mml", "ccl"), ("mml", "bsl")),
                 800: (("mml", "ccl"), ("bsl", "mml"))}
# A short profile must cost at most this share of the paper profile's 100 epochs (issue 36).
SHORT_BUDGET = 0.2
PAPER_EPOCHS = 100
MAX_SEEDS = 10


@dataclass(frozen=True)
class Ordering:
    """The paper says cell ``winner`` beats cell ``loser`` on ``metric`` (cells: catalogue
    configs of seed 2019 and the paper profile; ``artefact`` and ``label`` name it)."""

    artefact: str
    label: str
    metric: str
    winner: RunConfig
    loser: RunConfig


def orderings() -> list[Ordering]:
    """Every ordering of Table 3, Table 2 and Figure 3's text (see the module docstring)."""
    out = []
    t3 = reported_frame("table3").set_index(["loss", "dataset", "metric"])["reported"]
    for d in DATASETS:
        for metric in METRICS:
            for a, b in combinations(TABLE3_LOSSES, 2):
                ra, rb = t3[(a, d, metric)], t3[(b, d, metric)]
                if ra == rb:
                    continue
                win, lose = (a, b) if ra > rb else (b, a)
                out.append(Ordering("table3", f"{d} {metric}: {win} > {lose}", metric,
                                    paper_config(d, "mf", win), paper_config(d, "mf", lose)))
    t2 = reported_frame("table2").set_index(["model", "loss", "early_stop", "dataset", "metric"])["reported"]
    for model in ("mf", "simplex"):
        for es in ("N", "Y"):
            selection = "early_stop" if es == "Y" else "paper"
            for d in DATASETS:
                for metric in METRICS:
                    mml, ccl = t2[(model, "mml", es, d, metric)], t2[(model, "ccl", es, d, metric)]
                    win, lose = ("mml", "ccl") if mml > ccl else ("ccl", "mml")
                    out.append(Ordering("table2", f"{model} ES={es} {d} {metric}: {win} > {lose}", metric,
                                        paper_config(d, model, win, selection=selection),
                                        paper_config(d, model, lose, selection=selection)))
    for n, pairs in FIGURE3_SIGNS.items():
        for d in DATASETS:
            for metric in METRICS:
                for win, lose in pairs:
                    out.append(Ordering("figure3", f"{d} N={n} {metric}: {win} > {lose}", metric,
                                        paper_config(d, "mf", win, n_negatives=n),
                                        paper_config(d, "mf", lose, n_negatives=n)))
    return out


def _seed_keys(cell: RunConfig, profile: str) -> list[str]:
    """The catalogue keys of ``cell`` in ``profile`` for seeds 2019, 2020, ..."""
    base = paper_config(cell.dataset, cell.model, cell.loss, profile=profile, n_negatives=cell.n_negatives,
                        selection=cell.selection)
    return [catalogue_key(base.replace(seed=2018 + k)) for k in range(1, MAX_SEEDS + 1)]


def truncated(history: list[dict[str, Any]], epochs: int, monitor: str, min_delta: float) -> dict[str, Any]:
    """The epoch a run stopped after ``epochs`` epochs reports: :func:`select_best` on the
    first ``epochs`` epochs of ``history`` (all of it when it is shorter)."""
    head = history[:epochs]
    return head[select_best(head, monitor, min_delta)]


def agreement(profile: str = "paper", epochs: Iterable[int] = range(1, PAPER_EPOCHS + 1),
              results_dir: str | Path | None = None) -> pd.DataFrame:
    """One row per truncation ``epochs`` E and ordering with both cells stored in ``profile``:
    ``epochs``, ``artefact``, ``ordering`` (its label), ``metric``, ``winner``, ``loser`` (the
    cells' values at E, means over their stored seeds), ``seeds`` (the fewer of the two cells'),
    ``agrees`` (winner > loser)."""
    histories = {r["key"]: r for r in ResultsStore(results_dir, log=None).records()}
    epochs = list(epochs)
    rows = []
    for o in orderings():
        cells = [[histories[k] for k in _seed_keys(c, profile) if k in histories] for c in (o.winner, o.loser)]
        if not all(cells):
            continue
        for e in epochs:
            values = [float(np.mean([truncated(r["history"], e, r["config"]["monitor"],
                                               r["config"]["min_delta"])[o.metric] for r in runs]))
                      for runs in cells]
            rows.append({"epochs": e, "artefact": o.artefact, "ordering": o.label, "metric": o.metric,
                         "winner": values[0], "loser": values[1], "seeds": min(map(len, cells)),
                         "agrees": values[0] > values[1]})
    columns = ["epochs", "artefact", "ordering", "metric", "winner", "loser", "seeds", "agrees"]
    return pd.DataFrame(rows, columns=columns)


def agreement_curve(frame: pd.DataFrame, full: int | None = None) -> pd.DataFrame:
    """Per E of :func:`agreement`'s ``frame``: ``orderings`` (with runs), ``agree``, and
    ``agree_of_full``: how many of the ``full_agree`` orderings the runs at E = ``full``
    (default: the largest E) agree on still agree at E; plus ``agree_<artefact>`` counts."""
    if frame.empty:
        return pd.DataFrame(columns=["epochs", "orderings", "agree", "full_agree", "agree_of_full"])
    full = int(frame["epochs"].max()) if full is None else full
    kept = set(frame.loc[(frame["epochs"] == full) & frame["agrees"].astype(bool), "ordering"])
    rows = []
    for e, sub in frame.groupby("epochs"):
        row = {"epochs": int(e), "orderings": len(sub), "agree": int(sub["agrees"].sum()),
               "full_agree": len(kept), "agree_of_full": int(sub[sub["ordering"].isin(kept)]["agrees"].sum())}
        for artefact, part in sub.groupby("artefact", sort=False):
            row[f"orderings_{artefact}"] = len(part)
            row[f"agree_{artefact}"] = int(part["agrees"].sum())
        rows.append(row)
    return pd.DataFrame(rows)


def shortest_agreeing(curve: pd.DataFrame, budget: float = SHORT_BUDGET) -> int | None:
    """The smallest E ≤ ``budget`` × 100 epochs at which the truncated runs agree on every
    ordering the full runs agree on (``agree_of_full == full_agree``), or None."""
    ok = curve[(curve["epochs"] <= budget * PAPER_EPOCHS) & (curve["agree_of_full"] == curve["full_agree"])]
    return int(ok["epochs"].min()) if len(ok) else None


def summary(curve: pd.DataFrame, budget: float = SHORT_BUDGET) -> dict[str, Any]:
    """The curve's key numbers: the full runs' agreement, the best E within the budget and how
    many of the full runs' agreeing orderings it keeps, and the first E that keeps them all."""
    if curve.empty:
        return {}
    last = curve.iloc[-1]
    within = curve[curve["epochs"] <= budget * PAPER_EPOCHS]
    best = within.loc[within["agree_of_full"].idxmax()] if len(within) else None
    keeps_all = curve[curve["agree_of_full"] == curve["full_agree"]]
    # the first E from which every later E keeps them all
    later = [curve[curve["epochs"] >= e] for e in keeps_all["epochs"]]
    stable = next((int(sub["epochs"].iloc[0]) for sub in later
                   if (sub["agree_of_full"] == sub["full_agree"]).all()), None)
    return {"orderings": int(last["orderings"]), "full_epochs": int(last["epochs"]),
            "full_agree": int(last["full_agree"]),
            "best_short_epochs": None if best is None else int(best["epochs"]),
            "best_short_agree_of_full": None if best is None else int(best["agree_of_full"]),
            "best_short_agree": None if best is None else int(best["agree"]),
            "shortest_agreeing": shortest_agreeing(curve, budget),
            "first_keeping_all": int(keeps_all["epochs"].min()) if len(keeps_all) else None,
            "stable_from": stable}


def quick_share(results_dir: str | Path | None = None) -> tuple[int, int]:
    """How many of the orderings the full paper-profile runs keep the quick profile's runs
    (its ``QUICK["epochs"]``, mean over its stored seeds) keep too, and of how many it has runs."""
    from mmlrepro.catalogue import QUICK

    paper = agreement("paper", [PAPER_EPOCHS], results_dir)
    kept = set(paper.loc[paper["agrees"].astype(bool), "ordering"])
    quick = agreement("quick", [QUICK["epochs"]], results_dir)
    quick = quick.loc[quick["ordering"].isin(kept)]
    return int(quick["agrees"].sum()), len(quick)


def save_figure(results_dir: str | Path | None = None, figures_dir: str | Path = "figures") -> list[Path]:
    """Draw the paper profile's agreement curve (:func:`mmlrepro.plots.plot_truncated_agreement`)
    and save it as ``<figures_dir>/truncated_agreement_paper.{png,pdf}``."""
    from mmlrepro.plots import plot_truncated_agreement
    from mmlrepro.plots import save_figure as save

    curve = agreement_curve(agreement("paper", results_dir=results_dir))
    kept, of = quick_share(results_dir)
    fig = plot_truncated_agreement(curve, quick=kept / of if of else None, budget=SHORT_BUDGET * PAPER_EPOCHS)
    return save(fig, "truncated_agreement", "paper", figures_dir)
