#!/bin/sh
# Issue 13, fast tier II (both caches): build the 96 px cache on two processes (lowest priority), then train.
# Every stage resumes.   nohup sh scripts/chain_r96x2.sh > logs/chain_r96x2.log 2>&1 &
cd "$(dirname "$0")/.."
CFG=scripts/configs/lite0_b6_wide_r96_x2.yaml
for w in 0 1; do
  OMP_NUM_THREADS=1 nice -n 19 python scripts/train.py --config $CFG --stage cache --worker $w --workers 2 \
    >> logs/cache_r96x2_w$w.log 2>&1 &
done
wait
echo "$(date -u +%H:%M:%S) cache done; training"
DOCRETRIEVER_TRAIN_THREADS=2 nice -n 15 python scripts/train.py --config $CFG --stage train >> logs/train_r96x2.log 2>&1
echo "$(date -u +%H:%M:%S) training ended with $?"
DOCRETRIEVER_TRAIN_THREADS=2 nice -n 15 python scripts/train.py --config $CFG --stage export --out runs/lite0_b6_wide_r96_x2/model.onnx >> logs/train_r96x2.log 2>&1
echo "$(date -u +%H:%M:%S) export ended with $?"
