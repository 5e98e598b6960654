# cloakroom as a container image: one binary on distroless, non-root, and
# fine with a read-only root filesystem (it writes nothing to disk).
#
#   docker build -t cloakroom .
#   docker run --read-only -p 8080:8080 -p 127.0.0.1:9090:9090 \
#     -e PUBLIC_URL=https://app.example.com -e OIDC_ISSUER=https://idp.example.com \
#     -e OIDC_CLIENT_ID=cloakroom -e API_UPSTREAM=http://api:8000 \
#     -e SPA_UPSTREAM=http://spa:3000 -e TRUSTED_PROXIES=10.0.0.0/8 \
#     -v "$PWD/secrets:/run/secrets:ro" cloakroom
#
# The baked config, deploy/docker/cloakroom.yaml, says what each variable and
# each file under /run/secrets is. To run another config (Sentinel, static
# SPA, more routes), mount it over /etc/cloakroom/cloakroom.yaml.

# === plan ===
# The dependency layer below builds on stand-in sources, and cargo refuses a
# manifest whose targets are missing: this stage writes the skeleton (the
# manifest, the lock file, a stand-in at every target's path, as `cargo
# metadata` lists them), so the stand-ins cannot fall out of step with
# Cargo.toml. It reruns at every change, but its output, and so the cache of
# the layer built on it, changes only with the manifest: cargo-chef's
# planner and cook stages, without a tool to build into the image.
FROM rust:1-bookworm AS plan
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY deploy/docker/skeleton.sh ./deploy/docker/
RUN sh deploy/docker/skeleton.sh skeleton

# === build ===
FROM rust:1-bookworm AS build
WORKDIR /src

# Dependencies first, in a layer of their own.
COPY --from=plan /src/skeleton ./
RUN cargo build --release --locked --bin cloakroom

COPY src ./src
COPY assets ./assets
COPY benches ./benches
# COPY keeps the files' own times, which may be older than the stand-ins'
# build: touch them so cargo rebuilds cloakroom itself.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin cloakroom

# === run ===
# glibc, libgcc and CA certificates, no shell; user nonroot (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/cloakroom /usr/local/bin/cloakroom
COPY deploy/docker/cloakroom.yaml /etc/cloakroom/cloakroom.yaml
# Where the baked config reads its secret files (`*_file` keys).
ENV CLOAKROOM_SECRETS=/run/secrets
USER 65532:65532
EXPOSE 8080 9090
# GETs the admin listener's /readyz on 127.0.0.1:9090: unhealthy once the
# process is gone or draining, not while Redis or the IdP is down.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/cloakroom", "health"]
ENTRYPOINT ["/usr/local/bin/cloakroom"]
CMD ["serve", "--config", "/etc/cloakroom/cloakroom.yaml"]
