"""Speed of exact full-ranking evaluation (SPEC §7) on Gowalla-sized data.

Builds an MF with random N(0, 1) embeddings (a trained-size model: scores spread out, unlike
the 1e-4 init), evaluates it with ``mmlrepro.metrics.evaluate`` (best of 3 after a warm-up),
and times a naive reference in the style of the official RecBox evaluation in the same run:
numpy, chunks of 1000 users, a dense score chunk, train items masked user by user,
``argpartition`` + ``argsort`` of the top K, and Recall/NDCG per user in Python. Prints both
results (they must agree), the times, their ratio, the peak RSS, the device and torch version.

    MMLREPRO_DATA_DIR=/work/shared/data python benchmarks/eval.py [--device cuda] [--threads 1]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
import torch

from mmlrepro.metrics import EvalIndex, evaluate
from mmlrepro.models import MF


def load(name: str):
    try:
        from mmlrepro.data import load_dataset
        return load_dataset(name, download=False)
    except Exception as err:   # data module missing or files absent: same-size synthetic
        print(f"[fallback] could not load {name!r} ({type(err).__name__}: {err}); "
              "using a synthetic dataset of Gowalla's size", file=sys.stderr)
        from mmlrepro.data import synthetic
        return synthetic(29858, 40981, avg_items=34, seed=0, name="synthetic-gowalla-size")


def naive_official_style(user_vecs: np.ndarray, item_vecs: np.ndarray, dataset,
                         ks=(20, 50), chunk: int = 1000) -> dict[str, float]:
    """Reference in the style of the official code (per-user Python loops)."""
    tr_ptr, tr_idx = dataset.train_indptr, dataset.train_indices
    te_ptr, te_idx = dataset.test_indptr, dataset.test_indices
    users = np.flatnonzero(np.diff(te_ptr) > 0)
    kmax = max(ks)
    disc = 1.0 / np.log2(np.arange(kmax) + 2.0)
    rows = []
    for s in range(0, len(users), chunk):
        us = users[s:s + chunk]
        sim = user_vecs[us] @ item_vecs.T
        for i, u in enumerate(us):
            sim[i, tr_idx[tr_ptr[u]:tr_ptr[u + 1]]] = -np.inf
        part = np.argpartition(-sim, kmax, axis=1)[:, :kmax]
        order = np.argsort(-np.take_along_axis(sim, part, 1), axis=1)
        top = np.take_along_axis(part, order, 1)
        for i, u in enumerate(us):
            test = set(te_idx[te_ptr[u]:te_ptr[u + 1]].tolist())
            hit = np.array([t in test for t in top[i]], dtype=np.float64)
            row = []
            for k in ks:
                row += [hit[:k].sum() / len(test),
                        (hit[:k] * disc[:k]).sum() / disc[:min(k, len(test))].sum()]
            rows.append(row)
    names = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")]
    return dict(zip(names, np.mean(rows, axis=0).tolist(), strict=True))


def timed(fn, runs: int) -> tuple[float, dict]:
    best, out = float("inf"), None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="gowalla")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--chunk-size", type=int, default=None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--naive-runs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    ds = load(args.dataset)
    print(ds)
    torch.manual_seed(0)
    model = MF(ds.n_users, ds.n_items, dim=64, init_std=1.0).to(device)

    t = time.perf_counter()
    index = EvalIndex.from_dataset(ds, device)
    print(f"EvalIndex.from_dataset: {time.perf_counter() - t:.3f} s ({len(index)} users)")

    def run():
        out = evaluate(model, ds, chunk_size=args.chunk_size, index=index)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out

    run()                                                            # warm-up
    fast_s, fast = timed(run, args.runs)
    print(f"evaluate (best of {args.runs}): {fast_s:.3f} s   peak RSS {peak_rss_mib():.0f} MiB")
    print("  " + "  ".join(f"{k} {v:.6f}" for k, v in fast.items()))
    t = time.perf_counter()
    no_index = evaluate(model, ds, chunk_size=args.chunk_size)
    print(f"evaluate without a cached index: {time.perf_counter() - t:.3f} s")
    assert no_index == fast

    model.eval()
    with torch.no_grad():
        u = model.user_vectors(torch.arange(ds.n_users, device=device)).cpu().numpy()
        v = model.item_vectors().cpu().numpy()
    naive_s, naive = timed(lambda: naive_official_style(u, v, ds), args.naive_runs)
    print(f"naive official-style numpy (best of {args.naive_runs}): {naive_s:.3f} s   "
          f"peak RSS {peak_rss_mib():.0f} MiB")
    print("  " + "  ".join(f"{k} {v:.6f}" for k, v in naive.items()))
    diff = max(abs(fast[k] - naive[k]) for k in fast)
    print(f"max |difference| {diff:.2e}; speed-up {naive_s / fast_s:.1f}x")


if __name__ == "__main__":
    main()
