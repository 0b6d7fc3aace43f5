#!/usr/bin/env bash
# Everything issue 5 asks of a lent GPU, in one device call of under 10 minutes (DEVELOPERS.md):
# the exactness checks, every benchmark, and one whole timed paper run (target: <= 30 s).
# Run from the project root on the device machine; the output lands in $OUT/gpu_session.txt.
#
#   bash benchmarks/gpu_session.sh        (with the data copied to .carry/data and carried)
set -u
export PYTHONPATH=. TQDM_DISABLE=1
export MMLREPRO_DATA_DIR="${MMLREPRO_DATA_DIR:-.carry/data}"
out="${OUT:-out}"
mkdir -p "$out"
scratch="$(mktemp -d)"
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  echo "== mmlrepro check --device cuda"; python -m mmlrepro check --device cuda
  echo "== train_step"; python benchmarks/train_step.py --device cuda --steps 200 --warmup 20
  echo "== train_epoch"; python benchmarks/train_epoch.py --device cuda
  echo "== eval"; python benchmarks/eval.py --device cuda
  echo "== negatives_memory"; python benchmarks/negatives_memory.py --device cuda
  echo "== one whole paper run: MF + MML, Gowalla, 100 epochs with per-epoch evaluation"
  TIMEFORMAT="wall clock, process start to end (data loading included): %R s"
  time MMLREPRO_CHECKPOINT_DIR="$scratch/ckpt" python -m mmlrepro train --dataset gowalla --loss mml \
    --device cuda --results-dir "$scratch/store"
} 2>&1 | tee "$out/gpu_session.txt"
cp -r "$scratch/store" "$out/whole_run_store" 2>/dev/null || true
