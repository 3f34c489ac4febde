# syntax=docker/dockerfile:1
# pg-proxy: the Postgres proxy service (services/pg-proxy) for Railway.
# Build context is the repository root; .dockerignore admits only shared/proxy-auth,
# shared/log-redact and services/pg-proxy, which together form a self-contained cargo workspace with its own lock.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src

# Dependency layer: manifests and the lock file with stub sources. This layer is rebuilt only
# when a manifest or Cargo.lock changes, not on every source edit.
COPY shared/proxy-auth/Cargo.toml shared/proxy-auth/Cargo.toml
COPY shared/log-redact/Cargo.toml shared/log-redact/Cargo.toml
COPY services/pg-proxy/Cargo.toml services/pg-proxy/Cargo.lock services/pg-proxy/
RUN mkdir -p shared/proxy-auth/src shared/log-redact/src services/pg-proxy/src \
    && touch shared/proxy-auth/src/lib.rs shared/log-redact/src/lib.rs services/pg-proxy/src/lib.rs \
    && echo 'fn main() {}' > services/pg-proxy/src/main.rs \
    && cargo build --release --locked --manifest-path services/pg-proxy/Cargo.toml \
    && rm -rf shared/proxy-auth/src shared/log-redact/src services/pg-proxy/src

# Application layer. COPY keeps the files' old mtimes, so touch them: cargo must not mistake
# the stubs' fresher build for the real sources.
COPY shared/proxy-auth shared/proxy-auth
COPY shared/log-redact shared/log-redact
COPY services/pg-proxy services/pg-proxy
RUN touch shared/proxy-auth/src/lib.rs shared/log-redact/src/lib.rs services/pg-proxy/src/lib.rs \
       services/pg-proxy/src/main.rs \
    && cargo build --release --locked --manifest-path services/pg-proxy/Cargo.toml \
    && install -m 0755 services/pg-proxy/target/release/pg-proxy /usr/local/bin/pg-proxy

# Runtime: Debian slim (glibc, matches the build stage) without a toolchain. No system CA
# bundle is needed: TLS to Postgres (when sslmode asks for it) uses the Mozilla roots compiled
# into the binary (webpki-roots) or the file named by sslrootcert.
FROM debian:bookworm-slim AS runtime
RUN groupadd --system --gid 10001 proxy \
    && useradd --system --uid 10001 --gid proxy --no-create-home --shell /usr/sbin/nologin proxy
COPY --from=build /usr/local/bin/pg-proxy /usr/local/bin/pg-proxy
USER 10001:10001
ENV PORT=8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/pg-proxy"]
CMD ["serve"]
