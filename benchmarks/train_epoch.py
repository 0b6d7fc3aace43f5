"""One whole training epoch: ``mmlrepro.train.train`` against the plain PyTorch loop.

MF + MML at the paper's settings (SPEC §8; Gowalla: batch 256, N 100, lr 1e-4, λ 1e-8 over
the full tables, clip 10), one epoch each, run one after the other in this process:

- mmlrepro: ``train(paper_config(..., epochs=1))``: shuffling, negative sampling, the exact
  fast step, the end-of-epoch full-ranking evaluation and the atomic checkpoint, as in a real
  run. Its ``timings`` split training from evaluation.
- plain loop: the textbook epoch (``PlainMF`` of ``train_step.py``: ``nn.Embedding``, the
  penalty in the loss, ``clip_grad_norm_``, ``torch.optim.Adam``) over the same number of
  batches, shuffled pairs, ``torch.randint`` negatives; no evaluation.

    python benchmarks/train_epoch.py [--dataset gowalla] [--device cpu|cuda] [--threads N]

Prints the seconds of each epoch and their ratio (training only, and mmlrepro's evaluation).
On a shared machine the two epochs do not see the same load: pause other jobs or compare with
``train_step.py``, which interleaves the two steps.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import torch
from train_step import PlainMF, print_peak_memory, sync, textbook_step

from mmlrepro.catalogue import paper_config
from mmlrepro.devices import device_name
from mmlrepro.losses import get_loss
from mmlrepro.preflight import load_run_dataset
from mmlrepro.train import train


def plain_epoch(dataset, config, device: torch.device) -> float:
    """Seconds for one textbook epoch over the shuffled train pairs."""
    loss_fn = get_loss(config.loss, **config.loss_hp)
    users_all = torch.from_numpy(dataset.train_users()).to(device)
    items_all = torch.from_numpy(dataset.train_items()).to(device)
    model = PlainMF(dataset.n_users, dataset.n_items, config.dim).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sync(device)
    start = time.perf_counter()
    order = torch.randperm(len(users_all), device=device)
    for rows in order.split(config.batch_size):
        u, p = users_all[rows], items_all[rows]
        n = torch.randint(dataset.n_items, (len(rows), config.n_negatives), device=device)
        textbook_step(model, opt, loss_fn, config, u, p, n)
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dataset", default="gowalla")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = paper_config(args.dataset, "mf", "mml", epochs=1, device=args.device)
    dataset = load_run_dataset(config)
    steps = math.ceil(len(dataset.train_indices) / config.batch_size)
    print(f"device: {device_name(device)}, torch {torch.__version__}, dataset {args.dataset}, "
          f"batch {config.batch_size}, N {config.n_negatives}, {steps} steps/epoch")
    with tempfile.TemporaryDirectory() as ckpt:
        result = train(config, dataset=dataset, checkpoint_dir=ckpt)
    ours, ours_eval = result.timings["train_s"], result.timings["eval_s"]
    plain = plain_epoch(dataset, config, device)
    print(f"  plain PyTorch loop: {plain:7.1f} s training")
    print(f"  mmlrepro train():   {ours:7.1f} s training + {ours_eval:.1f} s full-ranking evaluation"
          f" (recall@20 {result.best['recall@20']:.4f})")
    print(f"speed-up, training: {plain / ours:.2f}x; with our evaluation: {plain / (ours + ours_eval):.2f}x")
    print_peak_memory(device)


if __name__ == "__main__":
    main()
