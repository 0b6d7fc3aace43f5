"""REPRODUCTION.md, generated from the results store by ``mmlrepro report`` (never by hand), with
its appendix (:mod:`mmlrepro.appendix`) and the README's at-a-glance block (:mod:`mmlrepro.readme`):
:func:`write_report` writes all three.

REPRODUCTION.md is short: what holds at a glance (:mod:`mmlrepro.glance`), the paper-profile
results in the paper's own wide layout (its number beside ours, the devices in a footnote) and
the claims with their evidence levels (:mod:`mmlrepro.evidence`). A paper-profile cell that
misses ±5 % has its runs checked field by field against SPEC §8 as transcribed apart from the
catalogue (:mod:`mmlrepro.speccheck`). The tables' markdown is :mod:`mmlrepro.markdown`'s, whose
notebook helpers are importable from here too.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pandas as pd

from mmlrepro import catalogue as cat
from mmlrepro import comparison as ex
from mmlrepro.appendix import render_appendix, verification_table
from mmlrepro.evidence import BAND, FAILS
from mmlrepro.files import atomic_write_text, check_writable, check_writable_file
from mmlrepro.frames import EARLY_STOP_NOISE, early_stopped
from mmlrepro.markdown import (
    devices_note,
    display_table,
    figure3_figures,
    figure3_wide,
    figure_link,
    markdown_table,
    means_table,
    paper_table,
    pct,
    stamp,
    wide_table,
)
from mmlrepro.readme import README_FIGURE, readme_block, update_readme
from mmlrepro.reported import reported_frame
from mmlrepro.results import ResultsStore, load_results
from mmlrepro.speccheck import deviations
from mmlrepro.stopping import at_paper_stop, missed_at_paper_stop

# the notebooks' helpers (mmlrepro.markdown's) and the outputs' writers, importable from here
__all__ = ["render_report", "write_report", "epoch_one_note", "at_paper_stop_lines", "render_appendix", "readme_block", "update_readme",
           "devices_note", "means_table", "wide_table", "figure3_wide", "paper_table", "markdown_table", "stamp"]

LR_REDUCE_NOTE = (
    "The paper's early-stopped MF runs stopped after 19 epochs; ours, at constant lr, stop later "
    "and land higher (Table 2's early-stopped rows). The hypothesis: the paper kept SimpleX's schedule (lr ×0.1 and the best "
    "weights reloaded on each non-improving epoch, `--lr-reduce`), which would end a run sooner "
    "and lower. The rows above put each run trained with it beside the constant-lr run of the "
    "same seed; the claims say whether it stops nearer 19 epochs and lands within ±5% of the "
    "paper.\n")


READING_EVIDENCE = """\
## Reading the evidence

- **A number** (one cell of a paper table) is the mean over its seeds of the selected-epoch test
  metric. SPEC §10 calls it **reproduced** when that mean over **at least 3 seeds** lies within
  ±5 % of the paper's: "reproduced (3 seeds, within ±5 %)". Within ±5 % on fewer seeds it
  **agrees at 1 seed** (or 2); outside, it **differs**.
- **A claim** ("MML beats CCL") rests on comparisons of two cells (its parts). Its evidence:
  **significant (users and seeds)** (every part beats both the test-set sampling noise, a paired
  bootstrap/t-test over users, and the seed-to-seed noise, Welch over ≥ 2 seeds a side, at α = 0.05
  after Holm); **significant over users, 1 seed** (no seed test: one seed a side; a rerun may
  move it more than the interval says); **not significant**; **untested (no per-user values)**
  (the claimed sign, but a part cannot be tested; the other parts' tests are listed); **no test
  (a rule on the numbers)**; **does not hold** (a part has the wrong sign, or a further condition
  fails), graded by the reversal's own test: **does not hold, significant …** (the wrong sign
  beats the noise), **does not hold, not significant** or **does not hold, untested** (the wrong
  sign, inside the noise or untested: not a refutation), **does not hold, by a rule on the
  numbers**; **missing** (runs missing). In the notebooks ✓ marks a claim that holds by a
  significant test, ○ the paper's sign without one, ✗ a significant reversal or a failed rule,
  (✗) a reversal without a significant test. A claim of several parts shows the gain of the
  part that decides it (the best-tested reversal, else the part with the largest p-value),
  named beside the gain, and lists every part's test. A claim about a gain also sets ours beside the
  paper's: inside, above or below our 95 % interval over users, or, without one, the ratio of
  the gains.
- The tests take the paper's protocol as given: epochs selected on the test split (the honest
  rows say what that costs), one data split, the best cell of a grid chosen on the same data.
  Details: the appendix's *Reading the numbers*.
"""


def render_report(results_dir: Any = None, figures_dir: str | Path = "figures",
                  out_dir: str | Path = ".", glance: Any = None, source: str | None = None) -> str:
    """REPRODUCTION.md as a string: the paper profile only (the rest: :func:`render_appendix`);
    ``glance``: the :class:`mmlrepro.glance.Glance` if already computed; ``source``: the
    :func:`stamp` taken before anything was written (default: now)."""
    source = source or stamp()
    runs = load_results(results_dir)
    figures_dir, out_dir = Path(figures_dir), Path(out_dir)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    lines = [
        "# Reproduction report: Multi-Margin Loss (Ozsoy 2024) and Li, Jin, Ren 2023\n",
        f"_Generated by `mmlrepro report` from the results store on {now}, from {source}. "
        "Do not edit by hand: rerun the command. The run lists, the store's health, the linear "
        "models and the quick profile are in [REPRODUCTION_APPENDIX.md](REPRODUCTION_APPENDIX.md)._\n",
        "Everything here is the **paper** profile (SPEC §8: 100 epochs, lr 1e-4, full data), selected on "
        "the test split as in the paper except the honest rows.\n",
    ]
    has_paper = not runs.empty and (runs["profile"] == "paper").any()
    if not has_paper:
        return "\n".join(lines + ["No paper-profile run is in the store yet: see the appendix.\n"])
    dots = _dot_plots(results_dir, figures_dir, out_dir)
    lines += _glance_block(glance or ex.at_a_glance(results_dir), dots)
    lines.append(READING_EVIDENCE)
    lines += _verification_summary(runs, results_dir)
    lines += _paper_group_section("MML Table 2: architectures × losses × early stopping", "table2", results_dir,
                                  ["model", "loss", "early_stop"])
    lines.append(dots.get("table2", ""))
    lines += _paper_group_section("MML Table 3: seven losses on MF", "table3", results_dir, ["loss"])
    lines.append(dots.get("table3", ""))
    lines += _figure3_paper_section(results_dir, figures_dir, out_dir)
    for title, group in (("Li, Jin, Ren 2023: InfoNCE+, MINE+, debiased losses", "li2023"),
                         ("Control: CCL at MML's weight (matched weight)", "ccl_matched"),
                         ("Control: test-selected vs honestly-validated epochs", "honest"),
                         ("Control: early stopping with SimpleX's lr schedule (issue 18)", "lr_reduce")):
        lines += _control_section(title, group, results_dir)
    return "\n".join(line for line in lines if line is not None)


def _glance_block(glance: Any, dots: dict[str, str]) -> list[str]:
    return ["## At a glance (paper profile)\n", glance.markdown(), dots.get(README_FIGURE.split("_")[0], "")]


def _verification_summary(runs: pd.DataFrame, results_dir: Any) -> list[str]:
    """REPRODUCTION.md's line on `mmlrepro verify`: how many paper runs were verified, when,
    where and with what outcome (per run: the appendix)."""
    table = verification_table(runs, results_dir)
    if table.empty:
        return []
    done = table[table["last verified"] != "never"]
    head = "## Verified by training again (`mmlrepro verify`)\n"
    if done.empty:
        return [head, f"None of the {len(table)} paper-profile runs has been verified yet: "
                "`mmlrepro verify --all` trains each one's first epoch again and compares it with its "
                "stored history.\n"]
    outcomes = done["outcome"].str.replace(r" \(via.*", "", regex=True).value_counts()
    machines = sorted(set(done["on"]))
    return [head, f"{len(done)} of the {len(table)} paper-profile runs have been trained again for their first "
            f"epoch(s) and compared with their stored histories ({', '.join(f'{k}: {v}' for k, v in outcomes.items())}), "
            f"last on {done['last verified'].max()}, on {'; '.join(machines)}. Per run: the appendix's "
            "*Verification*; the tolerance and its evidence: docs/cpu_profiles.md.\n"]


def _paper_group_section(title: str, group: str, results_dir: Any, cell_cols: list[str]) -> list[str]:
    """Table 2 or 3 at the paper profile: the wide table, its devices, the claims, the early stops."""
    res = ex.compare(group, "paper", results_dir)
    table = res["table"]
    lines = [f"## {title} [paper profile]\n", markdown_table(wide_table(table, cell_cols)),
             "Ours: the mean over seeds (± the half-width of its 95 % interval from 2 seeds on) and its "
             "difference from the paper's number.\n", devices_note(table)]
    missed = table[table["within_5pct"] == "no"]
    at_stop = at_paper_stop("paper", results_dir) if group == "table2" else pd.DataFrame()
    if len(missed):
        lines.append(f"{len(missed)} of {len(table)} numbers miss the ±5% band. The runs' settings, "
                     "checked field by field against SPEC §8:\n")
        lines.append("\n".join(_spec_checks(group, "paper", results_dir)) + "\n")
        if early := early_stopped(missed):
            lines.append(f"{'All' if early == len(missed) else f'{early} of the'} {len(missed)} are early-stopped "
                         f"(ES = Y) numbers, {EARLY_STOP_NOISE}: see how far CPU rounding alone moved them below "
                         "the early-stopped runs' table." + _missed_at_paper_stop(missed, at_stop) + "\n")
    lines.append(epoch_one_note(group, results_dir))
    lines += _claims_lines(res["claims"])
    if not res.get("stops", pd.DataFrame()).empty:
        lines.append("\nEarly-stopped runs: the epoch each stopped after (one per seed) and its selected "
                     "epoch, beside the stop epoch the paper's text gives (it does not say for which "
                     "dataset):\n\n" + markdown_table(res["stops"]))
    if group == "table2":
        lines += at_paper_stop_lines(table, results_dir, at_stop)
    return lines + _reruns_lines(group, results_dir)


def _missed_at_paper_stop(missed: pd.DataFrame, at: pd.DataFrame) -> str:
    """A sentence on the early-stopped numbers of ``missed`` read at the paper's stop epochs
    (``at``, :func:`mmlrepro.stopping.at_paper_stop`): how many of them lie within ±5 % there; "" if none can be read."""
    diffs = missed_at_paper_stop(missed, at)
    if not diffs:
        return ""
    inside = sum(abs(d) <= BAND for d in diffs)
    return (f" Read at the paper's stop epochs instead, {inside} of these {len(diffs)} lie within ±5 % "
            f"({', '.join(pct(d) for d in diffs)}): the paragraph after the early-stopped runs' table.")


def at_paper_stop_lines(table: pd.DataFrame, results_dir: Any, at: pd.DataFrame | None = None) -> list[str]:
    """Table 2's ES = Y cells read at the paper's stop epochs (``at``; default
    :func:`mmlrepro.stopping.at_paper_stop` on ``results_dir``) beside SPEC §6's rule (``table``):
    how many numbers land within ±5 %, and MML's gain over CCL there."""
    at = at_paper_stop("paper", results_dir) if at is None else at
    if at.empty:
        return []
    diffs = at[[f"diff_{m}" for m in ex.METRICS]].to_numpy().ravel()
    ours = table[(table["early_stop"] == "Y") & (table["within_5pct"] != "missing")]
    gains = []
    for (model, dataset), cell in at.groupby(["model", "dataset"], sort=False):
        by_loss = cell.set_index("loss")
        if {"mml", "ccl"} <= set(by_loss.index):
            ours_gain = " / ".join(pct(by_loss.at["mml", m] / by_loss.at["ccl", m] - 1) for m in ex.METRICS)
            paper_gain = " / ".join(pct(by_loss.at["mml", f"paper_{m}"] / by_loss.at["ccl", f"paper_{m}"] - 1)
                                    for m in ex.METRICS)
            gains.append(f"{ex.MODEL_NAMES.get(model, model)} {dataset} {ours_gain} (paper {paper_gain})")
    text = (f"\nRead at the paper's stop epochs instead (each ES = N run cut after the paper's stop epoch, "
            "its epoch selected by SPEC §6's rule: `mmlrepro.stopping.at_paper_stop`), "
            f"{int((abs(diffs) <= BAND).sum())} of {len(diffs)} ES = Y numbers lie within ±5 % of the paper's "
            f"(largest |difference| {abs(diffs).max():.1%}); with SPEC §6's stopping rule, "
            f"{int((ours['within_5pct'] == 'yes').sum())} of {len(ours)} do.")
    if gains:
        text += (" There MML's gain over CCL (Recall@20 / NDCG@20, mean over seeds) is " + "; ".join(gains) + ".")
    text += (" The ES = Y claims above are tested at our runs' own stop epochs, not at these: "
             "per-user values are stored for the selected epochs only, so these gains have no users test.\n")
    shown = at.drop(columns=[f"paper_{m}" for m in ex.METRICS]).rename(columns={"paper_stopped_after": "paper stop"})
    for m in ex.METRICS:
        shown[f"diff_{m}"] = shown[f"diff_{m}"].map(pct)
    return [text, markdown_table(shown, floatfmt=".4f")]


def _reruns_lines(group: str, results_dir: Any) -> list[str]:
    """The runs of ``group`` trained again on another CPU (:func:`mmlrepro.frames.reruns_on_another_cpu`)
    and how far the CPUs' rounding alone moved their numbers: early-stopped runs apart."""
    reruns = ex.reruns_on_another_cpu(ex.group_runs(group, "paper", results_dir), results_dir)
    if reruns.empty:
        return []
    changes = [c for c in reruns.columns if c.startswith("change_")]
    shift = reruns[changes].abs().max(axis=1)
    text = (f"\n{len(reruns)} of these runs were trained again on another CPU with the same config and "
            "seed (the earlier record is kept in `results/set_aside/`), so the two differ by the CPUs' "
            "floating-point rounding: ")
    parts = []
    for es, what in (("N", "the runs without early stopping"), ("Y", "the early-stopped runs")):
        mask = reruns["early_stop"] == es
        if mask.any():
            parts.append(f"{what} ({int(mask.sum())}) moved by at most {shift[mask].max():.1%}")
    text += "; ".join(parts) + "."
    early = reruns[reruns["early_stop"] == "Y"]
    moved = int(early["stop_moved"].sum())
    if moved:
        text += (f" Rounding alone moved where {moved} of the {len(early)} early-stopped runs stop, "
                 "so an ES = Y number, and a claim between two of them, is one draw of the stop epoch: "
                 "only seeds can say how far it varies.")
    shown = reruns.drop(columns=[*changes, "stop_moved"]).rename(columns={"early_stop": "ES"})
    return [text + "\n\n" + markdown_table(shown)]


def _spec_checks(group: str, profile: str, results_dir: Any) -> list[str]:
    """The stored runs of ``group`` checked field by field against SPEC §8
    (:func:`mmlrepro.speccheck.deviations`); one line per distinct deviation."""
    keys = {cat.catalogue_key(c) for c in cat.configs(group, profile, 10)}
    found: dict[str, list[str]] = {}
    for record in ResultsStore(results_dir).records():
        if record["key"] not in keys:
            continue
        config = record["config"]
        line = ", ".join(deviations(config)) or "matches SPEC §8"
        found.setdefault(line, []).append(f"{config['dataset']}/{config['model']}/{config['loss']}")
    return [f"- {line}: {len(runs)} run(s) ({', '.join(sorted(set(runs))[:6])}{', …' if len(set(runs)) > 6 else ''})"
            for line, runs in found.items()]


def epoch_one_note(group: str, results_dir: Any, where: str | None = None) -> str:
    """The paper-profile runs of ``group`` that select epoch 1 (no later epoch beats it), so their
    numbers are first-epoch, best-on-test numbers; ``where`` their learning curves are shown
    (default: the group's notebook)."""
    runs = ex.group_runs(group, "paper", results_dir)
    if runs.empty:
        return ""
    first = runs[(runs["best_epoch"] == 1) & (runs["epochs_run"] > 1)]
    if first.empty:
        return ""
    notebook = where or "in " + {"table2": "notebook 03", "table3": "notebook 04"}.get(group, "the notebooks")
    said = []
    for d, sub in first.groupby("dataset", sort=False):
        names = ", ".join(dict.fromkeys(f"{ex.MODEL_NAMES[m]} + {ex.LOSS_NAMES.get(loss, loss)}"
                                        for m, loss in zip(sub["model"], sub["loss"], strict=True)))
        said.append(f"on {d}, {names}")
    return ("**Epoch-1 selections**: " + "; ".join(said) + " select epoch 1 (no later epoch beats it on "
            "the test split), so their agreement with the paper is a first-epoch, best-on-test number; "
            f"their learning curves are {notebook}.\n")


def _claims_lines(claims: pd.DataFrame, all_rows: bool = True) -> list[str]:
    """The claims with their evidence levels; with ``all_rows`` False, a group whose claims all
    lack runs is one line."""
    if claims.empty:
        return []
    if not all_rows and (claims["evidence"] == "missing").all():
        return [f"\nIts {len(claims)} claims all lack paper-profile runs.\n"]
    return ["\nClaims (evidence levels and tests: see *Reading the evidence*):\n\n"
            + markdown_table(ex.claims_display(claims))]


def _figure3_paper_section(results_dir: Any, figures_dir: Path, out_dir: Path) -> list[str]:
    res = ex.compare("figure3", "paper", results_dir)
    table = res["table"]
    points = 0 if table.empty else len(table[table.metric == "recall@20"])
    lines = ["## MML Figure 3: metrics against the number of negatives [paper profile]\n",
             f"{points} of {len(cat.FIGURE3_NEGATIVES) * 6} points have a paper-profile run "
             "(the paper gives the figure, not its numbers):\n", markdown_table(figure3_wide(table))]
    if points:
        lines += figure3_figures("paper", results_dir, figures_dir, out_dir)
    lines.append("Every Figure 3 claim with its state:\n\n" + markdown_table(ex.claims_display(res["claims"])))
    return lines + _low_n_note(res["claims"])


_LOW_N = re.compile(r"^Figure 3, (?P<dataset>[\w]+), (?P<metric>[\w@]+): MML ≥ CCL and BSL for N ≤ 100$")


def _low_n_note(claims: pd.DataFrame) -> list[str]:
    """Where a Figure 3 "MML ≥ CCL and BSL for N ≤ 100" claim does not hold while the paper's own
    Table 3 (the N = 100 point) has MML at or below BSL, a note saying so with both numbers: the
    figure's statement and the paper's table disagree there."""
    t3 = reported_frame("table3").set_index(["loss", "dataset", "metric"])["reported"]
    found = []
    for claim in claims[claims["evidence"].str.startswith(FAILS)]["claim"]:
        match = _LOW_N.match(claim)
        if match is None:
            continue
        mml, bsl = (float(t3[(loss, match["dataset"], match["metric"])]) for loss in ("mml", "bsl"))
        if mml <= bsl:
            found.append(f"{match['dataset']} {match['metric']} MML {mml:.4f} vs BSL {bsl:.4f}")
    if not found:
        return []
    return ["The \"N ≤ 100\" claims that do not hold are read at N = 100 too, the Table 3 runs, "
            "where the paper's own Table 3 already has MML at or below BSL ("
            + "; ".join(found) + "): there the statement under the paper's figure and its table "
            "disagree, and our runs side with the table.\n"]


def _dot_plots(results_dir: Any, figures_dir: Path, out_dir: Path) -> dict[str, str]:
    """Tables 2 and 3 reproduced vs reported (paper profile) as dot plots; their markdown links."""
    links = {}
    try:
        from mmlrepro.plots import plot_reproduced_vs_reported, save_figure

        for group in ("table2", "table3"):
            rows = ex.runs_vs_reported(group, "paper", results_dir)
            if rows.empty:
                continue
            fig = plot_reproduced_vs_reported(rows, title_suffix=f"MML {group.replace('table', 'Table ')}")
            links[group] = figure_link(save_figure(fig, f"{group}_reproduced_vs_reported", "paper", figures_dir),
                                        f"{group} reproduced vs reported [paper]", out_dir)
    except Exception as err:  # the tables are the result; a figure failure must not hide them
        links["error"] = f"_(figure not drawn: {err})_\n"
    return links


def _control_section(title: str, group: str, results_dir: Any) -> list[str]:
    res = ex.compare(group, "paper", results_dir)
    lines = [f"## {title} [paper profile]\n"]
    table = res["table"]
    if table.empty:
        lines.append("No paper-profile run in the store yet.\n")
    else:
        lines.append(markdown_table(display_table(table)))
        if "device" in table:
            lines.append(devices_note(table))
    if group == "lr_reduce":
        lines.append(LR_REDUCE_NOTE)
    return lines + _claims_lines(res["claims"], all_rows=False)


def write_report(output: str | Path = "REPRODUCTION.md", results_dir: Any = None,
                 figures_dir: str | Path = "figures", readme: str | Path | None = None) -> Path:
    """Render the report and its appendix (``<output stem>_APPENDIX.md`` beside it) and write them
    atomically, then the README's at-a-glance block (``readme``: default ``README.md`` beside the
    output; left alone without its markers). The outputs are checked before any work."""
    output = check_writable_file(output, "report file")
    appendix = check_writable_file(output.with_name(f"{output.stem}_APPENDIX{output.suffix}"), "report appendix")
    check_writable(figures_dir, "figures folder")
    store = ResultsStore(results_dir, log=None)
    if not store.runs_dir.is_dir():
        raise ValueError(f"results store {store.root} holds no runs/ folder: nothing to report")
    store.require_current_schema()
    source = stamp()                 # the tree as it is before any figure or file is written
    glance = ex.at_a_glance(results_dir)
    text = render_report(results_dir, figures_dir, output.parent, glance, source)
    rest = render_appendix(results_dir, figures_dir, output.parent, source)
    block = readme_block(results_dir, glance, source)
    atomic_write_text(rest, appendix)
    update_readme(Path(readme) if readme is not None else output.parent / "README.md", block)
    return atomic_write_text(text, output)
