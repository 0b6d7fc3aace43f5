"""What holds, at a glance, per paper artefact (issue 33): counts by evidence level and three lines.

One small table per artefact of the paper — Table 2, Table 3, Figure 3 (points present of 36),
the Li et al. 2023 claims, the controls (matched weight, honest selection, lr_reduce) — counting
its numbers by :func:`mmlrepro.evidence.cell_level` and its claims by
:attr:`mmlrepro.evidence.Claim.evidence`, and three generated lines: what holds, what does not,
what is missing. Paper profile only: the shorter profiles do not speak for the paper.
:func:`at_a_glance` returns a :class:`Glance`: ``.markdown()`` for REPRODUCTION.md and the README,
``.frame`` and HTML (``_repr_html_``) for the notebooks.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mmlrepro.catalogue import DATASETS, FIGURE3_NEGATIVES
from mmlrepro.evidence import (
    BAND,
    CLAIM_LEVELS,
    FAILS,
    FAILS_LEVELS,
    MISSING,
    REPRODUCED_SEEDS,
    SIGN_ONLY_LEVELS,
    TESTED_LEVELS,
    UNTESTED,
)
from mmlrepro.frames import EARLY_STOP_NOISE, PAPER, early_stopped
from mmlrepro.paper_claims import compare
from mmlrepro.reported import LOSS_NAMES, MODEL_NAMES
from mmlrepro.stopping import at_paper_stop, missed_at_paper_stop

ARTEFACTS = ("Table 2", "Table 3", "Figure 3", "Li et al. 2023", "Controls")
FIGURE3_POINTS = len(DATASETS) * 3 * len(FIGURE3_NEGATIVES)   # MML, CCL, BSL at six N each
# (artefact, row name, group) of every claims row
_CLAIM_ROWS = (("Table 2", "claims", "table2"), ("Table 3", "claims", "table3"), ("Figure 3", "claims", "figure3"),
               ("Li et al. 2023", "claims", "li2023"), ("Controls", "matched-weight CCL claims", "ccl_matched"),
               ("Controls", "honest-selection claims", "honest"), ("Controls", "lr_reduce claims", "lr_reduce"))
_NUMBER_ROWS = (("Table 2", "table2"), ("Table 3", "table3"))


def _counts(levels: Sequence[str], order: Sequence[str]) -> str:
    """"agrees at 1 seed: 32 · missing: 2": the levels counted, in ``order`` then the others."""
    counts = Counter(levels)
    ranked = sorted(counts, key=lambda v: (order.index(v) if v in order else -1, v))
    return " · ".join(f"{v}: {counts[v]}" for v in ranked) or "–"


def _cell_order(levels: Sequence[str]) -> list[str]:
    """Cell levels best first: reproduced, agrees (more seeds first), differs, missing."""
    def rank(v: str) -> tuple:
        kind = 0 if v.startswith("reproduced") else 1 if v.startswith("agrees") else 2 if v.startswith("differs") else 3
        digits = "".join(c for c in v if c.isdigit())
        return kind, -int(digits or 0)
    return sorted(set(levels), key=rank)


def _cell_name(row: pd.Series) -> str:
    loss = LOSS_NAMES.get(row["loss"], row["loss"])
    what = f"{MODEL_NAMES[row['model']]} + {loss}, ES = {row['early_stop']}" if "model" in row else loss
    return f"{what}, {row['dataset']} {row['metric']}"


@dataclass(frozen=True, repr=False)
class Glance:
    """The at-a-glance view: ``frame`` has one row per artefact row (``artefact``, ``what``,
    ``n``, ``evidence`` (the counts by level as text), ``levels`` (a list, one per number / point /
    claim)); ``holds``, ``fails``, ``missing``: the three lines."""

    frame: pd.DataFrame
    holds: str
    fails: str
    missing: str

    @property
    def lines(self) -> list[str]:
        return [f"**What holds**: {self.holds}", f"**What does not**: {self.fails}",
                f"**What is missing**: {self.missing}"]

    def table(self, artefact: str) -> pd.DataFrame:
        """One artefact's rows: ``what``, ``n``, ``evidence``."""
        return self.frame[self.frame["artefact"] == artefact][["what", "n", "evidence"]].reset_index(drop=True)

    def markdown(self) -> str:
        """One small markdown table per artefact, then the three lines as bullets."""
        out = []
        for artefact in dict.fromkeys(self.frame["artefact"]):
            out.append(f"| {artefact} | n | evidence |\n|---|---|---|")
            out += [f"| {r.what} | {r.n} | {r.evidence} |" for r in self.table(artefact).itertuples()]
            out.append("")
        return "\n".join(out + [f"- {line}" for line in self.lines]) + "\n"

    def __repr__(self) -> str:
        return self.markdown()

    def _repr_html_(self) -> str:
        tables = "".join(f"<h4>{html.escape(a)}</h4>" + self.table(a).to_html(index=False)
                         for a in dict.fromkeys(self.frame["artefact"]))
        items = "".join(f"<li>{html.escape(line).replace('**', '')}</li>" for line in self.lines)
        return f"<div>{tables}<ul>{items}</ul></div>"


def _number_rows(artefact: str, table: pd.DataFrame, at_stop: pd.DataFrame | None = None) -> dict:
    """A numbers row; ``at_stop``: Table 2's ES = Y cells read at the paper's stop epochs
    (:func:`mmlrepro.stopping.at_paper_stop`), said beside the early-stopped numbers that miss."""
    levels = list(table["evidence"])
    return {"artefact": artefact, "what": "numbers (paper value ±5 %)", "n": len(levels),
            "evidence": _counts(levels, _cell_order(levels)), "levels": levels, "_table": table,
            "_at_stop": pd.DataFrame() if at_stop is None else at_stop}


def _figure3_row(table: pd.DataFrame) -> dict:
    """Figure 3's points (dataset × loss × N; the paper gives a graph, not numbers): present or
    missing, at how many seeds, and how many at each N."""
    points = table[table["metric"] == "recall@20"] if not table.empty else table
    levels = [f"at {int(s)} seed{'s' if s != 1 else ''}" for s in points["seeds"]] if len(points) else []
    levels += [MISSING] * (FIGURE3_POINTS - len(levels))
    by_n = points.groupby("n_negatives").size() if len(points) else pd.Series(dtype=int)
    per_n = len(DATASETS) * 3
    shown = ", ".join(f"{n}: {by_n.get(n, 0)}/{per_n}" for n in FIGURE3_NEGATIVES)
    return {"artefact": "Figure 3", "what": "points present", "n": f"{len(points)} / {FIGURE3_POINTS}",
            "evidence": f"{_counts(levels, sorted(set(levels)) + [MISSING])} (by N: {shown})",
            "levels": levels, "_by_n": {n: int(by_n.get(n, 0)) for n in FIGURE3_NEGATIVES}}


def _claim_row(artefact: str, what: str, claims: pd.DataFrame) -> dict:
    levels = list(claims["evidence"])
    note = "no run trained for it" if what.startswith("lr_reduce") and not levels else ""
    return {"artefact": artefact, "what": what, "n": len(levels),
            "evidence": note or _counts(levels, CLAIM_LEVELS), "levels": levels, "_claims": claims}


def _claims_name(r: dict) -> str:
    return "claims" if r["what"] == "claims" else r["what"]


def _by_artefact(rows: list[dict], phrase) -> str:
    """"Table 2: a, b; Table 3: c." from ``phrase(row)`` (None: nothing to say) of each row."""
    said: dict[str, list[str]] = {}
    for r in rows:
        text = phrase(r)
        if text:
            said.setdefault(r["artefact"], []).append(text)
    return "; ".join(f"{a}: {', '.join(t)}" for a, t in said.items())


def _holds(r: dict) -> str | None:
    if "_table" in r:
        ok = [v for v in r["levels"] if v.startswith(("reproduced", "agrees"))]
        return f"{len(ok)} of {r['n']} numbers within ±5 % ({_counts(ok, _cell_order(ok))})" if ok else None
    if "_claims" not in r:
        return None
    # a claim holds only by a significant test; one with the paper's sign but no such test is
    # said apart, never counted with them
    tested = [v for v in r["levels"] if v in TESTED_LEVELS]
    sign_only = [v for v in r["levels"] if v in SIGN_ONLY_LEVELS]
    bits = []
    if tested:
        bits.append(f"{len(tested)} of {r['n']} {_claims_name(r)} hold by a significant test "
                    f"({_counts(tested, CLAIM_LEVELS)})")
    if sign_only:
        how_many = f"{len(sign_only)} more" if tested else f"{len(sign_only)} of {r['n']} {_claims_name(r)}"
        verb = "has" if len(sign_only) == 1 else "have"
        bits.append(f"{how_many} {verb} the paper's sign without a significant test ({_counts(sign_only, CLAIM_LEVELS)})")
    return ", ".join(bits) or None


def _fails(r: dict) -> str | None:
    if "_table" in r:
        table = r["_table"]
        bad = table[table["within_5pct"] == "no"]
        if bad.empty:
            return None
        worst = bad.loc[bad["rel_diff"].abs().idxmax()]
        verb = "numbers differ" if len(bad) > 1 else "number differs"
        early = early_stopped(bad)
        why = f"; {'all' if early == len(bad) else early} early-stopped, {EARLY_STOP_NOISE}" if early else ""
        at_stop = missed_at_paper_stop(bad, r.get("_at_stop", pd.DataFrame()))
        if at_stop:
            inside = sum(abs(d) <= BAND for d in at_stop)
            why += f"; read at the paper's stop epochs, {inside} of {len(at_stop)} lie within ±5 %"
        return f"{len(bad)} {verb} by more than ±5 % (largest {worst['rel_diff']:+.1%}: {_cell_name(worst)}{why})"
    if "_claims" not in r:
        return None
    bad = r["_claims"][r["_claims"]["evidence"].str.startswith(FAILS)]
    if bad.empty:
        return None
    # how each fails, graded like a claim that holds: "significant over users, 1 seed: 1 · untested ...: 2"
    grades = [v.removeprefix(f"{FAILS}, ") for v in bad["evidence"]]
    if len(bad) <= 2:       # named, each with how it fails: "(claim [untested (no per-user values)])"
        how = "; ".join(f"{c} [{g}]" for c, g in zip(bad["claim"], grades, strict=True))
    else:                   # counted by how they fail: "(significant over users, 1 seed: 1 · untested ...: 2)"
        how = _counts(grades, [v.removeprefix(f"{FAILS}, ") for v in FAILS_LEVELS])
    verb = "does not hold" if len(bad) == 1 else "do not hold"
    return f"{len(bad)} of {r['n']} {_claims_name(r)} {verb} ({how})"


def _missing(r: dict) -> str | None:
    levels = r["levels"]
    if "_table" in r:
        absent = levels.count(MISSING)
        seeds = r["_table"]["seeds"].fillna(0)
        few = int(((seeds > 0) & (seeds < REPRODUCED_SEEDS)).sum())
        bits = ([f"{absent} of {r['n']} numbers have no run"] if absent else []) + (
            [f"{few} of {r['n']} numbers have fewer than {REPRODUCED_SEEDS} seeds"] if few else [])
        return ", ".join(bits) or None
    if "_by_n" in r:
        empty = [str(n) for n, k in r["_by_n"].items() if k == 0]
        absent = levels.count(MISSING)
        return (f"{absent} of {FIGURE3_POINTS} points have no run" + (f" (none at N = {', '.join(empty)})" if empty else "")
                if absent else None)
    if r["what"].startswith("lr_reduce") and not levels:
        return "no lr_reduce run"
    absent, untested = levels.count(MISSING), levels.count(UNTESTED)
    reversed_untested = levels.count(f"{FAILS}, {UNTESTED}")
    bits = ([f"{absent} of {r['n']} {_claims_name(r)} lack runs"] if absent else []) + (
        [f"{untested} of {r['n']} {_claims_name(r)} untested (no per-user values)"] if untested else []) + (
        [f"{reversed_untested} of {r['n']} {_claims_name(r)} reversed but untested (no per-user values)"]
        if reversed_untested else [])
    return ", ".join(bits) or None


def at_a_glance(results_dir: str | Path | None = None, artefacts: Sequence[str] = ARTEFACTS) -> Glance:
    """The :class:`Glance` of the paper-profile runs of ``results_dir`` for ``artefacts`` (of
    :data:`ARTEFACTS`)."""
    unknown = [a for a in artefacts if a not in ARTEFACTS]
    if unknown:
        raise ValueError(f"unknown artefact(s) {unknown}; known: {', '.join(ARTEFACTS)}")
    results = {}

    def result(group: str) -> dict[str, pd.DataFrame]:
        if group not in results:
            results[group] = compare(group, PAPER, results_dir)
        return results[group]

    rows: list[dict] = []
    for artefact in artefacts:
        for name, group in _NUMBER_ROWS:
            if name == artefact:
                at_stop = at_paper_stop(PAPER, results_dir) if group == "table2" else None
                rows.append(_number_rows(artefact, result(group)["table"], at_stop))
        if artefact == "Figure 3":
            rows.append(_figure3_row(result("figure3")["table"]))
        for name, what, group in _CLAIM_ROWS:
            if name == artefact:
                rows.append(_claim_row(artefact, what, result(group)["claims"]))
    frame = pd.DataFrame([{k: r[k] for k in ("artefact", "what", "n", "evidence", "levels")} for r in rows])
    return Glance(frame, (_by_artefact(rows, _holds) or "nothing yet") + ".",
                  (_by_artefact(rows, _fails) or "nothing found so far") + ".",
                  (_by_artefact(rows, _missing) or "nothing") + ".")
