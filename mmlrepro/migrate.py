"""Versioned migrations of the results store (``mmlrepro migrate``; issue 14).

Each step of :data:`MIGRATIONS` turns a record of schema ``n`` into one of schema ``n + 1``;
:func:`migrate_store` applies them to every record of a store, re-keys the files, and never
drops a run: a record that cannot be migrated is moved to ``results/unmigrated/`` and listed,
and two records that become one run (the same effective config) keep the first and move the
other to ``results/set_aside/`` with the reason.

Schema 1 → 2 (:func:`v1_to_v2`):
- the key becomes :meth:`RunConfig.key` of schema 2: the effective, normalised config (loss and
  SimpleX parameters merged with their defaults, numbers as floats, no labels, only the fields
  that apply) plus the data fingerprint;
- the data fingerprint of a schema-1 record is that of its named dataset: schema-1 records of
  ``gowalla`` and ``yelp2018`` were trained on the LightGCN files, the only copies the project
  has (checksummed in ``shared/data/SHA256SUMS``), whose fingerprints are
  :data:`mmlrepro.data.KNOWN_FINGERPRINTS`; any other dataset cannot be migrated;
- the selected epoch is recomputed with the one selection rule
  (:func:`mmlrepro.train.select_best`); a change is noted in the record;
- ``derived_from`` (an early-stopped run read off its twin) is rewritten to the twin's new key.

Schema 2 → 3 (:func:`v2_to_v3`): the key leaves out the SimpleX parameters the forward pass
never reads (``history_cap`` and ``padding_softmax_bug`` at g = 1, ``padding_softmax_bug`` with
the mean aggregator: :func:`mmlrepro.config._effective_simplex_params`), so two configs that
compute the same run share it; every key changes (the schema is part of it), nothing else does.

Per-user values (``per_user/<key>.npz``) move with their record; those of a record set aside
as a duplicate go to ``set_aside/`` with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmlrepro.config import SCHEMA_VERSION, RunConfig, identity_key
from mmlrepro.data import KNOWN_FINGERPRINTS
from mmlrepro.files import atomic_write_json
from mmlrepro.results import ResultsStore, check_record
from mmlrepro.train import select_best


class MigrationError(ValueError):
    """A record that cannot be migrated; the message says why."""


def _config_of(record: dict[str, Any]) -> RunConfig:
    raw = record.get("config")
    if not isinstance(raw, dict):
        raise MigrationError("no config")
    try:
        return RunConfig.from_dict(raw)
    except (ValueError, TypeError) as err:
        raise MigrationError(f"config not valid today: {err}") from None


def v2_key(config: RunConfig, data_fingerprint: str) -> str:
    """The key ``config`` had in schema 2: every SimpleX parameter in the identity."""
    identity = {**config.identity(data_fingerprint), "schema": 2}
    if config.model == "simplex":
        identity["model_params"] = config.model_hp
    return identity_key(identity)


def v1_to_v2(record: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 record as a schema-2 one (see the module docstring); ``derived_from`` still old."""
    raw = record.get("config")
    config = _config_of(record)
    fingerprint = KNOWN_FINGERPRINTS.get(config.dataset)
    if fingerprint is None:
        raise MigrationError(f"dataset {config.dataset!r} is not a known dataset, so the data it "
                             "ran on cannot be named")
    history = record.get("history") or []
    if not history:
        raise MigrationError("empty history")
    notes = []
    best = history[select_best(history, config.monitor, config.min_delta)]
    if best["epoch"] != record["best"]["epoch"]:
        notes.append(f"selected epoch {record['best']['epoch']} -> {best['epoch']} (select_best, "
                     f"min_delta {config.min_delta:g})")
    if config.to_dict()["loss_params"] != raw.get("loss_params"):
        notes.append(f"loss_params {raw.get('loss_params')} -> {config.loss_hp} (defaults merged)")
    prov = dict(record.get("provenance") or {})
    prov["migrated"] = {"from_schema": 1, "old_key": record.get("key"), "notes": notes}
    out = {**record, "schema": 2, "config": config.to_dict(), "data_fingerprint": fingerprint,
           "key": v2_key(config, fingerprint), "best": dict(best), "provenance": prov, "per_user": False}
    out.setdefault("test", {})
    return out


def v2_to_v3(record: dict[str, Any]) -> dict[str, Any]:
    """A schema-2 record as a schema-3 one: only its key (and schema) change; ``derived_from``
    still old. An earlier migration's note is kept under ``earlier``."""
    config = _config_of(record)
    fingerprint = record.get("data_fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise MigrationError("no data fingerprint")
    if v2_key(config, fingerprint) != record.get("key"):
        raise MigrationError("its key is not the schema-2 key of its config and data")
    prov = dict(record.get("provenance") or {})
    migrated = {"from_schema": 2, "old_key": record["key"], "notes": []}
    if "migrated" in prov:
        migrated["earlier"] = prov["migrated"]
    prov["migrated"] = migrated
    return {**record, "schema": 3, "key": config.key(fingerprint), "provenance": prov}


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: v1_to_v2, 2: v2_to_v3}


def migrate_record(record: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``record`` brought to :data:`SCHEMA_VERSION` by the steps of :data:`MIGRATIONS`, and the
    notes of those steps."""
    notes: list[str] = []
    while (schema := record.get("schema", 1)) < SCHEMA_VERSION:
        if schema not in MIGRATIONS:
            raise MigrationError(f"no migration from schema {schema}")
        record = MIGRATIONS[schema](record)
        notes += record["provenance"]["migrated"]["notes"]
    return record, notes


@dataclass
class MigrationReport:
    migrated: int = 0
    current: int = 0
    unmigrated: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{self.migrated} record(s) migrated to schema {SCHEMA_VERSION}, {self.current} already current"]
        out += [f"not migrated (moved to unmigrated/): {name}: {why}" for name, why in self.unmigrated]
        out += [f"duplicate (moved to set_aside/): {name}: {why}" for name, why in self.duplicates]
        out += [f"note: {name}: {note}" for name, note in self.notes]
        return out


def _prefer(record: dict[str, Any]) -> tuple:
    """Which of two records of one run to keep: a trained one over a derived one, then the older."""
    prov = record.get("provenance") or {}
    return (bool(prov.get("derived_from")), prov.get("time_utc", ""))


def _move(src: Path, folder: Path) -> None:
    if src.exists():
        folder.mkdir(exist_ok=True)
        src.replace(folder / src.name)


def migrate_store(results_dir: str | Path | None = None, dry_run: bool = False) -> MigrationReport:
    """Bring every record of the store to :data:`SCHEMA_VERSION`, re-keyed with its per-user
    values, losing none."""
    store = ResultsStore(results_dir, log=None)
    report = MigrationReport()
    if not store.runs_dir.exists():
        return report
    new: dict[str, tuple[Path, dict[str, Any]]] = {}
    old_to_new: dict[str, str] = {}
    for path in sorted(store.runs_dir.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            report.unmigrated.append((path.name, f"does not parse ({err.__class__.__name__})"))
            continue
        if isinstance(record, dict) and record.get("schema", 1) == SCHEMA_VERSION:
            why = check_record(record, path.stem)
            if why is None:
                report.current += 1
                old_to_new[path.stem] = path.stem
                new.setdefault(path.stem, (path, record))
            else:
                report.unmigrated.append((path.name, why))
            continue
        try:
            if not isinstance(record, dict) or record.get("key") != path.stem:
                raise MigrationError("its key is not its file name")
            migrated, notes = migrate_record(record)
        except MigrationError as err:
            report.unmigrated.append((path.name, str(err)))
            continue
        old_to_new[path.stem] = migrated["key"]
        report.notes += [(path.name, note) for note in notes]
        key = migrated["key"]
        if key in new:
            keep, drop = sorted([new[key], (path, migrated)], key=lambda pr: _prefer(pr[1]))
            new[key] = keep
            report.duplicates.append((drop[0].name, f"the same run as {keep[0].name} (new key {key})"))
        else:
            new[key] = (path, migrated)
    if dry_run:
        report.migrated = sum(1 for p, r in new.values() if p.stem != r["key"])
        return report
    for key, (path, record) in new.items():
        prov = record.get("provenance") or {}
        if prov.get("derived_from"):
            prov["derived_from"] = old_to_new.get(prov["derived_from"], prov["derived_from"])
        if path.stem == key:
            continue
        atomic_write_json(record, store.path(key))
        old_per_user, new_per_user = store.per_user_path(path.stem), store.per_user_path(key)
        _move(new_per_user, store.root / "set_aside")        # a stray file: never the new run's
        if old_per_user.exists():
            old_per_user.replace(new_per_user)
        path.unlink()
        report.migrated += 1
    kept = {p for p, _ in new.values()}
    for folder, names in (("set_aside", report.duplicates), ("unmigrated", report.unmigrated)):
        for name, _ in names:
            src = store.runs_dir / name
            if src.exists() and src not in kept:
                _move(src, store.root / folder)
                _move(store.per_user_path(src.stem), store.root / folder)
    return report
