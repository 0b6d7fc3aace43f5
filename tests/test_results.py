"""Results store and runner: keyed by config and data, validated on read, never overwritten silently."""

from __future__ import annotations

import json
import multiprocessing as mp

import numpy as np
import pytest

import mmlrepro.runner as runner_mod
from mmlrepro.config import SCHEMA_VERSION, RunConfig
from mmlrepro.data import synthetic
from mmlrepro.files import atomic_write_json
from mmlrepro.results import ResultsStore, StoreError, load_results
from mmlrepro.runner import derive_early_stop, run

CONFIG = RunConfig(dataset="synthetic:200:300", loss="ccl", loss_params={"margin": 0.5, "neg_weight": 10.0},
                   n_negatives=10, batch_size=128, lr=1e-2, epochs=2, device="cpu")
DATA = synthetic(200, 300)
FP = DATA.fingerprint
KEY = CONFIG.key(FP)


def no_training(*args, **kwargs):
    raise AssertionError("trained although the store holds the run")


def test_second_call_returns_stored_result_without_training(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path)
    first = run(CONFIG, store=store, checkpoint_dir=tmp_path / "ckpt")
    assert not first.from_store and first.key == KEY
    record = json.loads(store.path(KEY).read_text())
    for field in ("schema", "key", "data_fingerprint", "config", "history", "best", "last", "timings", "device",
                  "provenance"):
        assert field in record
    assert record["data_fingerprint"] == FP and record["schema"] == SCHEMA_VERSION and record["per_user"] is True
    for field in ("torch", "mmlrepro", "git_commit", "time_utc"):
        assert record["provenance"][field]
    per_user = store.per_user(KEY)
    assert per_user is not None and abs(per_user.values["recall@20"].mean() - first.best["recall@20"]) < 1e-4

    monkeypatch.setattr(runner_mod, "train", no_training)
    second = run(CONFIG, store=store)
    assert second.from_store and second.history == first.history and second.best == first.best
    assert np.array_equal(second.per_user.users, first.per_user.users)   # the stored per-user values come back
    assert np.abs(second.per_user.values["ndcg@20"] - first.per_user.values["ndcg@20"]).max() < 1e-5


def test_a_run_on_other_data_with_the_same_name_is_not_served(tmp_path, monkeypatch):
    """Defect 3: the store is keyed by the data's fingerprint, not the dataset's name."""
    store = ResultsStore(tmp_path)
    run(CONFIG, store=store, dataset=DATA, checkpoint_dir=tmp_path / "ckpt")
    other = synthetic(200, 300, seed=1)
    trained = []
    real_train = runner_mod.train
    monkeypatch.setattr(runner_mod, "train", lambda c, **kw: trained.append(c) or real_train(c, **kw))
    result = run(CONFIG, store=store, dataset=other, checkpoint_dir=tmp_path / "ckpt")
    assert trained and not result.from_store and result.data_fingerprint == other.fingerprint
    assert len(list(store.runs_dir.glob("*.json"))) == 2


def test_a_checkpoint_is_never_resumed_on_other_data(tmp_path):
    """Defect 3: a checkpoint is named by the key, data fingerprint included."""
    from mmlrepro.train import train

    config = CONFIG.replace(epochs=3)
    other = synthetic(200, 300, seed=1)
    clean = train(config, dataset=other, checkpoint_dir=tmp_path / "clean")

    def kill(epoch, record):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(RuntimeError, match="interrupted"):
        train(config, dataset=DATA, checkpoint_dir=tmp_path / "ck", checkpoint_every_s=0, on_epoch_end=kill)
    assert (tmp_path / "ck" / f"{config.key(FP)}.pt").exists()
    seen = []
    on_other = train(config, dataset=other, checkpoint_dir=tmp_path / "ck", on_epoch_end=lambda e, r: seen.append(e))
    assert seen == [1, 2, 3]  # started over: the checkpoint of DATA was not taken
    strip = lambda h: [{k: v for k, v in r.items() if not k.endswith("_s")} for r in h]  # noqa: E731
    assert strip(on_other.history) == strip(clean.history)


def test_force_retrains_and_sets_the_old_record_aside(tmp_path):
    store = ResultsStore(tmp_path, log=None)
    run(CONFIG, store=store, checkpoint_dir=tmp_path / "ckpt")
    epochs = []
    result = run(CONFIG, store=store, force=True, checkpoint_dir=tmp_path / "ckpt",
                 on_epoch_end=lambda e, r: epochs.append(e))
    assert epochs == [1, 2] and not result.from_store
    assert len(list((tmp_path / "set_aside").glob(f"{KEY}.*.json"))) == 1  # the old one is kept
    with pytest.raises(StoreError, match="already holds"):
        store.put(result)  # never replaced without being asked


@pytest.mark.parametrize("stored, expected", [("pytorch", False), ("compiled kernel", True), (None, False)])
def test_force_retrains_with_the_stored_runs_scores_path(tmp_path, monkeypatch, stored, expected):
    """The compiled and PyTorch scores agree to float rounding only: a run trained again to
    replace a stored one takes the stored one's path (none recorded: stored before the kernel,
    the PyTorch path), so its history can be compared with the stored one bit for bit."""
    from mmlrepro.train import train

    store = ResultsStore(tmp_path, log=None)
    first = run(CONFIG, store=store, checkpoint_dir=tmp_path / "ckpt")
    record = json.loads(store.path(KEY).read_text())
    record["provenance"].pop("negatives_scores", None)
    if stored is not None:
        record["provenance"]["negatives_scores"] = stored
    atomic_write_json(record, store.path(KEY))
    seen, lines = [], []

    def spy(config, **kwargs):
        seen.append(kwargs.get("compiled_scores"))
        return train(config, **kwargs)

    monkeypatch.setattr(runner_mod, "train", spy)
    again = run(CONFIG, store=store, force=True, checkpoint_dir=tmp_path / "ckpt", log=lines.append)
    assert seen == [expected]
    assert any(("compiled kernel" if expected else "pytorch") in line and "bit for bit" in line for line in lines)
    assert again.history[0]["loss"] == first.history[0]["loss"]     # this tiny run takes the PyTorch path either way
    # a path asked for is kept
    run(CONFIG, store=store, force=True, checkpoint_dir=tmp_path / "ckpt", log=None, compiled_scores=not expected)
    assert seen[-1] is (not expected)


@pytest.mark.parametrize("content, why", [
    ("not json {", "does not parse"),
    (f'{{"schema": {SCHEMA_VERSION}}}', "lacks"),
    ("[1, 2]", "not a JSON object"),
])
def test_a_bad_store_file_is_reported_treated_as_missing_and_set_aside(tmp_path, content, why):
    lines = []
    store = ResultsStore(tmp_path, log=lines.append)
    store.runs_dir.mkdir(parents=True)
    store.path(KEY).write_text(content)
    assert store.get(CONFIG, FP) is None
    assert any(why in line and str(store.path(KEY)) in line for line in lines)
    assert store.records() == [] and len(store.problems()) == 1
    result = run(CONFIG, store=store, checkpoint_dir=tmp_path / "ckpt")
    assert not result.from_store and store.get(CONFIG, FP) is not None
    assert any("moved to" in line for line in lines) and any((tmp_path / "set_aside").iterdir())


def test_a_record_whose_content_belongs_to_another_config_is_not_served(tmp_path):
    store = ResultsStore(tmp_path, log=None)
    other = run(CONFIG.replace(seed=5), store=store, checkpoint_dir=tmp_path / "ckpt")
    record = {**json.loads(store.path(other.key).read_text()), "key": KEY}  # another run under KEY's name
    atomic_write_json(record, store.path(KEY))
    assert store.get(CONFIG, FP) is None
    assert "another key" in dict((p.stem, w) for p, w in store.problems())[KEY]


def test_an_old_schema_store_must_be_migrated_before_training(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path, log=None)
    atomic_write_json({}, store.runs_dir / f"{KEY}.json")  # a record without a schema is of schema 1
    assert store.get(CONFIG, FP) is None and "schema 1" in store.problems()[0][1]
    monkeypatch.setattr(runner_mod, "train", no_training)
    with pytest.raises(StoreError, match="mmlrepro migrate"):
        run(CONFIG, store=store)


def test_load_results_is_tidy(tmp_path):
    result = run(CONFIG, results_dir=tmp_path, checkpoint_dir=tmp_path / "ckpt")
    frame = load_results(tmp_path)
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["key"] == KEY and row["loss"] == "ccl" and row["n_negatives"] == 10 and row["data_fingerprint"] == FP
    assert row["recall@20"] == result.best["recall@20"] and row["per_user"]
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
    with pytest.raises(TypeError):
        atomic_write_json({"x": object()}, path)
    assert not path.exists() and list(path.parent.iterdir()) == []


def test_early_stop_run_is_read_off_its_stored_paper_twin(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path)
    paper_config = CONFIG.replace(epochs=4, patience=1, min_delta=1.0)  # no epoch improves by 1.0
    paper = run(paper_config, store=store, checkpoint_dir=tmp_path / "ckpt")
    monkeypatch.setattr(runner_mod, "train", no_training)
    early = paper_config.replace(selection="early_stop")  # so it stops after epoch 2
    result = run(early, store=store)
    assert [r["epoch"] for r in result.history] == [1, 2] and result.stopped_early
    assert result.history == paper.history[:2]
    record = json.loads(store.path(early.key(FP)).read_text())
    assert record["provenance"]["derived_from"] == paper.key
    assert load_results(tmp_path).set_index("key").loc[early.key(FP), "derived_from"] == paper.key
    assert derive_early_stop(store, CONFIG.replace(seed=99, selection="early_stop"), FP) is None  # no twin stored


def test_unwritable_outputs_fail_before_any_data_is_loaded(tmp_path, monkeypatch):
    """Issue 15: a results dir or checkpoint dir that is a file fails before compute, writing nothing."""
    monkeypatch.setattr(runner_mod, "load_run_dataset", no_training)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="results store"):
        run(CONFIG, results_dir=blocker)
    with pytest.raises(ValueError, match="checkpoint folder"):
        run(CONFIG, results_dir=tmp_path / "store", checkpoint_dir=blocker / "ck")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_commit_comes_from_mmlrepro_commit_where_there_is_no_git(tmp_path, monkeypatch):
    from mmlrepro.results import git_commit

    monkeypatch.setenv("MMLREPRO_COMMIT", "abc123")
    assert git_commit(tmp_path) == "abc123"  # tmp_path has no .git
    monkeypatch.delenv("MMLREPRO_COMMIT")
    assert git_commit(tmp_path) == "unknown"


def test_only_a_change_to_the_code_marks_a_run_commit_dirty(tmp_path):
    import subprocess

    from mmlrepro.results import CODE_PATHS, git_commit

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                       check=True, capture_output=True)

    (tmp_path / "mmlrepro").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "mmlrepro" / "loss.py").write_text("a")
    (tmp_path / "results" / "verified.jsonl").write_text("a")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "c")
    clean = git_commit(tmp_path, paths=CODE_PATHS)
    assert len(clean) == 40
    (tmp_path / "results" / "verified.jsonl").write_text("b")  # the store changes: the code does not
    assert git_commit(tmp_path, paths=CODE_PATHS) == clean
    assert git_commit(tmp_path) == clean + "-dirty"  # the whole tree (the report's stamp) does
    (tmp_path / "mmlrepro" / "loss.py").write_text("b")
    assert git_commit(tmp_path, paths=CODE_PATHS) == clean + "-dirty"


def test_a_finished_run_that_cannot_be_stored_is_kept_in_a_rescue_file(tmp_path, monkeypatch):
    from mmlrepro.results import RunResult

    def full_disk(self, result, replace=False):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ResultsStore, "put", full_disk)
    with pytest.raises(StoreError, match="kept in") as err:
        run(CONFIG, results_dir=tmp_path, checkpoint_dir=tmp_path / "ckpt")
    rescue = str(err.value).rsplit("kept in ", 1)[1]
    assert "No space left" in str(err.value)
    assert RunResult.from_dict(json.loads(open(rescue).read())).key == KEY


def test_a_replaced_run_takes_its_per_user_values_with_it(tmp_path):
    store = ResultsStore(tmp_path, log=None)
    first = run(CONFIG, store=store, checkpoint_dir=tmp_path / "ckpt")
    assert store.per_user_path(KEY).exists() and store.contains(CONFIG, FP)
    first.per_user = None                           # a replacement that kept none
    store.put(first, replace=True)
    assert not store.per_user_path(KEY).exists() and store.get(CONFIG, FP).per_user is None
    assert len(list((tmp_path / "set_aside").glob(f"{KEY}.*.npz"))) == 1   # set aside, not lost
