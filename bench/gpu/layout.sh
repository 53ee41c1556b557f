#!/usr/bin/env bash
# Reproduces the Dockerfile's runtime image outside Docker, step for step (no Docker engine runs on the
# development or GPU machines): npm install --omit=dev (see the Dockerfile for why not npm ci), the build (with the CUDA options shim), the CUDA 13 provider's two
# libraries from npm next to libonnxruntime.so.1, models and examples. Then checks the layout.
#
#   bench/gpu/layout.sh OUT_DIR          (from the project root; needs Node and the npm registry)
set -euo pipefail
OUT=${1:?usage: bench/gpu/layout.sh OUT_DIR}
ROOT=$(pwd)
ORT_CUDA_PACKAGE=${ORT_CUDA_PACKAGE:-com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9}
rm -rf "$OUT" && mkdir -p "$OUT"

# build stage
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
cp package.json package-lock.json .npmrc tsconfig.json tsconfig.build.json "$BUILD/"
cp -r src native "$BUILD/"
(cd "$BUILD" && npm install --ignore-scripts --no-audit --no-fund > /dev/null && INFERGATE_REQUIRE_NATIVE=1 npm run build > /dev/null)

# runtime stage
cp package.json package-lock.json .npmrc "$OUT/"
(cd "$OUT" && npm install --omit=dev --ignore-scripts --no-audit --no-fund > /dev/null)
EP=$(mktemp -d)
(cd "$EP" && npm pack --silent "$ORT_CUDA_PACKAGE" > /dev/null && tar xzf ./*.tgz)
BIN="$OUT/node_modules/onnxruntime-node/bin/napi-v6/linux/x64"
cp "$EP"/package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so "$EP"/package/Plugins/Linux/x64/libonnxruntime_providers_shared.so "$BIN/"
rm -rf "$EP"
cp -r "$BUILD/dist" "$OUT/dist"
cp -r "$ROOT/models" "$ROOT/examples" "$OUT/"

# checks: the provider sits next to libonnxruntime, the CLI reads the demo config, dev tools are absent
ls "$BIN"/libonnxruntime.so.1 "$BIN"/libonnxruntime_providers_cuda.so "$BIN"/libonnxruntime_providers_shared.so "$OUT/dist/native/cuda-options.so" > /dev/null
(cd "$OUT" && node dist/cli.js validate -c examples/demo.yaml)
# the shim takes hold of the installed binding (what a replica with cuda: options starts with)
(cd "$OUT" && LD_PRELOAD="$OUT/dist/native/cuda-options.so" node --input-type=module -e "await import('onnxruntime-node');
  if (process.env.INFERGATE_CUDA_OPTIONS_SHIM !== '1') throw new Error('CUDA options shim inactive: ' + process.env.INFERGATE_CUDA_OPTIONS_SHIM)")
[ ! -e "$OUT/node_modules/typescript" ] || { echo "dev dependencies leaked into the runtime layout" >&2; exit 1; }
echo "layout ok: $OUT ($(du -sh "$OUT" | cut -f1))"
