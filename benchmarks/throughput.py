"""Aggregate training throughput of K runs side by side (issue 19).

For each K, K spawn-started worker processes each run a real ``mmlrepro.train.train`` of the
Gowalla MF + MML paper config (SPEC §8: batch 256, N 100) on the device; after ``--warmup``
steps the workers wait for each other, then each times ``--steps`` more steps and stops. The
figure is the steps per second summed over the workers, and the paper-profile runs per hour it
implies (training steps only: a Gowalla MF run is 100 epochs of 3,165 steps; the per-epoch
evaluation comes on top).

    python benchmarks/throughput.py [--device cpu|cuda] [--workers 1,2] [--threads 2,1]
                                    [--steps 200] [--warmup 20]

``--threads`` gives the torch threads of each worker for each K (default: cores // K). On a
2-core CPU, the comparison of issue 19 is K = 1 at 2 threads against K = 2 at 1 thread each:
``--workers 1,2 --threads 2,1``. On a GPU: ``--workers 1,4,8``.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import tempfile
import time

WARMUP, STEPS = 20, 200


class _Done(Exception):
    """Raised from inside the training loop once the timed steps are done."""


def _worker(device: str, threads: int, warmup: int, steps: int, barrier, out) -> None:
    """Run train() until ``warmup + steps`` batches, timing the last ``steps``; put the rate."""
    import torch

    import mmlrepro.train as train_mod
    from mmlrepro.catalogue import paper_config
    from mmlrepro.preflight import load_run_dataset

    torch.set_num_threads(threads)
    os.environ["TQDM_DISABLE"] = "1"
    config = paper_config("gowalla", "mf", "mml", device=device)
    dataset = load_run_dataset(config)
    real = train_mod.batch_loss
    seen = {"n": 0, "t0": 0.0}

    def counted(*args, **kwargs):
        if seen["n"] == warmup:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            barrier.wait()
            seen["t0"] = time.perf_counter()
        if seen["n"] == warmup + steps:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            raise _Done(time.perf_counter() - seen["t0"])
        seen["n"] += 1
        return real(*args, **kwargs)

    train_mod.batch_loss = counted
    with tempfile.TemporaryDirectory() as ckpt:
        try:
            train_mod.train(config, dataset=dataset, checkpoint_dir=ckpt, log=None)
        except _Done as done:
            out.put(steps / done.args[0])
            return
    out.put(float("nan"))


def aggregate(k: int, device: str, threads: int, warmup: int, steps: int) -> list[float]:
    """Each of ``k`` workers' steps per second, measured side by side."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(k), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(device, threads, warmup, steps, barrier, out)) for _ in range(k)]
    for p in procs:
        p.start()
    rates = [out.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
    return rates


def main() -> None:
    import torch

    from mmlrepro.catalogue import paper_config
    from mmlrepro.devices import device_name
    from mmlrepro.preflight import load_run_dataset

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", default=None, help="comma-separated K values (default: 1,2 on the CPU, 1,4,8 on a GPU)")
    parser.add_argument("--threads", default=None, help="torch threads a worker for each K (default: cores // K)")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    args = parser.parse_args()
    ks = [int(k) for k in (args.workers or ("1,2" if args.device == "cpu" else "1,4,8")).split(",")]
    threads = ([int(t) for t in args.threads.split(",")] if args.threads
               else [max(1, (os.cpu_count() or 1) // k) for k in ks])
    if len(threads) != len(ks):
        raise SystemExit(f"--threads needs one value per K ({len(ks)}), got {len(threads)}")
    config = paper_config("gowalla", "mf", "mml", device=args.device)
    per_run = math.ceil(len(load_run_dataset(config).train_indices) / config.batch_size) * config.epochs
    dev = torch.device(args.device)
    name = device_name(dev).rsplit(" (", 1)[0] if dev.type == "cpu" else device_name(dev)
    print(f"device: {name}, {os.cpu_count()} cores, torch {torch.__version__}; Gowalla MF + MML paper "
          f"config (batch {config.batch_size}, N {config.n_negatives}), {args.steps} timed steps a worker "
          f"after {args.warmup}; a run is {per_run:,} steps")
    for k, t in zip(ks, threads, strict=True):
        rates = aggregate(k, args.device, t, args.warmup, args.steps)
        total = sum(rates)
        print(f"K = {k} at {t} thread(s) each: {total:6.1f} steps/s in all "
              f"({', '.join(f'{r:.1f}' for r in rates)} per worker), "
              f"{3600 * total / per_run:.2f} paper runs/hour (training only)")


if __name__ == "__main__":
    main()
