"""docs/reference.md is the SPEC the code cites: every "SPEC §N" (and every "§N" of a list such
as "SPEC §3, §6, §8") in the package, tests, benchmarks, notebooks and top-level pages names a
section "## §N ..." of it, and its tables of the papers' numbers agree with reported.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference.md"
SECTION = "\u00a7"  # the section sign, spelled out so this file cites no section itself

HEADING = re.compile(rf"^## {SECTION}(\d+) \S", re.MULTILINE)
CITATION = re.compile(rf"{SECTION}(\d+)")
ITEM = re.compile(rf"SPEC {SECTION}(\d+) item (\d+)")
NOTES = re.compile(rf"SPEC {SECTION}(\d+) notes", re.IGNORECASE)
OLD = "SPEC section"  # the old forms: "<OLD> N" and the file outside the repository
OLD_FORMS = re.compile(rf"{OLD} \d+|SPEC\.md|shared/(?:SPEC)")


def cited_files() -> list[Path]:
    """Every file whose text may cite the reference."""
    files = [*ROOT.glob("mmlrepro/**/*.py"), *ROOT.glob("mmlrepro/*.json"),
             *ROOT.glob("tests/**/*.py"), *ROOT.glob("benchmarks/*"),
             *ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("*.md"), *ROOT.glob("docs/**/*.md"),
             ROOT / "Makefile"]
    return sorted(p for p in files if p.is_file() and "__pycache__" not in p.parts)


def text_of(path: Path) -> str:
    """The file's text; a notebook's JSON decoded, so escaped characters read as themselves."""
    raw = path.read_text(encoding="utf-8")
    return json.dumps(json.loads(raw), ensure_ascii=False) if path.suffix == ".ipynb" else raw


def sections(reference: str) -> dict[int, str]:
    """Section number -> its text, from its "## §N" heading up to the next "## " heading."""
    chunks = re.split(r"^(?=## )", reference, flags=re.MULTILINE)
    return {int(m.group(1)): chunk for chunk in chunks if (m := HEADING.match(chunk))}


def unresolved(text: str, secs: dict[int, str]) -> list[str]:
    """The citations of ``text`` that name no section (or no item / notes of one)."""
    bad = [f"{SECTION}{n}" for n in CITATION.findall(text) if int(n) not in secs]
    for n, item in ITEM.findall(text):
        if int(n) in secs and not re.search(rf"^{item}\. ", secs[int(n)], re.MULTILINE):
            bad.append(f"{SECTION}{n} item {item}")
    for n in NOTES.findall(text):
        if int(n) in secs and "### Notes" not in secs[int(n)]:
            bad.append(f"{SECTION}{n} notes")
    bad += OLD_FORMS.findall(text)
    return bad


@pytest.fixture(scope="module")
def secs() -> dict[int, str]:
    return sections(REFERENCE.read_text(encoding="utf-8"))


def test_reference_numbers_its_sections_in_order(secs):
    assert list(secs) == list(range(1, 11))


def test_every_citation_resolves(secs):
    bad = {str(p.relative_to(ROOT)): sorted(set(b)) for p in cited_files()
           if (b := unresolved(text_of(p), secs))}
    assert not bad, f"citations with no section in docs/reference.md: {bad}"
    cited = {p for p in cited_files() if CITATION.search(text_of(p))}
    assert len(cited) > 20  # the scan sees the package, the tests and the notebooks
    assert {"losses.py", "05_figure3_negatives.ipynb", "test_losses.py"} <= {p.name for p in cited}


def test_a_missing_section_is_caught(secs):
    assert unresolved(f"SPEC {SECTION}5, {SECTION}8", secs) == []
    assert unresolved(f"see SPEC {SECTION}3, {SECTION}99", secs) == [f"{SECTION}99"]
    assert unresolved(f"SPEC {SECTION}1 item 4; SPEC {SECTION}5 notes", secs) == []
    assert unresolved(f"SPEC {SECTION}1 item 9", secs) == [f"{SECTION}1 item 9"]
    assert unresolved(f"SPEC {SECTION}7 notes", secs) == [f"{SECTION}7 notes"]
    assert unresolved(f"{OLD} 5", secs) == [f"{OLD} 5"]
    trimmed = {n: body for n, body in secs.items() if n != 6}
    assert unresolved(f"(SPEC {SECTION}3, {SECTION}6)", trimmed) == [f"{SECTION}6"]


LOSS_NAMES = {"BPR": "bpr", "pairwise hinge": "hinge", "softmax CE": "softmax_ce", "MSE": "mse",
              "CCL": "ccl", "BSL": "bsl", "MML": "mml"}


def _table_rows(section: str, title: str) -> list[list[str]]:
    """The body rows of the first table after the subheading starting with ``title``."""
    part = section.split(f"### {title}", 1)[1].split("\n### ", 1)[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in part.splitlines() if line.startswith("|")]
    return rows[2:]


def test_the_papers_numbers_match_reported_json(secs):
    reported = json.loads((ROOT / "mmlrepro" / "reported.json").read_text())
    table2 = {(r[0].lower(), LOSS_NAMES[r[1]], r[2]): [float(v) for v in r[3:]]
              for r in _table_rows(secs[9], "MML Table 2")}
    assert table2 == {(r["model"], r["loss"], r["early_stop"]): [*r["yelp2018"], *r["gowalla"]]
                      for r in reported["table2"]}
    table3 = {LOSS_NAMES[r[0]]: [float(v) for v in r[1:]]
              for r in _table_rows(secs[9], "MML Table 3")}
    assert table3 == {r["loss"]: [*r["yelp2018"], *r["gowalla"]] for r in reported["table3"]}
    for gains in reported["figure3_gain_at_10"].values():
        assert all(f"{g:g} %" in secs[9] for g in gains)
    stops = reported["table2_early_stop_epochs"]
    assert (f"after {stops['simplex/ccl']} epochs with CCL and {stops['simplex/mml']} with MML"
            in " ".join(secs[9].split()))
