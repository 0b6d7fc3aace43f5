"""iALS side by side: mmlrepro ``ials`` against the ``implicit`` library's ALS (issue 7).

    pip install -e ".[compare]"        # implicit==0.7.3, only for this script
    OMP_NUM_THREADS=1 MMLREPRO_DATA_DIR=/work/shared/data python benchmarks/ials_implicit.py
        [--dataset gowalla] [--alpha 100] [--reg 300] [--epochs 8] [--dim 64] [--quick]
        [--methods mmlrepro,implicit-exact,implicit-cg]

Fits the same objective three ways on the same data, one thread each:
(a) ``mmlrepro.linear.ials`` (exact batched Cholesky solves), (b) ``implicit``'s
``AlternatingLeastSquares(use_cg=False)`` (exact per-row Cholesky), (c) the same with its default
conjugate-gradient solver (3 CG steps per row, warm-started). The objective is Hu et al. 2008
with plain L2, Σ_ui c_ui (p_ui − x_uᵀy_i)² + reg(Σ_u‖x_u‖² + Σ_i‖y_i‖²), c_ui = 1 + alpha on
train pairs and 1 elsewhere: mmlrepro with ``reg_exp=0`` and ``alpha``; implicit scales the
binary user × item CSR by its ``alpha`` (C_ui = alpha·value, 1 where unset) and adds
``regularization·I`` to every row's system, so it gets ``alpha = 1 + alpha`` and
``regularization = reg``. All three start from the same factors (mmlrepro's seeded init).

Prints per method: fit seconds (and per epoch), the final objective from one function
(``mmlrepro.linear.ials_objective``, float64) and from implicit's own ``calculate_loss``
(un-normalised) as a cross-check, Recall@20 / NDCG@20 from ``mmlrepro.metrics.evaluate``, and
the process's peak RSS (after the fit, and after evaluating; it only grows, so run one method
alone with ``--methods`` for that method's own peak). ``--quick`` uses the top-``QUICK_ITEMS``
items (``reduce_items``).
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import implicit
import numpy as np
import scipy.sparse as sp
import torch
from implicit.cpu import _als
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from mmlrepro.data import load_dataset
from mmlrepro.linear import QUICK_ITEMS, als_reg, ials, ials_objective, reduce_items
from mmlrepro.metrics import evaluate


class Factors:
    """What ``evaluate`` needs: ``score_users(users) -> [B, n_items]`` and ``device``."""

    def __init__(self, users: np.ndarray | torch.Tensor, items: np.ndarray | torch.Tensor):
        self.users, self.items = torch.as_tensor(users), torch.as_tensor(items)

    @property
    def device(self) -> torch.device:
        return self.items.device

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return self.users[users] @ self.items.T


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="gowalla")
    ap.add_argument("--alpha", type=float, default=100.0, help="mmlrepro alpha (c = 1 + alpha)")
    ap.add_argument("--reg", type=float, default=300.0)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help=f"top-{QUICK_ITEMS} items only")
    ap.add_argument("--methods", default="mmlrepro,implicit-exact,implicit-cg",
                    help="comma-separated subset (run one alone for its own peak RSS)")
    args = ap.parse_args()
    methods = args.methods.split(",")
    if not set(methods) <= {"mmlrepro", "implicit-exact", "implicit-cg"}:
        ap.error(f"--methods: unknown method in {args.methods!r}")
    torch.set_num_threads(1)
    threadpool_limits(1)  # scipy's OpenBLAS, used by implicit (and numpy's)

    ds = load_dataset(args.dataset)
    ds = reduce_items(ds, QUICK_ITEMS) if args.quick else ds
    print(f"{ds}  torch {torch.__version__}  implicit {implicit.__version__}  "
          f"threads {torch.get_num_threads()}")
    print(f"dim {args.dim}  alpha {args.alpha:g} (implicit {1 + args.alpha:g})  reg {args.reg:g} "
          f"(plain L2, reg_exp 0)  epochs {args.epochs}  seed {args.seed}")

    indptr = torch.from_numpy(ds.train_indptr)
    indices = torch.from_numpy(ds.train_indices)
    user_reg = als_reg(indptr[1:] - indptr[:-1], ds.n_items, args.alpha, args.reg, 0.0)
    item_reg = als_reg(torch.from_numpy(ds.item_popularity()), ds.n_users, args.alpha, args.reg,
                       0.0)
    x = sp.csr_matrix((np.ones(len(ds.train_indices), np.float32), ds.train_indices,
                       ds.train_indptr), shape=(ds.n_users, ds.n_items))
    cui = (1 + args.alpha) * x
    n_weights = float(cui.data.sum()) + ds.n_users * ds.n_items - cui.nnz  # implicit's divisor
    gen = torch.Generator().manual_seed(args.seed)  # the init of mmlrepro.linear.ials
    scale = 0.1 / math.sqrt(args.dim)
    init = [(torch.randn(n, args.dim, generator=gen, dtype=torch.float64) * scale).float().numpy()
            for n in (ds.n_users, ds.n_items)]

    def fit_mmlrepro() -> tuple[np.ndarray, np.ndarray, list[float]]:
        m = ials(ds, args.dim, args.alpha, args.reg, args.epochs, reg_exp=0.0, init_std=0.1,
                 seed=args.seed, device="cpu", show_progress=False)
        return m.user_factors.numpy(), m.item_factors.numpy(), [h["seconds"] for h in m.history]

    def fit_implicit(use_cg: bool) -> tuple[np.ndarray, np.ndarray, list[float]]:
        m = AlternatingLeastSquares(factors=args.dim, regularization=args.reg,
                                    alpha=1 + args.alpha, use_cg=use_cg, iterations=args.epochs,
                                    num_threads=1, random_state=args.seed)
        m.user_factors, m.item_factors = init[0].copy(), init[1].copy()
        seconds: list[float] = []
        m.fit(x, show_progress=False, callback=lambda it, s, loss: seconds.append(s))
        return m.user_factors, m.item_factors, seconds

    print(f"peak RSS after loading and set-up {peak_rss_mib():.0f} MiB")
    runs = {"mmlrepro": ("mmlrepro ials (exact)", fit_mmlrepro),
            "implicit-exact": ("implicit use_cg=False", lambda: fit_implicit(False)),
            "implicit-cg": ("implicit use_cg=True", lambda: fit_implicit(True))}
    for key in methods:
        name, fit = runs[key]
        start = time.perf_counter()
        users, items, seconds = fit()
        fit_s = time.perf_counter() - start
        fit_rss = peak_rss_mib()
        obj = ials_objective(torch.from_numpy(users), torch.from_numpy(items), indptr, indices,
                             args.alpha, user_reg, item_reg)
        own = _als.calculate_loss(cui, users, items, args.reg, num_threads=1) * n_weights
        start = time.perf_counter()
        m = evaluate(Factors(users, items), ds)
        eval_s = time.perf_counter() - start
        print(f"{name:22s} fit {fit_s:7.1f} s  per epoch "
              + " ".join(f"{s:.1f}" for s in seconds) + f"  peak RSS after fit {fit_rss:.0f} MiB")
        print(f"{'':22s} objective {obj:.8e}  (implicit calculate_loss x N: {own:.8e})")
        print(f"{'':22s} Recall@20 {m['recall@20']:.4f}  NDCG@20 {m['ndcg@20']:.4f}  "
              f"eval {eval_s:.1f} s  peak RSS so far {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
