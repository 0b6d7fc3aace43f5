"""The store migration (issue 14): every stored run kept, re-keyed, and shown as before."""

from __future__ import annotations

import hashlib
import json

from mmlrepro import catalogue as cat
from mmlrepro.comparison import compare
from mmlrepro.files import atomic_write_json
from mmlrepro.migrate import migrate_store
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
    """The project's own store: every record of schema 2, and the 26 paper cells of before the migration."""
    store = ResultsStore(None, log=None)
    assert store.problems() == []
    filled = 0
    for group in ("table2", "table3"):
        table = compare(group, "paper")["table"]
        filled += int(table["mean"].notna().sum())
    assert filled >= 26  # numbers (cell x metric) with a paper-profile run before the migration
