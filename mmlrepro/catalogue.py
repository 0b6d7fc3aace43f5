"""The catalogue of the paper's runs: which runs each table and figure has (SPEC §8).

Groups: ``table2``, ``table3``, ``figure3``, ``ccl_matched``, ``honest``, ``li2023``. Each yields
``RunConfig``s for a profile and a number of seeds:

- ``paper``: exactly SPEC §8 (100 epochs, lr 1e-4, N = 100 unless swept, batch 512 Yelp / 256
  Gowalla, the per-dataset regulariser and loss settings).
- ``quick``: a labelled reduction that finishes a group on a 2-core CPU in minutes — see
  :data:`QUICK`. Its numbers are not comparable to the paper's absolute values; they show the
  relative order of losses on a user subsample after a few epochs.
- ``smoke``: 200 users and 2 epochs, for tests and CI runs of the notebooks only.

Seeds: the paper used 2019; seed k of a run is ``2018 + k`` (k = 1, 2, 3, ...).

The catalogue's runs are on the paper's data (the LightGCN split), so :func:`catalogue_key` keys
them with :data:`mmlrepro.data.KNOWN_FINGERPRINTS`; :mod:`mmlrepro.runner` keys the runs it
trains with the fingerprint of the data actually loaded. The SPEC §8 constants are written here
once; :mod:`mmlrepro.report` checks the stored runs against an independent transcription
(``spec8.json``), so a wrong constant here is flagged there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from mmlrepro.config import PROFILES, RunConfig
from mmlrepro.data import KNOWN_FINGERPRINTS
from mmlrepro.data import NAMES as DATASETS
from mmlrepro.loss_params import LOSS_DEFAULTS
from mmlrepro.selection import paper_monitor

FIGURE3_NEGATIVES = (10, 50, 100, 200, 400, 800)
LI2023_LAMBDAS = (1.0, 1.1, 1.2, 1.3)
LI2023_EPS = (0.0, 1.0)
# Class prior of the debiased losses [assumed]: Li et al. give no value in what we could read.
LI2023_TAU_PLUS = (0.01, 0.1)
# Temperature of the InfoNCE family [assumed]: the BSL τ₁ tuned for each dataset (SPEC §8).
INFONCE_TAU = {"yelp2018": 0.11, "gowalla": 0.08}

# The quick profile [assumed, labelled "quick" everywhere]: a fixed subsample of 2,000 users (all
# items kept), 4 epochs, and a 10× larger learning rate so that the few epochs learn something.
# Everything else (losses, N, batch, regulariser) stays as in the paper profile, except that the
# Li et al. group uses 200 negatives instead of 800 (QUICK_LI2023_NEGATIVES).
QUICK = {"user_subsample": 2000, "epochs": 4, "lr": 1e-3}
QUICK_LI2023_NEGATIVES = 200
# The smoke profile: tests and CI only (200 users, 2 epochs); its numbers mean nothing.
SMOKE = {**QUICK, "user_subsample": 200, "epochs": 2}

MML_PARAMS = {
    "yelp2018": {"margins": [0.6, 0.7, 0.8, 0.9], "weights": [0.05, 0.15, 0.2, 0.6],
                 "pos_weight": 1.0, "neg_weight": 400.0},
    "gowalla": {"margins": [0.7, 0.8, 0.9], "weights": [0.10, 0.15, 0.75],
                "pos_weight": 1.0, "neg_weight": 700.0},
}
CCL_WEIGHT = {("mf", "yelp2018"): 150.0, ("mf", "gowalla"): 150.0,
              ("simplex", "yelp2018"): 150.0, ("simplex", "gowalla"): 250.0}
BSL_PARAMS = {"yelp2018": {"tau1": 0.11, "tau2": 1.10, "mode": "multi"},
              "gowalla": {"tau1": 0.08, "tau2": 1.22, "mode": "multi"}}
BSL_L2 = {"yelp2018": 1e-3, "gowalla": 1e-9}
REG_LAMBDA = {("mf", "yelp2018"): 1e-9, ("mf", "gowalla"): 1e-8,
              ("simplex", "yelp2018"): 1e-8, ("simplex", "gowalla"): 1e-7}
BATCH_SIZE = {"yelp2018": 512, "gowalla": 256}
SIMPLEX_PARAMS = {
    "yelp2018": {"aggregator": "mean", "gate": 1.0, "separate_history_table": False,
                 "history_cap": 500, "padding_softmax_bug": True},
    "gowalla": {"aggregator": "attention", "gate": 0.8, "separate_history_table": True,
                "history_cap": None, "padding_softmax_bug": True},
}
TABLE3_LOSSES = ("bpr", "hinge", "softmax_ce", "mse", "ccl", "bsl", "mml")


def seeds(k: int) -> list[int]:
    """The first ``k`` seeds: 2019 (the paper's), 2020, ..."""
    if k < 1:
        raise ValueError(f"seeds: need at least 1 seed, got {k}")
    return [2018 + i for i in range(1, k + 1)]


def loss_params(loss: str, dataset: str, model: str = "mf") -> dict[str, Any]:
    """The SPEC §8 hyperparameters of ``loss`` on ``dataset`` ({} for a loss SPEC §8 does not set,
    whose registry defaults then apply)."""
    if loss not in LOSS_DEFAULTS:
        raise ValueError(f"unknown loss {loss!r}; known losses: {', '.join(LOSS_DEFAULTS)}")
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; the catalogue covers {', '.join(DATASETS)}")
    if loss == "mml":
        return dict(MML_PARAMS[dataset])
    if loss == "ccl":
        return {"margin": 0.9, "neg_weight": CCL_WEIGHT[(model, dataset)]}
    if loss == "bsl":
        return dict(BSL_PARAMS[dataset])
    if loss == "hinge":
        return {"margin": 0.9}
    if loss in ("ssm", "infonce_plus", "debiased_infonce"):
        return {"tau": INFONCE_TAU[dataset]}
    return {}


def paper_config(dataset: str, model: str, loss: str, *, profile: str = "paper", seed: int = 2019,
                 n_negatives: int = 100, selection: str = "paper", group: str = "",
                 params: dict[str, Any] | None = None, **overrides: Any) -> RunConfig:
    """One run with the SPEC §8 settings, then the profile's reduction, then ``overrides``.

    ``params`` overrides single loss hyperparameters on top of the SPEC §8 ones of this dataset,
    model and loss (``{"neg_weight": 500}`` keeps Yelp's margins and weights).
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    settings: dict[str, Any] = dict(
        dataset=dataset, model=model, loss=loss,
        loss_params={**loss_params(loss, dataset, model), **(params or {})},
        n_negatives=n_negatives, batch_size=BATCH_SIZE[dataset], lr=1e-4, epochs=100,
        reg_form="full_table", reg_lambda=REG_LAMBDA[(model, dataset)], selection=selection,
        monitor=paper_monitor(dataset, model),
        seed=seed, profile=profile, group=group)
    if model == "simplex":
        settings["model_params"] = dict(SIMPLEX_PARAMS[dataset])
    if loss == "bsl":
        settings.update(batch_size=1024, reg_form="batch", reg_lambda=BSL_L2[dataset],
                        dropout_placement="before_norm")
    if profile == "quick":
        settings.update(QUICK)
    elif profile == "smoke":
        settings.update(SMOKE)
    settings.update(overrides)
    return RunConfig(**settings)


def catalogue_key(config: RunConfig) -> str:
    """The key of a catalogue run on the paper's data (the LightGCN split of ``config.dataset``)."""
    return config.key(KNOWN_FINGERPRINTS[config.dataset])


def _table2(profile: str, seed: int, datasets: Iterable[str]) -> list[RunConfig]:
    return [paper_config(d, model, loss, profile=profile, seed=seed, group="table2",
                         selection="early_stop" if es == "Y" else "paper")
            for es in ("N", "Y") for d in datasets for model in ("mf", "simplex") for loss in ("ccl", "mml")]


def _table3(profile: str, seed: int, datasets: Iterable[str]) -> list[RunConfig]:
    return [paper_config(d, "mf", loss, profile=profile, seed=seed, group="table3")
            for d in datasets for loss in TABLE3_LOSSES]


def _figure3(profile: str, seed: int, datasets: Iterable[str]) -> list[RunConfig]:
    return [paper_config(d, "mf", loss, profile=profile, seed=seed, n_negatives=n, group="figure3")
            for d in datasets for n in FIGURE3_NEGATIVES for loss in ("ccl", "bsl", "mml")]


def _ccl_matched(profile: str, seed: int, datasets: Iterable[str]) -> list[RunConfig]:
    """CCL with MML's negative weight (400 Yelp, 700 Gowalla): SPEC §8's control."""
    out = []
    for d in datasets:
        params = {"margin": 0.9, "neg_weight": MML_PARAMS[d]["neg_weight"]}
        for n in (10, 100):
            out += [paper_config(d, "mf", "ccl", profile=profile, seed=seed, n_negatives=n,
                                 params=params, group="ccl_matched"),
                    paper_config(d, "mf", "ccl", profile=profile, seed=seed, n_negatives=n, group="ccl_matched"),
                    paper_config(d, "mf", "mml", profile=profile, seed=seed, n_negatives=n, group="ccl_matched")]
    return out


def _honest(profile: str, seed: int, datasets: Iterable[str]) -> list[RunConfig]:
    """MF + CCL and MF + MML selected on a validation split carved from train (SPEC §6)."""
    return [paper_config(d, "mf", loss, profile=profile, seed=seed, selection=selection, group="honest")
            for d in datasets for loss in ("ccl", "mml") for selection in ("honest", "paper")]


def _li2023(profile: str, seed: int, datasets: Iterable[str]) -> list[RunConfig]:
    """Li et al. 2023 (MF, 800 negatives, batch 512, lr 1e-4): InfoNCE+ grid, debiased vs biased.

    InfoNCE is ``infonce_plus`` with λ = ε = 1 and MINE+ the ε = 0 runs, so the grid holds both.
    """
    out = []
    for d in datasets:
        n_neg = 800 if profile == "paper" else QUICK_LI2023_NEGATIVES
        common = dict(profile=profile, seed=seed, n_negatives=n_neg, batch_size=512, group="li2023")
        tau = INFONCE_TAU[d]
        for lam in LI2023_LAMBDAS:
            for eps in LI2023_EPS:
                out.append(paper_config(d, "mf", "infonce_plus", params={"tau": tau, "lam": lam, "eps": eps}, **common))
        ccl = {"margin": 0.9, "neg_weight": CCL_WEIGHT[("mf", d)]}
        out.append(paper_config(d, "mf", "ccl", params=ccl, **common))
        for tau_plus in LI2023_TAU_PLUS:
            out.append(paper_config(d, "mf", "debiased_infonce", params={"tau": tau, "tau_plus": tau_plus}, **common))
            out.append(paper_config(d, "mf", "debiased_ccl", params={**ccl, "tau_plus": tau_plus}, **common))
    return out


def _lr_reduce(profile: str, seed: int, datasets: Iterable[str]) -> list[RunConfig]:
    """Issue 18's hypothesis: the paper's early-stopped ("Y") runs kept the SimpleX schedule of an
    lr cut ×0.1 and a reload of the best weights on each non-improving epoch (SPEC §6), which
    ends a run sooner and lower. MF + CCL and MF + MML, "Y", with ``lr_reduce``."""
    return [paper_config(d, "mf", loss, profile=profile, seed=seed, selection="early_stop", lr_reduce=True,
                         group="lr_reduce") for d in datasets for loss in ("ccl", "mml")]


GROUPS: dict[str, Callable[[str, int, Iterable[str]], list[RunConfig]]] = {
    "table2": _table2, "table3": _table3, "figure3": _figure3, "ccl_matched": _ccl_matched,
    "honest": _honest, "li2023": _li2023, "lr_reduce": _lr_reduce,
}


def configs(group: str, profile: str = "quick", n_seeds: int = 1,
            datasets: Iterable[str] = DATASETS) -> list[RunConfig]:
    """The runs of ``group`` for ``profile`` and the first ``n_seeds`` seeds."""
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}; known: {', '.join(GROUPS)}")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    datasets = list(datasets)
    for d in datasets:
        if d not in DATASETS:
            raise ValueError(f"unknown dataset {d!r}; the catalogue covers {', '.join(DATASETS)}")
    return [c for s in seeds(n_seeds) for c in GROUPS[group](profile, s, datasets)]


def plan(groups: Iterable[str], profile: str, n_seeds: int,
         datasets: Iterable[str] = DATASETS) -> list[RunConfig]:
    """The runs of ``groups``, deduplicated by key and ordered by value (issue 6).

    Table 3 and the Table 2 "N" rows first, seed by seed; then Figure 3; then the rest.
    """
    groups, datasets = list(groups), list(datasets)
    ordered: list[RunConfig] = []
    for s in range(1, n_seeds + 1):
        seed = seeds(s)[-1]
        if "table3" in groups:
            ordered += _table3(profile, seed, datasets)
        if "table2" in groups:
            ordered += [c for c in _table2(profile, seed, datasets) if c.selection == "paper"]
    for g in ["figure3"] + [g for g in groups if g != "figure3"]:
        if g in groups:
            ordered += configs(g, profile, n_seeds, datasets)
    unique: dict[str, RunConfig] = {}
    for c in ordered:
        unique.setdefault(catalogue_key(c), c)
    return list(unique.values())


