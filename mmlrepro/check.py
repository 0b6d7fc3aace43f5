"""Self-check on a device: the fast paths against their textbook forms (``mmlrepro check``).

The tests do the same on the CPU; this module lets a machine without pytest (a lent GPU has
only torch, numpy, pandas and tqdm) confirm, before any paper run, that on *its* device

- the exact fast step (fused gathered cosine, through the compiled kernel on the CPU where it
  is built; sparse rows, λ·W buffer, clip as the fused Adam's gradient scale) equals the plain
  loop of SPEC §3 (``nn.Embedding``-style dense gradients, the full-table penalty in the loss,
  ``clip_grad_norm_``, ``torch.optim.Adam``) after several steps, for MF and SimpleX, with and
  without an active clip; on the CPU, the compiled negatives kernel equals the PyTorch path;
- the full-ranking evaluation on the device equals the one on the CPU;
- real training steps of MF, SimpleX with attention and BSL (negatives, loss, exact step) run
  without one host synchronisation (``torch.cuda.set_sync_debug_mode("error")`` on a GPU), and
  a run checkpointed, interrupted and resumed on the device ends like an uninterrupted one
  (issue 19).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from mmlrepro.config import RunConfig
from mmlrepro.data import synthetic
from mmlrepro.devices import resolve_device
from mmlrepro.kernels import compiled_kernels
from mmlrepro.losses import get_loss
from mmlrepro.metrics import evaluate
from mmlrepro.models import MF, gathered_cosine
from mmlrepro.sampling import sample_negatives
from mmlrepro.step import ExactStep, batch_loss, full_table_penalty
from mmlrepro.train import RunInterrupted, build_model, train


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



STEP_SETTINGS = ((1e-2, 10.0), (1e-4, 1e-3), (0.0, None))   # (λ, clip); 1e-3 makes the clip act
LOSS_RTOL, PARAM_RTOL, PARAM_ATOL, METRIC_ATOL = 1e-6, 1e-5, 1e-9, 1e-6


def step_checks(device: str | torch.device) -> list[dict]:
    """One row per (model, λ, clip): the largest relative loss gap over 4 steps, the largest
    parameter gap, and whether both are within tolerance (float64 on the device)."""
    rows = []
    for model in ("mf", "simplex"):
        for reg, clip in STEP_SETTINGS:
            fast, ref, losses = compare_steps(model, reg_lambda=reg, grad_clip=clip, device=device)
            loss_gap = max(abs(a - b) / max(abs(b), 1e-12) for a, b in losses)
            pairs = list(zip(fast.parameters(), ref.parameters(), strict=True))
            param_gap = max(float((p - q).detach().abs().max()) for p, q in pairs)
            ok = loss_gap <= LOSS_RTOL and all(
                torch.allclose(p, q, rtol=PARAM_RTOL, atol=PARAM_ATOL) for p, q in pairs)
            rows.append({"check": f"exact step = plain loop: {model}, λ {reg:g}, clip {clip}",
                         "gap": f"loss {loss_gap:.1e} (rel), params {param_gap:.1e}", "ok": ok})
    return rows


def evaluation_check(device: str | torch.device) -> dict:
    """Recall/NDCG@20/50 of one random MF on synthetic data: the device against the CPU."""
    dataset = synthetic(300, 500, seed=5)
    torch.manual_seed(0)
    model = MF(dataset.n_users, dataset.n_items, dim=16, init_std=1.0).eval()
    on_cpu = evaluate(model, dataset)
    on_device = evaluate(model.to(device), dataset)
    gap = max(abs(on_cpu[k] - on_device[k]) for k in on_cpu)
    return {"check": f"evaluate on {device} = evaluate on cpu", "gap": f"metrics {gap:.1e}",
            "ok": gap <= METRIC_ATOL}


# (model, loss, model params, loss params) of the no-synchronisation check: the paper's kinds
SYNC_RUNS = (("mf", "mml", {}, {"margins": [0.1, 0.5], "weights": [0.3, 0.7], "neg_weight": 50.0}),
             ("simplex", "mml", {"aggregator": "attention", "gate": 0.8, "separate_history_table": True},
              {"margins": [0.1, 0.5], "weights": [0.3, 0.7], "neg_weight": 50.0}),
             ("mf", "bsl", {}, {"mode": "multi", "tau1": 0.1, "tau2": 1.0}))


@contextmanager
def _no_host_sync(device: torch.device):
    """On a GPU, any synchronisation with the host raises inside this block."""
    if device.type != "cuda":
        yield
        return
    torch.cuda.synchronize(device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def sync_check(device: torch.device, model_kind: str, loss: str, model_params: dict, loss_params: dict,
               steps: int = 5) -> dict:
    """``steps`` training steps (negatives drawn on the device, the batch loss, the exact step)
    of one kind of run with no host synchronisation allowed (on a GPU)."""
    dataset = synthetic(120, 150, seed=3)
    reg = {"reg_form": "batch", "reg_lambda": 1e-4} if loss == "bsl" else {"reg_lambda": 1e-4}
    config = RunConfig(dataset="synthetic", model=model_kind, loss=loss, loss_params=loss_params,
                       model_params=model_params, device=str(device), **reg)
    torch.manual_seed(0)
    model = build_model(config, dataset).to(device).train()
    step = ExactStep(model, config.lr, config.reg_lambda if config.reg_form == "full_table" else 0.0,
                     config.grad_clip, device)
    loss_fn = get_loss(loss, **config.loss_hp)
    users_all = torch.from_numpy(dataset.train_users()).to(device)
    items_all = torch.from_numpy(dataset.train_items()).to(device)
    what = f"{steps} steps without a host sync: {model_kind} + {loss}" + (
        f" ({model_params['aggregator']})" if model_params else "")
    try:
        with _no_host_sync(device):
            for _ in range(steps):
                rows = torch.randint(0, len(users_all), (32,), device=device)
                users, pos = users_all[rows], items_all[rows]
                neg = sample_negatives(32, 10, dataset.n_items, device=device)
                step(batch_loss(model, loss_fn, config, users, pos, neg))
        finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    except RuntimeError as err:
        return {"check": what, "gap": " ".join(str(err).split())[:160], "ok": False}
    return {"check": what, "gap": "none" if device.type == "cuda" else "n/a on the cpu", "ok": finite}


def resume_check(device: torch.device) -> dict:
    """A 3-epoch run checkpointed after each epoch and interrupted after epoch 1, resumed on the
    device, against the same run uninterrupted: the same history length and metrics (to
    :data:`RESUME_ATOL`: CUDA's ``index_add_`` is not bit-deterministic; 0 on the CPU)."""
    config = RunConfig(dataset="synthetic:120:150", loss="bpr", n_negatives=5, epochs=3, batch_size=64,
                       lr=1e-2, device=str(device))

    def stop_after_first(epoch: int, record: dict) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with tempfile.TemporaryDirectory() as ckpt:
        whole = train(config, checkpoint_dir=ckpt, log=None)
        try:
            train(config, checkpoint_dir=ckpt, checkpoint_every_s=0, on_epoch_end=stop_after_first, log=None)
        except RunInterrupted:
            pass
        notes: list[str] = []
        resumed = train(config, checkpoint_dir=ckpt, log=notes.append)
    gap = max(abs(a[k] - b[k]) for a, b in zip(whole.history, resumed.history, strict=True)
              for k in ("recall@20", "ndcg@20", "loss"))
    ok = any("resumed" in n and "after epoch 1" in n for n in notes) and len(resumed.history) == 3 and (
        gap <= (RESUME_ATOL if device.type == "cuda" else 0.0))
    return {"check": f"checkpoint, interrupt and resume on {device}", "gap": f"metrics {gap:.1e}", "ok": ok}


RESUME_ATOL = 1e-4


def kernel_check() -> dict:
    """The compiled negatives kernel (:mod:`mmlrepro.kernels`) against the PyTorch path on the
    CPU: scores and both gradients in float64, rows drawn up to eight times each. Where the
    kernel is not built the row says so and passes: the step then uses the PyTorch path, which
    the step checks above cover."""
    what = "compiled negatives kernel = PyTorch path (cpu, float64)"
    if compiled_kernels() is None:
        return {"check": what, "gap": "not built here: the PyTorch path is used", "ok": True}
    gen = torch.Generator().manual_seed(4)
    u = torch.randn(32, 16, dtype=torch.float64, generator=gen)
    table = torch.randn(50, 16, dtype=torch.float64, generator=gen)
    idx = torch.randint(0, 50, (32, 12), generator=gen)
    weights = torch.randn(32, 12, dtype=torch.float64, generator=gen)
    results = []
    for compiled in (True, False):
        u_, t_ = u.clone().requires_grad_(), table.clone().requires_grad_()
        s = gathered_cosine(u_, t_, idx, sparse_grad=False, compiled=compiled)
        results.append((s.detach(), *torch.autograd.grad((s * weights).sum(), (u_, t_))))
    gap = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(*results, strict=True))
    return {"check": what, "gap": f"scores and gradients {gap:.1e} (rel)", "ok": gap <= 1e-12}


def device_checks(device: str | torch.device) -> list[dict]:
    """Every check on ``device`` (``"cpu"``, ``"cuda"``, ...)."""
    device = resolve_device(str(device))
    kernel = [kernel_check()] if device.type == "cpu" else []
    return [*step_checks(device), *kernel, evaluation_check(device),
            *(sync_check(device, *run) for run in SYNC_RUNS), resume_check(device)]
