"""Results store: atomic writes, skip-if-stored, concurrent writers, the tidy frame."""

from __future__ import annotations

import json
import multiprocessing as mp

import mmlrepro.results as results_mod
from mmlrepro.results import ResultsStore, atomic_write_json, load_results
from mmlrepro.train import RunConfig

CONFIG = RunConfig(dataset="synthetic:200:300", loss="ccl", loss_params={"margin": 0.5, "neg_weight": 10.0},
                   n_negatives=10, batch_size=128, lr=1e-2, epochs=2, device="cpu")


def test_second_call_returns_stored_result_without_training(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path)
    first = store.run(CONFIG, checkpoint_dir=tmp_path / "ckpt")
    assert not first.from_store
    path = store.path(CONFIG)
    record = json.loads(path.read_text())
    for field in ("config", "history", "best", "last", "timings", "device", "provenance", "key"):
        assert field in record
    for field in ("torch", "mmlrepro", "git_commit", "time_utc"):
        assert record["provenance"][field]

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the store holds the run")

    monkeypatch.setattr(results_mod, "train", no_training)
    second = store.run(CONFIG)
    assert second.from_store
    assert second.history == first.history
    assert second.best == first.best


def test_force_retrains(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path)
    store.run(CONFIG, checkpoint_dir=tmp_path / "ckpt")
    epochs = []
    result = store.run(CONFIG, force=True, checkpoint_dir=tmp_path / "ckpt",
                       on_epoch_end=lambda e, r: epochs.append(e))
    assert epochs == [1, 2] and not result.from_store


def test_load_results_is_tidy(tmp_path):
    store = ResultsStore(tmp_path)
    result = store.run(CONFIG, checkpoint_dir=tmp_path / "ckpt")
    frame = load_results(tmp_path)
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["key"] == CONFIG.key() and row["loss"] == "ccl" and row["n_negatives"] == 10
    assert row["recall@20"] == result.best["recall@20"]
    assert row["hp_neg_weight"] == 10.0
    assert row["best_epoch"] == result.best["epoch"]


def _writer(args):
    path, i = args
    for _ in range(30):
        atomic_write_json({"writer": i, "payload": list(range(2000))}, path)


def test_concurrent_writers_never_corrupt(tmp_path):
    path = tmp_path / "runs" / "same.json"
    with mp.get_context("spawn").Pool(2) as pool:
        pool.map(_writer, [(path, i) for i in range(4)])
    data = json.loads(path.read_text())
    assert data["payload"] == list(range(2000)) and data["writer"] in range(4)
    assert [p.name for p in path.parent.iterdir()] == ["same.json"]  # no temp files left behind


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "runs" / "bad.json"
    try:
        atomic_write_json({"x": object()}, path)
    except TypeError:
        pass
    assert not path.exists() and list(path.parent.iterdir()) == []


def test_early_stop_run_is_read_off_its_stored_paper_twin(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path)
    paper_config = CONFIG.replace(epochs=4, patience=1, min_delta=1.0)  # no epoch improves by 1.0
    paper = store.run(paper_config, checkpoint_dir=tmp_path / "ckpt")

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the paper twin is stored")

    monkeypatch.setattr(results_mod, "train", no_training)
    early = paper_config.replace(selection="early_stop")  # so it stops after epoch 2
    result = store.run(early)
    assert [r["epoch"] for r in result.history] == [1, 2] and result.stopped_early
    assert result.history == paper.history[:2]
    record = json.loads(store.path(early).read_text())
    assert record["provenance"]["derived_from"] == paper.config.key()
    assert load_results(tmp_path).set_index("key").loc[early.key(), "derived_from"] == paper.config.key()
    assert store.derive_early_stop(CONFIG.replace(seed=99, selection="early_stop")) is None  # no twin stored
