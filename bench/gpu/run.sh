#!/usr/bin/env bash
# The GPU benchmark on the device machine, after the kit is restored (see ../shared/gpu/README.md):
#   source /opt/kit/env.sh && bash bench/gpu/run.sh "$OUT" [STEP...]
# Steps, in order of importance (all of them when none is named):
#   models     export ResNet-50 fp32/fp16/uint8-NHWC (torchvision, random weights) and GPT-2 small
#   fp16-128   fp16 at batch 128 alone (with TRACE=1: where a replica's run goes under the gateway's load)
#   fp16-threads1  fp16-128 with one ONNX Runtime intra-op thread in the replica instead of one per core
#   shape-switch  in-process: batches of 32/64/128 in turn vs 128 alone, cuDNN search EXHAUSTIVE/HEURISTIC/DEFAULT
#              and a session per shape (a shape change costs ~200 ms a run on one session: the replica's loss)
#   fp16-fixed fp16 at batch 128 with every batch padded to 128 (one shape, not three): do alternating shapes
#              slow the replica's runs? (the H200 run: 84 ms a run under the gateway vs 27 ms driven directly)
#   raw-inputs raw session.run at 128 fed zeros / image-like values / a fresh buffer each run, and the replica
#              round trip alone (no gateway), fp16 and u8
#   fp16       raw session.run vs the gateway, ResNet-50 fp16, batch 32/128/256          (goal: >= 0.9 of raw)
#   u8         the same with uint8 NHWC input, normalisation inside the graph            (goal: >= 10k img/s)
#   u8-nhwc    u8 with the CUDA provider's prefer_nhwc (no layout transposes around convolutions)
#   u8-shm     u8 with the images in client shared memory (Triton's extension) instead of HTTP bodies
#   u8-2rep    u8 with two replicas per GPU (one copies while the other computes)
#   u8-nhwc-2rep  u8-nhwc with two replicas per GPU
#   fp16-2rep  fp16 with two replicas per GPU
#   u8-2rep-intake, fp16-2rep-intake, fp16-intake  the same with server.intake_threads (INTAKE_THREADS, default 1;
#              more than 1 needs a kit packed with Node 22.12+: NODE_BIN=... bash bench/gpu/kit.sh): bodies read
#              and answers written on worker threads, the main thread keeping routing, batching and replicas
#   coldstart  CUDA replica cold start (warm-up at batch 32/128/256), GPU memory before / up / after scale to zero
#   coldstart-heuristic  the same with cudnn_conv_algo_search HEURISTIC instead of ONNX Runtime's EXHAUSTIVE
#   prefill    GPT-2 small in the decoder on the GPU: last-position vs every-position logits, the prefix cache,
#              chunked prefill beside 8 decoding sequences (where to set the short/long decode split)
#   structured GPT-2 small decode steps with a response_format vs free text (masks are computed on the replica's
#              CPU thread, serially with the GPU's run: their share of a GPU step is the question)
#   fp16-nhwc  fp16 with prefer_nhwc
#   gpt2       GPT-2-small streaming, 1/16/64 streams, continuous batching vs sequential; KV cache in FP16
#              (half the bytes every decode step sends to the GPU)
#   fp32       raw vs gateway, ResNet-50 fp32, batch 32/128
#   gpt2-kv32  gpt2 with the KV cache in FP32
#   gpt2-sampler1  gpt2 with the sampler's softmax on one CPU thread (the default gives it a thread per core):
#              the `sampling` column says how much of a step drawing tokens takes
#   embeddings /v1/embeddings with a BERT-base-sized encoder (models/gpt.py small --encoder), 1 and 64 clients,
#              batched (length buckets) vs one text per run
#   ocr        /v1/ocr with the real PP-OCRv4 detector and recogniser, 1 and 16 clients, lines batched vs one per run
#   lora       GPT-2 small (KV16) streams, 1/16/64: built without LoRA inputs, with them and no adapter, one adapter,
#              8 adapters (ranks 8 and 16) mixed in every step — every step copies the step's stacked adapters to
#              the GPU (models: MODEL_SETS lora, exported by the models step when named)
#   speculative  GPT-2 small (KV16) streams, 1/16/64, greedy and sampled: prompt-lookup speculative decoding vs a
#              token a step (drafts are checked in one run of 5 positions: on a GPU nearly the price of one)
#   beam       GPT-2 small (KV16), one search of 4 beams × 32 tokens: in the replica (rows copied) vs vLLM's way (a
#              one-token request per beam per step over the prefix cache) vs 4 plain sequences (bench/beam.ts)
#   edge-threads  no GPU: the HTTP intake of 1.2 MB bodies on the main thread vs on 1/2/4 worker threads, and the
#              gateway with and without intake_threads: 1 (bench/edge-threads.ts), with the machine's cores to spare
# On the H200, models fp16 u8 coldstart gpt2 u8-2rep u8-nhwc u8-shm fp32 coldstart-heuristic took 427 s at
# SECONDS_PER_LOAD=5 (models exported ahead); the exported models stay in $MODELS while the machine is warm. A failing step is
# reported and the next one still runs. Results: $OUT/gpu-*.json, gpu-*.md and gpu-summary.md, to be
# committed under bench/results/. With RESULTS_TAR=FILE they are also packed into that one archive after every
# step (the device tool returns at most 8 files, and a call stopped at its limit returns what was packed).
# With CLOCKS=1, nvidia-smi dmon logs the GPU's use and clocks once a second to $OUT/gpu-dmon.txt meanwhile,
# and pmon which processes use it (gpu-pmon.txt). With TRACE=1 every session run of each step is logged and
# ONNX Runtime profiles its first runs, under $OUT/trace-STEP/ (see src/models/run-trace.ts).
# RAW_MODELS (fp16 u8, default both) limits the raw-inputs step. With GATEWAY_PROFILE=1 the vision steps run the
# gateway under V8's CPU profiler and their results say where its main thread went (profile-summary.ts).
# The models can be exported ahead, in the background of the kit's calls: setsid bash bench/gpu/models.sh DIR.
# MODEL_SETS (vision gpt2 embed, default all) limits what the models step exports.
set -uo pipefail
OUT=${1:?usage: bench/gpu/run.sh OUT_DIR [STEP...]}
shift
STEPS=${*:-models shape-switch fp16-fixed raw-inputs fp16 u8 u8-nhwc u8-shm u8-2rep u8-nhwc-2rep fp16-2rep u8-2rep-intake fp16-2rep-intake coldstart coldstart-heuristic gpt2 prefill structured fp16-nhwc fp32 gpt2-kv32 gpt2-sampler1 embeddings ocr edge-threads lora speculative beam}
MODELS=${MODELS:-/tmp/infergate-gpu-models}
SECONDS_PER_LOAD=${SECONDS_PER_LOAD:-6}
mkdir -p "$OUT" "$MODELS"
# The CUDA options shim (dist/ is not in the tree the device gets: carry dist/native, or build it here)
[ -f dist/native/cuda-options.so ] || node native/build.mjs || true
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu-device.txt"
# What infergate itself finds here: the driver, the CUDA provider's libraries, a real replica on cuda:0 (seconds).
node --import tsx src/cli.ts doctor | tee "$OUT/gpu-doctor.txt"

if [ -n "${CLOCKS:-}" ]; then
  nvidia-smi dmon -s puc -o T > "$OUT/gpu-dmon.txt" 2>&1 &
  dmon=$!
  nvidia-smi pmon -s u -o T > "$OUT/gpu-pmon.txt" 2>&1 &
  pmon=$!
  trap 'kill $dmon $pmon 2> /dev/null' EXIT
fi

vision() { node --import tsx bench/gpu/vision.ts --device cuda --seconds "$SECONDS_PER_LOAD" --out "$OUT" ${GATEWAY_PROFILE:+--profile-gateway "$OUT/gateway-prof"} "$@"; }
# CUDA provider options for the raw in-process session too: the bench process needs the shim itself.
with_shim() { LD_PRELOAD="$PWD/dist/native/cuda-options.so" "$@"; }
gpt2() {
  node --import tsx bench/streaming.ts --model "$MODELS/gpt2-small${1:+-$1}.onnx" --device cuda --streams 1,16,64 --max-tokens 128 \
    --seconds "$SECONDS_PER_LOAD" --out "$OUT" "${@:2}"
}
coldstart() { node --import tsx bench/gpu/coldstart.ts --model "$MODELS/resnet50-fp16.onnx" --batch-sizes 32,128,256 --out "$OUT" "$@"; }
run_step() {
  case "$1" in
    models) bash bench/gpu/models.sh "$MODELS" ${MODEL_SETS:-} ;;
    fp16-128) vision --model "$MODELS/resnet50-fp16.onnx" --name resnet50-fp16-128 --shape 3,224,224 --dtype FP16 --batches 128 ;;
    fp16-threads1) vision --model "$MODELS/resnet50-fp16.onnx" --name resnet50-fp16-threads1 --shape 3,224,224 --dtype FP16 --batches 128 --threads 1 ;;
    shape-switch) with_shim node --import tsx bench/gpu/shape-switch.ts --model "$MODELS/resnet50-fp16.onnx" --name resnet50-fp16 --batch 128 --seconds 4 --out "$OUT" ;;
    fp16-fixed) vision --model "$MODELS/resnet50-fp16.onnx" --name resnet50-fp16-fixed --shape 3,224,224 --dtype FP16 --batches 128 --batch-sizes fixed ;;
    raw-inputs) for m in ${RAW_MODELS:-fp16 u8}; do node --import tsx bench/gpu/raw-inputs.ts --model "$MODELS/resnet50-$m.onnx" --name "resnet50-$m" --batch 128 --out "$OUT" || return 1; done ;;
    fp16) vision --model "$MODELS/resnet50-fp16.onnx" --name resnet50-fp16 --shape 3,224,224 --dtype FP16 --batches 32,128,256 ;;
    u8) vision --model "$MODELS/resnet50-u8.onnx" --name resnet50-u8 --shape 224,224,3 --dtype UINT8 --batches 32,128,256 ;;
    u8-nhwc) with_shim vision --model "$MODELS/resnet50-u8.onnx" --name resnet50-u8-nhwc --shape 224,224,3 --dtype UINT8 --batches 128,256 --cuda '{"prefer_nhwc":true}' ;;
    fp16-nhwc) with_shim vision --model "$MODELS/resnet50-fp16.onnx" --name resnet50-fp16-nhwc --shape 3,224,224 --dtype FP16 --batches 128,256 --cuda '{"prefer_nhwc":true}' ;;
    u8-shm) vision --model "$MODELS/resnet50-u8.onnx" --name resnet50-u8-shm --shape 224,224,3 --dtype UINT8 --batches 128,256 --client-shm true ;;
    u8-nhwc-2rep) with_shim vision --model "$MODELS/resnet50-u8.onnx" --name resnet50-u8-nhwc-2rep --shape 224,224,3 --dtype UINT8 --batches 128,256 --replicas-per-gpu 2 --cuda '{"prefer_nhwc":true}' ;;
    fp16-2rep) vision --model "$MODELS/resnet50-fp16.onnx" --name resnet50-fp16-2rep --shape 3,224,224 --dtype FP16 --batches 128,256 --replicas-per-gpu 2 ;;
    u8-2rep) vision --model "$MODELS/resnet50-u8.onnx" --name resnet50-u8-2rep --shape 224,224,3 --dtype UINT8 --batches 128,256 --replicas-per-gpu 2 ;;
    u8-2rep-intake) vision --model "$MODELS/resnet50-u8.onnx" --name resnet50-u8-2rep-intake --shape 224,224,3 --dtype UINT8 --batches 128,256 --replicas-per-gpu 2 --intake-threads "${INTAKE_THREADS:-1}" ;;
    fp16-2rep-intake) vision --model "$MODELS/resnet50-fp16.onnx" --name resnet50-fp16-2rep-intake --shape 3,224,224 --dtype FP16 --batches 128,256 --replicas-per-gpu 2 --intake-threads "${INTAKE_THREADS:-1}" ;;
    fp16-intake) vision --model "$MODELS/resnet50-fp16.onnx" --name resnet50-fp16-intake --shape 3,224,224 --dtype FP16 --batches 32,128,256 --intake-threads "${INTAKE_THREADS:-1}" ;;
    coldstart) coldstart ;;
    coldstart-heuristic) coldstart --name coldstart-heuristic --cuda '{"cudnn_conv_algo_search":"HEURISTIC"}' ;;
    gpt2) gpt2 kv16 --name gpu-gpt2-small ;;
    gpt2-kv32) gpt2 "" --name gpu-gpt2-small-kv32 ;;
    gpt2-sampler1) INFERGATE_SAMPLER_THREADS=1 gpt2 kv16 --name gpu-gpt2-small-sampler1 ;;
    prefill) node --import tsx bench/prefill.ts --device cuda --no-tiny --small "$MODELS/gpt2-small.onnx" --out "$OUT" --name gpu-prefill ;;
    structured) node --import tsx bench/structured.ts --device cuda --model "$MODELS/gpt2-small.onnx" --out "$OUT" --name gpu-structured ;;
    embeddings) PYTHON=python3 node --import tsx bench/embeddings.ts --device cuda --model "$MODELS/embed-small.onnx" --clients 1,64 --max-batch 64 \
      --seconds "$SECONDS_PER_LOAD" --out "$OUT" --name gpu-embeddings ;;
    ocr) node --import tsx bench/ocr.ts --device cuda --clients 1,16 --seconds "$SECONDS_PER_LOAD" --out "$OUT" --name gpu-ocr ;;
    edge-threads) node --import tsx bench/edge-threads.ts --duration "$SECONDS_PER_LOAD" --rounds 2 --threads 1,2,4 --connections 64 --processes 4 \
      --out "$OUT" --name gpu-machine-edge-threads ;;
    lora) bash bench/gpu/models.sh "$MODELS" gpt2 lora &&
      node --import tsx bench/lora.ts --device cuda --model "$MODELS/gpt2-small-lora-kv16.onnx" --plain "$MODELS/gpt2-small-kv16.onnx" \
        --adapters "$MODELS/adapters-small" --streams 1,16,64 --seconds "$SECONDS_PER_LOAD" --out "$OUT" --name gpu-lora ;;
    speculative) node --import tsx bench/speculative.ts --device cuda --model "$MODELS/gpt2-small-kv16.onnx" --streams 1,16,64 \
      --seconds "$SECONDS_PER_LOAD" --rounds 1 --out "$OUT" --name gpu-speculative ;;
    beam) node --import tsx bench/beam.ts --device cuda --model "$MODELS/gpt2-small-kv16.onnx" --rounds 3 --out "$OUT" --name gpu-beam ;;
    fp32) vision --model "$MODELS/resnet50-fp32.onnx" --name resnet50-fp32 --shape 3,224,224 --dtype FP32 --batches 32,128 ;;
    *) echo "unknown step $1" >&2; return 2 ;;
  esac
}

failed=()
for step in $STEPS; do
  started=$SECONDS
  echo "=== $step"
  [ -z "${TRACE:-}" ] || export INFERGATE_RUN_LOG="$OUT/trace-$step" INFERGATE_ORT_PROFILE="$OUT/trace-$step"
  if run_step "$step" < /dev/null; then echo "=== $step done in $((SECONDS - started)) s"; else
    echo "=== $step FAILED after $((SECONDS - started)) s" | tee -a "$OUT/gpu-failures.txt"
    failed+=("$step")
  fi
  [ -z "${RESULTS_TAR:-}" ] || { tar czf "$RESULTS_TAR.tmp" -C "$OUT" . && mv "$RESULTS_TAR.tmp" "$RESULTS_TAR"; }
done

cat "$OUT"/gpu-*.md > "$OUT/gpu-summary.md" 2>/dev/null
echo "results in $OUT${failed[*]:+; failed: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
