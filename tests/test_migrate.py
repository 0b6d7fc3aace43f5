"""The store migration (issue 14): every stored run kept, re-keyed, and shown as before."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from mmlrepro import catalogue as cat
from mmlrepro.comparison import compare
from mmlrepro.config import RunConfig
from mmlrepro.data import KNOWN_FINGERPRINTS
from mmlrepro.files import atomic_write_json
from mmlrepro.migrate import migrate_store
from mmlrepro.migrations import v2_key
from mmlrepro.per_user import PerUser, save_per_user
from mmlrepro.results import ResultsStore


def v1_record(root, config, recalls, derived_from="", time="2026-11-23T00:00:00+00:00") -> str:
    """A schema-1 record as the project wrote them: keyed by the hash of every field but device/group."""
    d = config.to_dict()
    payload = {k: v for k, v in d.items() if k not in ("device", "group")}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":"), default=float).encode()).hexdigest()[:16]
    history = [{"epoch": e, "loss": 1.0, "recall@20": r, "ndcg@20": r / 2, "recall@50": 2 * r, "ndcg@50": r,
                "train_s": 1.0, "eval_s": 0.1} for e, r in enumerate(recalls, 1)]
    best = max(history, key=lambda h: (h["recall@20"], -h["epoch"]))
    prov = {"time_utc": time, "git_commit": "abc-dirty", **({"derived_from": derived_from} if derived_from else {})}
    atomic_write_json({"key": key, "config": d, "history": history, "best": best, "last": history[-1], "test": {},
                       "timings": {"train_s": 1.0, "eval_s": 0.1}, "device": "cpu", "stopped_early": False,
                       "provenance": prov}, root / "runs" / f"{key}.json")
    return key


def test_migration_rekeys_every_run_and_the_report_shows_the_same_cells(tmp_path):
    mml = cat.paper_config("gowalla", "mf", "mml", group="table3")
    bpr = cat.paper_config("gowalla", "mf", "bpr", group="table3").replace(loss_params={})
    twin = cat.paper_config("gowalla", "mf", "ccl", group="table2")
    v1_record(tmp_path, mml, [0.17, 0.18])
    v1_record(tmp_path, bpr, [0.07, 0.06])
    twin_key = v1_record(tmp_path, twin, [0.16, 0.17, 0.169, 0.168, 0.167, 0.171])
    v1_record(tmp_path, twin.replace(selection="early_stop"), [0.16, 0.17, 0.169, 0.168, 0.167], derived_from=twin_key)
    odd = cat.paper_config("gowalla", "mf", "hinge").replace(dataset="synthetic:10:20")
    v1_record(tmp_path, odd, [0.1])
    (tmp_path / "runs" / "garbage.json").write_text("not json")
    report = migrate_store(tmp_path)
    assert report.migrated == 4 and report.current == 0
    assert sorted(name for name, _ in report.unmigrated) == sorted(["garbage.json", next(
        p.name for p in (tmp_path / "unmigrated").glob("*.json") if p.name != "garbage.json")])
    store = ResultsStore(tmp_path, log=None)
    assert store.problems() == [] and len(store.records()) == 4
    keys = {r["key"] for r in store.records()}
    assert cat.catalogue_key(mml) in keys and cat.catalogue_key(bpr) in keys
    derived = next(r for r in store.records() if r["config"]["selection"] == "early_stop")
    assert derived["provenance"]["derived_from"] == cat.catalogue_key(twin)  # pointer rewritten
    table = compare("table3", "paper", tmp_path)["table"].set_index(["loss", "dataset", "metric"])
    assert table.loc[("mml", "gowalla", "recall@20"), "mean"] == 0.18
    assert table.loc[("bpr", "gowalla", "recall@20"), "mean"] == 0.07
    again = migrate_store(tmp_path)
    assert again.migrated == 0 and again.current == 4  # idempotent


def test_two_old_records_of_one_run_keep_the_trained_one(tmp_path):
    a = cat.paper_config("gowalla", "mf", "ccl", group="table2")
    b = a.replace(profile="custom", loss_params={"margin": 0.9, "neg_weight": 150})  # one run, two v1 keys
    v1_record(tmp_path, a, [0.1, 0.2], derived_from="")
    v1_record(tmp_path, b, [0.1, 0.2], derived_from="elsewhere")
    report = migrate_store(tmp_path)
    assert len(report.duplicates) == 1 and len(list((tmp_path / "set_aside").glob("*.json"))) == 1
    records = ResultsStore(tmp_path, log=None).records()
    assert len(records) == 1 and not records[0]["provenance"].get("derived_from")


def test_the_committed_store_is_current_and_keeps_its_paper_cells():
    """The project's own store: every record current, and the 26 paper cells of before the migration."""
    store = ResultsStore(None, log=None)
    assert store.problems() == []
    filled = 0
    for group in ("table2", "table3"):
        table = compare(group, "paper")["table"]
        filled += int(table["mean"].notna().sum())
    assert filled >= 26  # numbers (cell x metric) with a paper-profile run before the migration
    for record in store.records():   # every schema-2 key was the one v2_key gives (schema 3)
        old = record["provenance"].get("migrated", {})
        while old and old.get("from_schema") != 2:
            old = old.get("earlier", {})
        if old:
            config = RunConfig.from_dict(record["config"])
            assert v2_key(config, record["data_fingerprint"]) == old["old_key"], record["key"]


def v2_record(root, config, recalls, derived_from="", time="2026-12-01T00:00:00+00:00", per_user=None) -> str:
    """A schema-2 record as the project wrote them (key: v2_key), with per-user values if given."""
    fp = KNOWN_FINGERPRINTS[config.dataset]
    key = v2_key(config, fp)
    history = [{"epoch": e, "loss": 1.0, "recall@20": r, "ndcg@20": r / 2, "recall@50": 2 * r, "ndcg@50": r,
                "train_s": 1.0, "eval_s": 0.1} for e, r in enumerate(recalls, 1)]
    best = max(history, key=lambda h: (h["recall@20"], -h["epoch"]))
    prov = {"time_utc": time, "git_commit": "abc", **({"derived_from": derived_from} if derived_from else {})}
    atomic_write_json({"schema": 2, "key": key, "data_fingerprint": fp, "config": config.to_dict(),
                       "history": history, "best": best, "last": history[-1], "test": {},
                       "timings": {"train_s": 1.0, "eval_s": 0.1}, "device": "cpu", "stopped_early": False,
                       "provenance": prov, "per_user": per_user is not None}, root / "runs" / f"{key}.json")
    if per_user is not None:
        (root / "per_user").mkdir(exist_ok=True)
        save_per_user(per_user, root / "per_user" / f"{key}.npz")
    return key


def test_schema_2_to_3_moves_per_user_values_and_merges_runs_that_differ_in_unread_parameters(tmp_path):
    yelp = cat.paper_config("yelp2018", "simplex", "ccl", group="table2")   # g = 1, history_cap 500
    assert yelp.model_hp["gate"] == 1.0 and yelp.model_hp["history_cap"] == 500
    values = PerUser(users=np.arange(3), values={"recall@20": np.array([0.06, 0.07, 0.08], np.float32),
                                                 "ndcg@20": np.array([0.03, 0.035, 0.04], np.float32)})
    twin = v2_record(tmp_path, yelp, [0.06, 0.07, 0.065, 0.064, 0.063], per_user=values)
    derived = v2_record(tmp_path, yelp.replace(selection="early_stop"), [0.06, 0.07, 0.065, 0.064],
                        derived_from=twin)
    uncapped = yelp.replace(model_params={**yelp.model_hp, "history_cap": None}, profile="custom")
    dup = v2_record(tmp_path, uncapped, [0.06, 0.07], derived_from="elsewhere", per_user=values)
    assert len({twin, derived, dup}) == 3
    report = migrate_store(tmp_path)
    assert report.migrated == 2 and len(report.duplicates) == 1 and report.unmigrated == []
    store = ResultsStore(tmp_path, log=None)
    assert store.problems() == [] and {r["key"] for r in store.records()} == {
        cat.catalogue_key(yelp), cat.catalogue_key(yelp.replace(selection="early_stop"))}
    assert store.per_user(cat.catalogue_key(yelp)) is not None                # moved with its record
    assert not (tmp_path / "per_user" / f"{twin}.npz").exists()
    aside = tmp_path / "set_aside"
    assert (aside / f"{dup}.json").exists() and (aside / f"{dup}.npz").exists()   # the duplicate's, kept
    record = json.loads(store.path(cat.catalogue_key(yelp.replace(selection="early_stop"))).read_text())
    assert record["provenance"]["derived_from"] == cat.catalogue_key(yelp)
    chain, step = [], record["provenance"]["migrated"]
    while step:
        chain.append(step["old_key"])
        step = step.get("earlier")
    assert derived in chain                     # 2 -> 3 -> 4, each step's old key kept
    assert migrate_store(tmp_path).current == 2                                  # idempotent
