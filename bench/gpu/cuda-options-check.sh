#!/usr/bin/env bash
# Shows that a model's `cuda:` options reach ONNX Runtime's real CUDA provider, on a machine without CUDA.
# The CUDA provider library (from the layout bench/gpu/layout.sh builds) is loaded against stub CUDA
# libraries generated from its own imports: every call fails with "no CUDA" except cudaGetDeviceCount,
# which says one device, so that the provider's option parser (which checks device_id) runs for real.
# A gateway then starts a replica of a `device: cuda` model with options; the replica must log the
# options ONNX Runtime reports in effect, then fail at CUDA initialisation (the stubs' doing).
#
#   bench/gpu/layout.sh /tmp/layout && bench/gpu/cuda-options-check.sh /tmp/layout
set -euo pipefail
LAYOUT=$(cd "${1:?usage: bench/gpu/cuda-options-check.sh LAYOUT_DIR}" && pwd)
PROVIDER="$LAYOUT/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so"
STUBS=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$STUBS"; [ -z "${gateway:-}" ] || kill "$gateway" 2> /dev/null || true' EXIT

for lib in $(readelf -d "$PROVIDER" | sed -n 's/.*NEEDED.*\[\(libcu[a-zA-Z]*\.so\.[0-9]*\)\]/\1/p'); do
  syms=$(nm -D --undefined-only "$PROVIDER" | awk '{print $2}' | sed -n "s/@$lib\$//p")
  {
    echo 'static const char msg[] = "CUDA stub: no CUDA on this machine"; static void *handle[4];'
    for s in $syms; do
      case $s in
        cudaGetDeviceCount) echo "int $s(int *n) { *n = 1; return 0; }" ;;
        *GetErrorString | *GetErrorName | *GetStatusName | *GetStatusString) echo "const char *$s(void) { return msg; }" ;;
        __cudaRegisterFatBinary) echo "void **$s(void) { return handle; }" ;;
        *) echo "long $s(void) { return 100; }" ;;  # cudaErrorNoDevice
      esac
    done
  } > "$STUBS/$lib.c"
  { echo "$lib {"; echo "  global:"; for s in $syms; do echo "    $s;"; done; echo "  local: *;"; echo "};"; } > "$STUBS/$lib.map"
  [ -n "$syms" ] || printf '%s { local: *; };\n' "$lib" > "$STUBS/$lib.map"
  cc -shared -fPIC -w -Wl,-soname,"$lib" -Wl,--version-script="$STUBS/$lib.map" -o "$STUBS/$lib" "$STUBS/$lib.c"
done

cat > "$STUBS/config.yaml" <<YAML
server: { port: 18790, host: 127.0.0.1 }
models:
  mlp:
    path: $LAYOUT/examples/models/mlp.onnx
    device: cuda:0
    cuda: { cudnn_conv_algo_search: HEURISTIC, prefer_nhwc: true, gpu_mem_limit: 4294967296, arena_extend_strategy: kSameAsRequested }
    scaling: { min_containers: 1 }
YAML
(cd "$LAYOUT" && LD_LIBRARY_PATH="$STUBS" exec node dist/cli.js serve -c "$STUBS/config.yaml") > "$STUBS/log" 2>&1 &
gateway=$!
for _ in $(seq 1 60); do grep -q "CUDA failure\|failed to start" "$STUBS/log" && break; sleep 1; done
grep "CUDA provider options in effect" "$STUBS/log" | head -1
for want in cudnn_conv_algo_search=HEURISTIC prefer_nhwc=1 gpu_mem_limit=4294967296 arena_extend_strategy=kSameAsRequested device_id=0; do
  grep "CUDA provider options in effect" "$STUBS/log" | grep -q "$want" || { echo "missing $want"; cat "$STUBS/log"; exit 1; }
done
grep -q "CUDA stub: no CUDA" "$STUBS/log" || { echo "the replica did not reach CUDA initialisation"; cat "$STUBS/log"; exit 1; }
echo "cuda options ok: applied by ONNX Runtime's CUDA provider, then CUDA initialisation failed on the stubs as expected"
