"""Versioned migrations of the results store (``mmlrepro migrate``; issue 14) and merges of
another store into it (``mmlrepro merge``; issue 32).

:func:`migrate_store` and :func:`merge_stores` share one procedure that never drops a run:
every record file (of the store, and of the store merged in) is read and brought to
:data:`SCHEMA_VERSION` in memory (:func:`gather`); a file that cannot be is moved (copied, from
the other store) to ``unmigrated/`` and listed; then **one duplicate resolution** runs over
every record, current or migrated: per key the record :func:`_prefer` ranks first is kept and
every other one goes to ``set_aside/`` under a name no file there has, with the reason and which
record was kept and why; only then is each kept record written at its key, with its per-user
values, and its old file removed. No path written is moved afterwards. A record of a newer
schema than this code's stops both before anything is written, named, with "upgrade mmlrepro".

The per-record steps (:data:`MIGRATIONS`: schema ``n`` → ``n + 1``, and the per-user files
written before schema 4) are :mod:`mmlrepro.migrations`'s.

Per-user values (``per_user/<key>.npz``) move with their record; those of a record set aside
go to ``set_aside/`` with it; a file that fails its checks is set aside and its record kept
without per-user values (``reproduce --refresh-per-user`` trains it again).
"""
from __future__ import annotations

import filecmp
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmlrepro.config import SCHEMA_VERSION, RunConfig
from mmlrepro.data import Dataset, draw_id
from mmlrepro.files import atomic_write, atomic_write_json, locked
from mmlrepro.migrations import MIGRATIONS, MigrationError, check_users, migrate_record, per_user_of
from mmlrepro.per_user import PerUser, save_per_user
from mmlrepro.results import (
    UPGRADE_HINT,
    ResultsStore,
    StoreError,
    check_record,
    set_aside,
)

# the store's procedures, and the per-record steps they run, importable from here
__all__ = ["migrate_store", "merge_stores", "MigrationReport", "Candidate", "gather",
           "MIGRATIONS", "MigrationError", "migrate_record"]


# --------------------------------------------------------------------------------------------
# candidates: every record of a store, brought to the current schema in memory


@dataclass
class Candidate:
    """One record of a store at :data:`SCHEMA_VERSION` (migrated in memory if older), where it
    came from (``origin``: ``"here"`` the store written, ``"other"`` a store merged in), its
    file, its per-user file (if any) and the values read from it."""

    record: dict[str, Any]
    path: Path
    origin: str
    per_user_path: Path | None
    was_old: bool = False          # migrated in memory from an older schema
    repointed: bool = False        # its derived_from rewritten to its twin's new key
    per_user: PerUser | None = None
    per_user_why: str | None = None

    @property
    def key(self) -> str:
        return self.record["key"]

    def describe(self) -> str:
        where = "" if self.origin == "here" else "OTHER's "
        return f"{where}{self.path.name}"


def _prefer(c: Candidate) -> tuple:
    """Which of several records of one run to keep, the first that differs of: a trained record
    over one read off its twin, one with per-user values, the older, one already in the store,
    one of the current schema, then the file name."""
    prov = c.record.get("provenance") or {}
    return (bool(prov.get("derived_from")), c.per_user is None, prov.get("time_utc", ""),
            c.origin != "here", c.was_old, c.path.name)


PREFERENCE_REASONS = ("trained, not read off its twin", "has per-user values", "older",
                      "already in the store", "of the current schema", "first by file name")


def _why_kept(kept: Candidate, other: Candidate) -> str:
    a, b = _prefer(kept), _prefer(other)
    return next((why for x, y, why in zip(a, b, PREFERENCE_REASONS, strict=True) if x != y), "identical")


def gather(root: Path, origin: str, report: MigrationReport,
           sources: dict[str, Dataset | None]) -> tuple[list[Candidate], list[tuple[Path, str]]]:
    """Every record file of ``root``'s ``runs/`` as a :class:`Candidate`, and ``(path, why)``
    of those that cannot be migrated. :class:`StoreError` naming the first record of a newer
    schema (written by a newer mmlrepro) before anything is written."""
    runs_dir = root / "runs"
    candidates, bad = [], []
    newer = []
    for path in sorted(runs_dir.glob("*.json")) if runs_dir.exists() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            bad.append((path, f"does not parse ({err.__class__.__name__})"))
            continue
        if isinstance(record, dict) and isinstance(record.get("schema"), int) \
                and record["schema"] > SCHEMA_VERSION:
            newer.append((path, record["schema"]))
            continue
        old = isinstance(record, dict) and record.get("schema", 1) != SCHEMA_VERSION
        try:
            if not isinstance(record, dict):
                raise MigrationError(f"not a JSON object but {type(record).__name__}")
            if old:
                if not isinstance(record.get("schema", 1), int):
                    raise MigrationError(f"schema {record['schema']!r} is not a schema version")
                if record.get("key") != path.stem:
                    raise MigrationError("its key is not its file name")
                from_schema = record.get("schema", 1)
                record, notes = migrate_record(record)
                report.notes += [(path.name, note) for note in notes]
            elif why := check_record(record, path.stem):
                raise MigrationError(why)
            c = Candidate(record, path, origin, root / "per_user" / f"{path.stem}.npz", was_old=old)
            if not c.per_user_path.exists():
                c.per_user_path = None
            else:
                c.per_user, c.per_user_why = per_user_of(record, c.per_user_path, path.stem)
            if old and from_schema <= 3 and RunConfig.from_dict(record["config"]).derivation():
                checked = c.per_user is not None and check_users(record, c.per_user, sources)
                report.checked_users += checked
                report.unchecked_users += not checked
        except MigrationError as err:
            bad.append((path, str(err)))
            continue
        candidates.append(c)
    if newer:
        path, schema = newer[0]
        raise StoreError(f"{path}: schema {schema} is newer than this mmlrepro's {SCHEMA_VERSION}: "
                         f"{UPGRADE_HINT} ({len(newer)} such record(s); nothing was changed)")
    return candidates, bad


# --------------------------------------------------------------------------------------------
# one duplicate resolution, then the writes


@dataclass
class MigrationReport:
    """What :func:`migrate_store` or :func:`merge_stores` did (``lines()`` for the CLI)."""

    migrated: int = 0
    current: int = 0
    came_in: int = 0
    new: int = 0
    identical: int = 0
    files_copied: int = 0
    checked_users: int = 0
    unchecked_users: int = 0
    unmigrated: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    set_aside: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    merge: bool = False

    def lines(self) -> list[str]:
        out = []
        if self.merge:
            out.append(f"{self.came_in} record file(s) came in: {self.new} run(s) new here, {self.identical} "
                       f"exact copies of a record here, {len(self.duplicates)} duplicate(s) (below), "
                       f"{len(self.unmigrated)} not migrated; {self.files_copied} other file(s) copied "
                       "(set_aside/, unmigrated/, linear/)")
            out.append(f"the store now holds {self.migrated + self.current} record(s), {self.migrated} of "
                       f"them migrated to schema {SCHEMA_VERSION}")
        else:
            out.append(f"{self.migrated} record(s) migrated to schema {SCHEMA_VERSION}, {self.current} already current")
        if self.checked_users or self.unchecked_users:
            out.append(f"runs on derived data (subsample, split) migrated from schema 3: {self.checked_users} with "
                       f"their per-user users checked against the data drawn here ({draw_id()}), "
                       f"{self.unchecked_users} not checked (no per-user values, or the source data not found)")
        out += [f"not migrated (in unmigrated/): {name}: {why}" for name, why in self.unmigrated]
        out += [f"duplicate: {name}: {why}" for name, why in self.duplicates]
        out += [f"set aside: {name}: {why}" for name, why in self.set_aside]
        out += [f"note: {name}: {note}" for name, note in self.notes]
        return out


def _resolve(candidates: list[Candidate], report: MigrationReport) -> tuple[dict[str, Candidate], list[Candidate]]:
    """One duplicate resolution over every candidate: per key the one :func:`_prefer` ranks
    first is kept; the others are returned as losers (each noted, with why the kept one won),
    except, in a merge, another store's exact copy of the kept record (nothing to keep apart)."""
    groups: dict[str, list[Candidate]] = {}
    for c in candidates:
        groups.setdefault(c.key, []).append(c)
    kept: dict[str, Candidate] = {}
    losers: list[Candidate] = []
    for key, group in groups.items():
        group.sort(key=_prefer)
        kept[key] = group[0]
        for c in group[1:]:
            if c.origin == "other" and _same(c, group[0]):
                report.identical += 1
                continue
            losers.append(c)
            report.duplicates.append((c.describe(), f"the same run as {group[0].describe()} (key {key}), "
                                      f"which is kept: {_why_kept(group[0], c)}"))
    return kept, losers


def _same(a: Candidate, b: Candidate) -> bool:
    """Whether two candidates hold the same record and the same per-user values (or none; as
    read, so a file of before schema 4 and its upgraded copy are the same)."""
    if a.record != b.record or (a.per_user_path is None) != (b.per_user_path is None):
        return False
    if a.per_user is None or b.per_user is None:
        return a.per_user_path is None or filecmp.cmp(a.per_user_path, b.per_user_path, shallow=False)
    return _same_values(a.per_user, b.per_user)


def _same_values(a: PerUser | None, b: PerUser | None) -> bool:
    if a is None or b is None:
        return a is b
    return (np.array_equal(a.users, b.users) and a.values.keys() == b.values.keys()
            and all(np.array_equal(a.values[n], b.values[n]) for n in a.values)
            and (a.epoch, a.patience, a.key) == (b.epoch, b.patience, b.key)
            and _same_values(a.early_stop, b.early_stop))


def _put_aside(path: Path, folder: Path, origin: str, report: MigrationReport, why: str) -> None:
    """Move a file of this store (copy one of another store) to ``folder`` under a unique name."""
    dest = set_aside(path, folder, copy=origin == "other", stamp=False)
    report.set_aside.append((f"{'OTHER ' if origin == 'other' else ''}{path.name}", f"{why} -> {dest}"))


def _apply(root: Path, candidates: list[Candidate], bad: list[tuple[Path, str, str]],
           report: MigrationReport) -> None:
    """Resolve ``candidates`` and write ``root``'s store: losers and unmigratable files moved
    (this store's) or copied (another's) aside under unique names, then every kept record
    written at its key with its per-user values. No path written is moved afterwards, and
    no kept record's file is overwritten before it is read (checked first)."""
    _repoint(candidates)
    kept, losers = _resolve(candidates, report)
    sources_kept = {c.path for c in kept.values() if c.origin == "here"}
    for c in kept.values():
        target = root / "runs" / f"{c.key}.json"
        if target in sources_kept and target != c.path:
            raise MigrationError(f"{c.path.name} would be written over {target.name}, another run's record")
    for path, origin, why in bad:
        report.unmigrated.append((f"{'OTHER ' if origin == 'other' else ''}{path.name}", why))
        _put_aside(path, root / "unmigrated", origin, report, "not migrated")
        npz = path.parent.parent / "per_user" / f"{path.stem}.npz"
        if npz.exists():
            _put_aside(npz, root / "unmigrated", origin, report, "the per-user values of a record not migrated")
    for c in losers:
        _put_aside(c.path, root / "set_aside", c.origin, report, f"a duplicate of run {c.key}")
        if c.per_user_path is not None:
            _put_aside(c.per_user_path, root / "set_aside", c.origin, report, "a duplicate's per-user values")
    for c in kept.values():
        _write_kept(root, c, report)


def _repoint(candidates: list[Candidate]) -> None:
    """``derived_from`` (the twin an early-stopped run was read off) rewritten to the twin's
    new key, before records are compared."""
    old_to_new = {c.path.stem: c.key for c in candidates}
    for c in candidates:
        prov = c.record.get("provenance") or {}
        twin = prov.get("derived_from")
        if twin in old_to_new and old_to_new[twin] != twin:
            c.record = {**c.record, "provenance": {**prov, "derived_from": old_to_new[twin]}}
            c.repointed = True


def _write_kept(root: Path, c: Candidate, report: MigrationReport) -> None:
    """Write kept candidate ``c`` at its key in ``root`` (record and per-user values)."""
    record = c.record
    target = root / "runs" / f"{c.key}.json"
    target_npz = root / "per_user" / f"{c.key}.npz"
    in_place = c.origin == "here" and c.path == target
    if target_npz.exists() and target_npz != (c.per_user_path if c.origin == "here" else None):
        _put_aside(target_npz, root / "set_aside", "here", report, f"per-user values with no record of run {c.key}")
    if c.per_user_path is not None and c.per_user is None:
        _put_aside(c.per_user_path, root / "set_aside", c.origin, report, f"not run {c.key}'s per-user values "
                   f"({c.per_user_why}); its record is kept without them")
    elif c.per_user is not None:
        same_file = c.origin == "here" and c.per_user_path == target_npz
        if not (same_file and c.per_user.key == c.key and not c.was_old and _has_meta(c.per_user_path)):
            atomic_write(target_npz, lambda tmp: save_per_user(c.per_user, tmp, key=c.key))
        if c.origin == "here" and c.per_user_path != target_npz:
            c.per_user_path.unlink()
    if not in_place or c.repointed or c.was_old:
        atomic_write_json(record, target)
    if c.origin == "here" and c.path != target:
        c.path.unlink()
    report.migrated += c.was_old
    report.current += not c.was_old


def _has_meta(path: Path) -> bool:
    with np.load(path, allow_pickle=False) as z:
        return "meta" in z.files


def migrate_store(results_dir: str | Path | None = None, dry_run: bool = False) -> MigrationReport:
    """Bring every record of the store to :data:`SCHEMA_VERSION`, re-keyed with its per-user
    values, losing none: current and older records are candidates of one duplicate resolution
    (:func:`_prefer`), the others set aside under unique names. Holds the store's lock."""
    store = ResultsStore(results_dir, log=None)
    if not store.root.is_dir():
        raise StoreError(f"results store {store.root} does not exist")
    report = MigrationReport()
    with locked(store.lock_path):
        candidates, bad = gather(store.root, "here", report, {})
        if dry_run:
            kept, _ = _resolve(candidates, report)
            report.unmigrated = [(p.name, why) for p, why in bad]
            report.migrated = sum(c.was_old for c in kept.values())
            report.current = sum(not c.was_old for c in kept.values())
            return report
        _apply(store.root, candidates, [(p, "here", why) for p, why in bad], report)
    return report


def merge_stores(other: str | Path, results_dir: str | Path | None = None) -> MigrationReport:
    """Bring the records of store ``other`` (a GPU session's archive, a cluster's, a
    collaborator's) into ``results_dir``: every record of both, at the current schema, is a
    candidate of one duplicate resolution (:func:`_prefer`); a record of ``other`` that is kept
    is copied in with its per-user values, one that is not is copied to ``set_aside/`` (an exact
    copy of a kept record is only counted), as are its files that cannot be migrated (to
    ``unmigrated/``), and its own ``set_aside/``, ``unmigrated/`` and ``linear/`` files. Nothing
    is dropped and ``other`` is not changed. Holds the destination store's lock."""
    store = ResultsStore(results_dir, log=None)
    other = Path(other)
    if not (other / "runs").is_dir() and not (other / "linear").is_dir():
        raise StoreError(f"{other} is not a results store (no runs/ or linear/ folder)")
    if store.root.exists() and other.resolve() == store.root.resolve():
        raise StoreError(f"{other} is the destination store itself: nothing to merge")
    store.check_writable()
    report = MigrationReport(merge=True)
    with locked(store.lock_path):
        sources: dict[str, Dataset | None] = {}
        here, bad_here = gather(store.root, "here", report, sources)
        there, bad_there = gather(other, "other", report, sources)
        report.came_in = len(there) + len(bad_there)
        report.new = len({c.key for c in there} - {c.key for c in here})
        bad = [(p, "here", why) for p, why in bad_here] + [(p, "other", why) for p, why in bad_there]
        _apply(store.root, here + there, bad, report)
        for folder in ("set_aside", "unmigrated", "linear"):
            _copy_folder(other / folder, store.root / folder, report)
    return report


def _copy_folder(src: Path, dest: Path, report: MigrationReport) -> None:
    """Copy the files of another store's ``src`` folder into ``dest``: a name not there is
    copied, an identical file skipped, a different one with the same name copied to
    ``dest``'s ``set_aside/`` (linear results) or under a unique name beside it."""
    if not src.is_dir():
        return
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        target = dest / path.relative_to(src)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            report.files_copied += 1
        elif not filecmp.cmp(path, target, shallow=False):
            folder = dest.parent / "set_aside" / "linear" if dest.name == "linear" else target.parent
            _put_aside(path, folder, "other", report, f"differs from {target}, which is kept")
