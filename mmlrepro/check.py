"""Self-check on a device: the fast paths against their textbook forms (``mmlrepro check``).

The tests do the same on the CPU; this module lets a machine without pytest (a lent GPU has
only torch, numpy, pandas and tqdm) confirm, before any paper run, that on *its* device

- the exact fast step (fused gathered cosine, sparse rows, λ·W buffer, clip as the fused Adam's
  gradient scale) equals the plain loop of SPEC §3 (``nn.Embedding``-style dense gradients, the
  full-table penalty in the loss, ``clip_grad_norm_``, ``torch.optim.Adam``) after several
  steps, for MF and SimpleX, with and without an active clip;
- the full-ranking evaluation on the device equals the one on the CPU.
"""

from __future__ import annotations

import torch

from mmlrepro.data import synthetic
from mmlrepro.metrics import evaluate
from mmlrepro.models import MF
from mmlrepro.train import compare_steps

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


def device_checks(device: str | torch.device) -> list[dict]:
    """Every check on ``device`` (``"cpu"``, ``"cuda"``, ...)."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch.cuda.is_available() is False")
    return [*step_checks(device), evaluation_check(device)]
