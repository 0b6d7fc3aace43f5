"""The binary train matrix X of a :class:`~mmlrepro.data.Dataset` as torch tensors: CSR, rows, XᵀX."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from mmlrepro.data import Dataset


def csr_tensors(dataset: Dataset, device: torch.device) -> tuple[Tensor, Tensor]:
    indptr, indices = dataset.csr("train")
    return (torch.from_numpy(np.ascontiguousarray(indptr, dtype=np.int64)).to(device),
            torch.from_numpy(np.ascontiguousarray(indices, dtype=np.int64)).to(device))


def sparse_rows(indptr: Tensor, indices: Tensor, rows: Tensor, n_cols: int,
                dtype: torch.dtype = torch.float32) -> Tensor:
    """Rows ``rows`` of the binary CSR matrix ``(indptr, indices)`` as a sparse COO tensor
    ``[len(rows), n_cols]`` (on ``indptr``'s device; no Python loop)."""
    rows = rows.to(indptr.device)
    starts, counts = indptr[rows], indptr[rows + 1] - indptr[rows]
    out_row = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), counts)
    offset = torch.arange(len(out_row), device=rows.device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts)
    cols = indices[torch.repeat_interleave(starts, counts) + offset]
    values = torch.ones(len(cols), dtype=dtype, device=rows.device)
    return torch.sparse_coo_tensor(torch.stack([out_row, cols]), values, (len(rows), n_cols),
                                   is_coalesced=True, check_invariants=False)


def gram_matrix(dataset: Dataset, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32) -> Tensor:
    """Dense co-occurrence counts G = XᵀX ``[n_items, n_items]`` of the binary train matrix X.

    Sparse × sparse product (exact integer counts, < 2²⁴ here) scattered into one dense matrix.
    """
    device = torch.device(device)
    indptr, indices = csr_tensors(dataset, device)
    x = sparse_rows(indptr, indices, torch.arange(dataset.n_users, device=device),
                    dataset.n_items, dtype)
    with warnings.catch_warnings():  # torch's "sparse CSR support is in beta" notice
        warnings.simplefilter("ignore", UserWarning)
        g = torch.sparse.mm(x.t().coalesce(), x).coalesce()
    dense = torch.zeros(dataset.n_items, dataset.n_items, dtype=dtype, device=device)
    dense[g.indices()[0], g.indices()[1]] = g.values()
    return dense
