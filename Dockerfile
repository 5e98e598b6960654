# Build: docker build -t cloakroom .
# Run:   docker run -p 8080:8080 -v $PWD/config:/etc/cloakroom cloakroom
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml clippy.toml ./
COPY src ./src
COPY assets ./assets
COPY benches ./benches
RUN cargo build --release --locked --bin cloakroom

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home cloakroom
COPY --from=build /src/target/release/cloakroom /usr/local/bin/cloakroom
COPY config/cloakroom.yaml /etc/cloakroom/cloakroom.yaml
USER 10001
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/cloakroom"]
CMD ["serve", "--config", "/etc/cloakroom/cloakroom.yaml"]
