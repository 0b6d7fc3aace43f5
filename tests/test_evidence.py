"""Evidence levels (issue 33): cells and claims, the gain against the paper's, Holm over distinct
comparisons, and the at-a-glance counts, on a synthetic store with 1-seed, 3-seed, untested,
partially tested and missing cells."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mmlrepro import catalogue as cat
from mmlrepro import comparison as cmp
from mmlrepro import evidence as ev
from mmlrepro.config import SCHEMA_VERSION, RunConfig
from mmlrepro.data import KNOWN_FINGERPRINTS
from mmlrepro.files import atomic_write_json
from mmlrepro.per_user import PerUser, save_per_user
from mmlrepro.report import render_report

N_USERS = 3000
SEEDS = (2019, 2020, 2021)


def store_run(root, config: RunConfig, recall, ndcg) -> None:
    """A stored run: ``recall`` / ``ndcg`` are per-user arrays (stored beside the record, the
    record's metrics their means) or plain numbers (a run stored without per-user values)."""
    key = cat.catalogue_key(config)
    means = {"recall@20": float(np.mean(recall)), "ndcg@20": float(np.mean(ndcg))}
    best = {"epoch": 5, "loss": 0.5, **means, "recall@50": 2 * means["recall@20"], "ndcg@50": 2 * means["ndcg@20"]}
    atomic_write_json({"schema": SCHEMA_VERSION, "key": key, "data_fingerprint": KNOWN_FINGERPRINTS[config.dataset],
                       "config": config.to_dict(), "history": [best], "best": best, "last": best, "test": {},
                       "timings": {"train_s": 1.0, "eval_s": 0.5}, "device": "fake-gpu",
                       "provenance": {"git_commit": "abc"}}, root / "runs" / f"{key}.json")
    if np.ndim(recall):
        (root / "per_user").mkdir(parents=True, exist_ok=True)
        values = {"recall@20": np.asarray(recall, np.float32), "ndcg@20": np.asarray(ndcg, np.float32)}
        save_per_user(PerUser(np.arange(N_USERS), values), root / "per_user" / f"{key}.npz", key=key)


def per_user(rng, mean: float) -> np.ndarray:
    """Per-user values with the given mean (noisy, so a bootstrap interval has a width)."""
    v = rng.uniform(0.0, 1.0, N_USERS)
    return v * (mean / v.mean())


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Table 3 on a synthetic store:

    - Gowalla, 3 seeds with per-user values: MML at the paper's numbers (±1 % over seeds), MSE 10 %
      below them; nothing else.
    - Yelp2018, 1 seed: MML and MSE with per-user values at the paper's numbers; BPR, hinge,
      softmax CE and CCL without per-user values, at the paper's numbers except CCL's Recall@20
      (+10 %, above MML's); no BSL.
    """
    root = tmp_path_factory.mktemp("store")
    rep = cmp.reported_frame("table3").set_index(["loss", "dataset", "metric"])["reported"]
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 1.0, N_USERS)
    for i, seed in enumerate(SEEDS):
        for loss, scale in (("mml", 1.0 + 0.01 * (i - 1)), ("mse", 0.9 + 0.01 * (i - 1))):
            r, n = (rep[(loss, "gowalla", m)] * scale for m in cmp.METRICS)
            noise = rng.normal(1.0, 0.05, N_USERS)
            store_run(root, cat.paper_config("gowalla", "mf", loss, seed=seed),
                      base * noise * r / (base * noise).mean(), base * noise * n / (base * noise).mean())
    for loss in ("mml", "mse"):
        r, n = (rep[(loss, "yelp2018", m)] for m in cmp.METRICS)
        store_run(root, cat.paper_config("yelp2018", "mf", loss), per_user(rng, r), per_user(rng, n))
    for loss in ("bpr", "hinge", "softmax_ce", "ccl"):
        r, n = (rep[(loss, "yelp2018", m)] for m in cmp.METRICS)
        store_run(root, cat.paper_config("yelp2018", "mf", loss), r * (1.10 if loss == "ccl" else 1.0), n)
    return root


def test_cell_levels():
    assert ev.cell_level(3, 0.02) == "reproduced (3 seeds, within ±5 %)"
    assert ev.cell_level(4, -0.05) == "reproduced (4 seeds, within ±5 %)"
    assert ev.cell_level(1, 0.01) == "agrees at 1 seed"
    assert ev.cell_level(2, -0.04) == "agrees at 2 seeds"
    assert ev.cell_level(1, 0.08) == "differs at 1 seed" and ev.cell_level(3, -0.2) == "differs at 3 seeds"
    assert ev.cell_level(0, float("nan")) == "missing"


def test_cells_carry_their_evidence_level(store):
    table = cmp.compare("table3", "paper", store)["table"].set_index(["loss", "dataset", "metric"])
    assert table.loc[("mml", "gowalla", "recall@20"), "evidence"] == "reproduced (3 seeds, within ±5 %)"
    assert table.loc[("mse", "gowalla", "ndcg@20"), "evidence"] == "differs at 3 seeds"      # 10 % below
    assert table.loc[("bpr", "yelp2018", "recall@20"), "evidence"] == "agrees at 1 seed"
    assert table.loc[("ccl", "yelp2018", "recall@20"), "evidence"] == "differs at 1 seed"    # +10 %
    assert table.loc[("ccl", "yelp2018", "ndcg@20"), "evidence"] == "agrees at 1 seed"
    assert table.loc[("bsl", "gowalla", "recall@20"), "evidence"] == "missing"


def test_claims_carry_their_evidence_level(store):
    claims = cmp.compare("table3", "paper", store)["claims"].set_index("claim")
    level = claims["evidence"]
    assert level["Table 3: gowalla recall@20: MML beats MSE"] == "significant (users and seeds)"
    assert level["Table 3: yelp2018 recall@20: MML beats MSE"] == "significant over users, 1 seed"
    assert level["Table 3: yelp2018 recall@20: MML beats BPR, hinge, softmax CE, MSE and CCL"] == \
        "does not hold, untested (no per-user values)"
    assert level["Table 3: gowalla ndcg@20: MML beats BPR, hinge, softmax CE, MSE and CCL"] == "missing"
    assert level["Gowalla: MML beats CCL and BSL on Recall@20 but trails BSL on NDCG@20"] == "missing"
    # partially tested: MML > MSE has per-user values, the other four parts do not
    partial = claims.loc["Table 3: yelp2018 ndcg@20: MML beats BPR, hinge, softmax CE, MSE and CCL"]
    assert partial["evidence"] == "untested (no per-user values)" and partial["verdict"] == "holds"
    assert math.isnan(partial["p_holm"])
    tested, untested = partial["parts"].split("; ")[3], partial["parts"].split("; ")[4]
    assert tested.startswith("MML > MSE (NDCG): +") and " p " in tested and "[" in tested
    assert untested.startswith("MML > CCL (NDCG): +") and untested.endswith("no per-user values")
    shown = cmp.claims_display(cmp.compare("table3", "paper", store)["claims"]).set_index("claim")
    assert shown.loc[partial.name, "parts"] == partial["parts"]
    assert shown.loc["Table 3: yelp2018 recall@20: MML beats MSE", "evidence"] == "significant over users, 1 seed"


def test_the_gain_is_set_beside_the_papers(store):
    claims = cmp.compare("table3", "paper", store)["claims"].set_index("claim")
    rep = cmp.reported_frame("table3").set_index(["loss", "dataset", "metric"])["reported"]
    # yelp2018: both cells at the paper's numbers, so our gain is the paper's, inside our interval
    row = claims.loc["Table 3: yelp2018 recall@20: MML beats MSE"]
    paper = rep[("mml", "yelp2018", "recall@20")] / rep[("mse", "yelp2018", "recall@20")] - 1
    assert row["ci_low_pct"] < 100 * paper < row["ci_high_pct"]
    assert row["vs_paper"] == (f"paper {100 * paper:+.1f}%: inside our 95% interval "
                               f"[{row['ci_low_pct']:+.1f}%, {row['ci_high_pct']:+.1f}%]")
    # gowalla: MSE 10 % below the paper, so our gain (1/0.9 × the paper's ratio) lies above it
    row = claims.loc["Table 3: gowalla recall@20: MML beats MSE"]
    assert row["ci_low_pct"] > 100 * (rep[("mml", "gowalla", "recall@20")] / rep[("mse", "gowalla", "recall@20")] - 1)
    assert row["vs_paper"].startswith("paper +") and ": below our 95% interval" in row["vs_paper"]
    # the partially tested claim is decided by its untested part (CCL, the smallest gain): a ratio
    row = claims.loc["Table 3: yelp2018 ndcg@20: MML beats BPR, hinge, softmax CE, MSE and CCL"]
    ours = rep[("mml", "yelp2018", "ndcg@20")] / rep[("ccl", "yelp2018", "ndcg@20")] - 1
    assert row["gain_pct"] == pytest.approx(100 * ours, rel=1e-3)
    assert row["vs_paper"] == f"ours {100 * ours:+.1f}% = 1.00 × the paper's {100 * ours:+.1f}%"


def test_quick_runs_make_no_claim_and_carry_no_paper_number(tmp_path):
    store_run(tmp_path, cat.paper_config("gowalla", "mf", "mml", profile="quick"), 0.1, 0.08)
    out = cmp.compare("table3", "quick", tmp_path)
    assert out["claims"].empty and "reported" not in out["table"] and "evidence" not in out["table"]


def test_the_at_a_glance_counts(store):
    glance = cmp.at_a_glance(store, artefacts=["Table 3", "Figure 3"])
    t3 = glance.table("Table 3").set_index("what")
    numbers = t3.loc["numbers (paper value ±5 %)"]
    assert numbers["n"] == 28
    assert numbers["evidence"] == ("reproduced (3 seeds, within ±5 %): 2 · agrees at 1 seed: 11 · "
                                   "differs at 3 seeds: 2 · differs at 1 seed: 1 · missing: 12")
    assert t3.loc["claims", "n"] == 9
    assert t3.loc["claims", "evidence"] == ("significant (users and seeds): 2 · significant over users, 1 seed: 2 · "
                                            "untested (no per-user values): 1 · does not hold, untested (no per-user values): 1 · "
                                            "missing: 3")
    # Table 3's MF runs at N = 100 are Figure 3 points: MML on both datasets, CCL on Yelp2018
    f3 = glance.table("Figure 3").set_index("what")
    assert f3.loc["points present", "n"] == "3 / 36"
    assert f3.loc["points present", "evidence"].startswith("at 1 seed: 2 · at 3 seeds: 1 · missing: 33 (by N: 10: 0/6")
    # Yelp2018 N = 100: CCL's Recall@20 above MML's decides "MML ≥ CCL and BSL for N ≤ 100" although
    # its other N lack runs
    assert f3.loc["claims", "evidence"] == "does not hold, untested (no per-user values): 1 · missing: 11"
    assert glance.holds == ("Table 3: 13 of 28 numbers within ±5 % (reproduced (3 seeds, within ±5 %): 2 · "
                                   "agrees at 1 seed: 11), 4 of 9 claims hold by a significant test "
                                   "(significant (users and seeds): 2 · significant over users, 1 seed: 2), "
                                   "1 more has the paper's sign without a significant test "
                                   "(untested (no per-user values): 1).")
    assert glance.fails.startswith("Table 3: 3 numbers differ by more than ±5 % (largest -10.0%") or \
        glance.fails.startswith("Table 3: 3 numbers differ by more than ±5 % (largest +10.0%")
    assert ("1 of 9 claims does not hold (Table 3: yelp2018 recall@20: MML beats BPR, hinge, softmax CE, MSE and CCL "
            "[untested (no per-user values)])") in glance.fails
    assert glance.fails.endswith("Figure 3: 1 of 12 claims does not hold (Figure 3, yelp2018, recall@20: MML ≥ CCL "
                                 "and BSL for N ≤ 100 [untested (no per-user values)]).")
    assert glance.missing == ("Table 3: 12 of 28 numbers have no run, 12 of 28 numbers have fewer than 3 seeds, "
                              "3 of 9 claims lack runs, 1 of 9 claims untested (no per-user values), "
                              "1 of 9 claims reversed but untested (no per-user values); "
                              "Figure 3: 33 of 36 points have no run (none at N = 10, 50, 200, 400, 800), 11 of 12 claims "
                              "lack runs, 1 of 12 claims reversed but untested (no per-user values).")
    text = glance.markdown()
    assert text.startswith("| Table 3 | n | evidence |\n|---|---|---|\n| numbers (paper value ±5 %) | 28 |")
    assert text.rstrip().splitlines()[-3].startswith("- **What holds**: Table 3:")
    assert "<h4>Figure 3</h4>" in glance._repr_html_()
    with pytest.raises(ValueError, match="unknown artefact"):
        cmp.at_a_glance(store, artefacts=["Table 9"])


def test_the_report_opens_with_the_glance_and_names_figure_3s_coverage(store, tmp_path):
    text = render_report(store, tmp_path / "figures", tmp_path)
    glance = text.split("## At a glance", 1)[1].split("\n## ", 1)[0]
    assert len(glance.splitlines()) <= 40 and "3 / 36" in glance and "**What is missing**" in glance


def _test(gain, lo=float("nan"), hi=float("nan"), p_users=float("nan"), p_seeds=float("nan"), seeds=1):
    return ev.PartTest(gain, lo, hi, p_users, p_seeds, False, seeds)


def _part(a: str, b: str, paper=float("nan")) -> ev.Part:
    return ev.Part(pd.DataFrame({"key": [a]}), pd.DataFrame({"key": [b]}), "recall@20", f"{a} > {b}", paper)


def test_claim_levels_from_their_tests():
    def level(*tests, rule=True, parts=None):
        parts = parts or tuple(_part(f"a{i}", f"b{i}") for i in range(len(tests)))
        [c] = ev.family([ev.Claim("c", "", tuple(parts), tuple(tests), rule)])
        return c.evidence

    assert level(_test(0.05, 0.01, 0.09, 1e-4, 1e-3, 3)) == "significant (users and seeds)"
    assert level(_test(0.05, 0.01, 0.09, 1e-4)) == "significant over users, 1 seed"
    assert level(_test(0.05, p_seeds=1e-3, seeds=3)) == "significant over seeds (no per-user values)"
    assert level(_test(0.01, -0.01, 0.03, 0.3)) == "not significant"
    assert level(_test(0.0, 0.0, 0.0, 1.0)) == "not significant"                  # identical runs
    assert level(_test(0.05)) == "untested (no per-user values)"
    assert level(_test(0.05, 0.01, 0.09, 1e-4), _test(0.02)) == "untested (no per-user values)"
    # a reversal is graded by its own test: significant, not significant, untested; a failed rule apart
    assert level(_test(-0.01, -0.02, -0.001, 0.04)) == "does not hold, significant over users, 1 seed"
    assert level(_test(-0.01, -0.02, 0.0, 0.2)) == "does not hold, not significant"
    assert level(_test(-0.01)) == "does not hold, untested (no per-user values)"
    assert level(_test(-0.02, -0.03, -0.01, 1e-4, 1e-3, 3)) == "does not hold, significant (users and seeds)"
    # the reversal decides, not the claim's other parts: a tested, significant part of the right sign beside it
    assert level(_test(0.05, 0.01, 0.09, 1e-4), _test(-0.01)) == "does not hold, untested (no per-user values)"
    assert level(_test(0.05, 0.01, 0.09, 1e-4), rule=False) == "does not hold, by a rule on the numbers"
    assert level(_test(0.05), rule=None) == "missing"
    assert level(ev.PartTest(*[float("nan")] * 5, True)) == "missing"
    assert ev.Claim("rule", "", rule=True).evidence == "no test (a rule on the numbers)"
    assert ev.Claim("rule", "", rule=False).evidence == "does not hold, by a rule on the numbers"


def test_gain_against_the_papers_gain():
    def vs(test, paper):
        return ev.Claim("c", "", (_part("a", "b", paper),), (test,)).vs_paper

    assert vs(_test(0.015, 0.005, 0.026, 1e-3), 0.062) == "paper +6.2%: above our 95% interval [+0.5%, +2.6%]"
    assert vs(_test(0.07, 0.065, 0.085, 1e-3), 0.062) == "paper +6.2%: below our 95% interval [+6.5%, +8.5%]"
    assert vs(_test(0.07, 0.05, 0.085, 1e-3), 0.062) == "paper +6.2%: inside our 95% interval [+5.0%, +8.5%]"
    assert vs(_test(0.015), 0.062) == "ours +1.5% = 0.24 × the paper's +6.2%"
    assert vs(_test(0.015), float("nan")) == ""


def test_holm_counts_a_comparison_made_by_two_claims_once():
    same, other = _part("eps0", "infonce"), _part("lam11", "lam13")
    claims = [ev.Claim("ε = 0 is best", "", (same,), (_test(0.05, 0.01, 0.09, 0.01),)),
              ev.Claim("MINE+ beats InfoNCE", "", (same,), (_test(0.05, 0.01, 0.09, 0.01),)),
              ev.Claim("λ ≈ 1.1 is best", "", (other,), (_test(0.05, 0.01, 0.09, 0.02),))]
    adjusted = [c.p_holm for c in ev.family(claims)]
    assert adjusted == pytest.approx([0.02, 0.02, 0.02])      # m = 2 distinct comparisons, not 3
    frame = ev.claims_frame(claims)
    assert list(frame["p_holm"]) == pytest.approx(adjusted) and list(frame["verdict"]) == ["holds"] * 3


def test_a_part_with_the_wrong_sign_decides_even_when_another_part_lacks_runs():
    absent = ev.PartTest(*[float("nan")] * 5, True)
    c = ev.Claim("c", "", (_part("a", "b"), _part("a", "c")), (_test(-0.054), absent))
    assert c.verdict == "does not hold" and c.decides.gain == -0.054
    assert c.evidence == "does not hold, untested (no per-user values)"
    assert ev.Claim("c", "", (_part("a", "b"), _part("a", "c")), (_test(0.05), absent)).evidence == "missing"
    # a rule computed on missing numbers does not decide: the claim is missing
    assert ev.Claim("c", "", (_part("a", "b"),), (absent,), rule=False).evidence == "missing"


def test_write_report_rewrites_the_readme_block_and_writes_the_appendix(store, tmp_path, monkeypatch):
    from mmlrepro import markdown, report
    from mmlrepro import readme as readme_mod

    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nintro\n<!-- at-a-glance:start -->\nold\n<!-- at-a-glance:end -->\nrest\n")
    monkeypatch.setattr(markdown, "git_commit", lambda: "abc123")
    out = report.write_report(tmp_path / "REPRODUCTION.md", store, tmp_path / "figures")
    text = readme.read_text()
    block = text.split("<!-- at-a-glance:start -->\n", 1)[1].split("<!-- at-a-glance:end -->", 1)[0]
    assert text.startswith("# x\n\nintro\n") and text.endswith("<!-- at-a-glance:end -->\nrest\n")
    assert "\nold\n" not in text and len(block.splitlines()) <= 40 and "from commit `abc123`" in block
    assert "| Table 3 | n | evidence |" in block and "**What is missing**" in block
    assert "![MML Table 3: reproduced vs reported](figures/table3_reproduced_vs_reported_paper.png)" in block
    assert (tmp_path / "figures" / "table3_reproduced_vs_reported_paper.png").exists()
    appendix = (tmp_path / "REPRODUCTION_APPENDIX.md").read_text()
    assert "## What the store holds" in appendix and "Runs not yet done [paper]" in appendix
    assert "from commit `abc123`" in out.read_text()
    monkeypatch.setattr(markdown, "git_commit", lambda: "abc123-dirty")
    assert "from uncommitted changes (on top of commit `abc123`)" in report.render_report(
        store, tmp_path / "figures", tmp_path)
    plain = tmp_path / "plain.md"            # no markers: left as it is
    plain.write_text("# y\n")
    assert not readme_mod.update_readme(plain, "block") and plain.read_text() == "# y\n"


def test_the_quick_profile_is_never_set_beside_the_paper_in_the_report(tmp_path):
    from mmlrepro.appendix import render_appendix

    for loss in ("mml", "ccl"):
        store_run(tmp_path, cat.paper_config("gowalla", "mf", loss, profile="quick"), 0.05, 0.04)
    text = render_appendix(tmp_path, tmp_path / "figures", tmp_path)
    quick = text.split("## Quick profile", 1)[1]
    assert "does not preserve the paper's orders" in quick
    assert "reported" not in quick and "rel. diff" not in quick and "holds" not in quick
    assert "| MML | – | – | 0.0500 | 0.0400 | 1 |" in quick
    assert "No paper-profile run is in the store yet" in render_report(tmp_path, tmp_path / "figures", tmp_path)


def test_the_glance_says_when_the_numbers_that_miss_are_early_stopped():
    import pandas as pd

    from mmlrepro.glance import _fails

    table = pd.DataFrame({"model": ["mf", "mf", "mf"], "loss": ["ccl", "ccl", "mml"], "early_stop": ["Y", "N", "Y"],
                          "dataset": "gowalla", "metric": "recall@20", "within_5pct": ["no", "no", "yes"],
                          "rel_diff": [0.06, -0.07, 0.01]})
    assert _fails({"_table": table}) == ("2 numbers differ by more than ±5 % (largest -7.0%: MF + CCL, ES = N, "
                                         "gowalla recall@20; 1 early-stopped, whose stop epoch moves with training noise)")
    only_es = table[table["early_stop"] == "Y"]
    assert _fails({"_table": only_es}).endswith("(largest +6.0%: MF + CCL, ES = Y, gowalla recall@20; "
                                                "all early-stopped, whose stop epoch moves with training noise)")
    # read at the paper's stop epochs (mmlrepro.stopping.at_paper_stop), the early-stopped one is 3 % off
    at_stop = pd.DataFrame({"model": ["mf"], "loss": ["ccl"], "dataset": ["gowalla"], "diff_recall@20": [0.03]})
    assert _fails({"_table": table, "_at_stop": at_stop}).endswith(
        "1 early-stopped, whose stop epoch moves with training noise; read at the paper's stop epochs, 1 of 1 lie within ±5 %)")
    at_stop["diff_recall@20"] = 0.07
    assert _fails({"_table": only_es, "_at_stop": at_stop}).endswith("read at the paper's stop epochs, 0 of 1 lie within ±5 %)")
    assert _fails({"_table": only_es, "_at_stop": at_stop.assign(dataset="yelp2018")}).endswith("training noise)")
