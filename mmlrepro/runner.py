"""Train what the store lacks: one run, or the planned runs of whole groups (issue 14).

The flow is one way: :func:`run` looks a config up in the store (by its key on the data actually
loaded), reads an early-stopped run off its stored twin, or trains it and stores it;
:func:`run_missing` does that for the catalogue's plan. Every output location and the device are
checked, and the data loaded, before the first step, so a run never trains and then fails to
save; the run itself (data against K, user subsample, negatives) is checked by
:func:`mmlrepro.preflight.check_run` before any step. Should storing a finished run still fail, it is
written to a rescue file that the error names (:func:`_save`). Ctrl-C during ``run_missing`` says
how many runs were stored and that the same command goes on. The settings of what is about to be
trained are printed first. ``run_missing(..., jobs=K)`` trains K runs at a time in worker
processes or as Ray tasks (:mod:`mmlrepro.jobs`); this process alone writes the store, and each
run is leased in it while it trains (:mod:`mmlrepro.leases`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable, Set
from pathlib import Path
from typing import Any

from mmlrepro.catalogue import DATASETS, catalogue_key, plan, seeds
from mmlrepro.checkpoint import CHECKPOINT_EVERY_S, default_checkpoint_dir
from mmlrepro.config import RunConfig
from mmlrepro.data import KNOWN_FINGERPRINTS, Dataset
from mmlrepro.devices import resolve_device
from mmlrepro.files import atomic_write, atomic_write_json, check_writable, describe_error
from mmlrepro.jobs import Workers, train_parallel
from mmlrepro.kernels import COMPILED_SCORES, PYTORCH_SCORES, trained_with_compiled_scores
from mmlrepro.leases import Leases
from mmlrepro.linear.runs import run_linear_group
from mmlrepro.per_user import save_per_user
from mmlrepro.preflight import check_run, load_run_dataset
from mmlrepro.results import (
    RecordExists,
    ResultsStore,
    RunResult,
    StoreError,
    provenance,
)
from mmlrepro.selection import early_stop_from_history
from mmlrepro.train import RunInterrupted, train


def _stdout(line: str) -> None:
    print(line, flush=True)


def derive_early_stop(store: ResultsStore, config: RunConfig, data_fingerprint: str,
                      replace: bool = False) -> RunResult | None:
    """Store and return ``config``'s early-stopped run read off its stored ``paper`` twin.

    ``None`` when ``config`` is not an ``early_stop`` run without ``lr_reduce`` or the store
    lacks the twin. See :func:`mmlrepro.selection.early_stop_from_history` for why this equals
    training it (it keeps the twin's per-user values when both select the same epoch); the
    provenance names the twin (``derived_from``) and keeps its provenance. ``replace``: a stored
    record of ``config`` is set aside and replaced.
    """
    if config.selection != "early_stop" or config.lr_reduce:
        return None
    twin = store.get(config.replace(selection="paper"), data_fingerprint)
    if twin is None:
        return None
    result = early_stop_from_history(twin, config, twin.per_user)
    result.provenance = {**provenance(), "derived_from": twin.key, "twin_provenance": twin.provenance}
    try:
        store.put(result, replace=replace)
    except RecordExists:     # another process read it off (or trained it) a moment ago
        return store.get(config, data_fingerprint) or result
    return result


def run_key(config: RunConfig, data_dir: str | None = None, dataset: Dataset | None = None) -> str:
    """The key ``config`` has on its data as loaded here (``dataset``, or ``config.dataset``)."""
    source = dataset if dataset is not None else load_run_dataset(config, data_dir)
    return config.key(source.fingerprint)


def _check_outputs(store: ResultsStore, checkpoint_dir: str | Path | None, device: str | None,
                   linear: bool = False) -> None:
    """Everything a run writes, and its device, checked before any data is loaded (issue 15)."""
    if device is not None:
        resolve_device(device)
    store.check_writable()
    check_writable(checkpoint_dir or default_checkpoint_dir(), "checkpoint folder")
    if linear:
        check_writable(store.root / "linear", "linear results folder")
    store.require_current_schema()


def _data_note(config: RunConfig, source: Dataset) -> str:
    known = KNOWN_FINGERPRINTS.get(config.dataset)
    if known is None or known == source.fingerprint:
        return ""
    return (f"note: {config.dataset} as loaded (fingerprint {source.fingerprint}) is not the LightGCN "
            f"split (fingerprint {known}): its runs are stored under their own keys, and the report, "
            "which shows the paper's data, leaves them out")


def _rescue(result: RunResult, root: Path) -> Path | None:
    """Write a finished run the store could not take to the first folder that takes it:
    ``<store>/rescued/``, ``~/.cache/mmlrepro/rescued/``, the temporary folder. The JSON is a
    store record (``RunResult.from_dict`` reads it back); per-user values go beside it (.npz)."""
    name = f"mmlrepro-rescued-{result.key}.json"
    for folder in (root / "rescued", Path.home() / ".cache" / "mmlrepro" / "rescued", Path(tempfile.gettempdir())):
        try:
            path = atomic_write_json(result.to_dict(), folder / name)
            if result.per_user is not None:
                atomic_write(path.with_suffix(".npz"), lambda tmp: save_per_user(result.per_user, tmp))
            return path
        except OSError:
            continue
    return None


def _save(store: ResultsStore, result: RunResult, replace: bool) -> None:
    """Store a finished run; if that fails after all, keep it in a rescue file and say where."""
    try:
        store.put(result, replace=replace)
    except BaseException as err:
        if not isinstance(err, Exception | KeyboardInterrupt):
            raise
        rescue = _rescue(result, store.root)
        kept = (f"the finished run is kept in {rescue}" if rescue is not None
                else "no rescue file could be written either")
        if isinstance(err, KeyboardInterrupt):
            raise RunInterrupted(f"{result.config.label()}: interrupted while it was being stored; {kept}") from None
        raise StoreError(f"{result.config.label()}: storing the finished run in {store.root} failed "
                         f"({describe_error(err)}); {kept}") from err


def run(config: RunConfig, *, results_dir: str | Path | None = None, store: ResultsStore | None = None,
        dataset: Dataset | None = None, data_dir: str | None = None, force: bool = False,
        log: Callable[[str], None] | None = _stdout, **train_kwargs: Any) -> RunResult:
    """The stored result of ``config`` on its data, or train it, store it and return it.

    ``dataset`` is the run's source data (default: loaded from ``config.dataset``); the key
    includes its fingerprint, so a stored run of other data is never served. With ``force`` the
    run is trained again and replaces the stored one (which is set aside, not deleted), scoring
    its negatives by the path the stored one took (:func:`mmlrepro.kernels.trained_with_compiled_scores`;
    a ``compiled_scores`` given overrides it), so the retrained history can be compared with it.
    A run to train is leased in the store first, as ``reproduce`` leases its runs
    (:mod:`mmlrepro.leases`): while another live process holds the lease this raises
    :class:`StoreError` naming it, before any compute (a stale lease is taken over).
    """
    log = log or (lambda line: None)
    store = store or ResultsStore(results_dir)
    _check_outputs(store, train_kwargs.get("checkpoint_dir"), config.device)
    source = dataset if dataset is not None else load_run_dataset(config, data_dir)
    if not force and (found := _stored_or_derived(config, store, source.fingerprint)) is not None:
        return found
    check_run(config, source)      # a run that cannot train leases nothing
    key = config.key(source.fingerprint)
    leases = Leases(store.root)
    got, note = leases.acquire(key)
    if not got:
        raise StoreError(f"{config.label()} #{key} is being trained: its lease is held by {note}; it is stored when that "
                         "process finishes (run this again then), or stop that process first")
    if note:
        log(f"{config.label()} #{key}: {note}; its checkpoint, if any, resumes")
    with leases.heartbeat():    # released when the run is stored, or fails
        return _stored_or_trained(config, store, source, data_dir, force, log, **train_kwargs)


def _stored_or_derived(config: RunConfig, store: ResultsStore, fingerprint: str) -> RunResult | None:
    """The stored run of ``config``, or its early-stopped run read off its stored twin, or None."""
    return store.get(config, fingerprint) or derive_early_stop(store, config, fingerprint)


def _stored_or_trained(config: RunConfig, store: ResultsStore, dataset: Dataset | None, data_dir: str | None,
                       force: bool, log: Callable[[str], None], **train_kwargs: Any) -> RunResult:
    """:func:`run` after its checks of the outputs and the device (done once per plan by
    :func:`run_missing`)."""
    source = dataset if dataset is not None else load_run_dataset(config, data_dir)
    fingerprint = source.fingerprint
    if not force and (found := _stored_or_derived(config, store, fingerprint)) is not None:
        return found
    check_run(config, source)
    if note := _data_note(config, source):
        log(note)
    log(f"training {config.label()} #{config.key(fingerprint)}: {config.settings()}")
    if force and "compiled_scores" not in train_kwargs and (stored := store.get(config, fingerprint)) is not None:
        # the paths agree to float rounding only: the stored run's, so the histories compare bit for bit
        train_kwargs["compiled_scores"] = trained_with_compiled_scores(stored.provenance)
        path = COMPILED_SCORES if train_kwargs["compiled_scores"] else PYTORCH_SCORES
        log(f"{config.label()}: its negatives are scored by the {path} path, as the stored run's were, so the two "
            "histories can be compared bit for bit on the same CPU")
    result = train(config, dataset=source, **train_kwargs)
    _save(store, result, replace=force)
    return result


def missing_runs(groups: Iterable[str], profile: str, n_seeds: int,
                 results_dir: str | Path | None = None,
                 datasets: Iterable[str] = DATASETS) -> list[RunConfig]:
    """The planned runs the store does not hold yet, on the paper's data (no data is loaded)."""
    store = ResultsStore(results_dir)
    held = {r["key"] for r in store.records()}
    return [c for c in plan(groups, profile, n_seeds, datasets) if catalogue_key(c) not in held]


def run_missing(groups: Iterable[str], profile: str, n_seeds: int = 1, *,
                results_dir: str | Path | None = None, datasets: Iterable[str] = DATASETS,
                device: str | None = None, data_dir: str | None = None,
                max_minutes: float | None = None, refresh_per_user: bool = False,
                jobs: int | None = None,
                workers: Workers | None = None, checkpoint_every_s: float = CHECKPOINT_EVERY_S,
                log: Callable[[str], None] | None = _stdout) -> list[RunConfig]:
    """Train the planned runs the store lacks, in plan order, logging progress and ETA.

    Outputs and the device are checked and every dataset involved is loaded first, so a missing
    dataset or an unwritable store fails before any training. An early-stopped ("Y") run whose
    "N" twin is stored is read off the twin's history instead of trained (:func:`derive_early_stop`);
    the plan puts the "N" runs first. With ``max_minutes``, no run is started once the elapsed
    time plus the mean time of the runs done so far would pass the budget (for lent GPUs with a
    per-call limit). With ``refresh_per_user``, stored runs of the plan that have no per-user
    values (trained before issue 16) are trained again, or read off their refreshed twin, and
    replace the stored record, which is set aside, not lost. Returns the configs that were trained.

    ``jobs`` K > 1 (or ``workers``, :class:`mmlrepro.jobs.Workers`, for devices, threads and
    Ray) trains K runs at a time in worker processes (:func:`mmlrepro.jobs.train_parallel`); the
    default trains one run after the other in this process. Either way every run is leased in
    the store while it trains (:mod:`mmlrepro.leases`): a run leased by another live process is
    skipped, a stale lease is taken over and the run's checkpoint resumed.
    """
    log = log or (lambda line: None)
    if max_minutes is not None and not max_minutes >= 0:  # 0: only the first run
        raise ValueError(f"max_minutes must be >= 0, got {max_minutes}")
    if workers is not None and jobs is not None:
        raise ValueError("give either jobs or workers (which has its own jobs), not both")
    workers = workers or Workers(jobs=jobs)
    workers.check(device)
    seeds(n_seeds)    # a bad seed count is refused before the linear group fits anything
    groups, datasets = list(groups), list(datasets)
    if unknown := [d for d in datasets if d not in DATASETS]:
        raise ValueError(f"unknown dataset {unknown[0]!r}; the catalogue covers {', '.join(DATASETS)}")
    store = ResultsStore(results_dir)
    _check_outputs(store, None, device, linear="linear" in groups)
    if "linear" in groups:
        groups.remove("linear")
        run_linear_group(profile, results_dir=results_dir, datasets=datasets, device=device,
                         data_dir=data_dir, log=log)
    if not groups:
        return []
    runs = plan(groups, profile, n_seeds, datasets)
    sources = {name: load_run_dataset(runs[0].replace(dataset=name), data_dir)
               for name in sorted({c.dataset for c in runs})}
    for config in runs[:1] + [c for c in runs if c.dataset != runs[0].dataset][:1]:
        if note := _data_note(config, sources[config.dataset]):
            log(note)
    missing = [c for c in runs if not store.contains(c, sources[c.dataset].fingerprint)
               and derive_early_stop(store, c, sources[c.dataset].fingerprint) is None]
    stale = {key for c in runs if c not in missing and refresh_per_user
             and not store.has_per_user(key := c.key(sources[c.dataset].fingerprint))}
    todo = [c for c in runs if c in missing or c.key(sources[c.dataset].fingerprint) in stale]
    log(f"{len(runs)} runs planned for {', '.join(groups)} [{profile}], "
        f"{len(runs) - len(missing)} already in {store.root} (early-stopped ones read off their "
        f"stored twins included), {len(missing)} to run"
        + (f", {len(stale)} stored without per-user values to run again" if refresh_per_user else ""))
    for config in todo:
        check_run(config.replace(device=device) if device else config, sources[config.dataset])
    done: list[RunConfig] = []
    try:
        if workers.parallel:
            train_parallel(todo, store, sources, workers, device=device, data_dir=data_dir,
                           save=lambda result: _save(store, result, replace=result.key in stale),
                           stored=lambda c: _held(store, c, sources[c.dataset].fingerprint, stale),
                           max_minutes=max_minutes, checkpoint_every_s=checkpoint_every_s,
                           log=log, done=done)
        else:
            _train_in_turn(todo, store, sources, device, max_minutes, checkpoint_every_s, log, done, stale)
    except (KeyboardInterrupt, RunInterrupted) as err:
        raise RunInterrupted.between_runs(err, len(done), len(todo), store.root) from None
    return done


def _held(store: ResultsStore, config: RunConfig, fingerprint: str, stale: Set[str]) -> bool:
    """Whether the store holds ``config``'s run now, or can read it off its stored twin; a run in
    ``stale`` (to refresh) only once its per-user values are stored, or it is read off its twin
    again (:func:`run_missing` with ``jobs``, checked just before each run starts)."""
    key = config.key(fingerprint)
    if key in stale:
        return (store.has_per_user(key)
                or derive_early_stop(store, config, fingerprint, replace=True) is not None)
    return store.contains(config, fingerprint) or derive_early_stop(store, config, fingerprint) is not None


def _train_in_turn(todo: list[RunConfig], store: ResultsStore, sources: dict[str, Dataset],
                   device: str | None, max_minutes: float | None, checkpoint_every_s: float,
                   log: Callable[[str], None], done: list[RunConfig], replace: Set[str] = frozenset()) -> None:
    """:func:`run_missing`'s loop: train ``todo`` in order, appending each finished config to
    ``done``; a run another process has leased is skipped (:mod:`mmlrepro.leases`); a run whose
    key is in ``replace`` is read off its twin again or retrained, and replaces its stored record,
    unless its per-user values were stored meanwhile (another ``--refresh-per-user`` on the same
    store got to it first)."""
    start = time.perf_counter()
    with Leases(store.root).heartbeat() as leases:
        for i, config in enumerate(todo, 1):
            elapsed = time.perf_counter() - start
            if max_minutes is not None and done and elapsed + elapsed / len(done) > max_minutes * 60:
                log(f"time budget of {max_minutes} min reached: {len(todo) - len(done)} runs left for later")
                break
            key = config.key(sources[config.dataset].fingerprint)
            got, note = leases.acquire(key)
            if not got:
                log(f"[{i}/{len(todo)}] skipped {config.label()} #{key}: its lease is held by {note}")
                continue
            if note:
                log(f"{config.label()} #{key}: {note}; its checkpoint, if any, resumes")
            if key in replace and store.has_per_user(key):   # another process refreshed it
                leases.release(key)
                log(f"[{i}/{len(todo)}] skipped {config.label()} #{key}: its per-user values were stored meanwhile")
                continue
            try:
                _train_one(config, store, sources, device, checkpoint_every_s, log, done, i, len(todo), start,
                           key in replace)
            finally:
                leases.release(key)


def _train_one(config: RunConfig, store: ResultsStore, sources: dict[str, Dataset], device: str | None,
               checkpoint_every_s: float, log: Callable[[str], None], done: list[RunConfig],
               i: int, n: int, start: float, replace: bool = False) -> None:
    """One run of :func:`_train_in_turn`, with its progress line; ``replace``: the stored record
    is read off its twin again, or retrained, and replaced."""
    if device:
        config = config.replace(device=device)
    source = sources[config.dataset]
    derived = derive_early_stop(store, config, source.fingerprint, replace=True) if replace else None
    result = derived or _stored_or_trained(config, store, source, None, replace, log,
                                           checkpoint_every_s=checkpoint_every_s)
    done.append(config)
    elapsed = time.perf_counter() - start
    eta = elapsed / i * (n - i)
    log(f"[{i}/{n}] {config.label()}: recall@20 {result.best['recall@20']:.4f} "
        f"ndcg@20 {result.best['ndcg@20']:.4f} (best epoch {result.best['epoch']}) "
        f"| {elapsed / 60:.1f} min elapsed, ETA {eta / 60:.1f} min")
