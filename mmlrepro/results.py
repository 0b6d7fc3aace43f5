"""The results store: one JSON file per run, named by the config's key.

``results/runs/<key>.json`` holds the config, the per-epoch history, the selected and last epochs,
timings and provenance (device, torch and package versions, git commit, time). Files are written
to a temporary name in the same folder and renamed into place, so a reader never sees half a file
and concurrent writers never corrupt the store (the last rename wins, each file whole).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import mmlrepro
from mmlrepro.train import RunConfig, RunResult, early_stop_from_history, train

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_results_dir() -> Path:
    """``$MMLREPRO_RESULTS_DIR``, else ``results/`` in the project (or the working directory)."""
    env = os.environ.get("MMLREPRO_RESULTS_DIR")
    if env:
        return Path(env)
    if (PROJECT_ROOT / "pyproject.toml").exists():
        return PROJECT_ROOT / "results"
    return Path.cwd() / "results"


def git_commit(root: Path = PROJECT_ROOT) -> str:
    """The checkout's commit, with ``-dirty`` when tracked files differ; ``unknown`` outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance() -> dict[str, Any]:
    return {
        "time_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "mmlrepro": mmlrepro.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
        "git_commit": git_commit(),
    }


def atomic_write_json(data: Any, path: Path) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultsStore:
    """A folder of run results keyed by ``RunConfig.key()``."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_results_dir()
        self.runs_dir = self.root / "runs"

    def path(self, config: RunConfig) -> Path:
        return self.runs_dir / f"{config.key()}.json"

    def __contains__(self, config: RunConfig) -> bool:
        return self.path(config).exists()

    def get(self, config: RunConfig) -> RunResult | None:
        path = self.path(config)
        if not path.exists():
            return None
        return RunResult.from_dict(json.loads(path.read_text()))

    def put(self, result: RunResult) -> Path:
        if not result.provenance:
            result.provenance = provenance()
        path = self.path(result.config)
        atomic_write_json(result.to_dict(), path)
        return path

    def run(self, config: RunConfig, *, force: bool = False, **train_kwargs: Any) -> RunResult:
        """The stored result of ``config``, or train it, store it and return it."""
        if not force:
            stored = self.get(config)
            if stored is not None:
                return stored
            derived = self.derive_early_stop(config)
            if derived is not None:
                return derived
        result = train(config, **train_kwargs)
        self.put(result)
        return result

    def derive_early_stop(self, config: RunConfig) -> RunResult | None:
        """Store and return ``config``'s early-stopped run read off its stored ``paper`` twin.

        ``None`` when ``config`` is not an ``early_stop`` run without ``lr_reduce`` or the store
        lacks the twin. See :func:`mmlrepro.train.early_stop_from_history` for why this equals
        training it; the provenance names the twin (``derived_from``) and keeps its provenance.
        """
        if config.selection != "early_stop" or config.lr_reduce:
            return None
        twin = self.get(config.replace(selection="paper"))
        if twin is None:
            return None
        result = early_stop_from_history(twin, config)
        result.provenance = {**provenance(), "derived_from": twin.config.key(),
                             "twin_provenance": twin.provenance}
        self.put(result)
        return result

    def records(self) -> Iterable[dict[str, Any]]:
        if not self.runs_dir.exists():
            return []
        return [json.loads(p.read_text()) for p in sorted(self.runs_dir.glob("*.json"))]


def _row(record: dict[str, Any]) -> dict[str, Any]:
    config = record["config"]
    best, last, test = record["best"], record["last"], record.get("test") or {}
    row = {
        "key": record["key"],
        "group": config.get("group", ""),
        "profile": config["profile"],
        "dataset": config["dataset"],
        "model": config["model"],
        "loss": config["loss"],
        "loss_params": json.dumps(config["loss_params"], sort_keys=True),
        "n_negatives": config["n_negatives"],
        "batch_size": config["batch_size"],
        "selection": config["selection"],
        "monitor": config["monitor"],
        "seed": config["seed"],
        "epochs": config["epochs"],
        "best_epoch": best["epoch"],
        "epochs_run": last["epoch"],
        "device": record["device"],
        "train_s": record["timings"]["train_s"],
        "eval_s": record["timings"]["eval_s"],
        "time_utc": record.get("provenance", {}).get("time_utc", ""),
        "git_commit": record.get("provenance", {}).get("git_commit", ""),
        "derived_from": record.get("provenance", {}).get("derived_from", ""),
    }
    reported = test if config["selection"] == "honest" else best
    for metric in ("recall@20", "ndcg@20", "recall@50", "ndcg@50"):
        row[metric] = reported.get(metric, float("nan"))
        row[f"last_{metric}"] = last.get(metric, float("nan"))
        row[f"selection_{metric}"] = best.get(metric, float("nan"))
    for name, value in config["loss_params"].items():
        row[f"hp_{name}"] = json.dumps(value) if isinstance(value, list) else value
    return row


def load_results(results_dir: str | Path | None = None) -> pd.DataFrame:
    """Every stored run as one tidy row: config fields, the reported metrics, timings, device.

    ``recall@20`` etc. are the numbers a paper table shows: the selected epoch's test metrics
    (``paper``/``early_stop``), or the once-evaluated test metrics of an ``honest`` run (whose
    ``selection_*`` columns hold the validation metrics that chose the epoch).
    """
    rows = [_row(r) for r in ResultsStore(results_dir).records()]
    return pd.DataFrame(rows)
