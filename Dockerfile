# infergate on NVIDIA GPUs: CUDA 13 runtime + cuDNN 9, Node.js 22 LTS, onnxruntime-node 1.29.0 with its
# CUDA 13 execution provider. Every step is also run outside Docker by bench/gpu/layout.sh (no Docker
# engine runs on the development machines), which is what runs on the GPU test machine.
#
#   docker build -t infergate .
#   docker run --gpus all --shm-size=2g -p 8080:8080 infergate         # the demo config
#   docker run --gpus all --shm-size=2g -p 8080:8080 -v $PWD/my.yaml:/config.yaml infergate -c /config.yaml
#   (with server.grpc_port: 8001 in my.yaml, add -p 8001:8001 for KServe v2 gRPC)

FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 AS node
ARG NODE_VERSION=22.23.3
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl xz-utils \
 && rm -rf /var/lib/apt/lists/* \
 && curl -fsSL "https://nodejs.org/dist/v${NODE_VERSION}/node-v${NODE_VERSION}-linux-x64.tar.xz" | tar -xJ -C /usr/local --strip-components=1 \
 && node --version

# Build: dev dependencies compile TypeScript to dist/; gcc compiles the CUDA options shim (native/).
FROM node AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# `npm install` against the lockfile rather than `npm ci`: lockfiles npm 11 writes on linux-x64 lack other
# platforms' optional packages (npm/cli#4828, #8320) and `npm ci` refuses them as out of sync.
RUN npm install --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY native ./native
RUN INFERGATE_REQUIRE_NATIVE=1 npm run build

# Runtime: production dependencies, the build, the models, and the CUDA provider next to libonnxruntime.
FROM node
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# .npmrc skips onnxruntime-node's postinstall (it would download CUDA 12 binaries); the CUDA 13 provider
# comes from the npm package below instead.
RUN npm install --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
ARG ORT_CUDA_PACKAGE=com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9
RUN cd /tmp \
 && npm pack --silent "${ORT_CUDA_PACKAGE}" \
 && tar xzf ./*.tgz \
 && cp package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so package/Plugins/Linux/x64/libonnxruntime_providers_shared.so \
       /app/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/ \
 && rm -rf /tmp/package /tmp/*.tgz
COPY --from=build /app/dist ./dist
COPY models ./models
COPY examples ./examples
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin infergate
USER infergate
ENV PORT=8080 NODE_ENV=production
# 8001: KServe v2 gRPC, served only with server.grpc_port: 8001 in the config (Triton's port).
EXPOSE 8080 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${PORT}/v2/health/ready" > /dev/null || exit 1
# Replicas receive image batches through /dev/shm: run with --shm-size=2g (Docker's default is 64 MB) or --ipc=host.
ENTRYPOINT ["node", "/app/dist/cli.js", "serve"]
CMD ["-c", "/app/examples/demo.yaml"]
