"""Model selection: the one selection rule, the early-stopping rule and the read-off (SPEC §6).

:func:`select_best` picks a run's selected epoch: the reported one, the weights an honest run
tests, the weights ``lr_reduce`` reloads. :func:`stops` is the early-stopping rule built on it
(``patience`` epochs after the selected epoch), :func:`early_stop_epochs` and
:func:`early_stop_best` apply it to a stored history, and :func:`early_stop_from_history` reads
an early-stopped ("Y") run off its ``paper`` ("N") twin. :func:`paper_monitor` is the metric a
paper run selects on. No torch and no trainer here: the comparison layer, the report and the
migrations read the rule from this module; :func:`mmlrepro.train.train` applies it while training.
"""

from __future__ import annotations

import dataclasses

from mmlrepro.config import RunConfig
from mmlrepro.devices import run_device
from mmlrepro.per_user import PerUser
from mmlrepro.results import RunResult


def paper_monitor(dataset: str, model: str | None) -> str:
    """The metric a paper run selects its epoch on (SPEC §6): NDCG@20 for SimpleX on Gowalla,
    Recall@20 otherwise."""
    return "ndcg@20" if (model, dataset) == ("simplex", "gowalla") else "recall@20"


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


def stops(history: list[dict[str, float]], config: RunConfig) -> bool:
    """Whether an ``early_stop`` run ends before another epoch: ``patience`` epochs without improvement."""
    since = len(history) - 1 - select_best(history, config.monitor, config.min_delta)
    return config.selection == "early_stop" and since >= config.patience


def early_stop_epochs(history: list[dict[str, float]], config: RunConfig) -> int:
    """How many epochs of ``history`` (a run without lr cuts) the ``early_stop`` run of
    ``config`` keeps: it trains the same epochs and stops where :func:`stops` says so."""
    config = config.replace(selection="early_stop")
    kept: list[dict[str, float]] = []
    for record in history:
        if kept and stops(kept, config):
            break
        kept.append(record)
    return len(kept)


def early_stop_from_history(paper: RunResult, config: RunConfig,
                            per_user: PerUser | None = None) -> RunResult:
    """The ``early_stop`` ("Y") run of ``config``, read off the history of its ``paper`` ("N") twin.

    SPEC §6: "Y" stops ``patience`` epochs after its selected epoch (:func:`select_best`);
    without ``lr_reduce`` nothing else differs. The two runs share the seed, so they draw the same
    initial weights, batch orders and negatives, and train identically until "Y" stops: the
    stopping rule only decides when the loop ends. The "Y" history is therefore the prefix of the
    "N" history that :func:`mmlrepro.train.train` would have kept, cut by the same rule, and its selected epoch
    is the one :func:`select_best` picks in that prefix. Timings are the prefix's. ``per_user``,
    the twin's per-user values, belong to its own selected epoch: the "Y" run keeps them when it
    selects that same epoch, and otherwise their ``early_stop`` set, which :func:`mmlrepro.train.train` keeps for
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
