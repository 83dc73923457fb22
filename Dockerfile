# Build stage: same Debian release as the runtime, so the glibc the binary links against matches.
FROM rust:1-bookworm AS build
WORKDIR /app

# Dependencies first, against stub targets: this layer is reused until Cargo.toml/Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# migrations/ and fixtures/ are embedded at compile time (sqlx::migrate!, include_str!).
COPY src ./src
COPY migrations ./migrations
COPY fixtures ./fixtures
COPY assets ./assets
# COPY keeps the context's mtimes, which may be older than the stub build: touch so cargo rebuilds.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

# Runtime stage: SQLite is bundled and there is no TLS library to link, so glibc is enough.
FROM debian:bookworm-slim
# curl only serves the HEALTHCHECK (the binary has no health-check subcommand). The package
# lists, apt's caches and logs go in the same RUN, so no layer keeps them.
# The user's primary group is 0 and /data is group 0 and group-writable: the image also runs
# under an arbitrary UID with group 0 (OpenShift's restricted policy, `--user 12345:0`).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old \
       /var/log/apt /var/log/dpkg.log \
    && useradd --uid 10001 --gid 0 --no-create-home --home-dir /data \
       --shell /usr/sbin/nologin importops \
    && mkdir /data && chown 10001:0 /data && chmod 0775 /data
COPY --from=build /app/target/release/importops /usr/local/bin/importops

# Numeric so that runAsNonRoot-style checks can verify it without reading /etc/passwd.
USER 10001:0
WORKDIR /data
# The default SQLite database (and its -wal/-shm files) lives here; Postgres users can ignore it.
VOLUME /data
# HOME is set for a UID that /etc/passwd does not know.
ENV HOME=/data \
    IMPORTOPS_LISTEN=0.0.0.0:3000 \
    DATABASE_URL=sqlite:///data/importops.db
EXPOSE 3000
# /livez needs no auth and no database. Adjust the port if IMPORTOPS_LISTEN is changed.
# Kept only in the Docker image format: podman and buildah need `--format docker`. Shell form
# so that any curl failure is exit status 1 (unhealthy).
# hadolint ignore=DL3025
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:3000/livez || exit 1
ENTRYPOINT ["importops"]
CMD ["serve"]
