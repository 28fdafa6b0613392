# syntax=docker/dockerfile:1
# Multi-stage build: a Rust toolchain image builds the release binary, a slim Debian
# image runs it as a non-root user with the config mounted at /etc/sluice.
#   docker build -t sluice .
#   docker run -p 8080:8080 -e ANTHROPIC_API_KEY -e SLUICE_TENANT_KEY \
#     -v $PWD/conf/sluice.yaml:/etc/sluice/sluice.yaml:ro sluice

FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --bin sluice && strip target/release/sluice

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /nonexistent --shell /usr/sbin/nologin sluice \
    && mkdir -p /etc/sluice /var/run/sluice && chown sluice /var/run/sluice
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
COPY conf/sluice.yaml /etc/sluice/sluice.yaml
USER sluice
EXPOSE 8080 9090
# The admin listener must be reachable inside the container for the health check;
# the shipped config binds it to 127.0.0.1:9090, which is.
HEALTHCHECK --interval=10s --timeout=2s --retries=3 CMD curl -fsS http://127.0.0.1:9090/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["-c", "/etc/sluice/sluice.yaml"]
