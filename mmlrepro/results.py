"""The results store: one JSON record per run, named by the run's key (issue 14).

``results/runs/<key>.json`` holds the schema version, the key, the data fingerprint, the
(normalised) config, the per-epoch history, the selected and last epochs, the test metrics of an
honest run, timings and provenance (device, torch and package versions, git commit, time).
``results/per_user/<key>.npz`` holds the per-user Recall/NDCG@K of the reported numbers, when the
run kept them (:func:`mmlrepro.per_user.save_per_user`; issue 16).

Reading checks every record: it must parse, carry the current :data:`SCHEMA_VERSION`, and its
config and fingerprint must hash to the key in its name. A file that fails is reported with its
path and treated as missing; a record of an older schema is never served (``mmlrepro migrate``
re-keys it), nor one of a newer schema (written by a newer mmlrepro: upgrade). A per-user file
is checked against its record on every read (:meth:`ResultsStore.per_user`): it must parse,
name the record's key, and its means must be the record's reported numbers (and those of the
early-stop epoch it names); one that fails is reported and treated as missing.

Writing never silently replaces a file and never mixes two runs (issue 32): every write holds
the store's lock (``<store>/.store.lock``, an exclusive ``flock``), so the check that a key is
free, the per-user file and the record are one step no other writer interleaves with, and the
record is written by an exclusive create (:func:`mmlrepro.files.exclusive_write`). A bad file is
set aside (to ``results/set_aside/``, under a name no other file has) with a message, and a
valid record is replaced only when asked (``replace=True``), the old one and its per-user file
set aside too. Files are written atomically.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import mmlrepro
from mmlrepro.config import METRIC_NAMES, SCHEMA_VERSION, RunConfig
from mmlrepro.files import (
    atomic_write,
    atomic_write_json,
    check_writable,
    locked,
    set_aside_stamp,
    stderr,
    unique_path,
)
from mmlrepro.per_user import PerUser, PerUserError, load_per_user, save_per_user

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RECORD_FIELDS = ("key", "config", "data_fingerprint", "history", "best", "last", "timings", "device")
MEAN_TOL = 1e-5    # a per-user file's mean against its record's number (quantisation: <= 7.6e-6)
UPGRADE_HINT = "upgrade mmlrepro (git pull, or pip install -U mmlrepro) to read it"


class StoreError(ValueError):
    """The store cannot do what was asked (an old schema to migrate, a record in the way)."""


class RecordExists(StoreError):
    """``put`` found a valid record of the run already stored (and was not asked to replace it)."""


def schema_problem(record: dict[str, Any]) -> str | None:
    """Why ``record``'s schema is not :data:`SCHEMA_VERSION` (older: migrate; newer: upgrade), or None."""
    schema = record.get("schema", 1)
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        return f"schema {schema!r} is not a schema version"
    if schema > SCHEMA_VERSION:
        return f"schema {schema} is newer than this mmlrepro's {SCHEMA_VERSION}: {UPGRADE_HINT}"
    if schema < SCHEMA_VERSION:
        return f"schema {schema}, not {SCHEMA_VERSION} (run `mmlrepro migrate`)"
    return None


def default_results_dir() -> Path:
    """``$MMLREPRO_RESULTS_DIR``, else ``results/`` in the project (or the working directory)."""
    env = os.environ.get("MMLREPRO_RESULTS_DIR")
    if env:
        return Path(env)
    if (PROJECT_ROOT / "pyproject.toml").exists():
        return PROJECT_ROOT / "results"
    return Path.cwd() / "results"


# What computes a run: a change here, uncommitted, marks a run's or a check's commit ``-dirty``;
# a change to the store, the report or the notebooks does not.
CODE_PATHS = ("mmlrepro", "pyproject.toml", "environment.yml")


def git_commit(root: Path = PROJECT_ROOT, paths: tuple[str, ...] = ()) -> str:
    """The checkout's commit, with ``-dirty`` when tracked files differ (only those under
    ``paths``, when given: ``CODE_PATHS`` for what a run or a check computed with).

    Without a ``.git`` (a lent GPU machine gets a copy of the tree) ``$MMLREPRO_COMMIT``, which
    the GPU session script sets; ``unknown`` when neither is there.
    """
    if (root / ".git").exists():
        try:
            sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                 check=True, timeout=10).stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *paths],
                                   cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
            return sha + ("-dirty" if dirty else "")
        except (OSError, subprocess.SubprocessError):
            pass
    return os.environ.get("MMLREPRO_COMMIT") or "unknown"


def _torch_version() -> str:
    """``torch.__version__``, read where a run is stored (the trainer has imported torch by then),
    so that reading the store does not import torch."""
    import torch

    return torch.__version__


def provenance() -> dict[str, Any]:
    return {
        "time_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": _torch_version(),
        "mmlrepro": mmlrepro.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
        "git_commit": git_commit(paths=CODE_PATHS),
    }


@dataclass
class RunResult:
    """What one run produced: per-epoch history, the selected epoch, the last one, timings.

    ``data_fingerprint`` names its source data; with ``config`` (which says what the run draws
    from it: :meth:`RunConfig.data_fingerprint`) it gives :attr:`key`.
    ``per_user`` holds the reported numbers' per-user values when the run kept them.
    """

    config: RunConfig
    data_fingerprint: str
    history: list[dict[str, float]]
    best: dict[str, float]
    last: dict[str, float]
    test: dict[str, float]
    timings: dict[str, float]
    device: str
    stopped_early: bool = False
    from_store: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)
    per_user: PerUser | None = None

    @property
    def key(self) -> str:
        return self.config.key(self.data_fingerprint)

    @property
    def reported(self) -> dict[str, float]:
        """The numbers a paper table shows: the test metrics of an honest run, else the selected epoch's."""
        return self.test if self.config.selection == "honest" else self.best

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "key": self.key,
            "data_fingerprint": self.data_fingerprint,
            "config": self.config.to_dict(),
            "history": self.history,
            "best": self.best,
            "last": self.last,
            "test": self.test,
            "timings": self.timings,
            "device": self.device,
            "stopped_early": self.stopped_early,
            "provenance": self.provenance,
            "per_user": self.per_user is not None,
            "data": self.config.data_description(self.data_fingerprint),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        return cls(config=RunConfig.from_dict(data["config"]), data_fingerprint=str(data["data_fingerprint"]),
                   history=list(data["history"]), best=dict(data["best"]), last=dict(data["last"]),
                   test=dict(data.get("test") or {}), timings=dict(data["timings"]), device=str(data["device"]),
                   stopped_early=bool(data.get("stopped_early", False)), from_store=True,
                   provenance=dict(data.get("provenance", {})))


def check_record(record: Any, name: str) -> str | None:
    """Why ``record`` (parsed from ``<name>.json``) is not a valid current record, or None."""
    if not isinstance(record, dict):
        return f"not a JSON object but {type(record).__name__}"
    if why := schema_problem(record):
        return why
    missing = [f for f in RECORD_FIELDS if f not in record]
    if missing:
        return f"lacks {', '.join(missing)}"
    if record["key"] != name:
        return f"its key {record['key']!r} is not its name {name!r}"
    try:
        config = RunConfig.from_dict(record["config"])
    except (ValueError, TypeError) as err:
        return f"its config is not valid ({err})"
    if config.key(record["data_fingerprint"]) != name:
        return "its config and data fingerprint hash to another key (the content belongs to another run)"
    if not isinstance(record["history"], list) or not record["history"]:
        return "its history is empty"
    return None


def reported_of(record: dict[str, Any]) -> dict[str, float]:
    """The numbers a record reports: an honest run's test metrics, else its selected epoch's."""
    return (record.get("test") or {}) if record["config"].get("selection") == "honest" else record["best"]


def check_per_user(per_user: PerUser, record: dict[str, Any]) -> str | None:
    """Why ``per_user`` (read from a file) are not the values of run ``record``, or None.

    They must name the record's key, the epoch it reports, and have its reported numbers as
    their means (within :data:`MEAN_TOL`); an early-stop set must name an epoch of the history
    and have that epoch's numbers as its means."""
    key = record["key"]
    if per_user.key is None:
        return "was written before store schema 4 and names no run (run `mmlrepro migrate`)"
    if per_user.key != key:
        return f"belongs to run {per_user.key}, not {key}"
    if per_user.epoch is not None and per_user.epoch != record["best"]["epoch"]:
        return f"holds epoch {per_user.epoch}'s values, the record reports epoch {record['best']['epoch']}"
    sets = [("values", per_user, reported_of(record))]
    if (es := per_user.early_stop) is not None:
        epochs = {int(h["epoch"]): h for h in record["history"]}
        if es.epoch not in epochs:
            return f"its early-stop values name epoch {es.epoch}, which the history lacks"
        sets.append((f"early-stop values (epoch {es.epoch})", es, epochs[es.epoch]))
    for what, values, numbers in sets:
        for name, mean in values.means().items():
            if name in numbers and not abs(mean - numbers[name]) <= MEAN_TOL:
                return (f"its {what} average {name} {mean:.6f}, the record says {numbers[name]:.6f} "
                        "(values of another run, or of some users only)")
    return None


class ResultsStore:
    """A folder of run records keyed by :meth:`RunConfig.key` (see the module docstring)."""

    def __init__(self, root: str | Path | None = None, log: Callable[[str], None] | None = stderr) -> None:
        self.root = Path(root) if root is not None else default_results_dir()
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"results store {self.root} is a file, not a folder")
        self.runs_dir = self.root / "runs"
        self.per_user_dir = self.root / "per_user"
        self.log = log or (lambda line: None)
        self._reported: set[Path] = set()

    @property
    def set_aside_dir(self) -> Path:
        """Where replaced and bad records go (:func:`set_aside`), never deleted."""
        return self.root / "set_aside"

    @property
    def lock_path(self) -> Path:
        """The store's lock file (:func:`mmlrepro.files.locked`), held by every writer."""
        return self.root / ".store.lock"

    def path(self, key: str) -> Path:
        return self.runs_dir / f"{key}.json"

    def check_writable(self) -> None:
        """:class:`mmlrepro.files.OutputError` unless records can be written (before any compute)."""
        check_writable(self.runs_dir, "results store")
        check_writable(self.per_user_dir, "results store")

    @staticmethod
    def _check_file(path: Path, key: str | None = None) -> tuple[dict[str, Any] | None, str | None]:
        """``(record, None)`` for a valid current record of ``key`` (default: the file's name) at
        ``path``, else ``(None, why)``."""
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            return None, f"does not parse ({err.__class__.__name__}: {err})"
        why = check_record(record, key or path.stem)
        return (record, None) if why is None else (None, why)

    def _read(self, path: Path) -> dict[str, Any] | None:
        """The valid record at ``path``, or None (a bad file is reported once, with its path)."""
        record, why = self._check_file(path)
        if why is not None:
            self._warn(path, why)
        return record

    def _warn(self, path: Path, why: str) -> None:
        """Report a bad file once, with its path."""
        if path not in self._reported:
            self._reported.add(path)
            self.log(f"warning: {path}: {why}; treated as missing")

    def get(self, config: RunConfig, data_fingerprint: str) -> RunResult | None:
        """The stored run, with its per-user values when it has them, or None."""
        path = self.path(config.key(data_fingerprint))
        if not path.exists():
            return None
        record = self._read(path)
        if record is None:
            return None
        result = RunResult.from_dict(record)
        result.per_user = self.per_user(result.key, record)
        return result

    def contains(self, config: RunConfig, data_fingerprint: str) -> bool:
        """Whether a valid record of the run is stored (its per-user values are not read)."""
        path = self.path(config.key(data_fingerprint))
        return path.exists() and self._read(path) is not None

    def _set_aside(self, path: Path, why: str) -> Path:
        dest = set_aside(path, self.set_aside_dir)
        self.log(f"note: {path} {why}: moved to {dest}")
        return dest

    def put(self, result: RunResult, *, replace: bool = False) -> Path:
        """Write ``result`` (and its per-user values); never silently replaces a file, never
        leaves a record beside another run's per-user values (see the module docstring).

        :class:`RecordExists` when a valid record of the run is stored and ``replace`` is False
        (another writer may have stored it a moment ago: nothing is written then)."""
        if not result.provenance:
            result.provenance = provenance()
        key = result.key
        path = self.path(key)
        record = result.to_dict()
        with locked(self.lock_path):
            if path.exists():
                if self._read(path) is None:
                    self._set_aside(path, "was not a valid record")
                elif not replace:
                    raise RecordExists(f"{path} already holds this run; pass replace=True (--force) to replace it")
                else:
                    self._set_aside(path, "is replaced by a new run of the same key")
            old_per_user = self.per_user_path(key)
            if old_per_user.exists():   # the replaced run's, or a stray file: never left to the new run
                self._set_aside(old_per_user, "belonged to the replaced run")
            if result.per_user is not None:
                atomic_write(old_per_user, lambda tmp: save_per_user(result.per_user, tmp, key=key))
            return atomic_write_json(record, path, exclusive=True)

    def per_user(self, key: str, record: dict[str, Any] | None = None) -> PerUser | None:
        """The per-user values stored with run ``key``, checked against its record (``record``,
        else read from the store) by :func:`check_per_user`; None without them, and for a file
        that fails (reported once, with its path: ``--refresh-per-user`` trains such runs again)."""
        path = self.per_user_path(key)
        if not path.exists():
            return None
        if record is None:
            record = self._read(self.path(key)) if self.path(key).exists() else None
        if record is None:
            self._warn(path, "has no valid record beside it")
            return None
        try:
            values = load_per_user(path)
        except PerUserError as err:
            self._warn(path, str(err).removeprefix(f"{path}: "))
            return None
        why = check_per_user(values, record)
        if why is not None:
            self._warn(path, why)
            return None
        return values

    def has_per_user(self, key: str) -> bool:
        """Whether run ``key`` has per-user values that pass :meth:`per_user`'s checks."""
        return self.per_user(key) is not None

    def per_user_path(self, key: str) -> Path:
        """Where run ``key``'s per-user values are (or would be) stored."""
        return self.per_user_dir / f"{key}.npz"

    def set_aside_records(self, key: str) -> list[dict[str, Any]]:
        """The valid records of run ``key`` in ``set_aside/`` (replaced by a rerun of the same key,
        ``<key>.<UTC time>.json``, or a migration's ``<key>[.n].json``), by file name; files of
        another schema or key are skipped."""
        folder = self.set_aside_dir
        paths = sorted(folder.glob(f"{key}*.json")) if folder.exists() else []
        return [record for record, why in (self._check_file(p, key) for p in paths) if why is None]

    def records(self) -> list[dict[str, Any]]:
        """Every valid record, sorted by file name; bad files are reported and skipped."""
        if not self.runs_dir.exists():
            return []
        out = []
        for path in sorted(self.runs_dir.glob("*.json")):
            record = self._read(path)
            if record is not None:
                out.append(record)
        return out

    def problems(self) -> list[tuple[Path, str]]:
        """``(path, why)`` of every file in ``runs/`` that is not a valid current record."""
        paths = sorted(self.runs_dir.glob("*.json")) if self.runs_dir.exists() else []
        checked = ((path, self._check_file(path)[1]) for path in paths)
        return [(path, why) for path, why in checked if why is not None]

    def require_current_schema(self) -> None:
        """:class:`StoreError` when the store holds records of a newer schema (upgrade mmlrepro)
        or of an older one (migrate first)."""
        newer = [(p, why) for p, why in self.problems() if "newer than this mmlrepro" in why]
        if newer:
            raise StoreError(f"{newer[0][0]}: {newer[0][1]} ({len(newer)} such record(s) in {self.runs_dir})")
        old = [p for p, why in self.problems() if why.startswith("schema ")]
        if old:
            raise StoreError(f"{self.runs_dir} holds {len(old)} record(s) of an older schema (e.g. "
                             f"{old[0].name}); run `mmlrepro migrate --results-dir {self.root}` first")


def set_aside(path: Path, folder: Path, copy: bool = False, stamp: bool = True) -> Path:
    """Move (``copy``: copy) ``path`` into ``folder`` under a name no file there has
    (``<stem>[.<UTC time>][.n]<suffix>``); returns where it went. The caller holds the store's lock."""
    stem = path.name.removesuffix(path.suffix)
    if stamp:
        stem += "." + set_aside_stamp()
    dest = unique_path(folder, stem, path.suffix)
    folder.mkdir(parents=True, exist_ok=True)
    (shutil.copy2 if copy else shutil.move)(str(path), dest)
    return dest


def _row(record: dict[str, Any], per_user_dir: Path) -> dict[str, Any]:
    config = record["config"]
    best, last, test = record["best"], record["last"], record.get("test") or {}
    prov = record.get("provenance", {})
    row = {
        "key": record["key"],
        "data_fingerprint": record["data_fingerprint"],
        "group": config.get("group", ""),
        "profile": config["profile"],
        "dataset": config["dataset"],
        "model": config["model"],
        "loss": config["loss"],
        "loss_params": json.dumps(config["loss_params"], sort_keys=True),
        "n_negatives": config["n_negatives"],
        "batch_size": config["batch_size"],
        "selection": config["selection"],
        "lr_reduce": config["lr_reduce"],
        "monitor": config["monitor"],
        "seed": config["seed"],
        "epochs": config["epochs"],
        "best_epoch": best["epoch"],
        "epochs_run": last["epoch"],
        "device": record["device"],
        "train_s": record["timings"]["train_s"],
        "eval_s": record["timings"]["eval_s"],
        "time_utc": prov.get("time_utc", ""),
        "git_commit": prov.get("git_commit", ""),
        "derived_from": prov.get("derived_from", ""),
        "per_user": (per_user_dir / f"{record['key']}.npz").exists(),
    }
    reported = test if config["selection"] == "honest" else best
    for metric in METRIC_NAMES:
        row[metric] = reported.get(metric, float("nan"))
        row[f"last_{metric}"] = last.get(metric, float("nan"))
        row[f"selection_{metric}"] = best.get(metric, float("nan"))
    for name, value in config["loss_params"].items():
        row[f"hp_{name}"] = json.dumps(value) if isinstance(value, list) else value
    return row


def load_results(results_dir: str | Path | None = None, log: Callable[[str], None] | None = stderr) -> pd.DataFrame:
    """Every valid stored run as one tidy row: config fields, the reported metrics, timings, device.

    ``recall@20`` etc. are the numbers a paper table shows: the selected epoch's test metrics
    (``paper``/``early_stop``), or the once-evaluated test metrics of an ``honest`` run (whose
    ``selection_*`` columns hold the validation metrics that chose the epoch). ``per_user`` says
    whether the run's per-user values are stored.
    """
    store = ResultsStore(results_dir, log=log)
    return pd.DataFrame([_row(r, store.per_user_dir) for r in store.records()])
