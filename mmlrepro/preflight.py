"""A run's data and the checks made before its first step (SPEC §2, §4; issue 15).

:func:`load_run_dataset` loads the source data a run's key fingerprints, :func:`run_dataset`
applies the run's user subsample to it, and :func:`check_run` checks everything about a config on
its data that would fail the run (the data against K, the subsample, the negatives' memory,
:func:`step_bytes`) before anything trains. The runner calls them once per run, then
:func:`mmlrepro.train.train`, then the store: plan → check → train → store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmlrepro.config import SUBSAMPLE_SEED, RunConfig
from mmlrepro.data import Dataset, load_named_or_synthetic
from mmlrepro.devices import device_memory, resolve_device

if TYPE_CHECKING:
    import torch

MAX_NEGATIVES = 100_000   # the most negatives per row a run may draw (check_negatives)


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
