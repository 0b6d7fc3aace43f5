"""Linear runs: :class:`LinearConfig`, the ``linear`` group's grid, fitting, storing and reading runs.

A run is one EASE or iALS fit evaluated with the SPEC §7 metrics and stored as
``results/linear/<key>.json`` (:func:`save_linear_result`); :func:`run_linear_group` fits the
runs of :func:`linear_grid` that the folder lacks (``mmlrepro reproduce`` reaches it through
:func:`mmlrepro.runner.run_missing`). The quick profile fits on the top ``QUICK_ITEMS`` items
(:func:`reduce_items`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmlrepro.config import PROFILES as RUN_PROFILES
from mmlrepro.data import NAMES as DATASETS
from mmlrepro.data import Dataset, load_dataset
from mmlrepro.devices import device_name, resolve_device
from mmlrepro.files import atomic_write_json, check_writable
from mmlrepro.linear.checks import check_int, check_number, check_tau
from mmlrepro.linear.ease_model import EASE, ease, ease_priors
from mmlrepro.linear.ials_model import IALS, IALS_DEFAULTS, ials
from mmlrepro.metrics import evaluate
from mmlrepro.results import default_results_dir, provenance, set_aside

METHODS = ("ease", "ials")
PROFILES = (*(p for p in RUN_PROFILES if p != "smoke"), "custom")  # a smoke run fits the quick grid
EASE_LAMBDAS = (50.0, 80.0, 150.0, 300.0, 500.0)
# Debiased variants [assumed]; biased runs use τ⁺ = 0. τ⁺ is the chance that an unobserved pair
# is a true positive; the train density is 0.0007 (Gowalla) / 0.0010 (Yelp2018), so these are
# generous values. (Top-4000-item Gowalla, λ = 80: τ⁺ = 0.2 moves EASE Recall@20 by +0.5%.)
TAU_PLUS = (0.01, 0.05)
QUICK_ITEMS = 4000  # quick profile: keep the 4,000 most popular train items [assumed]
QUICK_IALS_EPOCHS = 8
# the paper grid of iALS: it brackets IALS_DEFAULTS (α 100, reg 0.01) by ≈3× each way [assumed]
IALS_GRID = {"alpha": (30.0, 100.0, 300.0), "reg": (0.003, 0.01, 0.03)}


def reduce_items(dataset: Dataset, n_items: int) -> Dataset:
    """Keep the ``n_items`` most popular train items (ties: smaller id first), renumbered by
    decreasing popularity; other items leave train and test. All users are kept (the quick
    profile: EASE's cost is set by the item count) [assumed]."""
    n_items = check_int("n_items", n_items)
    if n_items >= dataset.n_items:
        return dataset
    order = np.argsort(-dataset.item_popularity(), kind="stable")[:n_items]
    new_id = np.full(dataset.n_items, -1, dtype=np.int64)
    new_id[order] = np.arange(n_items)

    def keep(split: str) -> tuple[np.ndarray, np.ndarray]:
        indptr, indices = dataset.csr(split)
        mapped = new_id[indices]
        kept = mapped >= 0
        rows = np.repeat(np.arange(dataset.n_users), np.diff(indptr))
        counts = np.bincount(rows[kept], minlength=dataset.n_users)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), mapped[kept]

    return Dataset(f"{dataset.name}-top{n_items}", dataset.n_users, n_items,
                   *keep("train"), *keep("test"))


_EASE_FIELDS = ("lam",)
_IALS_FIELDS = ("dim", "alpha", "reg", "reg_exp", "epochs")
_NOT_IN_KEY = ("device",)


@dataclass(frozen=True)
class LinearConfig:
    """One EASE or iALS run. Parameters of the other method must stay ``None``; the method's own
    ones default to ``lam = 300`` / ``IALS_DEFAULTS`` (``quick``: ``QUICK_IALS_EPOCHS`` epochs).

    ``profile="quick"`` fits on :func:`reduce_items` (top ``QUICK_ITEMS`` items): an EASE run takes
    seconds and an iALS run about a minute on a 2-core CPU; ``paper`` and ``custom`` use the full
    dataset. ``key()`` hashes every
    field but ``device`` (as ``RunConfig.key``): the same run has the same key on every machine.
    """

    dataset: str
    method: str = "ease"
    lam: float | None = None
    dim: int | None = None
    alpha: float | None = None
    reg: float | None = None
    reg_exp: float | None = None
    epochs: int | None = None
    tau_plus: float = 0.0
    seed: int = 0
    profile: str = "custom"
    device: str = "auto"

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ValueError(f"LinearConfig.{name}: {why}")

        if not isinstance(self.dataset, str) or not self.dataset:
            bad("dataset", f"must be a dataset name or folder, got {self.dataset!r}")
        if self.method not in METHODS:
            bad("method", f"must be one of {METHODS}, got {self.method!r}")
        if self.profile not in PROFILES:
            bad("profile", f"must be one of {PROFILES}, got {self.profile!r}")
        own, other = ((_EASE_FIELDS, _IALS_FIELDS) if self.method == "ease"
                      else (_IALS_FIELDS, _EASE_FIELDS))
        for name in other:
            if getattr(self, name) is not None:
                bad(name, f"is not a parameter of {self.method!r}; leave it None")
        defaults = {"lam": 300.0, **IALS_DEFAULTS}
        if self.profile == "quick":
            defaults["epochs"] = QUICK_IALS_EPOCHS
        for name in own:
            if getattr(self, name) is None:
                object.__setattr__(self, name, defaults[name])
        try:
            if self.method == "ease":
                object.__setattr__(self, "lam", check_number("lam", self.lam, low=0.0))
            else:
                object.__setattr__(self, "dim", check_int("dim", self.dim))
                object.__setattr__(self, "epochs", check_int("epochs", self.epochs))
                for name, low_ok in (("alpha", True), ("reg", False), ("reg_exp", True)):
                    object.__setattr__(self, name, check_number(name, getattr(self, name),
                                                                low=0.0, low_ok=low_ok))
            object.__setattr__(self, "tau_plus", check_tau(self.tau_plus))
            object.__setattr__(self, "seed", check_int("seed", self.seed, low=0))
        except ValueError as err:
            raise ValueError(f"LinearConfig.{err}") from None
        if not (self.device == "auto" or self.device.startswith(("cpu", "cuda", "mps"))):
            bad("device", f"must be 'auto', 'cpu', 'cuda[:i]' or 'mps', got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinearConfig:
        return cls(**data)

    def key(self) -> str:
        """First 16 hex digits of the SHA-256 of the canonical JSON of every field but device."""
        payload = {k: v for k, v in self.to_dict().items() if k not in _NOT_IN_KEY}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> LinearConfig:
        return dataclasses.replace(self, **changes)

    def label(self) -> str:
        hp = (f"lam{self.lam:g}" if self.method == "ease" else
              f"d{self.dim}/a{self.alpha:g}/r{self.reg:g}/nu{self.reg_exp:g}/e{self.epochs}")
        return f"{self.dataset}/{self.method}/{hp}/tau{self.tau_plus:g} [{self.profile}]"


def linear_dataset(config: LinearConfig, data_dir: str | None = None) -> Dataset:
    """The run's data: ``load_dataset(config.dataset)``, reduced to the top ``QUICK_ITEMS`` items
    for the quick profile."""
    dataset = load_dataset(config.dataset, data_dir=data_dir)
    return reduce_items(dataset, QUICK_ITEMS) if config.profile == "quick" else dataset


def fit_linear(config: LinearConfig, dataset: Dataset, show_progress: bool = False
               ) -> EASE | IALS:
    device = resolve_device(config.device)
    if config.method == "ease":
        return ease(dataset, config.lam, device=device, tau_plus=config.tau_plus)
    return ials(dataset, config.dim, config.alpha, config.reg, config.epochs,
                reg_exp=config.reg_exp, seed=config.seed, device=device,
                tau_plus=config.tau_plus, show_progress=show_progress)


def run_linear(config: LinearConfig, dataset: Dataset | None = None, data_dir: str | None = None,
               show_progress: bool = False) -> dict[str, Any]:
    """Fit and evaluate one config (SPEC §7 metrics).

    ``dataset`` defaults to :func:`linear_dataset`; pass it to reuse a loaded one (the quick
    reduction is then the caller's business). Returns ``{"key", "config", "metrics", "timings":
    {"fit_s", "eval_s"}, "device", "history", "provenance"}`` (JSON-ready).
    """
    if dataset is None:
        dataset = linear_dataset(config, data_dir)
    device = resolve_device(config.device)
    start = time.perf_counter()
    model = fit_linear(config, dataset, show_progress)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return linear_result(config, dataset, model, time.perf_counter() - start)


def linear_result(config: LinearConfig, dataset: Dataset, model: EASE | IALS, fit_s: float
                  ) -> dict[str, Any]:
    """Evaluate a fitted ``model`` of ``config`` and return the JSON-ready record of
    :func:`run_linear`."""
    start = time.perf_counter()
    metrics = evaluate(model, dataset)
    eval_s = time.perf_counter() - start
    return {
        "key": config.key(),
        "config": config.to_dict(),
        "dataset": repr(dataset),
        "metrics": metrics,
        "timings": {"fit_s": fit_s, "eval_s": eval_s},
        "device": device_name(model.device),
        "history": getattr(model, "history", []),
        "provenance": provenance(),
    }


def read_linear_results(folder: str | Path, log: Any = print) -> list[dict[str, Any]]:
    """Every valid record of ``folder/*.json`` (written by :func:`save_linear_result`), by file
    name; a file that does not parse or lacks ``config`` / ``metrics`` is reported with its path
    (``log``, one line, e.g. ``print`` to stderr) and left out, as the runs store does."""
    out = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict) or not isinstance(record.get("config"), dict) \
                    or not isinstance(record.get("metrics"), dict):
                raise ValueError("not a linear result (no config or metrics)")
        except (OSError, UnicodeDecodeError, ValueError) as err:
            if log:
                log(f"warning: {path}: {err.__class__.__name__}: {err}; treated as missing")
            continue
        out.append(record)
    return out


def save_linear_result(result: dict[str, Any], folder: str | Path | None = None) -> Path:
    """Write ``result`` to ``<folder>/<key>.json`` (default ``results/linear/``), atomically."""
    folder = Path(folder) if folder is not None else default_results_dir() / "linear"
    path = folder / f"{result['key']}.json"
    atomic_write_json(result, path)
    return path


def linear_grid(profile: str = "paper", datasets: tuple[str, ...] = DATASETS
                ) -> list[LinearConfig]:
    """The ``linear`` group: biased (τ⁺ = 0) and debiased (τ⁺ ∈ ``TAU_PLUS``) runs on both
    datasets. ``paper``: EASE over λ ∈ ``EASE_LAMBDAS`` and iALS over ``IALS_GRID`` (α × reg;
    dim 64, ν = 1, 16 epochs): 2 × 3 × (5 + 9) = 84 runs (a GPU job: one full-data EASE fit is
    ~10 min on a 2-core CPU). ``quick``: top-``QUICK_ITEMS`` items, EASE over the same λ and
    iALS at ``IALS_DEFAULTS`` only, ``QUICK_IALS_EPOCHS`` epochs: 36 runs, about 10 minutes on
    a 2-core CPU."""
    if profile not in ("paper", "quick"):
        raise ValueError(f"profile must be 'paper' or 'quick', got {profile!r}")
    grid = (IALS_GRID if profile == "paper"
            else {"alpha": (IALS_DEFAULTS["alpha"],), "reg": (IALS_DEFAULTS["reg"],)})
    out = []
    for name in datasets:
        for tau in (0.0, *TAU_PLUS):
            out += [LinearConfig(name, "ease", lam=lam, tau_plus=tau, profile=profile)
                    for lam in EASE_LAMBDAS]
            out += [LinearConfig(name, "ials", alpha=a, reg=r, tau_plus=tau, profile=profile)
                    for a in grid["alpha"] for r in grid["reg"]]
    return out


# --------------------------------------------------------------------------------------------
# the linear group (Li et al.: EASE and iALS, biased vs debiased; issue 7)


def _stdout(line: str) -> None:
    print(line, flush=True)


def run_linear_group(profile: str, *, results_dir: str | Path | None = None,
                     datasets: Iterable[str] = DATASETS, device: str | None = None,
                     data_dir: str | None = None, log: Callable[[str], None] | None = _stdout) -> int:
    """Fit the EASE / iALS runs of :func:`linear_grid` that ``results/linear/`` lacks; returns
    how many were fitted.

    The folder and the device are checked before any data is loaded; Ctrl-C raises
    :class:`mmlrepro.train.RunInterrupted` saying how many fits were stored (each is stored when
    done), in the words of :func:`mmlrepro.runner.run_missing`."""
    root = Path(results_dir) if results_dir is not None else default_results_dir()
    folder = check_writable(root / "linear", "linear results folder")
    if device is not None:
        resolve_device(device)
    grid = [c for c in linear_grid("quick" if profile == "smoke" else profile) if c.dataset in set(datasets)]
    held = {r.get("key") for r in read_linear_results(folder, log=log)}
    todo = [c.replace(device=device) if device else c for c in grid if c.key() not in held]
    for c in todo:      # a bad file in the way is kept aside, not overwritten
        if (folder / f"{c.key()}.json").exists():
            dest = set_aside(folder / f"{c.key()}.json", root / "set_aside" / "linear")
            if log:
                log(f"note: {folder / f'{c.key()}.json'} was not a valid result: moved to {dest}")
    if log:
        log(f"linear [{profile}]: {len(grid)} runs planned, {len(todo)} to run")
    done: list[Any] = []

    def record(config, result) -> None:
        save_linear_result(result, folder)
        done.append(config)
        if log:
            log(f"[linear {len(done)}/{len(todo)}] {config.label()}: recall@20 {result['metrics']['recall@20']:.4f}")

    try:
        _fit_linear(todo, data_dir, record)
    except KeyboardInterrupt as err:   # a linear fit never raises RunInterrupted itself
        from mmlrepro.train import RunInterrupted  # here: reading linear runs loads no trainer

        raise RunInterrupted.between_runs(err, len(done), len(todo), folder) from None
    return len(todo)


def _fit_linear(todo: list[Any], data_dir: str | None, record: Callable[[Any, dict], None]) -> None:
    """Fit and ``record`` each linear config of ``todo``; EASE shares one inversion per
    (dataset, λ) among its priors τ⁺ (:func:`~mmlrepro.linear.ease_model.ease_priors`)."""
    families: dict[tuple, list] = {}
    for config in todo:
        if config.method == "ease":
            families.setdefault((config.dataset, config.profile, config.lam, config.device), []).append(config)
    for configs in families.values():
        dataset = linear_dataset(configs[0], data_dir)
        start = time.perf_counter()
        models = ease_priors(dataset, configs[0].lam, [c.tau_plus for c in configs], device=configs[0].device)
        for config, model in zip(configs, models, strict=True):
            result = linear_result(config, dataset, model, time.perf_counter() - start)
            result["timings"]["inverse_shared"] = config is not configs[0]
            del model   # before the next prior's copy: at most two n_items² matrices
            record(config, result)
            start = time.perf_counter()
    for config in todo:
        if config.method != "ease":
            record(config, run_linear(config, data_dir=data_dir))
