#!/usr/bin/env bash
# Exports the GPU benchmark's models into MODELS_DIR once (random weights; see export.py and models/gpt.py).
# Safe to start early in the background (setsid) while the kit is still being carried over: a second run
# waits on the first's lock, and each file appears under its final name only when it is whole.
#   bench/gpu/models.sh MODELS_DIR [vision] [gpt2] [embed] [lora]   (the first three when none is named)
set -euo pipefail
MODELS=${1:?usage: bench/gpu/models.sh MODELS_DIR [vision] [gpt2] [embed]}
shift
WANT=${*:-vision gpt2 embed}
PYTHON=${PYTHON:-python3}
mkdir -p "$MODELS"
exec 9> "$MODELS/.lock"
flock 9
STAGE=$(mktemp -d "$MODELS/.stage.XXXX")
trap 'rm -rf "$STAGE"' EXIT
# Builds $1 with the rest of the command line writing into $STAGE, unless it is already there.
make_one() {
  local file=$1; shift
  [ -f "$MODELS/$file" ] && return
  "$@"
  # GPT-2 small keeps its weights beside the graph (over 2 GB of protobuf is not allowed): those first
  [ ! -f "$STAGE/$file.data" ] || mv "$STAGE/$file.data" "$MODELS/"
  mv "$STAGE/$file" "$MODELS/$file"
}
for want in $WANT; do
  case $want in
    vision)
      if [ ! -f "$MODELS/resnet50-u8.onnx" ]; then
        "$PYTHON" bench/gpu/export.py "$STAGE"
        mv "$STAGE"/resnet50-fp32.onnx "$STAGE"/resnet50-fp16.onnx "$MODELS/" && mv "$STAGE/resnet50-u8.onnx" "$MODELS/"
      fi ;;
    gpt2)
      make_one gpt2-small-kv16.onnx "$PYTHON" models/gpt.py small "$STAGE/gpt2-small-kv16.onnx" --kv fp16
      make_one gpt2-small.onnx "$PYTHON" models/gpt.py small "$STAGE/gpt2-small.onnx" ;;
    embed) make_one embed-small.onnx "$PYTHON" models/gpt.py small "$STAGE/embed-small.onnx" --encoder ;;
    lora)
      make_one gpt2-small-lora-kv16.onnx "$PYTHON" models/gpt.py small "$STAGE/gpt2-small-lora-kv16.onnx" --kv fp16 --lora
      [ -d "$MODELS/adapters-small" ] || { "$PYTHON" models/lora.py --small 8 "$STAGE/adapters-small" && mv "$STAGE/adapters-small" "$MODELS/"; } ;;
    *) echo "unknown model set $want" >&2; exit 2 ;;
  esac
done
ls -la "$MODELS"
