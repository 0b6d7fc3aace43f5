"""Experiment catalogue, reported numbers, compare() and the report on a hand-made store."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mmlrepro import catalogue as cat
from mmlrepro import comparison as cmp
from mmlrepro import runner
from mmlrepro.appendix import render_appendix
from mmlrepro.config import SCHEMA_VERSION, RunConfig
from mmlrepro.data import KNOWN_FINGERPRINTS
from mmlrepro.files import atomic_write_json
from mmlrepro.markdown import markdown_table
from mmlrepro.report import render_report


def fake_run(root, config: RunConfig, recall: float, ndcg: float, device: str = "fake-gpu", test=None,
             derived_from: str = "", epoch: int = 3) -> None:
    metrics = {"recall@20": recall, "ndcg@20": ndcg, "recall@50": recall * 2, "ndcg@50": ndcg * 2}
    best = {"epoch": epoch, "loss": 0.5, **metrics}
    key = cat.catalogue_key(config)
    atomic_write_json({"schema": SCHEMA_VERSION, "key": key, "data_fingerprint": KNOWN_FINGERPRINTS[config.dataset],
                       "config": config.to_dict(), "history": [best], "best": best,
                       "last": best, "test": test or {}, "timings": {"train_s": 1.0, "eval_s": 0.5},
                       "device": device, "provenance": {"time_utc": "2026-11-23T00:00:00+00:00",
                                                         **({"derived_from": derived_from} if derived_from else {})}},
                      root / "runs" / f"{key}.json")


def test_paper_settings_follow_spec_section_8():
    g = cat.paper_config("gowalla", "mf", "mml")
    assert (g.batch_size, g.lr, g.epochs, g.n_negatives, g.seed, g.reg_lambda) == (256, 1e-4, 100, 100, 2019, 1e-8)
    assert g.loss_hp == {"margins": [0.7, 0.8, 0.9], "weights": [0.10, 0.15, 0.75], "pos_weight": 1.0,
                         "neg_weight": 700.0}
    y = cat.paper_config("yelp2018", "simplex", "ccl")
    assert (y.batch_size, y.reg_lambda, y.loss_hp["neg_weight"]) == (512, 1e-8, 150.0)
    assert y.model_hp["gate"] == 1.0 and y.model_hp["history_cap"] == 500
    s = cat.paper_config("gowalla", "simplex", "ccl")
    assert s.loss_hp["neg_weight"] == 250.0 and s.monitor == "ndcg@20" and s.reg_lambda == 1e-7
    assert s.model_hp == {"aggregator": "attention", "gate": 0.8, "separate_history_table": True,
                          "history_cap": None, "padding_softmax_bug": True}
    b = cat.paper_config("yelp2018", "mf", "bsl")
    assert (b.batch_size, b.reg_form, b.reg_lambda, b.dropout_placement) == (1024, "batch", 1e-3, "before_norm")
    assert b.loss_hp == {"tau1": 0.11, "tau2": 1.10, "mode": "multi"}


def test_groups_sizes_profiles_and_labels():
    assert len(cat.configs("table2", "paper", 1)) == 16
    assert len(cat.configs("table3", "paper", 3)) == 42
    assert len(cat.configs("figure3", "paper", 1)) == 36
    assert len(cat.configs("li2023", "paper", 1)) == 2 * (8 + 1 + 2 * 2)
    quick = cat.configs("table3", "quick", 1)
    assert all(c.profile == "quick" and c.epochs == cat.QUICK["epochs"] for c in quick)
    assert all("[quick]" in c.label() for c in quick)
    assert {c.seed for c in cat.configs("table3", "paper", 3)} == {2019, 2020, 2021}
    with pytest.raises(ValueError, match="unknown group"):
        cat.configs("table9")
    with pytest.raises(ValueError, match="profile"):
        cat.configs("table2", "slow")
    with pytest.raises(ValueError, match="dataset"):
        cat.configs("table2", "paper", 1, datasets=["movielens"])


def test_plan_dedups_and_orders_by_value():
    runs = cat.plan(["figure3", "table2", "table3"], "paper", 2)
    keys = [cat.catalogue_key(c) for c in runs]
    assert len(keys) == len(set(keys))
    # the first runs are Table 3 and Table 2 "N" of seed 2019, then seed 2020, then the rest
    first = runs[: len(cat.configs("table3", "paper", 1)) + 8 - 4]  # MF CCL/MML "N" rows are shared
    assert all(c.seed == 2019 and c.selection == "paper" for c in first)
    seeds_in_order = [c.seed for c in runs if c.group in ("table3", "table2") and c.selection == "paper"]
    assert seeds_in_order == sorted(seeds_in_order)
    # MF + CCL at N = 100 is one run shared by Table 2, Table 3 and Figure 3
    shared = cat.paper_config("gowalla", "mf", "ccl")
    assert sum(cat.catalogue_key(c) == cat.catalogue_key(shared) for c in runs if c.seed == 2019) == 1


def test_compare_table3_relative_differences_and_claims(tmp_path):
    rep = {r["loss"]: r for r in cmp.reported()["table3"]}
    for seed, scale in ((2019, 1.02), (2020, 1.06)):  # mean scale 1.04: within ±5%
        for loss in cmp.TABLE3_LOSSES:
            config = cat.paper_config("gowalla", "mf", loss, seed=seed)
            r, n = rep[loss]["gowalla"]
            fake_run(tmp_path, config, r * scale, n * scale)
    out = cmp.compare("table3", "paper", tmp_path)
    table = out["table"]
    row = table[(table.loss == "mml") & (table.dataset == "gowalla") & (table.metric == "recall@20")].iloc[0]
    assert row["reported"] == 0.1816
    assert row["mean"] == pytest.approx(0.1816 * 1.04)
    assert row["std"] == pytest.approx(math.sqrt(2) * 0.1816 * 0.02)
    assert row["rel_diff"] == pytest.approx(0.04)
    assert row["within_5pct"] == "yes" and row["seeds"] == 2
    yelp = table[(table.dataset == "yelp2018")]
    assert (yelp["within_5pct"] == "missing").all()
    claims = out["claims"].set_index("claim")["evidence"]
    # two seeds, no per-user values: Welch's test on the seed means only, Holm over the table
    assert claims["Table 3: gowalla recall@20: MML beats MSE"] == "not significant"
    assert out["claims"].set_index("claim")["verdict"][
        "Gowalla: MML beats CCL and BSL on Recall@20 but trails BSL on NDCG@20"] == "holds"
    assert claims["Table 3: yelp2018 recall@20: MML beats MSE"] == "missing"
    row = out["claims"].set_index("claim").loc["Table 3: gowalla recall@20: MML beats MSE"]
    assert math.isnan(row["p_users"]) and 0 < row["p_seeds"] <= row["p_holm"] <= 1
    shown = out["claims"].set_index("claim")["reproduced"]["Table 3: yelp2018 recall@20: MML beats MSE"]
    assert "nan" not in shown and "–" in shown  # a missing number reads as a dash


def test_compare_figure3_gain_claim(tmp_path):
    for loss, recall in (("ccl", 0.100), ("mml", 0.1195), ("bsl", 0.09)):
        fake_run(tmp_path, cat.paper_config("yelp2018", "mf", loss, n_negatives=10), recall, recall)
    claims = cmp.compare("figure3", "paper", tmp_path)["claims"]
    row = claims[claims.claim.str.contains("yelp2018, N = 10: MML beats CCL by \\+19.50% on recall@20")].iloc[0]
    assert row["evidence"] == "untested (no per-user values)" and row["reproduced"] == "+19.50%"
    assert row["vs_paper"] == "ours +19.5% = 1.00 × the paper's +19.5%"
    shown = cmp.claims_display(claims).set_index("claim").loc[row["claim"]]
    assert shown["95% interval (users)"] == "no per-user values" and shown["p users"] == "–"
    assert shown["gain"] == "+19.50%"


def test_report_renders_from_the_store(tmp_path):
    for loss in ("ccl", "mml"):
        fake_run(tmp_path, cat.paper_config("gowalla", "mf", loss), 0.17, 0.14)
    text = render_report(tmp_path, figures_dir=tmp_path / "figures", out_dir=tmp_path)
    assert "MML Table 2" in text and "MML Table 3" in text
    # the paper's wide layout: per dataset and metric the paper's number beside ours
    assert "| MF | MML | N | 0.0702 | – | 0.0580 | – | 0.1816 | 0.1700 (-6.4%) | 0.1435 | 0.1400 (-2.4%) |" in text
    assert "fake-gpu" not in text.split("| MF | MML | N |")[1].split("\n")[0]   # devices: a footnote
    assert "_Devices of these runs: fake-gpu._" in text
    assert "Runs not yet done [paper]" in render_appendix(tmp_path, tmp_path / "figures", tmp_path)


def test_markdown_table():
    import pandas as pd

    text = markdown_table(pd.DataFrame({"a": [1, 2], "b": [0.5, float("nan")]}))
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1 | 0.5000 |", "| 2 | – |"]


@pytest.mark.real_data
def test_run_missing_respects_the_time_budget(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MMLREPRO_CHECKPOINT_DIR", str(tmp_path / "ckpt"))
    lines = []
    done = runner.run_missing(["table3"], "smoke", 1, results_dir=tmp_path, datasets=["gowalla"],
                          device="cpu", data_dir=str(data_dir), max_minutes=0.0, log=lines.append)
    assert len(done) == 1  # the first run always starts; the budget stops the second
    assert "time budget" in lines[-1]
    assert len(runner.missing_runs(["table3"], "smoke", 1, tmp_path, datasets=["gowalla"])) == 6


def test_table2_lists_when_early_stopped_runs_stopped_beside_the_paper(tmp_path):
    for model, loss in (("mf", "mml"), ("simplex", "ccl")):
        fake_run(tmp_path, cat.paper_config("gowalla", model, loss, selection="early_stop", group="table2"), 0.17, 0.13)
    fake_run(tmp_path, cat.paper_config("gowalla", "mf", "ccl", group="table2"), 0.17, 0.13)  # "N": not listed
    stops = cmp.compare("table2", "paper", tmp_path)["stops"].set_index(["model", "loss"])
    assert len(stops) == 2
    assert stops.loc[("mf", "mml"), "paper_stopped_after"] == 19  # the paper gives one number for MF
    assert stops.loc[("simplex", "ccl"), "paper_stopped_after"] == 33
    assert stops.loc[("mf", "mml"), "stopped_after"] == "3" and stops.loc[("mf", "mml"), "best_epoch"] == "3"
    assert "Early-stopped runs" in render_report(tmp_path, tmp_path / "figures", tmp_path)
    quick = tmp_path / "quick"
    fake_run(quick, cat.paper_config("gowalla", "mf", "mml", profile="quick", selection="early_stop", group="table2"), 0.1, 0.1)
    assert cmp.compare("table2", "quick", quick)["stops"].empty  # the paper's stop epochs are for its settings only


def test_missing_section_says_done_only_when_every_planned_run_is_stored(tmp_path, monkeypatch):
    import mmlrepro.appendix as appendix_mod

    monkeypatch.setattr(appendix_mod, "PLANNED_SEEDS", {"honest": 1})
    planned = cat.configs("honest", "quick", 1)
    for config in planned[:-1]:
        fake_run(tmp_path, config, 0.1, 0.1)
    lines = appendix_mod._missing("quick", tmp_path)
    assert lines[0].startswith("### Runs not yet done") and planned[-1].label() in "\n".join(lines)
    fake_run(tmp_path, planned[-1], 0.1, 0.1)
    lines = appendix_mod._missing("quick", tmp_path)
    assert lines[0].startswith("### Runs done") and f"{len(planned)} of {len(planned)} done" in "\n".join(lines)


def test_run_costs_come_from_the_stored_timings_of_trained_runs(tmp_path):
    from mmlrepro.appendix import run_costs
    from mmlrepro.results import load_results

    for seed in (2019, 2020):
        fake_run(tmp_path, cat.paper_config("gowalla", "mf", "ccl", seed=seed, group="table2"), 0.1, 0.1)
    twin = cat.paper_config("gowalla", "mf", "ccl", seed=2019, group="table2")
    fake_run(tmp_path, twin.replace(selection="early_stop"), 0.1, 0.1, derived_from=cat.catalogue_key(twin))
    runs = load_results(tmp_path)
    assert len(runs) == 3  # two trained, one read off its twin
    costs = run_costs(runs, "paper")
    assert len(costs) == 1
    row = costs.iloc[0]
    # fake_run: one epoch of history (best = last = epoch 3), 1.0 s training + 0.5 s evaluation
    assert row["runs"] == 2 and row["epochs"] == 3
    assert row["train s/epoch"] == pytest.approx(1.0 / 3) and row["eval s/epoch"] == pytest.approx(0.5 / 3)
    assert row["min/run"] == pytest.approx(1.5 / 60)
    assert run_costs(runs, "quick").empty
    assert "min/run" in render_appendix(tmp_path, tmp_path / "figures", tmp_path)


def test_the_spec_check_is_independent_of_the_catalogue(monkeypatch):
    """Defect 6: a wrong constant in the catalogue is flagged (neg_weight 4 instead of 400)."""
    from mmlrepro.speccheck import deviations

    for config in cat.configs("li2023", "paper", 1) + cat.configs("figure3", "paper", 1) + cat.configs("table2", "paper", 1):
        assert deviations(config.to_dict()) == [], config.label()
    good = cat.paper_config("yelp2018", "mf", "mml").to_dict()
    assert deviations(good) == []
    monkeypatch.setitem(cat.MML_PARAMS, "yelp2018", {**cat.MML_PARAMS["yelp2018"], "neg_weight": 4.0})
    wrong = cat.paper_config("yelp2018", "mf", "mml").to_dict()
    assert any("neg_weight" in d and "400.0" in d for d in deviations(wrong))
    assert deviations(cat.paper_config("gowalla", "simplex", "ccl").to_dict()) == []
    assert deviations(cat.paper_config("gowalla", "mf", "bsl").to_dict()) == []
    assert deviations(cat.paper_config("gowalla", "mf", "ccl", params={"neg_weight": 700.0}).to_dict()) == []
    assert "batch_size" in " ".join(deviations(cat.paper_config("gowalla", "mf", "mml", batch_size=512).to_dict()))


def test_paper_config_params_override_single_values():
    c = cat.paper_config("yelp2018", "mf", "mml", params={"neg_weight": 500})
    assert c.loss_hp["margins"] == [0.6, 0.7, 0.8, 0.9] and c.loss_hp["neg_weight"] == 500.0


@pytest.mark.real_data
@pytest.mark.parametrize("jobs", [None, 2])
def test_refresh_per_user_retrains_runs_stored_without_them_and_sets_the_old_aside(data_dir, tmp_path, monkeypatch,
                                                                                   jobs):
    monkeypatch.setenv("MMLREPRO_CHECKPOINT_DIR", str(tmp_path / "ckpt"))
    plan = dict(results_dir=tmp_path, datasets=["gowalla"], device="cpu", data_dir=str(data_dir), log=None,
                jobs=jobs)
    first = runner.run_missing(["table2"], "smoke", 1, **plan)
    store = runner.ResultsStore(tmp_path)
    keys = sorted(r["key"] for r in store.records())
    assert first and all(store.per_user(k) is not None for k in keys)  # N runs trained, Y read off them
    derived = [r for r in store.records() if r["provenance"].get("derived_from")]
    assert derived and all(store.per_user(r["key"]) is not None for r in derived)  # same epoch: twin's values
    for key in keys:                                   # as a store written before issue 16
        (tmp_path / "per_user" / f"{key}.npz").unlink()
    assert runner.run_missing(["table2"], "smoke", 1, **plan) == []        # without the flag: nothing
    again = runner.run_missing(["table2"], "smoke", 1, refresh_per_user=True, **plan)
    trained = [r for r in store.records() if not r["provenance"].get("derived_from")]
    assert len(again) == (len(keys) if jobs is None else len(trained))   # in workers: the trained ones
    assert sorted(r["key"] for r in store.records()) == keys
    assert all(store.per_user(k) is not None for k in keys)
    assert len(list((tmp_path / "set_aside").glob("*.json"))) == len(keys)   # nothing lost
    assert runner.run_missing(["table2"], "smoke", 1, refresh_per_user=True, **plan) == []
    if jobs is not None:
        return
    # a second refresh on the same store, whose plan saw the runs stale before the first one
    # refreshed them, skips them instead of training them again
    monkeypatch.setattr(runner, "train", lambda *a, **k: pytest.fail("a refreshed run was trained again"))
    configs = cat.plan(["table2"], "smoke", 1, ["gowalla"])
    source = runner.load_run_dataset(configs[0], str(data_dir))
    lines, done = [], []
    runner._train_in_turn(configs, store, {"gowalla": source}, "cpu", None, 60.0, lines.append, done,
                          {c.key(source.fingerprint) for c in configs})
    assert done == [] and len(lines) == len(configs) and all("stored meanwhile" in line for line in lines)


def fake_per_user(root, config: RunConfig, recall, ndcg) -> None:
    """Per-user values of a fake run, as the store keeps them (users 0..n-1)."""
    import numpy as np

    from mmlrepro.per_user import PerUser, save_per_user

    (root / "per_user").mkdir(parents=True, exist_ok=True)
    values = {"recall@20": np.asarray(recall, np.float32), "ndcg@20": np.asarray(ndcg, np.float32)}
    key = cat.catalogue_key(config)
    save_per_user(PerUser(np.arange(len(recall)), values), root / "per_user" / f"{key}.npz", key=key)


def _table2_pair(root, ccl, mml, seeds=(2019,)):
    """MF ES=N Gowalla MML and CCL runs with the given per-user recall (= ndcg) arrays (seed
    2020 and later: shifted by 0.001 per seed for CCL, so the seed means differ a little)."""
    for i, seed in enumerate(seeds):
        for loss, values in (("ccl", ccl + 0.001 * i), ("mml", mml)):
            config = cat.paper_config("gowalla", "mf", loss, seed=seed, group="table2")
            fake_run(root, config, float(values.mean()), float(values.mean()))
            fake_per_user(root, config, values, values)
    claims = cmp.compare("table2", "paper", root)["claims"]
    return claims.set_index("claim").loc["Table 2: mf ES=N gowalla recall@20: MML beats CCL (paper: +1.9%)"]


def test_a_planted_gain_is_significant_and_identical_runs_are_not(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    base = rng.uniform(0, 0.6, 3000).astype(np.float32)
    planted = np.clip(base + rng.normal(0.03, 0.05, 3000), 0, 1).astype(np.float32)
    row = _table2_pair(tmp_path / "planted", base, planted)
    assert row["evidence"] == "significant over users, 1 seed" and row["p_users"] < 1e-6
    assert row["ci_low_pct"] > 0 and row["ci_low_pct"] < row["gain_pct"] < row["ci_high_pct"]
    assert math.isnan(row["p_seeds"])                                  # one seed a side
    same = _table2_pair(tmp_path / "same", base, base.copy())
    assert same["gain_pct"] == 0 and same["p_users"] == 1.0 and same["evidence"] == "not significant"
    worse = _table2_pair(tmp_path / "worse", planted, base)
    assert worse["verdict"] == "does not hold" and worse["gain_pct"] < 0
    assert worse["evidence"] == "does not hold, significant over users, 1 seed"      # the reversal's own test


def test_claims_use_the_larger_p_of_users_and_seeds_and_holm_over_the_table(tmp_path):
    import numpy as np

    rng = np.random.default_rng(1)
    base = rng.uniform(0, 0.6, 3000).astype(np.float32)
    planted = np.clip(base + rng.normal(0.05, 0.02, 3000), 0, 1).astype(np.float32)
    row = _table2_pair(tmp_path, base, planted, seeds=(2019, 2020))
    assert row["p_users"] < 1e-6 and row["p_seeds"] <= row["p"] == max(row["p_users"], row["p_seeds"])
    claims = cmp.compare("table2", "paper", tmp_path)["claims"]
    tested = claims.dropna(subset=["p"])
    assert len(tested) == 2 and (tested["p_holm"] >= tested["p"]).all()   # ndcg@20 and recall@20
    assert (claims.dropna(subset=["p"], how="all")["verdict"] != "missing").all()


def test_a_claim_of_several_parts_is_decided_by_its_weakest_part(tmp_path):
    import numpy as np

    rng = np.random.default_rng(2)
    base = rng.uniform(0.05, 0.6, 3000).astype(np.float32)
    stored = {}
    for loss, shift in (("mml", 0.05), ("bsl", 0.0), ("ccl", 0.045), ("bpr", 0.0), ("hinge", 0.0),
                        ("softmax_ce", 0.0), ("mse", 0.0)):
        config = cat.paper_config("gowalla", "mf", loss)
        values = np.clip(base + shift + (rng.normal(0, 0.02, 3000) if loss == "ccl" else 0), 0, 1).astype(np.float32)
        fake_run(tmp_path, config, float(values.mean()), float(values.mean()))
        fake_per_user(tmp_path, config, values, values)
        stored[loss] = values
    out = cmp.compare("table3", "paper", tmp_path)
    row = out["claims"].set_index("claim").loc["Table 3: gowalla recall@20: MML beats BPR, hinge, softmax CE, MSE and CCL"]
    table = out["table"].set_index(["loss", "dataset", "metric"])["mean"]
    # CCL is the close one: its comparison decides the gain shown and the (largest) p-value
    ccl_gain = table[("mml", "gowalla", "recall@20")] / table[("ccl", "gowalla", "recall@20")] - 1
    assert row["gain_pct"] == pytest.approx(100 * ccl_gain) and 0 < row["gain_pct"] < 3
    assert row["decides"] == "MML > CCL"        # the gain is named by the part it belongs to
    shown = cmp.claims_display(out["claims"]).set_index("claim").loc[row.name]
    assert shown["gain"] == f"{100 * ccl_gain:+.2f}% for MML > CCL"
    one_part = cmp.claims_display(out["claims"]).set_index("claim").loc["Table 3: gowalla recall@20: MML beats MSE"]
    assert "(" not in one_part["gain"]           # one part: its name is the claim itself
    from mmlrepro.per_user import PerUser, load_per_user, save_per_user
    from mmlrepro.stats import paired

    def as_stored(values):      # the store's fixed-point rounding
        save_per_user(PerUser(np.arange(len(values)), {"r": values}), tmp_path / "x.npz")
        return load_per_user(tmp_path / "x.npz").values["r"]

    assert row["p"] == row["p_users"] == pytest.approx(paired(as_stored(stored["mml"]), as_stored(stored["ccl"])).p_t)


def test_without_per_user_values_the_smallest_gain_decides_a_claim_of_several_parts(tmp_path):
    recall = {"mml": 0.18, "bpr": 0.07, "hinge": 0.08, "softmax_ce": 0.075, "mse": 0.139, "ccl": 0.179}
    for loss, value in recall.items():     # records only: no part can be tested
        fake_run(tmp_path, cat.paper_config("gowalla", "mf", loss), value, value)
    row = cmp.compare("table3", "paper", tmp_path)["claims"].set_index("claim").loc[
        "Table 3: gowalla recall@20: MML beats BPR, hinge, softmax CE, MSE and CCL"]
    assert row["gain_pct"] == pytest.approx(100 * (0.18 / 0.179 - 1))      # CCL, the best of them
    assert row["decides"] == "MML > CCL"
    assert row["evidence"] == "untested (no per-user values)" and "best of them 0.1790" in row["reproduced"]


def test_lr_reduce_runs_stand_beside_the_plain_early_stopped_ones_and_the_paper(tmp_path):
    rep = cmp.reported_frame("table2").set_index(["model", "loss", "early_stop", "dataset", "metric"])["reported"]
    paper = {m: rep[("mf", "ccl", "Y", "yelp2018", m)] for m in cmp.METRICS}
    fake_run(tmp_path, cat.paper_config("yelp2018", "mf", "ccl", selection="early_stop", group="table2"),
             paper["recall@20"] * 1.04, paper["ndcg@20"] * 1.04, epoch=35)
    fake_run(tmp_path, cat.paper_config("yelp2018", "mf", "ccl", selection="early_stop", lr_reduce=True,
                                        group="lr_reduce"), paper["recall@20"] * 0.99, paper["ndcg@20"] * 1.07, epoch=17)
    out = cmp.compare("lr_reduce", "paper", tmp_path)
    table = out["table"].set_index(["schedule", "metric"])
    assert table.loc[("constant lr", "recall@20"), "stopped_after"] == 35
    assert table.loc[("lr ×0.1 on each non-improving epoch", "ndcg@20"), "rel_diff"] == pytest.approx(0.07)
    claims = out["claims"].set_index("claim")["verdict"]
    assert len(claims) == 2   # only yelp2018 CCL has an lr_reduce run
    assert claims.filter(like="stops nearer").iloc[0] == "holds"          # 17 is nearer 19 than 35
    assert claims.filter(like="within ±5%").iloc[0] == "does not hold"     # NDCG +7%
    assert "early stopping with SimpleX's lr schedule" in render_report(tmp_path, tmp_path / "figures", tmp_path)


def test_lr_reduce_quick_runs_make_no_claim_and_the_report_says_why(tmp_path):
    fake_run(tmp_path, cat.paper_config("yelp2018", "mf", "ccl", profile="quick", selection="early_stop",
                                        lr_reduce=True, group="lr_reduce"), 0.03, 0.02, epoch=4)
    out = cmp.compare("lr_reduce", "quick", tmp_path)
    assert len(out["table"]) == 2 and out["claims"].empty
    report = render_appendix(tmp_path, tmp_path / "figures", tmp_path)
    assert "last 4 epochs, too few for the stopping rule (patience 3)" in report


def test_a_claim_that_fails_shows_its_worst_part(tmp_path):
    for loss in cmp.TABLE3_LOSSES:   # MML below BPR by 1% and below softmax CE by 10%
        scale = {"bpr": 1.01, "softmax_ce": 1.10}.get(loss, 0.5 if loss != "mml" else 1.0)
        fake_run(tmp_path, cat.paper_config("gowalla", "mf", loss), 0.1 * scale, 0.08 * scale)
    row = cmp.compare("table3", "paper", tmp_path)["claims"].set_index("claim").loc[
        "Table 3: gowalla recall@20: MML beats BPR, hinge, softmax CE, MSE and CCL"]
    assert row["verdict"] == "does not hold" and row["gain_pct"] == pytest.approx(100 * (1 / 1.10 - 1))


def _yelp_mf_es_n_runs(root, history):
    """Store Yelp2018 MF + CCL and MF + MML ES = N runs whose histories are ``history(1.0)`` and
    ``history(1.1)``: MML 10 % above CCL every epoch."""
    import json

    for loss, scale in (("ccl", 1.0), ("mml", 1.1)):
        config = cat.paper_config("yelp2018", "mf", loss)
        fake_run(root, config, 0.06, 0.05)
        path = root / "runs" / f"{cat.catalogue_key(config)}.json"
        record = json.loads(path.read_text())
        record["history"] = history(scale)
        atomic_write_json(record, path)


def test_stopping_rules_are_read_off_the_es_n_histories_and_scored_against_the_paper(tmp_path):
    # recall rises by 2e-4 an epoch up to epoch 16, then by 1e-5: SPEC §6's min_delta (1e-6) never
    # stops it in 40 epochs, min_delta 1e-4 stops it after 16 + 3 = 19 epochs, the paper's MF stop
    def history(scale):
        recall = [0.05 + 2e-4 * min(e, 16) + 1e-5 * max(e - 16, 0) for e in range(1, 41)]
        return [{"epoch": e, "loss": 0.5, "recall@20": r * scale, "ndcg@20": 0.8 * r * scale,
                 "recall@50": 2 * r, "ndcg@50": r} for e, r in enumerate(recall, 1)]

    _yelp_mf_es_n_runs(tmp_path, history)
    rules = cmp.stopping_rules("paper", tmp_path)
    assert len(rules) == len(cmp.STOPPING_RULES) and {"mf ccl yelp2018", "mf mml yelp2018"} <= set(rules.columns)
    spec = rules[rules["spec"]].iloc[0]
    assert spec["mf ccl yelp2018"] == 40 and spec["mean_abs_epoch_gap"] == 21
    by_rule = rules.set_index(["monitor", "patience", "min_delta"])
    assert by_rule.loc[(cmp.OWN_MONITOR, 3, 1e-4), "mf mml yelp2018"] == 19
    assert by_rule.loc[(cmp.OWN_MONITOR, 3, 1e-3), "mf ccl yelp2018"] == 4     # 3 epochs gain 6e-4 < 1e-3
    best = rules.iloc[0]
    assert best["mean_abs_epoch_gap"] == 0 and best["cells_within_2"] == 2
    rep = cmp.reported_frame("table2").set_index(["model", "loss", "early_stop", "dataset", "metric"])["reported"]
    chosen = history(1.1)[15]          # epoch 16, the last that beats the best before it by more than 1e-4
    assert by_rule.loc[(cmp.OWN_MONITOR, 3, 1e-4), "max_abs_rel_diff"] == pytest.approx(max(
        abs(h[m] / rep[("mf", loss, "Y", "yelp2018", m)] - 1)
        for loss, h in (("ccl", history(1.0)[15]), ("mml", chosen)) for m in cmp.METRICS))
    report = render_appendix(tmp_path, tmp_path / "figures", tmp_path)
    assert "Which early-stopping rule gives the paper's stop epochs?" in report
    assert "SPEC §6's rule (monitor run's own, patience 3, min_delta 1e-06) stops 21.0 epochs" in report
    assert cmp.stopping_rules("paper", tmp_path / "empty").empty


def test_es_y_cells_are_read_at_the_paper_stop_epoch_off_the_es_n_histories(tmp_path):
    from mmlrepro.stopping import at_paper_stop

    # recall rises by 2e-4 an epoch to epoch 25, then falls: SPEC §6's rule selects epoch 25; cut
    # after the paper's MF stop (19 epochs) the selected epoch is 19
    def history(scale):
        recall = [0.05 + 2e-4 * min(e, 25) - 1e-4 * max(e - 25, 0) for e in range(1, 41)]
        return [{"epoch": e, "loss": 0.5, "recall@20": r * scale, "ndcg@20": 0.8 * r * scale,
                 "recall@50": 2 * r, "ndcg@50": r} for e, r in enumerate(recall, 1)]

    assert at_paper_stop("paper", tmp_path).empty
    _yelp_mf_es_n_runs(tmp_path, history)
    at = at_paper_stop("paper", tmp_path).set_index("loss")
    assert list(at.index) == ["ccl", "mml"] and (at["paper_stopped_after"] == 19).all()
    assert (at["selected_epoch"] == "19").all() and (at["seeds"] == 1).all()
    rep = cmp.reported_frame("table2").set_index(["model", "loss", "early_stop", "dataset", "metric"])["reported"]
    for loss, scale in (("ccl", 1.0), ("mml", 1.1)):
        for metric in cmp.METRICS:
            value = history(scale)[18][metric]
            assert at.at[loss, metric] == pytest.approx(value)
            assert at.at[loss, f"paper_{metric}"] == rep[("mf", loss, "Y", "yelp2018", metric)]
            assert at.at[loss, f"diff_{metric}"] == pytest.approx(value / rep[("mf", loss, "Y", "yelp2018", metric)] - 1)
    # an early-stopped MF + CCL run 16 % above the paper: a missed number, read at the paper's stop too
    fake_run(tmp_path, cat.paper_config("yelp2018", "mf", "ccl", selection="early_stop"), 0.0697, 0.0568)
    report = render_report(tmp_path, tmp_path / "figures", tmp_path)
    assert "Read at the paper's stop epochs instead (each ES = N run" in report
    diffs = ", ".join(f"{100 * at.at['ccl', f'diff_{m}']:+.1f}%" for m in cmp.METRICS)
    assert f"Read at the paper's stop epochs instead, 0 of these 2 lie within ±5 % ({diffs})" in report
    assert ("Table 2: 6 numbers differ by more than ±5 % (largest +16.0%: MF + CCL, ES = Y, yelp2018 recall@20; 2 early-stopped, "
            "whose stop epoch moves with training noise; read at the paper's stop epochs, 0 of 2 lie within ±5 %)") in report
    assert "There MML's gain over CCL (Recall@20 / NDCG@20, mean over seeds) is MF yelp2018 +10.0% / +10.0%" in report


def test_the_report_opens_with_the_paper_tables_at_a_glance(tmp_path):
    rep = cmp.reported_frame("table3").set_index(["loss", "dataset", "metric"])["reported"]
    for metric_scale, loss in ((1.0, "mml"), (1.08, "ccl")):
        fake_run(tmp_path, cat.paper_config("gowalla", "mf", loss), rep[(loss, "gowalla", "recall@20")] * metric_scale,
                 rep[(loss, "gowalla", "ndcg@20")])
    report = render_report(tmp_path, tmp_path / "figures", tmp_path)
    glance = report.split("## At a glance (paper profile)\n", 1)[1].split("\n## ", 1)[0]
    assert "| numbers (paper value ±5 %) | 28 | agrees at 1 seed: 3 · differs at 1 seed: 1 · missing: 24 |" in glance
    assert "Table 3: 1 number differs by more than ±5 % (largest +8.0%: CCL, gowalla recall@20)" in glance
    assert "| numbers (paper value ±5 %) | 32 | agrees at 1 seed: 3 · differs at 1 seed: 1 · missing: 28 |" in glance
    fake_run(tmp_path / "quick", cat.paper_config("gowalla", "mf", "mml", profile="quick"), 0.1, 0.08)
    assert "At a glance" not in render_report(tmp_path / "quick", tmp_path / "figures", tmp_path)


def test_figure3_low_n_claims_that_fail_where_the_papers_table_disagrees_say_so():
    from mmlrepro.report import _low_n_note

    claims = pd.DataFrame({"claim": ["Figure 3, gowalla, ndcg@20: MML ≥ CCL and BSL for N ≤ 100",
                                     "Figure 3, gowalla, recall@20: MML ≥ CCL and BSL for N ≤ 100",
                                     "Figure 3, yelp2018, recall@20: MML ≥ CCL and BSL for N ≤ 100"],
                           "evidence": ["does not hold, untested (no per-user values)",
                                        "does not hold, significant over users, 1 seed", "significant over users, 1 seed"]})
    note = " ".join(_low_n_note(claims))
    assert "gowalla ndcg@20 MML 0.1435 vs BSL 0.1521" in note     # the paper's Table 3 numbers
    assert "recall@20" not in note   # Gowalla Recall@20: the paper's MML 0.1816 > BSL 0.1804; Yelp holds
    assert _low_n_note(claims.iloc[[2]]) == []
