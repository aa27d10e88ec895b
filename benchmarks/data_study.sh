#!/usr/bin/env bash
# Data diversity arm of the learning-curve study (issue 13): training sequences only vs the full set
# with photo clips, 10 minutes each on core 0, one thread. Run from the repository root, venv active.
set -e
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
taskset -c 0 codecave prepare ../shared/data/train/sequences --crf 0,15,25,35 --exclude-split configs/validation_split.yaml --out data/train_seq --no-progress --workers 1
du -sh data/train_seq data/train_yuv
for arm in base seqonly; do
  root=data/train_yuv; [ $arm = seqonly ] && root=data/train_seq
  taskset -c 0 python benchmarks/learning_curves.py configs/pnp_vcve/fast.yaml --arm $arm --val data/val_yuv --out runs/data_study --minutes 10 --threads 1 --set data.root=$root
done
python benchmarks/learning_curves.py --table runs/data_study
