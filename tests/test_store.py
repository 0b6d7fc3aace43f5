"""The store never loses or mixes a run (issue 32): merged stores, concurrent writers, the
per-user files' checks, the read-off early-stopped runs of another patience, the data a key
fingerprints, ``mmlrepro merge``, and the last bad inputs."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import mmlrepro.runner as runner_mod
import mmlrepro.train as train_mod
from mmlrepro import catalogue as cat
from mmlrepro.cli import main
from mmlrepro.comparison import compare, linear_results
from mmlrepro.config import KEY_SCHEMA, SCHEMA_VERSION, RunConfig, identity_key
from mmlrepro.data import KNOWN_FINGERPRINTS, draw_id, synthetic
from mmlrepro.files import atomic_write_json
from mmlrepro.migrate import merge_stores, migrate_store
from mmlrepro.migrations import v2_key, v3_key
from mmlrepro.per_user import PerUser, load_per_user, save_per_user
from mmlrepro.results import RecordExists, ResultsStore, RunResult
from mmlrepro.selection import early_stop_from_history, select_best
from mmlrepro.stats import compare_configs

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
PAPER = cat.paper_config("gowalla", "mf", "ccl", group="table2")
METRICS = ("recall@20", "ndcg@20", "recall@50", "ndcg@50")


def history(recalls: list[float]) -> list[dict]:
    return [{"epoch": e, "loss": 1.0, "recall@20": r, "ndcg@20": r / 2, "recall@50": 2 * r, "ndcg@50": r,
             "train_s": 1.0, "eval_s": 0.1, "device": "cpu"} for e, r in enumerate(recalls, 1)]


def values_of(numbers: dict, n: int = 4) -> dict[str, np.ndarray]:
    """Per-user values of ``n`` users whose means are ``numbers`` (to the quantisation)."""
    return {m: np.full(n, numbers[m], np.float32) for m in METRICS}


def result(config: RunConfig, recalls: list[float], fingerprint: str | None = None, per_user: bool = True,
           time_utc: str = "2026-12-05T00:00:00+00:00", derived_from: str = "") -> RunResult:
    hist = history(recalls)
    best = hist[select_best(hist, config.monitor, config.min_delta)]
    prov = {"time_utc": time_utc, "git_commit": "abc", **({"derived_from": derived_from} if derived_from else {})}
    return RunResult(config, fingerprint or KNOWN_FINGERPRINTS[config.dataset], hist, dict(best), dict(hist[-1]),
                     {}, {"train_s": 1.0, "eval_s": 0.1}, "cpu", provenance=prov,
                     per_user=PerUser(np.arange(4), values_of(best), epoch=best["epoch"]) if per_user else None)


def old_npz(path: Path, numbers: dict, n: int = 4) -> None:
    """A per-user file as the code before schema 4 wrote it (no ``meta``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    q = np.round(np.stack([np.full(n, numbers[m]) for m in METRICS], 1) * 65535).astype(np.uint16)
    with open(path, "wb") as f:
        np.savez_compressed(f, names=np.array(METRICS), user_deltas=np.diff(np.arange(n), prepend=0), values=q)


def old_record(root: Path, config: RunConfig, recalls: list[float], schema: int,
               time_utc: str = "2026-12-01T00:00:00+00:00", fingerprint: str | None = None,
               per_user: bool = True) -> str:
    """A schema-2 or schema-3 record (and an old per-user file) as the code of then wrote it."""
    fp = fingerprint or KNOWN_FINGERPRINTS[config.dataset]
    key = v2_key(config, fp) if schema == 2 else v3_key(config, fp)
    hist = history(recalls)
    best = hist[select_best(hist, config.monitor, config.min_delta)]
    atomic_write_json({"schema": schema, "key": key, "data_fingerprint": fp, "config": config.to_dict(),
                       "history": hist, "best": best, "last": hist[-1], "test": {},
                       "timings": {"train_s": 1.0, "eval_s": 0.1}, "device": "cpu", "stopped_early": False,
                       "provenance": {"time_utc": time_utc, "git_commit": "abc"}, "per_user": per_user},
                      root / "runs" / f"{key}.json")
    if per_user:
        old_npz(root / "per_user" / f"{key}.npz", best)
    return key


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (but the lock file) with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".store.lock"}


# --------------------------------------------------------------------------------------------
# 1. a merged store: a current and an older record of one run, in both file orders


def _config_with_order(old_first: bool) -> RunConfig:
    """A paper-profile config whose schema-2 file name sorts before (or after) its current key."""
    for seed in range(2019, 2100):
        config = PAPER.replace(seed=seed)
        fp = KNOWN_FINGERPRINTS["gowalla"]
        if (v2_key(config, fp) < config.key(fp)) == old_first:
            return config
    raise AssertionError("no such seed")


@pytest.mark.parametrize("old_first", [True, False], ids=["old file first", "current file first"])
def test_migrate_keeps_one_of_a_current_and_an_old_record_of_one_run_and_sets_the_other_aside(tmp_path, old_first):
    config = _config_with_order(old_first)
    store = ResultsStore(tmp_path, log=None)
    store.put(result(config, [0.25, 0.3]))                                  # current, recall 0.3
    old = old_record(tmp_path, config, [0.2, 0.15], schema=2)               # older, recall 0.2
    key = config.key(KNOWN_FINGERPRINTS["gowalla"])
    assert (old < key) == old_first
    before = {**tree(tmp_path)}
    report = migrate_store(tmp_path)
    assert len(report.duplicates) == 1 and report.unmigrated == []
    kept = store.get(config, KNOWN_FINGERPRINTS["gowalla"])
    assert kept is not None and kept.best["recall@20"] == 0.2             # the older run is kept
    assert kept.per_user is not None and kept.per_user.key == key          # with its own values
    assert kept.per_user.means()["recall@20"] == pytest.approx(0.2, abs=1e-5)
    aside = tmp_path / "set_aside"
    current = [p for p in aside.glob("*.json") if json.loads(p.read_text())["best"]["recall@20"] == 0.3]
    assert len(current) == 1 and before[f"runs/{key}.json"] == current[0].read_bytes()   # byte for byte
    npz = [p for p in aside.glob("*.npz")]
    assert len(npz) == 1 and load_per_user(npz[0]).means()["recall@20"] == pytest.approx(0.3, abs=1e-5)
    assert sorted(p.name for p in (tmp_path / "runs").glob("*.json")) == [f"{key}.json"]
    assert migrate_store(tmp_path).current == 1                              # and nothing moves again


def test_migrate_keeps_both_duplicates_of_one_name_under_unique_names(tmp_path):
    """Two losers with one file name (from two merges) never overwrite each other in set_aside/."""
    config = PAPER.replace(seed=2030)
    store = ResultsStore(tmp_path, log=None)
    store.put(result(config, [0.3], time_utc="2026-12-31T00:00:00+00:00"))   # the newer: it loses
    key = config.key(KNOWN_FINGERPRINTS["gowalla"])
    (tmp_path / "set_aside").mkdir()
    (tmp_path / "set_aside" / f"{key}.json").write_text("an earlier set-aside file")
    old_record(tmp_path, config, [0.2], schema=2)
    migrate_store(tmp_path)
    assert sorted(p.name for p in (tmp_path / "set_aside").glob("*.json")) == [f"{key}.2.json", f"{key}.json"]
    assert (tmp_path / "set_aside" / f"{key}.json").read_text() == "an earlier set-aside file"
    assert json.loads((tmp_path / "set_aside" / f"{key}.2.json").read_text())["best"]["recall@20"] == 0.3


# --------------------------------------------------------------------------------------------
# 2. writers: two real processes on one key; a per-user file from another run


def _writer(args) -> str:
    root, recall, replace, start = args
    import mmlrepro.results as results_mod

    slow = results_mod.save_per_user

    def slow_save(per_user, path, key=None):   # widen the window between the two writes
        slow(per_user, path, key=key)
        time.sleep(0.5)

    results_mod.save_per_user = slow_save
    while time.time() < start:
        time.sleep(0.001)
    try:
        ResultsStore(root, log=None).put(result(PAPER, [recall]), replace=replace)
        return "stored"
    except RecordExists:
        return "exists"


@pytest.mark.parametrize("replace", [False, True])
def test_two_processes_writing_one_key_never_mix_record_and_per_user_values(tmp_path, replace):
    start = time.time() + 8.0     # both spawned processes have imported torch by then
    with mp.get_context("spawn").Pool(2) as pool:
        outcomes = pool.map(_writer, [(tmp_path, 0.1, replace, start), (tmp_path, 0.2, replace, start)])
    assert sorted(outcomes) == (["stored", "stored"] if replace else ["exists", "stored"])
    store = ResultsStore(tmp_path, log=None)
    stored = store.get(PAPER, KNOWN_FINGERPRINTS["gowalla"])
    assert stored.per_user is not None                                     # the same run's values
    assert stored.per_user.means()["recall@20"] == pytest.approx(stored.best["recall@20"], abs=1e-5)
    kept = len(list((tmp_path / "runs").glob("*.json"))) + len(list((tmp_path / "set_aside").glob("*.json")))
    assert kept == (2 if replace else 1)                                   # a replaced run is set aside


def test_a_per_user_file_of_another_run_is_named_and_treated_as_missing(tmp_path):
    lines: list[str] = []
    store = ResultsStore(tmp_path, log=lines.append)
    a, b = result(PAPER, [0.1]), result(PAPER.replace(seed=5), [0.2])
    store.put(a)
    store.put(b)
    shutil.copy(store.per_user_path(b.key), store.per_user_path(a.key))     # b's values beside a's record
    assert store.get(PAPER, a.data_fingerprint).per_user is None and not store.has_per_user(a.key)
    assert any(str(store.per_user_path(a.key)) in line and f"belongs to run {b.key}" in line for line in lines)


@pytest.mark.parametrize("content, why", [
    (b"garbage, not a zip", "not a per-user file"),
    ("pickled", "not a per-user file"),
    ("truncated", "not a per-user file"),
    ("partial", "of some users only"),
])
def test_a_bad_per_user_file_is_named_treated_as_missing_and_seen_by_refresh(tmp_path, content, why):
    lines: list[str] = []
    store = ResultsStore(tmp_path, log=lines.append)
    run = result(PAPER, [0.1, 0.2])
    run.per_user = PerUser(np.arange(200), {m: np.linspace(0, 2 * run.best[m], 200).astype(np.float32)
                                            for m in METRICS}, epoch=2)
    store.put(run)
    path = store.per_user_path(run.key)
    if content == "pickled":
        np.savez(path, names=np.array([object()], dtype=object))     # numpy: "pickled (object) data"
    elif content == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif content == "partial":       # the first 50 of the 200 users
        values = load_per_user(path)
        save_per_user(PerUser(values.users[:50], {m: v[:50] for m, v in values.values.items()}, epoch=2),
                      path, key=run.key)
    else:
        path.write_bytes(content)
    assert store.get(PAPER, run.data_fingerprint).per_user is None
    assert not store.has_per_user(run.key)                     # what --refresh-per-user asks
    assert any(str(path) in line and why in line for line in lines), lines


def test_compare_names_a_garbage_per_user_file_and_goes_on(tmp_path, capsys):
    store = ResultsStore(tmp_path, log=None)
    for loss in ("ccl", "mml"):
        store.put(result(cat.paper_config("gowalla", "mf", loss, group="table2"), [0.1, 0.2]))
    path = store.per_user_path(PAPER.key(KNOWN_FINGERPRINTS["gowalla"]))
    path.write_bytes(b"garbage")
    claims = compare("table2", "paper", tmp_path)["claims"]
    assert len(claims) and str(path) in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# 3. mmlrepro train leases its run


def test_a_second_train_of_a_leased_run_names_the_holder_before_any_compute(tmp_path, monkeypatch, capsys):
    data = synthetic(100, 200)
    config = RunConfig(dataset="synthetic:100:200", epochs=1, n_negatives=5, device="cpu")
    key = config.key(data.fingerprint)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from mmlrepro.leases import Leases
        assert Leases(Path({str(tmp_path)!r}))    .acquire({key!r})[0]
        print("held", flush=True)
        time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(train_mod.ExactStep, "__call__", lambda *a, **k: pytest.fail("a step ran"))
        monkeypatch.setattr(runner_mod, "train", lambda *a, **k: pytest.fail("training started"))
        code = main(["train", "--dataset", "synthetic:100:200", "--epochs", "1", "--negatives", "5",
                     "--device", "cpu", "--results-dir", str(tmp_path)])
        err = capsys.readouterr().err
        assert code == 2 and f"pid {holder.pid}" in err and "being trained" in err, err
    finally:
        holder.kill()
        holder.wait()


# --------------------------------------------------------------------------------------------
# 4. a read-off early-stopped run of another patience


def test_a_read_off_run_of_another_patience_never_gets_another_epochs_values(tmp_path):
    """The issue's probe: "N" trained with patience 1 keeps its "Y" twin's values (epoch 2);
    "Y" read off with patience 2 selects epoch 4, neither "N"'s epoch 7 nor epoch 2."""
    recalls = [0.10, 0.20, 0.19, 0.25, 0.24, 0.23, 0.30, 0.29]
    paper = result(PAPER.replace(patience=1, epochs=8), recalls)
    early = history(recalls)[1]
    paper.per_user = PerUser(np.arange(4), values_of(paper.best), epoch=7,
                             early_stop=PerUser(np.arange(4), values_of(early), epoch=2, patience=1))
    store = ResultsStore(tmp_path, log=None)
    store.put(paper)
    stored = store.get(paper.config, paper.data_fingerprint)
    assert stored.per_user.early_stop.epoch == 2 and stored.per_user.early_stop.patience == 1
    picks = {}
    for patience in (1, 2, 3):
        config = PAPER.replace(patience=patience, epochs=8, selection="early_stop")
        derived = early_stop_from_history(stored, config, stored.per_user)
        picks[patience] = (derived.best["epoch"], derived.per_user)
    assert picks[1][0] == 2 and picks[1][1].means()["recall@20"] == pytest.approx(0.20, abs=1e-5)
    assert picks[2][0] == 4 and picks[2][1] is None            # not epoch 2's values
    assert picks[3][0] == 7 and picks[3][1].means()["recall@20"] == pytest.approx(0.30, abs=1e-5)


# --------------------------------------------------------------------------------------------
# 5. stats


def test_a_zero_baseline_gives_an_undefined_gain_not_an_exception():
    out = compare_configs([0.1, 0.2], [0.0, 0.0])
    assert np.isnan(out.gain) and out.paired is None
    out = compare_configs([0.1, 0.2], [0.0, 0.0], [np.full(5, 0.1)] * 2, [np.zeros(5)] * 2)
    assert np.isnan(out.gain) and out.paired is None


def test_per_user_values_for_some_seeds_only_are_refused_and_arrays_are_accepted():
    with pytest.raises(ValueError, match="1 of the 2 seeds of a"):
        compare_configs([0.2, 0.2], [0.2, 0.2], [np.full(5, 0.1)], [np.full(5, 0.2)] * 2)
    a, b = np.full((2, 5), 0.3), np.full((2, 5), 0.2)       # arrays, not lists: no bool(ndarray)
    a[1, 0] = 0.31
    out = compare_configs([0.3, 0.302], [0.2, 0.2], a, b)
    assert out.paired is not None and out.paired.gain == pytest.approx(0.301 / 0.2 - 1)
    assert compare_configs([0.3, 0.3], [0.2, 0.2], a, None).paired is None


def test_the_lr_reduce_claims_use_every_seed(tmp_path):
    store = ResultsStore(tmp_path, log=None)
    for seed, stop in ((2019, 10), (2020, 20)):
        for lr_reduce in (True, False):
            config = cat.paper_config("gowalla", "mf", "ccl", seed=seed, selection="early_stop",
                                      lr_reduce=lr_reduce, group="lr_reduce" if lr_reduce else "table2")
            store.put(result(config, [0.1] * (stop - 1) + [0.15], per_user=False))
    claims = compare("lr_reduce", "paper", tmp_path)["claims"]
    stops = claims[claims.claim.str.contains("stops nearer")]
    assert "stopped after 15 (constant lr: 15; mean over seeds)" in stops.reproduced.iloc[0]


# --------------------------------------------------------------------------------------------
# 6. the key fingerprints the data the run sees


def test_paper_runs_keep_their_schema_3_keys_and_derived_data_is_fingerprinted():
    fp = KNOWN_FINGERPRINTS["gowalla"]
    assert SCHEMA_VERSION == 4 and KEY_SCHEMA == 3
    assert PAPER.key(fp) == v3_key(PAPER, fp)                       # a run on its data as it is
    quick = cat.configs("table3", "quick", 1)[0]
    honest = PAPER.replace(selection="honest")
    assert quick.user_subsample and quick.key(fp) != v3_key(quick, fp)
    assert honest.key(fp) != v3_key(honest, fp)
    assert quick.data_fingerprint(fp) == identity_key({"source": fp, "user_subsample": {
        "n": quick.user_subsample, "seed": 0}, "draw": draw_id()})
    assert honest.replace(seed=1).key(fp) != honest.key(fp)         # another split


def test_the_draw_is_named_and_another_draw_gives_other_keys(monkeypatch):
    assert draw_id() == "pcg64:933898c0"    # numpy 2.4.6's streams, which drew the stored quick runs
    quick = cat.configs("table3", "quick", 1)[0]
    fp = KNOWN_FINGERPRINTS[quick.dataset]
    key = quick.key(fp)
    monkeypatch.setattr("mmlrepro.config.draw_id", lambda: "pcg64:00000000")
    assert quick.key(fp) != key and PAPER.key(fp) == v3_key(PAPER, fp)


def test_the_committed_paper_records_keep_their_keys():
    """Every paper-profile record of the committed store has the key schema 3 gave it (those
    migrated from schema 3 say so; those trained since under schema 4 get the same key)."""
    records = ResultsStore(None, log=None).records()
    paper = [r for r in records if r["config"]["profile"] == "paper"]
    migrated = [r for r in paper if "migrated" in r["provenance"]]
    # the store only grows (34 paper runs on 2026-12-06); the migrated ones shrink as runs are
    # retrained (a retrained record is trained under schema 4, with no "migrated" entry)
    assert len(paper) >= 34 and migrated
    for r in paper:
        config = RunConfig.from_dict(r["config"])
        assert r["key"] == v3_key(config, r["data_fingerprint"]) == config.key(r["data_fingerprint"])
    for r in migrated:
        assert r["provenance"]["migrated"]["old_key"] == r["key"]


def test_migrating_a_subsampled_run_checks_its_users_against_the_subsample_drawn_here(tmp_path):
    source = synthetic(300, 400)
    config = RunConfig(dataset="synthetic:300:400", epochs=2, user_subsample=100, device="cpu")
    good = old_record(tmp_path, config, [0.1, 0.2], schema=3, fingerprint=source.fingerprint, per_user=False)
    old_npz(tmp_path / "per_user" / f"{good}.npz", history([0.1, 0.2])[1], n=100)
    other = config.replace(seed=9)
    bad = old_record(tmp_path, other, [0.1, 0.2], schema=3, fingerprint=source.fingerprint, per_user=False)
    old_npz(tmp_path / "per_user" / f"{bad}.npz", history([0.1, 0.2])[1], n=50)
    report = migrate_store(tmp_path)
    assert report.checked_users == 1 and [name for name, _ in report.unmigrated] == [f"{bad}.json"]
    assert "50 users, not the 100" in report.unmigrated[0][1]
    assert (tmp_path / "unmigrated" / f"{bad}.json").exists() and (tmp_path / "unmigrated" / f"{bad}.npz").exists()
    store = ResultsStore(tmp_path, log=None)
    assert store.has_per_user(config.key(source.fingerprint)) and config.key(source.fingerprint) != good


# --------------------------------------------------------------------------------------------
# 7. mmlrepro merge


def _synthetic_store(root: Path) -> None:
    store = ResultsStore(root, log=None)
    store.put(result(PAPER, [0.1, 0.2]))
    store.put(result(PAPER.replace(selection="early_stop"), [0.1, 0.2], per_user=False,
                     derived_from=PAPER.key(KNOWN_FINGERPRINTS["gowalla"])))
    store.put(result(PAPER.replace(seed=2020), [0.3]))
    store.put(result(PAPER.replace(seed=2020), [0.31]), replace=True)      # one record set aside
    atomic_write_json({"key": "abc", "config": {"method": "ease"}, "metrics": {"recall@20": 0.1}},
                      root / "linear" / "abc.json")


def test_merging_a_copy_into_itself_or_into_an_empty_store_changes_nothing_and_loses_nothing(tmp_path):
    _synthetic_store(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    before = tree(tmp_path / "a")
    report = merge_stores(tmp_path / "copy", tmp_path / "a")
    assert tree(tmp_path / "a") == before and tree(tmp_path / "copy") == before
    assert report.came_in == 3 and report.identical == 3 and report.new == 0 and not report.duplicates
    merge_stores(tmp_path / "copy", tmp_path / "empty")
    assert tree(tmp_path / "empty") == before and tree(tmp_path / "copy") == before


def test_merging_a_different_record_of_a_run_keeps_one_and_sets_the_other_aside(tmp_path, capsys):
    ResultsStore(tmp_path / "a", log=None).put(result(PAPER, [0.1], time_utc="2026-12-01T00:00:00+00:00"))
    ResultsStore(tmp_path / "b", log=None).put(result(PAPER, [0.2], time_utc="2026-11-01T00:00:00+00:00"))
    old_record(tmp_path / "b", PAPER.replace(seed=2021), [0.4], schema=2)   # old, new here: migrated in
    b_before = tree(tmp_path / "b")
    assert main(["merge", str(tmp_path / "b"), "--results-dir", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "2 record file(s) came in: 1 run(s) new here" in out and "older" in out
    store = ResultsStore(tmp_path / "a", log=None)
    assert store.get(PAPER, KNOWN_FINGERPRINTS["gowalla"]).best["recall@20"] == 0.2     # the older
    assert len(store.records()) == 2 and all(store.has_per_user(r["key"]) for r in store.records())
    aside = list((tmp_path / "a" / "set_aside").glob("*.json"))
    assert len(aside) == 1 and json.loads(aside[0].read_text())["best"]["recall@20"] == 0.1
    assert tree(tmp_path / "b") == b_before                                             # OTHER untouched


def test_an_old_store_merged_into_its_migrated_copy_is_all_exact_copies(tmp_path):
    """The lead's case: a store written by the code before schema 4 (a GPU archive, main's)
    merged into a migrated copy of itself changes nothing."""
    quick = PAPER.replace(user_subsample=1000)       # re-keyed by schema 4: derived_from repointed
    twin = old_record(tmp_path / "old", quick, [0.1, 0.2], schema=3, per_user=False)
    old_record(tmp_path / "old", PAPER.replace(seed=2020), [0.3], schema=3)
    derived = old_record(tmp_path / "old", quick.replace(selection="early_stop"), [0.1, 0.2], schema=3,
                         per_user=False)
    path = tmp_path / "old" / "runs" / f"{derived}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "provenance": {"derived_from": twin}}))
    shutil.copytree(tmp_path / "old", tmp_path / "new")
    assert migrate_store(tmp_path / "new").migrated == 3
    before = tree(tmp_path / "new")
    report = merge_stores(tmp_path / "old", tmp_path / "new")
    assert report.identical == 3 and not report.duplicates and tree(tmp_path / "new") == before


def test_merge_refuses_what_is_not_a_store(tmp_path, capsys):
    assert main(["merge", str(tmp_path / "nowhere"), "--results-dir", str(tmp_path / "a")]) == 2
    assert "not a results store" in capsys.readouterr().err


@pytest.mark.real_data
def test_merging_a_copy_of_the_committed_store_into_itself_changes_nothing(tmp_path):
    shutil.copytree(Path(__file__).parent.parent / "results", tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    before = tree(tmp_path / "a")
    merge_stores(tmp_path / "b", tmp_path / "a")
    assert tree(tmp_path / "a") == before


# --------------------------------------------------------------------------------------------
# 8. the last bad inputs: one line, before compute, before writes


def test_seeds_0_is_refused_before_the_linear_group_fits_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner_mod, "run_linear_group", lambda *a, **k: pytest.fail("linear fitted"))
    assert main(["reproduce", "--profile", "smoke", "--seeds", "0", "--results-dir", str(tmp_path)]) == 2
    assert "seed" in capsys.readouterr().err and not (tmp_path / "linear").exists()


def test_a_truncated_linear_result_is_named_and_left_out(tmp_path, capsys):
    atomic_write_json({"key": "a", "config": {"dataset": "gowalla", "method": "ease"},
                       "metrics": {"recall@20": 0.1}}, tmp_path / "linear" / "a.json")
    (tmp_path / "linear" / "b.json").write_text('{"key": "b", ')
    frame = linear_results(tmp_path)
    assert list(frame["key"]) == ["a"]
    assert str(tmp_path / "linear" / "b.json") in capsys.readouterr().err


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_huge_jobs_count_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("mmlrepro.runner.load_run_dataset", lambda *a, **k: pytest.fail("data loaded"))
    assert main(["reproduce", "table3", "--profile", "smoke", "--jobs", "10000000000",
                 "--results-dir", str(tmp_path)]) == 2
    assert "at most 1,024" in _one_line(capsys)


def test_a_closed_ray_port_fails_fast_before_ray_starts(tmp_path, capsys, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr("mmlrepro.jobs.import_ray", lambda: pytest.fail("Ray imported"))
    start = time.perf_counter()
    assert main(["reproduce", "table3", "--profile", "smoke", "--executor", "ray", "--address",
                 f"127.0.0.1:{port}", "--results-dir", str(tmp_path)]) == 2
    assert time.perf_counter() - start < 10
    assert f"127.0.0.1:{port} cannot be reached" in _one_line(capsys)


@NO_GPU
def test_gpus_per_run_without_a_gpu_answers_before_ray_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("mmlrepro.jobs.import_ray", lambda: pytest.fail("Ray imported"))
    assert main(["reproduce", "table3", "--profile", "smoke", "--executor", "ray", "--gpus-per-run", "1",
                 "--results-dir", str(tmp_path)]) == 2
    assert "needs a GPU" in _one_line(capsys)


def test_local_workers_exit_when_their_parent_is_killed(tmp_path):
    # the parent is killed once both workers have started (under load, importing torch in a spawned
    # worker can take longer than the deadline below, which only bounds the parent watch)
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import multiprocessing, time
        from mmlrepro.jobs import LocalPool, Workers
        pool = LocalPool(Workers(jobs=2), "cpu")
        manager = multiprocessing.Manager()
        barrier = manager.Barrier(2)    # both workers at once: each has run its initializer
        for done in [pool.pool.submit(barrier.wait, 600) for _ in range(2)]:
            done.result()
        manager.shutdown()
        futures = [pool.pool.submit(time.sleep, 300) for _ in range(2)]
        print(" ".join(str(p) for p in pool.pool._processes), flush=True)
        time.sleep(300)
    """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    workers = [int(p) for p in parent.stdout.readline().split()]
    assert len(workers) == 2
    time.sleep(1)
    assert all(_alive(p) for p in workers)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_migrate_of_a_missing_store_is_an_error(tmp_path, capsys):
    assert main(["migrate", "--results-dir", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in _one_line(capsys)


def test_a_record_of_a_newer_schema_is_named_with_upgrade_by_reproduce_and_migrate(tmp_path, capsys, monkeypatch):
    store = ResultsStore(tmp_path, log=None)
    run = result(PAPER, [0.1])
    store.put(run)
    record = json.loads(store.path(run.key).read_text())
    store.path(run.key).write_text(json.dumps({**record, "schema": SCHEMA_VERSION + 1}))
    before = tree(tmp_path)
    monkeypatch.setattr("mmlrepro.runner.load_run_dataset", lambda *a, **k: pytest.fail("data loaded"))
    for argv in (["migrate"], ["reproduce", "table3", "--profile", "smoke"]):
        assert main([*argv, "--results-dir", str(tmp_path)]) == 2
        err = _one_line(capsys)
        assert f"{run.key}.json" in err and "upgrade mmlrepro" in err, err
    assert tree(tmp_path) == before


def test_a_record_says_what_data_its_run_saw_and_its_per_user_file_names_it(tmp_path):
    store = ResultsStore(tmp_path, log=None)
    run = result(PAPER, [0.1, 0.2])
    store.put(run)
    values = load_per_user(store.per_user_path(run.key))
    assert values.key == run.key and values.epoch == 2
    assert json.loads(store.path(run.key).read_text())["data"] == {"source": run.data_fingerprint,
                                                                   "fingerprint": run.data_fingerprint}
    quick = RunConfig(dataset="synthetic:300:400", user_subsample=100, selection="honest")
    data = quick.data_description("f" * 16)
    assert data["user_subsample"] == {"n": 100, "seed": 0} and data["holdout"] == {"fraction": 0.1, "seed": 2019}
    assert data["draw"] == draw_id() and data["fingerprint"] == quick.data_fingerprint("f" * 16)
