"""A run's checkpoint: its file, what it holds, and the RNG states that make a resume exact.

:class:`Checkpoint` owns one run's file ``<checkpoint dir>/<key>.pt`` (named by the run's key,
data fingerprint included, so it never resumes on other data): :meth:`Checkpoint.load` restores
the model, the optimiser, the RNG states and the run's :class:`RunState` (a broken or foreign
file is set aside and the run starts over), :meth:`Checkpoint.save_if_due` writes it atomically
after an epoch once ``every_s`` seconds have passed since the last write, and
:meth:`Checkpoint.delete` removes it when the run completes.

The file is a ``torch.save`` dict with the keys of :data:`FORMAT` (the format every checkpoint
has had since per-user values were kept; checkpoints of running trainings resume under later
code, ``tests/test_train.py`` loads files written before this module existed). The per-user
values in it are pickled :class:`~mmlrepro.per_user.PerUser` objects, which older files name
``mmlrepro.metrics.PerUser``: that name is kept.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmlrepro.files import atomic_write, set_aside_stamp
from mmlrepro.per_user import PerUser

# A checkpoint after an epoch once this many seconds have passed since the last (train()).
CHECKPOINT_EVERY_S = 30.0
# The keys of a checkpoint file.
FORMAT = ("model", "optimizer", "history", "lr", "best_state", "best_per_user", "early_stop_per_user",
          "timings", "rng", "key")


def default_checkpoint_dir() -> Path:
    """``$MMLREPRO_CHECKPOINT_DIR`` (an empty value counts as unset), else
    ``~/.cache/mmlrepro/checkpoints``."""
    return Path(os.environ.get("MMLREPRO_CHECKPOINT_DIR") or Path.home() / ".cache" / "mmlrepro" / "checkpoints")


@dataclass
class RunState:
    """What a run carries from epoch to epoch besides its weights, and what its checkpoint keeps:
    the history, the current lr, the summed timings, the selected epoch's weights (runs that reload
    or test them), its per-user values, and those of the early-stopped twin's selected epoch."""

    lr: float
    history: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: {"train_s": 0.0, "eval_s": 0.0})
    best_state: dict[str, torch.Tensor] | None = None
    best_per_user: PerUser | None = None
    early_stop_per_user: PerUser | None = None


def rng_state(device: torch.device) -> dict[str, Any]:
    """The RNG states a resume restores: the CPU's, and the GPU's on CUDA."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """RNG states are CPU ByteTensors whatever the device (the checkpoint is loaded on the CPU)."""
    torch.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


class Checkpoint:
    """The checkpoint file of run ``key`` at ``path`` (see the module docstring).

    ``saved_epoch`` is the epoch of the last file written or loaded (0: none), ``every_s`` the
    seconds between two writes (0: after every epoch); ``log`` says what was resumed or set aside.
    """

    def __init__(self, path: Path, key: str, device: torch.device, every_s: float = CHECKPOINT_EVERY_S,
                 log: Callable[[str], None] = lambda line: None) -> None:
        self.path, self.key, self.device, self.every_s, self.log = Path(path), key, device, every_s, log
        self._saved(0)

    def _saved(self, epoch: int) -> None:
        self.saved_epoch, self.saved_at = epoch, time.perf_counter()

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> dict[str, Any] | None:
        """The file's dict, or None (no file; a broken or foreign one is set aside)."""
        if not self.path.exists():
            return None
        try:
            ckpt = torch.load(self.path, map_location="cpu", weights_only=False)
            why = None if isinstance(ckpt, dict) and ckpt.get("key") == self.key else "belongs to another run"
        except (EOFError, RuntimeError, OSError, pickle.UnpicklingError, AttributeError, ValueError) as err:
            why = f"is broken ({err.__class__.__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        if why is None:
            return ckpt
        aside = self.path.with_name(f"{self.path.name}.set-aside-{set_aside_stamp()}")
        os.replace(self.path, aside)
        self.log(f"warning: checkpoint {self.path} {why}: set aside as {aside.name}; the run starts over")
        return None

    def load(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> RunState | None:
        """Restore ``model``, ``optimizer`` and the RNG states from the file; the run's state, or
        None when there is nothing to resume."""
        ckpt = self.read()
        if ckpt is None:
            return None
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = RunState(lr=ckpt["lr"], history=ckpt["history"], timings=ckpt["timings"],
                         best_state=ckpt["best_state"], best_per_user=ckpt.get("best_per_user"),
                         early_stop_per_user=ckpt.get("early_stop_per_user"))
        set_rng_state(ckpt["rng"], self.device)
        self._saved(len(state.history))
        return state

    def save_if_due(self, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer, state: RunState) -> None:
        """Write the checkpoint of ``epoch`` (atomically) when ``every_s`` seconds have passed since
        the last write. A Gowalla checkpoint costs about 0.13 s to write; the 30 s default keeps
        one per epoch for CPU paper runs and loses at most 30 s of work on a kill."""
        if time.perf_counter() - self.saved_at < self.every_s:
            return
        payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                   "history": state.history, "lr": state.lr, "best_state": state.best_state,
                   "best_per_user": state.best_per_user, "early_stop_per_user": state.early_stop_per_user,
                   "timings": state.timings, "rng": rng_state(self.device), "key": self.key}
        atomic_write(self.path, lambda tmp: torch.save(payload, tmp))
        self._saved(epoch)

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)
