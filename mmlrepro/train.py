"""Training: the run configuration, the exact fast optimiser step and the training loop.

SPEC §3 (models, regulariser, optimiser), §4 (negatives), §6 (protocol and model selection).

The optimiser semantics are those of the official SimpleX code, which the MML runs reuse:
every batch adds (λ/2)·Σ‖W‖² over the **whole** embedding tables, the gradient is clipped to a
global norm of 10 (``torch.nn.utils.clip_grad_norm_``), and dense Adam (β 0.9/0.999, ε 1e-8) updates
every row of every table. :class:`ExactStep` computes exactly that with a few passes over each
table (the regulariser gradient λW written straight into the gradient buffer, the clip factor
handed to the fused Adam kernel as its gradient scale) instead of the ~30 passes of the plain loop;
``reference_step`` is the plain loop, kept for tests and benchmarks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmlrepro.data import Dataset, load_dataset, synthetic
from mmlrepro.losses import get_loss
from mmlrepro.metrics import EvalIndex, evaluate
from mmlrepro.models import MF, SimpleX

MODELS = ("mf", "simplex")
SELECTIONS = ("paper", "early_stop", "honest")
REG_FORMS = ("full_table", "batch")
DROPOUT_PLACEMENTS = ("after_norm", "before_norm")
MONITORS = ("recall@20", "ndcg@20", "recall@50", "ndcg@50")
SIMPLEX_PARAMS = ("aggregator", "gate", "separate_history_table", "history_cap", "padding_softmax_bug")
# Fields that say where a run executes, not what it computes: left out of the key.
_NOT_IN_KEY = ("device", "group")


def _freeze(value: Any) -> Any:
    """Lists become tuples and mappings sorted tuples of pairs, so configs stay immutable."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple) and all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) for v in value) and value:
        return {k: _thaw(v) for k, v in value}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run (SPEC §3, §6, §8).

    Mapping fields (``loss_params``, ``model_params``) may be given as dicts; they are stored as
    sorted tuples so the config is immutable. ``key()`` is a stable hash of every field except
    ``device``: the same config has the same key in every process and on every machine.
    """

    dataset: str
    model: str = "mf"
    loss: str = "mml"
    loss_params: Any = field(default_factory=dict)
    model_params: Any = field(default_factory=dict)
    n_negatives: int = 100
    batch_size: int = 256
    lr: float = 1e-4
    epochs: int = 100
    dim: int = 64
    dropout: float = 0.1
    dropout_placement: str = "after_norm"
    reg_form: str = "full_table"
    reg_lambda: float = 1e-8
    grad_clip: float | None = 10.0
    seed: int = 2019
    selection: str = "paper"
    monitor: str = "recall@20"
    patience: int = 3
    min_delta: float = 1e-6
    lr_reduce: bool = False
    holdout_fraction: float = 0.1
    exclude_positives: bool = False
    user_subsample: int | None = None
    profile: str = "custom"
    group: str = ""
    device: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "loss_params", _freeze(dict(_thaw(self.loss_params) or {})))
        object.__setattr__(self, "model_params", _freeze(dict(_thaw(self.model_params) or {})))
        self._validate()

    def _validate(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ValueError(f"RunConfig.{name}: {why}")

        if not isinstance(self.dataset, str) or not self.dataset:
            bad("dataset", f"must be a dataset name or folder, got {self.dataset!r}")
        if self.model not in MODELS:
            bad("model", f"unknown model {self.model!r}; known: {', '.join(MODELS)}")
        get_loss(self.loss, **self.loss_hp)  # raises ValueError naming the loss parameter
        unknown = set(self.model_hp) - set(SIMPLEX_PARAMS)
        if unknown:
            bad("model_params", f"unknown parameters {sorted(unknown)}; known: {', '.join(SIMPLEX_PARAMS)}")
        if self.model == "mf" and self.model_hp:
            bad("model_params", "MF takes no model parameters")
        for name in ("n_negatives", "batch_size", "epochs", "dim", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                bad(name, f"must be an integer >= 1, got {value!r}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            bad("lr", f"must be a finite number > 0, got {self.lr!r}")
        if not 0.0 <= self.dropout < 1.0:
            bad("dropout", f"must be in [0, 1), got {self.dropout!r}")
        if self.dropout_placement not in DROPOUT_PLACEMENTS:
            bad("dropout_placement", f"must be one of {DROPOUT_PLACEMENTS}, got {self.dropout_placement!r}")
        if self.reg_form not in REG_FORMS:
            bad("reg_form", f"must be one of {REG_FORMS}, got {self.reg_form!r}")
        if not (math.isfinite(self.reg_lambda) and self.reg_lambda >= 0):
            bad("reg_lambda", f"must be a finite number >= 0, got {self.reg_lambda!r}")
        if self.grad_clip is not None and not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            bad("grad_clip", f"must be None or a number > 0, got {self.grad_clip!r}")
        if self.selection not in SELECTIONS:
            bad("selection", f"must be one of {SELECTIONS}, got {self.selection!r}")
        if self.monitor not in MONITORS:
            bad("monitor", f"must be one of {MONITORS}, got {self.monitor!r}")
        if not self.min_delta >= 0:
            bad("min_delta", f"must be >= 0, got {self.min_delta!r}")
        if not 0.0 < self.holdout_fraction < 1.0:
            bad("holdout_fraction", f"must be in (0, 1), got {self.holdout_fraction!r}")
        if self.user_subsample is not None and (not isinstance(self.user_subsample, int) or self.user_subsample < 1):
            bad("user_subsample", f"must be None or an integer >= 1, got {self.user_subsample!r}")
        if not isinstance(self.seed, int):
            bad("seed", f"must be an integer, got {self.seed!r}")
        if not (self.device == "auto" or self.device.startswith(("cpu", "cuda", "mps"))):
            bad("device", f"must be 'auto', 'cpu', 'cuda[:i]' or 'mps', got {self.device!r}")

    @property
    def loss_hp(self) -> dict[str, Any]:
        """The loss hyperparameters as a plain dict (lists for margins and weights)."""
        return {k: _thaw(v) for k, v in self.loss_params}

    @property
    def model_hp(self) -> dict[str, Any]:
        return {k: _thaw(v) for k, v in self.model_params}

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["loss_params"] = self.loss_hp
        out["model_params"] = self.model_hp
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"RunConfig: unknown fields {sorted(unknown)}")
        return cls(**dict(data))

    def key(self) -> str:
        """Stable 16-hex-digit hash of the canonical JSON of every field but ``device`` and ``group``.

        ``group`` is only a label (one run can serve several tables), so it is not part of the key.
        """
        payload = {k: v for k, v in self.to_dict().items() if k not in _NOT_IN_KEY}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=float)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def label(self) -> str:
        """Short name, e.g. ``gowalla/mf/mml/N100/paper/seed2019 [quick] #3f2a9c`` (key prefix)."""
        return (f"{self.dataset}/{self.model}/{self.loss}/N{self.n_negatives}/{self.selection}"
                f"/seed{self.seed} [{self.profile}] #{self.key()[:6]}")


@dataclass
class RunResult:
    """What one run produced: per-epoch history, the selected epoch, the last one, timings."""

    config: RunConfig
    history: list[dict[str, float]]
    best: dict[str, float]
    last: dict[str, float]
    test: dict[str, float]
    timings: dict[str, float]
    device: str
    stopped_early: bool = False
    from_store: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.config.key(),
            "config": self.config.to_dict(),
            "history": self.history,
            "best": self.best,
            "last": self.last,
            "test": self.test,
            "timings": self.timings,
            "device": self.device,
            "stopped_early": self.stopped_early,
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        return cls(config=RunConfig.from_dict(data["config"]), history=list(data["history"]),
                   best=dict(data["best"]), last=dict(data["last"]), test=dict(data["test"]),
                   timings=dict(data["timings"]), device=str(data["device"]),
                   stopped_early=bool(data.get("stopped_early", False)), from_store=True,
                   provenance=dict(data.get("provenance", {})))


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message names the epoch and the step."""


# --------------------------------------------------------------------------------------------
# devices, data, model


def resolve_device(device: str) -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu} ({torch.get_num_threads()} threads)"


def load_run_dataset(config: RunConfig, data_dir: str | None = None) -> Dataset:
    """The dataset of a run: a named/foldered dataset, or ``synthetic[:users:items]`` for tests.

    The quick profile's user subsample uses a fixed seed (0), so every run of a group sees the
    same users whatever its own seed [assumed].
    """
    if config.dataset.startswith("synthetic"):
        parts = config.dataset.split(":")
        sizes = [int(p) for p in parts[1:]]
        dataset = synthetic(*sizes) if sizes else synthetic()
    else:
        dataset = load_dataset(config.dataset, data_dir=data_dir)
    if config.user_subsample is not None and config.user_subsample < dataset.n_users:
        dataset = dataset.subsample_users(config.user_subsample, seed=0)
    return dataset


def build_model(config: RunConfig, dataset: Dataset) -> nn.Module:
    """MF or SimpleX with the run's dimension, dropout and SimpleX parameters (SPEC §3)."""
    common = dict(dim=config.dim, dropout=config.dropout, dropout_placement=config.dropout_placement)
    if config.model == "mf":
        return MF(dataset.n_users, dataset.n_items, **common)
    return SimpleX(dataset.n_users, dataset.n_items, dataset.train_indptr, dataset.train_indices,
                   **common, **config.model_hp)


# --------------------------------------------------------------------------------------------
# the optimiser step


def full_table_penalty(tables: list[torch.Tensor], reg_lambda: float) -> torch.Tensor:
    """(λ/2)·Σ‖W‖² over whole tables: the SimpleX regulariser (SPEC §3)."""
    return 0.5 * reg_lambda * sum(t.pow(2).sum() for t in tables)


class _WeightedRowSquares(torch.autograd.Function):
    """½·Σ_r w_r·‖W_r‖² over a table, with its dense gradient w_r·W_r in one pass."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(table, weights)
        return 0.5 * torch.dot(weights, table.pow(2).sum(dim=1))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        table, weights = ctx.saved_tensors
        return table * (grad * weights)[:, None], None


def batch_penalty(model: nn.Module, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
                  reg_lambda: float) -> torch.Tensor:
    """BSL-repo regulariser l2·(‖u‖² + ‖i⁺‖² + ‖negs‖²)/(2B) on the batch's raw rows (SPEC §8).

    Computed as ½·Σ_r w_r·‖W_r‖² per table with w_r = (l2/B)·(the times row r occurs in the
    batch), which is the same sum and the same gradient (w_r·W_r) without gathering the rows
    again: re-gathered rows would give the tables a second and third sparse gradient per step,
    and summing those cost more than the rest of a BSL step (tests/test_train.py checks the
    value and the gradient against the gathered form).
    """
    scale = reg_lambda / users.shape[0]
    user_weights = torch.bincount(users, minlength=model.user_emb.shape[0]).to(model.user_emb.dtype) * scale
    item_rows = torch.cat([pos.reshape(-1), neg.reshape(-1)])
    item_weights = torch.bincount(item_rows, minlength=model.item_emb.shape[0]).to(model.item_emb.dtype) * scale
    return (_WeightedRowSquares.apply(model.user_emb, user_weights)
            + _WeightedRowSquares.apply(model.item_emb, item_weights))


def batch_loss(model: nn.Module, loss_fn: Callable, config: RunConfig, users: torch.Tensor,
               pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """The loss of one batch without the full-table regulariser (which the step adds itself)."""
    pos_scores, neg_scores = model(users, pos, neg)
    loss = loss_fn(pos_scores, neg_scores, users)
    if config.reg_form == "batch" and config.reg_lambda > 0:
        loss = loss + batch_penalty(model, users, pos, neg, config.reg_lambda)
    return loss


class ExactStep:
    """Dense Adam + full-table regulariser + global-norm clipping, in few passes (SPEC §3).

    Same result as :func:`reference_step` to float rounding:
    g = ∇loss + λ·W on every table row, c = min(1, clip / (‖g‖ + 1e-6)), Adam(c·g).
    The model's table lookups give sparse row gradients (``model.sparse_grad = True``); the
    dense gradient of each table is then built in one pass, ``buf = λ·W`` followed by an
    ``index_add_`` of the batch rows (no zero-fill, no separate regulariser pass). The global
    norm is one ``_foreach_norm``, and c reaches the fused Adam kernel as its gradient scale
    (1/c), so no pass is spent on ``g *= c``. On CUDA nothing here synchronises with the host.
    """

    def __init__(self, model: nn.Module, lr: float, reg_lambda: float, grad_clip: float | None,
                 device: torch.device) -> None:
        model.sparse_grad = True
        self.params = [p for p in model.parameters() if p.requires_grad]
        table_ids = {id(t) for t in model.embedding_tables()}
        self.tables = [p for p in self.params if id(p) in table_ids]
        self.buffers = {id(t): torch.empty_like(t) for t in self.tables}
        self.reg_lambda = reg_lambda
        self.grad_clip = grad_clip
        fused = device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.Adam(self.params, lr=lr, betas=(0.9, 0.999), eps=1e-8,
                                          fused=fused)

    def _dense_table_grad(self, table: torch.Tensor) -> torch.Tensor:
        """λ·W + the batch's row gradients, written into the table's reused buffer."""
        buf = self.buffers[id(table)]
        if self.reg_lambda > 0:
            torch.mul(table.detach(), self.reg_lambda, out=buf)
        else:
            buf.zero_()
        grad = table.grad
        if grad is None:
            return buf
        if grad.is_sparse:  # uncoalesced rows: index_add_ sums the duplicates
            buf.index_add_(0, grad._indices()[0], grad._values())
        else:
            buf.add_(grad)
        return buf

    def __call__(self, loss: torch.Tensor) -> None:
        for p in self.params:
            p.grad = None
        loss.backward()
        for p in self.tables:
            p.grad = self._dense_table_grad(p)
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if self.grad_clip is not None:
            norms = torch._foreach_norm([p.grad for p in self.params])
            total = torch.linalg.vector_norm(torch.stack(norms))
            coef = torch.clamp(self.grad_clip / (total + 1e-6), max=1.0)
            self.optimizer.grad_scale = (1.0 / coef).float()  # the fused kernel takes fp32
        self.optimizer.step()

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr


def reference_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                   reg_lambda: float, grad_clip: float | None) -> None:
    """The plain PyTorch formulation of SPEC §3, for tests and benchmarks.

    loss + (λ/2)·Σ‖W‖² over the whole tables, backward, ``clip_grad_norm_``, ``optimizer.step()``.
    """
    optimizer.zero_grad(set_to_none=True)
    if reg_lambda > 0:
        loss = loss + full_table_penalty(model.embedding_tables(), reg_lambda)
    loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


def compare_steps(model_kind: str = "mf", loss: str = "mml", loss_params: Mapping[str, Any] | None = None,
                  reg_lambda: float = 1e-2, grad_clip: float | None = 10.0, steps: int = 4,
                  device: str | torch.device = "cpu", dtype: torch.dtype = torch.float64,
                  ) -> tuple[nn.Module, nn.Module, list[tuple[float, float]]]:
    """Run :class:`ExactStep` and :func:`reference_step` side by side from one state.

    Same synthetic data (120 users, 150 items), same batches (32 rows, 10 negatives), dropout
    off; the reference model scores through the textbook ``F.normalize`` + ``bmm`` path with
    dense gradients and ``torch.optim.Adam``. Returns ``(fast_model, reference_model,
    [(fast_loss, reference_loss) per step])`` for the caller to compare (tests, ``mmlrepro
    check``)."""
    device = torch.device(device)
    dataset = synthetic(120, 150, seed=3)
    hp = dict(loss_params) if loss_params is not None else {
        "margins": [0.1, 0.5], "weights": [0.3, 0.7], "pos_weight": 1.0, "neg_weight": 50.0}
    model_params = ({"aggregator": "attention", "gate": 0.8, "separate_history_table": True}
                    if model_kind == "simplex" else {})
    config = RunConfig(dataset="synthetic", model=model_kind, loss=loss, loss_params=hp,
                       reg_lambda=reg_lambda, model_params=model_params, grad_clip=grad_clip,
                       dropout=0.0, device=str(device))
    torch.manual_seed(0)
    fast = build_model(config, dataset).to(device, dtype)
    ref = build_model(config, dataset).to(device, dtype)
    ref.load_state_dict(fast.state_dict())
    ref.fused_scores = False
    step = ExactStep(fast, 1e-3, reg_lambda, grad_clip, device)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = get_loss(loss, **hp)
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        users = torch.randint(0, dataset.n_users, (32,), generator=gen).to(device)
        pos = torch.randint(0, dataset.n_items, (32,), generator=gen).to(device)
        neg = torch.randint(0, dataset.n_items, (32, 10), generator=gen).to(device)
        loss_fast = batch_loss(fast, loss_fn, config, users, pos, neg)
        loss_ref = batch_loss(ref, loss_fn, config, users, pos, neg)
        losses.append((loss_fast.item(), loss_ref.item()))
        step(loss_fast)
        reference_step(ref, opt, loss_ref, reg_lambda, grad_clip)
    return fast, ref, losses


# --------------------------------------------------------------------------------------------
# checkpoints


def _atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# A checkpoint after an epoch once this many seconds have passed since the last (train()).
CHECKPOINT_EVERY_S = 30.0


def default_checkpoint_dir() -> Path:
    return Path(os.environ.get("MMLREPRO_CHECKPOINT_DIR", Path.home() / ".cache" / "mmlrepro" / "checkpoints"))


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


def _improved(value: float, best: float | None, min_delta: float) -> bool:
    return best is None or value > best + min_delta


def _best_epoch(history: list[dict[str, float]], monitor: str) -> dict[str, float]:
    """The record with the highest ``monitor``; the earliest such epoch on ties."""
    return max(history, key=lambda r: (r[monitor], -r["epoch"]))


def train(config: RunConfig, *, data_dir: str | None = None, dataset: Dataset | None = None,
          checkpoint_dir: str | Path | None = None, resume: bool = True,
          checkpoint_every_s: float = CHECKPOINT_EVERY_S,
          on_epoch_end: Callable[[int, dict[str, float]], None] | None = None) -> RunResult:
    """Train one run and return its :class:`RunResult` (SPEC §6).

    Selection (``config.selection``):
    - ``paper`` ("N"): ``epochs`` epochs at constant lr, evaluation on test after each; the best
      epoch by ``monitor`` is reported, and the last one too.
    - ``early_stop`` ("Y"): as ``paper``, but stop after ``patience`` epochs without an
      improvement larger than ``min_delta``.
    - ``honest``: a validation split is carved from train (``Dataset.holdout``, seeded by the
      run's seed); the model trains on the rest, selection uses validation, and the test split is
      evaluated once, with the selected weights, at the end (train items, held-out ones
      included, masked).
    ``lr_reduce`` adds the original SimpleX schedule: on each non-improving epoch lr ×0.1 (floor
    1e-6) and the best weights are reloaded.

    A checkpoint (model, optimiser, RNG state, history) is written atomically after an epoch
    once ``checkpoint_every_s`` seconds have passed since the last one (0: after every epoch);
    with ``resume`` a later call continues from it and ends with the metrics of an uninterrupted
    run. It is deleted when the run completes. A Gowalla checkpoint costs about 0.13 s to write,
    which at one per epoch would be 13 s of a 100-epoch run that should take 30 s on a GPU; the
    30 s default keeps one per epoch for CPU paper runs (about a minute an epoch) and loses at
    most 30 s of work on a kill. ``on_epoch_end(epoch, record)`` is called after any checkpoint
    of that epoch is written (tests use it to simulate a kill).
    """
    if checkpoint_every_s < 0:
        raise ValueError(f"checkpoint_every_s must be >= 0, got {checkpoint_every_s}")
    device = resolve_device(config.device)
    if dataset is None:
        dataset = load_run_dataset(config, data_dir)
    loss_fn = get_loss(config.loss, **config.loss_hp)

    if config.selection == "honest":
        _, selection_data = dataset.holdout(config.holdout_fraction, seed=config.seed)
    else:
        selection_data = dataset
    train_users = torch.from_numpy(selection_data.train_users()).to(device)
    train_items = torch.from_numpy(selection_data.train_items()).to(device)
    n_rows = train_users.shape[0]
    eval_index = EvalIndex.from_dataset(selection_data, device)  # device arrays, reused each epoch

    torch.manual_seed(config.seed)
    model = build_model(config, selection_data).to(device)
    reg_full = config.reg_lambda if config.reg_form == "full_table" else 0.0
    step = ExactStep(model, config.lr, reg_full, config.grad_clip, device)

    ckpt_path = Path(checkpoint_dir or default_checkpoint_dir()) / f"{config.key()}.pt"
    history: list[dict[str, float]] = []
    best_value: float | None = None
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs = 0
    lr = config.lr
    timings = {"train_s": 0.0, "eval_s": 0.0}
    start_epoch = 1
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        step.optimizer.load_state_dict(ckpt["optimizer"])
        history, best_value, bad_epochs, lr = ckpt["history"], ckpt["best_value"], ckpt["bad_epochs"], ckpt["lr"]
        best_state = ckpt["best_state"]
        timings = ckpt["timings"]
        step.set_lr(lr)
        _set_rng_state(ckpt["rng"], device)
        start_epoch = len(history) + 1

    saved_epoch, saved_at = start_epoch - 1, time.perf_counter()
    stopped_early = False
    bar = _progress(config.epochs, config.label(), initial=start_epoch - 1)
    for epoch in range(start_epoch, config.epochs + 1):
        if config.selection == "early_stop" and bad_epochs >= config.patience:
            stopped_early = True
            break
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n_rows, device=device)
        loss_sum = torch.zeros((), device=device)
        first_bad = torch.full((), -1, dtype=torch.long, device=device)
        n_steps = 0
        for start in range(0, n_rows, config.batch_size):
            rows = perm[start:start + config.batch_size]
            users, pos = train_users[rows], train_items[rows]
            neg = torch.randint(selection_data.n_items, (rows.shape[0], config.n_negatives), device=device)
            loss = batch_loss(model, loss_fn, config, users, pos, neg)
            value = loss.detach()
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(value),
                                    torch.full_like(first_bad, n_steps + 1), first_bad)
            if device.type == "cpu" and int(first_bad) > 0:
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
        metrics = evaluate(model, selection_data, index=eval_index)
        t2 = time.perf_counter()
        timings["train_s"] += t1 - t0
        timings["eval_s"] += t2 - t1
        record = {"epoch": epoch, "loss": float(loss_sum) / max(n_steps, 1), "lr": lr, **metrics,
                  "train_s": t1 - t0, "eval_s": t2 - t1}
        history.append(record)
        value = metrics[config.monitor]
        if _improved(value, best_value, config.min_delta):
            best_value, bad_epochs = value, 0
            if config.selection == "honest" or config.lr_reduce:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
            if config.lr_reduce:
                lr = max(lr * 0.1, 1e-6)
                step.set_lr(lr)
                model.load_state_dict(best_state)
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.4f}", recall20=f"{metrics['recall@20']:.4f}")
        if epoch < config.epochs and time.perf_counter() - saved_at >= checkpoint_every_s:
            _atomic_torch_save({"model": model.state_dict(), "optimizer": step.optimizer.state_dict(),
                                "history": history, "best_value": best_value, "bad_epochs": bad_epochs,
                                "lr": lr, "best_state": best_state, "timings": timings,
                                "rng": _rng_state(device), "key": config.key()}, ckpt_path)
            saved_epoch, saved_at = epoch, time.perf_counter()
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
    bar.close()

    best = _best_epoch(history, config.monitor)
    test: dict[str, float] = {}
    if config.selection == "honest":
        model.load_state_dict(best_state)
        t0 = time.perf_counter()
        test = evaluate(model, dataset)
        timings["eval_s"] += time.perf_counter() - t0
    ckpt_path.unlink(missing_ok=True)
    return RunResult(config=config, history=history, best=dict(best), last=dict(history[-1]),
                     test=test, timings=timings, device=device_name(device),
                     stopped_early=stopped_early)


def early_stop_from_history(paper: RunResult, config: RunConfig) -> RunResult:
    """The ``early_stop`` ("Y") run of ``config``, read off the history of its ``paper`` ("N") twin.

    SPEC §6: "Y" stops after ``patience`` epochs without an improvement larger than ``min_delta``;
    without ``lr_reduce`` nothing else differs. The two runs share the seed, so they draw the same
    initial weights, batch orders and negatives, and train identically until "Y" stops: the
    stopping rule only decides when the loop ends. The "Y" history is therefore the prefix of the
    "N" history that :func:`train` would have kept, cut by the same rule, and its selected epoch
    is the best of that prefix. Timings are the prefix's. (On CUDA, whose ``index_add_`` is not
    bit-deterministic, two trainings of one config already differ at that level.)
    """
    if config.selection != "early_stop":
        raise ValueError(f"{config.label()}: selection must be 'early_stop' to read it off a paper run")
    if config.lr_reduce:
        raise ValueError(f"{config.label()}: lr_reduce changes the trajectory after the first "
                         "non-improving epoch, so the run cannot be read off a run without it")
    if paper.config.selection != "paper" or paper.config.key() != config.replace(selection="paper").key():
        raise ValueError(f"{paper.config.label()} is not the 'paper' twin of {config.label()}: "
                         "every field but selection must agree")
    if len(paper.history) != paper.config.epochs:
        raise ValueError(f"{paper.config.label()}: history has {len(paper.history)} of "
                         f"{paper.config.epochs} epochs")
    history: list[dict[str, float]] = []
    best_value: float | None = None
    bad_epochs = 0
    for record in paper.history:  # the loop of train(), with the evaluations already done
        if bad_epochs >= config.patience:
            break
        history.append(dict(record))
        if _improved(record[config.monitor], best_value, config.min_delta):
            best_value, bad_epochs = record[config.monitor], 0
        else:
            bad_epochs += 1
    timings = {name: sum(r[name] for r in history) for name in ("train_s", "eval_s")}
    return RunResult(config=config, history=history, best=dict(_best_epoch(history, config.monitor)),
                     last=dict(history[-1]), test={}, timings=timings, device=paper.device,
                     stopped_early=len(history) < len(paper.history))
