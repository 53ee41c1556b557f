#!/usr/bin/env bash
# The whole GPU benchmark in one device call, after the kit is restored (see ../shared/gpu/README.md):
#   source /opt/kit/env.sh && bash bench/gpu/run.sh "$OUT"
# Builds the models there (torch/torchvision, random weights; GPT-2 small from models/gpt.py), then runs
# raw session.run vs the gateway for ResNet-50 fp32 / fp16 / uint8-in-graph at batch 32/128/256, two
# replicas per GPU, the cold start and scale-to-zero of a CUDA replica, and GPT-2-small streaming.
# Results: $OUT/gpu-*.json and $OUT/gpu-summary.md, to be committed under bench/results/.
set -euo pipefail
OUT=${1:?usage: bench/gpu/run.sh OUT_DIR}
MODELS=${MODELS:-/tmp/infergate-gpu-models}
SECONDS_PER_LOAD=${SECONDS_PER_LOAD:-10}
mkdir -p "$OUT" "$MODELS"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu-device.txt"

[ -f "$MODELS/resnet50-u8.onnx" ] || python3 bench/gpu/export.py "$MODELS"
[ -f "$MODELS/gpt2-small.onnx" ] || python3 models/gpt.py small "$MODELS/gpt2-small.onnx"

vision() { node --import tsx bench/gpu/vision.ts --device cuda --seconds "$SECONDS_PER_LOAD" --out "$OUT" "$@"; }
vision --model "$MODELS/resnet50-fp32.onnx" --name resnet50-fp32 --shape 3,224,224 --dtype FP32 --batches 32,128
vision --model "$MODELS/resnet50-fp16.onnx" --name resnet50-fp16 --shape 3,224,224 --dtype FP16 --batches 32,128,256
vision --model "$MODELS/resnet50-u8.onnx" --name resnet50-u8 --shape 224,224,3 --dtype UINT8 --batches 32,128,256
vision --model "$MODELS/resnet50-u8.onnx" --name resnet50-u8-2rep --shape 224,224,3 --dtype UINT8 --batches 128,256 --replicas-per-gpu 2

node --import tsx bench/gpu/coldstart.ts --model "$MODELS/resnet50-fp16.onnx" --out "$OUT"
node --import tsx bench/streaming.ts --model "$MODELS/gpt2-small.onnx" --device cuda --streams 1,16,64 --max-tokens 128 \
  --seconds "$SECONDS_PER_LOAD" --name gpu-gpt2-small --out "$OUT"

cat "$OUT"/gpu-*.md > "$OUT/gpu-summary.md"
echo "results in $OUT"
