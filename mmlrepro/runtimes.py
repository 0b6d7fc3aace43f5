"""What the paper profile costs on a CPU, from the timings the store holds (the README's runtimes).

Only runs of the ``paper`` profile (SPEC §8) trained on a CPU count: a run read off its "N" twin
(SPEC §6) cost nothing, and a GPU run says nothing about the CPU. A CPU run's ``device`` is
``"<model name> (<k> threads)"`` (:func:`mmlrepro.devices.device_name`); a run resumed on another
thread count names each stretch and still counts as a CPU run.

- :func:`paper_run`: minutes of one complete paper run (100 epochs, N negatives), median and range
  over the stored ones.
- :func:`paper_profile`: a **lower bound** on the hours the whole planned paper profile takes on
  such a CPU, one run at a time. Each run the plan trains costs its epochs times the seconds per
  epoch of the stored runs of its kind (dataset, model, loss, N); a run with no stored run of its
  kind is counted at the cheapest stored run of its dataset and model at the largest N below its
  own (an epoch costs more with more negatives, so this never overestimates), and a run with no
  such run is counted as 0 and reported. An early-stopped run is counted at its fewest epochs
  (1 + patience), an honest run at the share of train it keeps.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from mmlrepro import catalogue as cat
from mmlrepro.results import load_results

THREADS = re.compile(r"(.+) \((\d+) threads\)")  # one stretch of a CPU run's device


def trained_cpu_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The stored paper-profile runs trained on a CPU, with ``s_per_epoch`` (train + evaluation)."""
    if runs.empty:
        return runs.assign(s_per_epoch=pd.Series(dtype=float))
    keep = ((runs["profile"] == "paper") & ~runs["derived_from"].fillna("").astype(bool)
            & runs["device"].fillna("").str.contains(" threads)", regex=False)
            & (runs["epochs_run"] > 0))
    out = runs[keep]
    return out.assign(s_per_epoch=(out["train_s"] + out["eval_s"]) / out["epochs_run"])


def paper_run(runs: pd.DataFrame, n_negatives: int = 100) -> dict[str, Any]:
    """Minutes of the stored complete CPU paper runs at ``n_negatives``: ``runs`` (how many),
    ``median``, ``min``, ``max`` (None without any), ``cpus`` (the CPU models) and ``threads``
    (the thread counts they trained with)."""
    cpu = trained_cpu_runs(runs)
    if cpu.empty:
        return {"runs": 0, "median": None, "min": None, "max": None, "cpus": [], "threads": []}
    full = cpu[(cpu["n_negatives"] == n_negatives) & (cpu["epochs_run"] == cpu["epochs"])
               & (cpu["epochs"] == 100)]
    if full.empty:
        return paper_run(full)
    minutes = (full["train_s"] + full["eval_s"]) / 60
    found = [THREADS.match(d) for device in full["device"] for d in device.split("; ")]
    return {"runs": len(minutes), "median": float(minutes.median()), "min": float(minutes.min()),
            "max": float(minutes.max()), "cpus": sorted({m.group(1) for m in found if m}),
            "threads": sorted({int(m.group(2)) for m in found if m})}


def _epoch_cost(cpu: pd.DataFrame, config: Any) -> tuple[float, str]:
    """Seconds per epoch for ``config`` and how it was found: "kind", "bound" or "none"."""
    if cpu.empty:
        return 0.0, "none"
    same = cpu[(cpu["dataset"] == config.dataset) & (cpu["model"] == config.model)]
    kind = same[(same["loss"] == config.loss) & (same["n_negatives"] == config.n_negatives)]
    if not kind.empty:
        return float(kind["s_per_epoch"].mean()), "kind"
    fewer = same[same["n_negatives"] <= config.n_negatives]
    if fewer.empty:
        return 0.0, "none"
    at = fewer[fewer["n_negatives"] == fewer["n_negatives"].max()]
    return float(at.groupby("loss")["s_per_epoch"].mean().min()), "bound"


def planned_training(seeds: dict[str, int] | None = None) -> list[Any]:
    """The paper-profile runs the plan trains: every catalogue group with its planned seeds
    (REPRODUCTION.md's plan by default), one per key, without the early-stopped runs read off
    their twins (SPEC §6: those without lr cuts)."""
    if seeds is None:
        from mmlrepro.report import PLANNED_SEEDS
        seeds = PLANNED_SEEDS
    by_key = {cat.catalogue_key(c): c for group, n in seeds.items()
              for c in cat.configs(group, "paper", n)}
    return [c for c in by_key.values() if not (c.selection == "early_stop" and not c.lr_reduce)]


def paper_profile(runs: pd.DataFrame, seeds: dict[str, int] | None = None) -> dict[str, Any]:
    """Lower bound on the CPU hours of the planned paper profile (module docstring): ``runs``
    (to train), ``hours`` (the bound), and per way of costing a run (``kind``, ``bound``,
    ``none``) how many runs and hours."""
    cpu = trained_cpu_runs(runs)
    parts = {way: {"runs": 0, "hours": 0.0} for way in ("kind", "bound", "none")}
    for config in planned_training(seeds):
        seconds, way = _epoch_cost(cpu, config)
        epochs = 1 + config.patience if config.selection == "early_stop" else config.epochs
        share = 1 - config.holdout_fraction if config.selection == "honest" else 1.0
        parts[way]["runs"] += 1
        parts[way]["hours"] += seconds * epochs * share / 3600
    total = sum(p["hours"] for p in parts.values())
    return {"runs": sum(p["runs"] for p in parts.values()), "hours": total, **parts}


def summary(results_dir: str | Path | None = None) -> str:
    """The README's runtime lines, from the store at ``results_dir`` (the default store if None)."""
    runs = load_results(results_dir, log=None)
    one, whole = paper_run(runs), paper_profile(runs)
    if not one["runs"]:
        return "No complete paper-profile run trained on a CPU is stored yet."
    lo, hi = one["threads"][0], one["threads"][-1]
    threads = f"{lo}–{hi}" if lo != hi else f"{lo}"
    kind, bound, none = whole["kind"], whole["bound"], whole["none"]
    return (f"One paper run (100 epochs, N = 100): median {one['median']:.0f} min, "
            f"{one['min']:.0f}–{one['max']:.0f} min over {one['runs']} stored CPU runs "
            f"({', '.join(one['cpus'])}; {threads} threads).\n"
            f"The whole paper profile ({whole['runs']} runs to train, one at a time): more than "
            f"{whole['hours']:.0f} hours ({whole['hours'] / 24:.0f} days): {kind['hours']:.0f} h "
            f"for the {kind['runs']} runs with stored runs of their kind (at their mean cost), at "
            f"least {bound['hours']:.0f} h for the {bound['runs']} runs counted at the cost of "
            f"fewer negatives, and {none['runs']} runs with no stored run to go by, not counted.")


if __name__ == "__main__":
    print(summary())
