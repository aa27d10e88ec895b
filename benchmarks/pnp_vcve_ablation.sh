#!/usr/bin/env bash
# PnP-VCVE ablations like the paper's Table 5 (issue 13): the fast variant trained from
# scratch with configs/pnp_vcve/fast_ablation.yaml for the same wall time per arm (scored
# at 20 and 40 minutes, the budget), same seed and data order; "full-seed1" repeats the full model
# with another seed to show the spread. Each arm runs on one pinned core with one thread,
# so two queues can run side by side on a two-core machine:
#   bash benchmarks/pnp_vcve_ablation.sh TRAIN VAL OUT CORE ARM [ARM ...]
#   bash benchmarks/pnp_vcve_ablation.sh data/train_yuv data/val_yuv6 runs/ablation 0 full wo-region full-seed1 &
#   bash benchmarks/pnp_vcve_ablation.sh data/train_yuv data/val_yuv6 runs/ablation 1 wo-mv wo-caa &
#   python benchmarks/pnp_vcve_ablation.py runs/ablation          # the table, and what each prior bought
# TRAIN needs the recipe's pack: data.packed (set PACK=path to override the recipe's).
set -euo pipefail
train=$1 val=$2 out=$3 core=$4; shift 4
cfg=configs/pnp_vcve/fast_ablation.yaml
declare -A ARMS=(
  [full]=""
  [wo-mv]="model.overrides.mv_align=false"
  [wo-region]="model.overrides.region_refine=false"
  [wo-caa]="model.overrides.caa=false"
  [full-seed1]="train.seed=1"
)
for arm in "$@"; do
  sets=(--set "data.root=$train")
  [[ -n "${PACK:-}" ]] && sets+=(--set "data.packed=$PACK")
  for s in ${ARMS[$arm]}; do sets+=(--set "$s"); done
  taskset -c "$core" python benchmarks/learning_curves.py "$cfg" --arm "$arm" --val "$val" --out "$out" \
    --minutes "${MINUTES:-20,40}" --threads 1 --variants crf15,crf18,crf25,crf28,crf35,crf38 "${sets[@]}"
done
