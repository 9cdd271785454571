#!/bin/sh
# The learned comparison of verification, end to end: its training data (sibling sets of training families,
# registered as the product registers them), training, export to the shipped ONNX file.  Every stage resumes
# (data in shards, training from its last epoch), so rerunning continues.  About 30 minutes on 2 cores.
#   nohup sh scripts/make_verifier.sh > logs/verifier.log 2>&1 &
# Then measure it: scripts/ablate_verify.py --verifier runs/verifier/best.pt (scripts/results/verifier/).
set -eu
cd "$(dirname "$0")/.."
DATA=${DATA:-$HOME/.cache/docretriever/verifier/train}
RUN=${RUN:-runs/verifier}
OMP_NUM_THREADS=1 nice -n 10 python scripts/verifier_data.py --sets 800 --members 5 --captures 3 --workers 2 --out "$DATA"
nice -n 10 python scripts/train_verifier.py --data "$DATA" --out "$RUN" --epochs 8 --batch 32 --lr 3e-3 \
  --p-absent 0.3 --p-foreign 0.3 --widths 8,16,32,32 --threads 2
python scripts/train_verifier.py --out "$RUN" --export "${OUT:-encoders/default/docretriever-verifier.onnx}"
