#!/usr/bin/env bash
# The "learning that starts" study: every arm 10 minutes on one pinned core, then the
# best two (mean 8-bit ΔPSNR-Y at CRF 25 and 35) continued to 30 minutes.
# Usage: bash benchmarks/learning_study.sh TRAIN_DATA VAL_DATA OUT [CORE [ARM...]]
# With ARMs named, only those run, 10 minutes each (MINUTES=10,30,60 to go on), and nothing
# else is continued (a second batch of arms: run `base` in it again, so that both batches
# share the machine's load).
set -euo pipefail
train=$1 val=$2 out=$3 core=${4:-0}
shift $(( $# < 4 ? $# : 4 ))
only=("$@")
cfg=configs/pnp_vcve/fast.yaml
run() {  # arm minutes overrides...
  local arm=$1 minutes=$2; shift 2
  local sets=(--set "data.root=$train")
  for s in "$@"; do sets+=(--set "$s"); done
  taskset -c "$core" python benchmarks/learning_curves.py "$cfg" --arm "$arm" --val "$val" --out "$out" \
    --minutes "$minutes" --threads 1 "${sets[@]}"
}
declare -A ARMS=(
  [base]=""
  [mse]="train.loss=mse"
  [lr3e-4]="train.lr=3e-4"
  [crop128]="data.crop=128 train.batch_size=4"
  [round]="train.round_output=true"
  [init-he]="model.overrides.zero_init=false"
  [norm-in]="model.overrides.input_scale=4"
  [norm-res]="model.overrides.residual_scale=0.05"
  [norm-in-round]="model.overrides.input_scale=4 train.round_output=true"
)
if (( ${#only[@]} )); then
  for arm in "${only[@]}"; do
    [[ -v "ARMS[$arm]" ]] || { echo "unknown arm $arm; known: ${!ARMS[*]}" >&2; exit 2; }
    # shellcheck disable=SC2086
    run "$arm" "${MINUTES:-10}" ${ARMS[$arm]}
  done
  exit 0
fi
for arm in base mse lr3e-4 crop128 round; do
  # shellcheck disable=SC2086
  run "$arm" 10 ${ARMS[$arm]}
done
best=$(python - "$out" <<'PY'
import json, sys
from pathlib import Path
rows = []
for log in Path(sys.argv[1]).glob("*/curve.jsonl"):
    for r in map(json.loads, log.read_text().splitlines()):
        if r["minutes"] == 10:
            v = r["by_variant"]
            rows.append(((v["crf25"]["8bit"] + v["crf35"]["8bit"]) / 2, r["arm"]))
print(" ".join(a for _, a in sorted(rows, reverse=True)[:2]))
PY
)
echo "best two at 10 minutes: $best"
for arm in $best; do
  # shellcheck disable=SC2086
  run "$arm" 10,30 ${ARMS[$arm]}
done
