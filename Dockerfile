# kiln — multi-stage image: a CUDA devel image builds, a CUDA runtime image runs `kiln`.
# Build: docker build -t kiln .      Run: docker run --gpus all kiln train --config ...

ARG CUDA_VERSION=13.0.1
ARG UBUNTU=ubuntu24.04

FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS build
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config libopenblas-openmp-dev libcjson-dev libyaml-dev \
      libprotobuf-c-dev protobuf-c-compiler libgrpc-dev zlib1g-dev libssl-dev libcurl4-openssl-dev \
      libmicrohttpd-dev libsqlite3-dev libpq-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DKILN_CUDA=ON -DKILN_TESTS=OFF -DKILN_WERROR=ON \
 && cmake --build /build -j"$(nproc)"

FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU} AS runtime
# libgrpc29t64 and libmicrohttpd12t64: Ubuntu 24.04's runtime packages for gRPC core 1.51
# (libgrpc.so.29) and libmicrohttpd (the t64 renames of Debian's libgrpc29, libmicrohttpd12). Not
# verified by a docker build here (no engine): check `apt-cache policy` if one fails.
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libopenblas0-openmp libgomp1 libcjson1 libyaml-0-2 libprotobuf-c1 zlib1g libssl3t64 \
      libcurl4t64 libgrpc29t64 libmicrohttpd12t64 libsqlite3-0 libpq5 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 kiln
COPY --from=build /build/kiln /usr/local/bin/kiln
COPY configs /opt/kiln/configs
USER 10001
WORKDIR /home/kiln
# kiln serve: gRPC (Open Inference Protocol) on 8001, HTTP (/v2, /metrics) on 8000 when asked:
#   docker run -p 8001:8001 -p 8000:8000 -v $PWD/models:/models kiln serve --host 0.0.0.0 \
#     --repository /models --poll-seconds 10 --http-port 8000
EXPOSE 8000 8001
ENTRYPOINT ["/usr/local/bin/kiln"]
CMD ["help"]
