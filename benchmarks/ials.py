"""iALS on the real data: per-epoch seconds and loss, Recall/NDCG@20, peak RSS (issue 7).

    MMLREPRO_DATA_DIR=/work/shared/data python benchmarks/ials.py [gowalla] [alpha reg epochs]
        [--tau T] [--quick] [--device cuda]

Defaults: ``IALS_DEFAULTS`` (dim 64, ν = 1). ``--quick`` fits on the top-``QUICK_ITEMS`` items.
Saves the result as JSON under ``results/linear/<key>.json``.
"""

import resource
import sys

import torch

from mmlrepro.linear import IALS_DEFAULTS, LinearConfig, run_linear, save_linear_result


def _option(argv: list[str], name: str, default: str | None) -> tuple[str | None, list[str]]:
    if name not in argv:
        return default, argv
    i = argv.index(name)
    return argv[i + 1], argv[:i] + argv[i + 2:]


def main(argv: list[str]) -> None:
    tau, argv = _option(argv, "--tau", "0")
    device, argv = _option(argv, "--device", "cpu")
    quick = "--quick" in argv
    argv = [a for a in argv if a != "--quick"]
    name = argv[0] if argv else "gowalla"
    alpha = float(argv[1]) if len(argv) > 1 else IALS_DEFAULTS["alpha"]
    reg = float(argv[2]) if len(argv) > 2 else IALS_DEFAULTS["reg"]
    epochs = int(argv[3]) if len(argv) > 3 else None
    config = LinearConfig(name, "ials", alpha=alpha, reg=reg, epochs=epochs, tau_plus=float(tau),
                          profile="quick" if quick else "paper", device=device)
    result = run_linear(config, show_progress=True)
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    path = save_linear_result(result)
    print(f"{config.label()}  device={result['device']}  torch={torch.__version__}")
    for h in result["history"]:
        print(f"  epoch {h['epoch']:3d}  {h['seconds']:6.1f} s  loss {h['loss']:.6g}")
    m, t = result["metrics"], result["timings"]
    print(f"fit {t['fit_s']:.1f} s  eval {t['eval_s']:.1f} s  peak RSS {result['peak_rss_gib']:.2f} GiB")
    print(f"Recall@20 {m['recall@20']:.4f}  NDCG@20 {m['ndcg@20']:.4f}  "
          f"Recall@50 {m['recall@50']:.4f}  NDCG@50 {m['ndcg@50']:.4f}")
    print(f"saved {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
