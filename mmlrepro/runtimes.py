"""What runs cost, from the timings the store holds: the one rule behind every estimate.

:func:`estimate_minutes` is the cost of a plan's runs (``reproduce`` without a GPU, the ETA of
``reproduce --jobs K``, the README's runtimes): a run's seconds per epoch (training + evaluation)
are the mean of the stored trained runs of its profile, dataset, model, loss and N; without one,
a line in N fitted to the stored runs of its profile, dataset and model (their mean when they
have a single N); None when there is none. That times its ``epochs``. An early-stopped run
without lr cuts whose "N" twin is stored or earlier in the plan costs 0: it is read off the
twin (SPEC §6). A stored run read off its twin (``derived_from``) is never a timing.

The stored runs ran on whatever devices their records name; ``cpu_only`` keeps the runs trained
on a CPU (a CPU run's ``device`` is ``"<model name> (<k> threads)"``,
:func:`mmlrepro.devices.device_name`; a run resumed on another thread count names each stretch).

- :func:`paper_run`: minutes of one complete paper run (100 epochs, N negatives), median and range
  over the stored CPU ones.
- :func:`paper_profile`: the CPU hours of the whole planned paper profile, one run at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmlrepro import catalogue as cat
from mmlrepro.devices import cpu_model, cpu_threads, stretches
from mmlrepro.results import ResultsStore, load_results


def trained_cpu_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The stored paper-profile runs trained on a CPU, with ``s_per_epoch`` (train + evaluation)."""
    if runs.empty:
        return runs.assign(s_per_epoch=pd.Series(dtype=float))
    keep = ((runs["profile"] == "paper") & ~runs["derived_from"].fillna("").astype(bool)
            & runs["device"].fillna("").map(_is_cpu)
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
    found = [d for device in full["device"] for d in stretches(device) if cpu_threads(d) is not None]
    return {"runs": len(minutes), "median": float(minutes.median()), "min": float(minutes.min()),
            "max": float(minutes.max()), "cpus": sorted({cpu_model(d) for d in found}),
            "threads": sorted({cpu_threads(d) for d in found})}


def planned_training(seeds: dict[str, int] | None = None) -> list[Any]:
    """The paper-profile runs the plan trains: every catalogue group with its planned seeds
    (REPRODUCTION.md's plan by default), one per key, without the early-stopped runs read off
    their twins (SPEC §6: those without lr cuts)."""
    if seeds is None:
        from mmlrepro.appendix import PLANNED_SEEDS
        seeds = PLANNED_SEEDS
    by_key = {cat.catalogue_key(c): c for group, n in seeds.items()
              for c in cat.configs(group, "paper", n)}
    return [c for c in by_key.values() if not (c.selection == "early_stop" and not c.lr_reduce)]


def _is_cpu(device: str) -> bool:
    """Every stretch of the run on a CPU."""
    parts = stretches(device)
    return bool(parts) and all(cpu_threads(d) is not None for d in parts)


def _seconds_per_epoch(records: list[dict[str, Any]], profile: str,
                       cpu_only: bool) -> dict[tuple, list[tuple[int, float]]]:
    """Seconds per epoch (training + evaluation) of the trained runs of ``profile``, by
    (dataset, model, loss, N) and by (dataset, model) with their N."""
    out: dict[tuple, list[tuple[int, float]]] = {}
    for r in records:
        config = r["config"]
        if (config["profile"] != profile or r.get("provenance", {}).get("derived_from")
                or not r["history"] or (cpu_only and not _is_cpu(str(r.get("device", ""))))):
            continue
        s = (r["timings"]["train_s"] + r["timings"]["eval_s"]) / len(r["history"])
        n = config["n_negatives"]
        out.setdefault((config["dataset"], config["model"], config["loss"], n), []).append((n, s))
        out.setdefault((config["dataset"], config["model"]), []).append((n, s))
    return out


def estimate_minutes(configs: list[Any], records: list[dict[str, Any]],
                     cpu_only: bool = False) -> list[float | None]:
    """Estimated minutes of each run of ``configs`` (a plan, in order) from the stored
    ``records`` (``ResultsStore.records()``), by the module's rule."""
    held = {r["key"] for r in records}
    timings = {p: _seconds_per_epoch(records, p, cpu_only) for p in {c.profile for c in configs}}
    planned: set[str] = set()
    out: list[float | None] = []
    def key(config: Any) -> str:   # a run on other data than the paper's has no catalogue key
        return cat.catalogue_key(config) if config.dataset in cat.DATASETS else config.label()

    for c in configs:
        twin = key(c.replace(selection="paper"))
        planned.add(key(c))
        if c.selection == "early_stop" and not c.lr_reduce and (twin in held or twin in planned):
            out.append(0.0)
            continue
        same = timings[c.profile].get((c.dataset, c.model, c.loss, c.n_negatives))
        near = timings[c.profile].get((c.dataset, c.model))
        if same:
            s = float(np.mean([v for _, v in same]))
        elif near and len({n for n, _ in near}) > 1:
            slope, intercept = np.polyfit([n for n, _ in near], [v for _, v in near], 1)
            s = float(intercept + slope * c.n_negatives)
        elif near:
            s = float(np.mean([v for _, v in near]))
        else:
            out.append(None)
            continue
        out.append(s * c.epochs / 60)
    return out


def paper_profile(records: list[dict[str, Any]], seeds: dict[str, int] | None = None) -> dict[str, Any]:
    """CPU hours of the planned paper profile by :func:`estimate_minutes` (CPU runs only):
    ``runs`` (to train), ``hours`` (of those with an estimate) and ``unknown`` (runs with no
    stored CPU run of their dataset and model, not counted)."""
    minutes = estimate_minutes(planned_training(seeds), records, cpu_only=True)
    known = [m for m in minutes if m is not None]
    return {"runs": len(minutes), "hours": sum(known) / 60, "unknown": len(minutes) - len(known)}


def summary(results_dir: str | Path | None = None) -> str:
    """The README's runtime lines, from the store at ``results_dir`` (the default store if None)."""
    runs = load_results(results_dir, log=None)
    one = paper_run(runs)
    whole = paper_profile(ResultsStore(results_dir, log=None).records())
    if not one["runs"]:
        return "No complete paper-profile run trained on a CPU is stored yet."
    lo, hi = one["threads"][0], one["threads"][-1]
    threads = f"{lo}–{hi}" if lo != hi else f"{lo}"
    unknown = (f"; {whole['unknown']} runs with no stored CPU run of their dataset and model "
               "are not counted" if whole["unknown"] else "")
    return (f"One paper run (100 epochs, N = 100): median {one['median']:.0f} min, "
            f"{one['min']:.0f}–{one['max']:.0f} min over {one['runs']} stored CPU runs "
            f"({', '.join(one['cpus'])}; {threads} threads).\n"
            f"The whole paper profile ({whole['runs']} runs to train, one at a time): about "
            f"{whole['hours']:.0f} hours ({whole['hours'] / 24:.0f} days) on such a CPU by the stored "
            f"timings (runs of a kind not yet stored: a line in N through their dataset and model's "
            f"runs){unknown}.")


if __name__ == "__main__":
    print(summary())
