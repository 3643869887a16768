# attnd container image: build stage compiles a portable Release binary (no
# -march=native), runtime stage holds only the runtime libraries and the binary.
# The HTTP server (`attnd serve`) and the full deployment story arrive with later
# issues; until then the image runs the attnd CLI.
FROM debian:bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config libopenblas-dev libmicrohttpd-dev libcjson-dev \
      libuv1-dev libpcre2-dev libcriterion-dev libcurl4-openssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release && cmake --build /build -j"$(nproc)" --target attnd

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libpcre2-8-0 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home attnd
COPY --from=build /build/cli/attnd /usr/local/bin/attnd
USER attnd
# Models are read from a mounted volume.
VOLUME ["/models"]
ENTRYPOINT ["/usr/local/bin/attnd"]
CMD ["--help"]
