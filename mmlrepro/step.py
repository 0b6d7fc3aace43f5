"""One optimiser step of SPEC §3, exact and fast: :class:`ExactStep`, and the batch loss.

The optimiser semantics are those of the official SimpleX code, which the MML runs reuse:
every batch adds (λ/2)·Σ‖W‖² over the **whole** embedding tables, the gradient is clipped to a
global norm of 10 (``torch.nn.utils.clip_grad_norm_``), and dense Adam (β 0.9/0.999, ε 1e-8)
updates every row of every table. :class:`ExactStep` computes exactly that with a few passes over
each table (the regulariser gradient λW written straight into the gradient buffer, the clip
factor handed to the fused Adam kernel as its gradient scale) instead of the ~30 passes of the
plain loop (``mmlrepro.check.reference_step``, kept with the checks that compare the two).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from mmlrepro.config import RunConfig


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


def _row_counts(rows: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """How many times each row of ``table`` occurs in ``rows``, as ``table``'s dtype.

    ``index_add_`` of ones rather than ``torch.bincount``, which reads its input's range back to
    the host on CUDA (a synchronisation every step); counts below 2^24 are exact in float32.
    """
    counts = torch.zeros(table.shape[0], dtype=table.dtype, device=table.device)
    return counts.index_add_(0, rows, torch.ones(rows.shape, dtype=table.dtype, device=table.device))


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
    user_weights = _row_counts(users, model.user_emb) * scale
    item_weights = _row_counts(torch.cat([pos.reshape(-1), neg.reshape(-1)]), model.item_emb) * scale
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
    Adam is always the fused one: runs use the CPU or CUDA (:mod:`mmlrepro.devices`), where it
    exists, and only it takes the gradient scale.
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
        if device.type not in ("cpu", "cuda"):   # mmlrepro.devices accepts no other
            raise ValueError(f"ExactStep runs on the CPU or CUDA (the fused Adam's devices), not {device.type}")
        self.optimizer = torch.optim.Adam(self.params, lr=lr, betas=(0.9, 0.999), eps=1e-8, fused=True)

    def _dense_table_grad(self, table: torch.Tensor) -> torch.Tensor:
        """λ·W + the batch's row gradients, written into the table's reused buffer.

        A sparse gradient (uncoalesced rows) is added onto ``buf = λ·W`` by ``index_add_``,
        which sums the duplicates; a dense one (the compiled scores kernel's) in the same pass
        as λ·W: ``buf = grad + λ·W``."""
        buf = self.buffers[id(table)]
        grad = table.grad
        if grad is not None and not grad.is_sparse:
            if self.reg_lambda > 0:
                return torch.add(grad, table.detach(), alpha=self.reg_lambda, out=buf)
            return buf.copy_(grad)
        if self.reg_lambda > 0:
            torch.mul(table.detach(), self.reg_lambda, out=buf)
        else:
            buf.zero_()
        if grad is not None:
            buf.index_add_(0, grad._indices()[0], grad._values())
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

