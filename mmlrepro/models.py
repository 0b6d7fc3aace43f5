"""MF and SimpleX with cosine scores (SPEC §3).

Both models share one scoring path: ``user_vectors`` gives L2-normalised user vectors (dropout in
training mode only), ``item_vectors`` L2-normalised item vectors, and every score is their dot
product, i.e. the cosine ŷ(u, i) = <u/‖u‖, i/‖i‖> in [-1, 1] (beyond 1 in training, where the
dropout 1/(1-p) rescaling acts on the normalised user vector [code]).

Parameters (names are stable; the trainer updates the tables with its own optimizer step):

- ``user_emb`` ``[n_users, d]``, ``item_emb`` ``[n_items, d]``: plain ``nn.Parameter`` tensors,
  N(0, σ = 1e-4) [code: ``embedding_initializer: normal_(std=1e-4)``].
- SimpleX only: ``hist_emb`` ``[n_items, d]`` (the separate history table, or ``None`` when the
  history shares ``item_emb``), ``V`` (``nn.Linear(d, d, bias=False)``, the W_v of the code) and,
  for user attention, ``W`` (``nn.Linear(d, d)``, the W_k of the code). The official RecBox base
  model re-initialises every ``nn.Linear`` with ``xavier_normal_`` and zero bias; we do the same
  [recon: RecBox ``init_weights``].

``embedding_tables()`` lists what the SimpleX full-table regulariser (λ/2)·Σ‖W‖² covers. In the
official code the ``embedding_regularizer`` applies to parameters under ``embedding_layer`` (user,
item and history tables) while V and W fall under ``net_regularizer``, which is 0 in every paper
config; so V and W are *not* listed [code].
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from mmlrepro.config import DROPOUT_PLACEMENTS, SIMPLEX_DEFAULTS
from mmlrepro.kernels import compiled_kernels
from mmlrepro.metrics import as_int64

__all__ = ["MF", "SimpleX", "DROPOUT_PLACEMENTS", "AGGREGATORS", "gathered_cosine", "kernel_scores"]

AGGREGATORS = ("mean", "attention")
NORM_EPS = 1e-12   # F.normalize's default: x / max(‖x‖, eps)
# The compiled kernel scores a batch when it draws at least this many pairs per table row (B·K ≥
# KERNEL_MIN_FILL·n): its passes and its dense gradient cost O(n·d) a step, which below that
# outweighs what it saves (measured on 2 cores, Gowalla MF + MML at 1 thread: N = 10 and 50
# slower by 20 % and 5 %, N = 100 faster by 18 %; benchmarks/RESULTS.md, issue 37).
KERNEL_MIN_FILL = 0.5


class _GatheredCosine(torch.autograd.Function):
    """s[b, k] = <u_b, e_bk> / max(‖e_bk‖, eps) with e_bk = table[idx[b, k]], in few passes.

    The same function as ``bmm(F.normalize(table[idx]), u)`` (SPEC §3 scores), with the
    normalised rows never materialised. Backward, with a = g/n and c = g·s/n² (c = 0 where
    the clamp is active):  ∂/∂u = Σ_k a_k e_k,  ∂/∂e_k = a_k u − c_k e_k,  and the row gradients
    go to the table as a sparse (uncoalesced) gradient or through one ``index_add_``.
    """

    @staticmethod
    def forward(ctx, u: Tensor, table: Tensor, idx: Tensor, sparse: bool) -> Tensor:
        rows = table.index_select(0, idx.reshape(-1)).view(*idx.shape, table.shape[1])
        norms = torch.linalg.vector_norm(rows, dim=-1)
        denom = norms.clamp_min(NORM_EPS)
        scores = torch.bmm(rows, u.unsqueeze(-1)).squeeze(-1).div_(denom)
        ctx.save_for_backward(u, rows, idx, norms, scores)
        ctx.sparse, ctx.table_shape = sparse, table.shape
        return scores

    @staticmethod
    def backward(ctx, grad: Tensor):
        u, rows, idx, norms, scores = ctx.saved_tensors
        denom = norms.clamp_min(NORM_EPS)
        a = grad / denom
        c = torch.where(norms >= NORM_EPS, a * scores / denom, 0.0)
        grad_u = torch.bmm(a.unsqueeze(1), rows).squeeze(1) if ctx.needs_input_grad[0] else None
        grad_table = None
        if ctx.needs_input_grad[1]:
            grad_rows = rows * c.neg().unsqueeze(-1)
            grad_rows.baddbmm_(a.unsqueeze(-1), u.unsqueeze(1))
            flat_idx, flat_rows = idx.reshape(-1), grad_rows.view(-1, rows.shape[-1])
            if ctx.sparse:
                grad_table = torch.sparse_coo_tensor(flat_idx.unsqueeze(0), flat_rows,
                                                     ctx.table_shape, check_invariants=False)
            else:
                grad_table = flat_rows.new_zeros(ctx.table_shape).index_add_(0, flat_idx, flat_rows)
        return grad_u, grad_table, None, None


class _KernelCosine(torch.autograd.Function):
    """:class:`_GatheredCosine`'s function through the compiled CPU kernel
    (:mod:`mmlrepro.kernels`): the same formulas, with the pairs grouped by table row so that
    forward and backward read each drawn row once and the backward writes the table's dense
    gradient in one sequential pass; no ``[B, K, d]`` block is written."""

    @staticmethod
    def forward(ctx, u: Tensor, table: Tensor, idx: Tensor, kernel) -> Tensor:
        scores, *grouping = kernel.gathered_cosine_forward(u, table, idx, NORM_EPS)
        ctx.save_for_backward(u, table, *grouping)
        ctx.kernel = kernel
        return scores

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        want_u, want_table = ctx.needs_input_grad[:2]
        grad_u, grad_table = ctx.kernel.gathered_cosine_backward(grad, *ctx.saved_tensors, NORM_EPS, want_u,
                                                 want_table)
        return grad_u if want_u else None, grad_table if want_table else None, None, None


def _compiled_kernel(u: Tensor, table: Tensor, idx: Tensor):
    """The compiled kernel when it applies (CPU float32/float64 contiguous tensors), else None.
    Off the CPU the PyTorch path is already fast (a GPU is bandwidth-rich) and is kept."""
    if u.device.type != "cpu" or table.device.type != "cpu" or idx.device.type != "cpu":
        return None
    if u.dtype not in (torch.float32, torch.float64) or table.dtype != u.dtype \
            or idx.dtype != torch.long or not table.is_contiguous():
        return None
    return compiled_kernels()


def kernel_scores(device: torch.device, pairs: int, n_items: int) -> bool:
    """Whether :func:`gathered_cosine` scores ``pairs`` (user, item) pairs against a table of
    ``n_items`` rows on ``device`` (float32 or float64) with the compiled kernel: on the CPU, at
    least :data:`KERNEL_MIN_FILL` pairs per row, and the kernel built here."""
    return (device.type == "cpu" and pairs >= KERNEL_MIN_FILL * n_items
            and compiled_kernels() is not None)


def gathered_cosine(u: Tensor, table: Tensor, idx: Tensor, sparse_grad: bool = False,
                    compiled: bool = True) -> Tensor:
    """Cosine scores ``[B, K]`` of user vectors ``u [B, d]`` against rows ``table[idx]``
    (``idx [B, K]``), each row L2-normalised as ``F.normalize`` does (SPEC §3).

    Equal to ``torch.bmm(F.normalize(table[idx], dim=-1), u[..., None])[..., 0]`` to float
    rounding. On the CPU, with ``compiled`` (the default), the kernel of :mod:`mmlrepro.kernels`
    built and at least :data:`KERNEL_MIN_FILL` pairs per table row, the compiled kernel: each
    drawn row read once forward and once backward, the table's gradient dense (issue 37).
    Otherwise the PyTorch autograd function, in about half the memory passes of the
    normalise-then-bmm form, whose table gradient is sparse when ``sparse_grad`` (as
    ``F.embedding(..., sparse=True)``)."""
    if u.dim() != 2 or idx.dim() != 2 or idx.shape[0] != u.shape[0] or table.shape[1] != u.shape[1]:
        raise ValueError(f"gathered_cosine: need u [B, d], table [n, d], idx [B, K]; got "
                         f"{tuple(u.shape)}, {tuple(table.shape)}, {tuple(idx.shape)}")
    use = compiled and kernel_scores(u.device, idx.numel(), table.shape[0])
    kernel = _compiled_kernel(u, table, idx) if use else None
    if kernel is not None:
        return _KernelCosine.apply(u.contiguous(), table, idx.contiguous(), kernel)
    return _GatheredCosine.apply(u, table, idx, sparse_grad)


def _check_common(n_users: int, n_items: int, dim: int, dropout: float, dropout_placement: str,
                  init_std: float) -> None:
    if n_users < 1 or n_items < 1:
        raise ValueError(f"n_users and n_items must be >= 1, got {n_users} and {n_items}")
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if dropout_placement not in DROPOUT_PLACEMENTS:
        raise ValueError(f"dropout_placement must be one of {DROPOUT_PLACEMENTS}, "
                         f"got {dropout_placement!r}")
    if not init_std > 0:
        raise ValueError(f"init_std must be > 0, got {init_std}")


def _normal_table(n: int, dim: int, std: float) -> nn.Parameter:
    return nn.Parameter(torch.randn(n, dim) * std)


class _CosineModel(nn.Module):
    """Shared scoring path of MF and SimpleX: cosine scores, dropout on the user vector."""

    def __init__(self, n_users: int, n_items: int, dim: int, dropout: float,
                 dropout_placement: str, init_std: float) -> None:
        super().__init__()
        _check_common(n_users, n_items, dim, dropout, dropout_placement, init_std)
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        self.dropout, self.dropout_placement = dropout, dropout_placement
        self.user_emb = _normal_table(n_users, dim, init_std)
        self.item_emb = _normal_table(n_items, dim, init_std)
        # True: table lookups give sparse row gradients (the trainer's fast exact step builds
        # the dense gradient λW + rows itself); False: ordinary dense gradients.
        self.sparse_grad = False
        # True: training scores through the fused gathered_cosine; False: the textbook
        # F.normalize + bmm path (the reference the tests compare the fused path with).
        self.fused_scores = True
        # True: the fused scores through the compiled CPU kernel where it is built (issue 37);
        # False: through the PyTorch autograd function (benchmarks and tests compare the two).
        self.compiled_scores = True

    def rows(self, table: Tensor, idx: Tensor) -> Tensor:
        """``table[idx]`` (``[*idx.shape, d]``), with a sparse gradient when ``sparse_grad``."""
        return F.embedding(idx, table, sparse=self.sparse_grad)

    def raw_user_vectors(self, users: Tensor, exclude_items: Tensor | None = None) -> Tensor:
        """Un-normalised user vectors ``[B, d]`` (model specific)."""
        raise NotImplementedError

    def _user_vectors(self, users: Tensor, exclude_items: Tensor | None, drop: bool) -> Tensor:
        h = self.raw_user_vectors(users, exclude_items)
        p = self.dropout if drop else 0.0
        if self.dropout_placement == "before_norm":   # BSL: dropout, then normalise
            return F.normalize(F.dropout(h, p, training=drop), dim=-1)
        return F.dropout(F.normalize(h, dim=-1), p, training=drop)   # SPEC §3 [code]

    def user_vectors(self, users: Tensor, exclude_items: Tensor | None = None) -> Tensor:
        """L2-normalised user vectors ``[B, d]``; dropout (placement ``dropout_placement``) in
        training mode only."""
        return self._user_vectors(users, exclude_items, self.training and self.dropout > 0)

    def item_vectors(self, items: Tensor | None = None) -> Tensor:
        """L2-normalised item vectors: ``[*items.shape, d]``, or the whole table ``[n_items, d]``
        when ``items`` is None. Only the gathered rows are normalised."""
        e = self.item_emb if items is None else self.rows(self.item_emb, items)
        return F.normalize(e, dim=-1)

    def score_users(self, users: Tensor) -> Tensor:
        """Cosine scores of every item for ``users``: ``[B, n_items]``, never with dropout (for
        ranking)."""
        return self._user_vectors(users, None, False) @ self.item_vectors().T

    def forward(self, users: Tensor, pos_items: Tensor,
                neg_items: Tensor) -> tuple[Tensor, Tensor]:
        """Scores of a training batch: ``(s⁺ [B], s⁻ [B, N])``.

        u = user_vectors(users, exclude_items=pos_items in training), s⁺ = <u, î⁺>,
        s⁻_j = <u, î⁻_j> with î the normalised item vectors of the gathered rows only (one
        :func:`gathered_cosine` over ``[pos, negs]``).
        """
        u = self.user_vectors(users, exclude_items=pos_items if self.training else None)
        if not self.fused_scores:
            pos = (u * self.item_vectors(pos_items)).sum(-1)
            return pos, torch.bmm(self.item_vectors(neg_items), u.unsqueeze(-1)).squeeze(-1)
        items = torch.cat([pos_items.unsqueeze(1), neg_items], dim=1)
        scores = gathered_cosine(u, self.item_emb, items, self.sparse_grad,
                                 self.compiled_scores)
        return scores[:, 0], scores[:, 1:]

    def embedding_tables(self) -> list[nn.Parameter]:
        """Tables covered by the full-table regulariser (λ/2)·Σ‖W‖² (SPEC §3)."""
        return [self.user_emb, self.item_emb]


class MF(_CosineModel):
    """Matrix factorisation with cosine scores (SPEC §3): h_u = e_u,
    ŷ(u, i) = cos(e_u, e_i), d = 64, N(0, 1e-4) init, dropout 0.1 on the normalised user vector.

    ``exclude_items`` is accepted and ignored (MF has no history)."""

    def __init__(self, n_users: int, n_items: int, dim: int = 64, dropout: float = 0.1,
                 dropout_placement: str = "after_norm", init_std: float = 1e-4) -> None:
        super().__init__(n_users, n_items, dim, dropout, dropout_placement, init_std)

    def raw_user_vectors(self, users: Tensor, exclude_items: Tensor | None = None) -> Tensor:
        return self.rows(self.user_emb, users)


def padded_history(indptr, indices, n_items: int,
                   cap: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Left-aligned padded history ``([n_users, L] int64, lengths [n_users] int64)`` from a CSR.

    Row u holds the user's items in CSR (file) order in slots ``0..len_u-1``, zeros after.
    With ``cap``, only the **last** ``cap`` items are kept. L = max(max len_u, 1).
    """
    indptr, indices = as_int64(indptr), as_int64(indices)
    if indptr.ndim != 1 or len(indptr) < 2 or indptr[0] != 0 or indptr[-1] != len(indices) \
            or np.any(np.diff(indptr) < 0):
        raise ValueError("history_indptr is not a valid CSR index pointer "
                         f"(len {len(indptr)}, last {indptr[-1] if len(indptr) else None}, "
                         f"{len(indices)} indices)")
    if len(indices) and (indices.min() < 0 or indices.max() >= n_items):
        raise ValueError(f"history_indices hold item ids outside [0, {n_items})")
    if cap is not None and cap < 1:
        raise ValueError(f"history_cap must be None or >= 1, got {cap}")
    counts = np.diff(indptr)
    lens = counts if cap is None else np.minimum(counts, cap)
    start = indptr[1:] - lens                                   # keep the last `lens` items
    width = max(int(lens.max()), 1)
    rows = np.repeat(np.arange(len(lens)), lens)
    cols = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
    hist = np.zeros((len(lens), width), np.int64)
    hist[rows, cols] = indices[np.repeat(start, lens) + cols]
    return hist, lens.astype(np.int64)


class SimpleX(_CosineModel):
    """SimpleX (Mao et al. 2021) with cosine scores (SPEC §3).

    h_u = g·e_u + (1−g)·V·p_u (V d×d without bias, g fixed), score cos(h_u, e_i).
    p_u aggregates the user's train items H_u (the row's own positive removed in training):

    - ``"mean"``: p_u = (1/|H_u|)·Σ_k e_k (0 for an empty history);
    - ``"attention"`` (user attention): α_k = softmax_k(e_uᵀ tanh(W e_k + b)), p_u = Σ_k α_k e_k.
      ``padding_softmax_bug=True`` reproduces the official masked softmax: padded slots get
      logit 0 and so add exp(0) = 1 each to the denominator while contributing zero vectors,
      α_k = exp(s_k) / (Σ_{valid} exp(s_j) + n_pad), n_pad = L − |H_u| with L the padded
      history width (the longest history after the cap; an excluded positive counts as a pad,
      as in the code where the sequence is one shorter) [code]. Computed stably (max-shifted)
      over the valid slots only; the pads are added to the denominator analytically.

    The history is the buffer ``history`` ``[n_users, L]`` (left-aligned, slots ≥
    ``history_len[u]`` are padding; the mask is ``arange(L) < history_len[u]``), kept as
    non-persistent buffers (rebuilt from the data, not saved in ``state_dict``).
    ``history_cap`` keeps the **last** cap items (Yelp config: 500). e_k comes from ``hist_emb``
    when ``separate_history_table`` (Gowalla config) else from ``item_emb``. With g = 1 the
    history is not computed (SimpleX == MF, Yelp config).
    ``exclude_items`` masks every history slot equal to the row's positive (all occurrences).
    """

    def __init__(self, n_users: int, n_items: int, history_indptr, history_indices,
                 dim: int = 64, aggregator: str = SIMPLEX_DEFAULTS["aggregator"],
                 gate: float = SIMPLEX_DEFAULTS["gate"],
                 separate_history_table: bool = SIMPLEX_DEFAULTS["separate_history_table"],
                 history_cap: int | None = SIMPLEX_DEFAULTS["history_cap"],
                 padding_softmax_bug: bool = SIMPLEX_DEFAULTS["padding_softmax_bug"], dropout: float = 0.1,
                 dropout_placement: str = "after_norm", init_std: float = 1e-4) -> None:
        super().__init__(n_users, n_items, dim, dropout, dropout_placement, init_std)
        if aggregator not in AGGREGATORS:
            raise ValueError(f"aggregator must be one of {AGGREGATORS}, got {aggregator!r}")
        if not 0.0 <= gate <= 1.0:
            raise ValueError(f"gate must be in [0, 1], got {gate}")
        if len(history_indptr) != n_users + 1:
            raise ValueError(f"history_indptr has {len(history_indptr)} entries, expected "
                             f"n_users + 1 = {n_users + 1}")
        hist, lens = padded_history(history_indptr, history_indices, n_items, history_cap)
        self.aggregator, self.gate = aggregator, float(gate)
        self.separate_history_table, self.history_cap = separate_history_table, history_cap
        self.padding_softmax_bug = padding_softmax_bug
        self.register_buffer("history", torch.from_numpy(hist), persistent=False)
        self.register_buffer("history_len", torch.from_numpy(lens), persistent=False)
        self.hist_emb = _normal_table(n_items, dim, init_std) if separate_history_table else None
        self.V = nn.Linear(dim, dim, bias=False)
        self.W = nn.Linear(dim, dim) if aggregator == "attention" else None
        for lin in (self.V, self.W):
            if lin is not None:                          # RecBox init_weights [recon]
                nn.init.xavier_normal_(lin.weight)
                if lin.bias is not None:
                    nn.init.zeros_(lin.bias)

    def embedding_tables(self) -> list[nn.Parameter]:
        """User, item and (if separate) history tables; not V and W (see module docstring)."""
        tables = [self.user_emb, self.item_emb]
        return tables + [self.hist_emb] if self.hist_emb is not None else tables

    def history_slots(self, users: Tensor, exclude_items: Tensor | None = None,
                      fixed: bool | None = None) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """The batch's history slots as flat lists: ``(rows [T], items [T], valid [T] | None,
        n_valid [B])``, slot t holding item ``items[t]`` of batch row ``rows[t]``.

        ``fixed`` (default: on any device but the CPU): every slot of the padded width L, so
        T = B·L and no size is read back to the host (a CUDA step never synchronises);
        ``valid`` marks the real slots. Otherwise only the valid slots (T = Σ_u |H_u|, far
        fewer than B·L: Gowalla's longest history is ~30 times its mean), found with
        ``nonzero``, which costs nothing on the CPU; ``valid`` is then None.
        """
        fixed = users.device.type != "cpu" if fixed is None else fixed
        lens = self.history_len[users]
        width = self.history.shape[1] if fixed or not len(users) else max(int(lens.max()), 1)
        idx = self.history[users, :width]                                   # [B, Lb]
        mask = torch.arange(width, device=idx.device) < lens.unsqueeze(1)
        if exclude_items is not None:
            mask &= idx != exclude_items.unsqueeze(1)
        n_valid = mask.sum(1)
        if fixed:
            rows = torch.arange(len(users), device=idx.device).repeat_interleave(width)
            return rows, idx.reshape(-1), mask.reshape(-1), n_valid
        rows, cols = mask.nonzero(as_tuple=True)
        return rows, idx[rows, cols], None, n_valid

    def aggregate(self, users: Tensor, e_u: Tensor, exclude_items: Tensor | None = None,
                  fixed: bool | None = None) -> Tensor:
        """p_u ``[B, d]`` (before V) by the configured aggregator.

        Works on flat lists of history slots (:meth:`history_slots`): segment softmax / mean
        with ``index_add``. Slots that are not valid get weight exactly 0 (logit −inf), so the
        fixed-width form adds only exact zeros to the sums of the other one.
        """
        rows, items, valid, n_valid = self.history_slots(users, exclude_items, fixed)
        table = self.hist_emb if self.hist_emb is not None else self.item_emb
        e = self.rows(table, items)                                         # [T, d]
        n_valid = n_valid.to(e.dtype)                                       # [B]
        if self.aggregator == "mean":
            w = (1.0 / n_valid.clamp(min=1.0))[rows]
            if valid is not None:
                w = w * valid
        else:
            s = (torch.tanh(self.W(e)) * e_u[rows]).sum(-1)                 # logits [T]
            if valid is not None:
                s = torch.where(valid, s, float("-inf"))
            m = torch.full_like(n_valid, float("-inf")).scatter_reduce(
                0, rows, s.detach(), "amax")                                # shift, per user
            if self.padding_softmax_bug:
                m = m.clamp(min=0.0)                                        # pad logits are 0
                extra = (self.history.shape[1] - n_valid) * torch.exp(-m)   # n_pad · e^0
            else:
                m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
                extra = torch.zeros_like(m)
            num = torch.exp(s - m[rows])
            den = extra.index_add_(0, rows, num)     # in place: CPU out-of-place is slow
            if valid is not None:                    # a user without valid slots: 0/0 → 0/1
                den = torch.where(den > 0, den, torch.ones_like(den))
            w = num / den[rows]
        return torch.zeros_like(e_u).index_add_(0, rows, w.unsqueeze(1) * e)

    def raw_user_vectors(self, users: Tensor, exclude_items: Tensor | None = None) -> Tensor:
        e_u = self.rows(self.user_emb, users)
        if self.gate == 1.0:
            return e_u
        p = self.aggregate(users, e_u, exclude_items)
        return self.gate * e_u + (1.0 - self.gate) * self.V(p)
