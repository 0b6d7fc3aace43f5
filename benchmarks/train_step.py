"""Training-step speed: mmlrepro's exact step vs the plain PyTorch loop, same process, same data.

MF + MML at the paper's Gowalla settings (SPEC §8: batch 256, N 100, d 64, lr 1e-4, λ 1e-8,
clip 10). The plain loop is the textbook formulation: ``nn.Embedding`` tables, the loss plus
(λ/2)·Σ‖W‖² over the whole tables, ``clip_grad_norm_``, ``torch.optim.Adam`` (default
implementation), a Python loop over batches. Both do the same arithmetic (tests/test_train.py
checks that the steps agree to float tolerance).

    python benchmarks/train_step.py [--device cpu|cuda] [--steps 40] [--dataset gowalla]

Prints ms/step (median), the implied seconds per epoch, the ratio, and the peak memory.
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from mmlrepro.catalogue import paper_config
from mmlrepro.devices import device_name
from mmlrepro.losses import get_loss
from mmlrepro.preflight import load_run_dataset
from mmlrepro.step import ExactStep, batch_loss
from mmlrepro.train import build_model


class PlainMF(nn.Module):
    """MF as a newcomer writes it: nn.Embedding, cosine scores, dropout on the user vector."""

    def __init__(self, n_users: int, n_items: int, dim: int = 64) -> None:
        super().__init__()
        self.users = nn.Embedding(n_users, dim)
        self.items = nn.Embedding(n_items, dim)
        nn.init.normal_(self.users.weight, std=1e-4)
        nn.init.normal_(self.items.weight, std=1e-4)

    def forward(self, users, pos, neg):
        u = F.dropout(F.normalize(self.users(users), dim=-1), 0.1, self.training)
        p = F.normalize(self.items(pos), dim=-1)
        n = F.normalize(self.items(neg), dim=-1)
        return (u * p).sum(-1), torch.einsum("bd,bnd->bn", u, n)


def textbook_step(model: PlainMF, opt: torch.optim.Optimizer, loss_fn, config, users, pos, neg) -> None:
    """SPEC §3 as written: loss + (λ/2)·Σ‖W‖² over the whole tables, clip_grad_norm_, Adam."""
    pos_scores, neg_scores = model(users, pos, neg)
    loss = loss_fn(pos_scores, neg_scores) + 0.5 * config.reg_lambda * (
        model.users.weight.pow(2).sum() + model.items.weight.pow(2).sum())
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    opt.step()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def print_peak_memory(device: torch.device) -> None:
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak_mb:.0f} MiB" + (
        f", peak CUDA memory: {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB" if device.type == "cuda" else ""))


def time_steps(step_fn, n_steps: int, device: torch.device) -> list[float]:
    times = []
    for _ in range(n_steps):
        sync(device)
        t0 = time.perf_counter()
        step_fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dataset", default="gowalla")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    config = paper_config(args.dataset, "mf", "mml", device=args.device)
    dataset = load_run_dataset(config)
    loss_fn = get_loss(config.loss, **config.loss_hp)
    users_all = torch.from_numpy(dataset.train_users()).to(device)
    items_all = torch.from_numpy(dataset.train_items()).to(device)
    steps_per_epoch = math.ceil(len(users_all) / config.batch_size)

    def batch():
        rows = torch.randint(len(users_all), (config.batch_size,), device=device)
        neg = torch.randint(dataset.n_items, (config.batch_size, config.n_negatives), device=device)
        return users_all[rows], items_all[rows], neg

    torch.manual_seed(0)
    model = build_model(config, dataset).to(device)
    fast = ExactStep(model, config.lr, config.reg_lambda, config.grad_clip, device)

    def fast_step():
        u, p, n = batch()
        fast(batch_loss(model, loss_fn, config, u, p, n))

    plain = PlainMF(dataset.n_users, dataset.n_items).to(device)
    opt = torch.optim.Adam(plain.parameters(), lr=config.lr)

    def plain_step():
        textbook_step(plain, opt, loss_fn, config, *batch())

    print(f"device: {device_name(device)}, torch {torch.__version__}, dataset {args.dataset} "
          f"({dataset.n_users} users, {dataset.n_items} items), batch {config.batch_size}, "
          f"N {config.n_negatives}, {steps_per_epoch} steps/epoch")
    steps = {"plain PyTorch loop": plain_step, "mmlrepro ExactStep": fast_step}
    for fn in steps.values():
        time_steps(fn, args.warmup, device)
    # interleaved, one step of each in turn: both sides see the same machine load
    times = {name: [] for name in steps}
    for _ in range(args.steps):
        for name, fn in steps.items():
            times[name] += time_steps(fn, 1, device)
    results = {}
    for name, ts in times.items():
        ms = statistics.median(ts) * 1e3
        results[name] = ms
        print(f"{name:>20}: {ms:7.2f} ms/step (median of {args.steps}, interleaved), "
              f"{ms * steps_per_epoch / 1e3:7.1f} s/epoch")
    ratio = results["plain PyTorch loop"] / results["mmlrepro ExactStep"]
    print(f"speed-up: {ratio:.2f}x")
    print_peak_memory(device)


if __name__ == "__main__":
    main()
