#!/bin/sh
# Issue 13, experiment "sibling types as training classes": wait for the wide r192 cache, build the
# sibling cache on two processes, then train (resumes from runs/lite0_b6_sib_r192/last.pt if present).
#   nohup sh scripts/chain_sib.sh > logs/chain_sib.log 2>&1 &
cd "$(dirname "$0")/.."
CFG=scripts/configs/lite0_b6_sib_r192.yaml
while pgrep -f "lite0_b6_wide_r192.yaml --stage cache" > /dev/null; do sleep 30; done
echo "$(date -u +%H:%M:%S) wide cache done; sibling cache"
for w in 0 1; do
  OMP_NUM_THREADS=1 nice -n 19 python scripts/train.py --config $CFG --stage cache --worker $w --workers 2 \
    >> logs/cache_sib_w$w.log 2>&1 &
done
wait
echo "$(date -u +%H:%M:%S) sibling cache done; training"
DOCRETRIEVER_TRAIN_THREADS=2 nice -n 10 python scripts/train.py --config $CFG --stage train >> logs/train_sib.log 2>&1
echo "$(date -u +%H:%M:%S) training ended with $?"
