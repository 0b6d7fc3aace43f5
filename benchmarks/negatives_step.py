"""The training step against the number of negatives N: today's, the new one (issue 37), the plain loop.

Issue 37. MF + MML at the paper's settings of each dataset (SPEC §8: Gowalla batch 256, Yelp2018
batch 512, d 64, λ and clip of the paper), one step = draw a batch and its N negatives, the
batch loss, the optimiser step. Three steps at every N, all interleaved (one round times one
step of each step at each N, in turn), so that the ratios between steps and between N compare
the same stretch of machine time:

- ``today``: :class:`mmlrepro.step.ExactStep` with the scores through the PyTorch autograd
  function (``model.compiled_scores = False``) and MML's margin penalty through the PyTorch
  loop (:func:`mmlrepro.losses.margin_penalty_loop`): the step before issue 37;
- ``new``: the same step as the trainer runs it now, with the compiled CPU kernels
  (:mod:`mmlrepro.kernels`): the scores where the batch draws at least ``KERNEL_MIN_FILL``
  pairs per item (Gowalla N >= 80, Yelp2018 N >= 37), the PyTorch function below; the margin
  penalty from ``COMPILED_PENALTY_MIN`` scores on (bit-identical to the loop);
- ``plain``: the textbook loop of SPEC §3 (``mmlrepro.check.reference_step``: normalise-then-bmm
  scores, the loop's margin penalty, dense gradients, the full-table penalty in the loss, ``clip_grad_norm_``,
  ``torch.optim.Adam``).

Also a memory bandwidth (a 256 MiB copy) and the floor it implies for a step, every byte moved
once at the copy's rate: ``40·(n_users + n_items)·d`` bytes for the dense part (λW into the
gradient: read 4 + write 4, the clip norm: read 4, fused Adam: read param, gradient and both
moments, write param and both moments: 28), plus ``12·u·d`` for the u distinct item rows a
batch draws (expected u = n·(1 − (1 − 1/n)^(B·(N+1)))): each read forward and backward, its
gradient row written once, plus 16 bytes a pair (its index, score and score gradient). A row
drawn several times in one step counts once: at N = 800 nearly every item is drawn about five
(Gowalla) to eleven (Yelp2018) times a step.

Each step is timed by the wall clock (what a run costs on an idle machine) and by the process's
CPU time (``time.process_time``: at one thread, what the step costs whatever else the machine
runs; at two it adds both threads). ``--append`` adds the printed figures, with the device, the
date and ``--label``, to benchmarks/RESULTS.md.

    python benchmarks/negatives_step.py [--threads 1] [--datasets gowalla yelp2018]
        [--negatives 10 50 100 200 400 800] [--steps 20] [--append --label "..."]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from pathlib import Path
from unittest import mock

import torch

import mmlrepro.losses as losses
from mmlrepro.catalogue import paper_config
from mmlrepro.check import reference_step
from mmlrepro.devices import device_name
from mmlrepro.kernels import compiled_kernels
from mmlrepro.losses import get_loss
from mmlrepro.preflight import load_run_dataset
from mmlrepro.sampling import sample_negatives
from mmlrepro.step import ExactStep, batch_loss
from mmlrepro.train import build_model

RESULTS = Path(__file__).parent / "RESULTS.md"
STEPS = ("today", "new", "plain")
COPY_BYTES = 256 * 2**20


def copy_bandwidth(repeats: int = 5) -> float:
    """GB/s of a large copy (bytes read + bytes written over the best time of ``repeats``)."""
    src = torch.ones(COPY_BYTES // 4)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    return 2 * COPY_BYTES / best / 1e9


def floor_ms(table_rows: int, n_items: int, dim: int, batch: int, n_neg: int, gbps: float) -> float:
    """The step's floor at ``gbps``: the dense bytes of ``table_rows`` rows (every table), the
    distinct drawn item rows' bytes and the pairs' bytes of the module docstring."""
    pairs = batch * (n_neg + 1)
    distinct = n_items * (1 - (1 - 1 / n_items) ** pairs)
    moved = 40 * table_rows * dim + 12 * distinct * dim + 16 * pairs
    return moved / (gbps * 1e9) * 1e3


def make_steps(config, dataset, n_neg: int, device: torch.device) -> dict:
    """The three step functions of one (dataset, N), each with its own model from one init."""
    loss_fn = get_loss(config.loss, **config.loss_hp)
    users_all = torch.from_numpy(dataset.train_users())
    items_all = torch.from_numpy(dataset.train_items())
    gen = torch.Generator().manual_seed(0)

    def batch():
        rows = torch.randint(len(users_all), (config.batch_size,), generator=gen)
        neg = sample_negatives(config.batch_size, n_neg, dataset.n_items, device=device,
                               generator=gen)
        return users_all[rows], items_all[rows], neg

    torch.manual_seed(0)
    models = {name: build_model(config, dataset).train() for name in STEPS}
    for name in STEPS[1:]:
        models[name].load_state_dict(models["today"].state_dict())
    models["today"].compiled_scores = False
    models["plain"].fused_scores = False
    exact = {name: ExactStep(models[name], config.lr, config.reg_lambda, config.grad_clip, device)
             for name in ("today", "new")}
    adam = torch.optim.Adam(models["plain"].parameters(), lr=config.lr, betas=(0.9, 0.999),
                            eps=1e-8)

    def exact_step(name):
        def run():
            exact[name](batch_loss(models[name], loss_fn, config, *batch()))
        return run

    def plain_step():
        loss = batch_loss(models["plain"], loss_fn, config, *batch())
        reference_step(models["plain"], adam, loss, config.reg_lambda, config.grad_clip)

    return {"today": with_loop_penalty(exact_step("today")), "new": exact_step("new"),
            "plain": with_loop_penalty(plain_step)}


def with_loop_penalty(step):
    """``step`` with MML's margin penalty through the PyTorch loop: the loss finds no compiled
    kernels while it runs."""
    def run():
        with mock.patch.object(losses, "compiled_kernels", lambda: None):
            step()
    return run


def time_interleaved(steps: dict, n_steps: int, warmup: int) -> dict:
    """Median (wall ms, CPU ms) per step of each step function, one step of each in turn."""
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    wall = {name: [] for name in steps}
    cpu = {name: [] for name in steps}
    for _ in range(n_steps):
        for name, fn in steps.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    return {name: (statistics.median(wall[name]) * 1e3, statistics.median(cpu[name]) * 1e3)
            for name in steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["gowalla", "yelp2018"])
    parser.add_argument("--negatives", nargs="+", type=int, default=[10, 50, 100, 200, 400, 800])
    parser.add_argument("--model", default="mf", choices=["mf", "simplex"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--append", action="store_true", help="append to benchmarks/RESULTS.md")
    parser.add_argument("--label", default="", help="the conditions, for the RESULTS.md entry")
    args = parser.parse_args()
    if args.append and not args.label:
        parser.error("--append needs --label (the machine's load when measured)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    if compiled_kernels() is None:
        raise SystemExit("the compiled kernel is not available here: nothing to compare")

    lines = [f"device: {device_name(device)}, torch {torch.__version__}, {args.model} + MML, "
             f"{args.steps} interleaved steps after {args.warmup} warm-up, medians"]
    gbps = copy_bandwidth()
    lines.append(f"memory bandwidth (256 MiB copy, read + write): {gbps:.1f} GB/s")
    print("\n".join(lines), flush=True)
    for name in args.datasets:
        config = paper_config(name, args.model, "mml", device="cpu")
        dataset = load_run_dataset(config)
        table_rows = dataset.n_users + dataset.n_items * (
            2 if args.model == "simplex" and config.model_hp.get("separate_history_table") else 1)
        head = (f"{name} ({dataset.n_users} users, {dataset.n_items} items), batch "
                f"{config.batch_size}: wall ms/step | CPU ms/step")
        cols = (f"{'N':>5} {'today':>9} {'new':>9} {'plain':>9} {'floor':>7} | "
                f"{'today':>9} {'new':>9} {'plain':>9} | {'speed-up':>8}")
        block = [head, cols]
        print("\n".join(block), flush=True)
        steps = {(n_neg, kind): fn for n_neg in args.negatives
                 for kind, fn in make_steps(config, dataset, n_neg, device).items()}
        times = time_interleaved(steps, args.steps, args.warmup)
        by_n = {n_neg: {kind: times[(n_neg, kind)] for kind in STEPS} for n_neg in args.negatives}
        for n_neg, t in by_n.items():
            floor = floor_ms(table_rows, dataset.n_items, config.dim, config.batch_size, n_neg,
                             gbps)
            row = (f"{n_neg:>5} " + " ".join(f"{t[k][0]:9.2f}" for k in STEPS)
                   + f" {floor:7.2f} | " + " ".join(f"{t[k][1]:9.2f}" for k in STEPS)
                   + f" | {t['today'][1] / t['new'][1]:7.2f}x")
            block.append(row)
            print(row, flush=True)
        if 100 in by_n and 800 in by_n:
            ratio = [f"{s} {by_n[800][s][0] / by_n[100][s][0]:.2f}x wall, "
                     f"{by_n[800][s][1] / by_n[100][s][1]:.2f}x CPU" for s in STEPS]
            line = "N = 800 step / N = 100 step: " + "; ".join(ratio)
            block.append(line)
            print(line, flush=True)
        lines += block
    if args.append:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        threads = args.threads or torch.get_num_threads()
        with RESULTS.open("a") as f:
            f.write(f"\n## Negatives step (`benchmarks/negatives_step.py --threads {threads}`), "
                    f"{stamp}: {args.label}\n\n```\n" + "\n".join(lines) + "\n```\n")


if __name__ == "__main__":
    main()
