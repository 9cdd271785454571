#!/bin/sh
# One config end to end in the background: its view caches on two processes (lowest priority), then
# training, then export to <run_dir>/model.onnx.  Every stage resumes, so rerunning continues.
# A config distilled on cached trunk maps (teacher: {views_from: T.yaml}) first gets T's caches, then
# the teacher's features.
#   nohup sh scripts/chain_train.sh scripts/configs/lite0_b6_wide_r96.yaml > logs/chain_r96.log 2>&1 &
set -u
cd "$(dirname "$0")/.."
CFG=$1
NAME=$(basename "$CFG" .yaml)
RUN_DIR=$(python -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['run_dir'])" "$CFG")
VIEWS_FROM=$(python -c "import sys, yaml; print((yaml.safe_load(open(sys.argv[1])).get('teacher') or {}).get('views_from', ''))" "$CFG")
mkdir -p logs
for c in $VIEWS_FROM "$CFG"; do
  for w in 0 1; do
    OMP_NUM_THREADS=1 nice -n 19 python scripts/train.py --config "$c" --stage cache --worker $w --workers 2 \
      >> "logs/cache_$(basename "$c" .yaml)_w$w.log" 2>&1 &
  done
  wait
done
if [ -n "$VIEWS_FROM" ]; then
  python scripts/train.py --config "$CFG" --stage teacher >> "logs/train_$NAME.log" 2>&1 || exit 1
fi
echo "$(date -u +%H:%M:%S) cache done; training"
DOCRETRIEVER_TRAIN_THREADS=2 nice -n 15 python scripts/train.py --config "$CFG" --stage train >> "logs/train_$NAME.log" 2>&1
echo "$(date -u +%H:%M:%S) training ended with $?"
DOCRETRIEVER_TRAIN_THREADS=2 nice -n 15 python scripts/train.py --config "$CFG" --stage export \
  --out "$RUN_DIR/model.onnx" >> "logs/train_$NAME.log" 2>&1
echo "$(date -u +%H:%M:%S) export ended with $?"
