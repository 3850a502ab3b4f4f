#!/usr/bin/env bash
# The short CUDA check for a session that is lent a GPU (nothing here runs without one):
# one epoch of CIFAKE at 32 px and at 224 px on CUDA with the cifake recipe, then the model
# benchmark's inference and end-to-end sections (the app's scoring job, stored images to
# Prediction rows) on CUDA. Prints the figures for the README; writes JSON under $OUT if set.
#
#   bash bench/gpu_check.sh            # about 5 minutes on one modern GPU
#
# Needs ../shared/datasets/cifake-train-40k.zip beside the checkout (as the CPU benches do).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
python=.venv/bin/python
out=${OUT:-bench/out}
mkdir -p "$out"
"$python" - <<'PY'
import torch
if not torch.cuda.is_available():
    raise SystemExit("no CUDA device: this check is for a machine with a GPU")
print("cuda device:", torch.cuda.get_device_name(0), "torch", torch.__version__)
PY
for size in 32 224; do
  echo "==> one CIFAKE epoch at ${size} px on CUDA"
  "$python" bench/cifake_bench.py --epochs 1 --image-size "$size" --eval-every 1000000 \
    --json "$out/cifake-${size}px-cuda.json"
done
echo "==> inference and end to end on CUDA"
"$python" bench/model_bench.py --device cuda --sections inference end_to_end --no-compile
