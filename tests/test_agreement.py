"""The paper's orderings kept by a truncated paper protocol, read off stored histories (issue 36)."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure

from mmlrepro.agreement import (
    agreement,
    agreement_curve,
    orderings,
    quick_share,
    save_figure,
    shortest_agreeing,
    summary,
    truncated,
)
from mmlrepro.catalogue import paper_config
from mmlrepro.config import RunConfig
from mmlrepro.data import KNOWN_FINGERPRINTS
from mmlrepro.plots import plot_truncated_agreement
from mmlrepro.results import ResultsStore, RunResult


def _put(root: Path, config: RunConfig, values: list[float], s_per_epoch: float = 10.0) -> None:
    history = [{"epoch": i, "loss": 0.1, "recall@20": v, "ndcg@20": v / 2, "train_s": s_per_epoch, "eval_s": 0.0}
               for i, v in enumerate(values, 1)]
    best = max(history, key=lambda r: r["recall@20"])
    ResultsStore(root).put(RunResult(config, KNOWN_FINGERPRINTS[config.dataset], history, best, history[-1], {},
                                     {"train_s": s_per_epoch * len(values), "eval_s": 0.0}, "cpu"))


def test_the_orderings_are_the_papers():
    found = orderings()
    by = {a: [o for o in found if o.artefact == a] for a in ("table3", "table2", "figure3")}
    assert {a: len(v) for a, v in by.items()} == {"table3": 83, "table2": 16, "figure3": 24}
    labels = {o.label for o in found}
    assert "yelp2018 recall@20: bsl > mml" in labels            # 0.0703 vs 0.0702
    assert not any("ndcg@20" in o.label and "yelp2018" in o.label and {o.winner.loss, o.loser.loss} == {"bsl", "mml"}
                   for o in by["table3"])                        # the paper's tie (0.0580) is left out
    assert "gowalla ndcg@20: bsl > mml" in labels and "gowalla recall@20: mml > bsl" in labels
    assert "simplex ES=Y gowalla ndcg@20: mml > ccl" in labels
    es = next(o for o in by["table2"] if o.label.startswith("mf ES=Y"))
    assert es.winner.selection == "early_stop" and es.winner.epochs == 100
    assert "gowalla N=800 recall@20: bsl > mml" in labels and "yelp2018 N=50 ndcg@20: mml > bsl" in labels
    assert not any("N=100 " in o.label or "N=200" in o.label for o in by["figure3"])


def test_a_truncated_run_reports_its_best_epoch_so_far():
    history = [{"recall@20": v} for v in (0.1, 0.3, 0.2, 0.4)]
    assert [truncated(history, e, "recall@20", 1e-6)["recall@20"] for e in (1, 2, 3, 4, 9)] == [0.1, 0.3, 0.3, 0.4, 0.4]


def test_agreement_per_epoch_on_a_store(tmp_path):
    mml, ccl = paper_config("yelp2018", "mf", "mml"), paper_config("yelp2018", "mf", "ccl")
    _put(tmp_path, mml, [0.01, 0.02, 0.05, 0.06])     # the paper: MML > CCL (Table 3 and Table 2, ES = N)
    _put(tmp_path, ccl, [0.03, 0.04, 0.04, 0.07])
    _put(tmp_path, ccl.replace(seed=2020), [0.01, 0.02, 0.03, 0.03])   # a second seed: its cell is the mean
    frame = agreement("paper", range(1, 5), tmp_path)
    assert set(frame["ordering"]) == {f"yelp2018 {m}: mml > ccl" for m in ("recall@20", "ndcg@20")} | {
        f"mf ES=N yelp2018 {m}: mml > ccl" for m in ("recall@20", "ndcg@20")}
    recall = frame[frame["ordering"] == "yelp2018 recall@20: mml > ccl"].set_index("epochs")
    assert recall["loser"].tolist() == pytest.approx([0.02, 0.03, 0.035, 0.05])
    assert recall["agrees"].tolist() == [False, False, True, True] and (recall["seeds"] == 1).all()
    curve = agreement_curve(frame)
    assert curve["agree"].tolist() == [0, 0, 4, 4] and (curve["full_agree"] == 4).all()
    assert curve["agree_table2"].tolist() == [0, 0, 2, 2] and (curve["orderings_table3"] == 2).all()
    assert shortest_agreeing(curve, budget=0.03) == 3 and shortest_agreeing(curve, budget=0.02) is None
    numbers = summary(curve, budget=0.02)
    assert numbers["first_keeping_all"] == 3 and numbers["stable_from"] == 3 and numbers["shortest_agreeing"] is None
    assert numbers["best_short_agree_of_full"] == 0 and numbers["orderings"] == 4
    assert agreement("quick", [4], tmp_path).empty and quick_share(tmp_path) == (0, 0)


def test_the_agreement_figure_is_drawn_and_saved(tmp_path):
    _put(tmp_path, paper_config("gowalla", "mf", "mml"), [0.1, 0.2, 0.3])
    _put(tmp_path, paper_config("gowalla", "mf", "bsl"), [0.2, 0.25, 0.26])
    curve = agreement_curve(agreement("paper", range(1, 4), tmp_path))
    assert isinstance(plot_truncated_agreement(curve, quick=0.5, budget=2), Figure)
    paths = save_figure(tmp_path, tmp_path / "figures")
    assert sorted(p.name for p in paths) == ["truncated_agreement_paper.pdf", "truncated_agreement_paper.png"]
    with pytest.raises(ValueError, match="the frame is empty"):
        plot_truncated_agreement(agreement_curve(agreement("paper", [1], tmp_path / "empty")))
