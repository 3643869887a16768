# attnd container image.
#
#   docker build -t attnd .
#   docker run --rm -p 8080:8080 -v /path/to/models:/models:ro attnd
#
# Serves /models/model.gguf on 0.0.0.0:8080; every setting comes from ATTND_*
# environment variables (README.md, "Configuration"; deploy/README.md, "Container").
# Stage 1 builds a portable Release binary (no -march=native: attnd picks its
# kernels at run time); stage 2 holds only the runtime libraries and the binary,
# and runs it as an unprivileged user. deploy/test-image.sh builds this file with
# podman and runs the image for real.

FROM debian:bookworm-slim AS build
ARG DEBIAN_FRONTEND=noninteractive
# Marks this project's images (deploy/test-image.sh prunes its stale ones by it).
LABEL attnd.stage=build
# The -dev packages of scripts/setup-deps.sh without the test libraries
# (Criterion, libcurl) and the fuzzing toolchain: ATTND_BUILD_TESTS=OFF below.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      libopenblas-dev libmicrohttpd-dev libcjson-dev libuv1-dev libpcre2-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DATTND_BUILD_TESTS=OFF \
 && cmake --build /build -j"$(nproc)" --target attnd \
 && install -D -m 0755 /build/cli/attnd /out/attnd

FROM debian:bookworm-slim
ARG DEBIAN_FRONTEND=noninteractive
# Runtime libraries of the binary (ldd): OpenBLAS (pthread flavour, what
# libopenblas-dev links against), libmicrohttpd, cJSON, libuv, PCRE2; their own
# dependencies (libgfortran5, libgnutls30, ...) come with them.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libopenblas0-pthread libmicrohttpd12 libcjson1 libuv1 libpcre2-8-0 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
 && groupadd --gid 10001 attnd \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin attnd \
 && mkdir -p /models
COPY --from=build /out/attnd /usr/local/bin/attnd
# Fail the build, not the first start, when a shared library is missing.
RUN if ldd /usr/local/bin/attnd | grep 'not found'; then exit 1; fi \
 && /usr/local/bin/attnd --version

LABEL org.opencontainers.image.title="attnd" \
      org.opencontainers.image.description="HTTP inference server for decoder-only GGUF language models" \
      attnd.stage=runtime

# Defaults; override any ATTND_* variable with `docker run -e` (README.md lists them).
ENV ATTND_HOST=0.0.0.0 \
    ATTND_PORT=8080 \
    ATTND_MODEL=/models/model.gguf

# The model is read from a volume mounted here (read-only is enough).
VOLUME ["/models"]
EXPOSE 8080

# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /

# /health answers 200 while the process lives. bash's /dev/tcp keeps curl out of
# the image. Shell form so that ${ATTND_PORT} is read when the check runs.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD bash -c 'exec 3<>/dev/tcp/127.0.0.1/"${ATTND_PORT:-8080}" && printf "GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3 && read -r -t 4 _ code _ <&3 && [ "$code" = 200 ]'

# SIGTERM drains: /ready turns 503, running requests finish (up to
# ATTND_DRAIN_TIMEOUT_S, default 30 s), then attnd exits 0. Give `docker stop`
# (-t, default 10 s) or Kubernetes' terminationGracePeriodSeconds more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/attnd", "serve"]
