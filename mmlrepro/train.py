"""Training one run: a short loop over named steps (SPEC §3, §4, §6).

:func:`train` runs a :class:`~mmlrepro.config.RunConfig` on its data and returns a
:class:`~mmlrepro.results.RunResult`: it sets the run up (:func:`_set_up`: the data on the
device, the seeded model, the step), resumes its :class:`~mmlrepro.checkpoint.Checkpoint`, and
then, per epoch, trains (:func:`_train_epoch`, with :func:`_check_finite`), evaluates
(:func:`_epoch`), tracks the selected epoch (:func:`_track_selection`, :func:`_reduce_lr`) and
checkpoints; :func:`_finish` makes the result. The optimiser step is
:class:`mmlrepro.step.ExactStep`, the negatives come from :func:`mmlrepro.sampling.sample_negatives`
(the one sampling entry point), the evaluation is :func:`mmlrepro.metrics.evaluate`, the selection
and stopping rules are :mod:`mmlrepro.selection`'s, and the checks made before any step are
:mod:`mmlrepro.preflight`'s.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mmlrepro.checkpoint import CHECKPOINT_EVERY_S, Checkpoint, RunState, default_checkpoint_dir
from mmlrepro.config import RunConfig
from mmlrepro.data import Dataset
from mmlrepro.devices import device_name, resolve_device, run_device
from mmlrepro.files import check_writable, stderr
from mmlrepro.kernels import COMPILED_SCORES, PYTORCH_SCORES
from mmlrepro.losses import get_loss
from mmlrepro.metrics import EvalIndex, evaluate
from mmlrepro.models import MF, SimpleX, kernel_scores
from mmlrepro.per_user import PerUser
from mmlrepro.preflight import check_run, load_run_dataset, run_dataset
from mmlrepro.results import RunResult, provenance
from mmlrepro.sampling import positive_keys, sample_negatives
from mmlrepro.selection import early_stop_best, early_stop_epochs, select_best, stops
from mmlrepro.step import ExactStep, batch_loss

LR_REDUCE_FACTOR, LR_FLOOR = 0.1, 1e-6   # the SimpleX schedule (SPEC §6)
# Off the CPU the loss's finiteness is read back every this many steps (one host sync each).
FINITE_CHECK_STEPS = 50


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message names the epoch and the step."""


class RunInterrupted(RuntimeError):
    """Ctrl-C during a run; the message says which checkpoint is kept and how to resume."""

    @classmethod
    def between_runs(cls, err: BaseException, n_done: int, n_todo: int, root: Path) -> RunInterrupted:
        """Ctrl-C in a command that trains or fits several runs: what it kept and how to go on."""
        what = f"{err}; " if str(err) else "interrupted between runs; "
        return cls(f"{what}{n_done} of the {n_todo} runs to do had finished before it (stored in "
                   f"{root}); the same command trains only the runs still missing")


def finite_check_every(device: torch.device) -> int:
    """How often (in steps) the training loop reads its on-device non-finite-loss flag back.

    Every step on the CPU, where the read costs nothing, so a bad step is never applied; every
    :data:`FINITE_CHECK_STEPS` steps on a GPU, so a step never waits for the host and a run
    with a NaN loss stops within that many steps, its first bad step named.
    """
    return 1 if device.type == "cpu" else FINITE_CHECK_STEPS


def build_model(config: RunConfig, dataset: Dataset) -> nn.Module:
    """MF or SimpleX with the run's dimension, dropout and SimpleX parameters (SPEC §3)."""
    common = dict(dim=config.dim, dropout=config.dropout, dropout_placement=config.dropout_placement)
    if config.model == "mf":
        return MF(dataset.n_users, dataset.n_items, **common)
    return SimpleX(dataset.n_users, dataset.n_items, dataset.train_indptr, dataset.train_indices,
                   **common, **config.model_hp)


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
          log: Callable[[str], None] | None = stderr, compiled_scores: bool = True) -> RunResult:
    """Train one run and return its :class:`RunResult` (SPEC §6).

    ``dataset`` is the run's source data (default: loaded from ``config.dataset``); its
    fingerprint is part of the run's key, and the run's user subsample is applied to it; it is
    checked (:func:`mmlrepro.preflight.check_run`) before any step.

    Selection (``config.selection``), always by :func:`mmlrepro.selection.select_best`:
    ``paper`` ("N"): ``epochs`` epochs at constant lr, evaluation on test after each, the
    selected epoch and the last reported; ``early_stop`` ("Y"): as ``paper``, but stop
    ``patience`` epochs after the selected one; ``honest``: selection on a validation split
    carved from train (``Dataset.holdout``, seeded by the run's seed), the test split evaluated
    once, with the selected epoch's weights, at the end (train items, held-out ones included,
    masked). ``lr_reduce`` adds SimpleX's schedule (:func:`_reduce_lr`); ``exclude_positives``
    redraws negatives that are one of the row's user's train items. The per-user values of the
    reported numbers come back in ``result.per_user`` (:func:`_reported_per_user`).

    A checkpoint (:class:`mmlrepro.checkpoint.Checkpoint`) is written after an epoch once
    ``checkpoint_every_s`` seconds have passed since the last one (0: after every epoch); with
    ``resume`` a later call continues from it and ends with the metrics of an uninterrupted
    run. Each epoch of the history keeps the device it ran on
    (:func:`mmlrepro.devices.run_device`). ``on_epoch_end(epoch, record)`` is called after any
    checkpoint of that epoch is written (tests use it to simulate a kill). ``compiled_scores``
    False takes the PyTorch path for the negatives' scores instead of the compiled kernel
    (:func:`mmlrepro.models.kernel_scores`; they agree to float rounding; the provenance's
    ``"negatives_scores"`` names the one used). Ctrl-C raises :class:`RunInterrupted` naming the
    checkpoint kept; a NaN or infinite loss :class:`NonFiniteLossError` (:func:`_check_finite`).
    """
    log = log or (lambda line: None)
    if checkpoint_every_s < 0:
        raise ValueError(f"checkpoint_every_s must be >= 0, got {checkpoint_every_s}")
    device = resolve_device(config.device)
    ckpt_dir = check_writable(checkpoint_dir or default_checkpoint_dir(), "checkpoint folder")
    source = dataset if dataset is not None else load_run_dataset(config, data_dir)
    check_run(config, source, device)
    run = _set_up(config, source, device, compiled_scores)
    checkpoint = Checkpoint(ckpt_dir / f"{run.key}.pt", run.key, device, checkpoint_every_s, log)
    state = _resume(run, checkpoint, log) if resume else RunState(lr=config.lr)
    bar = _progress(config.epochs, config.label(), initial=len(state.history))
    try:
        for epoch in range(len(state.history) + 1, config.epochs + 1):
            if state.history and stops(state.history, config):
                break
            per_user = _epoch(run, state, epoch, checkpoint)
            _track_selection(run, state, per_user)
            bar.update(1)
            bar.set_postfix(loss=f"{state.history[-1]['loss']:.4f}", recall20=f"{state.history[-1]['recall@20']:.4f}")
            if epoch < config.epochs:
                checkpoint.save_if_due(epoch, run.model, run.step.optimizer, state)
            if on_epoch_end is not None:
                on_epoch_end(epoch, state.history[-1])
    except KeyboardInterrupt:
        raise RunInterrupted(f"{config.label()}: interrupted during epoch {len(state.history) + 1}; "
                             f"{_kept(checkpoint)}") from None
    finally:
        bar.close()
    return _finish(run, state, checkpoint)


@dataclass
class _Run:
    """A run set up to train: its config and key, the data it trains and selects on (on the
    device), the model, the step and the loss."""

    config: RunConfig
    device: torch.device
    fingerprint: str            # of the source data (the run's key takes it)
    key: str
    data: Dataset               # the run's data; an honest run's final test is on its test split
    selection_data: Dataset     # what it trains and selects on: data, or an honest run's validation split
    train_users: torch.Tensor   # the user and item of every train row, on the device
    train_items: torch.Tensor
    eval_index: EvalIndex       # device arrays, reused each epoch
    exclude: torch.Tensor | None   # positive_keys for exclude_positives
    model: nn.Module
    step: ExactStep
    loss_fn: Callable[..., torch.Tensor]
    scores: str                 # COMPILED_SCORES or PYTORCH_SCORES
    here: str                   # device_name, kept per epoch: a resumed run may finish elsewhere

    @property
    def keeps_state(self) -> bool:
        """Whether the selected epoch's weights are kept: an honest run tests them, lr_reduce reloads them."""
        return self.config.selection == "honest" or self.config.lr_reduce

    @property
    def has_twin(self) -> bool:
        """An "N" run keeps, too, the per-user values its "Y" twin (read off this history) selects."""
        return self.config.selection == "paper" and not self.config.lr_reduce


def _set_up(config: RunConfig, source: Dataset, device: torch.device, compiled_scores: bool) -> _Run:
    """The run's data on the device, its model and its step. The global RNG is seeded with the
    run's seed just before the model draws its initial weights (then come the epochs' batch
    orders, negatives and dropout, in the loop's order)."""
    fingerprint = source.fingerprint
    data = run_dataset(config, source)
    loss_fn = get_loss(config.loss, **config.loss_hp)
    selection_data = data.holdout(config.holdout_fraction, seed=config.seed)[1] if config.selection == "honest" else data
    train_users = torch.from_numpy(selection_data.train_users()).to(device)
    train_items = torch.from_numpy(selection_data.train_items()).to(device)
    eval_index = EvalIndex.from_dataset(selection_data, device)
    exclude = (positive_keys(selection_data.train_indptr, selection_data.train_indices,
                             selection_data.n_items, device) if config.exclude_positives else None)
    torch.manual_seed(config.seed)
    model = build_model(config, selection_data).to(device)
    model.compiled_scores = compiled_scores
    rows = min(config.batch_size, train_users.shape[0])
    scores = (COMPILED_SCORES if compiled_scores and kernel_scores(
        device, rows * (config.n_negatives + 1), selection_data.n_items) else PYTORCH_SCORES)
    reg_full = config.reg_lambda if config.reg_form == "full_table" else 0.0
    step = ExactStep(model, config.lr, reg_full, config.grad_clip, device)
    return _Run(config, device, fingerprint, config.key(fingerprint), data, selection_data, train_users,
                train_items, eval_index, exclude, model, step, loss_fn, scores, device_name(device))


def _resume(run: _Run, checkpoint: Checkpoint, log: Callable[[str], None]) -> RunState:
    """The state of the run's checkpoint (model, optimiser, lr and RNG states restored), or a fresh one."""
    state = checkpoint.load(run.model, run.step.optimizer)
    if state is None:
        return RunState(lr=run.config.lr)
    run.step.set_lr(state.lr)
    log(f"{run.config.label()}: resumed from {checkpoint.path} after epoch {len(state.history)}")
    return state


def _epoch(run: _Run, state: RunState, epoch: int, checkpoint: Checkpoint) -> PerUser:
    """Train one epoch and evaluate it: its record appended to the history, its seconds to the
    timings; returns its per-user values."""
    t0 = time.perf_counter()
    loss_sum, n_steps = _train_epoch(run, epoch, checkpoint)
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    t1 = time.perf_counter()
    metrics, per_user = evaluate(run.model, run.selection_data, index=run.eval_index, per_user=True)
    t2 = time.perf_counter()
    state.timings["train_s"] += t1 - t0
    state.timings["eval_s"] += t2 - t1
    state.history.append({"epoch": epoch, "loss": float(loss_sum) / max(n_steps, 1), "lr": state.lr, **metrics,
                          "train_s": t1 - t0, "eval_s": t2 - t1, "device": run.here})
    return per_user


def _train_epoch(run: _Run, epoch: int, checkpoint: Checkpoint) -> tuple[torch.Tensor, int]:
    """One pass over the train rows in a random order, a step per batch: the summed loss (on the
    device) and the number of steps. The first non-finite loss is flagged on the device and the
    flag read back every :func:`finite_check_every` steps (:func:`_check_finite`)."""
    config, device = run.config, run.device
    run.model.train()
    perm = torch.randperm(run.train_users.shape[0], device=device)
    loss_sum = torch.zeros((), device=device)
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    n_steps, check_every = 0, finite_check_every(device)
    for start in range(0, perm.shape[0], config.batch_size):
        rows = perm[start:start + config.batch_size]
        users, pos = run.train_users[rows], run.train_items[rows]
        neg = sample_negatives(rows.shape[0], config.n_negatives, run.selection_data.n_items, device=device,
                               users=users if run.exclude is not None else None, exclude=run.exclude)
        loss = batch_loss(run.model, run.loss_fn, config, users, pos, neg)
        value = loss.detach()
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(value),
                                torch.full_like(first_bad, n_steps + 1), first_bad)
        if (n_steps + 1) % check_every == 0 and int(first_bad) > 0:
            break
        run.step(loss)
        loss_sum += value
        n_steps += 1
    _check_finite(config, epoch, first_bad, checkpoint)
    return loss_sum, n_steps


def _check_finite(config: RunConfig, epoch: int, first_bad: torch.Tensor, checkpoint: Checkpoint) -> None:
    """:class:`NonFiniteLossError` naming the epoch and the first bad step, if there was one: it
    was not applied on the CPU; on a GPU at most :data:`FINITE_CHECK_STEPS` steps were."""
    if int(first_bad) > 0:
        raise NonFiniteLossError(
            f"{config.label()}: non-finite loss at epoch {epoch}, step {int(first_bad)}; "
            + (f"the last checkpoint (epoch {checkpoint.saved_epoch}) is kept at {checkpoint.path}"
               if checkpoint.exists() else "no checkpoint was written"))


def _kept(checkpoint: Checkpoint) -> str:
    """What an interrupted run keeps, for :class:`RunInterrupted`."""
    if checkpoint.exists():
        return (f"the checkpoint of epoch {checkpoint.saved_epoch} is kept at {checkpoint.path}; "
                "the same command resumes it")
    return "no checkpoint had been written yet, so nothing was kept; the same command starts the run over"


def _track_selection(run: _Run, state: RunState, per_user: PerUser) -> None:
    """After an epoch: if it is the selected one (:func:`mmlrepro.selection.select_best`), keep
    its per-user values (and its weights, :attr:`_Run.keeps_state`); else cut the lr
    (``lr_reduce``). While the "Y" twin of an "N" run would still train, its per-user values
    are the selected epoch's."""
    config, history = run.config, state.history
    if select_best(history, config.monitor, config.min_delta) == len(history) - 1:
        state.best_per_user = per_user
        if run.keeps_state:
            state.best_state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    elif config.lr_reduce:
        _reduce_lr(run, state)
    if run.has_twin and early_stop_epochs(history, config) == len(history):   # "Y" trains on
        state.early_stop_per_user = state.best_per_user


def _reduce_lr(run: _Run, state: RunState) -> None:
    """The original SimpleX schedule (SPEC §6), on an epoch that is not an improvement: lr ×0.1
    (floor 1e-6) and the selected epoch's weights reloaded."""
    state.lr = max(state.lr * LR_REDUCE_FACTOR, LR_FLOOR)
    run.step.set_lr(state.lr)
    run.model.load_state_dict(state.best_state)


def _finish(run: _Run, state: RunState, checkpoint: Checkpoint) -> RunResult:
    """The run's result: the selected epoch, an honest run's test with its weights, the reported
    numbers' per-user values; the checkpoint is deleted."""
    config, history = run.config, state.history
    best = history[select_best(history, config.monitor, config.min_delta)]
    test: dict[str, float] = {}
    per_user = state.best_per_user
    if config.selection == "honest":
        run.model.load_state_dict(state.best_state)
        t0 = time.perf_counter()
        test, per_user = evaluate(run.model, run.data, per_user=True)
        state.timings["eval_s"] += time.perf_counter() - t0
    checkpoint.delete()
    return RunResult(config=config, data_fingerprint=run.fingerprint, history=history, best=dict(best),
                     last=dict(history[-1]), test=test, timings=state.timings,
                     device=run_device(history, run.here), stopped_early=len(history) < config.epochs,
                     per_user=_reported_per_user(run, state, best["epoch"], per_user),
                     provenance={**provenance(), "negatives_scores": run.scores})


def _reported_per_user(run: _Run, state: RunState, epoch: int, per_user: PerUser | None) -> PerUser | None:
    """The per-user Recall/NDCG@K of the reported numbers (the selected ``epoch``'s evaluation, or
    the honest run's final test; issue 16). A ``paper`` run without ``lr_reduce`` whose
    early-stopped twin would select an earlier epoch adds that epoch's values as
    ``early_stop`` (:func:`mmlrepro.selection.early_stop_from_history` reads them)."""
    if per_user is None:
        return None
    per_user = dataclasses.replace(per_user, epoch=epoch)
    if run.has_twin and state.early_stop_per_user is not None and (
            twin := early_stop_best(state.history, run.config)) != epoch:
        per_user = dataclasses.replace(per_user, early_stop=dataclasses.replace(
            state.early_stop_per_user, epoch=twin, patience=run.config.patience))
    return per_user
