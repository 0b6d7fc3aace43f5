"""BSL training step: the batch regulariser as weighted row squares vs gathered rows (issue 5).

MF + BSL at the paper's Gowalla settings (SPEC §8: batch 1024, N 100, l2 over the batch's raw
rows, ``reg_form="batch"``), with mmlrepro's exact step. Three ways to add the regulariser
l2·(‖u‖² + ‖i⁺‖² + ‖negs‖²)/(2B), timed interleaved (one step of each in turn):

- ``mmlrepro``: ``train.batch_penalty``, ½·Σ_r w_r‖W_r‖² with w_r = (l2/B)·count_r, whose
  gradient is one dense pass per table;
- ``gathered rows``: the textbook form, the rows gathered again (``F.embedding``, sparse), so
  each table receives two or three sparse gradients per step that autograd must sum;
- ``no regulariser``: l2 = 0, the floor.

    MMLREPRO_DATA_DIR=... python benchmarks/bsl_step.py [--device cpu|cuda] [--steps 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F
from train_step import time_steps

from mmlrepro.catalogue import paper_config
from mmlrepro.devices import device_name
from mmlrepro.losses import get_loss
from mmlrepro.preflight import load_run_dataset
from mmlrepro.step import ExactStep, batch_penalty
from mmlrepro.train import build_model


def gathered_penalty(model, users, pos, neg, l2: float) -> torch.Tensor:
    """The regulariser as the BSL code writes it: the batch's rows gathered and squared."""
    sq = [F.embedding(idx, table, sparse=True).pow(2).sum()
          for idx, table in ((users, model.user_emb), (pos, model.item_emb), (neg, model.item_emb))]
    return l2 * sum(sq) / (2 * users.shape[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dataset", default="gowalla")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = paper_config(args.dataset, "mf", "bsl", device=args.device)
    dataset = load_run_dataset(config)
    users_all = torch.from_numpy(dataset.train_users()).to(device)
    items_all = torch.from_numpy(dataset.train_items()).to(device)
    loss_fn = get_loss(config.loss, **config.loss_hp)
    penalties = {"mmlrepro batch_penalty": batch_penalty, "gathered rows": gathered_penalty,
                 "no regulariser": None}
    steps = {}
    for name, penalty in penalties.items():
        torch.manual_seed(0)
        model = build_model(config, dataset).to(device)
        step = ExactStep(model, config.lr, 0.0, config.grad_clip, device)

        def one(model=model, step=step, penalty=penalty) -> None:
            rows = torch.randint(len(users_all), (config.batch_size,), device=device)
            users, pos = users_all[rows], items_all[rows]
            neg = torch.randint(dataset.n_items, (config.batch_size, config.n_negatives), device=device)
            pos_scores, neg_scores = model(users, pos, neg)
            loss = loss_fn(pos_scores, neg_scores, users)
            if penalty is not None:
                loss = loss + penalty(model, users, pos, neg, config.reg_lambda)
            step(loss)

        steps[name] = one
    print(f"device: {device_name(device)}, torch {torch.__version__}, MF + BSL on {args.dataset}, "
          f"batch {config.batch_size}, N {config.n_negatives}, l2 {config.reg_lambda}")
    for fn in steps.values():
        time_steps(fn, 3, device)
    times = {name: [] for name in steps}
    for _ in range(args.steps):
        for name, fn in steps.items():
            times[name] += time_steps(fn, 1, device)
    ms = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
    for name, value in ms.items():
        print(f"{name:>24}: {value:7.1f} ms/step (median of {args.steps}, interleaved)")
    print(f"speed-up over gathered rows: {ms['gathered rows'] / ms['mmlrepro batch_penalty']:.2f}x; "
          f"regulariser cost {ms['mmlrepro batch_penalty'] - ms['no regulariser']:.1f} ms vs "
          f"{ms['gathered rows'] - ms['no regulariser']:.1f} ms")


if __name__ == "__main__":
    main()
