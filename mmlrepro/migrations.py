"""Per-record upgrades of the results store (issue 14): each step of :data:`MIGRATIONS` turns a
record of schema ``n`` into one of schema ``n + 1`` (:func:`migrate_record` runs them up to
:data:`SCHEMA_VERSION`), and a per-user file written before schema 4 becomes its run's
(:func:`per_user_of`). Whole stores are migrated and merged by :mod:`mmlrepro.migrate`.

Schema 1 → 2 (:func:`v1_to_v2`):
- the key becomes :meth:`RunConfig.key` of schema 2: the effective, normalised config (loss and
  SimpleX parameters merged with their defaults, numbers as floats, no labels, only the fields
  that apply) plus the data fingerprint;
- the data fingerprint of a schema-1 record is that of its named dataset: schema-1 records of
  ``gowalla`` and ``yelp2018`` were trained on the LightGCN files, the only copies the project
  has (checksummed in ``shared/data/SHA256SUMS``), whose fingerprints are
  :data:`mmlrepro.data.KNOWN_FINGERPRINTS`; any other dataset cannot be migrated;
- the selected epoch is recomputed with the one selection rule
  (:func:`mmlrepro.selection.select_best`); a change is noted in the record;
- ``derived_from`` (an early-stopped run read off its twin) is rewritten to the twin's new key.

Schema 2 → 3 (:func:`v2_to_v3`): the key leaves out the SimpleX parameters the forward pass
never reads (``history_cap`` and ``padding_softmax_bug`` at g = 1, ``padding_softmax_bug`` with
the mean aggregator: :func:`mmlrepro.config._effective_simplex_params`), so two configs that
compute the same run share it; every key changes (the schema is part of it), nothing else does.

Schema 3 → 4 (:func:`v3_to_v4`): the key fingerprints the data the run trains and is tested on
(:meth:`RunConfig.data_fingerprint`): a run that subsamples users (the quick profile) or splits
off an honest validation set is re-keyed, every other run (the paper profile's) keeps its key;
the record says what data it saw (``data``). Its per-user file gets the run's key, the epochs
and the means (:func:`per_user_of`), checked against the record; the users of a subsampled
run's per-user values are checked against the subsample drawn here when its source data is
found (:func:`check_users`; nothing is retrained).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mmlrepro.config import SCHEMA_VERSION, RunConfig, identity_key
from mmlrepro.data import KNOWN_FINGERPRINTS, DataError, Dataset, draw_id, load_named_or_synthetic
from mmlrepro.metrics import PerUser, PerUserError, load_per_user
from mmlrepro.preflight import run_dataset
from mmlrepro.results import check_per_user
from mmlrepro.selection import early_stop_best, select_best


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
    identity = {**config.identity(data_fingerprint), "data": data_fingerprint, "schema": 2}
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
    return {**record, "schema": 3, "key": v3_key(config, fingerprint), "provenance": prov}


def v3_key(config: RunConfig, data_fingerprint: str) -> str:
    """The key ``config`` had in schema 3: the source data's fingerprint as ``data``."""
    return identity_key({**config.identity(data_fingerprint), "data": data_fingerprint, "schema": 3})


def v3_to_v4(record: dict[str, Any]) -> dict[str, Any]:
    """A schema-3 record as a schema-4 one: the key fingerprints the data the run saw
    (:meth:`RunConfig.data_fingerprint`), which changes only the keys of runs that subsample
    or split their data, and the record says what data that was (``data``). Its per-user file
    is brought to schema 4 by :func:`migrate_store` (key, epochs and means, checked)."""
    config = _config_of(record)
    fingerprint = record.get("data_fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise MigrationError("no data fingerprint")
    if v3_key(config, fingerprint) != record.get("key"):
        raise MigrationError("its key is not the schema-3 key of its config and data")
    prov = dict(record.get("provenance") or {})
    migrated = {"from_schema": 3, "old_key": record["key"], "notes": []}
    if "migrated" in prov:
        migrated["earlier"] = prov["migrated"]
    prov["migrated"] = migrated
    return {**record, "schema": 4, "key": config.key(fingerprint), "provenance": prov,
            "data": config.data_description(fingerprint)}


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: v1_to_v2, 2: v2_to_v3, 3: v3_to_v4}


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


# --------------------------------------------------------------------------------------------
# per-user files


def per_user_of(record: dict[str, Any], path: Path, old_key: str) -> tuple[PerUser | None, str | None]:
    """The per-user values at ``path`` as run ``record``'s (schema 4), or ``(None, why not)``.

    A file written before schema 4 names no run: it gets the record's key, its selected epoch
    and, for an "N" run's early-stop set, the epoch its "Y" twin selects and the patience of the
    "N" run's config, which :func:`mmlrepro.train.train` kept it for. A file naming the record's
    old key (``old_key``) is renamed to the new. Then :func:`check_per_user` must pass."""
    try:
        values = load_per_user(path)
    except PerUserError as err:
        return None, str(err).removeprefix(f"{path}: ")
    if values.key is None:
        config = RunConfig.from_dict(record["config"])
        early = values.early_stop
        if early is not None:
            early = dataclasses.replace(early, epoch=early_stop_best(record["history"], config),
                                        patience=config.patience)
        values = dataclasses.replace(values, key=record["key"], epoch=record["best"]["epoch"], early_stop=early)
    elif values.key == old_key:
        values = dataclasses.replace(values, key=record["key"])
    why = check_per_user(values, record)
    return (values, None) if why is None else (None, why)


def check_users(record: dict[str, Any], values: PerUser, sources: dict[str, Dataset | None]) -> bool:
    """Schema 3 → 4 of a run that subsampled or split its data: the users its per-user values
    cover must be those of the subsample and split recomputed here (the users with a test item,
    in order). False when the source data cannot be loaded here (nothing checked);
    :class:`MigrationError` when the users differ."""
    config = RunConfig.from_dict(record["config"])
    name = config.dataset
    if name not in sources:
        try:
            sources[name] = load_named_or_synthetic(name)
        except (DataError, ValueError, OSError):
            sources[name] = None
    source = sources[name]
    if source is None or source.fingerprint != record["data_fingerprint"]:
        return False
    seen = run_dataset(config, source)
    expected = np.flatnonzero(np.diff(seen.test_indptr) > 0)
    if not np.array_equal(values.users, expected):
        raise MigrationError(f"its per-user values cover {len(values.users)} users, not the {len(expected)} "
                             f"test users of the subsample drawn here ({draw_id()}): it saw other data")
    return True
