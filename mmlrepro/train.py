"""Training one run: the loop, model selection and checkpoints (SPEC §3, §4, §6).

:func:`train` runs a :class:`~mmlrepro.config.RunConfig` on its data and returns a
:class:`~mmlrepro.results.RunResult`; the optimiser step is :class:`mmlrepro.step.ExactStep`, the
negatives come from :func:`mmlrepro.sampling.sample_negatives` (the one sampling entry point),
and the evaluation is :func:`mmlrepro.metrics.evaluate`. :func:`select_best` is the one selection
rule: it picks the reported epoch, the weights an honest run tests, and the weights ``lr_reduce``
reloads. :func:`early_stop_from_history` reads an early-stopped run off its "N" twin.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmlrepro.config import SUBSAMPLE_SEED, RunConfig
from mmlrepro.data import Dataset, load_named_or_synthetic
from mmlrepro.devices import device_memory, device_name, resolve_device, run_device
from mmlrepro.files import atomic_write, check_writable
from mmlrepro.losses import get_loss
from mmlrepro.metrics import EvalIndex, PerUser, evaluate
from mmlrepro.models import MF, SimpleX, kernel_scores
from mmlrepro.results import RunResult, provenance
from mmlrepro.sampling import positive_keys, sample_negatives
from mmlrepro.step import ExactStep, batch_loss

# A checkpoint after an epoch once this many seconds have passed since the last (train()).
CHECKPOINT_EVERY_S = 30.0
LR_REDUCE_FACTOR, LR_FLOOR = 0.1, 1e-6   # the SimpleX schedule (SPEC §6)
MAX_NEGATIVES = 100_000   # the most negatives per row a run may draw (check_negatives)
# Off the CPU the loss's finiteness is read back every this many steps (one host sync each).
FINITE_CHECK_STEPS = 50


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message names the epoch and the step."""


class RunInterrupted(RuntimeError):
    """Ctrl-C during a run; the message says which checkpoint is kept and how to resume."""


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def finite_check_every(device: torch.device) -> int:
    """How often (in steps) the training loop reads its on-device non-finite-loss flag back.

    Every step on the CPU, where the read costs nothing, so a bad step is never applied; every
    :data:`FINITE_CHECK_STEPS` steps on a GPU, so a step never waits for the host and a run
    with a NaN loss stops within that many steps, its first bad step named.
    """
    return 1 if device.type == "cpu" else FINITE_CHECK_STEPS


# --------------------------------------------------------------------------------------------
# data and model


def load_run_dataset(config: RunConfig, data_dir: str | None = None) -> Dataset:
    """The source dataset of a run: a name, a folder, or ``synthetic[:USERS[:ITEMS]]``.

    This is the data the run's key fingerprints; :func:`run_dataset` applies the run's user
    subsample to it.
    """
    return load_named_or_synthetic(config.dataset, data_dir=data_dir)


def run_dataset(config: RunConfig, source: Dataset) -> Dataset:
    """``source`` as the run sees it: the quick profile's user subsample, drawn with a fixed seed
    (:data:`mmlrepro.config.SUBSAMPLE_SEED`) so that every run of a group sees the same users
    whatever its own seed [assumed]. The run's key fingerprints it
    (:meth:`mmlrepro.config.RunConfig.data_fingerprint`).

    A subsample that would keep every user is refused (it would change nothing); see
    :func:`check_run` for every check made before a run starts.
    """
    if config.user_subsample is None:
        return source
    _check_subsample(config, source)
    return source.subsample_users(config.user_subsample, seed=SUBSAMPLE_SEED)


def _check_subsample(config: RunConfig, source: Dataset) -> None:
    if config.user_subsample is not None and config.user_subsample >= source.n_users:
        raise ValueError(f"RunConfig.user_subsample: {config.user_subsample} >= the {source.n_users} "
                         f"users of {config.dataset}, so it would change nothing; use None")


def step_bytes(config: RunConfig, n_rows: int) -> int:
    """Estimated memory of one training step's negatives: ``rows · N · (16·dim + 8)`` bytes.

    ``rows = min(batch_size, n_rows)``; per negative of a row the step holds its int64 id and
    about four float32 ``dim``-vectors (the gathered embedding, its gradient and two
    intermediates of the fused cosine). Measured on the CPU at N = 800 (benchmarks/RESULTS.md,
    "Memory at 800 negatives"): 182 MiB for Gowalla (batch 256) and 297 MiB for Yelp2018 (batch
    512) against 201 and 403 MiB estimated, so the estimate is an upper bound.
    """
    return min(config.batch_size, n_rows) * config.n_negatives * (16 * config.dim + 8)


def check_negatives(config: RunConfig, n_rows: int, device: torch.device) -> None:
    """ValueError naming ``n_negatives`` when the run's negatives cannot be trained (SPEC §4).

    The rule [assumed]: N may exceed the number of items (negatives are drawn uniformly with
    replacement, SPEC §4), but N must be at most ``MAX_NEGATIVES`` (100,000; the paper's largest
    is 800), and one step's negatives (:func:`step_bytes`) must fit in half of the device's
    memory (:func:`mmlrepro.devices.device_memory`; the rest is for the data, the model and the
    evaluation). Checked before any data reaches the device.
    """
    n = config.n_negatives
    if n > MAX_NEGATIVES:
        raise ValueError(f"RunConfig.n_negatives: {n:,} negatives is over the {MAX_NEGATIVES:,} accepted "
                         f"(the paper's largest N is 800; N may exceed the item count, SPEC §4)")
    need, memory = step_bytes(config, n_rows), device_memory(device)
    if memory and need > memory // 2:
        rows = min(config.batch_size, n_rows)
        raise ValueError(f"RunConfig.n_negatives: {n:,} negatives x {rows:,} rows a batch x dim {config.dim} "
                         f"need about {need / 2**30:,.1f} GiB a step, over half of the "
                         f"{memory / 2**30:,.1f} GiB of {device.type} memory; use fewer negatives "
                         "or a smaller batch")


def check_run(config: RunConfig, source: Dataset, device: torch.device | None = None) -> None:
    """Everything about ``config`` on ``source`` that would fail a run, checked before any step.

    The data must have more items than the largest K evaluated (:meth:`Dataset.check_for_ranking`:
    such data is rejected, not evaluated at the Ks that fit [assumed]), a user subsample must
    keep fewer users than there are, and the negatives must fit (:func:`check_negatives`).
    """
    source.check_for_ranking()
    _check_subsample(config, source)
    n_rows = len(source.train_indices)
    check_negatives(config, n_rows, device if device is not None else resolve_device(config.device))


def build_model(config: RunConfig, dataset: Dataset) -> nn.Module:
    """MF or SimpleX with the run's dimension, dropout and SimpleX parameters (SPEC §3)."""
    common = dict(dim=config.dim, dropout=config.dropout, dropout_placement=config.dropout_placement)
    if config.model == "mf":
        return MF(dataset.n_users, dataset.n_items, **common)
    return SimpleX(dataset.n_users, dataset.n_items, dataset.train_indptr, dataset.train_indices,
                   **common, **config.model_hp)


# --------------------------------------------------------------------------------------------
# model selection


def select_best(history: list[dict[str, float]], monitor: str, min_delta: float) -> int:
    """Index of the selected epoch: the last one that beat every earlier one by more than ``min_delta``.

    SPEC §6 and the SimpleX code: an epoch is an improvement when its ``monitor`` exceeds the best
    so far by more than ``min_delta`` (1e-6); the first epoch always is. The same rule decides
    the reported epoch, the weights kept for an honest run's test and for ``lr_reduce``'s reload,
    and when ``early_stop`` stops (``patience`` epochs after the selected one).
    """
    best_i, best_value = 0, history[0][monitor]
    for i, record in enumerate(history[1:], 1):
        if record[monitor] > best_value + min_delta:
            best_i, best_value = i, record[monitor]
    return best_i


def _stops(history: list[dict[str, float]], config: RunConfig) -> bool:
    """Whether an ``early_stop`` run ends before another epoch: ``patience`` epochs without improvement."""
    since = len(history) - 1 - select_best(history, config.monitor, config.min_delta)
    return config.selection == "early_stop" and since >= config.patience


def early_stop_epochs(history: list[dict[str, float]], config: RunConfig) -> int:
    """How many epochs of ``history`` (a run without lr cuts) the ``early_stop`` run of
    ``config`` keeps: it trains the same epochs and stops where :func:`_stops` says so."""
    config = config.replace(selection="early_stop")
    kept: list[dict[str, float]] = []
    for record in history:
        if kept and _stops(kept, config):
            break
        kept.append(record)
    return len(kept)


# --------------------------------------------------------------------------------------------
# checkpoints


def default_checkpoint_dir() -> Path:
    """``$MMLREPRO_CHECKPOINT_DIR`` (an empty value counts as unset), else
    ``~/.cache/mmlrepro/checkpoints``."""
    return Path(os.environ.get("MMLREPRO_CHECKPOINT_DIR") or Path.home() / ".cache" / "mmlrepro" / "checkpoints")


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """RNG states are CPU ByteTensors whatever the device (the checkpoint is loaded on the CPU)."""
    torch.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _load_checkpoint(path: Path, key: str, log: Callable[[str], None]) -> dict[str, Any] | None:
    """The checkpoint of run ``key`` at ``path``, or None; a broken or foreign one is set aside."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        why = None if isinstance(ckpt, dict) and ckpt.get("key") == key else "belongs to another run"
    except (EOFError, RuntimeError, OSError, pickle.UnpicklingError, AttributeError, ValueError) as err:
        why = f"is broken ({err.__class__.__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    if why is None:
        return ckpt
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.set-aside-{stamp}")
    os.replace(path, aside)
    log(f"warning: checkpoint {path} {why}: set aside as {aside.name}; the run starts over")
    return None


# --------------------------------------------------------------------------------------------
# progress


def _show_progress() -> bool:
    """Bars in a terminal or a live notebook; quiet under TQDM_DISABLE, in CI and in pipes."""
    if os.environ.get("TQDM_DISABLE"):
        return False
    if "ipykernel" in sys.modules and not os.environ.get("PAPERMILL_EXECUTION"):
        return True
    return sys.stderr.isatty()


def _progress(total: int, desc: str, initial: int = 0):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, initial=initial, disable=not _show_progress(),
                dynamic_ncols=True, leave=True)


# --------------------------------------------------------------------------------------------
# the loop


def train(config: RunConfig, *, data_dir: str | None = None, dataset: Dataset | None = None,
          checkpoint_dir: str | Path | None = None, resume: bool = True,
          checkpoint_every_s: float = CHECKPOINT_EVERY_S,
          on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
          log: Callable[[str], None] | None = _stderr,
          compiled_scores: bool = True) -> RunResult:
    """Train one run and return its :class:`RunResult` (SPEC §6).

    ``dataset`` is the run's source data (default: loaded from ``config.dataset``); its
    fingerprint is part of the run's key, and the run's user subsample is applied to it.

    Selection (``config.selection``), always by :func:`select_best`:
    - ``paper`` ("N"): ``epochs`` epochs at constant lr, evaluation on test after each; the
      selected epoch is reported, and the last one too.
    - ``early_stop`` ("Y"): as ``paper``, but stop ``patience`` epochs after the selected one.
    - ``honest``: a validation split is carved from train (``Dataset.holdout``, seeded by the
      run's seed); the model trains on the rest, selection uses validation, and the test split is
      evaluated once, with the selected epoch's weights, at the end (train items, held-out ones
      included, masked).
    ``lr_reduce`` adds the original SimpleX schedule: on each epoch that is not an improvement
    lr ×0.1 (floor 1e-6) and the selected epoch's weights are reloaded. ``exclude_positives``
    redraws negatives that are one of the row's user's train items.

    The per-user Recall/NDCG@K of the reported numbers (the selected epoch's test evaluation, or
    the honest run's final test) come back in ``result.per_user`` (issue 16); a ``paper`` run
    without ``lr_reduce`` whose early-stopped twin would select an earlier epoch adds that
    epoch's values as ``result.per_user.early_stop`` (:func:`early_stop_from_history` reads them).

    A checkpoint (model, optimiser, RNG state, history) is written atomically after an epoch
    once ``checkpoint_every_s`` seconds have passed since the last one (0: after every epoch);
    with ``resume`` a later call continues from it and ends with the metrics of an uninterrupted
    run. It is named by the run's key (data fingerprint included), so it never resumes on other
    data; a broken one is set aside and the run starts over. It is deleted when the run
    completes. Each epoch of the history keeps the device it ran on, so a run resumed on
    another device (or thread count) names each stretch (:func:`mmlrepro.devices.run_device`).
    A Gowalla checkpoint costs about 0.13 s to write; the 30 s default keeps one per epoch for
    CPU paper runs and loses at most 30 s of work on a kill. ``on_epoch_end(epoch, record)`` is
    called after any checkpoint of that epoch is written (tests use it to simulate a kill).

    The negatives' scores go through the compiled kernel where it applies
    (:func:`mmlrepro.models.kernel_scores`), unless ``compiled_scores`` is False (the PyTorch
    path, which trained every run stored before issue 37: ``mmlrepro verify`` uses it for them).
    The two agree to float rounding, not bit for bit, so the result's provenance names the one
    used, ``"negatives_scores"``: ``"compiled kernel"`` or ``"pytorch"``.
    Ctrl-C raises :class:`RunInterrupted` naming the checkpoint kept. A NaN or infinite loss
    raises :class:`NonFiniteLossError` naming its epoch and step: before that step is applied on
    the CPU, within :data:`FINITE_CHECK_STEPS` steps on a GPU (an on-device flag, read back that
    often; :func:`finite_check_every`). The data, the user subsample and the negatives are
    checked (:func:`check_run`) before any step.
    """
    log = log or (lambda line: None)
    if checkpoint_every_s < 0:
        raise ValueError(f"checkpoint_every_s must be >= 0, got {checkpoint_every_s}")
    device = resolve_device(config.device)
    ckpt_dir = check_writable(checkpoint_dir or default_checkpoint_dir(), "checkpoint folder")
    source = dataset if dataset is not None else load_run_dataset(config, data_dir)
    check_run(config, source, device)
    fingerprint = source.fingerprint
    key = config.key(fingerprint)
    data = run_dataset(config, source)
    loss_fn = get_loss(config.loss, **config.loss_hp)

    selection_data = data.holdout(config.holdout_fraction, seed=config.seed)[1] if config.selection == "honest" else data
    train_users = torch.from_numpy(selection_data.train_users()).to(device)
    train_items = torch.from_numpy(selection_data.train_items()).to(device)
    n_rows = train_users.shape[0]
    eval_index = EvalIndex.from_dataset(selection_data, device)  # device arrays, reused each epoch
    exclude = (positive_keys(selection_data.train_indptr, selection_data.train_indices,
                             selection_data.n_items, device) if config.exclude_positives else None)

    torch.manual_seed(config.seed)
    model = build_model(config, selection_data).to(device)
    model.compiled_scores = compiled_scores
    rows = min(config.batch_size, n_rows)
    scores = ("compiled kernel" if compiled_scores and kernel_scores(
        device, rows * (config.n_negatives + 1), selection_data.n_items) else "pytorch")
    reg_full = config.reg_lambda if config.reg_form == "full_table" else 0.0
    step = ExactStep(model, config.lr, reg_full, config.grad_clip, device)
    keep_state = config.selection == "honest" or config.lr_reduce
    # an "N" run keeps, too, the per-user values its "Y" twin (read off this history) selects
    has_twin = config.selection == "paper" and not config.lr_reduce

    ckpt_path = ckpt_dir / f"{key}.pt"
    history: list[dict[str, float]] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_per_user = early_stop_per_user = None
    lr = config.lr
    timings = {"train_s": 0.0, "eval_s": 0.0}
    ckpt = _load_checkpoint(ckpt_path, key, log) if resume and ckpt_path.exists() else None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        step.optimizer.load_state_dict(ckpt["optimizer"])
        history, lr, timings = ckpt["history"], ckpt["lr"], ckpt["timings"]
        best_state, best_per_user = ckpt["best_state"], ckpt.get("best_per_user")
        early_stop_per_user = ckpt.get("early_stop_per_user")
        step.set_lr(lr)
        _set_rng_state(ckpt["rng"], device)
        log(f"{config.label()}: resumed from {ckpt_path} after epoch {len(history)}")
    start_epoch = len(history) + 1

    saved_epoch, saved_at = start_epoch - 1, time.perf_counter()
    stopped_early = False
    here = device_name(device)   # kept per epoch: a resumed run may finish on another device
    bar = _progress(config.epochs, config.label(), initial=start_epoch - 1)
    try:
        for epoch in range(start_epoch, config.epochs + 1):
            if history and _stops(history, config):
                stopped_early = True
                break
            t0 = time.perf_counter()
            model.train()
            perm = torch.randperm(n_rows, device=device)
            loss_sum = torch.zeros((), device=device)
            first_bad = torch.full((), -1, dtype=torch.long, device=device)
            n_steps, check_every = 0, finite_check_every(device)
            for start in range(0, n_rows, config.batch_size):
                rows = perm[start:start + config.batch_size]
                users, pos = train_users[rows], train_items[rows]
                neg = sample_negatives(rows.shape[0], config.n_negatives, selection_data.n_items,
                                       device=device, users=users if exclude is not None else None,
                                       exclude=exclude)
                loss = batch_loss(model, loss_fn, config, users, pos, neg)
                value = loss.detach()
                first_bad = torch.where((first_bad < 0) & ~torch.isfinite(value),
                                        torch.full_like(first_bad, n_steps + 1), first_bad)
                if (n_steps + 1) % check_every == 0 and int(first_bad) > 0:
                    break
                step(loss)
                loss_sum += value
                n_steps += 1
            if int(first_bad) > 0:
                raise NonFiniteLossError(
                    f"{config.label()}: non-finite loss at epoch {epoch}, step {int(first_bad)}; "
                    + (f"the last checkpoint (epoch {saved_epoch}) is kept at {ckpt_path}"
                       if ckpt_path.exists() else "no checkpoint was written"))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t1 = time.perf_counter()
            metrics, per_user = evaluate(model, selection_data, index=eval_index, per_user=True)
            t2 = time.perf_counter()
            timings["train_s"] += t1 - t0
            timings["eval_s"] += t2 - t1
            record = {"epoch": epoch, "loss": float(loss_sum) / max(n_steps, 1), "lr": lr, **metrics,
                      "train_s": t1 - t0, "eval_s": t2 - t1, "device": here}
            history.append(record)
            if select_best(history, config.monitor, config.min_delta) == len(history) - 1:
                best_per_user = per_user
                if keep_state:
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elif config.lr_reduce:
                lr = max(lr * LR_REDUCE_FACTOR, LR_FLOOR)
                step.set_lr(lr)
                model.load_state_dict(best_state)
            if has_twin and early_stop_epochs(history, config) == len(history):   # "Y" trains on
                early_stop_per_user = best_per_user
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}", recall20=f"{metrics['recall@20']:.4f}")
            if epoch < config.epochs and time.perf_counter() - saved_at >= checkpoint_every_s:
                state = {"model": model.state_dict(), "optimizer": step.optimizer.state_dict(),
                         "history": history, "lr": lr, "best_state": best_state,
                         "best_per_user": best_per_user, "early_stop_per_user": early_stop_per_user,
                         "timings": timings,
                         "rng": _rng_state(device), "key": key}
                atomic_write(ckpt_path, lambda tmp, state=state: torch.save(state, tmp))
                saved_epoch, saved_at = epoch, time.perf_counter()
            if on_epoch_end is not None:
                on_epoch_end(epoch, record)
    except KeyboardInterrupt:
        kept = (f"the checkpoint of epoch {saved_epoch} is kept at {ckpt_path}; the same command resumes it"
                if ckpt_path.exists() else "no checkpoint had been written yet, so nothing was kept; "
                "the same command starts the run over")
        raise RunInterrupted(f"{config.label()}: interrupted during epoch {len(history) + 1}; {kept}") from None
    finally:
        bar.close()

    best = history[select_best(history, config.monitor, config.min_delta)]
    test: dict[str, float] = {}
    if config.selection == "honest":
        model.load_state_dict(best_state)
        t0 = time.perf_counter()
        test, best_per_user = evaluate(model, data, per_user=True)
        timings["eval_s"] += time.perf_counter() - t0
    if best_per_user is not None:
        best_per_user = dataclasses.replace(best_per_user, epoch=best["epoch"])
    if has_twin and best_per_user is not None and early_stop_per_user is not None and (twin := early_stop_best(history, config)) != best["epoch"]:
        best_per_user = dataclasses.replace(best_per_user, early_stop=dataclasses.replace(
            early_stop_per_user, epoch=twin, patience=config.patience))
    ckpt_path.unlink(missing_ok=True)
    return RunResult(config=config, data_fingerprint=fingerprint, history=history, best=dict(best),
                     last=dict(history[-1]), test=test, timings=timings, device=run_device(history, here),
                     stopped_early=stopped_early, per_user=best_per_user,
                     provenance={**provenance(), "negatives_scores": scores})


def early_stop_from_history(paper: RunResult, config: RunConfig,
                            per_user: PerUser | None = None) -> RunResult:
    """The ``early_stop`` ("Y") run of ``config``, read off the history of its ``paper`` ("N") twin.

    SPEC §6: "Y" stops ``patience`` epochs after its selected epoch (:func:`select_best`);
    without ``lr_reduce`` nothing else differs. The two runs share the seed, so they draw the same
    initial weights, batch orders and negatives, and train identically until "Y" stops: the
    stopping rule only decides when the loop ends. The "Y" history is therefore the prefix of the
    "N" history that :func:`train` would have kept, cut by the same rule, and its selected epoch
    is the one :func:`select_best` picks in that prefix. Timings are the prefix's. ``per_user``,
    the twin's per-user values, belong to its own selected epoch: the "Y" run keeps them when it
    selects that same epoch, and otherwise their ``early_stop`` set, which :func:`train` keeps for
    that case (a run trained before it did has none, and its "Y" twin then has none). Each set
    is used only when the epoch it was stored with is the epoch "Y" selects: the ``early_stop``
    set was kept for the twin's ``patience`` of the "N" run's config, which is not in its key,
    so a "Y" run of another patience gets no per-user values rather than another epoch's.
    (On CUDA, whose ``index_add_`` is not bit-deterministic, two trainings of one config
    already differ at that level.)
    """
    if config.selection != "early_stop":
        raise ValueError(f"{config.label()}: selection must be 'early_stop' to read it off a paper run")
    if config.lr_reduce:
        raise ValueError(f"{config.label()}: lr_reduce changes the trajectory after the first "
                         "non-improving epoch, so the run cannot be read off a run without it")
    if paper.config.selection != "paper" or paper.key != config.replace(selection="paper").key(paper.data_fingerprint):
        raise ValueError(f"{paper.config.label()} is not the 'paper' twin of {config.label()}: "
                         "every field but selection must agree")
    if len(paper.history) != paper.config.epochs:
        raise ValueError(f"{paper.config.label()}: history has {len(paper.history)} of "
                         f"{paper.config.epochs} epochs")
    # the loop of train(), with the evaluations already done
    history = [dict(record) for record in paper.history[:early_stop_epochs(paper.history, config)]]
    timings = {name: sum(r[name] for r in history) for name in ("train_s", "eval_s")}
    best = history[select_best(history, config.monitor, config.min_delta)]
    if per_user is not None and best["epoch"] != paper.best["epoch"]:
        per_user = per_user.early_stop
    if per_user is not None and per_user.epoch != best["epoch"]:
        per_user = None          # another epoch's values (another patience's twin): none rather than wrong
    return RunResult(config=config, data_fingerprint=paper.data_fingerprint, history=history,
                     best=dict(best), last=dict(history[-1]), test={}, timings=timings,
                     device=run_device(history, paper.device), stopped_early=len(history) < len(paper.history),
                     per_user=None if per_user is None else dataclasses.replace(per_user, early_stop=None,
                                                                                   patience=None, key=None))


def early_stop_best(history: list[dict[str, float]], config: RunConfig) -> int:
    """The epoch the ``early_stop`` run of ``config`` selects in ``history``."""
    kept = history[:early_stop_epochs(history, config)]
    return kept[select_best(kept, config.monitor, config.min_delta)]["epoch"]
