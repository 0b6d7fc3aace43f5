"""The notebook helpers of mmlrepro.comparison (group_runs, runs_vs_reported, learning_curves,
seed_noise) and markdown.paper_table, on a hand-made store."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from mmlrepro import catalogue as cat
from mmlrepro import comparison as cmp
from mmlrepro.config import SCHEMA_VERSION, RunConfig
from mmlrepro.data import KNOWN_FINGERPRINTS
from mmlrepro.files import atomic_write_json
from mmlrepro.markdown import paper_table


def fake_run(root, config: RunConfig, history: list[tuple[float, float]], device: str = "fake-gpu") -> None:
    """A stored run whose epoch k (1-based) has recall@20, ndcg@20 = history[k - 1]."""
    epochs = [{"epoch": k, "loss": 1.0 / k, "recall@20": r, "ndcg@20": n, "recall@50": 2 * r, "ndcg@50": 2 * n}
              for k, (r, n) in enumerate(history, 1)]
    best = max(epochs, key=lambda e: e["recall@20"])
    key = cat.catalogue_key(config)
    atomic_write_json({"schema": SCHEMA_VERSION, "key": key, "data_fingerprint": KNOWN_FINGERPRINTS[config.dataset],
                       "config": config.to_dict(), "history": epochs, "best": best,
                       "last": epochs[-1], "test": {}, "timings": {"train_s": 1.0, "eval_s": 0.5},
                       "device": device, "provenance": {"git_commit": "abc"}},
                      root / "runs" / f"{key}.json")


def table3(loss: str, seed: int, dataset: str = "gowalla") -> RunConfig:
    return cat.paper_config(dataset, "mf", loss, profile="quick", seed=seed, group="table3")


def paper3(loss: str, seed: int, dataset: str = "gowalla") -> RunConfig:
    return cat.paper_config(dataset, "mf", loss, seed=seed, group="table3")


def test_runs_vs_reported_pairs_each_paper_run_with_its_paper_cell(tmp_path):
    fake_run(tmp_path, paper3("mml", 2019), [(0.10, 0.08), (0.12, 0.09)])
    fake_run(tmp_path, paper3("mml", 2020), [(0.14, 0.11)])
    fake_run(tmp_path, paper3("ccl", 2019), [(0.11, 0.07)])
    fake_run(tmp_path, table3("mml", 2019), [(0.9, 0.9)])
    rows = cmp.runs_vs_reported("table3", "paper", tmp_path)
    assert len(rows) == 3 * 2  # three paper runs × two metrics; the quick run is left out
    mml = rows[(rows.loss == "mml") & (rows.metric == "recall@20")]
    assert mml["reproduced"].tolist() == [0.12, 0.14] and mml["seed"].tolist() == [2019, 2020]
    assert set(mml["reported"]) == {0.1816} and set(mml["label"]) == {"MML"}
    assert mml["rel_diff"].tolist() == pytest.approx([0.12 / 0.1816 - 1, 0.14 / 0.1816 - 1])
    ccl = rows[(rows.loss == "ccl") & (rows.metric == "ndcg@20")].iloc[0]
    assert (ccl["reproduced"], ccl["reported"]) == (0.07, 0.1426)
    assert rows["loss"].tolist()[::2] == ["ccl", "mml", "mml"]  # Table 3's loss order, then seed
    assert rows["metric"].tolist()[:2] == ["recall@20", "ndcg@20"]
    assert cmp.runs_vs_reported("table3", "paper", tmp_path / "empty").empty
    with pytest.raises(ValueError, match="group"):
        cmp.runs_vs_reported("figure3", "paper", tmp_path)
    with pytest.raises(ValueError, match="only the paper profile"):   # quick runs do not stand for the paper
        cmp.runs_vs_reported("table3", "quick", tmp_path)


def test_runs_vs_reported_table2_labels_and_early_stop(tmp_path):
    y = cat.paper_config("yelp2018", "simplex", "ccl", selection="early_stop", group="table2")
    fake_run(tmp_path, y, [(0.05, 0.04)])
    rows = cmp.runs_vs_reported("table2", "paper", tmp_path)
    assert set(rows["label"]) == {"SimpleX · CCL · ES Y"}
    assert rows.set_index("metric")["reported"].to_dict() == {"recall@20": 0.0634, "ndcg@20": 0.0517}
    runs = cmp.group_runs("table2", "paper", tmp_path)
    assert runs[["early_stop", "loss_name", "device"]].iloc[0].tolist() == ["Y", "CCL", "fake-gpu"]


def test_learning_curves_one_row_per_epoch_and_filter(tmp_path):
    fake_run(tmp_path, table3("mml", 2019), [(0.10, 0.08), (0.12, 0.09), (0.11, 0.10)])
    fake_run(tmp_path, table3("bsl", 2019, "yelp2018"), [(0.05, 0.04)])
    curves = cmp.learning_curves("table3", "quick", tmp_path)
    assert len(curves) == 4
    mml = curves[curves.loss == "mml"]
    assert mml["epoch"].tolist() == [1, 2, 3] and mml["recall@20"].tolist() == [0.10, 0.12, 0.11]
    assert mml["train_loss"].tolist() == pytest.approx([1.0, 0.5, 1 / 3])
    assert set(mml["label"]) == {"MF · MML"} and set(mml["model_name"]) == {"MF"}
    only = cmp.learning_curves("table3", "quick", tmp_path, dataset="yelp2018")
    assert only["loss_name"].tolist() == ["BSL"]
    # MF + MML without early stop is a cell of Table 2 too (the key ignores the group); BSL is not.
    assert set(cmp.learning_curves("table2", "quick", tmp_path)["loss"]) == {"mml"}
    assert cmp.learning_curves("li2023", "quick", tmp_path).empty


def test_seed_noise_hand_worked(tmp_path):
    # Table 3, Gowalla: MML recall 0.10 / 0.14 (mean 0.12, sd 0.02·√2), BSL 0.10 / 0.10 (sd 0).
    for seed, r in ((2019, 0.10), (2020, 0.14)):
        fake_run(tmp_path, table3("mml", seed), [(r, 0.05)])
        fake_run(tmp_path, table3("bsl", seed), [(0.10, 0.05)])
    noise = cmp.seed_noise("quick", tmp_path)
    row = noise[(noise.comparison == "table3: MML vs BSL") & (noise.dataset == "gowalla")
                & (noise.metric == "recall@20")].iloc[0]
    assert row["seeds"] == 2 and row["label"] == "Table 3 MF: MML vs BSL · gowalla"
    assert row["paper_gap"] == pytest.approx((0.1816 / 0.1804 - 1) * 100)
    assert row["reproduced_gap"] == pytest.approx(20.0)
    sd = math.sqrt(2) * 0.02 / 0.10 * 100  # std of MML relative to BSL's mean, in %
    assert row["std_mml"] == pytest.approx(sd) and row["std_base"] == pytest.approx(0.0)
    assert row["noise"] == pytest.approx(sd)
    assert row["paper_gap_in_sd"] == pytest.approx(row["paper_gap"] / sd)
    # Table 2 rows exist for every model × ES × dataset × metric, with NaN noise when missing.
    t2 = noise[noise.comparison == "table2: MML vs CCL"]
    assert len(t2) == 2 * 2 * 2 * 2 and t2["noise"].isna().all() and (t2["seeds"] == 0).all()
    gap = t2[(t2.model == "mf") & (t2.early_stop == "N") & (t2.dataset == "yelp2018") & (t2.metric == "recall@20")]
    assert gap["paper_gap"].iloc[0] == pytest.approx((0.0702 / 0.0673 - 1) * 100)


def test_paper_table_formats_mean_std_and_rel_diff(tmp_path):
    for seed, r in ((2019, 0.17), (2020, 0.19)):
        fake_run(tmp_path, paper3("mml", seed), [(r, 0.14)])
    table = cmp.compare("table3", "paper", tmp_path)["table"]
    shown = paper_table(table, ["loss"])
    row = shown[(shown.loss == "mml") & (shown.dataset == "gowalla") & (shown.metric == "recall@20")].iloc[0]
    # "mean ± h", h the half-width of the 95 % t-interval of two seeds: t(0.975, 1) · sd / √2
    half = sps.t.ppf(0.975, 1) * np.std([0.17, 0.19], ddof=1) / np.sqrt(2)
    assert row["reproduced"] == f"0.1800 ± {half:.4f}" == "0.1800 ± 0.1271" and row["seeds"] == 2
    assert row["rel. diff"] == "-0.9%" and row["within ±5%"] == "yes" and row["evidence"] == "agrees at 2 seeds"
    missing = shown[(shown.loss == "bpr") & (shown.dataset == "gowalla")].iloc[0]
    assert (missing["reproduced"], missing["rel. diff"], missing["within ±5%"]) == ("missing", "–", "missing")


def test_quick_tables_carry_no_paper_number(tmp_path):
    for seed, r in ((2019, 0.17), (2020, 0.19)):
        fake_run(tmp_path, table3("mml", seed), [(r, 0.14)])
    out = cmp.compare("table3", "quick", tmp_path)
    assert not {"reported", "rel_diff", "within_5pct", "evidence"} & set(out["table"].columns)
    assert out["claims"].empty            # the quick profile makes no claim for the paper
    shown = paper_table(out["table"], ["loss"])
    assert not {"reported", "rel. diff", "within ±5%"} & set(shown.columns)
    assert "0.1800 ± 0.1271" in set(shown["reproduced"])


def test_linear_results_reads_the_linear_folder(tmp_path):
    assert cmp.linear_results(tmp_path).empty
    for key, tau, recall in (("a", 0.0, 0.17), ("b", 0.05, 0.18)):
        config = {"dataset": "gowalla", "method": "ease", "lam": 80.0, "dim": None, "alpha": None, "reg": None,
                  "reg_exp": None, "epochs": None, "tau_plus": tau, "seed": 0, "profile": "quick", "device": "cpu"}
        atomic_write_json({"key": key, "config": config, "device": "cpu", "timings": {"fit_s": 2.0, "eval_s": 1.0},
                           "metrics": {"recall@20": recall, "ndcg@20": 0.1, "recall@50": 0.3, "ndcg@50": 0.2}},
                          tmp_path / "linear" / f"{key}.json")
    frame = cmp.linear_results(tmp_path)
    assert frame["recall@20"].tolist() == [0.17, 0.18] and frame["debiased"].tolist() == [False, True]
    assert frame[["method", "lam", "tau_plus", "fit_s"]].iloc[1].tolist() == ["ease", 80.0, 0.05, 2.0]


def test_reruns_on_another_cpu_pair_a_rerun_with_its_set_aside_record(tmp_path):
    from mmlrepro.report import _paper_group_section, _reruns_lines
    from mmlrepro.results import ResultsStore

    es = cat.paper_config("gowalla", "mf", "ccl", group="table2", selection="early_stop")
    key = cat.catalogue_key(es)
    xeon = [(0.10, 0.08), (0.12, 0.09), (0.11, 0.08), (0.11, 0.08), (0.11, 0.08)]   # stops after 5
    fake_run(tmp_path, es, xeon, device="Intel Xeon (1 threads)")
    (tmp_path / "set_aside").mkdir()
    (tmp_path / "runs" / f"{key}.json").rename(tmp_path / "set_aside" / f"{key}.20261206T100000.json")
    (tmp_path / "set_aside" / f"{key}.20261206T110000.json").write_text("{not json")   # skipped
    fake_run(tmp_path, es, [(0.10, 0.08), (0.12, 0.09), (0.13, 0.10), (0.12, 0.09)], device="AMD EPYC (2 threads)")
    paper = cat.paper_config("gowalla", "mf", "ccl", group="table2")   # set aside on the same CPU: left out
    fake_run(tmp_path, paper, [(0.2, 0.1)], device="AMD EPYC (1 threads)")
    pkey = cat.catalogue_key(paper)
    (tmp_path / "runs" / f"{pkey}.json").rename(tmp_path / "set_aside" / f"{pkey}.20261206T100000.json")
    fake_run(tmp_path, paper, [(0.21, 0.1)], device="AMD EPYC (2 threads)")

    store = ResultsStore(tmp_path)
    assert [r["device"] for r in store.set_aside_records(key)] == ["Intel Xeon (1 threads)"]
    migrated = store.set_aside_dir / f"{key}.json"          # a migration's name (no time stamp) is read too
    migrated.write_bytes((store.set_aside_dir / f"{key}.20261206T100000.json").read_bytes())
    assert len(store.set_aside_records(key)) == 2
    migrated.unlink()
    rows = cmp.reruns_on_another_cpu(cmp.group_runs("table2", "paper", tmp_path), tmp_path)
    assert len(rows) == 1
    row = rows.iloc[0]
    assert (row["early_stop"], row["then"], row["now"]) == ("Y", "Intel Xeon", "AMD EPYC")
    assert (row["stopped_after"], row["selected_epoch"], row["recall@20"]) == ("5 → 4", "2 → 3", "0.1200 → 0.1300")
    assert bool(row["stop_moved"])
    assert row["change_recall@20"] == pytest.approx(0.13 / 0.12 - 1)
    text = _reruns_lines("table2", tmp_path)[0]
    assert "the early-stopped runs (1) moved by at most 11.1%" in text      # ndcg 0.10 / 0.09 - 1
    assert "moved where 1 of the 1 early-stopped runs stop" in text
    assert _reruns_lines("table3", tmp_path) == []
    section = "\n".join(_paper_group_section("Table 2", "table2", tmp_path, ["model", "loss", "early_stop"]))
    assert "2 of the 4 are early-stopped (ES = Y) numbers" in section   # the ES = N run misses on both metrics too
    assert section.endswith(text)
