"""EASE on the real data: fit and eval seconds, Recall/NDCG@20 and peak RSS (issue 7).

    MMLREPRO_DATA_DIR=/work/shared/data python benchmarks/ease_memory.py [gowalla] [lam] [device]

Defaults: Gowalla, λ = 80 (the BARS leaderboard setting; Yelp2018 uses λ = 300), CPU. Peak RSS
is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (whole process: data, Gram, B, evaluation).
Saves the result as JSON under ``results/linear/<key>.json``. Add ``--tau T`` for debiased EASE.
"""

import resource
import sys

import torch

from mmlrepro.linear import LinearConfig, run_linear, save_linear_result

BARS = {"gowalla": (80.0, 0.1765, 0.1467), "yelp2018": (300.0, 0.0657, 0.0552)}


def main(argv: list[str]) -> None:
    tau = 0.0
    if "--tau" in argv:
        i = argv.index("--tau")
        tau = float(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    name = argv[0] if argv else "gowalla"
    lam = float(argv[1]) if len(argv) > 1 else BARS.get(name, (300.0,))[0]
    device = argv[2] if len(argv) > 2 else "cpu"
    config = LinearConfig(name, "ease", lam=lam, tau_plus=tau, profile="paper", device=device)
    result = run_linear(config)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB
    result["peak_rss_gib"] = peak_gb
    if device.startswith("cuda"):
        result["peak_cuda_gib"] = torch.cuda.max_memory_allocated() / 1024**3
    path = save_linear_result(result)
    m, t = result["metrics"], result["timings"]
    print(f"{config.label()}  device={result['device']}  torch={torch.__version__}")
    print(f"fit {t['fit_s']:.1f} s  eval {t['eval_s']:.1f} s  peak RSS {peak_gb:.2f} GiB")
    print(f"Recall@20 {m['recall@20']:.4f}  NDCG@20 {m['ndcg@20']:.4f}  "
          f"Recall@50 {m['recall@50']:.4f}  NDCG@50 {m['ndcg@50']:.4f}")
    if name in BARS and lam == BARS[name][0] and tau == 0.0:
        _, r, n = BARS[name]
        print(f"BARS leaderboard: Recall@20 {r:.4f} ({m['recall@20'] / r - 1:+.1%})  "
              f"NDCG@20 {n:.4f} ({m['ndcg@20'] / n - 1:+.1%})")
    print(f"saved {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
