"""Memory at 800 negatives: per-batch sampling on the device vs a per-epoch negative array (issue 5).

SPEC §4: negatives are uniform over all items, fresh for every training row every epoch. The
official code draws them for the whole epoch up front, an (n_train × N) integer array (issue 5
measured a 10 GiB peak for it at N = 800). mmlrepro draws (batch × N) with ``torch.randint`` on
the device inside each step, so memory does not grow with n_train × N.

Each measurement runs in a fresh process, so its peak resident set (``ru_maxrss``) is its own:

- ``mmlrepro``: load the data, build MF, take ``--steps`` exact training steps of MF + MML at the
  paper's settings (SPEC §8) with N negatives sampled per batch; ms/step (median) and peak RSS
  (and peak CUDA memory on a GPU).
- ``per-epoch array``: load the data and draw one epoch's negatives as one int64 array of
  n_train × N (``numpy.random.randint``), the official way; peak RSS.

    MMLREPRO_DATA_DIR=... python benchmarks/negatives_memory.py [--datasets gowalla yelp2018]
        [--negatives 100 800] [--steps 10] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time

import numpy as np
import torch

from mmlrepro.catalogue import paper_config
from mmlrepro.losses import get_loss
from mmlrepro.preflight import load_run_dataset
from mmlrepro.step import ExactStep, batch_loss
from mmlrepro.train import build_model


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_per_batch(dataset_name: str, n_negatives: int, steps: int, device_name: str) -> dict[str, float]:
    """Peak memory and ms/step of mmlrepro's training step with per-batch sampling."""
    device = torch.device(device_name)
    config = paper_config(dataset_name, "mf", "mml", n_negatives=n_negatives, device=device_name)
    dataset = load_run_dataset(config)
    users_all = torch.from_numpy(dataset.train_users()).to(device)
    items_all = torch.from_numpy(dataset.train_items()).to(device)
    torch.manual_seed(0)
    model = build_model(config, dataset).to(device)
    step = ExactStep(model, config.lr, config.reg_lambda, config.grad_clip, device)
    loss_fn = get_loss(config.loss, **config.loss_hp)
    before = _peak_rss_mib()
    times = []
    for _ in range(steps + 2):  # two warm-up steps
        t0 = time.perf_counter()
        rows = torch.randint(len(users_all), (config.batch_size,), device=device)
        neg = torch.randint(dataset.n_items, (config.batch_size, n_negatives), device=device)
        step(batch_loss(model, loss_fn, config, users_all[rows], items_all[rows], neg))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    out = {"rss_before_steps_mib": before, "peak_rss_mib": _peak_rss_mib(),
           "ms_per_step": statistics.median(times[2:]) * 1e3, "n_train": float(len(users_all))}
    if device.type == "cuda":
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def measure_epoch_array(dataset_name: str, n_negatives: int) -> dict[str, float]:
    """Peak memory of one epoch's negatives drawn up front as an (n_train × N) int64 array."""
    config = paper_config(dataset_name, "mf", "mml", n_negatives=n_negatives, device="cpu")
    dataset = load_run_dataset(config)
    n_train = len(dataset.train_users())
    before = _peak_rss_mib()
    t0 = time.perf_counter()
    negatives = np.random.default_rng(0).integers(0, dataset.n_items, size=(n_train, n_negatives), dtype=np.int64)
    seconds = time.perf_counter() - t0
    return {"rss_before_array_mib": before, "peak_rss_mib": _peak_rss_mib(), "array_mib": negatives.nbytes / 2**20,
            "draw_s": seconds, "n_train": float(n_train)}


def _child(queue, fn, args) -> None:
    queue.put(fn(*args))


def in_fresh_process(fn, *args) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn, args))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["gowalla", "yelp2018"])
    parser.add_argument("--negatives", nargs="+", type=int, default=[100, 800])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, device {args.device}, MF + MML at the SPEC §8 settings, "
          f"{args.steps} timed steps; every row a fresh process")
    for name in args.datasets:
        for n in args.negatives:
            fast = in_fresh_process(measure_per_batch, name, n, args.steps, args.device)
            array = in_fresh_process(measure_epoch_array, name, n)
            cuda = f", peak CUDA {fast['peak_cuda_mib']:.0f} MiB" if "peak_cuda_mib" in fast else ""
            print(f"{name:>9} N={n:<4} mmlrepro per-batch sampling: peak RSS {fast['peak_rss_mib']:6.0f} MiB "
                  f"(data + model {fast['rss_before_steps_mib']:.0f}){cuda}, {fast['ms_per_step']:.1f} ms/step")
            print(f"{'':>9} {'':<6} per-epoch array of {int(array['n_train'])} x {n} int64: "
                  f"{array['array_mib']:6.0f} MiB, peak RSS {array['peak_rss_mib']:6.0f} MiB "
                  f"(data {array['rss_before_array_mib']:.0f}), drawn in {array['draw_s']:.1f} s")


if __name__ == "__main__":
    main()
