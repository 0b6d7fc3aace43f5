"""REPRODUCTION_APPENDIX.md, beside REPRODUCTION.md (written by :func:`mmlrepro.report.write_report`):
what the store holds, how to read the numbers, the stopping rules, the runs not yet done and
their cost (:data:`PLANNED_SEEDS`), when each paper run was last verified, the quick profile (a
pipeline run that does not preserve the paper's orders and is never set beside the paper's
numbers), the linear models with the BARS EASE check, and the store's health (every
paper-profile record checked against SPEC §8, :mod:`mmlrepro.speccheck`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmlrepro import catalogue as cat
from mmlrepro import comparison as ex
from mmlrepro.devices import stretches
from mmlrepro.evidence import BAND
from mmlrepro.frames import QUICK_LABEL
from mmlrepro.markdown import (
    display_table,
    figure3_figures,
    figure3_wide,
    markdown_table,
    means_table,
    stamp,
)
from mmlrepro.reported import bars_ease
from mmlrepro.results import ResultsStore, load_results
from mmlrepro.selection import early_stop_epochs
from mmlrepro.speccheck import deviations
from mmlrepro.stats import N_BOOT

# What a paper-profile run must use, per SPEC §8 (checked for every cell that misses ±5%).
PLANNED_SEEDS = {"table2": 3, "table3": 3, "figure3": 3, "ccl_matched": 3, "honest": 1, "li2023": 1,
                 "lr_reduce": 1}


READING = ["## Reading the numbers\n", f"""\
- **A reproduced cell** is the mean over its seeds; from two seeds on it reads `mean ± h`, h the
  half-width of the 95 % t-interval of the mean over seeds (`mmlrepro.stats.seed_interval`). It
  measures how much a rerun with new seeds moves the number: seed-to-seed training noise.
- **A claim** ("MML beats CCL") rests on one or more comparisons of two cells a and b. Its
  **gain** is mean(a) / mean(b) − 1 of the seed means.
- **The 95 % interval (users)** and **p users** need per-user values (each evaluated user's
  Recall/NDCG@K, stored beside a run since issue 16): the users are resampled with replacement
  ({N_BOOT:,} seeded bootstrap draws; the same draw for a and b, so the pairing is kept) for the
  interval, and the paired t-test on the per-user differences gives p. With several seeds the
  per-user values are first averaged over seeds. This measures **test-set sampling noise**: how
  much the gain would move on another sample of users like these. It says nothing about
  another training run. A run stored without per-user values shows "no per-user values".
- **p seeds** is Welch's t-test on the seed means (from two seeds a side): **training noise**.
  With three seeds it has little power; a gain several times the seeds' spread is needed.
- **The verdict and its evidence** use the larger of the two p-values available (a gain must beat
  both kinds of noise), the largest over the comparisons of a claim of several parts (an
  intersection-union test), corrected by Holm over the claims of one table (a comparison two
  claims make counted once): **significant (users and seeds)**, **significant over users, 1
  seed**, **significant over seeds (no per-user values)** at α = 0.05 after Holm; **not
  significant**: the claimed sign, but within the noise; **untested (no per-user values)**: the
  claimed sign, but a part has one seed and no per-user values, so it cannot be tested (the other
  parts' tests are listed); **does not hold**: the wrong sign (or a further condition of the
  claim fails, e.g. "within 5 points of the paper's gain"), graded by the reversed comparison's
  own two-sided test, corrected by Holm with the others: "does not hold, significant …", "does
  not hold, not significant" or "does not hold, untested (no per-user values)" (a reversal inside
  the noise, or untested, is no refutation), "does not hold, by a rule on the numbers";
  **missing**: runs missing.
- **What the tests do not cover**: they take the paper's protocol as given: epochs selected
  on the test split (see the `honest` rows for what that costs), one data split, and, for the
  claims about a grid's best cell (Li et al.), the choice of the best cell itself (a winner's
  curse the tests ignore). Neither covers a different implementation, hardware or library
  version. The quick profile's users are a 2,000-user subsample, so its intervals are wider
  than a full-data run's. The linear models' claims are rules on single deterministic fits,
  not tests.
"""]


def render_appendix(results_dir: Any = None, figures_dir: str | Path = "figures",
                    out_dir: str | Path = ".", source: str | None = None) -> str:
    """REPRODUCTION_APPENDIX.md as a string: what the store holds, runs not yet done, stopping
    rules, linear models, the quick profile (a pipeline run, never set beside the paper) and the
    store's health."""
    runs = load_results(results_dir)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    lines = ["# Reproduction report, appendix\n",
             f"_Generated by `mmlrepro report` on {now}, from {source or stamp()}, beside "
             "[REPRODUCTION.md](REPRODUCTION.md)._\n"]
    if not runs.empty:
        runs = runs.assign(derived=runs["derived_from"].fillna("").astype(bool))
        summary = runs.groupby(["profile", "device"]).agg(
            runs=("key", "size"), trained=("derived", lambda d: int((~d).sum())),
            read_off_a_twin=("derived", "sum")).reset_index()
        lines += ["## What the store holds\n", markdown_table(summary),
                  "`read_off_a_twin`: early-stopped (ES = Y) runs read off the history of the stored "
                  "run that differs only in not stopping (ES = N), not trained again. Without lr "
                  "cuts the two share seed, batches and negatives, so \"Y\" trains exactly as \"N\" "
                  "until the stopping rule (SPEC §6: 3 epochs without an improvement > 1e-6) ends "
                  "it (`mmlrepro.selection.early_stop_from_history`, tested against training it).\n"]
    lines += READING
    if not runs.empty and (runs["profile"] == "paper").any():
        lines += _stopping_rules_section(results_dir)
        lines += _missing("paper", results_dir, runs)
        lines += ["## Verification\n", "When each paper-profile run was last trained again for its first epoch(s) "
                  "by `mmlrepro verify` and compared with its stored history, on what machine, and the outcome "
                  "(\"identical\", \"within tolerance\" or \"differs\"):\n",
                  markdown_table(verification_table(runs, results_dir))]
    lines += _quick_section(results_dir, Path(figures_dir), Path(out_dir))
    lines += _linear_section(results_dir)
    lines += _store_section(results_dir, runs)
    return "\n".join(lines)


def verification_table(runs: pd.DataFrame, results_dir: Any) -> pd.DataFrame:
    """Each paper-profile run with when it was last verified (`mmlrepro verify`, its log
    ``verified.jsonl``: :func:`mmlrepro.verify.last_verified`), on what machine, for how many
    epochs and with what outcome; "never" where it was not. A run read off its twin names the
    twin's verification."""
    from mmlrepro.verify import last_verified

    paper = runs[runs["profile"] == "paper"] if not runs.empty else runs
    if paper.empty:
        return pd.DataFrame()
    seen = last_verified(results_dir)
    rows = []
    for r in paper.sort_values(["group", "dataset", "model", "loss", "n_negatives", "selection", "seed"]).itertuples():
        entry = seen.get(r.key)
        cell = f"{r.dataset} {ex.MODEL_NAMES.get(r.model, r.model)} + {ex.LOSS_NAMES.get(r.loss, r.loss)}, N {r.n_negatives}, {r.selection}, seed {r.seed}"
        rows.append({"run": cell, "key": r.key, "made on": "; ".join(dict.fromkeys(stretches(r.device))),
                     "last verified": entry["time_utc"][:10] if entry else "never",
                     "on": entry["device"] if entry else "",
                     "epochs": entry["epochs"] if entry else "",
                     "outcome": (entry["outcome"] + (f" (via its twin {entry['via']})" if entry.get("via") else ""))
                     if entry else ""})
    return pd.DataFrame(rows)


def _stopping_rules_section(results_dir: Any) -> list[str]:
    """Issue 18: the stop epoch and numbers of other early-stopping rules, read off the ES = N runs."""
    rules = ex.stopping_rules("paper", results_dir)
    if rules.empty:
        return []
    spec = rules[rules["spec"]].iloc[0]
    best = rules.iloc[0]
    n_cells = int(best["cells"])

    cell_cols = [c for c in rules.columns if len(c.split()) == 3]
    spec_stops = [int(spec[c]) for c in cell_cols]

    def name(rule: pd.Series) -> str:
        return f"monitor {rule['monitor']}, patience {rule['patience']}, min_delta {rule['min_delta']:g}"

    shown = rules.drop(columns=["spec", "cells"]).assign(
        monitor=[f"**{m}** (SPEC §6)" if is_spec else m for m, is_spec in zip(rules["monitor"], rules["spec"], strict=True)],
        min_delta=rules["min_delta"].map(lambda v: f"{v:g}"),
        max_abs_rel_diff=rules["max_abs_rel_diff"].map(lambda v: f"{v:.1%}"),
        mean_abs_epoch_gap=rules["mean_abs_epoch_gap"].map(lambda v: f"{v:.1f}"))
    paper = ex.reported()["table2_early_stop_epochs"]
    return [
        "### Which early-stopping rule gives the paper's stop epochs? [paper]\n",
        f"The paper's early-stopped runs stopped after {paper['mf']} epochs (MF), {paper['simplex/ccl']} "
        f"(SimpleX + CCL) and {paper['simplex/mml']} (SimpleX + MML); ours, with SPEC §6's rule, after "
        f"{min(spec_stops)}–{max(spec_stops)}. Without lr cuts an early-stopped run trains exactly as its ES = N twin until it stops, "
        "so any rule's stop epoch and numbers are read off the stored ES = N histories "
        f"(`mmlrepro.comparison.stopping_rules`). Below, {len(rules)} rules on the {n_cells} Table 2 "
        "cells stored, each cell's stop epoch, the cells within 2 epochs of the paper's, the mean "
        "distance to the paper's stop epoch (one seed a cell unless the store holds more) and the largest |difference| of the selected epoch's "
        "numbers from the paper's ES = Y numbers; SPEC §6's rule in bold. Monitor \"run's own\": "
        "Recall@20, NDCG@20 for SimpleX Gowalla (SPEC §6).\n",
        markdown_table(shown, floatfmt="g"),
        f"\nSPEC §6's rule ({name(spec)}) stops {spec['mean_abs_epoch_gap']:.1f} epochs from the paper's on "
        f"average ({int(spec['cells_within_2'])} of {n_cells} cells within 2) with numbers within "
        f"{spec['max_abs_rel_diff']:.1%} of the paper's. The closest rule tried ({name(best)}) is "
        f"{best['mean_abs_epoch_gap']:.1f} epochs off ({int(best['cells_within_2'])} of {n_cells} within 2), "
        f"numbers within {best['max_abs_rel_diff']:.1%}; the most cells within 2 epochs, "
        f"{int(rules['cells_within_2'].max())} of {n_cells}. "
        + ("No rule tried stops every cell near the paper's epoch: none of these patience, threshold "
           "or monitor choices explains the paper's stop epochs alone, so SPEC §6's rule is kept."
           if rules["cells_within_2"].max() < n_cells else
           "A rule tried stops every cell within 2 epochs of the paper's.") + "\n",
    ]


def _missing(profile: str, results_dir: Any, runs: pd.DataFrame | None = None) -> list[str]:
    why = {"paper": "Why: the full `paper` profile is a GPU job (DEVELOPERS.md says how to run it "
                    "on a GPU); on a 2-core CPU each run takes hours (`python -m mmlrepro.runtimes`). The "
                    "table is what the trained paper runs cost, from their stored timings. With the "
                    "compiled negatives kernel an N = 800 step costs 1.6x (Gowalla) and 2.3x "
                    "(Yelp2018) an N = 100 step, and 1.2x and 1.4x an N = 400 step, at 1 thread on "
                    "an AMD EPYC (benchmarks/RESULTS.md, *Negatives step*): an N = 800 run missing "
                    "from the table is estimated at no more than those multiples of the same loss's "
                    "N = 400 minutes below, evaluation being the same at every N. An "
                    "early-stopped (ES = Y) Table 2 run needs no training once its ES = N twin is "
                    "stored.",
           "quick": "Why: these are CPU runs not done yet; `mmlrepro reproduce GROUP --profile quick "
                    "--seeds 3` trains what is missing."}
    held = {r["key"] for r in ResultsStore(results_dir, log=None).records()}
    lines, left = [], 0
    for group, n_seeds in PLANNED_SEEDS.items():
        planned = cat.configs(group, profile, n_seeds)
        todo = [c for c in planned if cat.catalogue_key(c) not in held]
        left += len(todo)
        total = len(planned)
        lines.append(f"- **{group}** ({n_seeds} seed{'s' if n_seeds > 1 else ''}): "
                     f"{total - len(todo)} of {total} done" + (":" if todo else "."))
        for c in todo[:60]:
            lines.append(f"  - {c.label()} #{cat.catalogue_key(c)[:6]}")
        if len(todo) > 60:
            lines.append(f"  - … and {len(todo) - 60} more")
    if not left:
        return [f"### Runs done [{profile}]\n", "Every planned run is in the store.\n", *lines, ""]
    head = [f"### Runs not yet done [{profile}]\n", why.get(profile, "") + "\n"]
    if profile == "paper":
        runs = load_results(results_dir) if runs is None else runs
        head.append(markdown_table(run_costs(runs, profile), ".1f"))
    return [*head, *lines, ""]


def run_costs(runs: pd.DataFrame, profile: str) -> pd.DataFrame:
    """What the trained runs of ``profile`` cost, per device and kind of run, from their stored
    timings: runs, mean epochs, seconds per epoch (training; evaluation) and minutes per run.
    Runs read off a twin cost nothing and are left out."""
    cols = ["device", "dataset", "model", "loss", "n_negatives", "runs", "epochs",
            "train s/epoch", "eval s/epoch", "min/run"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    trained = runs[(runs["profile"] == profile) & ~runs["derived_from"].fillna("").astype(bool)]
    if trained.empty:
        return pd.DataFrame(columns=cols)
    trained = trained.assign(epochs=trained["epochs_run"])
    costs = trained.groupby(["device", "dataset", "model", "loss", "n_negatives"]).agg(
        runs=("key", "size"), epochs=("epochs", "mean"), train_s=("train_s", "sum"),
        eval_s=("eval_s", "sum"), all_epochs=("epochs", "sum")).reset_index()
    costs["train s/epoch"] = costs["train_s"] / costs["all_epochs"]
    costs["eval s/epoch"] = costs["eval_s"] / costs["all_epochs"]
    costs["min/run"] = (costs["train_s"] + costs["eval_s"]) / costs["runs"] / 60
    return costs[cols]


def _quick_section(results_dir: Any, figures_dir: Path, out_dir: Path) -> list[str]:
    """The quick profile's tables: means over seeds, no paper number, no claim."""
    profile = "quick"
    lines = [f"## Quick profile: {QUICK_LABEL}\n",
             f"The quick profile ({cat.QUICK}) checks the pipeline end to end on a CPU. It does not "
             "preserve the paper's orders of the losses, so nothing here is set beside the paper's "
             "numbers or tested as a claim of the paper.\n"]
    runs = load_results(results_dir)
    if runs.empty or not (runs["profile"] == profile).any():
        return lines + ["No quick-profile run in the store.\n"]
    for title, group, cells in (("Table 2 cells", "table2", ["model", "loss", "early_stop"]),
                                ("Table 3 cells", "table3", ["loss"])):
        table = ex.compare(group, profile, results_dir)["table"]
        lines += [f"### {title} [{profile}]\n", markdown_table(means_table(table, cells))]
    fig3 = ex.compare("figure3", profile, results_dir)["table"]
    lines += [f"### Figure 3 points [{profile}]\n", markdown_table(figure3_wide(fig3))]
    lines += figure3_figures(profile, results_dir, figures_dir, out_dir)
    for title, group in (("Matched-weight CCL", "ccl_matched"), ("Honest selection", "honest"),
                         ("Li et al. 2023 grid", "li2023"), ("lr_reduce", "lr_reduce")):
        table = ex.compare(group, profile, results_dir)["table"]
        lines += [f"### {title} [{profile}]\n", markdown_table(display_table(table)) if not table.empty else "No runs.\n"]
    lines.append(_short_runs_note(profile))
    return lines + _missing(profile, results_dir, runs)


def _short_runs_note(profile: str) -> str:
    """Why a profile other than ``paper`` makes no lr_reduce claim, from its settings and the
    stopping rule itself (:func:`mmlrepro.selection.early_stop_epochs`)."""
    config = cat.configs("lr_reduce", profile, 1)[0]
    never_improves = [{config.monitor: 0.0}] * config.epochs
    if early_stop_epochs(never_improves, config) == config.epochs:
        return (f"The {profile} profile makes no claim here: its runs last {config.epochs} epochs, too few for "
                f"the stopping rule (patience {config.patience}) to cut one short even if it never improves "
                "after its first epoch, so every run trains to the end whatever its schedule.\n")
    return (f"The {profile} profile makes no claim here: its runs ({config.epochs} epochs) are not the "
            "paper's, so where they stop says nothing about where the paper's stopped.\n")


def _linear_section(results_dir: Any) -> list[str]:
    """EASE / iALS, biased (τ⁺ = 0) vs debiased, and the BARS EASE check (issue 7)."""
    from mmlrepro.linear import QUICK_ITEMS

    runs = ex.linear_results(results_dir)
    lines = ["## Linear models: EASE and iALS, biased vs debiased (Li et al.: \"inherently debiased\")\n"]
    if runs.empty:
        return lines + ["No EASE / iALS runs in `results/linear/` yet.\n"]
    cols = ["dataset", "method", "lam", "alpha", "reg", "tau_plus", "recall@20", "ndcg@20", "device"]
    for profile, title in (("paper", "paper profile (full data)"),
                           ("quick", f"quick profile: {QUICK_LABEL}; the {QUICK_ITEMS:,} most popular items only, "
                                     "so its numbers are far above the paper profile's")):
        sub = runs[runs.profile == profile]
        if len(sub):
            lines += [f"**{title}**:\n", markdown_table(sub.sort_values(["dataset", "method", "lam", "tau_plus"])[cols])]
    claims = []
    for (profile, dataset, method), sub in runs[runs.profile == "paper"].groupby(["profile", "dataset", "method"]):
        hp = ["lam"] if method == "ease" else ["alpha", "reg"]
        for key, cell in sub.groupby(hp, dropna=False):
            biased = cell[cell.tau_plus == 0.0]["recall@20"]
            debiased = cell[cell.tau_plus > 0.0]["recall@20"]
            if biased.empty or debiased.empty:
                continue
            gain = (debiased.max() / biased.iloc[0] - 1) * 100
            setting = ", ".join(f"{k} {float(v):g}" for k, v in zip(hp, np.atleast_1d(key), strict=True))
            claims.append({"claim": f"{method} {dataset} ({setting}) [{profile}]: "
                                    "debiasing changes Recall@20 by less than 2%",
                           "reproduced": f"biased {biased.iloc[0]:.4f}, best debiased {debiased.max():.4f} ({gain:+.2f}%)",
                           "verdict": "holds" if abs(gain) < 2.0 else "does not hold"})
    for dataset, (lam, r, n) in bars_ease().items():
        hit = runs[(runs.profile == "paper") & (runs.dataset == dataset) & (runs.method == "ease")
                   & (runs.lam == lam) & (runs.tau_plus == 0.0)]
        got = f"{hit['recall@20'].iloc[0]:.4f} / {hit['ndcg@20'].iloc[0]:.4f}" if len(hit) else "missing"
        ok = None if hit.empty else (abs(hit["recall@20"].iloc[0] / r - 1) <= BAND and abs(hit["ndcg@20"].iloc[0] / n - 1) <= BAND)
        claims.append({"claim": f"EASE {dataset} λ = {lam:g} within ±5% of BARS ({r} / {n})", "reproduced": got,
                       "verdict": "missing" if ok is None else ("holds" if ok else "does not hold")})
    lines.append("\nClaims (\"inherently debiased\": the debiased variant changes little) [assumed 2% threshold]:\n\n")
    lines.append(markdown_table(pd.DataFrame(claims)))
    return lines + _linear_missing(runs)


def _linear_missing(runs: pd.DataFrame) -> list[str]:
    """The runs of the ``linear`` grid (both profiles) that ``results/linear/`` lacks."""
    from mmlrepro.linear import linear_grid

    done = set(runs["key"])
    lines = ["\n### Linear runs not yet done\n"]
    for profile in ("paper", "quick"):
        grid = linear_grid(profile)
        todo = [c for c in grid if c.key() not in done]
        lines.append(f"- **linear [{profile}]**: {len(grid) - len(todo)} of {len(grid)} done" + (":" if todo else "."))
        lines += [f"  - {c.label()}" for c in todo[:40]]
        if len(todo) > 40:
            lines.append(f"  - … and {len(todo) - 40} more")
    return lines + [""]


def _store_section(results_dir: Any, runs: pd.DataFrame) -> list[str]:
    """The store's health: invalid files, records set aside or not migrated, commits, SPEC §8."""
    store = ResultsStore(results_dir, log=None)
    lines = ["## The store's health\n"]
    problems = store.problems()
    lines.append(f"- Files in `runs/` that are not valid records (left out above): {len(problems)}"
                 + "".join(f"\n  - `{p.name}`: {why}" for p, why in problems[:20]))
    for folder, what in (("unmigrated", "records that could not be migrated"),
                         ("set_aside", "files set aside (bad, replaced or duplicate records)")):
        names = sorted(p.name for p in (store.root / folder).glob("*")) if (store.root / folder).exists() else []
        lines.append(f"- `{folder}/`, {what}: {len(names)}" + "".join(f"\n  - `{n}`" for n in names[:20]))
    if not runs.empty:
        commits = runs["git_commit"].fillna("")
        dirty = int(commits.str.endswith("-dirty").sum())
        unknown = int(((commits == "unknown") | (commits == "")).sum())
        lines.append(f"- Commits of the {len(runs)} records: {len(runs) - dirty - unknown} clean, {dirty} "
                     f"with uncommitted changes (`-dirty`: to the code, `results.CODE_PATHS`; older records may "
                     f"count a change to any tracked file, the store's included), {unknown} unknown")
        paper = [r["config"] for r in store.records() if r["config"]["profile"] == "paper"]
        bad = [(c, deviations(c)) for c in paper]
        bad = [(c, d) for c, d in bad if d]
        lines.append(f"- SPEC §8 check of the {len(paper)} paper-profile records (against `mmlrepro/spec8.json`, "
                     f"transcribed apart from the catalogue): "
                     + ("all match." if not bad else f"{len(bad)} deviate:"
                        + "".join(f"\n  - {c['dataset']}/{c['model']}/{c['loss']}/N{c['n_negatives']}: "
                                  f"{', '.join(d)}" for c, d in bad[:20])))
    return [*lines, ""]
