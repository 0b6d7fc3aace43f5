#!/usr/bin/env bash
# Everything issues 5, 6 and 19 ask of a lent GPU, in ONE device call that ends inside its limit.
#
# A lent GPU comes with 15 minutes of device time in all, its start (a minute or more) counted,
# and at most 10 minutes a call: in practice one call. So this script does, in that order, each
# step under its own `timeout`, all inside BUDGET_S seconds from its start (the fixed steps'
# limits add up to FIXED_S, checked against the budget before anything runs):
#   1. the exactness checks (`mmlrepro check`), 60 s;
#   2. unless SKIP_BENCH=1: the step and evaluation benchmarks (40 + 30 + 30 s), a timed slice of
#      a Gowalla MF + MML paper run (SLICE_EPOCHS epochs with per-epoch evaluation, in a scratch
#      store; a whole run is 100 of them), 60 s, and the aggregate throughput of K = 1, 4, 8
#      runs side by side (`benchmarks/throughput.py`), 90 s;
#   3. paper-profile runs in plan order (issues 6, 19) into the tree's results/ store with
#      `reproduce --jobs K`, K the probe's best (else JOBS, default 4 on a GPU, 1 on the CPU),
#      until the budget is spent (`--max-minutes`, then a hard `timeout --signal=INT`: the runs
#      in flight stop as on Ctrl-C, keeping their checkpoints); unless REFRESH_PER_USER=0, with
#      `--refresh-per-user`: the stored runs of the plan without per-user values (trained before
#      issue 16) are trained again, so their claims get significance tests (the old records go
#      to results/set_aside/, which the archive carries);
#   4. $OUT/results.tgz: the store files (runs/*.json, per_user/*.npz, set_aside/*) this call wrote;
#      $OUT/checkpoints/<key>.pt: the checkpoints of the runs cut by the budget, which the next
#      lent GPU resumes (copy them to .carry/checkpoints/); $OUT/gpu_session.txt: the log;
#      $OUT/slice_store.tgz: the scratch store of the slice.
#      Unpack here with `tar xzf results.tgz` at the project root, then `mmlrepro report` (a
#      refreshed run's new record replaces the stored one, whose copy comes in set_aside/).
#
#   git rev-parse HEAD > .carry/COMMIT       (the lent copy of the tree has no .git)
#   bash benchmarks/gpu_session.sh           (data copied to .carry/data and carried: DEVELOPERS.md)
#
# Settings (environment): BUDGET_S (default 540), DEVICE (cuda), PROFILE (paper), SKIP_BENCH=1
# to go straight to the runs, JOBS (runs at a time; default: the probe's best), RUN_GROUPS (the
# plan's groups), SEEDS (3), SLICE_EPOCHS (2), REFRESH_PER_USER (1), MMLREPRO_COMMIT (default:
# .carry/COMMIT, else git).
# `DEVICE=cpu PROFILE=smoke SKIP_BENCH=1 BUDGET_S=120 OUT=out bash benchmarks/gpu_session.sh`
# tries the plumbing on any machine.
set -u
export PYTHONPATH=. TQDM_DISABLE=1 PYTHONUNBUFFERED=1
export MMLREPRO_DATA_DIR="${MMLREPRO_DATA_DIR:-.carry/data}"
export MMLREPRO_CHECKPOINT_DIR="${MMLREPRO_CHECKPOINT_DIR:-checkpoints}"
commit_file=""
[[ -f .carry/COMMIT ]] && commit_file="$(cat .carry/COMMIT)"
export MMLREPRO_COMMIT="${MMLREPRO_COMMIT:-${commit_file:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}}"
budget="${BUDGET_S:-540}"
device="${DEVICE:-cuda}"
profile="${PROFILE:-paper}"
groups="${RUN_GROUPS:-table3 table2 figure3 ccl_matched honest li2023}"
seeds="${SEEDS:-3}"
slice_epochs="${SLICE_EPOCHS:-2}"
out="${OUT:-out}"
reserve=30   # kept back for the archives
if [[ "${SKIP_BENCH:-0}" == 1 ]]; then fixed=60; else fixed=$(( 60 + 40 + 30 + 30 + 60 + 90 )); fi
mkdir -p "$out" results/runs "$MMLREPRO_CHECKPOINT_DIR"
# checkpoints of runs cut on an earlier lent GPU resume here
if [[ -d .carry/checkpoints ]]; then cp -n .carry/checkpoints/*.pt "$MMLREPRO_CHECKPOINT_DIR"/ 2>/dev/null; fi
scratch="$(mktemp -d)"
marker="$scratch/started"
touch "$marker"
# a set-aside file keeps its old mtime when moved, so the new ones are told by a listing
ls results/set_aside 2>/dev/null | sort > "$scratch/set_aside_before"
start=$SECONDS
left() { echo $(( budget - (SECONDS - start) )); }
# step SECONDS NAME COMMAND...: run COMMAND under a timeout of SECONDS (or what is left, less the
# reserve), printing its name and wall time; its exit status is in $rc.
step() {
  local limit=$1 name=$2; shift 2
  local room=$(( $(left) - reserve ))
  (( room < limit )) && limit=$room
  rc=124
  if (( limit < 10 )); then echo "== $name: skipped, budget spent"; return; fi
  echo "== $name (limit ${limit} s, $(left) s of the budget left)"
  local t0=$SECONDS
  timeout --signal=INT --kill-after=10 "$limit" "$@"
  rc=$?
  echo "-- $name: exit $rc, $(( SECONDS - t0 )) s"
}
{
  date -u
  echo "commit: $MMLREPRO_COMMIT"
  echo "budget ${budget} s: fixed steps ${fixed} s, archives ${reserve} s, the rest for reproduce"
  (( fixed + reserve + 60 > budget )) && echo "warning: the fixed steps leave under a minute for reproduce"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  step 60 "mmlrepro check --device $device" python -m mmlrepro check --device "$device"
  jobs="${JOBS:-}"
  if [[ "${SKIP_BENCH:-0}" != 1 ]]; then
    step 40 train_step python benchmarks/train_step.py --device "$device" --steps 200 --warmup 20
    step 30 bsl_step python benchmarks/bsl_step.py --device "$device" --steps 50
    step 30 eval python benchmarks/eval.py --device "$device"
    step 60 "a slice of a paper run: MF + MML, Gowalla, $slice_epochs epochs with per-epoch evaluation" \
      env MMLREPRO_CHECKPOINT_DIR="$scratch/ckpt" python -m mmlrepro train --dataset gowalla \
      --loss mml --profile "$profile" --epochs "$slice_epochs" --device "$device" --results-dir "$scratch/store"
    step 90 "throughput of K = 1, 4, 8 runs side by side" \
      python benchmarks/throughput.py --device "$device" --workers 1,4,8 --steps 500 --warmup 50 \
      | tee "$scratch/throughput.txt"
    # "K = 4 at 4 thread(s) each:  123.4 steps/s in all ...": the K of the most steps/s
    best=$(awk '/^K = /{if ($8 + 0 > top) {top = $8 + 0; k = $3}} END{print k}' "$scratch/throughput.txt")
    [[ -z "$jobs" && -n "$best" ]] && jobs=$best && echo "best K: $best"
  fi
  if [[ -z "$jobs" ]]; then if [[ "$device" == cpu ]]; then jobs=1; else jobs=4; fi; fi
  # one process: --device; K workers: every visible GPU (the default of --devices), or the CPU
  where=(--device "$device")
  if (( jobs > 1 )); then if [[ "$device" == cuda ]]; then where=(); else where=(--devices "$device"); fi; fi
  refresh=()
  [[ "${REFRESH_PER_USER:-1}" != 0 ]] && refresh=(--refresh-per-user)
  minutes=$(( ($(left) - reserve - 30) / 60 ))
  (( minutes < 0 )) && minutes=0  # 0: one round of runs, then stop
  # shellcheck disable=SC2086  # the groups are words
  step 600 "reproduce $groups [$profile], $seeds seeds, --jobs $jobs, --max-minutes $minutes ${refresh[*]:-}" \
    python -m mmlrepro reproduce $groups --profile "$profile" --seeds "$seeds" \
    --jobs "$jobs" ${where[@]+"${where[@]}"} ${refresh[@]+"${refresh[@]}"} --max-minutes "$minutes" --no-compare
  new=$(find results/runs results/per_user -type f \( -name '*.json' -o -name '*.npz' \) -newer "$marker" 2>/dev/null | sort)
  aside=$(ls results/set_aside 2>/dev/null | sort | comm -13 "$scratch/set_aside_before" - | sed 's|^|results/set_aside/|')
  new=$(printf '%s\n%s\n' "$new" "$aside" | grep . || true)
  echo "== $(echo "$new" | grep -c '^results/runs/.*\.json$') new store files -> $out/results.tgz"
  # shellcheck disable=SC2086
  if [[ -n "$new" ]]; then tar czf "$out/results.tgz" $new; fi
  cut=$(find "$MMLREPRO_CHECKPOINT_DIR" -maxdepth 1 -name '*.pt' 2>/dev/null | sort)
  if [[ -n "$cut" ]]; then
    mkdir -p "$out/checkpoints"
    # shellcheck disable=SC2086
    cp $cut "$out/checkpoints/"
    echo "== $(echo "$cut" | grep -c .) checkpoints of cut runs -> $out/checkpoints/ (copy to .carry/checkpoints/ next time)"
  fi
  echo "== done after $(( SECONDS - start )) s of a ${budget} s budget"
} 2>&1 | tee "$out/gpu_session.txt"
if [[ -d "$scratch/store" ]]; then tar czf "$out/slice_store.tgz" -C "$scratch" store; fi
